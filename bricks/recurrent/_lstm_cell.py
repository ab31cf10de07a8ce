"""The LSTM cell's gate arithmetic with a hand-written backward pass.

Given the gate pre-activations ``a = inputs + states @ W_state`` (order: input
gate, forget gate, cell, output gate), the cells and optionally Blocks'
peepholes, :func:`lstm_cell` returns ``(states', cells')``. Its custom VJP
keeps only the four gates and the cells as residuals (``cells'`` and
``tanh(cells')`` are recomputed from them: a multiply-add and a ``tanh`` per
step are cheaper on CPU than storing and reading back two more
``(time, batch, dim)`` sequences), and computes the cotangents of ``a``, the
cells and the peepholes in one pass,
as cuDNN's and oneDNN's LSTM kernels do; differentiating the equations with
JAX keeps about twice as many per-step residuals and takes ~25% more time
per backward step on CPU. The equations (Logistic gates, Tanh activation)
are Blocks'; :class:`~bricks.recurrent.LSTM` uses this only with those
activations and where no graph intervention or request looks at them.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["lstm_cell"]


def _row(vector: jax.Array, like: jax.Array) -> jax.Array:
    return jnp.reshape(vector, (1,) * (like.ndim - 1) + vector.shape)


def _forward(act: jax.Array, cells: jax.Array, peepholes: tuple) -> tuple:
    d = cells.shape[-1]
    pre_in, pre_forget = act[..., :d], act[..., d : 2 * d]
    pre_cell, pre_out = act[..., 2 * d : 3 * d], act[..., 3 * d :]
    if peepholes:
        pre_in = pre_in + cells * _row(peepholes[0], cells)
        pre_forget = pre_forget + cells * _row(peepholes[1], cells)
    in_gate, forget_gate = jax.nn.sigmoid(pre_in), jax.nn.sigmoid(pre_forget)
    candidate = jnp.tanh(pre_cell)
    next_cells = forget_gate * cells + in_gate * candidate
    if peepholes:
        pre_out = pre_out + next_cells * _row(peepholes[2], cells)
    out_gate = jax.nn.sigmoid(pre_out)
    squashed = jnp.tanh(next_cells)
    next_states = out_gate * squashed
    return (next_states, next_cells), (in_gate, forget_gate, candidate, out_gate, squashed)


@jax.custom_vjp
def lstm_cell(act: jax.Array, cells: jax.Array, peepholes: tuple) -> tuple[jax.Array, jax.Array]:
    """``(states', cells')`` of Blocks' LSTM from the gate pre-activations.

    Args:
        act: ``(batch, 4 dim)``: ``inputs + states @ W_state``.
        cells: ``(batch, dim)``.
        peepholes: ``(W_cell_to_in, W_cell_to_forget, W_cell_to_out)``, each
            ``(dim,)``, or ``()`` for the plain cell.
    """
    return _forward(act, cells, peepholes)[0]


def _fwd(act: jax.Array, cells: jax.Array, peepholes: tuple) -> tuple:
    out, gates = _forward(act, cells, peepholes)
    return out, (gates[:4], cells, peepholes)


def _bwd(res: tuple, cotangents: tuple) -> tuple:
    (in_gate, forget_gate, candidate, out_gate), cells, peepholes = res
    # recomputed rather than stored: one fewer (batch, dim) residual per step
    next_cells = forget_gate * cells + in_gate * candidate
    squashed = jnp.tanh(next_cells)
    d_states, d_next_cells = cotangents
    d_pre_out = d_states * squashed * out_gate * (1 - out_gate)
    d_next_cells = d_next_cells + d_states * out_gate * (1 - squashed * squashed)
    if peepholes:
        d_next_cells = d_next_cells + d_pre_out * _row(peepholes[2], cells)
    d_pre_in = d_next_cells * candidate * in_gate * (1 - in_gate)
    d_pre_forget = d_next_cells * cells * forget_gate * (1 - forget_gate)
    d_pre_cell = d_next_cells * in_gate * (1 - candidate * candidate)
    d_cells = d_next_cells * forget_gate
    d_peepholes: Any = ()
    if peepholes:
        d_cells = d_cells + d_pre_in * _row(peepholes[0], cells)
        d_cells = d_cells + d_pre_forget * _row(peepholes[1], cells)
        axes = tuple(range(cells.ndim - 1))
        d_peepholes = (
            jnp.sum(d_pre_in * cells, axis=axes),
            jnp.sum(d_pre_forget * cells, axis=axes),
            jnp.sum(d_pre_out * next_cells, axis=axes),
        )
    d_act = jnp.concatenate([d_pre_in, d_pre_forget, d_pre_cell, d_pre_out], axis=-1)
    return d_act, d_cells, d_peepholes


lstm_cell.defvjp(_fwd, _bwd)
