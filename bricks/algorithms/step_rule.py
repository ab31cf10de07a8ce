"""The step-rule protocol: Blocks' ``StepRule`` as a small optax-style transform.

A :class:`StepRule` is a pair of pure functions ``init(params) -> state`` and
``update(steps, state, params) -> (steps, state)``, exactly the shape of an
``optax.GradientTransformation``, so rules compose with ``optax.chain`` and
run under ``jax.jit``. Two things differ from a plain optax transform:

* **Blocks' sign convention.** A step rule maps the gradients to the *step
  that is subtracted* from the parameters (``parameter -= step``), as in
  Blocks. :class:`~bricks.algorithms.GradientDescent` knows this and
  subtracts; a plain optax transform given as the step rule is used as optax
  means it (its updates are added). Inside a :class:`CompositeRule` every
  component works on gradient-signed steps, so optax *building blocks*
  (``optax.scale_by_adam()``, ``optax.clip_by_global_norm(1.0)``) fit there.
* **Hyperparameters live in the state.** Every hyperparameter (learning rate,
  momentum, ...) is a float32 scalar inside the rule's state, so the compiled
  training step reads it as an input and an extension may change it between
  steps without a re-compile. ``rule.learning_rate`` is a
  :class:`Hyperparameter` handle the algorithm resolves to that array.

>>> import jax.numpy as jnp
>>> from bricks.algorithms import Scale
>>> rule = Scale(0.1)
>>> state = rule.init({"a": jnp.zeros(2)})
>>> steps, state = rule.update({"a": jnp.array([3.0, 4.0])}, state, None)
>>> [round(float(v), 4) for v in steps["a"]]
[0.3, 0.4]
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from bricks.errors import StepRuleError

__all__ = [
    "StepRule",
    "Hyperparameter",
    "RuleState",
    "get_at",
    "set_at",
]

Path = tuple  # steps into a state tree: int (sequence index) or str (field / key)


class RuleState(NamedTuple):
    """State of a leaf step rule: its hyperparameters and its buffers."""

    hyperparams: dict
    buffers: Any


class Hyperparameter:
    """A handle to one hyperparameter of one step rule (Blocks' shared variable).

    Pass it to :meth:`GradientDescent.set_hyperparameter` or to a
    ``SharedVariableModifier``; its current value lives in the algorithm's
    optimizer state.
    """

    def __init__(self, rule: StepRule, key: str) -> None:
        self.rule = rule
        self.key = key

    @property
    def initial_value(self) -> float:
        return self.rule.hyperparameters[self.key]

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Hyperparameter) and other.rule is self.rule and other.key == self.key
        )

    def __hash__(self) -> int:
        return hash((id(self.rule), self.key))

    def __repr__(self) -> str:
        return f"Hyperparameter({type(self.rule).__name__}.{self.key}={self.initial_value!r})"


class StepRule:
    """Base class of Blocks' step rules.

    Subclasses with hyperparameters set ``self.hyperparameters`` (name ->
    initial float) and implement :meth:`compute_steps`, a pure function of the
    previous steps, the hyperparameter arrays, the buffers and the
    parameters. Rules that keep buffers override :meth:`init_buffers`.
    """

    hyperparameters: dict[str, float] = {}

    # -- what subclasses implement -------------------------------------------
    def init_buffers(self, params: Mapping[str, jax.Array]) -> Any:
        """Initial buffers (velocity, running averages ...); ``()`` if none."""
        return ()

    def compute_steps(
        self,
        steps: Mapping[str, jax.Array],
        hyper: Mapping[str, jax.Array],
        buffers: Any,
        params: Mapping[str, jax.Array] | None,
    ) -> tuple[dict, Any]:
        """Return the new steps and the new buffers."""
        raise NotImplementedError

    # -- the optax-shaped interface -------------------------------------------
    def init(self, params: Mapping[str, jax.Array]) -> Any:
        hyper = {k: jnp.asarray(v, jnp.float32) for k, v in self.hyperparameters.items()}
        return RuleState(hyper, self.init_buffers(params))

    def update(
        self, steps: Mapping[str, jax.Array], state: Any, params: Any = None
    ) -> tuple[dict, Any]:
        new_steps, buffers = self.compute_steps(steps, state.hyperparams, state.buffers, params)
        return new_steps, RuleState(state.hyperparams, buffers)

    # -- hyperparameter handles ----------------------------------------------
    def __getattr__(self, name: str) -> Hyperparameter:
        hyper = type(self).__dict__.get("hyperparameters") or self.__dict__.get("hyperparameters")
        if hyper and name in hyper:
            return Hyperparameter(self, name)
        raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")

    def children(self) -> list[tuple[Path, Any]]:
        """Sub-rules with the path of their state inside this rule's state."""
        return []

    def named_hyperparameters(self, prefix: str = "") -> Iterator[tuple[str, Hyperparameter, Path]]:
        """Yield ``(qualified name, handle, state path)`` for every hyperparameter."""
        for key in self.hyperparameters:
            yield prefix + key, Hyperparameter(self, key), ("hyperparams", key)
        for path, child in self.children():
            if isinstance(child, StepRule):
                label = "/".join(str(p) for p in path if isinstance(p, int))
                for name, handle, sub in child.named_hyperparameters(f"{prefix}{label}/"):
                    yield name, handle, tuple(path) + tuple(sub)

    def contains(self, kind: type) -> bool:
        """Whether this rule is, or holds, a rule of class ``kind``."""
        if isinstance(self, kind):
            return True
        return any(isinstance(c, StepRule) and c.contains(kind) for _, c in self.children())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())
        return f"{type(self).__name__}({args})"


def get_at(tree: Any, path: Path) -> Any:
    """Read the node at ``path`` (ints index sequences, strs name fields or keys)."""
    for step in path:
        if isinstance(tree, Mapping):
            tree = tree[step]
        elif isinstance(step, int):
            tree = tree[step]
        else:
            tree = getattr(tree, step)
    return tree


def set_at(tree: Any, path: Path, value: Any) -> Any:
    """Return a copy of ``tree`` with the node at ``path`` replaced by ``value``."""
    if not path:
        return value
    step, rest = path[0], path[1:]
    if isinstance(tree, Mapping):
        new = dict(tree)
        new[step] = set_at(tree[step], rest, value)
        return type(tree)(new) if not isinstance(tree, dict) else new
    if isinstance(step, int):
        items = list(tree)
        items[step] = set_at(items[step], rest, value)
        if hasattr(tree, "_fields"):
            return type(tree)(*items)
        return type(tree)(items)
    if hasattr(tree, "_replace"):
        return tree._replace(**{step: set_at(getattr(tree, step), rest, value)})
    raise StepRuleError(f"cannot replace field {step!r} of a {type(tree).__name__} state node")
