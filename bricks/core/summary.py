"""A readable table of a brick tree: paths, classes, settings, parameters.

``brick.summary()`` returns the table as text (``print(brick.summary())``),
like Keras' ``Model.summary()`` and Flax's ``tabulate``: one row per brick,
indented by depth, with the configuration that decides its parameters (its
allocation settings: dimensions), then one row per parameter with its
shape, roles and size, and the total number of parameter values.

>>> from bricks.core import MLP, Tanh, Softmax
>>> mlp = MLP([Tanh(), Softmax()], [4, 3, 2])
>>> print(mlp.summary())  # doctest: +NORMALIZE_WHITESPACE
path                  class    settings / shape        roles   size
/mlp                  MLP      dims=[4, 3, 2]
  /mlp/linear_0       Linear   input_dim=4, output_dim=3
    .W                         (4, 3)                  WEIGHT  12
    .b                         (3,)                    BIAS    3
  /mlp/tanh           Tanh
  /mlp/linear_1       Linear   input_dim=3, output_dim=2
    .W                         (3, 2)                  WEIGHT  6
    .b                         (2,)                    BIAS    2
  /mlp/softmax        Softmax
total: 23 parameter values in 4 parameters of 5 bricks
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bricks.core.brick import Brick

__all__ = ["summary"]


def _setting(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_setting(v) for v in value) + "]"
    if hasattr(value, "name") and hasattr(value, "path"):  # a brick given as a setting
        return type(value).__name__
    if callable(value) and hasattr(value, "__name__"):
        return value.__name__
    return str(value)


def _settings(brick: Brick) -> str:
    names: list[str] = []
    for klass in reversed(type(brick).__mro__):
        for name in klass.__dict__.get("allocation_config", ()):
            if name not in names:
                names.append(name)
    shown = []
    for name in names:
        value = getattr(brick, name, None)
        if value is not None and not (isinstance(value, (list, tuple)) and not value):
            shown.append(f"{name}={_setting(value)}")
    return ", ".join(shown)


def summary(brick: Brick) -> str:
    """The brick tree of ``brick`` as a text table (see the module docstring).

    Allocates the tree if needed (parameter shapes come from allocation), so
    every dimension must be known; values need not be initialized.
    """
    specs = brick.parameter_specs()  # allocates; refuses two parameters on one path
    rows: list[tuple[str, str, str, str, str]] = []
    base_depth = brick.path.count("/")

    def walk(node: Brick) -> None:
        depth = node.path.count("/") - base_depth
        indent = "  " * depth
        rows.append((indent + node.path, type(node).__name__, _settings(node), "", ""))
        for name in node._specs:
            spec = specs[f"{node.path}.{name}"]
            roles = ", ".join(str(role) for role in spec.roles)
            size = math.prod(spec.shape)
            rows.append((indent + "  ." + name, "", str(spec.shape), roles, str(size)))
        for child in node.children:
            walk(child)

    walk(brick)
    header = ("path", "class", "settings / shape", "roles", "size")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    total = sum(math.prod(spec.shape) for spec in specs.values())
    n_bricks = sum(1 for _ in brick.iter_bricks())
    lines.append(
        f"total: {total:,} parameter values in {len(specs)} parameters of {n_bricks} bricks"
    )
    return "\n".join(lines)
