"""``brick.summary()``: the brick tree as a table a person can read."""

import math

import numpy as np

from bricks.core import Constant, IsotropicGaussian, Linear, LookupTable, Softmax
from bricks.core.sequences import Sequence
from bricks.recurrent import LSTM, RecurrentStack


def _lstm_lm():
    inits = {"weights_init": IsotropicGaussian(0.1), "biases_init": Constant(0)}
    lookup = LookupTable(length=64, dim=32, name="embed", weights_init=inits["weights_init"])
    stack = RecurrentStack([LSTM(dim=32), LSTM(dim=32)], name="stack", **inits)
    readout = Linear(32, 64, name="readout", **inits)
    model = Sequence([lookup.apply, stack.apply, readout.apply, Softmax().apply], name="lm")
    model.initialize(seed=0)
    return model


def test_summary_of_a_two_layer_lstm_language_model():
    model = _lstm_lm()
    text = model.summary()
    values = model.get_parameter_values()
    # every parameter appears with its shape and size, under its brick's path
    for path, value in values.items():
        brick_path, name = path.rsplit(".", 1)
        assert brick_path in text
        rows = [line for line in text.splitlines() if line.strip().startswith("." + name)]
        assert any(str(tuple(value.shape)) in row and row.split()[-1] == str(value.size)
                   for row in rows), (path, rows)
    total = sum(int(np.prod(v.shape)) for v in values.values())
    assert text.splitlines()[-1].startswith(f"total: {total:,} parameter values in {len(values)}")
    assert "dim=32" in text and "length=64" in text
    assert "/lm/stack/lstm#0" in text and "/lm/stack/lstm#1" in text


def test_summary_counts_match_parameter_specs_before_initialization():
    mlp_in, mlp_out = 7, 5
    brick = Linear(mlp_in, mlp_out, name="proj")
    text = brick.summary()  # allocation is enough: shapes are known
    assert text.splitlines()[-1].startswith(
        f"total: {math.prod((mlp_in, mlp_out)) + mlp_out} parameter values in 2 parameters"
    )
