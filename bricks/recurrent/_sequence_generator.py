"""Sequence generators: a readout, an emitter, a feedback and a transition
(with or without attention) that score and generate sequences, as in Blocks.

One step of a generator, given the previous output ``y_{t-1}`` (the
emitter's ``initial_outputs`` at ``t = 0``) and the states after ``t - 1``::

    glimpses_t = transition.take_glimpses(states_{t-1}, contexts)
    readouts_t = readout.readout(feedback(y_{t-1}), states_{t-1}, glimpses_t)
    y_t        ~ emitter.emit(readouts_t)          # cost: emitter.cost(readouts_t, y_t)
    states_t   = transition.compute_states(fork(feedback(y_t)), states_{t-1}, glimpses_t)

:meth:`SequenceGenerator.cost_matrix` runs the transition over the whole
(teacher-forced) output sequence in one scan; :meth:`SequenceGenerator.generate`
runs the step above in one scan, sampling with an explicit JAX key.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from bricks.core.application import application
from bricks.core.brick import Brick, Initializable
from bricks.core.checks import (
    as_input,
    check_rank,
    check_same_size,
)
from bricks.core.parallel import Fork
from bricks.core.roles import COST
from bricks.core.tracing import scan
from bricks.errors import SequenceGeneratorError
from bricks.recurrent._attention import (
    ATTENDED,
    PREPROCESSED_ATTENDED,
    AttentionRecurrent,
)
from bricks.recurrent._emitters import AbstractEmitter, SoftmaxEmitter, TrivialEmitter
from bricks.recurrent._feedback import AbstractFeedback, LookupFeedback, TrivialFeedback
from bricks.recurrent._readout import Readout
from bricks.recurrent._recurrent import BaseRecurrent, apply_mask

__all__ = [
    "AbstractEmitter",
    "SoftmaxEmitter",
    "TrivialEmitter",
    "AbstractFeedback",
    "LookupFeedback",
    "TrivialFeedback",
    "Readout",
    "FakeAttentionRecurrent",
    "SequenceGenerator",
]


def _as_tuple(x: Any) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


# -- transitions without attention ------------------------------------------------------


class FakeAttentionRecurrent(BaseRecurrent, Initializable):
    """Gives a plain recurrent brick the interface of :class:`AttentionRecurrent`
    (no glimpses), so a :class:`SequenceGenerator` treats both alike."""

    def __init__(self, transition: Brick, **kwargs: Any) -> None:
        self.transition = transition
        self.__dict__["sequence_names"] = [s for s in transition.apply.sequences if s != "mask"]
        self.__dict__["state_names"] = list(transition.apply.states)
        self.__dict__["glimpse_names"] = []
        self.__dict__["context_names"] = list(transition.apply.contexts)
        super().__init__(children=[transition], **kwargs)

    @property
    def states(self) -> list[str]:
        return list(self.state_names)

    def get_dim(self, name: str) -> int:
        return self.transition.get_dim(name)

    @application
    def apply(self, **kwargs: Any) -> Any:
        return self.transition.apply(**kwargs)

    @apply.delegate
    def _apply_delegate(self) -> Any:
        return self.transition.apply

    def take_glimpses(self, **kwargs: Any) -> tuple:
        return ()

    @application
    def compute_states(self, **kwargs: Any) -> tuple[jax.Array, ...]:
        names = [*self.sequence_names, *self.state_names, *self.context_names]
        return _as_tuple(
            self.transition.apply(iterate=False, **{n: kwargs[n] for n in names if n in kwargs})
        )

    @compute_states.property("outputs")
    def _compute_states_outputs(self) -> list[str]:
        return list(self.state_names)

    @application
    def initial_states(self, batch_size: int, *args: Any, **kwargs: Any) -> Any:
        return self.transition.initial_states(batch_size, *args, **kwargs)

    @initial_states.property("outputs")
    def _initial_states_outputs(self) -> list[str]:
        return list(self.state_names)


# -- the generator ----------------------------------------------------------------------


class SequenceGenerator(Initializable):
    """Scores and generates sequences with a readout and a recurrent transition.

    Args:
        readout: a :class:`Readout` (its ``source_names`` are states or
            glimpses of the transition).
        transition: a recurrent brick (``SimpleRecurrent``, ``LSTM``,
            ``GatedRecurrent``...).
        attention: e.g. :class:`~bricks.recurrent.SequenceContentAttention`;
            the transition is then wrapped in an
            :class:`~bricks.recurrent.AttentionRecurrent` (child
            ``att_trans``) and ``attended``/``attended_mask`` become contexts.
        fork: brick that turns the feedback into the transition's sequences
            (default a :class:`~bricks.core.Fork` of ``Linear`` bricks).
        add_contexts: passed to the :class:`AttentionRecurrent` (``False``
            when the transition takes ``attended`` itself).

    Applications and methods (outputs are time-major, ``(time, batch)``
    for integer symbols):

    * ``cost_matrix(outputs, mask=None, **contexts_and_states)`` — the cost
      of each output ``(time, batch)``, zero where ``mask`` is 0;
    * ``cost(outputs, mask=None, ...)`` — the mean over the batch of the
      per-sequence sums (role ``COST``);
    * ``generate(n_steps, batch_size, key, eos=None, greedy=False, ...)``
      — sample (or argmax) in one scan; after ``eos`` the outputs are
      ``eos``, the mask 0 and the states frozen.

    >>> import jax, jax.numpy as jnp
    >>> from bricks.core import IsotropicGaussian, Constant
    >>> from bricks.recurrent import SimpleRecurrent
    >>> gen = SequenceGenerator(
    ...     Readout(readout_dim=5, source_names=["states"], emitter=SoftmaxEmitter(),
    ...             feedback_brick=LookupFeedback(5, 4)),
    ...     SimpleRecurrent(dim=3),
    ...     weights_init=IsotropicGaussian(0.1), biases_init=Constant(0.0))
    >>> gen.initialize(seed=0)
    >>> outputs = jnp.array([[1, 2], [3, 4], [0, 0]])
    >>> gen.cost_matrix(outputs, mask=jnp.ones((3, 2))).shape
    (3, 2)
    >>> sample = gen.generate(n_steps=4, batch_size=2, key=jax.random.key(0), eos=0)
    >>> sample["outputs"].shape, sample["mask"].shape, sample["costs"].shape
    ((4, 2), (4, 2), (4, 2))
    """

    def __init__(
        self,
        readout: Readout,
        transition: Brick,
        attention: Brick | None = None,
        fork: Brick | None = None,
        add_contexts: bool = True,
        **kwargs: Any,
    ) -> None:
        if attention is not None:
            wrapped: Brick = AttentionRecurrent(
                transition, attention, add_contexts=add_contexts, name="att_trans"
            )
        else:
            wrapped = FakeAttentionRecurrent(transition, name="with_fake_attention")
        self.readout = readout
        self.transition = wrapped
        self.attention = attention
        self.__dict__["sequence_names"] = list(wrapped.sequence_names)
        self.fork = fork if fork is not None else Fork(self.sequence_names, name="fork")
        super().__init__(children=[readout, wrapped, self.fork], **kwargs)
        unknown = [
            n
            for n in readout.source_names
            if n not in wrapped.states and n not in wrapped.context_names and n != "feedback"
        ]
        if unknown:
            raise SequenceGeneratorError(
                f"the readout {readout.path} reads sources {unknown} that are neither states nor "
                f"glimpses nor contexts of {wrapped.path} (those are {wrapped.states} and "
                f"{wrapped.context_names})"
            )

    @property
    def state_names(self) -> list[str]:
        """The transition's states, glimpses included."""
        return list(self.transition.states)

    @property
    def context_names(self) -> list[str]:
        return list(self.transition.context_names)

    def _push_allocation_config(self) -> None:
        super()._push_allocation_config()
        # the transition's own dimensions must be known to size the readout and the fork
        self.transition.push_allocation_config()
        self.push_to(self.readout, "source_dims", self.get_dims(self.readout.source_names))
        self.readout.push_allocation_config()
        if isinstance(self.fork, Fork):
            self.push_to(self.fork, "input_dim", self.readout.get_dim("feedback"))
            self.push_to(self.fork, "output_dims", self.transition.get_dims(self.sequence_names))

    def get_dim(self, name: str) -> int:
        if name in ("outputs", "feedback", "readouts"):
            return self.readout.get_dim(name)
        return self.transition.get_dim(name)

    # -- pieces of a step (shared by cost_matrix, generate and BeamSearch) ---------------
    def _split_kwargs(self, kwargs: dict[str, Any]) -> tuple[dict, dict]:
        states = {n: kwargs.pop(n) for n in self.state_names if kwargs.get(n) is not None}
        contexts = {n: kwargs.pop(n) for n in self.context_names if kwargs.get(n) is not None}
        for n in list(kwargs):
            if kwargs[n] is None:
                kwargs.pop(n)
        if kwargs:
            raise SequenceGeneratorError(
                f"{self.path} got unexpected arguments {sorted(kwargs)}; it takes the states "
                f"{self.state_names} and the contexts {self.context_names}"
            )
        if self.attention is not None and ATTENDED not in contexts:
            raise SequenceGeneratorError(
                f"{self.path} attends: pass {ATTENDED}=... (attended_time, batch, features) "
                "and usually attended_mask=..."
            )
        return states, contexts

    def _forked(self, feedback: jax.Array) -> dict[str, jax.Array]:
        return dict(zip(self.sequence_names, _as_tuple(self.fork.apply(feedback)), strict=True))

    def prepare(
        self, batch_size: int, **kwargs: Any
    ) -> tuple[dict[str, jax.Array], dict[str, jax.Array], jax.Array]:
        """Initial states, step contexts (with the preprocessed attended
        sequence) and initial outputs for ``batch_size`` sequences."""
        states, contexts = self._split_kwargs(dict(kwargs))
        missing = [n for n in self.state_names if n not in states]
        if missing:
            produced = _as_tuple(self.transition.initial_states(batch_size, **contexts))
            init = dict(zip(self.transition.initial_states.outputs, produced, strict=True))
            states.update({n: init[n] for n in missing})
        if self.attention is not None and PREPROCESSED_ATTENDED not in contexts:
            contexts[PREPROCESSED_ATTENDED] = self.attention.preprocess(contexts[ATTENDED])
        return states, contexts, self.readout.initial_outputs(batch_size)

    def step_readouts(
        self, previous_outputs: jax.Array, states: dict[str, Any], contexts: dict[str, Any]
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """The readouts ``(batch, readout_dim)`` of the next step and the glimpses it uses."""
        glimpses = _as_tuple(self.transition.take_glimpses(**states, **contexts))
        glimpses = dict(zip(self.transition.glimpse_names, glimpses, strict=True))
        sources = {**states, **glimpses, **contexts}
        readouts = self.readout.readout(feedback=self.readout.feedback(previous_outputs), **sources)
        return readouts, glimpses

    def step_states(
        self,
        outputs: jax.Array,
        states: dict[str, Any],
        glimpses: dict[str, Any],
        contexts: dict[str, Any],
    ) -> dict[str, jax.Array]:
        """The states (glimpses included) after emitting ``outputs``."""
        inputs = self._forked(self.readout.feedback(outputs))
        current = {**states, **glimpses}
        new = _as_tuple(self.transition.compute_states(**inputs, **current, **contexts))
        result = dict(zip(self.transition.state_names, new, strict=True))
        result.update(glimpses)
        return result

    # -- scoring ----------------------------------------------------------------------
    @application(outputs=["costs"])
    def cost_matrix(self, outputs: jax.Array, mask: jax.Array | None = None, **kwargs: Any):
        """Cost of each output given the previous ones, ``(time, batch)``.

        Args:
            outputs: ``(time, batch)`` symbols (``(time, batch, dim)`` for a
                ``TrivialEmitter``).
            mask: ``(time, batch)``; 0 after the end of a sequence.
            **kwargs: contexts (``attended``, ``attended_mask``) and,
                optionally, initial states.
        """
        outputs = as_input(self, "outputs", outputs)
        dim = self.readout.get_dim("outputs")
        if dim == 0:
            check_rank(self, "outputs", outputs, 2, "time-major symbols (time, batch)")
        else:
            check_rank(self, "outputs", outputs, 3, f"time-major (time, batch, {dim})")
        if mask is not None:
            mask = as_input(self, "mask", mask)
            check_rank(self, "mask", mask, 2, "(time, batch)")
            for axis, what in ((0, "time"), (1, "batch")):
                check_same_size(self, [("outputs", outputs, axis), ("mask", mask, axis)], what)
        states, contexts = self._split_kwargs(dict(kwargs))
        batch_size = outputs.shape[1]
        feedback = self.readout.feedback(outputs)
        inputs = self._forked(feedback)
        results = _as_tuple(
            self.transition.apply(
                **inputs, mask=mask, return_initial_states=True, **states, **contexts
            )
        )
        results = dict(zip(self.transition.apply.outputs, results, strict=True))
        # states are taken *before* each output is read; glimpses are computed at
        # the step that reads the output, from those states
        sources = {n: results[n][:-1] for n in self.transition.state_names}
        sources.update({n: results[n][1:] for n in self.transition.glimpse_names})
        first = self.readout.feedback(self.readout.initial_outputs(batch_size))
        shifted = jnp.concatenate([first[None], feedback[:-1]], axis=0)
        readouts = self.readout.readout(feedback=shifted, **sources, **contexts)
        costs = self.readout.cost(readouts, outputs)
        if mask is not None:
            costs = costs * jnp.asarray(mask).astype(costs.dtype)
        return costs

    @application(outputs=["cost"], roles=[COST])
    def cost(self, outputs: jax.Array, mask: jax.Array | None = None, **kwargs: Any) -> jax.Array:
        """Mean over the batch of the summed costs of each sequence.

        As in Blocks, the mean cost per sequence element (summed costs over
        the number of unmasked outputs) is an auxiliary variable
        ``per_sequence_element`` of this application.
        """
        costs = self.cost_matrix(outputs, mask, **kwargs)
        if mask is None:
            per_element = jnp.mean(costs)
        else:
            per_element = jnp.sum(costs) / jnp.sum(jnp.asarray(mask).astype(costs.dtype))
        self.add_auxiliary_variable(per_element, name="per_sequence_element")
        return jnp.mean(jnp.sum(costs, axis=0))

    # -- generation ---------------------------------------------------------------------
    def generate(
        self,
        n_steps: int,
        batch_size: int,
        key: Any = None,
        *,
        eos: int | None = None,
        greedy: bool = False,
        **kwargs: Any,
    ) -> dict[str, jax.Array]:
        """Generate ``batch_size`` sequences of at most ``n_steps`` in one scan.

        Args:
            n_steps: the number of steps (static).
            batch_size: the number of sequences (static).
            key: a JAX PRNG key (required unless ``greedy``), split into
                one key per step, so the same key gives the same sequences.
            eos: the end-of-sequence symbol: once emitted, a sequence's
                later outputs are ``eos``, its mask and costs 0 and its
                states frozen.
            greedy: emit the most likely symbol instead of sampling.
            **kwargs: contexts (``attended``, ``attended_mask``) and,
                optionally, initial states.

        Returns:
            A dict with ``"outputs"`` ``(n_steps, batch)``, ``"mask"``
            (1 up to and including ``eos``), ``"costs"`` (per-step negative
            log-likelihood, 0 where masked) and every state and glimpse
            after each step, ``(n_steps, batch, ...)``.
        """
        if key is None and not greedy:
            raise SequenceGeneratorError(
                f"{self.path}.generate samples: pass key=jax.random.key(...) (or greedy=True)"
            )
        if eos is not None and self.readout.get_dim("outputs") != 0:
            raise SequenceGeneratorError(
                f"{self.path}.generate: eos={eos!r} needs integer outputs (a SoftmaxEmitter), "
                f"but the emitter {self.readout.emitter.path} emits vectors"
            )
        states, contexts, previous = self.prepare(batch_size, **kwargs)
        done = jnp.zeros((batch_size,), bool)
        keys = None if greedy else jax.random.split(key, n_steps)

        def body(carry: tuple, step_key: Any) -> tuple[tuple, dict]:
            states, previous, done = carry
            readouts, glimpses = self.step_readouts(previous, states, contexts)
            outputs = self.readout.emit(readouts, None if greedy else step_key)
            if eos is not None:
                outputs = jnp.where(done, jnp.asarray(eos, outputs.dtype), outputs)
            mask = jnp.logical_not(done).astype(jnp.float32)
            costs = self.readout.cost(readouts, outputs) * mask
            new_states = self.step_states(outputs, states, glimpses, contexts)
            new_states = {
                n: apply_mask(mask, new_states[n], states[n]).astype(states[n].dtype)
                for n in states
            }
            if eos is not None:
                done = jnp.logical_or(done, outputs == eos)
            ys = {"outputs": outputs, "mask": mask, "costs": costs, **new_states}
            return (new_states, outputs, done), ys

        _, ys = scan(
            body, (states, previous, done), keys, length=n_steps, name=f"{self.path}.generate.scan"
        )
        return ys
