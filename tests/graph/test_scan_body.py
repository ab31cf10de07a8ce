"""``scan_body``: the recording step of ``scan`` for code that drives ``lax.scan`` itself."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bricks.core import OUTPUT, Brick, IsotropicGaussian, Linear, Tanh, application
from bricks.core.tracing import scan_body
from bricks.graph import ComputationGraph, VariableFilter


class ReverseAccumulate(Brick):
    """``sum_t tanh(W x_t)``, scanned backwards with ``lax.scan`` and :func:`scan_body`."""

    def __init__(self, dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.inner = Linear(dim, dim, weights_init=IsotropicGaussian(0.5), use_bias=False)
        self.children.append(self.inner)

    @application(inputs=["x"], outputs=["total"])
    def apply(self, x):
        def body(carry, x_t):
            h = Tanh(name="act").apply(self.inner.apply(x_t))
            return carry + h, h

        step, finish = scan_body(body, length=x.shape[0], name=f"{self.path}.apply.scan")
        steps = jnp.arange(x.shape[0], dtype=jnp.int32)
        total, ys = jax.lax.scan(step, jnp.zeros(x.shape[1:]), (x, steps), reverse=True)
        finish(ys)  # records the body's variables; returns the per-step h
        return total


def test_a_hand_driven_scan_records_its_body_like_scan():
    acc = ReverseAccumulate(3, name="acc")
    acc.initialize(seed=0)
    x = np.random.RandomState(2).randn(5, 2, 3).astype("float32")
    W = np.asarray(acc.inner.parameter_value("W"))
    np.testing.assert_allclose(acc.apply(x), np.tanh(x @ W).sum(0), rtol=1e-5, atol=1e-5)
    cg = ComputationGraph(lambda x: acc.apply(x), x=(None, None, 3))
    inner = VariableFilter(bricks=[Linear], roles=[OUTPUT], scan=True)(cg.variables)
    assert len(inner) == 1 and inner[0].scan_scope == "/acc.apply.scan"
    (total,), (per_step,) = cg.evaluate(cg.parameter_values(), {"x": x}, extra=inner)
    np.testing.assert_allclose(per_step, x @ W, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(total, np.tanh(x @ W).sum(0), rtol=1e-5, atol=1e-5)
