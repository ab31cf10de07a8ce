"""Convolutional bricks default to tied biases, as Blocks' do (issue 14, item 14)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from bricks.core import (
    Constant,
    Convolutional,
    ConvolutionalSequence,
    ConvolutionalTranspose,
    IsotropicGaussian,
    Rectifier,
)

INITS = dict(weights_init=IsotropicGaussian(0.5), biases_init=IsotropicGaussian(0.5))


def test_convolutional_default_is_one_bias_per_filter():
    conv = Convolutional((2, 2), 3, num_channels=2, **INITS)
    assert conv.tied_biases is True
    conv.initialize(seed=0)
    values = conv.get_parameter_values()
    assert values["/convolutional.b"].shape == (3,)
    # no image_size needed, and any image size works; the bias is added per filter
    for side in (4, 7):
        x = np.random.RandomState(side).randn(1, 2, side, side).astype(np.float32)
        got = np.asarray(conv.apply(x))
        no_bias = got - np.asarray(values["/convolutional.b"])[None, :, None, None]
        conv_zero = Convolutional((2, 2), 3, num_channels=2, weights_init=Constant(0.0),
                                  biases_init=Constant(0.0))
        conv_zero.initialize()
        conv_zero.set_parameter_values({"/convolutional.W": values["/convolutional.W"]})
        np.testing.assert_allclose(no_bias, conv_zero.apply(x), rtol=1e-5, atol=1e-5)


def test_untied_biases_are_still_available():
    conv = Convolutional((2, 2), 3, num_channels=2, image_size=(4, 4), tied_biases=False, **INITS)
    conv.initialize()
    assert conv.get_parameter_values()["/convolutional.b"].shape == (3, 3, 3)


def test_transpose_and_sequence_default_to_tied():
    up = ConvolutionalTranspose((2, 2), 2, num_channels=1, step=(2, 2), **INITS)
    assert up.tied_biases is True
    up.initialize()
    assert up.get_parameter_values()["/convolutionaltranspose.b"].shape == (2,)
    seq = ConvolutionalSequence(
        [Convolutional((2, 2), 4), Rectifier(), Convolutional((2, 2), 2)],
        num_channels=1,
        image_size=(6, 6),
        **INITS,
    )
    seq.initialize()
    shapes = {k: v.shape for k, v in seq.get_parameter_values().items() if k.endswith(".b")}
    assert set(shapes.values()) == {(4,), (2,)}
    assert seq.apply(jnp.ones((2, 1, 6, 6))).shape == (2, 2, 4, 4)
