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

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from bricks.core.application import application
from bricks.core.brick import Brick, Initializable
from bricks.core.checks import (
    as_input,
    check_integer,
    check_rank,
    check_same_shape,
    check_same_size,
    check_size,
)
from bricks.core.lookup import LookupTable
from bricks.core.parallel import Fork, Merge
from bricks.core.roles import COST
from bricks.core.simple import Bias, Linear
from bricks.core.tracing import scan
from bricks.errors import SequenceGeneratorError, ShapeError
from bricks.recurrent._attention import (
    ATTENDED,
    PREPROCESSED_ATTENDED,
    AttentionRecurrent,
)
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


# -- emitters -------------------------------------------------------------------------


class AbstractEmitter(Brick):
    """Turns readouts into outputs (``emit``) and scores outputs (``cost``).

    Subclasses define ``emit(readouts, key=None)`` (``key=None``: the most
    likely output), ``cost(readouts, outputs)`` (per position, the readouts'
    leading axes), ``initial_outputs(batch_size)`` and ``get_dim("outputs")``
    (0 for integer symbols).
    """

    allocation_config = ("readout_dim",)
    readout_dim: int | None = None

    def emit(self, readouts: jax.Array, key: Any = None) -> jax.Array:
        raise NotImplementedError

    def cost(self, readouts: jax.Array, outputs: jax.Array) -> jax.Array:
        raise NotImplementedError

    def initial_outputs(self, batch_size: int) -> jax.Array:
        raise NotImplementedError


class SoftmaxEmitter(AbstractEmitter):
    """Emits integer symbols from a softmax over the readouts (the logits).

    Args:
        initial_output: the symbol fed back before the first step (default 0).

    ``emit(readouts, key)`` samples (``key=None``: the argmax);
    ``cost(readouts, outputs)`` is the negative log-probability of
    ``outputs``; ``log_probabilities(readouts)`` the log-softmax.

    >>> import jax, jax.numpy as jnp
    >>> emitter = SoftmaxEmitter()
    >>> emitter.emit(jnp.array([[0.0, 5.0, 1.0]])).tolist()
    [1]
    >>> round(float(emitter.cost(jnp.zeros((1, 4)), jnp.array([2]))[0]), 4)
    1.3863
    """

    def __init__(self, initial_output: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.initial_output = int(initial_output)

    def _readouts(self, readouts: Any) -> jax.Array:
        readouts = as_input(self, "readouts", readouts)
        check_rank(self, "readouts", readouts, (1, None), "(..., classes)")
        if not jnp.issubdtype(readouts.dtype, jnp.inexact):  # integer logits count as float32
            readouts = readouts.astype(jnp.float32)
        return readouts

    @application(inputs=["readouts"], outputs=["probs"])
    def probs(self, readouts: jax.Array) -> jax.Array:
        return jax.nn.softmax(self._readouts(readouts), axis=-1)

    @application(inputs=["readouts"], outputs=["log_probs"])
    def log_probabilities(self, readouts: jax.Array) -> jax.Array:
        return jax.nn.log_softmax(self._readouts(readouts), axis=-1)

    @application(inputs=["readouts"], outputs=["outputs"])
    def emit(self, readouts: jax.Array, key: Any = None) -> jax.Array:
        readouts = self._readouts(readouts)
        if key is None:
            return jnp.argmax(readouts, axis=-1).astype(jnp.int32)
        return jax.random.categorical(key, readouts, axis=-1).astype(jnp.int32)

    @application(inputs=["readouts", "outputs"], outputs=["costs"])
    def cost(self, readouts: jax.Array, outputs: jax.Array) -> jax.Array:
        readouts, outputs = self._readouts(readouts), as_input(self, "outputs", outputs)
        check_integer(self, "outputs", outputs, what="symbols")
        if tuple(outputs.shape) != tuple(readouts.shape[:-1]):
            raise ShapeError(
                f"SoftmaxEmitter {self.path}: symbols 'outputs' of shape {outputs.shape} need the "
                f"shape of 'readouts' {readouts.shape} without its last axis (nothing is broadcast)"
            )
        log_probs = jax.nn.log_softmax(readouts, axis=-1)
        idx = outputs.astype(jnp.int32)[..., None]
        return -jnp.take_along_axis(log_probs, idx, axis=-1)[..., 0]

    @application(outputs=["outputs"])
    def initial_outputs(self, batch_size: int) -> jax.Array:
        return jnp.full((batch_size,), self.initial_output, jnp.int32)

    def get_dim(self, name: str) -> int:
        if name == "outputs":
            return 0
        return super().get_dim(name)


class TrivialEmitter(AbstractEmitter):
    """Emits the readouts themselves; the cost is the squared error summed
    over the features (real-valued outputs, e.g. a regression).

    Args:
        readout_dim: features of the readouts and outputs (lazy; a
            :class:`Readout` pushes its own).
    """

    def __init__(self, readout_dim: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if readout_dim is not None:
            self.readout_dim = readout_dim

    @application(inputs=["readouts"], outputs=["outputs"])
    def emit(self, readouts: jax.Array, key: Any = None) -> jax.Array:
        return readouts

    @application(inputs=["readouts", "outputs"], outputs=["costs"])
    def cost(self, readouts: jax.Array, outputs: jax.Array) -> jax.Array:
        readouts, outputs = as_input(self, "readouts", readouts), as_input(self, "outputs", outputs)
        check_rank(self, "readouts", readouts, (1, None), f"(..., {self.readout_dim})")
        check_size(
            self, "readouts", readouts, -1, self.readout_dim, f"readout_dim={self.readout_dim}"
        )
        check_same_shape(self, ("readouts", readouts), ("outputs", outputs))
        return jnp.sum((readouts - outputs) ** 2, axis=-1)

    @application(outputs=["outputs"])
    def initial_outputs(self, batch_size: int) -> jax.Array:
        self.require("readout_dim")
        return jnp.zeros((batch_size, self.readout_dim), jnp.float32)

    def get_dim(self, name: str) -> int:
        if name == "outputs":
            return self.readout_dim
        return super().get_dim(name)


# -- feedback -------------------------------------------------------------------------


class AbstractFeedback(Brick):
    """Turns outputs into the ``feedback`` vectors read by the next step."""

    def feedback(self, outputs: jax.Array) -> jax.Array:
        raise NotImplementedError


class TrivialFeedback(AbstractFeedback):
    """The outputs themselves are the feedback (``output_dim`` features)."""

    allocation_config = ("output_dim",)
    output_dim: int | None = None

    def __init__(self, output_dim: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if output_dim is not None:
            self.output_dim = output_dim

    @application(inputs=["outputs"], outputs=["feedback"])
    def feedback(self, outputs: jax.Array) -> jax.Array:
        outputs = as_input(self, "outputs", outputs)
        check_rank(self, "outputs", outputs, (1, None), f"(..., {self.output_dim})")
        check_size(self, "outputs", outputs, -1, self.output_dim, f"output_dim={self.output_dim}")
        return outputs

    def get_dim(self, name: str) -> int:
        if name == "feedback":
            return self.output_dim
        return super().get_dim(name)


class LookupFeedback(AbstractFeedback, Initializable):
    """Embeds integer outputs with a :class:`~bricks.core.LookupTable`.

    Args:
        num_outputs: the number of symbols (lazy).
        feedback_dim: the embedding size (lazy).
    """

    allocation_config = ("num_outputs", "feedback_dim")
    num_outputs: int | None = None
    feedback_dim: int | None = None

    def __init__(
        self, num_outputs: int | None = None, feedback_dim: int | None = None, **kwargs: Any
    ) -> None:
        self.lookup = LookupTable(name="lookuptable")
        super().__init__(children=[self.lookup], **kwargs)
        if num_outputs is not None:
            self.num_outputs = num_outputs
        if feedback_dim is not None:
            self.feedback_dim = feedback_dim

    def _push_allocation_config(self) -> None:
        super()._push_allocation_config()
        self.push_to(self.lookup, "length", self.num_outputs)
        self.push_to(self.lookup, "dim", self.feedback_dim)

    @application(inputs=["outputs"], outputs=["feedback"])
    def feedback(self, outputs: jax.Array) -> jax.Array:
        outputs = as_input(self, "outputs", outputs)
        check_integer(self, "outputs", outputs, "feedback embeds symbols", what="symbols")
        return self.lookup.apply(outputs)

    def get_dim(self, name: str) -> int:
        if name == "feedback":
            return self.feedback_dim
        return super().get_dim(name)


# -- readout --------------------------------------------------------------------------


class Readout(Initializable):
    """Merges the sources (states, glimpses) into readouts and owns the
    emitter and the feedback.

    ``readouts = post_merge(merge(**sources))``: the merge is a
    :class:`~bricks.core.Merge` (one ``Linear`` without bias per source,
    summed, by default) to ``merged_dim``, the post-merge a
    :class:`~bricks.core.Bias` by default.

    Args:
        readout_dim: size of the readouts (the emitter's logits) (lazy).
        source_names: names of the states and glimpses read (e.g.
            ``["states", "weighted_averages"]``).
        emitter: default ``TrivialEmitter(readout_dim)``.
        feedback_brick: default ``TrivialFeedback(readout_dim)``.
        merge: default ``Merge(source_names, prototype=merge_prototype)``.
        merge_prototype: default ``Linear(use_bias=False)``.
        post_merge: default ``Bias(readout_dim)``; a brick with
            ``input_dim``/``output_dim`` gets ``merged_dim``/``readout_dim``.
        merged_dim: output size of the merge (default ``readout_dim``).
        source_dims: dimension per source (lazy; the generator pushes them).

    Applications: ``readout(**sources)``, ``emit(readouts, key=None)``,
    ``cost(readouts, outputs)``, ``initial_outputs(batch_size)``,
    ``feedback(outputs)``.
    """

    allocation_config = ("readout_dim", "merged_dim", "source_dims")
    readout_dim: int | None = None
    merged_dim: int | None = None
    source_dims: Sequence[int] | None = None

    def __init__(
        self,
        readout_dim: int | None = None,
        source_names: Sequence[str] = (),
        emitter: AbstractEmitter | None = None,
        feedback_brick: AbstractFeedback | None = None,
        merge: Brick | None = None,
        merge_prototype: Brick | None = None,
        post_merge: Brick | None = None,
        merged_dim: int | None = None,
        source_dims: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> None:
        if not source_names:
            raise SequenceGeneratorError(
                "Readout needs source_names: the states or glimpses the readouts are made from"
            )
        self.__dict__["source_names"] = list(source_names)
        self.emitter = emitter if emitter is not None else TrivialEmitter(name="emitter")
        self.feedback_brick = (
            feedback_brick if feedback_brick is not None else TrivialFeedback(name="feedback")
        )
        if merge is None:
            prototype = merge_prototype if merge_prototype is not None else Linear(use_bias=False)
            merge = Merge(self.source_names, prototype=prototype, name="merge")
        self.merge = merge
        self.post_merge = post_merge if post_merge is not None else Bias(name="post_merge")
        super().__init__(
            children=[self.emitter, self.feedback_brick, self.merge, self.post_merge], **kwargs
        )
        if readout_dim is not None:
            self.readout_dim = readout_dim
        if merged_dim is not None:
            self.merged_dim = merged_dim
        if source_dims is not None:
            self.source_dims = list(source_dims)

    def _push_allocation_config(self) -> None:
        super()._push_allocation_config()
        merged = self.merged_dim if self.merged_dim is not None else self.readout_dim
        if self.source_dims is not None:
            self.push_to(self.merge, "input_dims", list(self.source_dims))
        self.push_to(self.merge, "output_dim", merged)
        config = type(self.post_merge)._config_names("allocation_config")
        if "dim" in config:
            self.push_to(self.post_merge, "dim", self.readout_dim)
        elif "input_dim" in config and "output_dim" in config:
            self.push_to(self.post_merge, "input_dim", merged)
            self.push_to(self.post_merge, "output_dim", self.readout_dim)
        if "readout_dim" in type(self.emitter)._config_names("allocation_config"):
            self.push_to(self.emitter, "readout_dim", self.readout_dim)
        if "output_dim" in type(self.feedback_brick)._config_names("allocation_config"):
            self.push_to(self.feedback_brick, "output_dim", self.readout_dim)

    @application(outputs=["readouts"])
    def readout(self, **kwargs: Any) -> jax.Array:
        """Readouts ``(..., readout_dim)`` from the sources given by name
        (other keyword arguments, e.g. ``feedback``, are ignored unless they
        are sources)."""
        missing = [n for n in self.source_names if kwargs.get(n) is None]
        if missing:
            raise SequenceGeneratorError(
                f"{self.path}.readout reads sources {self.source_names} but got no value for "
                f"{missing}; it was given {sorted(kwargs)}"
            )
        merged = self.merge.apply(**{n: kwargs[n] for n in self.source_names})
        return self.post_merge.apply(merged)

    @readout.property("inputs")
    def _readout_inputs(self) -> list[str]:
        return list(self.source_names)

    @application(inputs=["readouts"], outputs=["outputs"])
    def emit(self, readouts: jax.Array, key: Any = None) -> jax.Array:
        return self.emitter.emit(readouts, key)

    @application(inputs=["readouts", "outputs"], outputs=["costs"])
    def cost(self, readouts: jax.Array, outputs: jax.Array) -> jax.Array:
        return self.emitter.cost(readouts, outputs)

    @application(outputs=["outputs"])
    def initial_outputs(self, batch_size: int) -> jax.Array:
        return self.emitter.initial_outputs(batch_size)

    @application(inputs=["outputs"], outputs=["feedback"])
    def feedback(self, outputs: jax.Array) -> jax.Array:
        return self.feedback_brick.feedback(outputs)

    def get_dim(self, name: str) -> int:
        if name == "outputs":
            return self.emitter.get_dim(name)
        if name == "feedback":
            return self.feedback_brick.get_dim(name)
        if name == "readouts":
            return self.readout_dim
        if name in self.source_names and self.source_dims is not None:
            return list(self.source_dims)[self.source_names.index(name)]
        return super().get_dim(name)


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
