"""Extension base classes and Blocks' firing conditions.

A :class:`TrainingExtension` has one method per main-loop event
(``before_training``, ``before_epoch``, ``before_batch(batch)``,
``after_batch(batch)``, ``after_epoch``, ``after_training``,
``on_resumption``, ``on_interrupt``, ``on_error(exception)``); the main loop
calls :meth:`TrainingExtension.dispatch` for each event.

A :class:`SimpleExtension` has one method, :meth:`SimpleExtension.do`, and a
list of *conditions* saying when it runs, set by keywords or
:meth:`SimpleExtension.add_condition`:

===================  ===========================================================
keyword              runs ``do(...)``
===================  ===========================================================
before_training      before training starts (not on resumption)
before_first_epoch   before the first epoch only
before_epoch         before every epoch
before_batch         before every batch (``do(which, batch)``)
after_batch          after every batch (``do(which, batch)``)
after_epoch          after every epoch
after_training       after training finished cleanly
on_resumption        when training resumes from a checkpoint
on_interrupt         when Ctrl-C / SIGTERM stops training
on_error             when an exception escapes (``do(which, exception)``)
every_n_batches=N    after batches N, 2N, ...
every_n_epochs=N     after epochs N, 2N, ...
after_n_batches=N    once, after the first batch with ``iterations_done >= N``
after_n_epochs=N     once, after the first epoch with ``epochs_done >= N``
===================  ===========================================================

``after_n_*`` fire *once*, at the first moment at or past ``N``; whether they
fired is part of the extension state, so a run resumed past ``N`` does not
fire them again, and a run resumed before ``N`` still does.

**Default conditions.** An extension may have defaults (``Printing`` prints
after every epoch, ``Timing`` starts its clock before the first epoch). A
condition the user gives *replaces* the defaults of its kind instead of being
added to them, so ``Printing(every_n_epochs=10)`` prints every tenth epoch,
not every epoch, and ``Timing(every_n_epochs=2)`` fires once per two epochs.
The kinds are: the batch schedule (``after_batch``, ``every_n_batches``,
``after_n_batches``); the epoch schedule (``after_epoch``,
``every_n_epochs``, ``after_n_epochs``); the start of epochs
(``before_epoch``, ``before_first_epoch``); and each other keyword on its
own. An extension that acts on one schedule (``TrackTheBest``, the early
stopping extensions: :attr:`SimpleExtension.single_schedule`) has batch and
epoch schedules as one kind, so ``TrackTheBest(every_n_batches=100)`` no
longer runs after every epoch; a reporting extension keeps both
(``Printing(every_n_batches=100)`` also prints after every epoch, as in
Blocks). ``False`` given for a keyword removes the defaults of its kind (e.g.
``Printing(on_interrupt=False)``); ``None`` counts as not given. Blocks
added the user's conditions to the defaults, so there
``Printing(every_n_epochs=10)`` still printed after every epoch and
``Timing(every_n_epochs=2)`` fired twice at even epochs, overwriting its
records with the time of nothing; ``docs/porting.md`` lists the difference.

>>> class Hello(SimpleExtension):
...     def do(self, which_callback, *args):
...         print(which_callback, self.main_loop.log.status["iterations_done"])
>>> ext = Hello(every_n_batches=2, after_training=True)
>>> [name for name, _, _ in ext.conditions]
['after_batch', 'after_training']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from bricks.errors import ExtensionError, did_you_mean

__all__ = [
    "TrainingExtension",
    "SimpleExtension",
    "CALLBACKS",
    "CONDITION_KEYWORDS",
    "merge_conditions",
]

CALLBACKS = (
    "before_training",
    "before_epoch",
    "before_batch",
    "after_batch",
    "after_epoch",
    "after_training",
    "on_resumption",
    "on_interrupt",
    "on_error",
)
BOOLEAN_TRIGGERS = ("before_training", "before_first_epoch", *CALLBACKS[1:])
INTEGER_TRIGGERS = ("every_n_batches", "every_n_epochs", "after_n_batches", "after_n_epochs")
CONDITION_KEYWORDS = BOOLEAN_TRIGGERS + INTEGER_TRIGGERS

# which defaults a condition the user gives replaces (see "Default conditions" above)
_KIND = {
    **{key: key for key in CONDITION_KEYWORDS},
    **dict.fromkeys(("after_batch", "every_n_batches", "after_n_batches"), "batches"),
    **dict.fromkeys(("after_epoch", "every_n_epochs", "after_n_epochs"), "epochs"),
    "before_first_epoch": "before_epoch",
}


def merge_conditions(
    defaults: dict[str, Any], given: dict[str, Any], single_schedule: bool = False
) -> dict[str, Any]:
    """The conditions an extension runs under: ``given`` replaces the defaults
    of each kind it names (see the module docstring); ``None`` is not given.
    With ``single_schedule`` batch and epoch schedules are one kind."""

    def kind(key: str) -> str:
        found = _KIND.get(key, key)
        return "schedule" if single_schedule and found in ("batches", "epochs") else found

    given = {key: value for key, value in given.items() if value is not None}
    replaced = {kind(key) for key in given}
    kept = {key: v for key, v in defaults.items() if kind(key) not in replaced}
    return {**kept, **given}

Predicate = Callable[[Any], bool]


class TrainingExtension:
    """Base class of extensions: one no-op method per main-loop event.

    Args:
        name: name used by :meth:`MainLoop.find_extension` and in state
            snapshots; defaults to the class name.
    """

    def __init__(self, name: str | None = None) -> None:
        self.name = name or type(self).__name__
        self.main_loop: Any = None

    def set_main_loop(self, main_loop: Any) -> None:
        """Called by the main loop's constructor; extensions that must register
        something with the algorithm before any state is restored do it here."""
        self.main_loop = main_loop

    def dispatch(self, callback_name: str, *args: Any) -> None:
        """Run the method named ``callback_name``."""
        getattr(self, callback_name)(*args)

    def before_training(self) -> None: ...
    def before_epoch(self) -> None: ...
    def before_batch(self, batch: Any) -> None: ...
    def after_batch(self, batch: Any) -> None: ...
    def after_epoch(self) -> None: ...
    def after_training(self) -> None: ...
    def on_resumption(self) -> None: ...
    def on_interrupt(self) -> None: ...
    def on_error(self, exception: BaseException | None = None) -> None: ...

    def handles(self, callback_name: str) -> bool:
        """Whether :meth:`dispatch` of ``callback_name`` may do anything: the main loop
        calls only those extensions between batches (a plain ``TrainingExtension``
        handles what its class overrides)."""
        cls = type(self)
        if cls.dispatch is not TrainingExtension.dispatch or "dispatch" in self.__dict__:
            return True
        if callback_name in self.__dict__:  # a method set on the instance
            return True
        return getattr(cls, callback_name) is not getattr(TrainingExtension, callback_name)

    def batches_until_needed(self, iterations_done: int) -> int | None:
        """How many more batches may run before this extension needs control.

        The main loop may run that many training steps in one compiled call
        (``lax.scan``). ``1`` means "after the next batch" (always safe);
        ``None`` means "not before the epoch ends". A plain
        ``TrainingExtension`` overrides ``before_batch``/``after_batch`` or
        not; when it does, it needs every batch.
        """
        cls = type(self)
        if (
            cls.before_batch is TrainingExtension.before_batch
            and cls.after_batch is TrainingExtension.after_batch
            and cls.dispatch is TrainingExtension.dispatch
        ):
            return None
        return 1

    def get_state(self) -> dict[str, Any]:
        """JSON-able state to checkpoint (default: none)."""
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`get_state` returned."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class _Every:
    def __init__(self, key: str, n: int) -> None:
        self.key, self.n = key, n

    def __call__(self, log: Any) -> bool:
        return log.status[self.key] % self.n == 0


class _AfterN:
    """Fires at the first call with ``status[key] >= n`` (``once``: only then)."""

    def __init__(self, key: str, n: int, once: bool = True) -> None:
        self.key, self.n, self.once, self.fired = key, n, once, False

    def __call__(self, log: Any) -> bool:
        if (not self.once or not self.fired) and log.status[self.key] >= self.n:
            self.fired = True
            return True
        return False


class _FirstEpoch:
    def __init__(self, predicate: Predicate | None = None) -> None:
        self.predicate = predicate

    def __call__(self, log: Any) -> bool:
        if log.status["epochs_done"] != 0:
            return False
        return self.predicate is None or bool(self.predicate(log))


class SimpleExtension(TrainingExtension):
    """An extension with one :meth:`do` method run under conditions.

    Args:
        name: see :class:`TrainingExtension`.
        default_conditions: the subclass's defaults, e.g.
            ``{"after_epoch": True}``; the user's conditions replace those of
            their kind (see "Default conditions" in the module docstring).
        **conditions: the keywords of the module table (``after_epoch=True``,
            ``every_n_batches=10`` ...).
    """

    #: whether batch and epoch schedules given replace each other's defaults
    #: (an extension that acts on one schedule, like ``TrackTheBest``)
    single_schedule: ClassVar[bool] = False

    def __init__(
        self,
        name: str | None = None,
        default_conditions: dict[str, Any] | None = None,
        **conditions: Any,
    ) -> None:
        super().__init__(name)
        self.conditions: list[tuple[str, Predicate | None, tuple]] = []
        merged = merge_conditions(dict(default_conditions or {}), conditions, self.single_schedule)
        self.set_conditions(**merged)

    def set_conditions(self, **conditions: Any) -> SimpleExtension:
        """Replace all conditions by those given as keywords; returns ``self``."""
        self.conditions = []
        for key, value in conditions.items():
            if key not in CONDITION_KEYWORDS:
                raise ExtensionError(
                    f"{type(self).__name__} got an unknown condition {key!r}"
                    f"{did_you_mean(key, CONDITION_KEYWORDS)}; "
                    f"known: {', '.join(CONDITION_KEYWORDS)}"
                )
            if value is None or value is False:
                continue
            if key in BOOLEAN_TRIGGERS:
                self.add_condition([key])
                continue
            n = int(value)
            if n <= 0 or isinstance(value, bool):
                raise ExtensionError(f"{key} must be a positive integer, got {value!r}")
            if key == "every_n_batches":
                self.add_condition(["after_batch"], _Every("iterations_done", n))
            elif key == "every_n_epochs":
                self.add_condition(["after_epoch"], _Every("epochs_done", n))
            elif key == "after_n_batches":
                self.add_condition(["after_batch"], _AfterN("iterations_done", n))
            else:
                self.add_condition(["after_epoch"], _AfterN("epochs_done", n))
        return self

    def add_condition(
        self,
        callbacks_names: Sequence[str] | str,
        predicate: Predicate | None = None,
        arguments: Sequence[Any] | None = None,
    ) -> SimpleExtension:
        """Also run ``do(callback_name, *event_args, *arguments)`` on these callbacks.

        Args:
            callbacks_names: a list of main-loop events (``["after_batch"]``
                ...) or Blocks' ``"before_first_epoch"``.
            predicate: optional ``predicate(log) -> bool``; runs only when true.
            arguments: extra positional arguments for :meth:`do`.

        Raises:
            ExtensionError: for a bare string (as Blocks: a list is needed) or
                an unknown name.
        """
        if isinstance(callbacks_names, str):
            raise ExtensionError(
                f"add_condition takes a list of callback names, got the string "
                f"{callbacks_names!r}; write [{callbacks_names!r}]"
            )
        for name in callbacks_names:
            if name == "before_first_epoch":
                self.conditions.append(
                    ("before_epoch", _FirstEpoch(predicate), tuple(arguments or ()))
                )
                continue
            if name not in CALLBACKS:
                known = CALLBACKS + ("before_first_epoch",)
                raise ExtensionError(
                    f"unknown callback {name!r}{did_you_mean(name, known)}; "
                    f"known: {', '.join(known)}"
                )
            self.conditions.append((name, predicate, tuple(arguments or ())))
        return self

    @staticmethod
    def parse_args(which_callback: str, args: Sequence[Any]) -> tuple[tuple, tuple]:
        """Split :meth:`do`'s arguments into ``(from_main_loop, from_user)`` (Blocks).

        ``before_batch``/``after_batch`` get the batch and ``on_error`` the
        exception from the main loop; the rest come from ``add_condition``.
        """
        args = tuple(args)
        if which_callback in ("before_batch", "after_batch", "on_error"):
            return args[:1], args[1:]
        return (), args

    def do(self, which_callback: str, *args: Any) -> None:
        """Do the extension's work; ``which_callback`` names the event."""
        raise NotImplementedError

    def handles(self, callback_name: str) -> bool:
        """Whether a condition names ``callback_name`` (or a subclass dispatches
        itself); what it knows is refreshed when the list :attr:`conditions` is
        replaced or changes length."""
        if type(self).dispatch is not SimpleExtension.dispatch or "dispatch" in self.__dict__:
            return True
        return self.has_condition(callback_name)

    def conditions_key(self) -> tuple[int, int]:
        """Changes when :attr:`conditions` is replaced or changes length: what was
        derived from the conditions (the events handled, a report's path) is
        derived again then."""
        conditions = self.conditions
        return (id(conditions), len(conditions))

    def has_condition(self, callback_name: str) -> bool:
        """Whether one of :attr:`conditions` is on ``callback_name``."""
        key = self.conditions_key()
        if self.__dict__.get("_handled_key") != key:
            self._handled = frozenset(name for name, _, _ in self.conditions)
            self._handled_key = key
        return callback_name in self._handled

    def dispatch(self, callback_name: str, *args: Any) -> None:
        for name, predicate, arguments in self.conditions:
            if name != callback_name:
                continue
            if predicate is not None:
                log = self.main_loop.log if self.main_loop is not None else None
                if not predicate(log):
                    continue
            self.do(callback_name, *(args + arguments))

    # -- knowing ahead when control is needed (for multi-step calls) ---------
    def batches_until_needed(self, iterations_done: int) -> int | None:
        soonest: int | None = None
        for name, predicate, _ in self.conditions:
            if name not in ("before_batch", "after_batch"):
                continue
            if name == "before_batch" or predicate is None:
                return 1
            if isinstance(predicate, _Every):
                k = predicate.n - iterations_done % predicate.n
            elif isinstance(predicate, _AfterN):
                if predicate.fired and predicate.once:
                    continue
                k = max(predicate.n - iterations_done, 1)
            elif hasattr(predicate, "batches_until_true"):
                k = predicate.batches_until_true(iterations_done)
                if k is None:
                    continue
            else:
                return 1
            soonest = k if soonest is None else min(soonest, k)
        return soonest

    # -- state ---------------------------------------------------------------
    def _fired_flags(self) -> list[bool]:
        return [p.fired for _, p, _ in self.conditions if isinstance(p, _AfterN)]

    def get_state(self) -> dict[str, Any]:
        flags = self._fired_flags()
        return {"after_n_fired": flags} if flags else {}

    def set_state(self, state: dict[str, Any]) -> None:
        flags = state.get("after_n_fired", [])
        preds = [p for _, p, _ in self.conditions if isinstance(p, _AfterN)]
        for p, f in zip(preds, flags, strict=False):
            p.fired = bool(f)
