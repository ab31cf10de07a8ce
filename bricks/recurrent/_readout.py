"""The readout of a sequence generator: merges states and glimpses into
readouts, and owns the emitter and the feedback."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax

from bricks.core.application import application
from bricks.core.brick import Brick, Initializable
from bricks.core.parallel import Merge
from bricks.core.simple import Bias, Linear
from bricks.errors import SequenceGeneratorError
from bricks.recurrent._emitters import AbstractEmitter, TrivialEmitter
from bricks.recurrent._feedback import AbstractFeedback, TrivialFeedback

__all__ = ["Readout"]


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
