"""Blocks' step rules with Blocks' formulas and defaults.

Every rule maps previous steps (at first the gradients) to the step that is
*subtracted* from the parameters; see :mod:`bricks.algorithms.step_rule`.

>>> import jax.numpy as jnp
>>> from bricks.algorithms import Momentum
>>> rule = Momentum(0.1, 0.5)
>>> state = rule.init({"a": jnp.zeros(2)})
>>> out = []
>>> for _ in range(3):
...     steps, state = rule.update({"a": jnp.array([6.0, 8.0])}, state, None)
...     out.append(round(float(steps["a"][0]), 4))
>>> out
[0.6, 0.9, 1.05]
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from bricks.algorithms.non_finite import report_non_finite
from bricks.algorithms.step_rule import StepRule
from bricks.errors import StepRuleError

__all__ = [
    "Scale",
    "BasicMomentum",
    "Momentum",
    "AdaDelta",
    "BasicRMSProp",
    "RMSProp",
    "Adam",
    "AdaGrad",
    "StepClipping",
    "VariableClipping",
    "CompositeRule",
    "Restrict",
    "RemoveNotFinite",
    "l2_norm",
]


def l2_norm(tensors: Iterable[jax.Array]) -> jax.Array:
    """The L2 norm of all elements of ``tensors`` together (Blocks' ``l2_norm``)."""
    total = sum((jnp.sum(jnp.square(t.astype(jnp.float32))) for t in tensors), jnp.float32(0))
    return jnp.sqrt(total)


def _zeros_like(params: Mapping[str, jax.Array]) -> dict:
    return {k: jnp.zeros_like(v) for k, v in params.items()}


def _check_unit(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise StepRuleError(f"{name} must lie in [0, 1], got {value!r}")


class Scale(StepRule):
    """Multiply the previous step by ``learning_rate`` (alone: steepest descent)."""

    def __init__(self, learning_rate: float = 1.0) -> None:
        self.hyperparameters = {"learning_rate": float(learning_rate)}

    def compute_steps(self, steps, hyper, buffers, params):
        lr = hyper["learning_rate"]
        return {k: (lr * s).astype(s.dtype) for k, s in steps.items()}, buffers


class BasicMomentum(StepRule):
    """Accumulate the step with exponential discount: ``v = momentum * v + step``."""

    def __init__(self, momentum: float = 0.0) -> None:
        self.hyperparameters = {"momentum": float(momentum)}

    def init_buffers(self, params):
        return _zeros_like(params)

    def compute_steps(self, steps, hyper, velocity, params):
        m = hyper["momentum"]
        new = {k: (m * velocity[k] + s).astype(s.dtype) for k, s in steps.items()}
        return new, new


class AdaDelta(StepRule):
    """AdaDelta (Zeiler 2012) with Blocks' defaults ``decay_rate=0.95, epsilon=1e-6``."""

    def __init__(self, decay_rate: float = 0.95, epsilon: float = 1e-6) -> None:
        _check_unit("decay_rate", decay_rate)
        self.hyperparameters = {"decay_rate": float(decay_rate), "epsilon": float(epsilon)}

    def init_buffers(self, params):
        return (_zeros_like(params), _zeros_like(params))

    def compute_steps(self, steps, hyper, buffers, params):
        rho, eps = hyper["decay_rate"], hyper["epsilon"]
        ms_step, ms_delta = buffers
        out, new_ms_step, new_ms_delta = {}, {}, {}
        for k, s in steps.items():
            mst = rho * ms_step[k] + (1 - rho) * jnp.square(s)
            delta = jnp.sqrt(ms_delta[k] + eps) / jnp.sqrt(mst + eps) * s
            new_ms_step[k] = mst.astype(s.dtype)
            new_ms_delta[k] = (rho * ms_delta[k] + (1 - rho) * jnp.square(delta)).astype(s.dtype)
            out[k] = delta.astype(s.dtype)
        return out, (new_ms_step, new_ms_delta)


class BasicRMSProp(StepRule):
    """Divide the step by a running RMS of recent steps (Blocks' defaults 0.9, 1e5)."""

    def __init__(self, decay_rate: float = 0.9, max_scaling: float = 1e5) -> None:
        _check_unit("decay_rate", decay_rate)
        if max_scaling <= 0:
            raise StepRuleError(f"max_scaling must be greater than 0, got {max_scaling!r}")
        self.hyperparameters = {"decay_rate": float(decay_rate)}
        self.epsilon = 1.0 / max_scaling

    def init_buffers(self, params):
        return _zeros_like(params)

    def compute_steps(self, steps, hyper, mean_square, params):
        rho = hyper["decay_rate"]
        out, new_ms = {}, {}
        for k, s in steps.items():
            ms = rho * mean_square[k] + (1 - rho) * jnp.square(s)
            out[k] = (s / jnp.maximum(jnp.sqrt(ms), self.epsilon)).astype(s.dtype)
            new_ms[k] = ms.astype(s.dtype)
        return out, new_ms


class AdaGrad(StepRule):
    """AdaGrad with Blocks' defaults ``learning_rate=0.002, epsilon=1e-6``."""

    def __init__(self, learning_rate: float = 0.002, epsilon: float = 1e-6) -> None:
        self.hyperparameters = {"learning_rate": float(learning_rate), "epsilon": float(epsilon)}

    def init_buffers(self, params):
        return _zeros_like(params)

    def compute_steps(self, steps, hyper, ssq, params):
        lr, eps = hyper["learning_rate"], hyper["epsilon"]
        out, new = {}, {}
        for k, s in steps.items():
            ssq_t = jnp.square(s) + ssq[k]
            out[k] = (lr * s / (jnp.sqrt(ssq_t) + eps)).astype(s.dtype)
            new[k] = ssq_t.astype(s.dtype)
        return out, new


class Adam(StepRule):
    """Adam (Kingma & Ba) with Blocks' defaults and formula (incl. ``decay_factor``)."""

    def __init__(
        self,
        learning_rate: float = 0.002,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
        decay_factor: float = 1.0,
    ) -> None:
        self.hyperparameters = {
            "learning_rate": float(learning_rate),
            "beta1": float(beta1),
            "beta2": float(beta2),
            "epsilon": float(epsilon),
            "decay_factor": float(decay_factor),
        }

    def init_buffers(self, params):
        return (_zeros_like(params), _zeros_like(params), jnp.zeros((), jnp.float32))

    def compute_steps(self, steps, hyper, buffers, params):
        mean, var, time = buffers
        t1 = time + 1
        b1 = hyper["beta1"] * hyper["decay_factor"] ** (t1 - 1)
        b2 = hyper["beta2"]
        lr = hyper["learning_rate"] * jnp.sqrt(1.0 - b2**t1) / (1.0 - b1**t1)
        out, new_mean, new_var = {}, {}, {}
        for k, s in steps.items():
            m = b1 * mean[k] + (1.0 - b1) * s
            v = b2 * var[k] + (1.0 - b2) * jnp.square(s)
            out[k] = (lr * m / (jnp.sqrt(v) + hyper["epsilon"])).astype(s.dtype)
            new_mean[k], new_var[k] = m.astype(s.dtype), v.astype(s.dtype)
        return out, (new_mean, new_var, t1)


class StepClipping(StepRule):
    """Rescale the whole step when its global L2 norm exceeds ``threshold``.

    ``threshold=None`` leaves steps unchanged, as in Blocks.
    """

    def __init__(self, threshold: float | None = None) -> None:
        self.hyperparameters = {} if threshold is None else {"threshold": float(threshold)}
        if threshold is None:
            self.threshold = None  # Blocks: unset reads as None; set, it is a handle

    def compute_steps(self, steps, hyper, buffers, params):
        if "threshold" not in hyper:
            return dict(steps), buffers
        norm = l2_norm(steps.values())
        t = hyper["threshold"]
        mult = jnp.where(norm < t, jnp.float32(1), t / norm)
        return {k: (s * mult).astype(s.dtype) for k, s in steps.items()}, buffers


class VariableClipping(StepRule):
    """Clip the norm of each parameter *after* the update (max-norm constraint).

    ``axis`` (int or tuple) are the axes the norm sums over; ``None`` means the
    whole tensor. As in Blocks, assumes plain (stochastic) gradient descent.
    """

    def __init__(
        self,
        threshold: float,
        axis: int | Sequence[int] | None = None,
        *,
        axes: int | Sequence[int] | None = None,
    ) -> None:
        axis = axes if axis is None else axis
        axes = () if axis is None else ((axis,) if isinstance(axis, int) else tuple(axis))
        if len(set(axes)) != len(axes):
            raise StepRuleError(f"VariableClipping axes must be unique, got {axes!r}")
        self.axis = tuple(sorted(axes))
        self.hyperparameters = {"threshold": float(threshold)}

    def compute_steps(self, steps, hyper, buffers, params):
        if params is None:
            raise StepRuleError("VariableClipping needs the parameters passed to update()")
        t = hyper["threshold"]
        out = {}
        for k, s in steps.items():
            if any(a >= s.ndim for a in self.axis):
                raise StepRuleError(
                    f"VariableClipping axis {self.axis} is invalid for parameter {k!r} "
                    f"of shape {tuple(s.shape)}"
                )
            after = params[k] - s
            if self.axis:
                norms = jnp.sqrt(jnp.sum(jnp.square(after), axis=self.axis, keepdims=True))
            else:
                norms = jnp.sqrt(jnp.sum(jnp.square(after)))
            shrinking = params[k] - (t / norms) * after
            out[k] = jnp.where(norms > t, shrinking, s).astype(s.dtype)
        return out, buffers


class CompositeRule(StepRule):
    """Chain rules in the given order (each sees the previous one's steps).

    Components may be :class:`StepRule` objects or gradient-signed optax
    transforms such as ``optax.scale_by_adam()``.
    """

    def __init__(self, components: Sequence[Any]) -> None:
        self.components = list(components)
        self.hyperparameters = {}
        for c in self.components:
            if not (hasattr(c, "init") and hasattr(c, "update")):
                raise StepRuleError(
                    f"CompositeRule components must be step rules or optax transforms, got {c!r}"
                )

    def init(self, params):
        return tuple(c.init(params) for c in self.components)

    def update(self, steps, state, params=None):
        new_states = []
        for c, s in zip(self.components, state, strict=True):
            steps, s = c.update(steps, s, params)
            new_states.append(s)
        return dict(steps), tuple(new_states)

    def children(self):
        return [((i,), c) for i, c in enumerate(self.components)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.components!r})"


class Momentum(CompositeRule):
    """``Scale(learning_rate)`` then ``BasicMomentum(momentum)`` (Blocks' Momentum)."""

    def __init__(self, learning_rate: float = 1.0, momentum: float = 0.0) -> None:
        scale, basic = Scale(learning_rate), BasicMomentum(momentum)
        super().__init__([scale, basic])
        self.learning_rate = scale.learning_rate
        self.momentum = basic.momentum


class RMSProp(CompositeRule):
    """``BasicRMSProp(decay_rate, max_scaling)`` then ``Scale(learning_rate)``."""

    def __init__(
        self, learning_rate: float = 1.0, decay_rate: float = 0.9, max_scaling: float = 1e5
    ) -> None:
        basic, scale = BasicRMSProp(decay_rate, max_scaling), Scale(learning_rate)
        super().__init__([basic, scale])
        self.learning_rate = scale.learning_rate
        self.decay_rate = basic.decay_rate


class Restrict(StepRule):
    """Apply ``step_rule`` only to ``variables`` (parameter paths or Variables)."""

    def __init__(self, step_rule: Any, variables: Iterable[Any]) -> None:
        self.step_rule = step_rule
        self.variables = frozenset(getattr(v, "path", v) for v in variables)
        self.hyperparameters = {}

    def _subset(self, tree):
        return {k: v for k, v in tree.items() if k in self.variables}

    def init(self, params):
        return (self.step_rule.init(self._subset(params)),)

    def update(self, steps, state, params=None):
        sub_params = None if params is None else self._subset(params)
        new, inner = self.step_rule.update(self._subset(steps), state[0], sub_params)
        out = {k: new.get(k, s) if k in self.variables else s for k, s in steps.items()}
        return out, (inner,)

    def children(self):
        return [((0,), self.step_rule)]

    def __repr__(self) -> str:
        return f"Restrict({self.step_rule!r}, {sorted(self.variables)!r})"


def _any_not_finite(tensors: Iterable[jax.Array]) -> jax.Array:
    """Blocks' test: whether the sum of some tensor is NaN or infinite."""
    out = jnp.bool_(False)
    for t in tensors:
        out = out | ~jnp.isfinite(jnp.sum(t))
    return out


class RemoveNotFinite(StepRule):
    """Skip non-finite steps; use it last (Blocks' ``RemoveNotFinite``).

    As a rule on its own (Blocks' formula), a parameter whose step has a NaN
    or inf gets the step ``(1 - scaler) * parameter``. Inside
    :class:`GradientDescent` (anywhere in the step rule, also inside an
    ``optax.chain``) it makes a step whose cost, gradients or steps
    are not finite a **skipped step**: parameters and optimizer state stay
    bitwise unchanged (with ``scaler < 1``, every trained parameter is
    multiplied by ``scaler``), the skip is counted (``skipped_steps`` in the
    log) and training goes on, until ``max_consecutive`` steps in a row were
    skipped: then training stops with :class:`~bricks.errors.TooManySkippedStepsError`
    (see :mod:`bricks.algorithms.non_finite` for when the host notices).

    Args:
        scaler: the factor a skipped step applies to the parameters (1: none).
        max_consecutive: how many steps in a row may be skipped before
            training stops; ``None`` never stops.
    """

    def __init__(self, scaler: float = 1.0, max_consecutive: int | None = 10) -> None:
        if max_consecutive is not None and (
            not isinstance(max_consecutive, numbers.Integral)
            or isinstance(max_consecutive, bool)
            or max_consecutive < 1
        ):
            raise StepRuleError(
                f"RemoveNotFinite(max_consecutive=...) must be a positive integer or None, "
                f"got {max_consecutive!r}"
            )
        self.scaler = float(scaler)
        self.max_consecutive = None if max_consecutive is None else int(max_consecutive)
        self.hyperparameters = {}

    def compute_steps(self, steps, hyper, buffers, params):
        if params is None:
            raise StepRuleError("RemoveNotFinite needs the parameters passed to update()")
        if report_non_finite(lambda: _any_not_finite(steps.values()), self):
            # inside GradientDescent, which skips (or shrinks) the whole step on the
            # flag: replacing single steps here would only cost memory traffic
            return dict(steps), buffers
        out = {}
        for k, s in steps.items():
            bad = _any_not_finite([s])
            out[k] = jnp.where(bad, (1 - self.scaler) * params[k], s).astype(s.dtype)
        return out, buffers

    def __repr__(self) -> str:
        return f"RemoveNotFinite(scaler={self.scaler!r}, max_consecutive={self.max_consecutive!r})"
