"""CompositeExtension: one extension that runs several others (Blocks' name).

>>> from bricks.extensions import FinishAfter, Printing
>>> bundle = CompositeExtension([Printing(), FinishAfter(after_n_epochs=1)])
>>> [type(e).__name__ for e in bundle.sub_extensions]
['Printing', 'FinishAfter']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bricks.extensions.base import SimpleExtension

__all__ = ["CompositeExtension"]


class CompositeExtension(SimpleExtension):
    """Dispatch every event to sub-extensions, and run its own :meth:`do` on its conditions.

    Args:
        sub_extensions: the extensions it manages; each keeps its own
            conditions and is dispatched in this order.
        run_before_children: whether its own conditions are checked (and
            :meth:`do` run) before the sub-extensions' (default) or after.
        name: see :class:`~bricks.extensions.TrainingExtension`.
        **conditions: when its own :meth:`do` runs (none by default).

    Setting ``main_loop`` sets it on every sub-extension; the main loop's
    ``set_main_loop`` reaches them too (a sub-extension that registers
    monitors with the algorithm does it then). Its state holds the
    sub-extensions' states by name.
    """

    def __init__(
        self,
        sub_extensions: Sequence[Any],
        run_before_children: bool = True,
        name: str | None = None,
        **conditions: Any,
    ) -> None:
        self.sub_extensions = list(sub_extensions)
        self.run_before_children = bool(run_before_children)
        super().__init__(name=name, **conditions)

    @property
    def main_loop(self) -> Any:
        return self.__dict__.get("_main_loop")

    @main_loop.setter
    def main_loop(self, value: Any) -> None:
        self._main_loop = value
        for sub in self.__dict__.get("sub_extensions", []):
            sub.main_loop = value

    def set_main_loop(self, main_loop: Any) -> None:
        self._main_loop = main_loop
        for sub in self.sub_extensions:
            if hasattr(sub, "set_main_loop"):
                sub.set_main_loop(main_loop)
            else:
                sub.main_loop = main_loop

    def dispatch(self, callback_name: str, *args: Any) -> None:
        if self.run_before_children:
            super().dispatch(callback_name, *args)
        for sub in self.sub_extensions:
            sub.dispatch(callback_name, *args)
        if not self.run_before_children:
            super().dispatch(callback_name, *args)

    def do(self, which_callback: str, *args: Any) -> None:
        """Its own work; none by default (subclasses override it)."""

    def batches_until_needed(self, iterations_done: int) -> int | None:
        needs = [super().batches_until_needed(iterations_done)]
        needs += [sub.batches_until_needed(iterations_done) for sub in self.sub_extensions]
        known = [n for n in needs if n is not None]
        return min(known) if known else None

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        state["sub_extensions"] = {
            getattr(sub, "name", str(i)): sub.get_state()
            for i, sub in enumerate(self.sub_extensions)
        }
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        saved = state.get("sub_extensions", {})
        for i, sub in enumerate(self.sub_extensions):
            key = getattr(sub, "name", str(i))
            if key in saved:
                sub.set_state(saved[key])
