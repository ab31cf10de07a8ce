"""Device copies of a training state: snapshots for checkpoints, live values for bricks.

Every training step donates the arrays of the state it is given, so an array
taken from the state is invalid after the next step. Two things need values
that stay valid:

* :class:`StateSnapshot`, the whole state at one moment, read later (by an
  asynchronous checkpoint writer) while training goes on;
* :class:`LiveParameters`, the algorithm's current parameter mapping as the
  :class:`~bricks.core.values.ValueSource` that bricks read through to while
  the algorithm trains them (DESIGN.md decision 9): a brick shows the values
  of the last step, no copy is made per step, and no brick ever holds an
  array a step donates. The first read of a parameter after a step copies
  it, on the device; later reads until the next step reuse the copy.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bricks.errors import AlgorithmError, ParameterError

__all__ = ["StateSnapshot", "LiveParameters", "device_copy"]


@functools.cache
def _copier() -> Callable[[list[jax.Array]], list[jax.Array]]:
    # a compiled copy makes fresh device buffers that no donating step
    # touches (an identity would be forwarded, i.e. alias its inputs)
    return jax.jit(lambda leaves: [leaf.copy() for leaf in leaves])


def device_copy(tree: Any) -> Any:
    """A copy of a pytree of device arrays, queued on the device; other leaves deep-copied."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    where = [i for i, leaf in enumerate(leaves) if isinstance(leaf, jax.Array)]
    with jax.ensure_compile_time_eval():  # concrete copies even when called inside a trace
        copies = _copier()([leaves[i] for i in where]) if where else []
    out = [leaf if isinstance(leaf, jax.Array) else copy.deepcopy(leaf) for leaf in leaves]
    for i, leaf in zip(where, copies, strict=True):
        out[i] = leaf
    return jax.tree_util.tree_unflatten(treedef, out)


class StateSnapshot:
    """A :class:`GradientDescent`'s training state at one moment (see ``snapshot``).

    Holds device copies that later steps do not touch; :meth:`get_state`
    moves them to the host. Safe to call from another thread while training
    goes on: it first waits for the copies with the GIL released (reading a
    not-yet-computed GPU buffer straight away would hold the GIL until the
    queued steps are done, stalling the training thread), then reads them.
    """

    def __init__(self, algorithm: Any, tree: Any) -> None:
        self._algorithm = algorithm
        self._tree = tree
        self._base_key = algorithm._base_key  # replaced, never donated: no copy needed

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(json, arrays)`` as :meth:`GradientDescent.get_state` at the snapshot."""
        tree, self._tree = self._tree, None  # the device copies go with this call
        if tree is None:
            raise AlgorithmError("StateSnapshot.get_state() can be called only once")
        jax.block_until_ready(tree)  # waits with the GIL released
        return self._algorithm._host_payload(jax.device_get(tree), self._base_key)


class LiveParameters:
    """An algorithm's current parameters, as the value source bricks read through to.

    Args:
        algorithm: an object whose ``_state["params"]`` is the current
            ``{path: array}`` mapping (replaced by every step).
    """

    def __init__(self, algorithm: Any) -> None:
        self._algorithm = algorithm
        self._copy_of: dict[str, jax.Array] | None = None
        self._copy: dict[str, jax.Array] = {}

    def _params(self) -> dict[str, jax.Array]:
        state = self._algorithm._state
        if state is None:
            raise AlgorithmError("the algorithm has no state yet; call initialize() first")
        return state["params"]

    def holds(self, path: str) -> bool:
        state = self._algorithm._state
        return state is not None and path in state["params"]

    def read(self, path: str) -> jax.Array:
        """The value of ``path`` after the last step (a copy no later step donates).

        Only the array read is copied (once per step; the copy is compiled
        once per shape): a copy of the whole mapping at the first read made
        an eager ``brick.W`` after every step of a 784-500-500-10 MLP cost
        15-17% of the step, the copy of ``W`` alone 5-8%.
        """
        params = self._params()
        if self._copy_of is not params:
            self._copy = {}
            self._copy_of = params
        value = self._copy.get(path)
        if value is None:
            value = self._copy[path] = device_copy(params[path])
        return value

    def write(self, path: str, value: Any) -> None:
        """Make ``value`` the parameter at ``path`` for the next steps (a copy of it)."""
        state = self._algorithm._state
        params = self._params()
        old = params[path]
        with jax.ensure_compile_time_eval():
            new = jnp.array(value, dtype=old.dtype, copy=True)
            if new.shape != old.shape:
                raise ParameterError(
                    f"parameter {path} has shape {tuple(old.shape)} in the training algorithm, "
                    f"but the value given has shape {tuple(new.shape)}"
                )
            parallel = getattr(self._algorithm, "parallel", None)
            if parallel is not None:  # on the mesh as the compiled step expects it
                new = parallel.place_state(new, old.sharding)
        state["params"] = {**params, path: new}

    def forget(self) -> None:
        """Drop the copy of the last read (a step made it stale)."""
        self._copy_of, self._copy = None, {}
