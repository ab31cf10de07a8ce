"""A registry of example bricks and the conformance checks every brick passes.

Each public brick class has one entry: a factory returning an initialized
brick and example inputs for its ``apply`` (or the application named at
registration): positional inputs, and optionally a dict of keyword inputs
for applications that take them by name. :func:`check_conformance` runs
an entry through ``jax.jit``, ``jax.grad`` and ``jax.vmap`` of
:func:`~bricks.core.apply_with`, a parameter round trip by path, and checks
that its annotations (its output with role ``OUTPUT``, its parameters) are
visible to a :class:`~bricks.core.Recorder`, which is what graphs and
``VariableFilter`` build on.

:func:`check_bad_input` throws one of :data:`BAD_INPUTS` (wrong rank or
feature size, integers, strings, objects, a missing or empty batch) at an
entry: the brick must raise a ``bricks.errors`` exception naming its path, or
give what the good input gives (no raw JAX error, no broadcast batch).

Other layers add their bricks with :func:`register` and test them with
:func:`check_conformance`; :func:`missing_from_registry` lists the public
brick classes of a module that have no entry, so a new brick without one
fails its layer's conformance test::

    from bricks.core.testing import register, check_conformance

    @register(SimpleRecurrent)
    def _simple_recurrent():
        brick = SimpleRecurrent(dim=3, activation=Tanh(), weights_init=...)
        brick.initialize()
        return brick, (jnp.ones((4, 2, 3)),)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bricks.core import conv, cost, lookup, maxout, parallel, simple, spatial_bn, wrappers
from bricks.core.batch_norm import BatchNormalization, BatchNormalizedMLP
from bricks.core.brick import Brick, Initializable
from bricks.core.initialization import Constant, IsotropicGaussian
from bricks.core.roles import OUTPUT
from bricks.core.sequences import MLP, Sequence
from bricks.core.tracing import Frame, Recorder, apply_with, use_frame

__all__ = [
    "Example",
    "REGISTRY",
    "ABSTRACT",
    "register",
    "missing_from_registry",
    "check_conformance",
    "BAD_INPUTS",
    "check_bad_input",
]

#: ``() -> (brick, inputs)`` or ``() -> (brick, inputs, keyword_inputs)``.
Factory = Callable[[], tuple[Any, ...]]


@dataclass(frozen=True)
class Example:
    """A registry entry: ``make()`` returns ``(initialized brick, inputs)`` or
    ``(initialized brick, inputs, keyword_inputs)``, where ``inputs`` is a
    tuple and ``keyword_inputs`` a dict of arrays passed by name."""

    cls: type
    make: Factory
    application: str = "apply"


REGISTRY: dict[type, Example] = {}

#: Public base classes that are not meant to be used as they are.
ABSTRACT: set[type] = {Brick, Initializable, simple.Activation, cost.Cost, conv.Pooling}


def register(cls: type, application: str = "apply") -> Callable[[Factory], Factory]:
    """Register ``factory`` as the example of brick class ``cls``."""

    def decorate(factory: Factory) -> Factory:
        REGISTRY[cls] = Example(cls, factory, application)
        return factory

    return decorate


def missing_from_registry(module: ModuleType, abstract: Iterable[type] = ()) -> list[str]:
    """Public brick classes of ``module`` (its ``__all__``) without a registry entry."""
    skip = ABSTRACT | set(abstract)
    missing = []
    for name in getattr(module, "__all__", ()):
        obj = getattr(module, name)
        if inspect.isclass(obj) and issubclass(obj, Brick) and obj not in skip:
            if obj not in REGISTRY:
                missing.append(name)
    return missing


# -- checks ----------------------------------------------------------------------------


def _is_float(x: Any) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.floating)


def _close(a: Any, b: Any, what: str, tol: float = 1e-4) -> None:
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol, atol=tol, err_msg=what)


def check_conformance(example: Example) -> None:
    """Run every conformance check on ``example`` (raises ``AssertionError``)."""
    brick, args, *keyword_inputs = example.make()
    if type(brick) is not example.cls:
        raise AssertionError(f"the example of {example.cls.__name__} made a {type(brick).__name__}")
    app = getattr(brick, example.application)
    # positional and keyword inputs as one list of arrays (an input given as None stays None)
    kwargs = dict(keyword_inputs[0]) if keyword_inputs else {}
    with_paths, treedef = jax.tree_util.tree_flatten_with_path((tuple(args), kwargs))
    where = [jax.tree_util.keystr(path[1:]) for path, _ in with_paths]  # "[0]", "['mask']"
    inputs = [jnp.asarray(x) for _, x in with_paths]
    params = brick.get_parameter_values()
    float_idx = [i for i, x in enumerate(inputs) if _is_float(x)]
    # a second example per input for vmap: floats scaled, integers kept
    other = [x * 0.5 if _is_float(x) else x for x in inputs]

    def call(xs):
        a, kw = jax.tree_util.tree_unflatten(treedef, list(xs))
        return app(*a, **kw)

    def pure(p, xs):
        return apply_with(p, call, xs)

    def total(p, floats):
        xs = list(inputs)
        for i, v in zip(float_idx, floats, strict=True):
            xs[i] = v
        leaves = jax.tree_util.tree_leaves(pure(p, xs))
        return sum(jnp.sum(leaf.astype(jnp.float32)) for leaf in leaves)

    @jax.jit
    def everything(p, xs, ys):
        out = pure(p, xs)
        grads = jax.grad(total, argnums=(0, 1))(p, tuple(xs[i] for i in float_idx))
        stacked = [jnp.stack([x, y]) for x, y in zip(xs, ys, strict=True)]
        batched = jax.vmap(pure, in_axes=(None, 0))(p, stacked)
        return out, grads, batched

    eager = call(inputs)
    out, (g_params, g_inputs), batched = everything(params, inputs, other)
    name = example.cls.__name__
    _close(out, eager, f"{name}: jit differs from eager")
    # grad: one finite gradient per parameter and float input, of the right shape
    if set(g_params) != set(params):
        raise AssertionError(f"{name}: gradient keys {sorted(g_params)} != {sorted(params)}")
    for path, g in g_params.items():
        if g.shape != params[path].shape or not np.all(np.isfinite(g)):
            raise AssertionError(f"{name}: bad gradient for {path}: shape {g.shape}")
    for g, i in zip(g_inputs, float_idx, strict=True):
        if g.shape != inputs[i].shape or not np.all(np.isfinite(g)):
            raise AssertionError(f"{name}: bad gradient for input {where[i]}")
    # vmap: each slice equals the unbatched result
    _close(jax.tree_util.tree_map(lambda b: b[0], batched), out, f"{name}: vmap slice 0")
    _close(jax.tree_util.tree_map(lambda b: b[1], batched), call(other), f"{name}: vmap slice 1")

    # parameter round trip by path
    perturbed = {k: np.asarray(v) + 0.25 for k, v in params.items()}
    brick.set_parameter_values(perturbed)
    got = brick.get_parameter_values()
    if set(got) != set(perturbed):
        raise AssertionError(f"{name}: round trip changed the paths")
    _close(got, perturbed, f"{name}: round trip changed values", tol=0)
    _close(call(inputs), pure(perturbed, inputs), f"{name}: set values differ from apply_with")
    brick.set_parameter_values(params)

    # annotations: outputs with role OUTPUT, the brick and its parameters recorded
    recorder = Recorder()
    with use_frame(Frame(params, recorder)):
        jax.eval_shape(lambda: call(inputs))
    outputs = [
        v
        for v in recorder.variables.values()
        if v.brick is brick
        and v.application == example.application
        and v.has_role(OUTPUT)
        and v.scan_scope is None  # a recurrent brick's step outputs are recorded in its scan
    ]
    if len(outputs) != len(app.outputs):
        raise AssertionError(
            f"{name}: expected outputs {app.outputs} annotated with role OUTPUT, found "
            f"{[v.tag for v in outputs]}"
        )
    if id(brick) not in recorder.bricks:
        raise AssertionError(f"{name}: the brick was not recorded")
    if set(recorder.parameters) != set(params):
        raise AssertionError(
            f"{name}: parameters recorded {sorted(recorder.parameters)} != {sorted(params)}"
        )


# -- bad inputs (issue 14) ----------------------------------------------------------------

#: The kinds of bad input :func:`check_bad_input` makes from an example's inputs.
BAD_INPUTS = (
    "extra_axis",  # every input gets a new leading axis of size 2
    "missing_batch",  # every input loses its batch axis (the first example is kept)
    "empty_batch",  # every input gets a batch of 0
    "fewer_axes",  # one input loses its last axis
    "wrong_features",  # one input gets one more entry on its last axis
    "integers",  # one float input is rounded to int32
    "strings",  # one input becomes an array of strings
    "objects",  # one input becomes an array of Python objects
)
_ONE_INPUT = ("fewer_axes", "wrong_features", "integers", "strings", "objects")


def _leaves(example_inputs: tuple) -> tuple[list[str], list[Any], Any]:
    """Names, arrays and treedef of ``(args, kwargs)``."""
    args, kwargs = example_inputs
    with_paths, treedef = jax.tree_util.tree_flatten_with_path((tuple(args), dict(kwargs)))
    names = []
    for path, _ in with_paths:
        key = path[1]
        names.append(str(key.key) if hasattr(key, "key") else f"[{key.idx}]")
    return names, [np.asarray(x) for _, x in with_paths], treedef


def _make_bad(
    kind: str, arrays: list[np.ndarray], which: int, axes: list[int]
) -> list[Any] | None:
    """The inputs with bad input ``kind``, or ``None`` where it does not apply."""
    out: list[Any] = list(arrays)
    x = arrays[which]
    if kind == "extra_axis":
        return [np.stack([a, a]) for a in arrays]
    if kind == "missing_batch":
        if any(a.ndim <= ax for a, ax in zip(arrays, axes, strict=True)):
            return None
        return [np.take(a, 0, axis=ax) for a, ax in zip(arrays, axes, strict=True)]
    if kind == "empty_batch":
        if any(a.ndim <= ax for a, ax in zip(arrays, axes, strict=True)):
            return None
        return [np.take(a, [], axis=ax) for a, ax in zip(arrays, axes, strict=True)]
    if kind == "fewer_axes":
        if x.ndim < 2:
            return None
        out[which] = x[..., 0]
    elif kind == "wrong_features":
        if x.ndim < 1 or x.shape[-1] < 1:
            return None
        out[which] = np.concatenate([x, x[..., :1]], axis=-1)
    elif kind == "integers":
        if not np.issubdtype(x.dtype, np.floating):
            return None
        out[which] = np.round(x * 2).astype(np.int32)
    elif kind == "strings":
        out[which] = np.full(x.shape, "x")
    elif kind == "objects":
        out[which] = np.empty(x.shape, dtype=object)
        out[which].fill(None)
    else:
        raise ValueError(f"unknown bad input {kind!r}; the kinds are {BAD_INPUTS}")
    return out


def check_bad_input(
    example: Example,
    kind: str,
    which: int = 0,
    *,
    made: tuple[Any, ...] | None = None,
    batch_axis: Callable[[str], int] | None = None,
    output_batch_axis: int = 0,
    documented: Iterable[str] = (),
    values: bool = True,
) -> str:
    """Feed the example a bad input of ``kind`` (see :data:`BAD_INPUTS`) and
    check what happens (raises ``AssertionError``).

    Allowed outcomes: a :class:`~bricks.errors.BricksError` whose message
    names the brick's path, or a result whose every non-scalar output has the
    batch size of the (bad) input on ``output_batch_axis`` and — for
    ``extra_axis``, ``missing_batch``, ``empty_batch`` and ``integers``,
    unless ``kind`` is in ``documented`` — equals what the good input gives
    (stacked twice, its first example, its empty batch, the same values as
    floats). A raw JAX, numpy or Python error is a failure.

    Args:
        example: the registry entry.
        kind: the kind of bad input.
        which: the input (in flattening order: positional, then keyword)
            that one-input kinds spoil (modulo the number of inputs).
        made: ``example.make()``, to reuse a brick across calls.
        batch_axis: the batch axis of an input, by name (default 0).
        output_batch_axis: the batch axis of the outputs.
        documented: kinds whose result has another documented meaning (a
            Flattener reads the first axis as the batch; the channels of a
            Parallel are independent): only a raw error is a failure then.
        values: also compare values (not only shapes) with the reference.

    Returns:
        ``"error"``, ``"works"`` or ``"not applicable"``.
    """
    from bricks.errors import BricksError

    brick, args, *keyword_inputs = made if made is not None else example.make()
    app = getattr(brick, example.application)
    kwargs = dict(keyword_inputs[0]) if keyword_inputs else {}
    names, arrays, treedef = _leaves((args, kwargs))
    if not arrays:
        return "not applicable"
    declared = list(app.inputs)
    names = [declared[int(n[1:-1])] if n.startswith("[") and int(n[1:-1]) < len(declared)
             else n for n in names]
    axes = [(batch_axis or (lambda _: 0))(n) for n in names]
    which %= len(arrays)
    bad = _make_bad(kind, arrays, which, axes)
    if bad is None:
        return "not applicable"

    def call(xs: list[Any]) -> Any:
        a, kw = jax.tree_util.tree_unflatten(treedef, list(xs))
        return app(*a, **kw)

    what = f"{example.cls.__name__} with {kind} (input {names[which]!r})"
    try:
        shapes = jax.eval_shape(lambda: call(bad))
    except BricksError as exc:
        if brick.path not in str(exc):
            raise AssertionError(f"{what}: the error does not name {brick.path}: {exc}") from exc
        return "error"
    except Exception as exc:  # noqa: BLE001 - any other error is what this check finds
        raise AssertionError(
            f"{what}: raised {type(exc).__name__}, not a bricks error: {exc}"
        ) from exc
    if kind in documented:
        return "works"
    outputs = [o for o in jax.tree_util.tree_leaves(shapes) if len(o.shape) > 0]
    bad_axes = [0] * len(axes) if kind == "extra_axis" else axes
    sizes = {
        b.shape[ax]
        for i, (b, ax) in enumerate(zip(bad, bad_axes, strict=True))
        # an input that lost an axis no longer says where its batch is
        if np.ndim(b) > ax and not (kind == "fewer_axes" and i == which)
    }
    if kind == "missing_batch":
        sizes = set()  # the batch axis is gone: the reference decides
    for out in outputs:
        axis = 0 if kind == "extra_axis" else output_batch_axis
        if sizes and (out.ndim <= axis or out.shape[axis] not in sizes):
            raise AssertionError(
                f"{what}: an output of shape {out.shape} lost the batch size {sorted(sizes)} "
                f"of the input on axis {axis} (a broadcast?)"
            )
    if kind not in ("extra_axis", "missing_batch", "empty_batch", "integers"):
        return "works"
    good_shapes = jax.eval_shape(lambda: call(arrays))
    pairs = list(zip(jax.tree_util.tree_leaves(good_shapes), jax.tree_util.tree_leaves(shapes),
                     strict=True))
    for good, got in pairs:
        if len(good.shape) == 0:
            continue  # a mean over the batch: no reference
        want = list(good.shape)
        if kind == "extra_axis":
            want = [2, *want]
        elif kind == "missing_batch":
            del want[output_batch_axis]
        elif kind == "empty_batch":
            want[output_batch_axis] = 0
        if list(got.shape) != want:
            raise AssertionError(
                f"{what}: an output has shape {got.shape}, expected {tuple(want)} (from the good "
                f"input's {good.shape})"
            )
    if values and kind != "empty_batch":
        good_out, got_out = call(arrays), call(bad)
        if kind == "integers":
            as_float = list(bad)
            as_float[which] = np.asarray(bad[which], np.float32)
            good_out = call(as_float)
        for good, got in zip(jax.tree_util.tree_leaves(good_out),
                             jax.tree_util.tree_leaves(got_out), strict=True):
            good, got = np.asarray(good), np.asarray(got)
            if good.ndim == 0 and kind != "integers":
                continue
            if kind == "extra_axis":
                good = np.stack([good, good])
            elif kind == "missing_batch":
                good = np.take(good, 0, axis=output_batch_axis)
            np.testing.assert_allclose(got, good, rtol=1e-4, atol=1e-5, err_msg=what)
    return "works"


# -- the core entries --------------------------------------------------------------------

_G = IsotropicGaussian(0.3)
_INITS = {"weights_init": _G, "biases_init": Constant(0.1)}


def _x(*shape: int, seed: int = 0) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


def _ready(brick: Brick, *inputs: Any) -> tuple[Brick, tuple[Any, ...]]:
    brick.initialize(seed=0)
    return brick, inputs


def _activation(cls: type) -> None:
    register(cls)(lambda: _ready(cls(), _x(2, 3)))


for _cls in (
    simple.Identity,
    simple.Tanh,
    simple.Logistic,
    simple.Rectifier,
    simple.Softplus,
    simple.Softmax,
):
    _activation(_cls)

register(simple.Linear)(lambda: _ready(simple.Linear(3, 2, **_INITS), _x(4, 3)))
register(simple.Bias)(lambda: _ready(simple.Bias(3, biases_init=_G), _x(4, 3)))
register(simple.Maxout)(lambda: _ready(simple.Maxout(2), _x(2, 4)))
register(maxout.LinearMaxout)(lambda: _ready(maxout.LinearMaxout(3, 2, 2, **_INITS), _x(4, 3)))
register(maxout.LeakyRectifier)(lambda: _ready(maxout.LeakyRectifier(0.1), _x(2, 3)))
register(spatial_bn.SpatialBatchNormalization)(
    lambda: _ready(spatial_bn.SpatialBatchNormalization((2, 3, 3)), _x(4, 2, 3, 3))
)
register(MLP)(lambda: _ready(MLP([simple.Tanh(), simple.Softmax()], [3, 4, 2], **_INITS), _x(5, 3)))
register(Sequence)(
    lambda: _ready(Sequence([simple.Linear(3, 2, **_INITS).apply, simple.Tanh().apply]), _x(2, 3))
)
register(BatchNormalization)(lambda: _ready(BatchNormalization(3), _x(4, 3)))
register(BatchNormalizedMLP)(
    lambda: _ready(BatchNormalizedMLP([simple.Tanh(), None], [3, 4, 2], weights_init=_G), _x(5, 3))
)
register(lookup.LookupTable)(
    lambda: _ready(lookup.LookupTable(6, 3, weights_init=_G), jnp.array([[0, 5, 2], [1, 1, 3]]))
)
register(parallel.Parallel)(
    lambda: _ready(parallel.Parallel(["a", "b"], [2, 3], [4, 1], **_INITS), _x(2, 2), _x(2, 3))
)
register(parallel.Fork)(lambda: _ready(parallel.Fork(["u", "v"], 3, [2, 4], **_INITS), _x(2, 3)))
register(parallel.Merge)(
    lambda: _ready(parallel.Merge(["a", "b"], [2, 3], 4, **_INITS), _x(2, 2), _x(2, 3))
)
register(wrappers.WithExtraDims)(
    lambda: _ready(
        wrappers.WithExtraDims(simple.Linear(3, 2, **_INITS).apply, extra_ndim=1), _x(2, 4, 3)
    )
)


def _PROBS() -> jax.Array:  # noqa: N802 - reads like the constant it stands for
    return jax.nn.softmax(_x(4, 3, seed=1))


def _LABELS() -> jax.Array:  # noqa: N802
    return jnp.array([0, 2, 1, 2])


register(cost.SquaredError)(lambda: _ready(cost.SquaredError(), _x(4, 3), _x(4, 3, seed=1)))
register(cost.CategoricalCrossEntropy)(
    lambda: _ready(cost.CategoricalCrossEntropy(), _LABELS(), _PROBS())
)
register(cost.BinaryCrossEntropy)(
    lambda: _ready(cost.BinaryCrossEntropy(), (_x(4, 3) > 0).astype(jnp.float32), _PROBS())
)
register(cost.MisclassificationRate)(
    lambda: _ready(cost.MisclassificationRate(top_k=2), _LABELS(), _PROBS())
)

register(conv.Convolutional)(
    lambda: _ready(
        conv.Convolutional((2, 2), 2, 1, (4, 4), step=(2, 1), border_mode="half", **_INITS),
        _x(2, 1, 4, 4),
    )
)
register(conv.ConvolutionalTranspose)(
    lambda: _ready(
        conv.ConvolutionalTranspose(
            (3, 2), 2, 1, (8, 5), image_size=(4, 3), step=(2, 2), border_mode="half", **_INITS
        ),
        _x(2, 1, 4, 3),
    )
)
register(conv.MaxPooling)(lambda: _ready(conv.MaxPooling((2, 2), padding=(1, 0)), _x(2, 1, 4, 4)))
register(conv.AveragePooling)(
    lambda: _ready(conv.AveragePooling((2, 2), step=(1, 1)), _x(2, 1, 3, 3))
)
register(conv.Flattener)(lambda: _ready(conv.Flattener(), _x(2, 1, 2, 3)))
register(conv.ConvolutionalSequence)(
    lambda: _ready(
        conv.ConvolutionalSequence(
            [conv.Convolutional((2, 2), 2), simple.Rectifier(), conv.MaxPooling((2, 2))],
            num_channels=1,
            image_size=(5, 5),
            **_INITS,
        ),
        _x(2, 1, 5, 5),
    )
)
