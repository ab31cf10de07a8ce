"""Text views of a :class:`~bricks.graph.ComputationGraph`.

``str(cg)`` (:func:`graph_summary`) is meant to be read: a header with the
function, its inputs and outputs and the counts, then the variables grouped
under the brick that made them, in brick-tree order and indented like
``brick.summary()``. Parameters come first in each group, with their shape
and size. A variable recorded inside a scan step is one row with its
per-step shape and a ``[scan k ×T]`` marker, and the variables of repeated
applications of one brick share a row that says ``applied n×``. Each row
shows the variable's tag relative to its brick, so the full tag is
``[scan prefix/] + brick path + the row's tag`` (the scans' prefixes are
listed in the header); braces stand for several tags (``.apply.{states,
cells}``) and ``(+#1, #2)`` for the tags of later calls. A tag that does not
start with its brick's path is shown whole and marked ``(whole tag)``.

``cg.table()`` (:func:`graph_table`) is the flat table, one row per
variable with its full tag, roles, name, shape and dtype, for scripts that
parse it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bricks.errors import GraphError

from ._graph import _PLACEHOLDER_DIMS

if TYPE_CHECKING:
    from bricks.core.tracing import Variable

    from ._graph import ComputationGraph

__all__ = ["graph_repr", "graph_summary", "graph_table"]

WIDTH = 100  # no line of the summary is longer
_MERGED = 42  # a brace row's tag is at most this long
_MIN_WIDTHS = (24, 9, 13)  # the tag, roles and shape columns shrink to these at most
_REPEAT = re.compile(r"#(\d+)$")


def _function_name(cg: ComputationGraph) -> str:
    return getattr(cg.fn, "__name__", repr(cg.fn))


def _shape(shape: Sequence[Any] | None) -> str:
    if shape is None:
        return "?"
    dims = [str(d) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _dtype(dtype: Any) -> str:
    return "?" if dtype is None else np.dtype(dtype).name


def _roles(roles: Sequence[Any]) -> str:
    return ",".join(map(repr, roles))


def _clip(text: str, width: int, middle: bool = False) -> str:
    """``text`` in at most ``width`` characters; an ellipsis marks a cut."""
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    if middle:
        head = (width - 1) // 2
        return text[:head] + "…" + text[len(text) - (width - 1 - head) :]
    return text[: width - 1] + "…"


def _size(shape: Sequence[Any] | None) -> int | None:
    if shape is None or not all(isinstance(d, (int, np.integer)) for d in shape):
        return None
    return math.prod(int(d) for d in shape)


def graph_table(cg: ComputationGraph) -> str:
    """The flat table: a header line, then one row per variable and output
    (tag, roles, name, shape, dtype), parameters after the intermediates,
    in trace order. Its format does not change; scripts may parse it."""
    rows = [("tag", "roles", "name", "shape", "dtype")]
    for v in cg.variables + cg.outputs:
        rows.append((v.tag, _roles(v.roles), v.name, _shape(v.shape), _dtype(v.dtype)))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    head = (
        f"ComputationGraph of {_function_name(cg)!r}: inputs "
        f"{cg.inputs}, {len(cg.parameters)} parameters, {len(cg.variables)} variables"
    )
    return "\n".join([head, *lines])


def graph_repr(cg: ComputationGraph) -> str:
    """One short line: function, inputs, outputs and counts."""
    total = sum(_size(p.shape) or 0 for p in cg.parameters)
    inputs = _clip(", ".join(cg.inputs), 30)
    outputs = _clip(", ".join(v.name for v in cg.outputs), 30)
    return (
        f"<ComputationGraph {_clip(_function_name(cg), 24)!r} inputs=[{inputs}] "
        f"outputs=[{outputs}] {len(cg.parameters)} parameters ({total:,} values)>"
    )


# -- the grouped summary -------------------------------------------------------------
class _Scans:
    """The graph's scans, numbered from 1 in trace order."""

    def __init__(self, scans: Sequence[str]) -> None:
        self.scans = list(scans)
        self.number = {s: i + 1 for i, s in enumerate(self.scans)}

    def chain(self, scope: str) -> list[str]:
        """The scans enclosing ``scope``'s variables, outermost first."""
        return [s for s in self.scans if scope == s or scope.startswith(s + "/")]


def _local_tag(v: Variable) -> str:
    """The tag without its scan prefix."""
    if v.scan_scope and v.tag.startswith(v.scan_scope + "/"):
        return v.tag[len(v.scan_scope) + 1 :]
    return v.tag


def _relative(v: Variable) -> tuple[str, int]:
    """The tag relative to the brick path and the repeat index of the call
    (``"#2"`` marks the third call of an application; 0 for the first).
    A tag that does not start with its brick's path (a custom ``base`` given
    to ``annotate``) is returned whole; :meth:`_Row.cells` says so."""
    local = _local_tag(v)
    if v.brick is None or not local.startswith(v.brick.path):
        return local, 0
    rel = local[len(v.brick.path) :]
    stems = [f".{v.name}"] + ([f".{v.application}.{v.name}"] if v.application else [])
    match = _REPEAT.search(rel)
    if rel not in stems and match and rel[: match.start()] in stems:
        return rel[: match.start()], int(match[1])
    return rel, 0


def _repeats(ks: list[int]) -> str:
    """``" (+#1, #2)"``: the other calls' tag suffixes (a range when many)."""
    others = ks[1:]
    if not others:
        return ""
    if len(others) > 3 and others == list(range(others[0], others[-1] + 1)):
        return f" (+#{others[0]}..#{others[-1]})"
    return " (+" + ", ".join(f"#{k}" for k in others) + ")"


class _Row:
    """One row: a variable, the variables of its repeated calls, and the
    siblings merged into it (``.apply.{states,cells}``)."""

    def __init__(self, rel: str, v: Variable, step_shape: Any, marker: str) -> None:
        self.rel = rel
        self.first = v
        self.step_shape = step_shape
        self.marker = marker
        self.ks: list[int] = []
        self.leaves: list[str] = []
        # the row shows the whole tag (not relative to a brick's path)
        self.whole = v.brick is not None and not _local_tag(v).startswith(v.brick.path)

    def label(self) -> str:
        if self.leaves:
            stem = self.rel[: self.rel.rindex(".") + 1]
            rel = stem + "{" + ",".join(self.leaves) + "}"
        else:
            rel = self.rel
        k0 = self.ks[0]
        return rel + (f"#{k0}" if k0 else "") + _repeats(self.ks)

    def merge_key(self) -> tuple | None:
        """Rows with equal keys differ only in the last part of their tags."""
        v = self.first
        if v.path is not None or self.whole or "." not in self.rel:
            return None
        stem = self.rel[: self.rel.rindex(".") + 1]
        shape = (self.step_shape, _dtype(v.dtype))
        return (stem, v.scan_scope, _roles(v.roles), shape, self.marker, tuple(self.ks))

    def absorb(self, other: _Row) -> bool:
        """Merge ``other``'s tag into this row, unless the label grows too long."""
        leaves = self.leaves or [self.rel[self.rel.rindex(".") + 1 :]]
        leaves = [*leaves, other.rel[other.rel.rindex(".") + 1 :]]
        stem = self.rel[: self.rel.rindex(".") + 1]
        if len(stem) + len(",".join(leaves)) + 2 > _MERGED:
            return False
        self.leaves = leaves
        return True

    def cells(self, indent: str) -> tuple[str, str, str, str]:
        v = self.first
        shape = _shape(self.step_shape)
        if v.dtype is not None and _dtype(v.dtype) != "float32":
            shape += " " + _dtype(v.dtype)
        notes = []
        if v.path is not None:
            size = _size(v.shape)
            notes.append("?" if size is None else f"{size:,}")
        if self.marker:
            notes.append(self.marker)
        if self.whole:
            notes.append("(whole tag)")
        if len(self.ks) > 1:
            notes.append(f"applied {len(self.ks)}×")
        return indent + self.label(), _roles(v.roles), shape, " ".join(notes)


def _merge_siblings(rows: list[_Row]) -> list[_Row]:
    """Rows of one brick that differ only in the last part of their tags
    (an application's ``states`` and ``cells``) become one brace row."""
    merged: list[_Row] = []
    open_rows: dict[tuple, _Row] = {}
    for row in rows:
        key = row.merge_key()
        target = open_rows.get(key) if key is not None else None
        if target is not None and target.absorb(row):
            continue
        merged.append(row)
        if key is not None:
            open_rows[key] = row
    return merged


def _group_rows(variables: list[Variable], scans: _Scans) -> list[_Row]:
    """One row per variable, those of repeated calls (same relative tag,
    roles, per-step shape, dtype and scan) merged, in order of first call;
    then siblings merged (:func:`_merge_siblings`)."""
    rows: dict[tuple, _Row] = {}
    for v in variables:
        rel, k = _relative(v)
        chain = scans.chain(v.scan_scope) if v.scan_scope else []
        shape = tuple(v.shape) if v.shape is not None else None
        marker = ""
        if chain and shape is not None and len(shape) >= len(chain):
            lengths = "×".join(str(d) for d in shape[: len(chain)])
            marker = f"[scan {scans.number[chain[-1]]} ×{lengths}]"
            shape = shape[len(chain) :]
        key = (rel, v.scan_scope, _roles(v.roles), shape, _dtype(v.dtype), v.path)
        if v.path is not None or v.brick is None or rel == _local_tag(v):
            key = (v.tag,)  # parameters, brickless variables and whole tags: one row each
        row = rows.get(key)
        if row is not None and k in row.ks:  # not a repeat after all: its own row
            key = (*key, v.tag)
            row = None
        if row is None:
            row = rows[key] = _Row(rel, v, shape, marker)
        row.ks.append(k)
    return _merge_siblings(list(rows.values()))


def _brick_order(variables: list[Variable]) -> tuple[list[tuple[Any, int]], dict[int, list]]:
    """The bricks that made ``variables`` and their ancestors, in tree order
    (depth first from the roots, roots in order of first use), with depths;
    and each brick's variables, keyed by ``id(brick)``."""
    own: dict[int, list[Variable]] = {}
    roots: list[Any] = []
    for v in variables:
        if v.brick is None:
            continue
        own.setdefault(id(v.brick), []).append(v)
        root = v.brick.root
        if all(r is not root for r in roots):
            roots.append(root)
    order: list[tuple[Any, int]] = []
    seen: set[int] = set()

    def walk(brick: Any, depth: int) -> bool:
        start = len(order)
        order.append((brick, depth))
        seen.add(id(brick))
        used = id(brick) in own
        for child in brick.children:
            used = walk(child, depth + 1) or used
        if not used:
            del order[start:]
        return used

    for root in roots:
        walk(root, 0)
    # a brick outside its root's children (should not happen): still listed
    for v in variables:
        if v.brick is not None and id(v.brick) not in seen:
            seen.add(id(v.brick))
            order.append((v.brick, 0))
    return order, own


def _wrap(lead: str, items: list[str]) -> list[str]:
    """``lead`` and the comma-separated ``items`` in lines of at most
    :data:`WIDTH` characters, continued under the first item."""
    lines, line = [], lead
    for i, item in enumerate(items):
        text = item + ("," if i < len(items) - 1 else "")
        if line == lead:
            line += text
        elif len(line) + 1 + len(text) > WIDTH:
            lines.append(line)
            line = " " * len(lead) + text
        else:
            line += " " + text
    return [*lines, line]


def _header(cg: ComputationGraph, scans: _Scans) -> list[str]:
    placeholders = getattr(cg, "_placeholder_sizes", False)

    def spec(name: str) -> str:
        shape, dtype = cg._specs[name]
        dims = tuple(
            d
            if d is not None
            else f"d{i}={_PLACEHOLDER_DIMS[i % len(_PLACEHOLDER_DIMS)]}"
            if placeholders
            else f"d{i}"
            for i, d in enumerate(shape)
        )
        return f"{name} {_shape(dims)} {_dtype(dtype)}"

    outputs = [f"{v.name} {_shape(v.shape)} {_dtype(v.dtype)}" for v in cg.outputs]
    tags = f"(tag{'s' if len(outputs) > 1 else ''} 'output:<name>')"
    n_values = sum(_size(p.shape) or 0 for p in cg.parameters)
    others = [v for v in cg.variables if v.path is None]
    n_step = sum(1 for v in others if v.scan_scope)
    counts = (
        f"{len(cg.parameters)} parameters ({n_values:,} values), {len(others)} other variables"
    )
    if scans.scans:
        plural = "s" if len(scans.scans) > 1 else ""
        counts += f" ({n_step} recorded per step in {len(scans.scans)} scan{plural})"
    lines = [
        f"ComputationGraph {_function_name(cg)!r}",
        *_wrap("  inputs:  ", [spec(n) for n in cg.inputs] or ["none"]),
        *_wrap("  outputs: ", [*outputs[:-1], f"{outputs[-1]}  {tags}"] if outputs else ["none"]),
        "  " + counts,
    ]
    if placeholders:
        note = "free sizes were traced with placeholder values (d0=5, ...); shapes show them"
        lines.append("  " + note)
    lengths: dict[str, Any] = {}  # a variable's leading axes: its enclosing scans' lengths
    for v in cg.variables:
        if v.scan_scope and v.shape is not None:
            for scope, length in zip(scans.chain(v.scan_scope), v.shape, strict=False):
                lengths.setdefault(scope, length)
    for s in scans.scans:
        steps = lengths.get(s, "?")
        lines.append(f"  scan {scans.number[s]}: {steps} steps, its variables' tags start {s}/")
    return [_clip(line, WIDTH, middle=True) for line in lines]


def _widths(cells: list[tuple[str, ...]]) -> list[int]:
    """Widths of the tag, roles and shape columns: their longest cells, the
    widest of them narrowed (down to :data:`_MIN_WIDTHS`) until a row and its
    longest note fit in :data:`WIDTH`."""
    widths = [max((len(r[i]) for r in cells), default=0) for i in range(3)]
    note = max((len(r[3]) for r in cells), default=0)
    while sum(widths) + 6 + note > WIDTH:
        room = [w - m for w, m in zip(widths, _MIN_WIDTHS, strict=True)]
        i = max(range(3), key=lambda j: (room[j], -j))
        if room[i] <= 0:
            break
        widths[i] -= 1
    return widths


def _layout(rows: list[tuple[str, ...]]) -> list[str]:
    """Aligned text of ``rows``: 4-cell rows in columns, 1-cell rows as is;
    a cell cut to its column shows an ellipsis where it was cut (a tag in its middle)."""
    widths = _widths([r for r in rows if len(r) == 4])
    lines = []
    for r in rows:
        if len(r) == 1:
            lines.append(_clip(r[0], WIDTH, middle=True))
            continue
        parts = [
            _clip(c, w, middle=(i == 0)).ljust(w)
            for i, (c, w) in enumerate(zip(r[:3], widths, strict=True))
        ]
        line = "  ".join([*parts, r[3]]).rstrip()
        lines.append(_clip(line, WIDTH))
    return lines


def graph_summary(cg: ComputationGraph, max_rows: int | None = None) -> str:
    """The readable view of ``cg`` (see the module docstring).

    Args:
        cg: the graph.
        max_rows: show at most this many rows below the header (bricks and
            variables); the last line then says how many were left out.
            ``None`` shows them all.
    """
    if max_rows is not None and (
        isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1
    ):
        raise GraphError(
            f"summary(max_rows=...): expected a positive int or None, got {max_rows!r}"
        )
    scans = _Scans(cg.scans)
    # parameters first in each group, then the other variables in trace order
    ordered = [*cg.parameters, *(v for v in cg.variables if v.path is None)]
    order, own = _brick_order(ordered)
    body: list[tuple[str, ...]] = [("brick / tag", "roles", "shape", "size, notes")]
    for brick, depth in order:
        indent = "  " * depth
        body.append((f"{indent}{brick.path}  {type(brick).__name__}",))
        for row in _group_rows(own.get(id(brick), []), scans):
            body.append(row.cells(indent + "  "))
    brickless = [v for v in ordered if v.brick is None]
    if brickless:
        body.append(("(no brick)",))
        body += [row.cells("  ") for row in _group_rows(brickless, scans)]
    lines = _layout(body)
    if max_rows is not None and len(lines) - 1 > max_rows:
        left = len(lines) - 1 - max_rows
        lines = [*lines[: max_rows + 1], f"... {left} more rows; cg.table() lists every variable"]
    return "\n".join([*_header(cg, scans), *lines])
