"""Convolution and pooling against numpy loops; a tiny LeNet end to end."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bricks.core import (
    MLP,
    AveragePooling,
    CategoricalCrossEntropy,
    Constant,
    Convolutional,
    ConvolutionalSequence,
    Flattener,
    IsotropicGaussian,
    MaxPooling,
    Rectifier,
    Softmax,
    apply_with,
    with_extra_dims,
)
from bricks.errors import ConfigurationConflict, ConfigurationError, ShapeError

from .test_numerics import check_grads64

RNG = np.random.default_rng(1)
INITS = dict(weights_init=IsotropicGaussian(0.5), biases_init=IsotropicGaussian(0.5))


def np_conv(x, w, b, pad, step, tied):
    """Cross-correlation by loops: x (N, C, H, W), w (F, C, fh, fw)."""
    n, c, h, wd = x.shape
    f, _, fh, fw = w.shape
    (pt, pb), (pl, pr) = pad
    xp = np.zeros((n, c, h + pt + pb, wd + pl + pr))
    xp[:, :, pt:pt + h, pl:pl + wd] = x
    oh = (h + pt + pb - fh) // step[0] + 1
    ow = (wd + pl + pr - fw) // step[1] + 1
    out = np.zeros((n, f, oh, ow))
    for i, k, r, s in itertools.product(range(n), range(f), range(oh), range(ow)):
        patch = xp[i, :, r * step[0]:r * step[0] + fh, s * step[1]:s * step[1] + fw]
        out[i, k, r, s] = np.sum(patch * w[k]) + (b[k] if tied else b[k, r, s])
    return out


@pytest.mark.parametrize(
    "border_mode, pad, step, tied",
    [
        ("valid", ((0, 0), (0, 0)), (1, 1), True),
        ("full", ((1, 1), (2, 2)), (1, 2), False),
        ("half", ((1, 1), (1, 1)), (2, 1), True),
        ((2, 0), ((2, 2), (0, 0)), (1, 1), False),
        (1, ((1, 1), (1, 1)), (2, 2), True),
    ],
)
def test_convolutional_against_numpy(border_mode, pad, step, tied):
    x = RNG.normal(size=(2, 2, 5, 4)).astype(np.float32)
    conv = Convolutional((3, 3) if border_mode == "half" else (2, 3), 3, 2, (5, 4), step=step,
                         border_mode=border_mode, tied_biases=tied, **INITS)
    conv.initialize()
    p = {k: np.asarray(v, np.float64) for k, v in conv.get_parameter_values().items()}
    expected = np_conv(x, p["/convolutional.W"], p["/convolutional.b"], pad, step, tied)
    out = conv.apply(x)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    assert conv.get_dim("output") == expected.shape[1:]


def test_convolutional_errors_and_grads():
    conv = Convolutional((2, 2), 2, 1, (3, 3), tied_biases=True, **INITS)
    conv.initialize()
    with pytest.raises(ShapeError, match=r"\(batch, 1, height, width\)"):
        conv.apply(jnp.ones((1, 2, 3, 3)))
    with pytest.raises(ConfigurationError, match="image_size"):
        Convolutional((2, 2), 2, 1, **INITS).allocate()
    with pytest.raises(ConfigurationError, match="border_mode 'same'"):
        Convolutional((2, 2), 2, 1, (3, 3), border_mode="same", tied_biases=True).allocate()
    x = RNG.normal(size=(1, 1, 3, 3))
    check_grads64(lambda ps, v: apply_with(ps, conv.apply, v),
                  (conv.get_parameter_values(), x))
    # extra leading axes (time, batch, ...) via with_extra_dims
    y = with_extra_dims(conv.apply, 1)(jnp.ones((3, 2, 1, 3, 3)))
    assert y.shape == (3, 2, 2, 2, 2)


def np_pool(x, size, step, pad, fn, include_padding=False):
    n, c, h, w = x.shape
    oh = (h + 2 * pad[0] - size[0]) // step[0] + 1
    ow = (w + 2 * pad[1] - size[1]) // step[1] + 1
    out = np.zeros((n, c, oh, ow))
    for i, k, r, s in itertools.product(range(n), range(c), range(oh), range(ow)):
        vals = []
        for a, b in itertools.product(range(size[0]), range(size[1])):
            rr, ss = r * step[0] + a - pad[0], s * step[1] + b - pad[1]
            if 0 <= rr < h and 0 <= ss < w:
                vals.append(x[i, k, rr, ss])
            elif include_padding:
                vals.append(0.0)
        out[i, k, r, s] = fn(vals)
    return out


@pytest.mark.parametrize("size, step, pad", [((2, 2), None, (0, 0)), ((3, 2), (1, 2), (1, 1))])
def test_pooling_against_numpy(size, step, pad):
    x = RNG.normal(size=(2, 3, 5, 5)).astype(np.float32)
    st = size if step is None else step
    mp = MaxPooling(size, step=step, padding=pad, num_channels=3, image_size=(5, 5))
    out = mp.apply(x)
    np.testing.assert_allclose(out, np_pool(x, size, st, pad, max), rtol=1e-6)
    assert mp.get_dim("output") == out.shape[1:]
    ap = AveragePooling(size, step=step, padding=pad)
    expected = np_pool(x, size, st, pad, np.mean)
    np.testing.assert_allclose(ap.apply(x), expected, rtol=1e-5, atol=1e-6)
    api = AveragePooling(size, step=step, padding=pad, include_padding=True)
    expected = np_pool(x, size, st, pad, np.mean, True)
    np.testing.assert_allclose(api.apply(x), expected, rtol=1e-5, atol=1e-6)
    # any rank >= 2: pools the last two axes
    assert mp.apply(x[0]).shape == out.shape[1:]
    check_grads64(lambda v: ap.apply(v), (x[:1, :1],))
    check_grads64(lambda v: mp.apply(v), (x[:1, :1],))


def test_convolutional_sequence_propagates_dims_and_lenet_trains():
    conv = ConvolutionalSequence(
        [Convolutional((3, 3), 4), Rectifier(), MaxPooling((2, 2)),
         Convolutional((2, 2), 3, border_mode="half"), Rectifier()],
        num_channels=1, image_size=(8, 8), tied_biases=True,
        weights_init=IsotropicGaussian(0.1), biases_init=Constant(0.0))
    assert conv.get_dim("output") == (3, 4, 4)
    names = [layer.name for layer in conv.layers]
    assert names == ["convolutional_0", "rectifier_1", "maxpooling", "convolutional_3",
                     "rectifier_4"]
    assert conv.layers[3].num_channels == 4 and conv.layers[3].image_size == (3, 3)
    assert conv.layers[2].get_dim("output") == (4, 3, 3)

    flat = int(np.prod(conv.get_dim("output")))
    mlp = MLP([Softmax()], [flat, 5], weights_init=IsotropicGaussian(0.1),
              biases_init=Constant(0.0))
    conv.initialize(seed=1)
    mlp.initialize(seed=2)
    params = {**conv.get_parameter_values(), **mlp.get_parameter_values()}
    assert params["/convolutionalsequence/convolutional_0.b"].shape == (4,)

    images = jnp.asarray(np.random.default_rng(7).normal(size=(6, 1, 8, 8)), jnp.float32)
    labels = jnp.arange(6) % 5

    def cost(ps):
        def model(x):
            return mlp.apply(Flattener().apply(conv.apply(x)))
        return apply_with(ps, lambda: CategoricalCrossEntropy().apply(labels, model(images)))

    step = jax.jit(lambda ps: jax.tree_util.tree_map(
        lambda p, g: p - 0.05 * g, ps, jax.grad(cost)(ps)))
    before = float(cost(params))
    for _ in range(5):
        params = step(params)
    assert float(cost(params)) < before


def test_convolutional_sequence_explicit_conflict():
    conv = ConvolutionalSequence([Convolutional((2, 2), 2, num_channels=3)], num_channels=1,
                                 image_size=(4, 4), tied_biases=True)
    with pytest.raises(ConfigurationConflict, match="num_channels"):
        conv.allocate()


def test_constant_filters_give_window_sums():
    conv = Convolutional((2, 2), 1, 1, (3, 3), tied_biases=True,
                         weights_init=Constant(1.0), biases_init=Constant(0.0))
    conv.initialize()
    x = jnp.arange(9.0).reshape(1, 1, 3, 3)
    assert conv.apply(x).tolist() == [[[[8.0, 12.0], [20.0, 24.0]]]]
