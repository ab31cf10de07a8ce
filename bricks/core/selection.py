"""Selecting bricks and parameters by path, as Blocks' ``Selector`` does.

A path names bricks from the selector's top bricks down, one component per
level: ``"/mlp/linear_0"``. A component may hold shell-style wildcards
(``*``, ``?``, ``[ab]``) matched against one brick name: ``"/mlp/linear_*"``.
A path ending in ``.name`` selects parameters: ``"/mlp/linear_0.W"``,
``"/mlp/*.b"``.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Any

from bricks.core.brick import Brick
from bricks.core.tracing import Variable
from bricks.errors import SelectionError

__all__ = ["Selector", "Path"]


class Path:
    """A parsed selection path, as Blocks' ``blocks.select.Path``.

    ``Path.parse("/mlp/linear_0.W").nodes`` is
    ``(BrickName("mlp"), BrickName("linear_0"), ParameterName("W"))``;
    paths compare and hash by their nodes.

    >>> Path.parse("/brick1/brick2") == Path.parse("/brick1/brick2")
    True
    >>> str(Path.parse("/mlp/linear_0.W"))
    '/mlp/linear_0.W'
    """

    class BrickName(str):
        """A brick component of a path (``/name``)."""

        def part(self) -> str:
            return "/" + self

    class ParameterName(str):
        """The parameter component of a path (``.name``)."""

        def part(self) -> str:
            return "." + self

    def __init__(self, nodes: Iterable[str]) -> None:
        self.nodes = tuple(nodes)

    @classmethod
    def parse(cls, string: str) -> Path:
        """Parse ``"/brick/child.parameter"`` (raises :class:`SelectionError`)."""
        if not isinstance(string, str) or not string.startswith("/"):
            raise SelectionError(f"a path starts with '/', like '/mlp/linear_0.W'; got {string!r}")
        bricks, dot, parameter = string[1:].partition(".")
        names = bricks.split("/")
        if any(n == "" for n in names) or (dot and not parameter) or "." in parameter:
            raise SelectionError(f"malformed path {string!r}")
        nodes: list[str] = [cls.BrickName(n) for n in names]
        if dot:
            nodes.append(cls.ParameterName(parameter))
        return cls(nodes)

    def __str__(self) -> str:
        return "".join(node.part() for node in self.nodes)

    def __repr__(self) -> str:
        return f"Path({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Path) and [(type(n), n) for n in self.nodes] == [
            (type(n), n) for n in other.nodes
        ]

    def __hash__(self) -> int:
        return hash(tuple((type(n).__name__, str(n)) for n in self.nodes))


def _unique(bricks: Iterable[Brick]) -> list[Brick]:
    seen: set[int] = set()
    out = []
    for b in bricks:
        if id(b) not in seen:
            seen.add(id(b))
            out.append(b)
    return out


class Selector:
    """A set of bricks to select from by path.

    Args:
        bricks: one brick or several (usually the roots of a model).

    >>> from bricks.core import MLP, Tanh, Identity
    >>> mlp = MLP([Tanh(), Identity()], [3, 4, 2])
    >>> [brick.path for brick in Selector(mlp).select("/mlp/linear_*").bricks]
    ['/mlp/linear_0', '/mlp/linear_1']
    >>> sorted(Selector(mlp).select("/mlp/*.b"))
    ['/mlp/linear_0.b', '/mlp/linear_1.b']
    >>> Selector(mlp).select("/mlp/linear_1.W")["/mlp/linear_1.W"].shape
    (4, 2)
    """

    def __init__(self, bricks: Brick | Iterable[Brick]) -> None:
        self.bricks: list[Brick] = _unique([bricks] if isinstance(bricks, Brick) else bricks)

    def __repr__(self) -> str:
        return f"Selector({self.bricks!r})"

    def select(self, path: str) -> Selector | dict[str, Variable]:
        """Bricks (a new :class:`Selector`) or parameters (a dict path → variable)
        matching ``path``; no match gives an empty result."""
        if not isinstance(path, str) or not path.startswith("/"):
            raise SelectionError(
                f"a selection path starts with '/' and names bricks from the top, like "
                f"'/mlp/linear_0' or '/mlp/linear_0.W'; got {path!r}"
            )
        brick_part, dot, parameter = path[1:].partition(".")
        components = brick_part.split("/") if brick_part else []
        if any(c == "" for c in components) or (dot and not parameter):
            raise SelectionError(f"empty component in selection path {path!r}")
        current = list(self.bricks)
        for level, component in enumerate(components):
            candidates = current if level == 0 else [c for b in current for c in b.children]
            current = _unique(b for b in candidates if fnmatchcase(b.name, component))
        if not dot:
            return Selector(current)
        out: dict[str, Variable] = {}
        for brick in current:
            _allocated(brick)
            for variable in brick.parameters:
                if fnmatchcase(variable.name, parameter):
                    out[variable.path] = variable
        return out

    def get_parameters(self) -> dict[str, Variable]:
        """Every parameter of the selected bricks and their descendants, by path."""
        out: dict[str, Variable] = {}
        for brick in self.bricks:
            _allocated(brick)
            for b in brick.iter_bricks():
                for variable in b.parameters:
                    out[variable.path] = variable
        return out

    def get_parameter_values(self) -> dict[str, Any]:
        """Current values of :meth:`get_parameters`, by path."""
        values: dict[str, Any] = {}
        for brick in self.bricks:
            values.update(brick.get_parameter_values())
        return values


def _allocated(brick: Brick) -> None:
    """Allocate from the root, so parents push their configuration first."""
    if not all(b.allocated for b in brick.iter_bricks()):
        brick.root.allocate()
