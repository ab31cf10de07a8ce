"""Run an experiment config: ``python -m experiments.run CONFIG.py [options]``.

A config is a Python file exporting two functions:

* ``get_config() -> dict`` -- the hyperparameters as plain values (numbers,
  strings, lists, dicts, None). ``--set key=value`` overrides them and
  ``--seed N`` sets ``config["seed"]``.
* ``build(config, run_dir) -> MainLoop`` -- the model, data and extensions,
  writing everything it produces (checkpoints, plots, samples) into
  ``run_dir``.

and optionally ``finish(main_loop, config, run_dir) -> dict`` -- called
after training ends (finished or interrupted); its dict is stored under
``"results"`` in ``summary.json`` (a sample of generated text, a learned
transition matrix ...).

Each run has a directory (``runs/<config-name>-<timestamp>`` by default)
holding ``config.json`` (the resolved config), ``log.jsonl`` (the training
log), the checkpoints and plot files the config's extensions write, and
``summary.json`` (status, iterations, epochs, wall time, the final value of
every record). ``--resume`` continues that directory's newest checkpoint.
See ``docs/experiments.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import shlex
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from bricks.errors import BricksError, ExperimentError, OverrideError, RunRefusedError

from ._config import (
    CONFIG_FILE,
    load_config_module,
    new_run_dir,
    newest_run_dir,
    resolve_config,
)
from ._distributed import (
    add_arguments,
    agree_on_resume,
    distribute_main_loop,
    join_group,
    launch_local,
    report_watchdog_stop,
    resume_source,
)
from ._provenance import config_diff, format_diff, provenance, version_changes

__all__ = ["main", "load_config_module", "resolve_config", "new_run_dir", "newest_run_dir"]

logger = logging.getLogger("experiments.run")

LOG_FILE = "log.jsonl"
SUMMARY_FILE = "summary.json"
PROVENANCE_FILE = "provenance.json"
#: Exit status of a run stopped by Ctrl-C / SIGTERM after its checkpoint
#: (``EX_TEMPFAIL``, as :data:`bricks.checkpoint.EXIT_INTERRUPTED`): resume it.
EXIT_INTERRUPTED = 75
#: Exit status when the end of the run waited longer than the checkpoint's
#: ``exit_wait_s`` for a write (``EX_IOERR``); the previous checkpoint is valid.
EXIT_SAVE_TIMEOUT = 74
#: Exit status of a third Ctrl-C: stop at once (``128 + SIGINT``).
EXIT_ABORTED = 130
CHECKPOINT_DIR = "checkpoints"

_DESCRIPTION = """\
Train the model of an experiment config and keep everything in one run directory.

CONFIG.py is a Python file exporting get_config() and build(config, run_dir).
A config file is code: running it executes it with your privileges, so run
only configs you trust. Overrides (--set) are different: they are parsed as
literals and never evaluated.
"""

_EPILOG = """\
examples:
  python -m experiments.run experiments/configs/char_lm.py
  python -m experiments.run experiments/configs/mnist.py --set epochs=2 --set learning_rate=0.05
  python -m experiments.run experiments/configs/char_lm.py --output-dir runs/lm --resume
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.run",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="experiment config file (Python code, run as you)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value; VALUE is a Python literal (5, 0.1, 'text', [1, 2]) or "
        "a bare word (a path, a name) and is never evaluated as code; repeatable",
    )
    parser.add_argument(
        "--output-dir",
        default=None,
        metavar="DIR",
        help="run directory (default: runs/<config-name>-<timestamp>)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the newest checkpoint of the run directory (with no --output-dir: "
        "of the newest runs/<config-name>-* directory)",
    )
    parser.add_argument("--seed", type=int, default=None, help="set config['seed']")
    parser.add_argument(
        "--allow-config-change",
        action="store_true",
        help="let --resume continue with a changed config (the diff is logged as a warning)",
    )
    parser.add_argument(
        "--compile-cache",
        default=None,
        metavar="DIR",
        help="JAX's persistent compilation cache directory (default: the config's "
        "compile_cache, else ~/.cache/bricks/jax-compile); a second run skips most compiling",
    )
    parser.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="compile everything afresh, without reading or writing the compilation cache",
    )
    parser.add_argument(
        "--malloc-tuning",
        action="store_true",
        help="on CPU, keep XLA's per-step scratch memory mapped (bricks.core.allocator."
        "tune_cpu_allocator): fewer page faults, more resident memory. Worth it with "
        "--set steps_per_call=1 (about 12-15%% less CPU time); no measurable change at "
        "steps_per_call=10 (char_lm's default). See docs/training.md",
    )
    parser.add_argument(
        "--debug-nans",
        action="store_true",
        help="JAX's NaN checking: the first NaN raises naming the primitive (slow: every "
        "operation is checked and compiled code re-runs op by op)",
    )
    add_arguments(parser)
    return parser


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf8")
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf8"))
    except (OSError, ValueError) as error:
        raise ExperimentError(f"cannot read {os.fspath(path)!r}: {error}") from error


def _final_records(log: Any) -> dict[str, Any]:
    """The last value of every scalar record in the log."""
    final: dict[str, Any] = {}
    for _, row in log:
        for key, value in row.items():
            if isinstance(value, bool | int | float | str) or value is None:
                if not (isinstance(value, str) and len(value) > 200):
                    final[key] = value
    return final


def _machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import jax

        info["jax"] = jax.__version__
        info["jax_backend"] = jax.default_backend()
        info["devices"] = [str(d) for d in jax.devices()]
    except Exception:  # the summary must be written even if jax is broken
        pass
    return info


def _find_resume_point(run_dir: Path) -> Path:
    """The newest good checkpoint under ``run_dir`` (damaged newer ones are skipped)."""
    from bricks.checkpoint import find_checkpoint
    from bricks.errors import CheckpointNotFoundError

    try:
        path, _problems = find_checkpoint(run_dir / CHECKPOINT_DIR)
    except CheckpointNotFoundError as error:
        raise ExperimentError(
            f"--resume: {error}; the run ended before its first checkpoint, start it again "
            "without --resume"
        ) from error
    return path


def _status_of(main_loop: Any) -> str:
    status = main_loop.log.status
    if status.get("epoch_interrupt_received") or status.get("batch_interrupt_received"):
        return "interrupted"
    return "finished"


class _Run:
    """One start of the runner: owns the run directory once the lock is taken."""

    def __init__(self, args: argparse.Namespace, module: ModuleType) -> None:
        self.args, self.module = args, module
        self.name = Path(args.config).stem
        self.run_dir: Path | None = None
        self.lock: Any = None
        self.summary: dict[str, Any] = {}
        self.previous: dict[str, Any] = {}
        self.main_loop: Any = None
        self.start = time.perf_counter()

    # -- claiming the directory ------------------------------------------------------
    def _reserve(self, run_dir: Path) -> None:
        """Take the run's lock before reading or writing anything in it."""
        from bricks.checkpoint import CheckpointManager
        from bricks.errors import CheckpointLockedError

        manager = CheckpointManager(run_dir / CHECKPOINT_DIR)
        try:
            manager.acquire(cleanup=False, shareable=True)
        except CheckpointLockedError as error:
            raise RunRefusedError(f"{os.fspath(run_dir)!r} is locked: {error}") from None
        self.lock, self.run_dir = manager, run_dir

    def _prepare_resume(self) -> tuple[dict[str, Any], Path | None]:
        args = self.args
        run_dir = Path(args.output_dir) if args.output_dir else newest_run_dir(self.name)
        # process i > 0 of --processes resumes from the run's one checkpoint directory
        source = resume_source(args, run_dir)
        if not (source / CONFIG_FILE).is_file():
            raise ExperimentError(f"--resume: {os.fspath(source)!r} holds no {CONFIG_FILE}")
        if not (source / CHECKPOINT_DIR).is_dir():
            raise ExperimentError(
                f"--resume: {os.fspath(source)!r} has no {CHECKPOINT_DIR}/ directory; the run "
                "ended before its first checkpoint, start it again without --resume"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        self._reserve(run_dir)
        resume = _find_resume_point(source)
        saved = _read_json(source / CONFIG_FILE)
        # the saved values win; keys added to the config file since get their defaults
        config = resolve_config({**self.module.get_config(), **saved}, args.overrides, args.seed)
        diff = config_diff(saved, config)
        if diff and not args.allow_config_change:
            raise RunRefusedError(
                f"--resume of {os.fspath(run_dir)!r} changes the experiment: {format_diff(diff)}; "
                "a resumed run must stay the same experiment (pass --allow-config-change to "
                "continue it anyway, or start a new run)"
            )
        if diff:
            logger.warning("resuming with a changed config: %s", format_diff(diff))
        self.diff = diff
        summary_path = run_dir / SUMMARY_FILE
        self.previous = _read_json(summary_path) if summary_path.is_file() else {}
        from bricks.checkpoint import library_versions, read_metadata

        doc = read_metadata(resume)
        status = doc["state"].get("log", {}).get("status", {}) if doc.get("state") else {}
        if status.get("training_finish_requested") and not diff:
            self.finished_at = int(status.get("iterations_done", 0))
            return config, None
        changes = version_changes(doc.get("meta", {}).get("versions", {}), library_versions())
        for name, (old, new) in changes.items():
            logger.warning("%s was %s when the checkpoint was written, is %s now", name, old, new)
        return config, resume

    def _prepare_new(self) -> dict[str, Any]:
        args = self.args
        config = resolve_config(self.module.get_config(), args.overrides, args.seed)
        if args.output_dir:
            run_dir = Path(args.output_dir)
            if (run_dir / CONFIG_FILE).exists():
                raise ExperimentError(
                    f"{os.fspath(run_dir)!r} already holds a run; pass --resume to continue it "
                    "or choose another --output-dir"
                )
            run_dir.mkdir(parents=True, exist_ok=True)
        else:
            run_dir = new_run_dir(self.name)
        self._reserve(run_dir)
        return config

    # -- the run ---------------------------------------------------------------------
    def execute(self) -> int:
        args = self.args
        self.finished_at: int | None = None
        self.diff: dict[str, Any] = {}
        if args.resume:
            config, resume = self._prepare_resume()
        else:
            config, resume = self._prepare_new(), None
        run_dir = self.run_dir
        assert run_dir is not None
        if self.finished_at is not None:
            return self._already_finished()
        from ._compile_cache import configure_compile_cache

        self.compile_cache = configure_compile_cache(
            args.compile_cache, args.no_compile_cache, config
        )
        from ._allocator import malloc_tuning

        self.malloc_tuning = malloc_tuning(args.malloc_tuning)
        if args.debug_nans:
            import jax

            jax.config.update("jax_debug_nans", True)
        if resume is not None:
            # build and restore (shape and step-rule checks) before writing anything
            self.main_loop = self._build(config, write_error=False)
            from bricks.checkpoint import restore_main_loop
            from bricks.errors import CheckpointMismatchError

            try:
                restore_main_loop(
                    self.main_loop, resume, allow_step_rule_change=args.allow_config_change
                )
            except CheckpointMismatchError as error:
                raise RunRefusedError(f"--resume of {os.fspath(run_dir)!r}: {error}") from None
            agree_on_resume(self.main_loop, resume)
        _write_json(run_dir / CONFIG_FILE, config)
        self._write_provenance(config, resume)
        print(f"run directory: {run_dir}", flush=True)
        self.summary = {
            "config_file": os.fspath(args.config),
            "config_name": self.name,
            "command": [sys.executable, "-m", "experiments.run", *sys.argv[1:]]
            if sys.argv and sys.argv[0].endswith(("run.py", "__main__.py"))
            else None,
            "status": "running",
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "machine": _machine(),
            "malloc_tuning": self.malloc_tuning,
        }
        if self.previous.get("status") == "running":
            # the lock was free, so the process that wrote "running" is gone
            print(
                f"the previous start (pid {self.previous.get('pid', '?')}) died without "
                "finishing (killed, out of memory?); resuming from its last checkpoint",
                flush=True,
            )
            self.summary["previous_start"] = "died"
        if self.diff:
            self.summary["config_changed"] = {k: list(v) for k, v in self.diff.items()}
        self._write_summary()
        if self.main_loop is None:
            self.main_loop = self._build(config, write_error=True)
        if resume is not None:
            self.summary["resumed_from_checkpoint"] = os.fspath(resume)
            print(f"resuming from {resume}", flush=True)
        return self._train(config)

    def _build(self, config: dict[str, Any], write_error: bool) -> Any:
        assert self.run_dir is not None
        try:
            main_loop = self.module.build(config, os.fspath(self.run_dir))
            if not hasattr(main_loop, "run") or not hasattr(main_loop, "log"):
                raise ExperimentError(
                    f"build() of {os.fspath(self.args.config)!r} must return a MainLoop, "
                    f"found {type(main_loop).__name__}"
                )
        except Exception as error:
            if write_error:
                self._finish_summary("error", error=f"build(): {type(error).__name__}: {error}")
            raise
        if main_loop.log.path is None:  # the runner owns the log file's place
            main_loop.log.path = os.fspath(self.run_dir / LOG_FILE)
        group = getattr(self.args, "process_group", None)
        if group is not None:
            note = distribute_main_loop(main_loop, self.args, group, self.module)
            self.parallel_note = note  # summary.json says it (see _write_summary)
            if note != "one device":
                print(note, flush=True)
            report_watchdog_stop(main_loop, self._finish_summary)
        return main_loop

    def _already_finished(self) -> int:
        assert self.run_dir is not None
        print(
            f"{os.fspath(self.run_dir)!r} already finished at iteration {self.finished_at}; "
            "nothing to train (to train further, change the config with --set ... "
            "--allow-config-change)",
            flush=True,
        )
        summary_path = self.run_dir / SUMMARY_FILE
        if self.previous and self.previous.get("status") != "finished":
            # killed after its final checkpoint: the checkpoint is the truth
            self.previous.update(
                status="finished",
                iterations_done=self.finished_at,
                note="training had finished when its last checkpoint was written; "
                "the process stopped before it completed this summary",
            )
            _write_json(summary_path, self.previous)
        return 0

    def _write_provenance(self, config: dict[str, Any], resume: Path | None) -> None:
        assert self.run_dir is not None
        path = self.run_dir / PROVENANCE_FILE
        history = _read_json(path) if path.is_file() else {"starts": []}
        entry = provenance(
            self.args.config, self.args.overrides, config, None if resume is None else str(resume)
        )
        history.setdefault("starts", []).append(entry)
        _write_json(path, history)

    def _write_summary(self) -> None:
        assert self.run_dir is not None
        if getattr(self, "parallel_note", None):
            self.summary.setdefault("parallel", self.parallel_note)
        _write_json(self.run_dir / SUMMARY_FILE, self.summary)

    def _finish_summary(self, status: str, **extra: Any) -> None:
        wall = time.perf_counter() - self.start
        status_of_loop = self.main_loop.log.status if self.main_loop is not None else {}
        self.summary.update(
            status=status,
            ended=datetime.datetime.now().isoformat(timespec="seconds"),
            iterations_done=status_of_loop.get("iterations_done"),
            epochs_done=status_of_loop.get("epochs_done"),
            wall_time_s=round(wall, 3),
            total_wall_time_s=round(wall + float(self.previous.get("total_wall_time_s", 0.0)), 3),
            final_records=_final_records(self.main_loop.log) if self.main_loop else {},
            **extra,
        )
        self._write_summary()

    def _train(self, config: dict[str, Any]) -> int:
        from bricks.errors import CheckpointWaitTimeoutError

        main_loop = self.main_loop
        try:
            main_loop.run()
        except _StartupInterrupt:
            raise
        except CheckpointWaitTimeoutError as error:
            self._finish_summary("interrupted", error=str(error))
            print(f"python -m experiments.run: {error}", file=sys.stderr, flush=True)
            print(self.resume_hint(), flush=True)
            sys.stdout.flush()
            os._exit(EXIT_SAVE_TIMEOUT)  # the writer thread may hang: do not wait for it
        except BaseException as error:
            self._finish_summary("error", error=f"{type(error).__name__}: {error}")
            raise
        _signals_finishing()
        status = _status_of(main_loop)
        finish: Callable[..., Any] | None = getattr(self.module, "finish", None)
        assert self.run_dir is not None
        results = (
            finish(main_loop, config, os.fspath(self.run_dir)) if callable(finish) else None
        )
        self._finish_summary(status, **({"results": results} if results else {}))
        records = self.summary["final_records"]
        shown = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in records.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and not k.startswith("time_")
        )
        print(
            f"{status} after {self.summary['iterations_done']} iterations, "
            f"{self.summary['epochs_done']} epochs, {self.summary['wall_time_s']:.1f}s; "
            f"{shown}\nsummary: {self.run_dir / SUMMARY_FILE}",
            flush=True,
        )
        if status != "finished":
            print(self.resume_hint(), flush=True)
        return 0 if status == "finished" else EXIT_INTERRUPTED

    def resume_hint(self) -> str:
        """The line that says how to continue this run: the exact command."""
        assert self.run_dir is not None
        return "to resume: " + " ".join(
            shlex.quote(part) for part in resume_command(self.args, self.run_dir)
        )

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()


def resume_command(args: argparse.Namespace, run_dir: str | os.PathLike) -> list[str]:
    """``python -m experiments.run CONFIG --output-dir RUN_DIR --resume`` (+ cache flags).

    Overrides are not repeated: a resumed run takes its saved config.
    """
    command = ["python", "-m", "experiments.run", os.fspath(args.config)]
    command += ["--output-dir", os.fspath(run_dir), "--resume"]
    if args.no_compile_cache:
        command.append("--no-compile-cache")
    elif args.compile_cache:
        command += ["--compile-cache", args.compile_cache]
    if getattr(args, "malloc_tuning", False):
        command.append("--malloc-tuning")
    return command


def run_experiment(args: argparse.Namespace) -> int:
    """Resolve the config, claim the run directory, train, write the summary.

    Nothing in an existing run directory changes until its lock is held and
    the resume is validated (config drift, parameter and step-rule shapes).
    """
    run = _Run(args, load_config_module(args.config))
    try:
        return run.execute()
    except _StartupInterrupt:
        if run.summary:  # a new run's directory: say what happened
            run._finish_summary("interrupted", note="interrupted during start-up: nothing trained")
        raise
    finally:
        run.close()


class _StartupInterrupt(BaseException):
    """SIGTERM / SIGINT before training started."""


def _raise_startup(signum: int, frame: Any) -> None:
    raise _StartupInterrupt(signum)


def _note_finishing(signum: int, frame: Any) -> None:
    logger.warning("signal %d received while the run finishes; it ends in a moment", signum)


def _signals_finishing() -> None:
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, _note_finishing)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status.

    0: finished (or already finished); 75: interrupted (resume it with
    ``--resume``), also by a SIGTERM during start-up; 74: the end of the run
    waited longer than ``exit_wait_s`` for a checkpoint write; 130: a third
    Ctrl-C; 1: an error while training (a lost process of a multi-process
    run: a ``ProcessLostError`` that names it); 70: several processes, and the
    step watchdog stopped them (its message names the stuck process); 2: a bad
    command line or config, or a refused run (locked by a live run, a resume
    that changes the experiment).
    """
    main_thread = threading.current_thread() is threading.main_thread()
    old = (
        {s: signal.signal(s, _raise_startup) for s in (signal.SIGINT, signal.SIGTERM)}
        if main_thread
        else {}
    )
    try:
        args = _parser().parse_args(argv)
        try:
            if args.processes is not None and args.processes > 1:
                name = Path(args.config).stem
                run_dir = Path(args.output_dir) if args.output_dir else (
                    newest_run_dir(name) if args.resume else new_run_dir(name))
                raw = list(sys.argv[1:] if argv is None else argv)
                return launch_local(args, raw, run_dir)
            args.process_group = join_group(args)
            return run_experiment(args)
        except _StartupInterrupt as stop:
            print(
                f"interrupted during start-up (signal {stop.args[0]}): nothing was trained yet",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
        except (OverrideError, ExperimentError) as error:
            print(f"python -m experiments.run: error: {error}", file=sys.stderr)
            return 2
        except BricksError:
            traceback.print_exc()
            return 1
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


if __name__ == "__main__":
    sys.exit(main())
