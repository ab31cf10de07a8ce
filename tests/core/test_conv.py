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
    ConvolutionalTranspose,
    Flattener,
    IsotropicGaussian,
    Linear,
    MaxPooling,
    Rectifier,
    Softmax,
    Tanh,
    apply_with,
    with_extra_dims,
)
from bricks.core.testing import Example, check_conformance
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
    xp[:, :, pt : pt + h, pl : pl + wd] = x
    oh = (h + pt + pb - fh) // step[0] + 1
    ow = (wd + pl + pr - fw) // step[1] + 1
    out = np.zeros((n, f, oh, ow))
    for i, k, r, s in itertools.product(range(n), range(f), range(oh), range(ow)):
        patch = xp[i, :, r * step[0] : r * step[0] + fh, s * step[1] : s * step[1] + fw]
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
    conv = Convolutional(
        (3, 3) if border_mode == "half" else (2, 3),
        3,
        2,
        (5, 4),
        step=step,
        border_mode=border_mode,
        tied_biases=tied,
        **INITS,
    )
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
        Convolutional((2, 2), 2, 1, tied_biases=False, **INITS).allocate()
    with pytest.raises(ConfigurationError, match="border_mode 'same'"):
        Convolutional((2, 2), 2, 1, (3, 3), border_mode="same", tied_biases=True).allocate()
    x = RNG.normal(size=(1, 1, 3, 3))
    check_grads64(lambda ps, v: apply_with(ps, conv.apply, v), (conv.get_parameter_values(), x))
    # extra leading axes (time, batch, ...) via with_extra_dims
    y = with_extra_dims(conv.apply, 1)(jnp.ones((3, 2, 1, 3, 3)))
    assert y.shape == (3, 2, 2, 2, 2)


def np_conv_transpose(y, w, b, pad, step, out_size, tied):
    """Transposed convolution by loops: y (N, C, h, w), w (F, C, fh, fw).

    Each input pixel adds itself times its filters into the output, ``step``
    apart; the border mode's padding is then cut from the edges."""
    n, c, h, wd = y.shape
    f, _, fh, fw = w.shape
    (pt, pb), (pl, pr) = pad
    oh, ow = out_size
    full = np.zeros((n, f, oh + pt + pb, ow + pl + pr))
    for i, k, r, s in itertools.product(range(n), range(c), range(h), range(wd)):
        r0, s0 = r * step[0], s * step[1]
        full[i, :, r0 : r0 + fh, s0 : s0 + fw] += y[i, k, r, s] * w[:, k]
    out = full[:, :, pt : pt + oh, pl : pl + ow]
    return out + (b[None, :, None, None] if tied else b[None])


# image, filter_size, step, border_mode, its padding, unused_edge, original_image_size,
# tied_biases, and the expected output size
TRANSPOSE_CASES = [
    ((4, 5), (2, 3), (1, 1), "valid", ((0, 0), (0, 0)), (0, 0), None, True, (5, 7)),
    ((3, 4), (3, 3), (2, 2), "valid", ((0, 0), (0, 0)), (1, 1), None, False, (8, 10)),
    ((3, 3), (2, 2), (2, 1), "full", ((1, 1), (1, 1)), (0, 0), None, True, (4, 2)),
    ((4, 3), (3, 3), (2, 2), "half", ((1, 1), (1, 1)), (0, 0), (8, 6), False, (8, 6)),
    ((3, 3), (2, 4), (2, 2), "half", ((1, 1), (2, 2)), (1, 0), None, True, (5, 4)),
    ((3, 4), (2, 3), (2, 2), (2, 0), ((2, 2), (0, 0)), (0, 1), None, True, (2, 10)),
    ((5, 5), (4, 4), (3, 2), 1, ((1, 1), (1, 1)), (2, 1), None, False, (16, 11)),
    ((4, 4), (2, 2), (2, 2), 3, ((3, 3), (3, 3)), (0, 0), (3, 2), True, (3, 2)),
]


def make_transpose(image, filt, step, mode, unused, original, tied, **kwargs):
    return ConvolutionalTranspose(
        filt,
        3,
        2,
        original,
        unused,
        image_size=image,
        step=step,
        border_mode=mode,
        tied_biases=tied,
        **kwargs,
    )


@pytest.mark.parametrize(
    "image, filt, step, mode, pad, unused, original, tied, out_size", TRANSPOSE_CASES
)
def test_convolutional_transpose_against_numpy(
    image, filt, step, mode, pad, unused, original, tied, out_size
):
    y = RNG.normal(size=(2, 2, *image)).astype(np.float32)
    convt = make_transpose(image, filt, step, mode, unused, original, tied, **INITS)
    convt.initialize()
    p = {k: np.asarray(v, np.float64) for k, v in convt.get_parameter_values().items()}
    w, b = p["/convolutionaltranspose.W"], p["/convolutionaltranspose.b"]
    assert w.shape == (3, 2, *filt)  # (num_filters, num_channels, ...), as in Blocks
    expected = np_conv_transpose(y, w, b, pad, step, out_size, tied)
    out = convt.apply(y)
    assert out.shape == expected.shape == (2, 3, *out_size)
    assert convt.get_dim("output") == (3, *out_size)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "image, filt, step, mode, pad, unused, original, tied, out_size", TRANSPOSE_CASES
)
def test_convolutional_transpose_is_the_adjoint_of_convolutional(
    image, filt, step, mode, pad, unused, original, tied, out_size
):
    """sum(conv(x) * y) == sum(x * convT(y)) for the same filters, in float64."""
    convt = make_transpose(image, filt, step, mode, unused, original, tied, use_bias=False)
    conv = Convolutional(filt, 2, 3, out_size, step=step, border_mode=mode, use_bias=False)
    assert conv.get_dim("output") == (2, *image)  # convT maps back to the conv's input
    convt.allocate()
    conv.allocate()
    with jax.enable_x64(True):
        w = jnp.asarray(RNG.normal(size=(3, 2, *filt)))
        x = jnp.asarray(RNG.normal(size=(2, 3, *out_size)))
        y = jnp.asarray(RNG.normal(size=(2, 2, *image)))
        conv_x = apply_with({"/convolutional.W": w.transpose(1, 0, 2, 3)}, conv.apply, x)
        convt_y = apply_with({"/convolutionaltranspose.W": w}, convt.apply, y)
        assert conv_x.dtype == convt_y.dtype == jnp.float64
        np.testing.assert_allclose(jnp.sum(conv_x * y), jnp.sum(x * convt_y), rtol=1e-12)


@pytest.mark.slow
def test_convolutional_transpose_in_a_sequence_restores_the_image_size():
    seq = ConvolutionalSequence(
        [
            Convolutional((3, 3), 4, step=(2, 2)),  # (9, 8) -> (5, 4) with "half"
            Tanh(),  # smooth: a finite-difference check across ReLU's kink depends on the data
            ConvolutionalTranspose((3, 3), 2, unused_edge=(0, 1), step=(2, 2)),
        ],
        num_channels=2,
        image_size=(9, 8),
        border_mode="half",
        tied_biases=False,
        **INITS,
    )
    assert seq.get_dim("output") == (2, 9, 8)
    up = seq.layers[2]
    assert up.num_channels == 4 and up.image_size == (5, 4) and up.border_mode == "half"
    seq.initialize(seed=0)
    assert seq.get_parameter_values()["/convolutionalsequence/convolutionaltranspose.b"].shape == (
        2,
        9,
        8,
    )
    x = jnp.asarray(np.random.default_rng(5).normal(size=(3, 2, 9, 8)), jnp.float32)
    assert seq.apply(x).shape == (3, *seq.get_dim("output"))
    check_grads64(lambda ps, v: apply_with(ps, seq.apply, v), (seq.get_parameter_values(), x))
    # the output size is known from original_image_size alone, or inferred from the input
    alone = ConvolutionalTranspose((2, 2), 1, 1, (7, 5), step=(3, 2))
    assert alone.get_dim("output") == (1, 7, 5)
    assert ConvolutionalTranspose((2, 2), 1, 1).get_dim("output") == (1, None, None)
    inferred = ConvolutionalTranspose((2, 2), 1, 1, step=(3, 2), tied_biases=True, **INITS)
    inferred.initialize()
    assert inferred.apply(jnp.ones((1, 1, 2, 3))).shape == (1, 1, 5, 6)


def test_convolutional_transpose_errors():
    bad = ConvolutionalTranspose(
        (3, 3), 2, 1, (12, 7), image_size=(4, 3), step=(2, 2), tied_biases=False, **INITS
    )
    message = r"original_image_size \(12, 7\).*expected a height in \[9, 10\], got 12"
    with pytest.raises(ConfigurationError, match=message):
        bad.get_dim("output")
    with pytest.raises(ConfigurationError, match=message):
        bad.allocate()
    # checked against the input that arrives, too
    fits = ConvolutionalTranspose((3, 3), 2, 1, (9, 7), step=(2, 2), tied_biases=True, **INITS)
    fits.initialize()
    assert fits.apply(jnp.ones((1, 1, 4, 3))).shape == (1, 2, 9, 7)
    with pytest.raises(ConfigurationError, match=r"expected a width in \[9, 10\], got 7"):
        fits.apply(jnp.ones((1, 1, 4, 4)))
    with pytest.raises(ShapeError, match=r"\(batch, 1, height, width\)"):
        fits.apply(jnp.ones((1, 2, 4, 3)))
    # a sequence pushing an image_size that original_image_size cannot come from
    seq = ConvolutionalSequence(
        [ConvolutionalTranspose((2, 2), 1, original_image_size=(5, 5))],
        num_channels=1,
        image_size=(3, 3),
    )
    with pytest.raises(ConfigurationError, match=r"expected a height in \[4, 4\], got 5"):
        seq.get_dim("output")
    with pytest.raises(ConfigurationError, match=r"unused_edge \(2, 0\) must be in \[0, step\)"):
        ConvolutionalTranspose((2, 2), 1, 1, unused_edge=(2, 0), image_size=(3, 3)).get_dim(
            "output"
        )
    with pytest.raises(ConfigurationError, match="original_image_size` or `image_size"):
        ConvolutionalTranspose((2, 2), 1, 1, tied_biases=False, **INITS).allocate()
    with pytest.raises(ConfigurationError, match="ConvolutionalTranspose .*border_mode 'same'"):
        ConvolutionalTranspose((2, 2), 1, 1, border_mode="same", tied_biases=True).allocate()


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


def np_window_starts(n, size, step):
    """Window starts along an axis of length n with ignore_border=False, as
    Theano's Pool.perform walks them: every start inside the axis, except that
    overlapping windows (step < size) stop at the first one reaching the end."""
    starts, start = [], 0
    while start < n:
        starts.append(start)
        if step < size and start + size >= n:
            break
        start += step
    return starts


def np_pool_partial(x, size, step, fn):
    """Pooling with ignore_border=False: each window clipped to the image."""
    n, c, h, w = x.shape
    rows, cols = np_window_starts(h, size[0], step[0]), np_window_starts(w, size[1], step[1])
    out = np.zeros((n, c, len(rows), len(cols)))
    for i, k, (r, r0), (s, s0) in itertools.product(
        range(n), range(c), enumerate(rows), enumerate(cols)
    ):
        out[i, k, r, s] = fn(x[i, k, r0 : r0 + size[0], s0 : s0 + size[1]])
    return out


@pytest.mark.parametrize(
    "image, size, step",
    [
        ((5, 5), (2, 2), None),  # odd image, step == size: Theano's (5, 5) -> (3, 3)
        ((6, 4), (2, 2), None),  # even image: no partial window, same as ignore_border=True
        ((7, 6), (3, 2), (2, 1)),  # step < size
        ((6, 7), (3, 3), (2, 2)),  # step < size, a partial window on one axis only
        ((7, 8), (2, 3), (3, 4)),  # step > size
        ((4, 5), (3, 2), (3, 4)),  # step >= size, last window a single row / column
        ((2, 3), (4, 4), (1, 5)),  # window larger than the image
    ],
)
def test_pooling_without_ignore_border_against_numpy(image, size, step):
    x = RNG.normal(size=(2, 3, *image)).astype(np.float32)
    st = size if step is None else step
    mp = MaxPooling(size, step=step, ignore_border=False, num_channels=3, image_size=image)
    out = mp.apply(x)
    expected = np_pool_partial(x, size, st, np.max)
    assert out.shape == expected.shape and mp.get_dim("output") == expected.shape[1:]
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    for include_padding in (False, True):
        # a partial window holds no padding: Theano divides both averages by its pixels
        ap = AveragePooling(size, step=step, ignore_border=False, include_padding=include_padding)
        expected = np_pool_partial(x, size, st, np.mean)
        np.testing.assert_allclose(ap.apply(x), expected, rtol=1e-5, atol=1e-6)
    # rank 2 and rank 5 inputs pool their last two axes alike
    np.testing.assert_allclose(mp.apply(x[0, 0]), out[0, 0], rtol=1e-6)
    assert mp.apply(x[None]).shape == (1, *out.shape)


@pytest.mark.slow
def test_pooling_output_size_against_window_starts():
    for n, size, step in itertools.product(range(1, 10), range(1, 5), range(1, 6)):
        pool = MaxPooling((size, 1), step=(step, 1), ignore_border=False, image_size=(n, 1))
        expected = len(np_window_starts(n, size, step))
        assert pool.get_dim("output")[1] == expected, (n, size, step)
        assert pool.apply(jnp.zeros((n, 1))).shape == (expected, 1), (n, size, step)
        whole = MaxPooling((size, 1), step=(step, 1), image_size=(n, 1))
        if n >= size:  # ignore_border=True keeps only the whole windows
            assert whole.get_dim("output")[1] == (n - size) // step + 1
    # Theano's documented example
    theano = MaxPooling((2, 2), ignore_border=False, num_channels=1, image_size=(5, 5))
    assert theano.get_dim("output") == (1, 3, 3)


def test_pooling_ignore_border_with_padding_raises_and_is_pushed_config():
    both = r"ignore_border=False cannot be combined with padding=\(1, 0\)"
    for cls in (MaxPooling, AveragePooling):
        pool = cls((2, 2), padding=(1, 0), ignore_border=False, image_size=(5, 5))
        with pytest.raises(ConfigurationError, match=both):
            pool.allocate()
        with pytest.raises(ConfigurationError, match=both):
            pool.get_dim("output")
        with pytest.raises(ConfigurationError, match=both):
            pool.apply(jnp.ones((1, 1, 5, 5)))
    # an allocation setting: a parent's push fills it unless the user set it
    seq = ConvolutionalSequence([MaxPooling((2, 2))], num_channels=1, image_size=(5, 5))
    pool = seq.layers[0]
    seq.push_to(pool, "ignore_border", False)
    assert pool.ignore_border is False and not pool.is_explicit("ignore_border")
    assert seq.get_dim("output") == (1, 3, 3)
    explicit = MaxPooling((2, 2), ignore_border=True)
    with pytest.raises(ConfigurationConflict, match="ignore_border"):
        seq.push_to(explicit, "ignore_border", False)


def test_pooling_without_ignore_border_grads_jit_vmap():
    x = RNG.normal(size=(1, 2, 5, 7))
    for pool in (
        MaxPooling((2, 3), ignore_border=False),
        MaxPooling((3, 3), step=(2, 2), ignore_border=False),
        AveragePooling((2, 3), ignore_border=False),
        AveragePooling((3, 2), step=(4, 3), ignore_border=False, include_padding=True),
    ):
        check_grads64(lambda v, pool=pool: pool.apply(v), (x,))
        check_conformance(Example(type(pool), lambda pool=pool: (pool, (jnp.asarray(x),))))


def test_convolutional_sequence_with_partial_pooling_chains_dims():
    conv = ConvolutionalSequence(
        [
            Convolutional((2, 2), 3),
            Rectifier(),
            MaxPooling((2, 2), ignore_border=False),  # (8, 7) -> (4, 4)
            AveragePooling((3, 3), step=(2, 2), ignore_border=False),  # (4, 4) -> (2, 2)
        ],
        num_channels=1,
        image_size=(9, 8),
        tied_biases=True,
        **INITS,
    )
    assert conv.get_dim("output") == (3, 2, 2)
    assert conv.layers[3].image_size == (4, 4)
    flat = int(np.prod(conv.get_dim("output")))
    top = Linear(flat, 5, **INITS)
    conv.initialize(seed=0)
    top.initialize(seed=1)
    images = jnp.asarray(RNG.normal(size=(2, 1, 9, 8)), jnp.float32)
    features = conv.apply(images)
    assert features.shape == (2, *conv.get_dim("output"))
    assert top.apply(Flattener().apply(features)).shape == (2, 5)


def test_convolutional_sequence_propagates_dims_and_lenet_trains():
    conv = ConvolutionalSequence(
        [
            Convolutional((3, 3), 4),
            Rectifier(),
            MaxPooling((2, 2)),
            Convolutional((2, 2), 3, border_mode="half"),
            Rectifier(),
        ],
        num_channels=1,
        image_size=(8, 8),
        tied_biases=True,
        weights_init=IsotropicGaussian(0.1),
        biases_init=Constant(0.0),
    )
    assert conv.get_dim("output") == (3, 4, 4)
    names = [layer.name for layer in conv.layers]
    assert names == [
        "convolutional_0",
        "rectifier_1",
        "maxpooling",
        "convolutional_3",
        "rectifier_4",
    ]
    assert conv.layers[3].num_channels == 4 and conv.layers[3].image_size == (3, 3)
    assert conv.layers[2].get_dim("output") == (4, 3, 3)

    flat = int(np.prod(conv.get_dim("output")))
    mlp = MLP(
        [Softmax()], [flat, 5], weights_init=IsotropicGaussian(0.1), biases_init=Constant(0.0)
    )
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

    step = jax.jit(
        lambda ps: jax.tree_util.tree_map(lambda p, g: p - 0.05 * g, ps, jax.grad(cost)(ps))
    )
    before = float(cost(params))
    for _ in range(5):
        params = step(params)
    assert float(cost(params)) < before


def test_convolutional_sequence_explicit_conflict():
    conv = ConvolutionalSequence(
        [Convolutional((2, 2), 2, num_channels=3)],
        num_channels=1,
        image_size=(4, 4),
        tied_biases=True,
    )
    with pytest.raises(ConfigurationConflict, match="num_channels"):
        conv.allocate()


def test_constant_filters_give_window_sums():
    conv = Convolutional(
        (2, 2),
        1,
        1,
        (3, 3),
        tied_biases=True,
        weights_init=Constant(1.0),
        biases_init=Constant(0.0),
    )
    conv.initialize()
    x = jnp.arange(9.0).reshape(1, 1, 3, 3)
    assert conv.apply(x).tolist() == [[[[8.0, 12.0], [20.0, 24.0]]]]
