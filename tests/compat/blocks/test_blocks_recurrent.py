"""Blocks' tests/bricks/test_recurrent.py, in bricks' idiom."""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np
import pytest
from numpy.testing import assert_allclose

from bricks.core import (
    INITIAL_STATE,
    Constant,
    IdentityInit,
    IsotropicGaussian,
    Orthogonal,
    Tanh,
    application,
)
from bricks.graph import ComputationGraph, VariableFilter
from bricks.recurrent import (
    LSTM,
    RECURRENTSTACK_SEPARATOR,
    BaseRecurrent,
    Bidirectional,
    GatedRecurrent,
    RecurrentStack,
    SimpleRecurrent,
    recurrent,
)

F32 = np.float32


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _x_val_perm4():
    x_val = 0.1 * np.asarray(list(itertools.permutations(range(4))), dtype=F32)
    return np.ones((24, 4, 3), dtype=F32) * x_val[..., None]


def _x_val_perm12():
    x_val = 0.1 * np.asarray(list(itertools.islice(itertools.permutations(range(12)), 0, 24)),
                             dtype=F32)
    return np.ones((24, 4, 12), dtype=F32) * x_val[:, None, :]


def _mask():
    mask_val = np.ones((24, 4), dtype=F32)
    mask_val[12:24, 3] = 0
    return mask_val


def _initial_states(fn, **inputs):
    cg = ComputationGraph(fn, **inputs)
    return VariableFilter(roles=[INITIAL_STATE])(cg.parameters)


class RecurrentWrapperTestClass(BaseRecurrent):
    def __init__(self, dim, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim

    def get_dim(self, name):
        if name in ["inputs", "states", "outputs", "states_2", "outputs_2"]:
            return self.dim
        if name == "mask":
            return 0
        return super().get_dim(name)

    @recurrent(
        sequences=["inputs", "mask"],
        states=["states", "states_2"],
        outputs=["outputs", "states_2", "outputs_2", "states"],
        contexts=[],
    )
    def apply(self, inputs=None, states=None, states_2=None, mask=None):
        # masking is the decorator's job in bricks (mask=None here anyway)
        next_states = states + inputs
        next_states_2 = states_2 + 0.5
        outputs = 10 * next_states
        outputs_2 = 10 * next_states_2
        return outputs, next_states_2, outputs_2, next_states


@pytest.mark.ported("tests/bricks/test_recurrent.py::TestRecurrentWrapper::test")
def test_recurrent_wrapper():
    brick = RecurrentWrapperTestClass(dim=1)
    x_val = np.ones((5, 1, 1), dtype=F32)
    out, h2, out_2, h = brick.apply(inputs=x_val, mask=None)
    # this also tests that the initial states are zeros
    assert_allclose(h, x_val.cumsum(axis=0))
    assert_allclose(h2, 0.5 * (np.arange(5).reshape((5, 1, 1)) + 1))
    assert_allclose(np.asarray(h) * 10, out)
    assert_allclose(np.asarray(h2) * 10, out_2)


class RecurrentBrickWithBugInInitialStates(BaseRecurrent):
    @recurrent(sequences=[], contexts=[], states=["states"], outputs=["states"])
    def apply(self, states):
        return states

    @recurrent(sequences=[], contexts=[], states=["states2"], outputs=["states2"])
    def apply2(self, states):
        return states

    def get_dim(self, name):
        return 100


@pytest.mark.ported("tests/bricks/test_recurrent.py::test_bug_in_initial_states")
def test_bug_in_initial_states():
    with pytest.raises(KeyError):
        RecurrentBrickWithBugInInitialStates().apply2(n_steps=3, batch_size=5)


class RecurrentBrickWithOutputs(BaseRecurrent):
    @recurrent(sequences=[], contexts=[], states=["states"], outputs=["outputs", "states"])
    def apply(self, states):
        return states + 1, states + 1

    def get_dim(self, name):
        return 4


@pytest.mark.ported("tests/bricks/test_recurrent.py::test_return_initial_states_with_outputs")
def test_return_initial_states_with_outputs():
    outputs, states = RecurrentBrickWithOutputs().apply(
        n_steps=3, batch_size=5, return_initial_states=True
    )
    assert_allclose(outputs[0], np.ones((5, 4)))
    assert_allclose(states[0], np.zeros((5, 4)))


@pytest.fixture
def simple():
    brick = SimpleRecurrent(dim=3, weights_init=Constant(2), activation=Tanh())
    brick.initialize()
    return brick


@pytest.mark.ported("tests/bricks/test_recurrent.py::TestSimpleRecurrent::test_one_step")
def test_simple_one_step(simple):
    h0_val = 0.1 * np.array([[1, 1, 0], [0, 1, 1]], dtype=F32)
    x_val = 0.1 * np.array([[1, 2, 3], [4, 5, 6]], dtype=F32)
    mask_val = np.array([1, 0]).astype(F32)
    h1_val = np.tanh(h0_val.dot(2 * np.ones((3, 3))) + x_val)
    h1_val = mask_val[:, None] * h1_val + (1 - mask_val[:, None]) * h0_val
    assert_allclose(h1_val, simple.apply(x_val, h0_val, mask=mask_val, iterate=False), rtol=1e-6)


@pytest.mark.ported("tests/bricks/test_recurrent.py::TestSimpleRecurrent::test_many_steps")
def test_simple_many_steps(simple):
    x_val, mask_val = _x_val_perm4(), _mask()
    h_val = np.zeros((25, 4, 3), dtype=F32)
    for i in range(1, 25):
        h_val[i] = np.tanh(h_val[i - 1].dot(2 * np.ones((3, 3))) + x_val[i - 1])
        h_val[i] = mask_val[i - 1, :, None] * h_val[i] + (1 - mask_val[i - 1, :, None]) * h_val[
            i - 1
        ]
    assert_allclose(h_val[1:], simple.apply(x_val, mask=mask_val, iterate=True), rtol=1e-04)
    # the initial state is a parameter
    (initial_state,) = _initial_states(
        lambda x, mask: simple.apply(x, mask=mask), x=(None, None, 3), mask=(None, None)
    )
    assert initial_state.path is not None
    assert initial_state.name == "initial_state"


def _lstm_reference(x_val, h, c, mask=None):
    W_state = 2 * np.ones((3, 12), dtype=F32)
    w = 2 * np.ones((3,), dtype=F32)
    activation = np.dot(h, W_state) + x_val
    i_t = sigmoid(activation[:, :3] + c * w)
    f_t = sigmoid(activation[:, 3:6] + c * w)
    c1 = f_t * c + i_t * np.tanh(activation[:, 6:9])
    o_t = sigmoid(activation[:, 9:12] + c1 * w)
    h1 = o_t * np.tanh(c1)
    if mask is not None:
        h1 = mask[:, None] * h1 + (1 - mask[:, None]) * h
        c1 = mask[:, None] * c1 + (1 - mask[:, None]) * c
    return h1, c1


@pytest.fixture
def lstm():
    brick = LSTM(dim=3, weights_init=Constant(2), biases_init=Constant(0))
    brick.initialize()
    return brick


@pytest.mark.ported("tests/bricks/test_recurrent.py::TestLSTM::test_one_step")
def test_lstm_one_step(lstm):
    h0_val = 0.1 * np.array([[1, 1, 0], [0, 1, 1]], dtype=F32)
    c0_val = 0.1 * np.array([[1, 1, 0], [0, 1, 1]], dtype=F32)
    x_val = 0.1 * np.array([range(12), range(12, 24)], dtype=F32)
    h1, _ = lstm.apply(x_val, h0_val, c0_val, iterate=False)
    assert_allclose(_lstm_reference(x_val, h0_val, c0_val)[0], h1, rtol=1e-6)


@pytest.mark.ported("tests/bricks/test_recurrent.py::TestLSTM::test_many_steps")
def test_lstm_many_steps(lstm):
    x_val, mask_val = _x_val_perm12(), _mask()
    h = np.zeros((4, 3), dtype=F32)
    c = np.zeros((4, 3), dtype=F32)
    hs = []
    for i in range(24):
        h, c = _lstm_reference(x_val[i], h, c, mask_val[i])
        hs.append(h)
    got, _ = lstm.apply(x_val, mask=mask_val, iterate=True)
    assert_allclose(np.stack(hs), got, rtol=1e-04)
    initial = _initial_states(
        lambda x, mask: lstm.apply(x, mask=mask)[0], x=(None, None, 12), mask=(None, None)
    )
    assert all(v.path is not None for v in initial)
    assert {v.name for v in initial} == {"initial_state", "initial_cells"}


DEPTH = 4


def _stacks():
    transitions = [LSTM(dim=3) for _ in range(DEPTH)]
    stack0 = RecurrentStack(transitions, weights_init=Constant(2), biases_init=Constant(0))
    stack0.initialize()
    transitions = [LSTM(dim=3) for _ in range(DEPTH)]
    stack2 = RecurrentStack(
        transitions, weights_init=Constant(2), biases_init=Constant(0), skip_connections=True
    )
    stack2.initialize()
    return stack0, stack2


def _suffix(d):
    return RECURRENTSTACK_SEPARATOR + str(d) if d > 0 else ""


def _do_one_step(stack, skip_connections=False, low_memory=False):
    h0_val = 0.1 * np.array([[[1, 1, 0], [0, 1, 1]]] * DEPTH, dtype=F32)
    c0_val = 0.1 * np.array([[[1, 1, 0], [0, 1, 1]]] * DEPTH, dtype=F32)
    x_val = 0.1 * np.array([range(12), range(12, 24)], dtype=F32)
    W_state2x = 2 * np.ones((3, 12), dtype=F32)
    kwargs = {}
    for d in range(DEPTH):
        if d == 0 or skip_connections:
            kwargs["inputs" + _suffix(d)] = x_val
        kwargs["states" + _suffix(d)] = h0_val[d]
        kwargs["cells" + _suffix(d)] = c0_val[d]
    res = stack.apply(iterate=False, low_memory=low_memory, **kwargs)
    x_v = x_val
    for d in range(DEPTH):
        inp = x_v + x_val if skip_connections and d > 0 else x_v
        h1_v, _ = _lstm_reference(inp, h0_val[d], c0_val[d])
        x_v = np.dot(h1_v, W_state2x)
        assert_allclose(h1_v, res[d * 2], rtol=1e-6)


@pytest.mark.ported("tests/bricks/test_recurrent.py::TestRecurrentStack::test_one_step")
def test_stack_one_step():
    stack0, stack2 = _stacks()
    _do_one_step(stack0)
    _do_one_step(stack0, low_memory=True)
    _do_one_step(stack2, skip_connections=True)
    _do_one_step(stack2, skip_connections=True, low_memory=True)


def _do_many_steps(stack, skip_connections=False, low_memory=False):
    x_val, mask_val = _x_val_perm12(), _mask()
    h_val = np.zeros((DEPTH, 25, 4, 3), dtype=F32)
    c_val = np.zeros((DEPTH, 25, 4, 3), dtype=F32)
    W_state2x = 2 * np.ones((3, 12), dtype=F32)
    kwargs = {}
    for d in range(DEPTH):
        if d == 0 or skip_connections:
            kwargs["inputs" + _suffix(d)] = x_val
    kwargs["mask"] = mask_val
    results = stack.apply(iterate=True, low_memory=low_memory, **kwargs)
    for i in range(1, 25):
        x_v = x_val[i - 1]
        for d in range(DEPTH):
            inp = x_v + x_val[i - 1] if skip_connections and d > 0 else x_v
            h_val[d, i], c_val[d, i] = _lstm_reference(
                inp, h_val[d, i - 1], c_val[d, i - 1], mask_val[i - 1]
            )
            x_v = np.dot(h_val[d, i], W_state2x)
    for d in range(DEPTH):
        assert_allclose(h_val[d][1:], results[d * 2], rtol=1e-4)
        assert_allclose(c_val[d][1:], results[d * 2 + 1], rtol=1e-4)
    # every initial state is a parameter
    for i in range(len(results)):
        initial = _initial_states(
            lambda mask, i=i, **kw: stack.apply(
                iterate=True, low_memory=low_memory, mask=mask, **kw
            )[i],
            mask=(None, None),
            **{k: (None, None, 12) for k in kwargs if k != "mask"},
        )
        assert initial and all(v.path is not None for v in initial)


@pytest.mark.slow
@pytest.mark.ported("tests/bricks/test_recurrent.py::TestRecurrentStack::test_many_steps")
def test_stack_many_steps():
    stack0, stack2 = _stacks()
    _do_many_steps(stack0)
    _do_many_steps(stack0, low_memory=True)
    _do_many_steps(stack2, skip_connections=True)
    _do_many_steps(stack2, skip_connections=True, low_memory=True)


@pytest.mark.ported("tests/bricks/test_recurrent.py::TestRecurrentStackHelperMethodes::test_suffix")
def test_suffix():
    (level1,) = np.random.RandomState(2).randint(1, 150, size=(1,))
    name1 = "somepart"
    test_cases = [("mask", level1, "mask"), ("{name}", 0, "{name}"),
                  ("{name}", level1, "{name}{sep}{level}")]
    for _name, level, _expected in test_cases:
        name = _name.format(name=name1, level=level1, sep=RECURRENTSTACK_SEPARATOR)
        expected = _expected.format(name=name1, level=level1, sep=RECURRENTSTACK_SEPARATOR)
        assert RecurrentStack.suffix(name, level) == expected


@pytest.mark.ported(
    "tests/bricks/test_recurrent.py::TestRecurrentStackHelperMethodes::test_split_suffix"
)
def test_split_suffix():
    level1, level2 = np.random.RandomState(3).randint(1, 150, size=(2,))
    name1 = "somepart"
    test_cases = [
        ("{name}", "{name}", 0),
        ("{sep}{level}", "", level1),
        ("{name}{sep}{level}", "{name}", level1),
        ("{name}{sep}{level}{sep}{level2}", "{name}{sep}{level}", level2),
        ("{sep}{name}{sep}{level}", "{sep}{name}", level1),
        ("{name}{sep}", "{name}{sep}", 0),
        ("{name}{sep}{name}", "{name}{sep}{name}", 0),
        ("{name}{sep}{level}{sep}{name}", "{name}{sep}{level}{sep}{name}", 0),
    ]
    for _name, _expected_name, expected_level in test_cases:
        fmt = dict(name=name1, level=level1, level2=level2, sep=RECURRENTSTACK_SEPARATOR)
        name_part, level = RecurrentStack.split_suffix(_name.format(**fmt))
        assert (name_part, level) == (_expected_name.format(**fmt), expected_level)


@pytest.mark.ported("tests/bricks/test_recurrent.py::TestGatedRecurrent::test_one_step")
def test_gated_one_step():
    gated = GatedRecurrent(
        dim=3, activation=Tanh(), gate_activation=Tanh(), weights_init=Constant(2)
    )
    gated.initialize()
    h0_val = 0.1 * np.array([[1, 1, 0], [0, 1, 1]], dtype=F32)
    x_val = 0.1 * np.array([[1, 2, 3], [4, 5, 6]], dtype=F32)
    zi_val = (h0_val + x_val) / 2
    ri_val = -x_val
    W_val = 2 * np.ones((3, 3), dtype=F32)
    z_val = np.tanh(h0_val.dot(W_val) + zi_val)
    r_val = np.tanh(h0_val.dot(W_val) + ri_val)
    h1_val = z_val * np.tanh((r_val * h0_val).dot(W_val) + x_val) + (1 - z_val) * h0_val
    got = gated.apply(x_val, np.hstack([zi_val, ri_val]), h0_val, iterate=False)
    assert_allclose(h1_val, got, rtol=1e-6)


@pytest.mark.ported("tests/bricks/test_recurrent.py::TestGatedRecurrent::test_many_steps")
def test_gated_many_steps():
    reset_only = GatedRecurrent(
        dim=3, activation=Tanh(), gate_activation=Tanh(), weights_init=IsotropicGaussian(),
        seed=1,
    )
    reset_only.initialize()
    x_val, mask_val = _x_val_perm4(), _mask()
    ri_val = 0.3 - x_val
    zi_val = 2 * ri_val
    h_val = np.zeros((25, 4, 3), dtype=F32)
    W = np.asarray(reset_only.state_to_state)
    Wz = np.asarray(reset_only.state_to_gates)[:, :3]
    Wr = np.asarray(reset_only.state_to_gates)[:, 3:]
    for i in range(1, 25):
        z_val = np.tanh(h_val[i - 1].dot(Wz) + zi_val[i - 1])
        r_val = np.tanh(h_val[i - 1].dot(Wr) + ri_val[i - 1])
        h_val[i] = np.tanh((r_val * h_val[i - 1]).dot(W) + x_val[i - 1])
        h_val[i] = z_val * h_val[i] + (1 - z_val) * h_val[i - 1]
        h_val[i] = mask_val[i - 1, :, None] * h_val[i] + (1 - mask_val[i - 1, :, None]) * h_val[
            i - 1
        ]
    got = reset_only.apply(x_val, np.concatenate([zi_val, ri_val], axis=2), mask=mask_val)
    assert_allclose(h_val[1:], got, 1e-04)
    (initial_state,) = _initial_states(
        lambda x, gi, mask: reset_only.apply(x, gi, mask=mask),
        x=(None, None, 3), gi=(None, None, 6), mask=(None, None),
    )
    assert initial_state.path is not None
    assert initial_state.name == "initial_state"


@pytest.mark.slow
@pytest.mark.ported("tests/bricks/test_recurrent.py::TestBidirectional::test")
def test_bidirectional():
    bidir = Bidirectional(
        weights_init=Orthogonal(), prototype=SimpleRecurrent(dim=3, activation=Tanh())
    )
    simple = SimpleRecurrent(dim=3, weights_init=Orthogonal(), activation=Tanh(), seed=1)
    bidir.allocate()
    simple.initialize()
    bidir.initialize()
    W = simple.get_parameter_values()[f"{simple.path}.W"]
    bidir.set_parameter_values(
        {f"{child.path}.W": W for child in bidir.children}
    )
    x_val, mask_val = _x_val_perm4(), _mask()
    h_bidir = np.asarray(bidir.apply(x_val, mask=mask_val))
    h_simple = simple.apply(x_val, mask=mask_val)
    h_simple_rev = simple.apply(x_val[::-1], mask=mask_val[::-1])
    assert bidir.apply.outputs == ["states"]
    assert_allclose(h_simple, h_bidir[..., :3], rtol=1e-04)
    assert_allclose(h_simple_rev, h_bidir[::-1, ..., 3:], rtol=1e-04)


def _bidir_stack():
    prototype = SimpleRecurrent(dim=3, activation=Tanh())
    layers = [Bidirectional(weights_init=Orthogonal(), prototype=prototype) for _ in range(3)]
    stack = RecurrentStack(layers)
    for fork in stack.forks:
        fork.weights_init = IdentityInit(1)
        fork.biases_init = Constant(0)
    stack.initialize()
    return layers, stack


@pytest.mark.slow
@pytest.mark.ported("tests/bricks/test_recurrent.py::TestBidirectionalStack::test_steps")
def test_bidirectional_stack_steps():
    layers, stack = _bidir_stack()
    x_val, mask_val = _x_val_perm4(), _mask()
    stack_layers = stack.apply(x_val, mask=mask_val)
    h_val = x_val
    for stack_layer_value, bidir_net in zip(stack_layers, layers, strict=True):
        simple_layer_value = np.asarray(bidir_net.apply(h_val, mask=mask_val))
        assert_allclose(stack_layer_value, simple_layer_value, rtol=1e-04)
        h_val = simple_layer_value[..., :3]


@pytest.mark.ported("tests/bricks/test_recurrent.py::TestBidirectionalStack::test_dims")
def test_bidirectional_stack_dims():
    layers, stack = _bidir_stack()
    assert stack.get_dim("inputs") == 3
    for i in range(len(layers)):
        assert stack.get_dim(stack.suffix("states", i)) == 6


@pytest.mark.ported("tests/bricks/test_recurrent.py::test_saved_inner_graph")
def test_saved_inner_graph():
    rec = SimpleRecurrent(dim=3, activation=Tanh(), weights_init=Orthogonal())
    rec.initialize()
    cg = ComputationGraph(lambda x: rec.apply(x), x=(None, None, 3))
    inner = [
        v
        for v in VariableFilter(applications=[rec.apply])(cg.variables)
        if v.scan_scope is not None
    ]
    # the step's inputs, states and output are annotated inside the scan
    assert sorted(v.name for v in inner) == ["inputs", "states", "states"]
    # and the inner graph computes what one step of ``rec.apply`` computes
    x_val = np.random.RandomState(1).rand(4, 2, 3).astype(F32)
    (out,), values = cg.evaluate(cg.parameter_values(), {"x": x_val}, extra=inner)
    by = {(v.name, v.has_role(INITIAL_STATE)): val for v, val in zip(inner, values, strict=True)}
    step_inputs = [val for v, val in zip(inner, values, strict=True) if v.name == "inputs"][0]
    states_in = [
        val for v, val in zip(inner, values, strict=True) if v.name == "states"
    ]
    assert by
    for t in range(4):
        one = rec.apply(step_inputs[t], states_in[0][t], iterate=False)
        assert_allclose(one, out[t], rtol=1e-6)


@pytest.mark.ported("tests/bricks/test_recurrent.py::test_super_in_recurrent_overrider")
def test_super_in_recurrent_overrider():
    class SimpleRecurrentWithContext(SimpleRecurrent):
        @application(contexts=["context"])
        def apply(self, context, *args, **kwargs):
            kwargs["inputs"] += context
            return super().apply(*args, **kwargs)

        @apply.delegate
        def apply_delegate(self):
            return super().apply

    brick = SimpleRecurrentWithContext(100, Tanh(), weights_init=Constant(0.01))
    brick.initialize()
    inputs = jnp.ones((3, 2, 100))
    context = jnp.ones((2, 100))[None]
    out = brick.apply(context, inputs=inputs)
    assert out.shape == (3, 2, 100)
    assert brick.apply.contexts == ["context"]
    assert brick.apply.states == ["states"]
