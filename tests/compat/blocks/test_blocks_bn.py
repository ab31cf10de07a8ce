"""Blocks' tests/bricks/test_bn.py, in bricks' idiom.

Blocks' ``with bn:`` (training mode for that brick) is bricks'
``batch_normalization()`` context in eager code and
:func:`~bricks.graph.apply_batch_normalization` for graphs.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from bricks.core import (
    AveragePooling,
    BatchNormalization,
    BatchNormalizedMLP,
    Constant,
    Convolutional,
    ConvolutionalSequence,
    MaxPooling,
    Sequence,
    SpatialBatchNormalization,
    Tanh,
    batch_normalization,
)
from bricks.core.roles import BATCH_NORM_MINIBATCH_ESTIMATE
from bricks.errors import NotInitializedError
from bricks.graph import (
    ComputationGraph,
    VariableFilter,
    apply_batch_normalization,
    get_batch_normalization_updates,
)

F32 = np.float32


def random_unif(rng, dim, low=1, high=10):
    return rng.uniform(low, high, size=dim).astype(F32)


def _shape(input_dim):
    return (input_dim,) if isinstance(input_dim, int) else tuple(input_dim)


ALLOCATION_CASES = [
    (5, (5,), None, True),
    ((6, 7, 9), (6, 7, 9), (False, False, False), True),
    ((7, 4, 3), (1, 4, 3), (True, False, False), True),
    ((9, 3, 6), (9, 1, 1), (False, True, True), True),
    ((7, 4, 5), (7, 1, 5), (False, True, False), False),
]


@pytest.mark.ported(
    "tests/bricks/test_bn.py::test_batch_normalization_allocation_initialization"
)
@pytest.mark.parametrize("input_dim, expected_shape, broadcastable, conserve_memory",
                         ALLOCATION_CASES)
def test_batch_normalization_allocation_initialization(
    input_dim, expected_shape, broadcastable, conserve_memory
):
    bn = BatchNormalization(
        input_dim=input_dim, broadcastable=broadcastable, conserve_memory=conserve_memory
    )
    bn.allocate()
    assert conserve_memory == bn.conserve_memory
    assert input_dim == bn.input_dim
    assert bn.broadcastable == broadcastable
    specs = bn.parameter_specs()
    for name in ("scale", "shift", "population_mean", "population_stdev"):
        assert specs[f"{bn.path}.{name}"].shape == expected_shape
    bn.initialize()
    assert_allclose(bn.population_mean, 0.0)
    assert_allclose(bn.population_stdev, 1.0)
    assert_allclose(bn.shift, 0.0)
    assert_allclose(bn.scale, 1.0)


@pytest.mark.xfail(
    strict=True,
    reason="allocation without initialization raises NotInitializedError instead of NaN weights",
)
@pytest.mark.ported(
    "tests/bricks/test_bn.py::test_batch_normalization_allocation_initialization"
)
def test_batch_normalization_allocation_gives_nan():
    bn = BatchNormalization(input_dim=5)
    bn.allocate()
    with pytest.raises(NotInitializedError):
        bn.shift  # noqa: B018
    assert np.isnan(np.asarray(bn.shift)).all()


def apply_setup(input_dim, broadcastable, conserve_memory, mean_only, learn_scale, learn_shift):
    bn = BatchNormalization(
        input_dim,
        broadcastable,
        conserve_memory,
        epsilon=1e-4,
        mean_only=mean_only,
        learn_scale=learn_scale,
        learn_shift=learn_shift,
    )
    bn.initialize()
    return bn


APPLY_CASES = [
    (9, (9,)),
    (9, (9,), None, True, True),
    ((5, 4), (5, 4), None, False),
    ((5, 4), (5, 4), None, False, True),
    ((2, 9, 7), (2, 1, 1), (False, True, True)),
    ((2, 9, 7), (2, 1, 1), (False, True, True), True, True),
    ((6, 7), (6, 7), None, False, False, False, False),
    ((9, 2), (9, 2), None, False, True, False, False),
    ((3,), (3,), None, False, False, True, False),
    ((6, 5, 4), (6, 5, 4), None, False, True, True, False),
    ((2, 9, 1, 4), (2, 9, 1, 4), None, False, False, False, True),
    ((3, 1), (3, 1), None, False, True, False, True),
    ((6,), (6,), None, False, False, True, True),
    ((1,), (1,), None, False, True, True, True),
]


def _set(bn, name, value):
    bn.set_parameter_values({f"{bn.path}.{name}": value})


def _case(args):
    full = list(args) + [None, True, False, True, True][len(args) - 2 :]
    return full


@pytest.mark.ported("tests/bricks/test_bn.py::test_batch_normalization_inference_apply")
@pytest.mark.parametrize("case", APPLY_CASES)
def test_batch_normalization_inference_apply(case):
    (input_dim, variable_dim, broadcastable, conserve_memory, mean_only, learn_scale,
     learn_shift) = _case(case)
    bn = apply_setup(input_dim, broadcastable, conserve_memory, mean_only, learn_scale,
                     learn_shift)
    rng = np.random.RandomState((2015, 12, 16))
    input_ = random_unif(rng, (9, *_shape(input_dim)))
    assert_allclose(bn.apply(input_), input_, rtol=1e-4, atol=1e-5)
    pop_mean = random_unif(rng, variable_dim)
    _set(bn, "population_mean", pop_mean)
    assert_allclose(bn.apply(input_), input_ - pop_mean, rtol=1e-4, atol=1e-5)
    if not mean_only:
        pop_stdev = random_unif(rng, variable_dim)
        _set(bn, "population_stdev", pop_stdev)
        assert_allclose(bn.apply(input_), (input_ - pop_mean) / pop_stdev, rtol=1e-4, atol=1e-5)
        gamma = 1
        if learn_scale:
            gamma = random_unif(rng, variable_dim)
            _set(bn, "scale", gamma)
        assert_allclose(
            bn.apply(input_), (input_ - pop_mean) * (gamma / pop_stdev), rtol=1e-4, atol=1e-5
        )
        beta = 0.0
        if learn_shift:
            beta = random_unif(rng, variable_dim)
            _set(bn, "shift", beta)
        assert_allclose(
            bn.apply(input_), (input_ - pop_mean) * (gamma / pop_stdev) + beta, rtol=1e-4, atol=1e-5
        )
    else:
        beta = 0.0
        if learn_shift:
            beta = random_unif(rng, variable_dim)
            _set(bn, "shift", beta)
        assert_allclose(bn.apply(input_), input_ - pop_mean + beta, rtol=1e-4, atol=1e-5)


@pytest.mark.ported("tests/bricks/test_bn.py::test_batch_normalization_train_apply")
@pytest.mark.parametrize("case", [c for c in APPLY_CASES if c != (9, (9,), None, True, True)])
def test_batch_normalization_train_apply(case):
    (input_dim, variable_dim, broadcastable, conserve_memory, mean_only, learn_scale,
     learn_shift) = _case(case)
    epsilon = np.float32(1e-4)
    bn = apply_setup(input_dim, broadcastable, conserve_memory, mean_only, learn_scale,
                     learn_shift)

    def y_hat(x):
        with batch_normalization():
            return np.asarray(bn.apply(x))

    rng = np.random.RandomState((2015, 12, 16))
    input_ = random_unif(rng, (9, *_shape(input_dim)))
    stat_shape = bn.parameter_specs()[f"{bn.path}.population_mean"].shape
    axes = (0,) + tuple(i + 1 for i, d in enumerate(stat_shape) if d == 1 and
                        (broadcastable or (False,) * len(stat_shape))[i])

    def normalize(x):
        centered = x - x.mean(axis=axes, keepdims=True)
        if mean_only:
            return centered
        return centered / np.sqrt(np.var(x, axis=axes, keepdims=True) + epsilon)

    assert_allclose(y_hat(input_), normalize(input_), atol=1e-3)
    beta = 0.0
    if not mean_only:
        gamma = 1.0
        if learn_scale:
            gamma = random_unif(rng, variable_dim)
            _set(bn, "scale", gamma)
        assert_allclose(y_hat(input_), normalize(input_) * gamma, atol=1e-3)
        if learn_shift:
            beta = random_unif(rng, variable_dim)
            _set(bn, "shift", beta)
        assert_allclose(y_hat(input_), normalize(input_) * gamma + beta, atol=1e-3)
        # the population statistics play no part in training mode
        _set(bn, "population_mean", np.nan * np.ones(stat_shape, F32))
        _set(bn, "population_stdev", np.nan * np.ones(stat_shape, F32))
        assert_allclose(y_hat(input_), normalize(input_) * gamma + beta, atol=1e-3)
    else:
        if learn_shift:
            beta = random_unif(rng, variable_dim)
            _set(bn, "shift", beta)
        assert_allclose(y_hat(input_), normalize(input_) + beta, atol=1e-3)
        _set(bn, "population_mean", np.nan * np.ones(stat_shape, F32))
        assert_allclose(y_hat(input_), normalize(input_) + beta, atol=1e-3)


@pytest.mark.ported("tests/bricks/test_bn.py::test_batch_normalization_image_size_setter")
def test_batch_normalization_image_size_setter():
    bn = BatchNormalization()
    bn.image_size = (5, 4)
    assert bn.input_dim == (None, 5, 4)
    bn.image_size = (4, 5)
    assert bn.input_dim == (None, 4, 5)


@pytest.mark.ported("tests/bricks/test_bn.py::test_spatial_batch_normalization")
@pytest.mark.parametrize("input_dim", [(2, 3, 5), (5, 3, 2, 3), (1, 11)])
def test_spatial_batch_normalization(input_dim):
    sbn = SpatialBatchNormalization(input_dim)
    sbn.initialize()
    rng = np.random.RandomState((2015, 12, 17))
    input_ = random_unif(rng, (11, *input_dim))
    assert_allclose(sbn.apply(input_), input_, rtol=1e-6)


@pytest.mark.ported("tests/bricks/test_bn.py::test_raise_exception_spatial")
def test_raise_exception_spatial():
    with pytest.raises(ValueError):
        SpatialBatchNormalization((5,)).allocate()
    with pytest.raises(ValueError):
        SpatialBatchNormalization(3).allocate()
    for input_dim in [(5, 4, 3), (7, 6), (3, 9, 2, 3)]:
        SpatialBatchNormalization(input_dim).allocate()


@pytest.mark.ported(
    "tests/bricks/test_bn.py::test_batch_normalization_inside_convolutional_sequence"
)
def test_batch_normalization_inside_convolutional_sequence():
    conv_seq = ConvolutionalSequence(
        [
            Convolutional(filter_size=(3, 3), num_filters=4),
            BatchNormalization(broadcastable=(False, True, True)),
            AveragePooling(pooling_size=(2, 2)),
            BatchNormalization(broadcastable=(False, False, False)),
            MaxPooling(pooling_size=(2, 2), step=(1, 1)),
        ],
        weights_init=Constant(1.0),
        biases_init=Constant(2.0),
        image_size=(10, 8),
        num_channels=9,
    )
    conv_seq_no_bn = ConvolutionalSequence(
        [
            Convolutional(filter_size=(3, 3), num_filters=4),
            AveragePooling(pooling_size=(2, 2)),
            MaxPooling(pooling_size=(2, 2), step=(1, 1)),
        ],
        weights_init=Constant(1.0),
        biases_init=Constant(2.0),
        image_size=(10, 8),
        num_channels=9,
    )
    conv_seq.initialize()
    conv_seq_no_bn.initialize()
    rng = np.random.RandomState((2015, 12, 17))
    input_ = random_unif(rng, (2, 9, 10, 8))
    y = np.asarray(conv_seq_no_bn.apply(input_))
    assert_allclose(conv_seq.apply(input_), y, rtol=1e-6)
    bn = conv_seq.children[-2]
    std = bn.get_parameter_values()[f"{bn.path}.population_stdev"]
    _set(bn, "population_stdev", 3 * std)
    assert_allclose(conv_seq.apply(input_), y / 3.0, rtol=1e-6)


@pytest.mark.ported("tests/bricks/test_bn.py::test_batch_normalized_mlp_construction")
def test_batch_normalized_mlp_construction():
    mlp = BatchNormalizedMLP([Tanh(), Tanh()], [5, 7, 9])
    assert all(isinstance(a, Sequence) for a in mlp.activations)
    assert all(isinstance(a.children[0], BatchNormalization) for a in mlp.activations)
    assert all(isinstance(a.children[1], Tanh) for a in mlp.activations)


@pytest.mark.ported("tests/bricks/test_bn.py::test_batch_normalized_mlp_allocation")
def test_batch_normalized_mlp_allocation():
    mlp = BatchNormalizedMLP([Tanh(), Tanh()], [5, 7, 9])
    mlp.allocate()
    assert mlp.activations[0].children[0].input_dim == 7
    assert mlp.activations[1].children[0].input_dim == 9
    assert not any(lin.use_bias for lin in mlp.linear_transformations)


@pytest.mark.ported("tests/bricks/test_bn.py::test_batch_normalized_mlp_transformed")
def test_batch_normalized_mlp_transformed():
    mlp = BatchNormalizedMLP([Tanh(), Tanh()], [5, 7, 9])
    cg = apply_batch_normalization(ComputationGraph(lambda x: mlp.apply(x), x=(None, 5)))
    assert len(get_batch_normalization_updates(cg)) == 4


@pytest.mark.ported("tests/bricks/test_bn.py::test_batch_normalized_mlp_conserve_memory_propagated")
def test_batch_normalized_mlp_conserve_memory_propagated():
    mlp = BatchNormalizedMLP([Tanh(), Tanh()], [5, 7, 9], conserve_memory=False)
    assert not mlp.conserve_memory
    assert not any(act.children[0].conserve_memory for act in mlp.activations)
    mlp.conserve_memory = True
    assert mlp.conserve_memory
    assert all(act.children[0].conserve_memory for act in mlp.activations)


@pytest.mark.ported(
    "tests/bricks/test_bn.py::test_batch_normalized_mlp_mean_only_propagated_at_alloc"
)
def test_batch_normalized_mlp_mean_only_propagated_at_alloc():
    mlp = BatchNormalizedMLP([Tanh(), Tanh()], [5, 7, 9], mean_only=True)
    assert mlp.mean_only
    assert not any(act.children[0].mean_only for act in mlp.activations)
    mlp.allocate()
    assert all(act.children[0].mean_only for act in mlp.activations)


@pytest.mark.ported(
    "tests/bricks/test_bn.py::test_batch_normalized_mlp_learn_shift_propagated_at_alloc"
)
def test_batch_normalized_mlp_learn_shift_propagated_at_alloc():
    mlp = BatchNormalizedMLP([Tanh(), Tanh()], [5, 7, 9], learn_shift=False)
    assert not mlp.learn_shift
    assert all(act.children[0].learn_shift for act in mlp.activations)
    mlp.allocate()
    assert not any(act.children[0].learn_shift for act in mlp.activations)


@pytest.mark.ported(
    "tests/bricks/test_bn.py::test_batch_normalized_mlp_learn_scale_propagated_at_alloc"
)
def test_batch_normalized_mlp_learn_scale_propagated_at_alloc():
    mlp = BatchNormalizedMLP([Tanh(), Tanh()], [5, 7, 9], learn_scale=False)
    assert not mlp.learn_scale
    assert all(act.children[0].learn_scale for act in mlp.activations)
    mlp.allocate()
    assert not any(act.children[0].learn_scale for act in mlp.activations)


@pytest.mark.ported("tests/bricks/test_bn.py::test_batch_normalization_broadcastable_sanity")
def test_batch_normalization_broadcastable_sanity():
    bn = BatchNormalization((5, 3, 2), broadcastable=(False, True, False))
    bn.initialize()
    cg = apply_batch_normalization(ComputationGraph(lambda abc: bn.apply(abc), abc=(None, 5, 3, 2)))
    estimates = VariableFilter(roles=[BATCH_NORM_MINIBATCH_ESTIMATE])(cg.variables)
    assert estimates
    assert all(v.shape == (5, 1, 2) for v in estimates)
