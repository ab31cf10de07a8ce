"""Issue 14, item 3: wrong input sizes are a ShapeError naming the brick path,
the input, the expected size with the setting that decides it, and what came
(DESIGN decision 10) — never a JAX internal error, never a broadcast."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bricks.core import (
    MLP,
    AveragePooling,
    BatchNormalization,
    Bias,
    Constant,
    Convolutional,
    ConvolutionalSequence,
    Flattener,
    Fork,
    IsotropicGaussian,
    Linear,
    LookupTable,
    Maxout,
    MaxPooling,
    Merge,
    Parallel,
    Softmax,
    Tanh,
    WithExtraDims,
)
from bricks.errors import BricksError, InputTypeError, ShapeError

INITS = {"weights_init": IsotropicGaussian(0.1), "biases_init": Constant(0.0)}


def _ready(brick):
    brick.initialize(seed=0)
    return brick


def test_mlp_with_one_feature_too_few_names_the_brick_and_its_dims():
    mlp = _ready(MLP([Tanh(), Softmax()], [784, 100, 10], **INITS))
    with pytest.raises(ShapeError) as info:
        mlp.apply(np.zeros((5, 783), np.float32))
    message = str(info.value)
    for part in ("MLP /mlp", "'input_'", "(5, 783)", "dims[0]=784"):
        assert part in message
    assert "dot_general" not in message


def test_the_check_runs_at_trace_time_under_jit():
    lin = _ready(Linear(3, 2, **INITS))
    with pytest.raises(ShapeError, match=r"Linear /linear: input 'input_'.*input_dim=3"):
        jax.jit(lin.apply)(jnp.ones((4, 2)))
    assert jax.jit(lin.apply)(jnp.ones((4, 3))).shape == (4, 2)


def test_a_graph_with_a_free_batch_axis_passes_the_checks():
    from bricks.graph import ComputationGraph

    mlp = _ready(MLP([Tanh(), None], [4, 3, 2], **INITS))
    cg = ComputationGraph(lambda x: mlp.apply(x).sum(), x=(None, 4))
    assert cg.outputs[0].shape == ()
    with pytest.raises(ShapeError, match="dims\\[0\\]=4"):
        ComputationGraph(lambda x: mlp.apply(x).sum(), x=(None, 5))


def test_linear_bias_and_maxout_sizes():
    with pytest.raises(ShapeError, match="Bias /bias: input 'input_'.*expected dim=3"):
        _ready(Bias(3, biases_init=Constant(0.0))).apply(jnp.ones((2, 4)))
    with pytest.raises(ShapeError, match="Linear /linear: input 'input_' has shape \\(\\)"):
        _ready(Linear(3, 2, **INITS)).apply(jnp.float32(1.0))
    with pytest.raises(ShapeError, match="Maxout /maxout: input 'input_'.*num_pieces=2"):
        Maxout(2).apply(jnp.ones((2, 3)))


def test_integer_inputs_are_promoted_as_documented():
    lin = _ready(Linear(3, 2, **INITS))
    ints = jnp.array([[1, 2, 3]])
    np.testing.assert_allclose(lin.apply(ints), lin.apply(ints.astype(jnp.float32)))
    pooled = MaxPooling((2, 2)).apply(jnp.arange(16).reshape(1, 1, 4, 4))
    assert pooled.dtype == jnp.float32 and pooled.tolist() == [[[[5.0, 7.0], [13.0, 15.0]]]]
    averaged = AveragePooling((2, 2)).apply(jnp.ones((1, 1, 2, 2), jnp.int32))
    assert averaged.tolist() == [[[[1.0]]]]


def test_strings_and_objects_are_refused_by_name():
    lin = _ready(Linear(3, 2, **INITS))
    with pytest.raises(InputTypeError, match="Linear /linear.apply: input 'input_' is dtype <U1"):
        lin.apply(np.array([["a", "b", "c"]]))
    with pytest.raises(InputTypeError, match="Tanh /tanh.apply: input 'input_' is dtype object"):
        Tanh().apply(np.array([None, 1.0], dtype=object))
    with pytest.raises(InputTypeError, match="input 'y_hat'"):
        from bricks.core import SquaredError

        SquaredError().apply(jnp.ones((2, 3)), y_hat="ones")


def test_softmax_needs_a_class_axis_and_matching_targets():
    softmax = Softmax()
    with pytest.raises(ShapeError, match="Softmax /softmax: input 'input_' has shape \\(\\)"):
        softmax.apply(jnp.float32(2.0))
    # distributions of another batch size used to broadcast silently
    with pytest.raises(ShapeError, match="'y' has shape \\(1, 4\\) but 'x' has shape \\(2, 4\\)"):
        softmax.categorical_cross_entropy(jnp.ones((1, 4)) / 4, jnp.zeros((2, 4)))
    with pytest.raises(ShapeError, match="class indices 'y' of shape \\(3,\\)"):
        softmax.categorical_cross_entropy(jnp.zeros(3, jnp.int32), jnp.zeros((2, 4)))


def test_lookup_table_refuses_float_indices_by_path():
    table = _ready(LookupTable(5, 3, weights_init=Constant(1.0)))
    with pytest.raises(InputTypeError, match="LookupTable /lookuptable: input 'indices'"):
        table.apply(jnp.array([0.0, 1.0]))
    with pytest.raises(InputTypeError, match="integer indices"):
        table.apply(jnp.array([True, False]))


def test_convolution_channels_rank_and_untied_image_size():
    conv = _ready(Convolutional((2, 2), 3, 2, (4, 4), tied_biases=False, **INITS))
    with pytest.raises(ShapeError, match="3 channels on axis 1, expected num_channels=2"):
        conv.apply(jnp.ones((1, 3, 4, 4)))
    with pytest.raises(ShapeError, match="rank 3.*expected \\(batch, 2, height, width\\)"):
        conv.apply(jnp.ones((2, 4, 4)))
    # untied biases fit one image size only: another is an error, not a broadcast
    with pytest.raises(ShapeError, match="5 pixels on axis 2, expected image_size=\\(4, 4\\)"):
        conv.apply(jnp.ones((1, 2, 5, 5)))
    tied = _ready(Convolutional((2, 2), 3, 2, (4, 4), tied_biases=True, **INITS))
    assert tied.apply(jnp.ones((1, 2, 5, 5))).shape == (1, 3, 4, 4)
    seq = _ready(
        ConvolutionalSequence([Convolutional((2, 2), 3)], num_channels=1, image_size=(4, 4),
                              tied_biases=True, **INITS)
    )
    with pytest.raises(ShapeError, match="ConvolutionalSequence /convolutionalsequence"):
        seq.apply(jnp.ones((1, 2, 4, 4)))


def test_pooling_and_flattener_ranks():
    with pytest.raises(ShapeError, match=r"MaxPooling /maxpooling: input .input_. has shape \(4,"):
        MaxPooling((2, 2)).apply(jnp.ones(4))
    with pytest.raises(ShapeError, match="Flattener /flattener"):
        Flattener().apply(jnp.float32(1.0))


def test_batch_normalization_trailing_shape():
    bn = _ready(BatchNormalization((3, 2, 2), broadcastable=(False, True, True)))
    with pytest.raises(ShapeError, match="input_dim=\\(3, 2, 2\\)"):
        bn.apply(jnp.ones((5, 4, 2, 2)))
    with pytest.raises(ShapeError, match="expected \\(batch, 3, 2, 2\\)"):
        bn.apply(jnp.ones((3, 2, 2)))
    assert bn.apply(jnp.ones((5, 3, 2, 2), jnp.int32)).dtype == jnp.float32


def test_parallel_fork_merge_name_the_channel():
    par = _ready(Parallel(["a", "b"], [2, 3], [4, 1], **INITS))
    with pytest.raises(ShapeError, match="Parallel /parallel: input 'b'.*input_dims\\['b'\\]=3"):
        par.apply(jnp.ones((1, 2)), jnp.ones((1, 4)))
    fork = _ready(Fork(["u", "v"], 3, [2, 4], **INITS))
    with pytest.raises(ShapeError, match="Fork /fork: input 'input_'.*input_dim=3"):
        fork.apply(jnp.ones((2, 2)))
    merge = _ready(Merge(["a", "b"], [2, 3], 4, **INITS))
    # a batch of 1 used to broadcast against a batch of 2
    with pytest.raises(ShapeError, match="Merge /merge: .*same leading"):
        merge.apply(jnp.ones((2, 2)), jnp.ones((1, 3)))


def test_with_extra_dims_names_the_wrapper():
    wrapped = _ready(WithExtraDims(Linear(3, 2, **INITS).apply, extra_ndim=2))
    with pytest.raises(ShapeError, match="WithExtraDims /withextradims: with_extra_dims\\(2\\)"):
        wrapped.apply(jnp.ones((2, 3)))


def test_every_error_here_is_a_bricks_error():
    assert issubclass(ShapeError, BricksError) and issubclass(ShapeError, ValueError)
    assert issubclass(InputTypeError, BricksError) and issubclass(InputTypeError, TypeError)


def test_costs_need_a_class_axis_and_cost_integer_predictions_as_floats():
    from bricks.core import CategoricalCrossEntropy, MisclassificationRate, SquaredError

    for cost in (CategoricalCrossEntropy(), MisclassificationRate()):
        with pytest.raises(ShapeError, match=f"{type(cost).__name__} /.*y_hat has shape \\(\\)"):
            cost.apply(jnp.int32(1), jnp.float32(0.5))
    # integer predictions used to reach finfo(int32) (a raw ValueError)
    y, y_hat = jnp.array([0, 1]), jnp.array([[1, 0], [0, 1]])
    np.testing.assert_allclose(
        CategoricalCrossEntropy().apply(y, y_hat),
        CategoricalCrossEntropy().apply(y, y_hat.astype(jnp.float32)),
    )
    with pytest.raises(ShapeError, match="SquaredError /squarederror: y has shape \\(1, 3\\)"):
        SquaredError().apply(jnp.ones((1, 3)), jnp.ones((2, 3)))


def test_batch_normalization_refuses_an_empty_batch_in_training_mode():
    from bricks.core import batch_normalization

    bn = _ready(BatchNormalization(3))
    assert bn.apply(jnp.ones((0, 3))).shape == (0, 3)  # inference mode: per example
    with batch_normalization(), pytest.raises(ShapeError, match="empty batch has no statistics"):
        bn.apply(jnp.ones((0, 3)))


def test_the_checks_add_nothing_to_the_traced_program():
    """Checks are Python at trace time: the jaxpr is that of the bare computation."""
    from bricks.core import apply_with

    lin = _ready(Linear(3, 2, **INITS))
    params, x = lin.get_parameter_values(), jnp.ones((4, 3))
    checked = jax.make_jaxpr(lambda p, x: apply_with(p, lin.apply, x))(params, x)
    bare = jax.make_jaxpr(
        lambda p, x: jnp.dot(x, p["/linear.W"]) + jnp.reshape(p["/linear.b"], (1, 2))
    )(params, x)
    assert [e.primitive for e in checked.jaxpr.eqns] == [e.primitive for e in bare.jaxpr.eqns]
