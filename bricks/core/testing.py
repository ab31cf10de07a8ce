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

from bricks.core import conv, cost, lookup, parallel, simple, wrappers
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
