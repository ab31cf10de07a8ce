"""Content-based attention over a sequence: :class:`SequenceContentAttention`
and :class:`AttentionRecurrent`, a recurrent brick that attends at each step.

The attended sequence is time-major ``(attended_time, batch, attended_dim)``
with a ``(attended_time, batch)`` mask. Weights are computed so that they stay
finite for any finite energies and for rows whose mask is all zeros (the
weights are then all zero and the glimpse is zero), and so that gradients
through them have no NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from bricks.core.application import application
from bricks.core.brick import Brick, Initializable
from bricks.core.checks import as_input, check_rank, check_same_size, check_size
from bricks.core.parallel import Fork, Parallel
from bricks.core.simple import Linear
from bricks.errors import AttentionError
from bricks.recurrent._recurrent import BaseRecurrent, recurrent

__all__ = [
    "SequenceContentAttention",
    "AttentionRecurrent",
    "masked_softmax",
    "ATTENDED",
    "ATTENDED_MASK",
    "PREPROCESSED_ATTENDED",
]

ATTENDED = "attended"
ATTENDED_MASK = "attended_mask"
PREPROCESSED_ATTENDED = "preprocessed_attended"


def masked_softmax(energies: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Softmax over axis 0 of ``energies`` ``(time, batch)``, only where ``mask`` is set.

    Stable for huge energies (the maximum over the unmasked entries is
    subtracted), and an all-zero mask column gives all-zero weights rather
    than NaN; the gradient is finite in both cases.

    >>> import jax.numpy as jnp
    >>> w = masked_softmax(jnp.array([[1e30, 0.0], [0.0, 1.0]]), jnp.array([[1, 0], [1, 0]]))
    >>> w.tolist()
    [[1.0, 0.0], [0.0, 0.0]]
    """
    energies = jnp.asarray(energies)
    if mask is None:
        valid = jnp.ones(energies.shape, bool)
    else:
        valid = jnp.asarray(mask) > 0
    safe = jnp.where(valid, energies, 0.0)
    top = jnp.max(jnp.where(valid, safe, -jnp.inf), axis=0, keepdims=True)
    top = jax.lax.stop_gradient(jnp.where(jnp.isfinite(top), top, 0.0))
    shifted = jnp.where(valid, safe - top, 0.0)
    unnormalized = jnp.where(valid, jnp.exp(shifted), 0.0)
    total = jnp.sum(unnormalized, axis=0, keepdims=True)
    return unnormalized / jnp.where(total > 0, total, 1.0)


class SequenceContentAttention(Initializable):
    """Attention whose energies depend on the content of the attended sequence.

    As in Blocks (Bahdanau et al. 2015)::

        match[t] = preprocess(attended[t]) + sum_s state_transformer_s(states_s)
        energies[t] = w . tanh(match[t])
        weights = softmax over t of energies (masked)
        glimpse = sum_t weights[t] attended[t]

    Args:
        state_names: names of the states the attention reads (e.g.
            ``transition.apply.states``).
        attended_dim: features of the attended sequence (lazy).
        match_dim: size of the match space (lazy).
        state_dims: dimension per state (lazy; :class:`AttentionRecurrent`
            pushes its transition's).
        weights_init, biases_init: pushed to the children ``state_trans``
            (one ``Linear`` without bias per state), ``preprocess`` and
            ``energy_comp``.

    Applications:
        * ``preprocess(attended)`` — ``(T, B, attended_dim)`` → ``(T, B, match_dim)``;
        * ``compute_energies(attended, preprocessed_attended, **states)`` → ``(T, B)``;
        * ``compute_weights(energies, attended_mask)`` → ``(T, B)``;
        * ``compute_weighted_averages(weights, attended)`` → ``(B, attended_dim)``;
        * ``take_glimpses(attended, preprocessed_attended=None, attended_mask=None,
          **states)`` → ``(weighted_averages (B, attended_dim), weights (B, T))``;
        * ``initial_glimpses(batch_size, attended)`` — zeros of those shapes.

    >>> import jax.numpy as jnp
    >>> from bricks.core import IsotropicGaussian, Constant
    >>> att = SequenceContentAttention(["states"], attended_dim=4, match_dim=3,
    ...                                state_dims=[2], weights_init=IsotropicGaussian(0.1),
    ...                                biases_init=Constant(0.0))
    >>> att.initialize(seed=0)
    >>> glimpse, weights = att.take_glimpses(jnp.ones((5, 2, 4)), states=jnp.ones((2, 2)))
    >>> glimpse.shape, weights.shape
    ((2, 4), (2, 5))
    """

    allocation_config = ("attended_dim", "match_dim", "state_dims")
    attended_dim: int | None = None
    match_dim: int | None = None
    state_dims: Sequence[int] | None = None

    def __init__(
        self,
        state_names: Sequence[str],
        attended_dim: int | None = None,
        match_dim: int | None = None,
        state_dims: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> None:
        self.__dict__["state_names"] = list(state_names)
        self.state_transformers = Parallel(
            self.state_names, prototype=Linear(use_bias=False), name="state_trans"
        )
        self.preprocessor = Linear(name="preprocess")
        self.energy_computer = Linear(use_bias=False, name="energy_comp")
        super().__init__(
            children=[self.state_transformers, self.preprocessor, self.energy_computer], **kwargs
        )
        if attended_dim is not None:
            self.attended_dim = attended_dim
        if match_dim is not None:
            self.match_dim = match_dim
        if state_dims is not None:
            self.state_dims = list(state_dims)

    def _push_allocation_config(self) -> None:
        super()._push_allocation_config()
        if self.state_dims is not None:
            self.push_to(self.state_transformers, "input_dims", list(self.state_dims))
        if self.match_dim is not None:
            self.push_to(
                self.state_transformers, "output_dims", [self.match_dim] * len(self.state_names)
            )
        self.push_to(self.preprocessor, "input_dim", self.attended_dim)
        self.push_to(self.preprocessor, "output_dim", self.match_dim)
        self.push_to(self.energy_computer, "input_dim", self.match_dim)
        self.push_to(self.energy_computer, "output_dim", 1)

    def get_dim(self, name: str) -> int:
        if name in (ATTENDED, "weighted_averages"):
            return self.attended_dim
        if name in (PREPROCESSED_ATTENDED,):
            return self.match_dim
        if name in ("weights", ATTENDED_MASK):
            return 0
        return super().get_dim(name)

    def _states(self, states: dict[str, Any]) -> list[Any]:
        missing = [n for n in self.state_names if states.get(n) is None]
        if missing:
            raise AttentionError(
                f"{self.path} attends with states {self.state_names} but got no value for "
                f"{missing}; pass them by name (got {sorted(states)})"
            )
        values = [as_input(self, n, states[n]) for n in self.state_names]
        dims = list(self.state_dims) if self.state_dims is not None else [None] * len(values)
        for name, value, dim in zip(self.state_names, values, dims, strict=True):
            check_rank(self, name, value, 2, f"(batch, {dim})")
            setting = f"state_dims[{self.state_names.index(name)}]={dim}"
            check_size(self, name, value, -1, dim, setting)
        return values

    def _check_attended(
        self, attended: Any, preprocessed: Any = None, mask: Any = None, **states: Any
    ) -> None:
        """``attended`` ``(time, batch, attended_dim)``, ``preprocessed_attended``
        ``(time, batch, match_dim)``, ``attended_mask`` ``(time, batch)`` and
        states ``(batch, dim)``, all of one batch (and the first three of one time)."""
        layout = f"time-major (attended_time, batch, {self.attended_dim})"
        check_rank(self, ATTENDED, attended, 3, layout)
        check_size(self, ATTENDED, attended, -1, self.attended_dim,
                   f"attended_dim={self.attended_dim}")
        if preprocessed is not None:
            check_rank(self, PREPROCESSED_ATTENDED, preprocessed, 3,
                       f"(attended_time, batch, {self.match_dim})")
            check_size(self, PREPROCESSED_ATTENDED, preprocessed, -1, self.match_dim,
                       f"match_dim={self.match_dim}")
        if mask is not None:
            check_rank(self, ATTENDED_MASK, mask, 2, "(attended_time, batch)")
        sequences = {ATTENDED: attended, PREPROCESSED_ATTENDED: preprocessed, ATTENDED_MASK: mask}
        timed = [(n, v, 0) for n, v in sequences.items()]
        check_same_size(self, timed, what="attended time")
        batched = [(n, v, 1) for n, v, _ in timed]
        batched += [(n, v, 0) for n, v in states.items() if n in self.state_names]
        check_same_size(self, batched)

    @application(inputs=["attended"], outputs=["preprocessed_attended"])
    def preprocess(self, attended: jax.Array) -> jax.Array:
        """The attended sequence mapped to the match space, computed once per sequence."""
        return self.preprocessor.apply(attended)

    @application(outputs=["energies"])
    def compute_energies(
        self, attended: jax.Array, preprocessed_attended: jax.Array | None = None, **states: Any
    ) -> jax.Array:
        attended = as_input(self, ATTENDED, attended)
        values = dict(zip(self.state_names, self._states(states), strict=True))
        self._check_attended(attended, preprocessed_attended, None, **values)
        if preprocessed_attended is None:
            preprocessed_attended = self.preprocess(attended)
        transformed = self.state_transformers.apply(*values.values())
        transformed = list(transformed) if isinstance(transformed, (tuple, list)) else [transformed]
        match = preprocessed_attended
        for t in transformed:
            match = match + t[None]
        return self.energy_computer.apply(jnp.tanh(match))[..., 0]

    @application(outputs=["weights"])
    def compute_weights(
        self, energies: jax.Array, attended_mask: jax.Array | None = None
    ) -> jax.Array:
        """Masked softmax over the attended time (see :func:`masked_softmax`)."""
        energies = as_input(self, "energies", energies)
        check_rank(self, "energies", energies, 2, "(attended_time, batch)")
        if attended_mask is not None:
            attended_mask = as_input(self, ATTENDED_MASK, attended_mask)
            check_rank(self, ATTENDED_MASK, attended_mask, 2, "(attended_time, batch)")
            pairs = [("energies", energies), (ATTENDED_MASK, attended_mask)]
            for axis, what in ((0, "attended time"), (1, "batch")):
                check_same_size(self, [(n, v, axis) for n, v in pairs], what=what)
        return masked_softmax(energies, attended_mask)

    @application(outputs=["weighted_averages"])
    def compute_weighted_averages(self, weights: jax.Array, attended: jax.Array) -> jax.Array:
        weights, attended = as_input(self, "weights", weights), as_input(self, ATTENDED, attended)
        check_rank(self, "weights", weights, 2, "(attended_time, batch)")
        check_rank(self, ATTENDED, attended, 3, "(attended_time, batch, attended_dim)")
        pairs = [("weights", weights), (ATTENDED, attended)]
        for axis, what in ((0, "attended time"), (1, "batch")):
            check_same_size(self, [(n, v, axis) for n, v in pairs], what=what)
        return jnp.sum(weights[..., None] * attended, axis=0)

    @application(outputs=["weighted_averages", "weights"])
    def take_glimpses(
        self,
        attended: jax.Array,
        preprocessed_attended: jax.Array | None = None,
        attended_mask: jax.Array | None = None,
        **states: Any,
    ) -> tuple[jax.Array, jax.Array]:
        """The glimpse (weighted average, ``(batch, attended_dim)``) and the
        weights, transposed to ``(batch, attended_time)`` as in Blocks."""
        if attended_mask is not None:
            attended_mask = as_input(self, ATTENDED_MASK, attended_mask)
            self._check_attended(as_input(self, ATTENDED, attended), None, attended_mask)
        energies = self.compute_energies(attended, preprocessed_attended, **states)
        weights = self.compute_weights(energies, attended_mask)
        return self.compute_weighted_averages(weights, attended), weights.T

    @take_glimpses.property("inputs")
    def _take_glimpses_inputs(self) -> list[str]:
        return [ATTENDED, PREPROCESSED_ATTENDED, ATTENDED_MASK, *self.state_names]

    @application(outputs=["weighted_averages", "weights"])
    def initial_glimpses(self, batch_size: int, attended: jax.Array) -> tuple[jax.Array, jax.Array]:
        # float even for an integer attended sequence: the glimpses are averages
        dtype = jnp.result_type(attended, jnp.float32)
        return (
            jnp.zeros((batch_size, attended.shape[-1]), dtype),
            jnp.zeros((batch_size, attended.shape[0]), dtype),
        )


class AttentionRecurrent(BaseRecurrent, Initializable):
    """A recurrent transition that attends over a context sequence at every step.

    At each step, as in Blocks: the glimpses are computed from the previous
    states, then distributed (a ``Linear`` per sequence of the transition,
    added to it) and the transition makes its next states::

        glimpses_t = attention.take_glimpses(attended, states_{t-1})
        states_t = transition(inputs_t + distribute(glimpses_t), states_{t-1})

    The glimpses are returned as states, after the transition's states.

    Args:
        transition: a recurrent brick (e.g. ``GatedRecurrent``); its
            ``apply`` states are the attention's ``state_names``.
        attention: e.g. :class:`SequenceContentAttention`; its
            ``state_dims`` get the transition's dimensions.
        add_contexts: as in Blocks, ``False`` when the transition itself
            takes ``attended`` and ``attended_mask`` as contexts (they are
            then passed to it, and the attention's ``attended_dim`` is the
            transition's ``get_dim("attended")``).
        name, weights_init, biases_init: as usual.

    Applications:
        * ``apply(**sequences, attended, attended_mask=None, mask=None, ...)``
          — iterates over the sequences; returns the transition's states
          then the glimpses, each ``(time, batch, ...)``;
        * ``take_glimpses(attended, preprocessed_attended=None, attended_mask=None,
          **states)``, ``compute_states(**sequences, **states, **glimpses)`` —
          the two halves of one step (used by generation and beam search);
        * ``initial_states(batch_size, attended, ...)``.

    >>> import jax.numpy as jnp
    >>> from bricks.core import IsotropicGaussian, Constant
    >>> from bricks.recurrent import SimpleRecurrent
    >>> rec = AttentionRecurrent(SimpleRecurrent(dim=3),
    ...                          SequenceContentAttention(["states"], attended_dim=4, match_dim=5),
    ...                          weights_init=IsotropicGaussian(0.1), biases_init=Constant(0))
    >>> rec.initialize(seed=0)
    >>> states, glimpses, weights = rec.apply(inputs=jnp.ones((6, 2, 3)),
    ...                                       attended=jnp.ones((7, 2, 4)))
    >>> states.shape, glimpses.shape, weights.shape
    ((6, 2, 3), (6, 2, 4), (6, 2, 7))
    """

    def __init__(
        self,
        transition: Brick,
        attention: SequenceContentAttention,
        add_contexts: bool = True,
        **kwargs: Any,
    ):
        if not add_contexts and ATTENDED not in transition.apply.contexts:
            raise AttentionError(
                f"add_contexts=False: the transition {transition.path} must take "
                f"{ATTENDED!r} (and {ATTENDED_MASK!r}) as contexts; its contexts are "
                f"{transition.apply.contexts}. Leave add_contexts=True to add them."
            )
        self.add_contexts = add_contexts
        self.transition = transition
        self.attention = attention
        self.__dict__["sequence_names"] = [s for s in transition.apply.sequences if s != "mask"]
        self.__dict__["state_names"] = list(transition.apply.states)
        self.__dict__["glimpse_names"] = list(attention.take_glimpses.outputs)
        # with add_contexts=False the transition itself takes attended/attended_mask
        self.__dict__["context_names"] = [ATTENDED, ATTENDED_MASK] + [
            c for c in transition.apply.contexts if c not in (ATTENDED, ATTENDED_MASK)
        ]
        clash = set(self.glimpse_names) & (set(self.state_names) | set(self.sequence_names))
        if clash:
            raise AttentionError(
                f"the glimpses {sorted(clash)} of {attention.path} have the names of states or "
                f"sequences of {transition.path}; rename them"
            )
        self.distribute = Fork(self.sequence_names, name="distribute")
        super().__init__(children=[transition, attention, self.distribute], **kwargs)

    def _push_allocation_config(self) -> None:
        super()._push_allocation_config()
        self.push_to(
            self.attention, "state_dims", self.transition.get_dims(self.attention.state_names)
        )
        if ATTENDED in self.transition.apply.contexts:  # as Blocks: the transition knows it
            self.push_to(self.attention, "attended_dim", self.transition.get_dim(ATTENDED))
        self.push_to(self.distribute, "input_dim", self.attention.get_dim("weighted_averages"))
        self.push_to(self.distribute, "output_dims", self.transition.get_dims(self.sequence_names))

    def dim_setting(self, name: str) -> str | None:
        """The setting that decides the features of ``name``, for error messages."""
        if name == "weighted_averages":
            return f"the attention's attended_dim={self.attention.attended_dim}"
        setting = getattr(self.transition, "dim_setting", None)
        return setting(name) if callable(setting) else None

    def get_dim(self, name: str) -> int:
        if name in self.glimpse_names or name in (ATTENDED, ATTENDED_MASK, PREPROCESSED_ATTENDED):
            return self.attention.get_dim(name)
        return self.transition.get_dim(name)

    @application
    def take_glimpses(self, **kwargs: Any) -> tuple[jax.Array, ...]:
        """Glimpses ``(batch, ...)`` from the states, the attended sequence, its
        mask and (optionally) its preprocessed form."""
        states = {n: kwargs[n] for n in self.state_names}
        result = self.attention.take_glimpses(
            kwargs[ATTENDED],
            kwargs.get(PREPROCESSED_ATTENDED),
            kwargs.get(ATTENDED_MASK),
            **states,
        )
        return tuple(result) if isinstance(result, (tuple, list)) else (result,)

    @take_glimpses.property("outputs")
    def _take_glimpses_outputs(self) -> list[str]:
        return list(self.glimpse_names)

    @application
    def compute_states(self, **kwargs: Any) -> tuple[jax.Array, ...]:
        """One transition step: the sequences (``(batch, ...)``) plus the
        distributed glimpses, from the states; returns the next states."""
        distributed = self.distribute.apply(kwargs[self.glimpse_names[0]])
        if not isinstance(distributed, (tuple, list)):
            distributed = (distributed,)
        step_args = {n: kwargs[n] for n in self.state_names}
        for name, extra in zip(self.sequence_names, distributed, strict=True):
            step_args[name] = kwargs[name] + extra
        for name in self.transition.apply.contexts:
            step_args[name] = kwargs[name]
        result = self.transition.apply(iterate=False, **step_args)
        return tuple(result) if isinstance(result, (tuple, list)) else (result,)

    @compute_states.property("outputs")
    def _compute_states_outputs(self) -> list[str]:
        return list(self.state_names)

    @recurrent
    def do_apply(self, **kwargs: Any) -> tuple[jax.Array, ...]:
        """One step: glimpses from the previous states, then the next states."""
        glimpses = self.take_glimpses(**kwargs)
        named = dict(zip(self.glimpse_names, glimpses, strict=True))
        states = self.compute_states(**{**kwargs, **named})
        return (*states, *glimpses)

    @do_apply.property("sequences")
    def _do_apply_sequences(self) -> list[str]:
        return [*self.sequence_names, "mask"]

    @do_apply.property("states")
    def _do_apply_states(self) -> list[str]:
        return [*self.state_names, *self.glimpse_names]

    @do_apply.property("outputs")
    def _do_apply_outputs(self) -> list[str]:
        return [*self.state_names, *self.glimpse_names]

    @do_apply.property("contexts")
    def _do_apply_contexts(self) -> list[str]:
        return [*self.context_names, PREPROCESSED_ATTENDED]

    @application
    def apply(self, **kwargs: Any) -> Any:
        """Iterate over the sequences, attending over ``attended`` (preprocessed once)."""
        if kwargs.get(ATTENDED) is None:
            raise AttentionError(
                f"{self.path}.apply needs the sequence to attend to: pass {ATTENDED}=... "
                f"(shape (attended_time, batch, {self.attention.attended_dim}))"
            )
        for name in (ATTENDED, ATTENDED_MASK, PREPROCESSED_ATTENDED):
            if kwargs.get(name) is not None:
                kwargs[name] = as_input(self, name, kwargs[name])
        self.attention._check_attended(
            kwargs[ATTENDED], kwargs.get(PREPROCESSED_ATTENDED), kwargs.get(ATTENDED_MASK)
        )
        if kwargs.get(PREPROCESSED_ATTENDED) is None:
            kwargs[PREPROCESSED_ATTENDED] = self.attention.preprocess(kwargs[ATTENDED])
        return self.do_apply(**kwargs)

    @apply.property("outputs")
    def _apply_outputs(self) -> list[str]:
        return [*self.state_names, *self.glimpse_names]

    @apply.property("inputs")
    def _apply_inputs(self) -> list[str]:
        return [
            *self.sequence_names,
            "mask",
            *self.state_names,
            *self.glimpse_names,
            *self.context_names,
        ]

    @property
    def states(self) -> list[str]:
        return [*self.state_names, *self.glimpse_names]

    @application
    def initial_states(self, batch_size: int, *args: Any, **kwargs: Any) -> tuple[jax.Array, ...]:
        """The transition's initial states and zero glimpses.

        As in Blocks, every argument (``attended``, ``attended_mask``, the
        sequences and contexts of the call) is passed on to the transition's
        ``initial_states``, so an initial state may depend on the attended
        sequence (``GRUInitialState`` of Blocks' machine translation example).
        """
        attended = kwargs.get(ATTENDED)
        if attended is None:
            raise AttentionError(
                f"{self.path}.initial_states needs {ATTENDED}=... to shape the initial glimpses"
            )
        states = self.transition.initial_states(batch_size, *args, **kwargs)
        states = tuple(states) if isinstance(states, (tuple, list)) else (states,)
        glimpses = self.attention.initial_glimpses(batch_size, attended)
        glimpses = tuple(glimpses) if isinstance(glimpses, (tuple, list)) else (glimpses,)
        return (*states, *glimpses)

    @initial_states.property("outputs")
    def _initial_states_outputs(self) -> list[str]:
        return [*self.state_names, *self.glimpse_names]
