"""Blocks' ``lazy`` decorator for brick constructors.

Blocks bricks declared their lazy configuration with
``@lazy(allocation=[...], initialization=[...])`` on ``__init__``: those
arguments may be left out (they are set later, by the user or a parent).
bricks keeps the spelling so ported bricks work unchanged: a lazy argument
that is not given arrives as ``None``, and the decorated class lists the
allocation arguments in ``allocation_args``.

>>> from bricks.core import Brick
>>> class Scale(Brick):
...     allocation_config = ("factor",)
...     @lazy(allocation=["factor"])
...     def __init__(self, factor, **kwargs):
...         super().__init__(**kwargs)
...         self.factor = factor
>>> Scale().factor is None, Scale(2).factor
(True, 2)
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from bricks.errors import LazyArgumentError

__all__ = ["lazy"]


def lazy(
    allocation: Sequence[str] = (), initialization: Sequence[str] = ()
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Make the named constructor arguments optional (``None`` when not given).

    Args:
        allocation: arguments that decide parameter shapes (dimensions).
        initialization: arguments that decide parameter values (schemes).

    Raises:
        LazyArgumentError: (a ``ValueError``) when an argument is given both
            by position and by keyword, or a name is not an argument of the
            decorated function.
    """
    names = [*allocation, *initialization]

    def decorate(init: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(init)
        params = list(signature.parameters)[1:]
        unknown = [n for n in names if n not in params]
        if unknown:
            raise LazyArgumentError(
                f"lazy({unknown}) on {init.__qualname__}: not arguments of it; it takes {params}"
            )

        @functools.wraps(init)
        def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
            positional = params[: len(args)]
            twice = [n for n in positional if n in kwargs]
            if twice:
                raise LazyArgumentError(
                    f"{type(self).__name__}: {twice[0]!r} was given both by position and as "
                    f"a keyword ({twice[0]}={kwargs[twice[0]]!r}); give it once"
                )
            for name in names:
                if name not in positional and name not in kwargs:
                    kwargs[name] = None
            return init(self, *args, **kwargs)

        wrapped._lazy_allocation = list(allocation)  # type: ignore[attr-defined]
        wrapped._lazy_initialization = list(initialization)  # type: ignore[attr-defined]
        return wrapped

    return decorate
