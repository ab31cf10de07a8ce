""":class:`BeamSearch`: the most likely sequences of a :class:`SequenceGenerator`.

The search is one compiled ``lax.while_loop`` of at most ``max_length``
steps on ``batch * beam_size`` rows: at each step every live beam is
extended by every symbol, the ``beam_size`` cheapest extensions per batch
element are kept, and a beam that has emitted ``eos`` is carried unchanged
(its only extension is ``eos`` again, at no cost). The loop stops as soon as
every beam of every batch element is finished, as Blocks' search does; the
steps it skips are filled with what running them would have written
(``eos``, the beam itself as parent, mask 0 for every beam of finite cost),
so the result is bitwise the one of a full ``max_length`` scan
(``early_stop=False`` runs that scan). The sequences are then read back
from the back-pointers.

The search is a closed computation: it runs under its own ``jax.jit`` with
no :class:`~bricks.core.tracing.Recorder`, so annotations of the generator's
step (inside the loop) are never recorded into, or intervened on by, a graph
that happens to be tracing around :meth:`BeamSearch.search`; their values
would be tracers of the search's own jit and could not leave it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bricks.core.tracing import Frame, current_frame, scan, use_frame
from bricks.errors import SequenceGeneratorError
from bricks.recurrent._sequence_generator import SequenceGenerator, SoftmaxEmitter

__all__ = ["BeamSearch", "BeamSearchResult"]


class BeamSearchResult(NamedTuple):
    """What :meth:`BeamSearch.search` returns, best beam first.

    Attributes:
        outputs: ``(max_length, batch, beam_size)`` int32 symbols (``eos``
            after the end).
        mask: ``(max_length, batch, beam_size)`` float32, 1 up to and
            including the ``eos`` step.
        costs: ``(batch, beam_size)``, the negative log-likelihood of each
            sequence (the sum of its masked ``cost_matrix``), ascending.
        finished: ``(batch, beam_size)`` bool, whether the beam emitted ``eos``.
    """

    outputs: jax.Array
    mask: jax.Array
    costs: jax.Array
    finished: jax.Array

    def as_lists(self) -> tuple[list[list[list[int]]], list[list[float]]]:
        """Blocks' default result: per batch element, per beam (best first),
        the output symbols up to and including ``eos`` as a list, and the costs.

        >>> import numpy as np
        >>> r = BeamSearchResult(np.array([[[3]], [[0]], [[0]]]), np.array([[[1.0]], [[1]], [[0]]]),
        ...                      np.array([[0.5]]), np.array([[True]]))
        >>> r.as_lists()
        ([[[3, 0]]], [[0.5]])
        """
        outputs, mask = np.asarray(self.outputs), np.asarray(self.mask)
        costs = np.asarray(self.costs)
        lengths = mask.sum(axis=0).astype(int)  # (batch, beam)
        sequences = [
            [outputs[: lengths[b, j], b, j].tolist() for j in range(outputs.shape[2])]
            for b in range(outputs.shape[1])
        ]
        return sequences, costs.tolist()


def _repeat(x: jax.Array, times: int, axis: int) -> jax.Array:
    return jnp.repeat(x, times, axis=axis)


def _closed(params: dict[str, Any], fn: Any, *args: Any) -> Any:
    """``fn(*args)`` reading parameters from ``params``, with no recorder:
    unlike :func:`~bricks.core.tracing.apply_with`, an outer recorder is not
    passed on (see the module docstring)."""
    extra = current_frame().extra
    with use_frame(Frame(params=params, recorder=None, extra=extra)):
        return fn(*args)


class BeamSearch:
    """Beam search over the outputs of a :class:`SequenceGenerator` with a
    :class:`SoftmaxEmitter`.

    Args:
        beam_size: how many hypotheses are kept per batch element.
        generator: the generator (initialized; its current parameters are
            used unless ``params`` is passed to :meth:`search`).
        early_stop: stop as soon as every beam of every batch element has
            emitted ``eos`` (a ``lax.while_loop``); the result is bitwise
            the one of the full search. ``False`` always runs all
            ``max_length`` steps in a ``lax.scan``, which, unlike the while
            loop, can be differentiated in reverse mode.

    Finished sequences rank before unfinished ones (those that reached
    ``max_length`` without ``eos``); within each group by cost. With
    ``beam_size=1`` the search is greedy decoding.

    >>> import jax.numpy as jnp
    >>> from bricks.core import IsotropicGaussian, Constant
    >>> from bricks.recurrent import (SequenceGenerator, Readout, SoftmaxEmitter,
    ...                               LookupFeedback, SimpleRecurrent)
    >>> gen = SequenceGenerator(
    ...     Readout(readout_dim=5, source_names=["states"], emitter=SoftmaxEmitter(),
    ...             feedback_brick=LookupFeedback(5, 4)),
    ...     SimpleRecurrent(dim=3), weights_init=IsotropicGaussian(0.5),
    ...     biases_init=Constant(0.0))
    >>> gen.initialize(seed=0)
    >>> result = BeamSearch(3, gen).search(max_length=6, eos=0, batch_size=2)
    >>> result.outputs.shape, result.costs.shape
    ((6, 2, 3), (2, 3))
    """

    def __init__(
        self, beam_size: int, generator: SequenceGenerator, early_stop: bool = True
    ) -> None:
        if not isinstance(beam_size, (int, np.integer)):
            raise SequenceGeneratorError(
                f"BeamSearch(beam_size, generator) takes the number of beams first, got "
                f"{type(beam_size).__name__}; Blocks' BeamSearch(samples) is "
                "BeamSearch(beam_size, generator) here, and search() takes the contexts "
                "(attended=...) by name"
            )
        if int(beam_size) < 1:
            raise SequenceGeneratorError(f"BeamSearch needs beam_size >= 1, got {beam_size}")
        if not isinstance(generator.readout.emitter, SoftmaxEmitter):
            raise SequenceGeneratorError(
                f"BeamSearch needs a generator whose emitter is a SoftmaxEmitter; "
                f"{generator.path} has {type(generator.readout.emitter).__name__}"
            )
        self.beam_size = int(beam_size)
        self.generator = generator
        self.early_stop = bool(early_stop)
        self._compiled: dict[tuple, Any] = {}

    def search(
        self,
        max_length: int,
        eos: int,
        batch_size: int | None = None,
        params: dict[str, Any] | None = None,
        ignore_first_eol: bool = False,
        **contexts: Any,
    ) -> BeamSearchResult:
        """Search, compiled once per ``(max_length, eos, batch_size)`` and context shapes.

        Args:
            max_length: the number of steps (the length of the outputs; with
                ``early_stop`` the loop ends earlier once all beams are finished).
            eos: the end-of-sequence symbol.
            batch_size: needed only when there are no contexts (else read
                from axis 1 of the first, time-major context).
            params: parameter values (default: the generator's own).
            ignore_first_eol: as in Blocks, an ``eos`` emitted at the first
                step does not end a beam (for models whose sequences start
                with the end-of-sequence symbol).
            **contexts: e.g. ``attended`` ``(time, batch, dim)`` and
                ``attended_mask`` ``(time, batch)``, and optionally initial
                states of the generator's transition, batch first
                (``states`` ``(batch, dim)``); each is repeated for the beams.
        """
        contexts = {k: jnp.asarray(v) for k, v in contexts.items() if v is not None}
        axes = {n: self._batch_axis(n, v) for n, v in contexts.items()}
        if batch_size is None:
            if not contexts:
                raise SequenceGeneratorError(
                    "BeamSearch.search got no contexts, so it needs batch_size=..."
                )
            first = next(iter(contexts))
            batch_size = int(contexts[first].shape[axes[first]])
        for n, v in contexts.items():
            if v.shape[axes[n]] != batch_size:
                raise SequenceGeneratorError(
                    f"BeamSearch.search: {n!r} has shape {tuple(v.shape)}, whose batch axis "
                    f"{axes[n]} should be {batch_size} (the batch size); states are "
                    "(batch, ...), other contexts time-major (time, batch, ...)"
                )
        if params is None:
            params = self.generator.get_parameter_values()
        signature = (int(max_length), int(eos), int(batch_size), bool(ignore_first_eol))
        fn = self._compiled.get(signature)
        if fn is None:
            fn = jax.jit(lambda p, c: _closed(p, self._search, *signature[:3], c, signature[3]))
            self._compiled[signature] = fn
        return fn(params, contexts)

    @staticmethod
    def _smallest(matrix: Any, k: int) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        """The ``k`` smallest entries of ``matrix``, ascending: their indices
        (one array per axis, as ``numpy.unravel_index``) and their values."""
        flat = np.asarray(matrix).ravel()
        if flat.size > k:
            candidates = np.argpartition(flat, k - 1)[:k]
        else:
            candidates = np.arange(flat.size)
        order = candidates[np.argsort(flat[candidates], kind="stable")]
        return np.unravel_index(order, np.shape(matrix)), flat[order]

    def _batch_axis(self, name: str, value: jax.Array) -> int:
        """Axis of ``value`` that holds the batch: 0 for states, 1 for time-major contexts."""
        if name in self.generator.state_names or value.ndim < 2:
            return 0
        return 1

    def _search(
        self,
        max_length: int,
        eos: int,
        batch_size: int,
        contexts: dict[str, Any],
        ignore_first_eol: bool = False,
    ) -> BeamSearchResult:
        gen, k = self.generator, self.beam_size
        rows = batch_size * k
        # row b * k + j is beam j of batch element b; contexts are time-major
        tiled = {n: _repeat(v, k, axis=self._batch_axis(n, v)) for n, v in contexts.items()}
        states, step_contexts, previous = gen.prepare(rows, **tiled)
        costs = jnp.where(jnp.arange(k)[None] == 0, 0.0, jnp.inf) * jnp.ones((batch_size, 1))
        finished = jnp.zeros((batch_size, k), bool)
        batch_index = jnp.arange(batch_size)[:, None]
        vocab = int(gen.readout.readout_dim)
        only_eos = jnp.where(jnp.arange(vocab) == eos, 0.0, jnp.inf)

        def select(
            costs: jax.Array, finished: jax.Array, step_costs: jax.Array, first: Any = False
        ) -> tuple:
            """The ``k`` cheapest extensions; a finished beam's only one is ``eos``
            (at the ``first`` step with ``ignore_first_eol``, ``eos`` ends nothing)."""
            step_costs = jnp.where(finished[..., None], only_eos[None, None], step_costs)
            candidates = (costs[..., None] + step_costs).reshape(batch_size, k * vocab)
            _, best = jax.lax.top_k(-candidates, k)
            new_costs = jnp.take_along_axis(candidates, best, axis=1)
            parent = best // vocab
            symbol = (best % vocab).astype(jnp.int32)
            was_finished = finished[batch_index, parent]
            mask = jnp.logical_not(was_finished).astype(jnp.float32)
            ends = symbol == eos
            if ignore_first_eol:
                ends = jnp.logical_and(ends, jnp.logical_not(first))
            new_finished = jnp.logical_or(was_finished, ends)
            return new_costs, new_finished, (symbol, parent, mask)

        def step(carry: tuple) -> tuple[tuple, tuple]:
            states, previous, costs, finished, t = carry
            readouts, glimpses = gen.step_readouts(previous, states, step_contexts)
            log_probs = gen.readout.emitter.log_probabilities(readouts)
            step_costs = -log_probs.reshape(batch_size, k, vocab)
            new_costs, new_finished, (symbol, parent, mask) = select(
                costs, finished, step_costs, t == 0
            )
            rows_from = (batch_index * k + parent).reshape(rows)

            def pick(x: jax.Array) -> jax.Array:
                return jnp.take(x, rows_from, axis=0)

            states, glimpses = jax.tree.map(pick, (states, glimpses))
            outputs = symbol.reshape(rows)
            new_states = gen.step_states(outputs, states, glimpses, step_contexts)
            return (new_states, outputs, new_costs, new_finished, t + 1), (symbol, parent, mask)

        init = (states, previous, costs, finished, jnp.int32(0))
        if self.early_stop:
            costs, finished, (symbols, parents, masks) = self._until_finished(
                step, select, init, max_length, batch_size, vocab
            )
        else:
            (_, _, costs, finished, _), (symbols, parents, masks) = scan(
                lambda carry, _: step(carry),
                init,
                None,
                length=max_length,
                name=f"{gen.path}.beam_search.scan",
            )

        # follow the back-pointers from the last step to the first
        def back(beam: jax.Array, step: tuple) -> tuple[jax.Array, tuple]:
            symbol, parent, mask = step
            picked = (symbol[batch_index, beam], mask[batch_index, beam])
            return parent[batch_index, beam], picked

        last = jnp.broadcast_to(jnp.arange(k)[None], (batch_size, k))
        _, (outputs, mask) = jax.lax.scan(back, last, (symbols, parents, masks), reverse=True)
        # finished beams first, each group by cost (top_k already sorted by cost); a beam
        # with an infinite cost (fewer hypotheses than beams) is never "finished"
        finished = jnp.logical_and(finished, jnp.isfinite(costs))
        rank = jnp.argsort(jnp.where(finished, 0, 1), axis=1, stable=True)
        outputs = jnp.take_along_axis(outputs, rank[None], axis=2)
        mask = jnp.take_along_axis(mask, rank[None], axis=2)
        costs = jnp.take_along_axis(costs, rank, axis=1)
        finished = jnp.take_along_axis(finished, rank, axis=1)
        return BeamSearchResult(outputs, mask, costs, finished)

    def _until_finished(
        self,
        step: Any,
        select: Any,
        init: tuple,
        max_length: int,
        batch_size: int,
        vocab: int,
    ) -> tuple[jax.Array, jax.Array, tuple[jax.Array, jax.Array, jax.Array]]:
        """``step`` in a ``lax.while_loop`` until every beam is finished or
        ``max_length`` steps have run; the steps never run are filled with
        what the full scan writes there.

        Once every beam is finished the search is at a fixed point: each
        extension is ``eos`` at no cost, so ``select`` returns the same costs
        (``c + 0.0 == c``; ``top_k`` puts equal values lower index first, so
        the beams keep their order) and the same ``(symbol, parent, mask)``
        at every later step, whatever the states. That step is computed
        once, by the same ``select`` on the final costs, and written into the
        unrun steps: for a beam of finite cost it is ``eos``, the beam itself,
        mask 0; a beam of infinite cost (fewer hypotheses than beams, e.g.
        when the model forbids symbols with ``-inf`` logits) gets what
        ``top_k`` gives it in the full scan, another beam's forbidden
        extension, so the fill is not hard-coded.
        """
        k = self.beam_size
        shape = (max_length, batch_size, k)
        buffers = (
            jnp.zeros(shape, jnp.int32),
            jnp.zeros(shape, jnp.int32),
            jnp.zeros(shape, jnp.float32),
        )

        def running(carry: tuple) -> jax.Array:
            t, (_, _, _, finished, _), _ = carry
            return jnp.logical_and(t < max_length, jnp.logical_not(jnp.all(finished)))

        def body(carry: tuple) -> tuple:
            t, inner, buffers = carry
            inner, outputs = step(inner)
            buffers = tuple(b.at[t].set(o) for b, o in zip(buffers, outputs, strict=True))
            return t + 1, inner, buffers

        steps, (_, _, costs, finished, _), buffers = jax.lax.while_loop(
            running, body, (jnp.int32(0), init, buffers)
        )
        all_finished = jnp.ones_like(finished)
        _, _, after = select(costs, all_finished, jnp.zeros((batch_size, k, vocab)))
        ran = (jnp.arange(max_length) < steps)[:, None, None]
        filled = tuple(jnp.where(ran, b, a[None]) for b, a in zip(buffers, after, strict=True))
        return costs, finished, filled
