"""Blocks' tests/bricks/test_conv.py, in bricks' idiom (NCHW, as Blocks)."""

from __future__ import annotations

import pickle

import jax.numpy as jnp
import numpy as np
import pytest
from numpy.testing import assert_allclose

from bricks.core import (
    AveragePooling,
    Constant,
    Convolutional,
    ConvolutionalSequence,
    ConvolutionalTranspose,
    MaxPooling,
    Rectifier,
    Tanh,
)
from bricks.errors import ConfigurationError
from bricks.graph import ComputationGraph

F32 = np.float32


@pytest.mark.ported("tests/bricks/test_conv.py::test_convolutional")
def test_convolutional():
    num_channels, num_filters, batch_size, filter_size = 4, 3, 5, (3, 3)
    conv = Convolutional(
        filter_size,
        num_filters,
        num_channels,
        image_size=(17, 13),
        weights_init=Constant(1.0),
        biases_init=Constant(5.0),
    )
    conv.initialize()
    x_val = np.ones((batch_size, num_channels, 17, 13), dtype=F32)
    assert_allclose(
        conv.apply(x_val),
        np.prod(filter_size) * num_channels * np.ones((batch_size, num_filters, 15, 11)) + 5,
    )
    conv.image_size = (17, 13)
    assert conv.get_dim("output") == (num_filters, 15, 11)


@pytest.mark.ported("tests/bricks/test_conv.py::test_convolutional_transpose")
def test_convolutional_transpose():
    num_channels, num_filters, batch_size = 4, 3, 5
    image_size, original_image_size = (8, 6), (17, 13)
    conv = ConvolutionalTranspose(
        (3, 3),
        num_filters,
        num_channels,
        step=(2, 2),
        original_image_size=original_image_size,
        image_size=image_size,
        weights_init=Constant(1.0),
        biases_init=Constant(5.0),
    )
    conv.initialize()
    x_val = np.ones((batch_size, num_channels, *image_size), dtype=F32)
    expected = num_channels * np.ones((batch_size, num_filters, *original_image_size))
    expected[:, :, 2:-2:2, :] += num_channels
    expected[:, :, :, 2:-2:2] += num_channels
    expected[:, :, 2:-2:2, 2:-2:2] += num_channels
    assert_allclose(conv.apply(x_val), expected + 5)


def _check_transpose(expected, input_shape=(4, 5, 6, 9), **kwargs):
    brick = ConvolutionalTranspose(num_filters=10, num_channels=5, **kwargs)
    brick.allocate()
    assert brick.original_image_size == expected
    brick.weights_init = Constant(0.0)
    brick.biases_init = Constant(0.0)
    brick.initialize()
    result = brick.apply(jnp.zeros(input_shape))
    assert result.shape == (input_shape[0], 10, *expected)


@pytest.mark.ported(
    "tests/bricks/test_conv.py::test_convolutional_transpose_original_size_inference"
)
def test_convolutional_transpose_original_size_inference():
    _check_transpose((19, 21), filter_size=(4, 5), step=(3, 2), image_size=(6, 9))


@pytest.mark.ported(
    "tests/bricks/test_conv.py::test_convolutional_transpose_original_size_inference_padding"
)
def test_convolutional_transpose_original_size_inference_padding():
    _check_transpose(
        (15, 19), filter_size=(4, 5), step=(3, 2), border_mode=(2, 1), image_size=(6, 9)
    )


@pytest.mark.ported(
    "tests/bricks/test_conv.py::test_convolutional_transpose_original_size_inference_full_padding"
)
def test_convolutional_transpose_original_size_inference_full_padding():
    _check_transpose(
        (13, 13), filter_size=(4, 5), step=(3, 2), border_mode="full", image_size=(6, 9)
    )


@pytest.mark.ported(
    "tests/bricks/test_conv.py::test_convolutional_transpose_original_size_inference_half_padding"
)
def test_convolutional_transpose_original_size_inference_half_padding():
    _check_transpose(
        (15, 17), filter_size=(4, 5), step=(3, 2), border_mode="half", image_size=(6, 9)
    )


@pytest.mark.ported(
    "tests/bricks/test_conv.py::test_convolutional_transpose_original_size_inference_unused_edge"
)
def test_convolutional_transpose_original_size_inference_unused_edge():
    _check_transpose(
        (8, 8),
        input_shape=(4, 5, 4, 4),
        filter_size=(3, 3),
        step=(2, 2),
        border_mode=(1, 1),
        image_size=(4, 4),
        unused_edge=(1, 1),
    )


@pytest.mark.ported(
    "tests/bricks/test_conv.py::test_convolutional_transpose_original_size_inferred_conv_sequence"
)
def test_convolutional_transpose_original_size_inferred_conv_sequence():
    brick = ConvolutionalTranspose(filter_size=(4, 5), num_filters=10, step=(3, 2))
    seq = ConvolutionalSequence([brick], num_channels=5, image_size=(6, 9))
    seq.allocate()


@pytest.mark.xfail(
    strict=True,
    reason="ConvolutionalTranspose infers original_image_size from the input it is applied to; "
    "Blocks raised ValueError when neither original_image_size nor image_size was given",
)
@pytest.mark.ported("tests/bricks/test_conv.py::test_conv_transpose_exception")
def test_conv_transpose_exception():
    brick = ConvolutionalTranspose(
        filter_size=(4, 5), num_filters=10, num_channels=5, step=(3, 2), tied_biases=True,
        weights_init=Constant(1.0), biases_init=Constant(0.0),
    )
    brick.initialize()
    with pytest.raises(ValueError):
        brick.apply(jnp.zeros((1, 5, 6, 9)))


@pytest.mark.ported("tests/bricks/test_conv.py::test_border_mode_not_pushed")
def test_border_mode_not_pushed():
    def layers():
        return [
            Convolutional(border_mode="full"),
            Convolutional(),
            Rectifier(),
            Convolutional(border_mode="valid"),
            Rectifier(),
            Convolutional(border_mode="full"),
            Rectifier(),
        ]

    stack = ConvolutionalSequence(layers())
    stack.push_allocation_config()
    assert stack.children[0].border_mode == "full"
    assert stack.children[1].border_mode == "valid"
    assert stack.children[3].border_mode == "valid"
    assert stack.children[5].border_mode == "full"
    stack2 = ConvolutionalSequence(layers(), border_mode="full")
    stack2.push_allocation_config()
    assert stack2.children[0].border_mode == "full"
    assert stack2.children[1].border_mode == "full"
    assert stack2.children[3].border_mode == "full"
    assert stack2.children[5].border_mode == "full"


@pytest.mark.ported("tests/bricks/test_conv.py::test_no_input_size")
def test_no_input_size():
    filter_size, num_filters, num_channels = (1, 3), 2, 5
    c = Convolutional(
        filter_size,
        num_filters,
        num_channels,
        tied_biases=True,
        weights_init=Constant(1.0),
        biases_init=Constant(1.0),
    )
    c.initialize()
    out = c.apply(jnp.ones((2, 5, 4, 6)))
    assert c.get_dim("output") == (2, None, None)
    assert out.ndim == 4
    c = Convolutional(
        filter_size,
        num_filters,
        num_channels,
        tied_biases=False,
        weights_init=Constant(1.0),
        biases_init=Constant(1.0),
    )
    with pytest.raises(ValueError, match=r"Cannot infer bias size \S+"):
        c.initialize()


@pytest.mark.ported("tests/bricks/test_conv.py::test_untied_biases")
def test_untied_biases():
    num_channels, num_filters, batch_size, filter_size = 4, 3, 5, (3, 3)
    conv = Convolutional(
        filter_size,
        num_filters,
        num_channels,
        weights_init=Constant(1.0),
        biases_init=Constant(2.0),
        image_size=(28, 30),
        tied_biases=False,
    )
    conv.initialize()
    assert conv.b.shape == (3, 26, 28)
    x_val_1 = np.ones((batch_size, num_channels, 28, 30), dtype=F32)
    assert_allclose(
        conv.apply(x_val_1),
        np.prod(filter_size) * num_channels * np.ones((batch_size, num_filters, 26, 28)) + 2,
    )
    x_val_2 = np.ones((batch_size, num_channels, 23, 19), dtype=F32)
    with pytest.raises(ValueError):
        conv.apply(x_val_2)


@pytest.mark.ported("tests/bricks/test_conv.py::test_tied_biases")
def test_tied_biases():
    num_channels, num_filters, batch_size, filter_size = 4, 3, 5, (3, 3)
    # tied biases are the default
    conv = Convolutional(
        filter_size, num_filters, num_channels, weights_init=Constant(1.0),
        biases_init=Constant(2.0),
    )
    conv.initialize()
    assert conv.b.shape == (3,)
    for size, out in (((10, 12), (8, 10)), ((23, 19), (21, 17))):
        x_val = np.ones((batch_size, num_channels, *size), dtype=F32)
        assert_allclose(
            conv.apply(x_val),
            np.prod(filter_size) * num_channels * np.ones((batch_size, num_filters, *out)) + 2,
        )


@pytest.mark.ported("tests/bricks/test_conv.py::test_max_pooling")
def test_max_pooling():
    num_channels, batch_size, x_size, y_size, pool_size = 4, 5, 17, 13, 3
    pool = MaxPooling((pool_size, pool_size))
    x_val = np.ones((batch_size, num_channels, x_size, y_size), dtype=F32)
    assert_allclose(
        pool.apply(x_val),
        np.ones((batch_size, num_channels, x_size // pool_size, y_size // pool_size)),
    )


@pytest.mark.ported("tests/bricks/test_conv.py::test_max_pooling_ignore_border_true")
def test_max_pooling_ignore_border_true():
    out = MaxPooling((3, 4), ignore_border=True).apply(np.zeros((8, 3, 10, 13), F32))
    assert out.shape == (8, 3, 3, 3)


@pytest.mark.ported("tests/bricks/test_conv.py::test_max_pooling_ignore_border_false")
def test_max_pooling_ignore_border_false():
    out = MaxPooling((5, 7), ignore_border=False).apply(np.zeros((4, 6, 12, 15), F32))
    assert out.shape == (4, 6, 3, 3)


@pytest.mark.ported("tests/bricks/test_conv.py::test_max_pooling_padding")
def test_max_pooling_padding():
    brick = MaxPooling((6, 2), padding=(3, 1), ignore_border=True)
    out = brick.apply(np.zeros((2, 3, 6, 10), F32))
    assert out.shape == (2, 3, 2, 6)


@pytest.mark.xfail(
    strict=True,
    reason="bricks does not load pickles of Blocks bricks (made before Blocks PR 899 or after)",
)
@pytest.mark.ported("tests/bricks/test_conv.py::test_max_pooling_old_pickle")
def test_max_pooling_old_pickle():
    brick = MaxPooling((3, 4))
    brick.allocate()
    # simulate a pickle made before the attributes existed
    for name in ("ignore_border", "mode", "padding"):
        brick.__dict__.pop(name, None)
    brick.__dict__["_blocks_before_899"] = True  # what an old Blocks pickle would be
    loaded = pickle.loads(pickle.dumps(brick))
    assert brick.pooling_size == loaded.pooling_size
    assert brick.step == loaded.step
    assert loaded.padding == (0, 0)
    assert loaded.mode == "max"
    assert not loaded.ignore_border
    loaded.apply(jnp.zeros((1, 1, 6, 8)))
    new_brick = MaxPooling((4, 3), padding=(2, 1))
    new_brick_unpickled = pickle.loads(pickle.dumps(new_brick))
    assert new_brick_unpickled.padding == (2, 1)
    assert new_brick_unpickled.ignore_border


@pytest.mark.ported("tests/bricks/test_conv.py::test_average_pooling")
def test_average_pooling():
    tmp = np.arange(16, dtype=F32).reshape(1, 1, 4, 4)
    out = np.asarray(AveragePooling((2, 2)).apply(np.tile(tmp, [2, 3, 1, 1])))
    assert_allclose(out - np.array([[10 / 4.0, 18 / 4.0], [42 / 4.0, 50 / 4.0]]),
                    np.zeros_like(out))


@pytest.mark.ported("tests/bricks/test_conv.py::test_average_pooling_inc_padding")
def test_average_pooling_inc_padding():
    brick = AveragePooling((2, 2), ignore_border=True, padding=(1, 1), include_padding=True)
    output = brick.apply(3 * np.ones((1, 1, 2, 2), dtype=F32))
    assert_allclose(np.array([0.75, 0.75, 0.75, 0.75]).reshape(1, 1, 2, 2), output)


@pytest.mark.ported("tests/bricks/test_conv.py::test_average_pooling_exc_padding")
def test_average_pooling_exc_padding():
    brick = AveragePooling((2, 2), ignore_border=True, padding=(1, 1), include_padding=False)
    x_ = 3 * np.ones((1, 1, 2, 2), dtype=F32)
    assert_allclose(x_, brick.apply(x_))


@pytest.mark.ported("tests/bricks/test_conv.py::test_pooling_works_in_convolutional_sequence")
def test_pooling_works_in_convolutional_sequence():
    brick = ConvolutionalSequence(
        [
            AveragePooling((2, 2), step=(2, 2)),
            MaxPooling((4, 4), step=(2, 2), ignore_border=True),
        ],
        image_size=(16, 32),
        num_channels=3,
    )
    brick.allocate()
    out = brick.apply(jnp.zeros((2, 3, 16, 32)))
    assert out.shape == (2, 3, 3, 7)


@pytest.mark.ported("tests/bricks/test_conv.py::test_convolutional_sequence")
def test_convolutional_sequence():
    pooling_size, batch_size = 3, 5
    act = Rectifier()
    conv = Convolutional((3, 3), 5, weights_init=Constant(1.0), biases_init=Constant(5.0))
    pooling = MaxPooling(pooling_size=(pooling_size, pooling_size))
    conv2 = Convolutional((2, 2), 4, weights_init=Constant(1.0))
    seq = ConvolutionalSequence(
        [conv, act, pooling.apply, conv2.apply, act], 4, image_size=(17, 13)
    )
    seq.push_allocation_config()
    assert conv.num_channels == 4
    assert conv2.num_channels == 5
    conv2.use_bias = False
    seq.initialize()
    x_val = np.ones((batch_size, 4, 17, 13), dtype=F32)
    y_val = np.ones((batch_size, 4, 4, 2)) * (9 * 4 + 5) * 4 * 5
    assert_allclose(seq.apply(x_val), y_val)


@pytest.mark.ported("tests/bricks/test_conv.py::test_convolutional_sequence_with_raw_activation")
def test_convolutional_sequence_with_raw_activation():
    seq = ConvolutionalSequence([Rectifier()], num_channels=4, image_size=(20, 14))
    input_ = ((np.arange(2 * 4 * 20 * 14).reshape((2, 4, 20, 14)) % 2) * 2 - 1).astype(F32)
    assert_allclose(seq.apply(input_), input_ * (input_ > 0))


@pytest.mark.ported(
    "tests/bricks/test_conv.py::test_convolutional_sequence_with_convolutions_raw_activation"
)
def test_convolutional_sequence_with_convolutions_raw_activation():
    seq = ConvolutionalSequence(
        [
            Convolutional(filter_size=(3, 3), num_filters=4),
            Rectifier(),
            Convolutional(filter_size=(5, 5), num_filters=3, step=(2, 2)),
            Tanh(),
        ],
        num_channels=2,
        image_size=(21, 39),
        weights_init=Constant(0.1),
        biases_init=Constant(0.0),
    )
    seq.initialize()
    out = seq.apply(np.ones((10, 2, 21, 39), dtype=F32))
    assert out.shape == (10, 3, 8, 17)


@pytest.mark.ported("tests/bricks/test_conv.py::test_convolutional_sequence_activation_get_dim")
def test_convolutional_sequence_activation_get_dim():
    seq = ConvolutionalSequence([Tanh()], num_channels=9, image_size=(4, 6))
    seq.allocate()
    assert seq.get_dim("output") == (9, 4, 6)
    seq = ConvolutionalSequence(
        [Convolutional(filter_size=(7, 7), num_filters=5, border_mode=(1, 1)), Tanh()],
        num_channels=8,
        image_size=(8, 11),
    )
    seq.allocate()
    assert seq.get_dim("output") == (5, 4, 7)


def _cnn(conv_kwargs, **seq_kwargs):
    layers = sum(
        [[Convolutional(filter_size=(1, 1), num_filters=1, **conv_kwargs), Rectifier()]
         for _ in range(3)],
        [],
    )
    cnn = ConvolutionalSequence(layers, num_channels=1, image_size=(1, 1), **seq_kwargs)
    cnn.allocate()
    return [c for c in cnn.children if isinstance(c, Convolutional)], cnn


@pytest.mark.ported("tests/bricks/test_conv.py::test_convolutional_sequence_use_bias")
def test_convolutional_sequence_use_bias():
    _, cnn = _cnn({}, use_bias=False, weights_init=Constant(1.0))
    cnn.initialize()
    params = ComputationGraph(lambda x: cnn.apply(x), x=(None, 1, 1, 1)).parameters
    assert len(params) == 3 and all(param.name == "W" for param in params)


@pytest.mark.ported(
    "tests/bricks/test_conv.py::test_convolutional_sequence_use_bias_not_pushed_if_not_explicitly_set"
)
def test_convolutional_sequence_use_bias_not_pushed_if_not_explicitly_set():
    convs, _ = _cnn({"use_bias": False})
    assert all(not child.use_bias for child in convs)


@pytest.mark.ported(
    "tests/bricks/test_conv.py::"
    "test_convolutional_sequence_tied_biases_not_pushed_if_not_explicitly_set"
)
def test_convolutional_sequence_tied_biases_not_pushed_if_not_explicitly_set():
    convs, _ = _cnn({"tied_biases": True})
    assert all(child.tied_biases for child in convs)


@pytest.mark.ported(
    "tests/bricks/test_conv.py::test_convolutional_sequence_tied_biases_pushed_if_explicitly_set"
)
def test_convolutional_sequence_tied_biases_pushed_if_explicitly_set():
    # a setting given to the sequence wins over the layers' own, as in Blocks
    convs, _ = _cnn({"tied_biases": True}, tied_biases=False)
    assert all(not child.tied_biases for child in convs)
    convs, _ = _cnn({}, tied_biases=True)
    assert all(child.tied_biases for child in convs)


@pytest.mark.ported("tests/bricks/test_conv.py::test_convolutional_sequence_with_no_input_size")
def test_convolutional_sequence_with_no_input_size():
    def layers():
        conv = Convolutional(
            (1, 1), 2, weights_init=Constant(1.0), biases_init=Constant(1.0)
        )
        return [conv, Rectifier(), MaxPooling((1, 1))]

    bad_seq = ConvolutionalSequence(layers(), 1, tied_biases=False)
    with pytest.raises(ValueError, match=r"Cannot infer bias size \S+"):
        bad_seq.initialize()
    seq = ConvolutionalSequence(layers(), 1, tied_biases=True)
    seq.initialize()
    out = seq.apply(jnp.ones((2, 1, 5, 3)))
    assert out.ndim == 4


def test_push_without_filter_size_is_a_configuration_error():
    """A ConvolutionalSequence cannot compute shapes through a layer without
    ``filter_size``: a ConfigurationError (issue 15), not a TypeError."""
    seq = ConvolutionalSequence([Convolutional(num_filters=2)], num_channels=1, image_size=(4, 4))
    with pytest.raises(ConfigurationError, match="filter_size"):
        seq.push_allocation_config()
