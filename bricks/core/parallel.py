"""Bricks with several inputs or outputs: :class:`Parallel`, :class:`Fork`, :class:`Merge`.

Each makes one copy of a *prototype* brick (a :class:`~bricks.core.Linear`
by default) per channel, named ``"<child_prefix>_<channel>"``, and pushes each
copy its input and output dimension. A prototype with ``input_dim`` and
``output_dim`` (``Linear``) gets those; one with ``dims`` (``MLP``) gets its
first and last entries replaced.
"""

from __future__ import annotations

import copy
import functools
import operator
from collections.abc import Mapping
from collections.abc import Sequence as Seq
from typing import Any

import jax

from bricks.core.application import application
from bricks.core.brick import Brick, Initializable
from bricks.core.checks import as_input, check_rank, check_size, describe, same_sizes
from bricks.core.roles import INPUT
from bricks.core.simple import Linear
from bricks.core.tracing import annotate
from bricks.errors import BrickTreeError, ConfigurationError, ShapeError

__all__ = ["Parallel", "Fork", "Merge"]

Dims = Seq[int] | Mapping[str, int]


def _copies(prototype: Brick | None, names: Seq[str], prefix: str) -> list[Brick]:
    prototype = Linear() if prototype is None else prototype
    if prototype.parent is not None:
        raise BrickTreeError(
            f"the prototype {prototype.path} already has a parent; pass a fresh brick, copies "
            "of it become the children"
        )
    out = []
    for name in names:
        brick = copy.deepcopy(prototype)
        brick.name = f"{prefix}_{name}"
        out.append(brick)
    return out


def _push_dims(parent: Brick, child: Brick, input_dim: Any, output_dim: Any) -> None:
    config = type(child)._config_names("allocation_config")
    if "input_dim" in config and "output_dim" in config:
        parent.push_to(child, "input_dim", input_dim)
        parent.push_to(child, "output_dim", output_dim)
    elif "dims" in config:
        if child.dims is None:
            raise ConfigurationError(
                f"{parent.path}: the prototype {child.path} needs its hidden `dims` set "
                "(e.g. MLP([Tanh(), Identity()], [None, 100, None])); the first and last are pushed"
            )
        dims = list(child.dims)
        if input_dim is not None:
            dims[0] = input_dim
        if output_dim is not None:
            dims[-1] = output_dim
        with child._pushed():
            child.dims = dims
    else:
        raise ConfigurationError(
            f"{parent.path} cannot push dimensions to {type(child).__name__} {child.path}: a "
            "prototype needs `input_dim`/`output_dim` (like Linear) or `dims` (like MLP)"
        )


class Parallel(Initializable):
    """Applies one transformation per input channel.

    Args:
        input_names: channel names; they name the inputs and the outputs.
        input_dims: input dimension per channel (a list in ``input_names``
            order or a dict) (lazy).
        output_dims: output dimension per channel (lazy).
        prototype: the brick copied once per channel (default ``Linear()``).
        child_prefix: children are named ``f"{child_prefix}_{name}"``.

    ``apply`` takes the channels positionally or by name and returns one
    output per channel (a tuple; a single array for one channel).

    >>> import jax.numpy as jnp
    >>> from bricks.core import Constant
    >>> par = Parallel(["a", "b"], [2, 3], [4, 5],
    ...                weights_init=Constant(1.0), biases_init=Constant(0.0))
    >>> par.initialize()
    >>> [y.shape for y in par.apply(jnp.ones((1, 2)), b=jnp.ones((1, 3)))]
    [(1, 4), (1, 5)]
    >>> sorted(par.get_parameter_values())[:2]
    ['/parallel/transform_a.W', '/parallel/transform_a.b']
    """

    allocation_config = ("input_dims", "output_dims")
    input_dims: Dims | None = None
    output_dims: Dims | None = None

    def __init__(
        self,
        input_names: Seq[str],
        input_dims: Dims | None = None,
        output_dims: Dims | None = None,
        prototype: Brick | None = None,
        child_prefix: str = "transform",
        **kwargs: Any,
    ) -> None:
        self.__dict__["input_names"] = list(input_names)
        transforms = _copies(prototype, self.input_names, child_prefix)
        super().__init__(children=transforms, **kwargs)
        self.transforms = transforms
        if input_dims is not None:
            self.input_dims = input_dims
        if output_dims is not None:
            self.output_dims = output_dims

    def _per_channel(self, attribute: str, names: Seq[str]) -> list[Any]:
        value = getattr(self, attribute)
        if value is None:
            return [None] * len(names)
        if isinstance(value, Mapping):
            missing = [n for n in names if n not in value]
            if missing:
                raise ConfigurationError(
                    f"{type(self).__name__} {self.path}: `{attribute}` has no entry for {missing}"
                )
            return [value[n] for n in names]
        value = list(value)
        if len(value) != len(names):
            raise ConfigurationError(
                f"{type(self).__name__} {self.path}: `{attribute}` has {len(value)} entries for "
                f"{len(names)} channels {list(names)}"
            )
        return value

    def _push_allocation_config(self) -> None:
        super()._push_allocation_config()
        ins = self._per_channel("input_dims", self.input_names)
        outs = self._per_channel("output_dims", self.input_names)
        for transform, d_in, d_out in zip(self.transforms, ins, outs, strict=True):
            _push_dims(self, transform, d_in, d_out)

    def _gather(self, names: Seq[str], args: tuple, kwargs: dict) -> list[Any]:
        if len(args) > len(names):
            raise ConfigurationError(
                f"{self.path}.apply takes {len(names)} inputs {list(names)}, got {len(args)}"
            )
        values = dict(zip(names, args, strict=False))
        for name, value in kwargs.items():
            if name not in names or name in values:
                raise ConfigurationError(
                    f"{self.path}.apply: unexpected or repeated input {name!r}; inputs are "
                    f"{list(names)}"
                )
            values[name] = value
        missing = [n for n in names if n not in values]
        if missing:
            raise ConfigurationError(f"{self.path}.apply: missing inputs {missing}")
        dims = self._per_channel("input_dims", names)
        for name, dim in zip(names, dims, strict=True):
            values[name] = as_input(self, name, values[name])
            if isinstance(dim, int):
                check_rank(self, name, values[name], (1, None), f"(..., {dim})")
                check_size(self, name, values[name], -1, dim, f"input_dims[{name!r}]={dim}")
        return [annotate(values[n], n, (INPUT,), brick=self, application="apply") for n in names]

    def _transform(self, inputs: Seq[jax.Array]) -> list[jax.Array]:
        return [t.apply(x) for t, x in zip(self.transforms, inputs, strict=True)]

    @application
    def apply(self, *args: jax.Array, **kwargs: jax.Array) -> Any:
        outputs = self._transform(self._gather(self.input_names, args, kwargs))
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    @apply.property("inputs")
    def _apply_inputs(self) -> list[str]:
        return list(self.input_names)

    @apply.property("outputs")
    def _apply_outputs(self) -> list[str]:
        return list(self.input_names)

    def get_dim(self, name: str) -> int:
        if name in self.input_names:
            return self._per_channel("input_dims", self.input_names)[self.input_names.index(name)]
        return super().get_dim(name)


class Fork(Parallel):
    """Sends one input through one transformation per output channel.

    Args:
        output_names: names of the outputs.
        input_dim: dimension of the input (lazy).
        output_dims: dimension per output (list or dict) (lazy).
        prototype: brick copied per output (default ``Linear()``).
        child_prefix: children are named ``f"{child_prefix}_{name}"``.

    >>> import jax.numpy as jnp
    >>> from bricks.core import Constant
    >>> fork = Fork(["gates", "inputs"], 3, {"gates": 2, "inputs": 4},
    ...             weights_init=Constant(1.0), biases_init=Constant(0.0))
    >>> fork.initialize()
    >>> fork.apply.outputs
    ['gates', 'inputs']
    >>> [y.shape for y in fork.apply(jnp.ones((5, 3)))]
    [(5, 2), (5, 4)]
    """

    allocation_config = ("input_dim",)
    input_dim: int | None = None

    def __init__(
        self,
        output_names: Seq[str],
        input_dim: int | None = None,
        output_dims: Dims | None = None,
        prototype: Brick | None = None,
        child_prefix: str = "fork",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            output_names, None, output_dims, prototype=prototype, child_prefix=child_prefix,
            **kwargs,
        )
        if input_dim is not None:
            self.input_dim = input_dim

    @property
    def output_names(self) -> list[str]:
        return list(self.input_names)

    def _push_allocation_config(self) -> None:
        with self._pushed():
            self.input_dims = [self.input_dim] * len(self.input_names)
        super()._push_allocation_config()

    @application(inputs=["input_"])
    def apply(self, input_: jax.Array) -> Any:
        input_ = as_input(self, "input_", input_)
        if isinstance(self.input_dim, int):
            check_rank(self, "input_", input_, (1, None), f"(..., {self.input_dim})")
            check_size(self, "input_", input_, -1, self.input_dim, f"input_dim={self.input_dim}")
        outputs = self._transform([input_] * len(self.input_names))
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    @apply.property("outputs")
    def _fork_outputs(self) -> list[str]:
        return list(self.input_names)

    def get_dim(self, name: str) -> int:
        if name == "input_":
            return self.input_dim
        if name in self.input_names:
            return self._per_channel("output_dims", self.input_names)[self.input_names.index(name)]
        return super().get_dim(name)


class Merge(Parallel):
    """Transforms each input to ``output_dim`` and sums the results.

    Args:
        input_names: names of the inputs.
        input_dims: dimension per input (list or dict) (lazy).
        output_dim: dimension of the sum (lazy).
        prototype: brick copied per input (default ``Linear()``).
        child_prefix: children are named ``f"{child_prefix}_{name}"``.

    >>> import jax.numpy as jnp
    >>> from bricks.core import Constant
    >>> merge = Merge(["a", "b"], [2, 3], 4, weights_init=Constant(1.0),
    ...               biases_init=Constant(0.0))
    >>> merge.initialize()
    >>> merge.apply(jnp.ones((1, 2)), jnp.ones((1, 3))).tolist()
    [[5.0, 5.0, 5.0, 5.0]]
    """

    allocation_config = ("output_dim",)
    output_dim: int | None = None

    def __init__(
        self,
        input_names: Seq[str],
        input_dims: Dims | None = None,
        output_dim: int | None = None,
        prototype: Brick | None = None,
        child_prefix: str = "transform",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            input_names, input_dims, None, prototype=prototype, child_prefix=child_prefix,
            **kwargs,
        )
        if output_dim is not None:
            self.output_dim = output_dim

    def _push_allocation_config(self) -> None:
        with self._pushed():
            self.output_dims = [self.output_dim] * len(self.input_names)
        super()._push_allocation_config()

    @application(outputs=["output"])
    def apply(self, *args: jax.Array, **kwargs: jax.Array) -> jax.Array:
        inputs = self._gather(self.input_names, args, kwargs)
        leading = [tuple(x.shape[:-1]) for x in inputs]
        if any(not same_sizes(lead, leading[0]) for lead in leading):
            shapes = {n: tuple(x.shape) for n, x in zip(self.input_names, inputs, strict=True)}
            raise ShapeError(
                f"{describe(self)}: the inputs are summed after their transformations, so they "
                f"need the same leading (batch) axes; got shapes {shapes} (nothing is broadcast)"
            )
        outputs = self.transform(*inputs)
        return functools.reduce(operator.add, outputs)

    @application
    def transform(self, *inputs: jax.Array) -> tuple[jax.Array, ...]:
        """The transformed inputs before they are summed, one output per input
        name (in Blocks these were the outputs of ``Parallel.apply``)."""
        return tuple(self._transform(inputs))

    @transform.property("outputs")
    def _transform_outputs(self) -> list[str]:
        return list(self.input_names)

    @apply.property("inputs")
    def _merge_inputs(self) -> list[str]:
        return list(self.input_names)

    def get_dim(self, name: str) -> int:
        if name == "output":
            return self.output_dim
        return super().get_dim(name)
