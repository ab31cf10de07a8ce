"""The step watchdog: a process that is alive but stuck stops every process, named.

A process that dies is caught by ``jax.distributed``'s heartbeat (and, at
once, by the collective that loses its peer). One that is *stopped*
(``SIGSTOP``, a frozen host) or hung in a collective keeps its connections
open, so the others would wait in the next all-reduce for ever. The
:class:`StepWatchdog` times every training step in a thread: when a step
takes longer than ``max(factor x median step, minimum_s)`` it aborts this
process, and every other one, with a message that names the process(es)
that did not reach the step.

To name them, each process's watchdog thread publishes, once per
``interval_s``, its progress (the steps done, what it is busy with, and a
tick that proves the thread runs) in ``jax.distributed``'s key-value store.
A process whose tick stops changing is stopped or dead; one whose tick
moves but whose step does not is hung. The first watchdog that fires
writes an abort key; every other one reads it at its next tick and exits
too (status :data:`EXIT_STUCK`).

Not fooled by compilation, checkpoints or validation: nothing before the
end of the first ``warmup_steps`` steps (compilation) is timed, and the time a step
spends in extensions (checkpoint saves, validation, plots) is taken out of
the step and held to its own, longer deadline:
``max(factor x the longest call of that extension so far, extension_minimum_s)``.
A process that waits for a peer busy in such a call waits as long as the
peer's deadline allows.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

__all__ = ["EXIT_STUCK", "LocalStore", "StepWatchdog", "describe_peers", "exit_stuck"]

#: Exit status of a process stopped by the step watchdog (``EX_SOFTWARE``).
EXIT_STUCK = 70
_PREFIX = "bricks/watchdog/"
_ABORT = _PREFIX + "abort"


class Store(Protocol):
    """The few key-value operations the watchdog needs (jax.distributed's store)."""

    def set(self, key: str, value: str) -> None: ...
    def get(self, key: str) -> str | None: ...
    def items(self, prefix: str) -> dict[str, str]: ...


class LocalStore:
    """An in-memory :class:`Store` (one process, or several watchdogs in tests)."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self._lock = threading.Lock()

    def set(self, key: str, value: str) -> None:
        with self._lock:
            self.data[key] = value

    def get(self, key: str) -> str | None:
        with self._lock:
            return self.data.get(key)

    def items(self, prefix: str) -> dict[str, str]:
        with self._lock:
            return {k: v for k, v in self.data.items() if k.startswith(prefix)}


class _JaxStore:
    """The key-value store of ``jax.distributed``'s coordination service."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def set(self, key: str, value: str) -> None:
        self.client.key_value_set(key, value, allow_overwrite=True)

    def get(self, key: str) -> str | None:
        try:
            return str(self.client.key_value_try_get(key))
        except Exception:  # NOT_FOUND is an exception here
            return None

    def items(self, prefix: str) -> dict[str, str]:
        return {str(k): str(v) for k, v in self.client.key_value_dir_get(prefix)}


def _location(ident: int) -> str | None:
    """Where thread ``ident`` runs: ``file.py:line (function)`` of its innermost Python frame."""
    frame = sys._current_frames().get(ident)
    if frame is None:
        return None
    code = frame.f_code
    name = os.path.join(*Path(code.co_filename).parts[-2:])
    return f"{name}:{frame.f_lineno} ({code.co_name})"


def _default_store() -> Store:
    from jax._src import distributed

    client = distributed.global_state.client
    return LocalStore() if client is None else _JaxStore(client)


def exit_stuck(message: str) -> None:
    """Print ``message`` and end this process at once with :data:`EXIT_STUCK`."""
    print(message, file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(EXIT_STUCK)  # the training thread may be blocked in a collective: do not wait


class StepWatchdog:
    """Abort every process when a training step overruns its deadline, naming the stuck one.

    Args:
        factor: a step may take this many times the median step time.
        minimum_s: ... but always at least this long (seconds).
        extension_minimum_s: an extension call (a checkpoint save, a
            validation) may take ``factor`` times the longest call of that
            extension so far, and at least this long.
        warmup_steps: the first steps (compilation) are not timed.
        interval_s: how often the thread checks and publishes its progress.
        lost_after_s: a peer whose thread gave no sign of life for this long
            is named as stopped or dead.
        index, count: this process's index and the number of processes
            (default: ``jax.process_index()``, ``jax.process_count()``).
        store: where progress is published (default: ``jax.distributed``'s
            key-value store; a :class:`LocalStore` for one process).
        on_abort: called with the message when the deadline passes or
            another process aborted (default: print it and exit with
            :data:`EXIT_STUCK` at once).

    The main loop drives it: :meth:`start`, :meth:`beat` after each step,
    :meth:`enter` and :meth:`leave` around extension calls, :meth:`stop`.

    >>> aborted = []
    >>> dog = StepWatchdog(minimum_s=0.5, warmup_steps=0, index=0, count=1,
    ...                    store=LocalStore(), on_abort=aborted.append)
    >>> dog.beat(1, now=0.0); dog.beat(2, now=0.1)    # steps of 0.1 s: the deadline is 1 s
    >>> dog.check(now=0.9), dog.check(now=1.2) is not None
    (None, True)
    >>> print(aborted[0])  # doctest: +ELLIPSIS
    step watchdog: process 0 of 1 waited 1.1 s for step 3 (deadline 1 s = max(10 x median ...
    """

    def __init__(
        self,
        factor: float = 10.0,
        minimum_s: float = 60.0,
        extension_minimum_s: float = 600.0,
        warmup_steps: int = 2,
        interval_s: float = 1.0,
        lost_after_s: float = 10.0,
        index: int | None = None,
        count: int | None = None,
        store: Store | None = None,
        on_abort: Callable[[str], Any] | None = None,
    ) -> None:
        from bricks.errors import DistributedError

        if not factor > 0 or not minimum_s > 0 or not extension_minimum_s > 0:
            raise DistributedError(
                f"StepWatchdog: expected factor, minimum_s and extension_minimum_s > 0, got "
                f"{factor}, {minimum_s}, {extension_minimum_s}"
            )
        if int(warmup_steps) < 0 or not interval_s > 0 or not lost_after_s > interval_s:
            raise DistributedError(
                f"StepWatchdog: expected warmup_steps >= 0 and lost_after_s > interval_s > 0, "
                f"got {warmup_steps}, {lost_after_s}, {interval_s}"
            )
        self.factor, self.minimum_s = float(factor), float(minimum_s)
        self.extension_minimum_s = float(extension_minimum_s)
        self.warmup_steps, self.interval_s = int(warmup_steps), float(interval_s)
        self.lost_after_s = float(lost_after_s)
        self._index, self._count, self._store = index, count, store
        self.on_abort = on_abort or exit_stuck
        self.step_times: deque[float] = deque(maxlen=100)
        self.extension_longest: dict[str, float] = {}
        self._lock = threading.Lock()
        self._trainer = threading.get_ident()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._reset()

    def _reset(self) -> None:
        self.steps = 0  # the steps done at the last beat
        self.beats = 0
        self._step_start: float | None = None  # no step is timed before the first beat
        self._excused_s = 0.0
        self._phase: tuple[str, float] | None = None
        self._depth = 0
        self._tick = 0
        self._peers: dict[int, tuple[Any, float, dict[str, Any]]] = {}
        self.aborted: str | None = None

    # -- set-up ----------------------------------------------------------------------
    @property
    def index(self) -> int:
        if self._index is None:
            import jax

            self._index = jax.process_index()
        return self._index

    @property
    def count(self) -> int:
        if self._count is None:
            import jax

            self._count = jax.process_count()
        return self._count

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = _default_store()
        return self._store

    def start(self) -> None:
        """Start watching (a daemon thread); steps are timed from the first :meth:`beat`."""
        self._reset()
        self._trainer = threading.get_ident()  # the training thread, whose place is published
        self._stopping.clear()
        self._publish(time.monotonic())
        self._thread = threading.Thread(target=self._watch, name="bricks-step-watchdog",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching; peers then see this process as finished, not stuck."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with contextlib.suppress(Exception):  # the coordinator may be gone already
            self.store.set(self._key(self.index), json.dumps({"finished": True}))

    def _watch(self) -> None:
        while not self._stopping.wait(self.interval_s):
            try:
                self.check()
            except Exception:  # the store is unreachable: jax's own heartbeat stops us
                continue

    # -- what the main loop reports -----------------------------------------------------
    def beat(self, steps: int, now: float | None = None) -> None:
        """A training step finished; ``steps`` is the number of steps done."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._step_start is not None and self.beats > self.warmup_steps - 1:
                self.step_times.append(max(now - self._step_start - self._excused_s, 0.0))
            self.beats += 1
            self.steps = int(steps)
            self._step_start = now  # then the excused time: never a step that looks too long
            self._excused_s = 0.0

    def enter(self, name: str) -> None:
        """An extension call (``name``) starts: its time is not step time, it has its own
        deadline. Calls nest (the outer one counts); each :meth:`enter` needs a :meth:`leave`.

        Only the training thread writes these fields, in an order that the watchdog
        thread may read at any moment without a lock (this runs per extension per step).
        """
        self._depth += 1
        if self._depth == 1:
            self._phase = (name, time.monotonic())

    def leave(self) -> None:
        """The extension call of the matching :meth:`enter` returned."""
        self._depth -= 1
        if self._depth == 0 and self._phase is not None:
            name, since = self._phase
            taken = time.monotonic() - since
            self._excused_s += taken  # counted before the call ends: never both or neither
            if taken > self.extension_longest.get(name, 0.0):
                self.extension_longest[name] = taken
            self._phase = None

    @contextlib.contextmanager
    def excused(self, name: str) -> Iterator[None]:
        """:meth:`enter` and :meth:`leave` around a block."""
        self.enter(name)
        try:
            yield
        finally:
            self.leave()

    # -- deadlines -------------------------------------------------------------------------
    def deadline(self, now: float | None = None) -> tuple[float, float, str] | None:
        """``(elapsed, allowed, what)`` of what this process is doing, or ``None`` untimed."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._step_start is None or not self.step_times:
                return None  # warming up (compilation, loading): nothing is timed yet
            if self._phase is not None:
                name, since = self._phase
                longest = self.extension_longest.get(name, 0.0)
                allowed = max(self.factor * longest, self.extension_minimum_s)
                return now - since, allowed, (
                    f"extension {name!r} (deadline {allowed:.3g} s = max({self.factor:g} x its "
                    f"longest call {longest:.3g} s, {self.extension_minimum_s:g} s))"
                )
            median = statistics.median(self.step_times)
            allowed = max(self.factor * median, self.minimum_s)
            return now - self._step_start - self._excused_s, allowed, (
                f"step {self.steps + 1} (deadline {allowed:.3g} s = max({self.factor:g} x median "
                f"step {median:.3g} s, {self.minimum_s:g} s))"
            )

    def _key(self, index: int) -> str:
        return f"{_PREFIX}process/{index}"

    def _publish(self, now: float) -> None:
        with self._lock:
            phase = None if self._phase is None else self._phase[0]
            state = {"steps": self.steps, "tick": self._tick, "phase": phase,
                     "at": _location(self._trainer)}
        self.store.set(self._key(self.index), json.dumps(state))

    def _read_peers(self, now: float) -> None:
        for key, value in self.store.items(_PREFIX + "process/").items():
            index = int(key.rsplit("/", 1)[1])
            state = json.loads(value)
            seen = self._peers.get(index)
            mark = (state.get("tick"), state.get("steps"), state.get("finished"))
            if seen is None or seen[0] != mark:
                self._peers[index] = (mark, now, state)

    def check(self, now: float | None = None) -> str | None:
        """One look (the thread calls it every ``interval_s``): publish this process's
        progress, follow another process's abort, abort past the deadline.

        Returns the abort message, or ``None`` while all is well.
        """
        now = time.monotonic() if now is None else now
        self._tick += 1
        self._publish(now)
        if self.aborted is not None:
            return self.aborted
        other = self.store.get(_ABORT)
        if other:
            return self._abort(f"stopping: {other}", publish=False)
        self._read_peers(now)
        late = self.deadline(now)
        if late is None:
            return None
        elapsed, allowed, what = late
        silent = self._silent_peers(now, self._quiet_s)
        if elapsed <= allowed:
            # a peer gave no sign of life for a step's deadline: no need to wait longer
            step = self._step_allowed()
            if not silent or step is None or elapsed <= step:
                return None
        elif not silent and what.startswith("step") and self._busy_peers(now):
            return None  # a live peer saves or validates: its own deadline watches it
        peers = describe_peers(dict(self._peers), self.index, self.count, self.steps, now,
                               self._quiet_s)
        message = (f"step watchdog: process {self.index} of {self.count} waited "
                   f"{elapsed:.3g} s for {what}; {peers}")
        return self._abort(message, publish=True)

    @property
    def _quiet_s(self) -> float:
        """A peer whose thread missed three looks gives no sign of life (stopped or dead)."""
        return min(self.lost_after_s, 3 * self.interval_s)

    def _step_allowed(self) -> float | None:
        with self._lock:
            if not self.step_times:
                return None
            return max(self.factor * statistics.median(self.step_times), self.minimum_s)

    def _silent_peers(self, now: float, quiet_s: float) -> list[int]:
        return [i for i, (mark, seen, _) in list(self._peers.items())
                if i != self.index and not mark[2] and now - seen >= quiet_s]

    def _busy_peers(self, now: float) -> list[int]:
        return [i for i, (_, seen, state) in list(self._peers.items())
                if i != self.index and state.get("phase") and now - seen < self._quiet_s]

    def _abort(self, message: str, publish: bool) -> str:
        self.aborted = message
        if publish:
            with contextlib.suppress(Exception):
                self.store.set(_ABORT, message)
            if self.index == 0 and self.count > 1 and self._thread is not None:
                # the coordinator's exit ends the key-value store: let the others read it
                time.sleep(2 * self.interval_s)
        self.on_abort(message)
        return message

    # -- a lost peer -------------------------------------------------------------------
    def explain(self, error: BaseException) -> Exception | None:
        """A :class:`~bricks.errors.ProcessLostError` naming the peer that went silent when
        ``error`` is a runtime error of several processes (a collective that lost its
        peer), else ``None``: bricks' own errors and interrupts are left as they are."""
        from bricks.errors import BricksError, ProcessLostError

        if self.count < 2 or isinstance(error, (BricksError, KeyboardInterrupt, SystemExit)):
            return None
        message = self.lost_peers()
        return None if message is None else ProcessLostError(f"{message} (the error: {error})")

    def lost_peers(self, wait_s: float | None = None) -> str | None:
        """After a collective failed: wait (at most ``wait_s``, default ``lost_after_s``
        plus two intervals) until some peer is seen giving no sign of life (three
        intervals without a tick); returns a message naming them, or ``None``."""
        wait_s = self.lost_after_s + 2 * self.interval_s if wait_s is None else wait_s
        end = time.monotonic() + wait_s
        while True:
            now = time.monotonic()
            try:
                self._read_peers(now)
            except Exception:
                return (f"process {self.index} of {self.count} lost the coordinator (process 0):"
                        " its key-value store does not answer")
            silent = self._silent_peers(now, self._quiet_s)
            missing = sorted(set(range(self.count)) - set(self._peers))
            if silent or now >= end:
                if not silent and not missing:
                    return None
                return (f"process {self.index} of {self.count}: "
                        + describe_peers(dict(self._peers), self.index, self.count,
                                         self.steps, now, self._quiet_s))
            time.sleep(min(self.interval_s, max(end - now, 0.0)))


def describe_peers(
    peers: dict[int, tuple[Any, float, dict[str, Any]]],
    me: int,
    count: int,
    steps: int,
    now: float,
    quiet_s: float,
) -> str:
    """Name the processes that did not reach step ``steps + 1`` and why.

    ``peers`` maps a process index to ``(mark, last change, published state)``
    as the watchdog saw it (``now`` on the same clock); one unchanged for
    ``quiet_s`` gives no sign of life.

    >>> describe_peers({0: ((5, 7, None), 9.0, {"steps": 7, "phase": None}),  # doctest: +ELLIPSIS
    ...                 1: ((3, 7, None), 0.0, {"steps": 7, "phase": None})}, 0, 2, 7, 10.0, 5.0)
    'process 1 did not reach step 8: no sign of life for 10 s (stopped, or dead), last reported...'
    """
    lines = []
    top = max([steps] + [p[2].get("steps", 0) for p in peers.values()])
    for i in range(count):
        if i == me:
            continue
        if i not in peers:
            lines.append(f"process {i} never reported (did it start?)")
            continue
        mark, seen, state = peers[i]
        if mark[2]:
            lines.append(f"process {i} finished training or failed (it stopped watching)")
        elif now - seen >= quiet_s:
            lines.append(f"process {i} did not reach step {steps + 1}: no sign of life for "
                         f"{now - seen:.3g} s (stopped, or dead), last reported at step "
                         f"{state['steps']}")
        elif state["steps"] < top:
            where = f" in extension {state['phase']!r}" if state.get("phase") else ""
            at = f" (training thread at {state['at']})" if state.get("at") else ""
            lines.append(f"process {i} did not reach step {steps + 1}: alive but hung at "
                         f"step {state['steps']}{where}{at}")
    if not lines and top > steps:
        ahead = sorted(i for i, p in peers.items() if p[2].get("steps", 0) > steps)
        return (f"this process is the one behind: process(es) {ahead} reached step {top} "
                "and wait for it")
    if not lines:  # who entered the collective is not known: say where each one is
        places = "; ".join(f"process {i} at {p[2]['at']}" for i, p in sorted(peers.items())
                           if p[2].get("at"))
        return (f"every process is alive at step {steps} and none reached step {steps + 1} "
                f"(one is stuck, or hung in a collective; training threads: {places})")
    return "; ".join(lines)
