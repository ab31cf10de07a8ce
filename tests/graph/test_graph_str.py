"""``str(cg)``: the variables grouped by brick, scan steps and repeated calls
collapsed, every tag still readable; ``cg.table()``: the flat table.

The summary is checked by reading it back: every row is expanded to the
tags it stands for (brick path + row suffix, braces, ``(+#1, #2)``, the
scan's prefix from the header), and the result must be exactly the graph's
variables, each with its roles and (per-step) shape.
"""

import re

import jax.numpy as jnp
import numpy as np
import pytest

from bricks.core import (
    MLP,
    CategoricalCrossEntropy,
    Constant,
    IsotropicGaussian,
    Linear,
    LookupTable,
    Softmax,
    Tanh,
)
from bricks.core.tracing import annotate, scan
from bricks.errors import GraphError
from bricks.graph import ComputationGraph, collect_parameters
from bricks.recurrent import LSTM, RecurrentStack

T, VOCAB, EMBED, HIDDEN = 5, 11, 6, 8
INITS = {"weights_init": IsotropicGaussian(0.1), "biases_init": Constant(0.0)}


def lstm_lm_graph():
    """A 2-layer LSTM language model (as experiments/configs/char_lm.py)."""
    lookup = LookupTable(VOCAB, EMBED, name="embed", weights_init=INITS["weights_init"])
    stack = RecurrentStack([LSTM(dim=HIDDEN), LSTM(dim=HIDDEN)], name="stack", **INITS)
    to_stack = Linear(EMBED, stack.get_dim("inputs"), name="to_stack", **INITS)
    readout = Linear(HIDDEN, VOCAB, name="readout", **INITS)
    for i, brick in enumerate((lookup, stack, to_stack, readout)):
        brick.initialize(seed=i)
    top = RecurrentStack.suffix("states", 1)

    def cost(chars, targets):
        outputs = stack.apply(to_stack.apply(lookup.apply(chars)))
        named = dict(zip(stack.apply.outputs, outputs, strict=True))
        logits = readout.apply(named[top])
        return CategoricalCrossEntropy(from_logits=True).apply(targets, logits)

    seq = ((T, None), jnp.int32)
    return ComputationGraph(cost, chars=seq, targets=seq)


# -- reading the summary back ---------------------------------------------------------
LABEL = re.compile(
    r"^(?P<stem>[^{ ]*?)(?:\{(?P<leaves>[^}]*)\})?(?P<k>#\d+)?(?: \(\+(?P<more>[^)]*)\))?$"
)
SCAN = re.compile(r"^  scan (\d+): (\S+) steps, its variables' tags start (\S+)/$")
MARKER = re.compile(r"\[scan (\d+) ×([^\]]+)\]")


def _others(more):
    if more is None:
        return []
    if ".." in more:
        a, b = more.split("..")
        return [f"#{k}" for k in range(int(a[1:]), int(b[1:]) + 1)]
    return [m.strip() for m in more.split(",")]


def read_summary(text):
    """``{tag: (roles, shape cell, notes)}`` from the summary's rows, in order."""
    lines = text.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("brick / tag"))
    columns = [lines[top].index(name) for name in ("roles", "shape", "size, notes")]
    scans = {m[1]: m[3] for m in map(SCAN.match, lines[:top]) if m}
    rows = {}
    bricks = {}  # indentation of a brick's header -> its path
    brick = None
    for line in lines[top + 1 :]:
        indent = len(line) - len(line.lstrip())
        if line == "(no brick)":
            brick = ""
            continue
        head = re.fullmatch(r" *(/\S+)  [A-Z]\w*", line)
        if head:
            bricks[indent] = brick = head[1]
            continue
        if brick:
            assert bricks[indent - 2] == brick, line  # rows sit 2 deeper than their brick
        r, s, n = columns
        label, roles, shape, notes = (c.strip() for c in (line[:r], line[r:s], line[s:n], line[n:]))
        m = LABEL.match(label)
        assert m, label
        marker = MARKER.search(notes)
        prefix = scans[marker[1]] + "/" if marker else ""
        for leaf in m["leaves"].split(",") if m["leaves"] else [""]:
            for k in [m["k"] or "", *_others(m["more"])]:
                whole = "(whole tag)" in notes  # not relative to the brick's path
                tag = prefix + ("" if whole else brick) + m["stem"] + leaf + k
                assert tag not in rows, f"{tag} read twice"
                rows[tag] = (roles, shape, notes)
    return rows


def step_shape(cg, v):
    """A variable's per-step shape and its scans' lengths (outermost first)."""
    depth = sum(1 for s in cg.scans if v.scan_scope == s or v.scan_scope.startswith(s + "/"))
    return v.shape[depth:], v.shape[:depth]


def _shape_text(shape):
    dims = [str(d) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def check_every_variable_is_listed(cg):
    """Each variable appears once, under its brick, with its roles and shape."""
    text = str(cg)
    rows = read_summary(text)
    assert set(rows) == {v.tag for v in cg.variables}
    for v in cg.variables:
        roles, shape, notes = rows[v.tag]
        assert roles == ",".join(map(repr, v.roles)), v.tag
        dtype = np.dtype(v.dtype).name
        dtype = "" if dtype == "float32" else " " + dtype
        if v.scan_scope:
            per_step, lengths = step_shape(cg, v)
            assert shape == _shape_text(per_step) + dtype, (v.tag, shape)
            assert "×" + "×".join(map(str, lengths)) + "]" in notes, (v.tag, notes)
        else:
            assert shape == _shape_text(v.shape) + dtype, (v.tag, shape)
            assert "[scan" not in notes
    assert all(len(line) <= 100 for line in text.splitlines())
    return text, rows


# -- the 2-layer LSTM language model ------------------------------------------------
@pytest.fixture(scope="module")
def lm():
    return lstm_lm_graph()


def test_lstm_lm_summary_lists_every_variable_under_its_brick(lm):
    text, _ = check_every_variable_is_listed(lm)
    lines = text.splitlines()
    # both LSTM layers are groups of their own, inside the stack, in tree order
    heads = [line for line in lines if re.match(r"^ *(/\S+)  [A-Z]\w*$", line)]
    assert heads[:3] == ["/embed  LookupTable", "/to_stack  Linear", "/stack  RecurrentStack"]
    assert "  /stack/lstm#0  LSTM" in heads and "  /stack/lstm#1  LSTM" in heads
    assert heads.index("  /stack/lstm#0  LSTM") < heads.index("  /stack/lstm#1  LSTM")
    assert "    /stack/lstm#0/logistic  Logistic" in heads
    assert "(no brick)" not in lines  # the cost is a brick's too


def test_lstm_lm_parameters_come_first_with_their_numpy_sizes(lm):
    rows = read_summary(str(lm))
    values = lm.parameter_values()
    order = list(rows)
    for v in lm.parameters:
        size = np.asarray(values[v.path]).size
        assert rows[v.path][2] == f"{size:,}", v.path
        # before every other variable of its brick
        others = [u.tag for u in lm.variables if u.path is None and u.brick is v.brick]
        assert all(order.index(v.path) < order.index(t) for t in others), v.path
    total = sum(np.asarray(value).size for value in values.values())
    header = str(lm).splitlines()[3]
    assert header.startswith(f"  {len(values)} parameters ({total:,} values), ")
    # both LSTM layers' parameters are under their own paths
    for layer in ("lstm#0", "lstm#1"):
        assert f"/stack/{layer}.W_state" in rows and f"/stack/{layer}.initial_cells" in rows


def test_lstm_lm_collapses_scan_steps_and_repeated_calls(lm):
    text = str(lm)
    lines = text.splitlines()
    assert len(lines) < len(lm.variables)
    assert len(lines) < len(lm.table().splitlines())
    scan_vars = [v for v in lm.variables if v.scan_scope]
    assert len(scan_vars) > 10
    per_step = [line for line in lines if f"×{T}]" in line]
    assert 0 < len(per_step) < len(scan_vars) / 2
    # the step applies the logistic 3 times and tanh twice: one row each
    for act, n in (("logistic", 3), ("tanh", 2)):
        for layer in ("lstm#0", "lstm#1"):
            head = lines.index(f"    /stack/{layer}/{act}  {act.capitalize()}")
            row = lines[head + 1].split()
            assert row[-1] == f"{n}×" and row[-2] == "applied", row
            assert f"[scan {1 if layer == 'lstm#0' else 2} ×{T}]" in lines[head + 1]
    # the header names each scan, its length and its tags' prefix
    assert f"  scan 1: {T} steps, its variables' tags start /stack/lstm#0.apply.scan/" in lines
    assert "  inputs:  chars (5, d1) int32, targets (5, d1) int32" in lines


def test_every_parameter_tag_of_the_lm_is_in_the_summary(lm):
    rows = read_summary(str(lm))
    for v in lm.parameters:
        assert v.tag == v.path and v.path in rows
        assert rows[v.path][0] == ",".join(map(repr, v.roles))


def test_max_rows_shortens_and_table_keeps_the_flat_format(lm):
    short = lm.summary(max_rows=10).splitlines()
    full = str(lm).splitlines()
    top = next(i for i, line in enumerate(full) if line.startswith("brick / tag"))
    assert short[: top + 11] == full[: top + 11]
    assert short[-1] == f"... {len(full) - top - 11} more rows; cg.table() lists every variable"
    with pytest.raises(GraphError, match="positive int or None, got 0"):
        lm.summary(max_rows=0)
    table = lm.table().splitlines()
    assert table[0] == (
        f"ComputationGraph of 'cost': inputs ['chars', 'targets'], {len(lm.parameters)} "
        f"parameters, {len(lm.variables)} variables"
    )
    assert table[1].split() == ["tag", "roles", "name", "shape", "dtype"]
    assert len(table) == 2 + len(lm.variables) + len(lm.outputs)
    tags = [line.split()[0] for line in table[2:]]
    assert tags == [v.tag for v in lm.variables + lm.outputs]


def test_repr_is_one_short_line(lm):
    text = repr(lm)
    assert "\n" not in text and len(text) <= 100
    total = sum(np.asarray(v).size for v in lm.parameter_values().values())
    assert text == (
        f"<ComputationGraph 'cost' inputs=[chars, targets] outputs=[cost] "
        f"{len(lm.parameters)} parameters ({total:,} values)>"
    )


# -- other graphs -----------------------------------------------------------------------
def test_mlp_applied_twice_is_grouped_with_a_count():
    mlp = MLP([Tanh(), Softmax()], [4, 3, 2], name="mlp", **INITS)
    mlp.initialize(seed=0)
    cg = ComputationGraph(lambda x: (mlp.apply(x) + mlp.apply(2 * x)).sum(), x=(None, 4))
    text, rows = check_every_variable_is_listed(cg)
    lines = text.splitlines()
    assert lines[0] == "ComputationGraph '<lambda>'"
    assert lines[1] == "  inputs:  x (d0, 4) float32"
    assert lines[2] == "  outputs: output () float32  (tag 'output:<name>')"
    assert lines[3] == f"  4 parameters (23 values), {len(cg.variables) - 4} other variables"
    i = lines.index("  /mlp/linear_0  Linear")
    assert lines[i - 3] == "/mlp  MLP"  # then the MLP's own input and output rows
    assert lines[i + 1].split() == [".W", "WEIGHT", "(4,", "3)", "12"]
    assert lines[i + 2].split() == [".b", "BIAS", "(3,)", "3"]
    assert lines[i + 3].split() == [".apply.input_", "(+#1)", "INPUT", "(d0,", "4)"] + [
        "applied",
        "2×",
    ]
    assert lines[i + 4].split()[:3] == [".{W_norm,b_norm}", "(+#1)", "AUXILIARY"]
    assert "/mlp/linear_0.apply.output#1" in rows and "/mlp.apply.output#1" in rows


def test_a_variable_without_a_brick_and_nested_scans():
    act = Tanh(name="act")

    def fn(x):
        def outer(carry, x_t):
            def inner(c, x_tt):
                h = act.apply(c + x_tt)
                return h, annotate(2 * h, "twice")

            return scan(inner, carry, x_t, name="inner")

        _, ys = scan(outer, jnp.zeros(x.shape[2:]), x, name="outer")
        return annotate(ys.mean(), "error_rate")

    cg = ComputationGraph(fn, x=(3, 4, None))
    text, rows = check_every_variable_is_listed(cg)
    lines = text.splitlines()
    assert "  scan 1: 3 steps, its variables' tags start outer/" in lines
    assert "  scan 2: 4 steps, its variables' tags start outer/inner/" in lines
    i = lines.index("(no brick)")
    assert lines[i + 1].split() == ["twice", "(d2,)", "[scan", "2", "×3×4]"]
    assert lines[i + 2].split() == ["error_rate", "()"]
    assert rows["outer/inner//act.apply.output"][2] == "[scan 2 ×3×4]"


def test_wide_graphs_are_cut_to_100_characters_with_a_mark():
    name = "a_model_name_that_someone_chose_to_make_long_" * 2
    mlp = MLP([Tanh(), Tanh()], [4, 3, 2], name=name, **INITS)
    mlp.initialize(seed=0)
    long_tag = "an_annotated_variable_whose_name_is_far_too_long_for_one_column_of_a_table"
    inputs = ["first_input_with_a_long_name", "second_input_with_a_long_name", "third_input"]

    def fn(first_input_with_a_long_name, second_input_with_a_long_name, third_input):
        h = annotate(mlp.apply(first_input_with_a_long_name), long_tag)
        return h.sum() + second_input_with_a_long_name.sum() + third_input.sum()

    specs = [(None, 4), (None, 4, 5, 6), (2,)]
    cg = ComputationGraph(fn, **dict(zip(inputs, specs, strict=True)))
    lines = str(cg).splitlines()
    assert max(map(len, lines)) <= 100
    # the inputs wrap, continued under the first
    assert lines[1] == "  inputs:  first_input_with_a_long_name (d0, 4) float32,"
    assert lines[2] == (
        "           second_input_with_a_long_name (d0, 4, 5, 6) float32, third_input (2,) float32"
    )
    # a long path keeps its start and its end
    cut = [line for line in lines if line.endswith("/linear_0  Linear")]
    assert len(cut) == 1 and "…" in cut[0] and cut[0].startswith("  /a_model_name")
    # a long tag is cut in its middle; the table keeps it whole
    row = lines[lines.index("(no brick)") + 1]
    assert row.startswith("  an_annotated_variable") and "…" in row and row.endswith("(d0, 2)")
    assert long_tag in cg.table()


def test_placeholder_sizes_are_named_in_the_header():
    act = Tanh(name="act")

    def per_row(x):  # int() of a size cannot be traced symbolically: placeholders
        return act.apply(jnp.zeros(int(x.shape[0])) + x.sum())

    cg = ComputationGraph(per_row, x=(None, 2))
    lines = str(cg).splitlines()
    size = cg.outputs[0].shape[0]
    assert lines[1] == f"  inputs:  x (d0={size}, 2) float32"
    assert "  free sizes were traced with placeholder values (d0=5, ...); shapes show them" in lines
    assert lines[lines.index("/act  Tanh") + 1].split() == [".apply.input_", "INPUT", f"({size},)"]
    # a graph traced symbolically says nothing of placeholders
    assert "placeholder" not in str(ComputationGraph(lambda x: act.apply(x), x=(None, 2)))


def test_collected_parameters_and_a_custom_tag_are_listed():
    mlp = MLP([Tanh(), None], [3, 4, 2], name="mlp", **INITS)
    mlp.initialize(seed=0)
    lin = mlp.linear_transformations[0]

    def fn(x):
        h = mlp.apply(x)
        return annotate(h.sum(), "odd", brick=lin, base="elsewhere.odd")

    cg = collect_parameters(ComputationGraph(fn, x=(None, 3)), [lin.parameters[0]])
    text, rows = check_every_variable_is_listed(cg)
    assert rows["elsewhere.odd"][2] == "(whole tag)"
    assert rows["/mlp/linear_0.W:collected"][0] == "COLLECTED"
    assert "/collected_parameters.collected_parameters" in rows
