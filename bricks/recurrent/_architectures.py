"""The classic transitions: :class:`SimpleRecurrent`, :class:`LSTM`,
:class:`GatedRecurrent`.

They keep Blocks' names, parameter names, gate order and equations. None of
them has biases or an input transformation: feed them the output of a
``Linear`` (or a fork) applied to the whole sequence at once, which is both
what Blocks did and the fast way (one big matrix product outside the scan).
Each has learned initial states (zeros at first) with role
``INITIAL_STATE``, or zero initial states and no such parameters with
``learn_initial_states=False``. Their recurrent matrix products go through
:func:`~bricks.recurrent.recurrent_dot`, so the weight gradients are computed
after the scan (``fused_backward``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from bricks.core.application import application
from bricks.core.brick import Brick, Initializable
from bricks.core.initialization import Constant
from bricks.core.roles import INITIAL_STATE, WEIGHT
from bricks.core.simple import Logistic, Tanh
from bricks.core.tracing import current_frame
from bricks.recurrent._fused_backward import (
    _reverse_differentiated,
    fused_backward_enabled,
    recurrent_dot,
)
from bricks.recurrent._lstm_cell import lstm_cell
from bricks.recurrent._recurrent import BaseRecurrent, learned_initial_state, recurrent

__all__ = ["SimpleRecurrent", "LSTM", "GatedRecurrent"]

_ZEROS = Constant(0.0)


def _row(vector: jax.Array, like: jax.Array) -> jax.Array:
    """``vector`` with leading axes added to match ``like``'s rank (explicit
    broadcasting, so the code runs under ``jax_numpy_rank_promotion="raise"``)."""
    return jnp.reshape(vector, (1,) * (like.ndim - vector.ndim) + vector.shape)


def _distinct_children(*bricks: Brick) -> list[Brick]:
    """Children without repeats; same-named distinct bricks get a suffix."""
    out: list[Brick] = []
    for brick in bricks:
        if any(brick is b for b in out):
            continue
        if any(brick.name == b.name for b in out):
            brick.__dict__["name"] = f"{brick.name}_{len(out)}"
        out.append(brick)
    return out


class _Transition(BaseRecurrent, Initializable):
    """Shared configuration of the transitions: the lazy ``dim``."""

    allocation_config = ("dim",)
    dim: int | None = None
    #: learned initial states (parameters with role ``INITIAL_STATE``), else zeros
    learn_initial_states: bool = True
    #: features of each sequence and state, as multiples of ``dim``
    _dim_multiples: dict[str, int] = {"inputs": 1, "states": 1}

    def __init__(
        self, dim: int | None = None, learn_initial_states: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if dim is not None:
            self.dim = dim
        self.learn_initial_states = bool(learn_initial_states)

    def _add_initial_state(self, name: str) -> None:
        if self.learn_initial_states:
            self.add_parameter(name, (self.dim,), (INITIAL_STATE,), _ZEROS)

    def _initial_state(self, name: str, batch_size: int) -> jax.Array:
        """The learned parameter ``name`` broadcast to ``(batch_size, dim)``, or zeros."""
        if self.learn_initial_states:
            return learned_initial_state(self, name, batch_size)
        return jnp.zeros((batch_size, self.dim), jnp.float32)

    def dim_setting(self, name: str) -> str | None:
        """The setting that decides the features of ``name``, for error messages."""
        times = self._dim_multiples.get(name)
        if times is None:
            return None
        if times == 1:
            return f"dim={self.dim}"
        return f"{times} * dim = {times * self.dim} (dim={self.dim})"


class _GatedTransition(_Transition):
    """A transition with a state activation (default Tanh) and a gate
    activation (default Logistic) as children."""

    def __init__(
        self,
        dim: int | None = None,
        activation: Brick | None = None,
        gate_activation: Brick | None = None,
        **kwargs: Any,
    ) -> None:
        self.activation = activation if activation is not None else Tanh()
        self.gate_activation = gate_activation if gate_activation is not None else Logistic()
        children = _distinct_children(self.activation, self.gate_activation)
        super().__init__(dim=dim, children=children, **kwargs)


class SimpleRecurrent(_Transition):
    """The traditional recurrent transition ``h_t = f(x_t + h_{t-1} W)``.

    Args:
        dim: dimension of the state (lazy).
        activation: the brick applied after the sum (e.g. ``Tanh()``;
            default ``Tanh()``).
        weights_init: scheme of ``W`` ``(dim, dim)``.

    Applications:
        ``apply(inputs, states=None, mask=None, ...)``: ``inputs`` is
        ``(time, batch, dim)`` (``(batch, dim)`` with ``iterate=False``);
        returns ``states`` of the same shape.

    >>> import jax.numpy as jnp
    >>> from bricks.core import Tanh, Orthogonal
    >>> rnn = SimpleRecurrent(dim=3, activation=Tanh(), weights_init=Orthogonal())
    >>> rnn.initialize(seed=0)
    >>> rnn.apply(jnp.ones((5, 2, 3)), mask=jnp.ones((5, 2))).shape
    (5, 2, 3)
    >>> sorted(rnn.get_parameter_values())
    ['/simplerecurrent.W', '/simplerecurrent.initial_state']
    """

    def __init__(self, dim: int | None = None, activation: Brick | None = None, **kwargs: Any):
        self.activation = activation if activation is not None else Tanh()
        super().__init__(dim=dim, children=[self.activation], **kwargs)

    def _allocate(self) -> None:
        self.require("dim")
        self.add_parameter("W", (self.dim, self.dim), (WEIGHT,), "weights_init")
        self._add_initial_state("initial_state")

    def get_dim(self, name: str) -> int:
        if name == "mask":
            return 0
        if name in ("inputs", "states"):
            return self.dim
        return super().get_dim(name)

    @recurrent(sequences=["inputs", "mask"], states=["states"], outputs=["states"], contexts=[])
    def apply(self, inputs: jax.Array, states: jax.Array) -> jax.Array:
        """One step: ``inputs`` and ``states`` are ``(batch, dim)``."""
        return self.activation.apply(recurrent_dot(states, self.W, add=inputs))

    @application(outputs=["states"])
    def initial_states(self, batch_size: int, *args: Any, **kwargs: Any) -> jax.Array:
        return self._initial_state("initial_state", batch_size)


class LSTM(_GatedTransition):
    """Long short-term memory with peepholes (Graves 2013), as in Blocks.

    ``peepholes=False`` drops the ``cells * W_cell_to_*`` terms (and those
    three parameters): the plain cell of cuDNN, PyTorch and Keras, about 15%
    cheaper to train.

    ``inputs`` has ``4 * dim`` features, split in the order input gate,
    forget gate, cell, output gate::

        a = inputs + states W_state
        i = σ(a[0] + cells * W_cell_to_in)
        f = σ(a[1] + cells * W_cell_to_forget)
        cells' = f * cells + i * tanh(a[2])
        o = σ(a[3] + cells' * W_cell_to_out)
        states' = o * tanh(cells')

    Args:
        dim: dimension of the state and the cells (lazy).
        activation: default ``Tanh()``.
        gate_activation: default ``Logistic()``.
        weights_init: scheme of ``W_state`` ``(dim, 4 dim)`` and the
            peepholes ``W_cell_to_in``/``_forget``/``_out`` ``(dim,)`` (so it
            must accept vectors: ``Orthogonal`` does not).
        peepholes: Blocks' peephole connections (default ``True``).
        learn_initial_states: learned ``initial_state``/``initial_cells``
            (default ``True``, as Blocks), else zero initial states.

    Applications:
        ``apply(inputs, states=None, cells=None, mask=None, ...)`` returns
        ``(states, cells)``, each ``(time, batch, dim)``.

    >>> import jax.numpy as jnp
    >>> from bricks.core import IsotropicGaussian
    >>> lstm = LSTM(dim=3, weights_init=IsotropicGaussian(0.1))
    >>> lstm.initialize(seed=0)
    >>> states, cells = lstm.apply(jnp.ones((5, 2, 12)))
    >>> states.shape, cells.shape, lstm.get_dim("inputs")
    ((5, 2, 3), (5, 2, 3), 12)
    """

    _dim_multiples = {"inputs": 4, "states": 1, "cells": 1}
    #: Blocks' peephole connections ``cells * W_cell_to_*``
    peepholes: bool = True

    def __init__(self, dim: int | None = None, peepholes: bool = True, **kwargs: Any) -> None:
        super().__init__(dim=dim, **kwargs)
        self.peepholes = bool(peepholes)

    def _allocate(self) -> None:
        self.require("dim")
        d = self.dim
        self.add_parameter("W_state", (d, 4 * d), (WEIGHT,), "weights_init")
        if self.peepholes:
            for name in ("W_cell_to_in", "W_cell_to_forget", "W_cell_to_out"):
                self.add_parameter(name, (d,), (WEIGHT,), "weights_init")
        self._add_initial_state("initial_state")
        self._add_initial_state("initial_cells")

    def get_dim(self, name: str) -> int:
        if name == "inputs":
            return 4 * self.dim
        if name in ("states", "cells"):
            return self.dim
        if name == "mask":
            return 0
        return super().get_dim(name)

    @recurrent(
        sequences=["inputs", "mask"],
        states=["states", "cells"],
        outputs=["states", "cells"],
        contexts=[],
    )
    def apply(
        self, inputs: jax.Array, states: jax.Array, cells: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """One step: ``inputs`` ``(batch, 4 dim)``, ``states``/``cells`` ``(batch, dim)``."""
        d = self.dim
        act = recurrent_dot(states, self.W_state, add=inputs)
        if self._hand_written_backward():
            peepholes = ()
            if self.peepholes:
                peepholes = (self.W_cell_to_in, self.W_cell_to_forget, self.W_cell_to_out)
            return lstm_cell(act, cells, peepholes)
        gate, activation = self.gate_activation.apply, self.activation.apply
        pre_in, pre_forget, pre_out = act[..., :d], act[..., d : 2 * d], act[..., 3 * d :]
        if self.peepholes:
            pre_in = pre_in + cells * _row(self.W_cell_to_in, cells)
            pre_forget = pre_forget + cells * _row(self.W_cell_to_forget, cells)
        in_gate, forget_gate = gate(pre_in), gate(pre_forget)
        next_cells = forget_gate * cells + in_gate * activation(act[..., 2 * d : 3 * d])
        if self.peepholes:
            pre_out = pre_out + next_cells * _row(self.W_cell_to_out, cells)
        next_states = gate(pre_out) * activation(next_cells)
        return next_states, next_cells

    def _hand_written_backward(self) -> bool:
        """Whether the step may use :func:`lstm_cell` (Blocks' equations with a
        hand-written backward): in reverse-mode differentiation of the
        parameters, with the default activations, and where no graph
        intervention or request concerns the activation bricks (whose outputs
        it does not annotate)."""
        if not (self.fused_backward and fused_backward_enabled()):
            return False
        if not _reverse_differentiated(self.W_state):
            return False
        if type(self.activation) is not Tanh or type(self.gate_activation) is not Logistic:
            return False
        rec = current_frame().recorder
        if rec is None:
            return True
        if rec.discovery:
            return False
        children = (f"{self.activation.path}.", f"{self.gate_activation.path}.")
        tags = [*rec.interventions, *rec.requested]
        return not any(child in tag for tag in tags for child in children)

    @application(outputs=["states", "cells"])
    def initial_states(
        self, batch_size: int, *args: Any, **kwargs: Any
    ) -> tuple[jax.Array, jax.Array]:
        return (
            self._initial_state("initial_state", batch_size),
            self._initial_state("initial_cells", batch_size),
        )


class GatedRecurrent(_GatedTransition):
    """Gated recurrent unit (Cho et al. 2014), as in Blocks.

    ``inputs`` has ``dim`` features, ``gate_inputs`` ``2 * dim`` (update
    gate, then reset gate)::

        u, r = split(σ(gate_inputs + states state_to_gates))
        states' = u * tanh(inputs + (r * states) state_to_state) + (1 - u) * states

    Args:
        dim: dimension of the state (lazy).
        activation: default ``Tanh()``.
        gate_activation: default ``Logistic()``.
        weights_init: scheme of ``state_to_state`` ``(dim, dim)`` and of
            each half of ``state_to_gates`` ``(dim, 2 dim)``.

    >>> import jax.numpy as jnp
    >>> from bricks.core import Orthogonal
    >>> gru = GatedRecurrent(dim=3, weights_init=Orthogonal())
    >>> gru.initialize(seed=0)
    >>> gru.apply(jnp.ones((5, 2, 3)), jnp.ones((5, 2, 6))).shape
    (5, 2, 3)
    """

    _dim_multiples = {"inputs": 1, "gate_inputs": 2, "states": 1}

    def _allocate(self) -> None:
        self.require("dim")
        d = self.dim
        self.add_parameter("state_to_state", (d, d), (WEIGHT,), "weights_init")
        self.add_parameter("state_to_gates", (d, 2 * d), (WEIGHT,), self._init_state_to_gates)
        self._add_initial_state("initial_state")

    def _init_state_to_gates(self, key: Any, shape: tuple[int, ...], dtype: Any) -> jax.Array:
        """Blocks draws the update and reset halves separately (this matters
        for orthogonal initialization)."""
        scheme = self.weights_init
        if scheme is None:
            self.require("weights_init")
        d = shape[0]
        k1, k2 = jax.random.split(key)
        return jnp.concatenate([scheme(k1, (d, d), dtype), scheme(k2, (d, d), dtype)], axis=1)

    def get_dim(self, name: str) -> int:
        if name == "mask":
            return 0
        if name in ("inputs", "states"):
            return self.dim
        if name == "gate_inputs":
            return 2 * self.dim
        return super().get_dim(name)

    @recurrent(
        sequences=["mask", "inputs", "gate_inputs"],
        states=["states"],
        outputs=["states"],
        contexts=[],
    )
    def apply(self, inputs: jax.Array, gate_inputs: jax.Array, states: jax.Array) -> jax.Array:
        """One step: ``inputs`` ``(batch, dim)``, ``gate_inputs`` ``(batch, 2 dim)``."""
        d = self.dim
        gates = self.gate_activation.apply(
            recurrent_dot(states, self.state_to_gates, add=gate_inputs)
        )
        update, reset = gates[..., :d], gates[..., d:]
        candidate = self.activation.apply(
            recurrent_dot(states * reset, self.state_to_state, add=inputs)
        )
        return candidate * update + states * (1 - update)

    @application(outputs=["states"])
    def initial_states(self, batch_size: int, *args: Any, **kwargs: Any) -> jax.Array:
        return self._initial_state("initial_state", batch_size)
