"""An epoch of bucketed sequence batches compiles a bounded number of step programs,
and the bucketed results equal the unbucketed ones (the mask is honoured)."""

import math

import numpy as np
import pytest

from bricks.algorithms import CompileCounter, GradientDescent, Scale
from bricks.data import (
    Batch,
    ConstantScheme,
    DataStream,
    IterableDataset,
    PadBatch,
    Padding,
    TimeMajor,
)
from bricks.errors import ExampleMaskError
from bricks.graph import ComputationGraph

from .masked_models import MaskedRNN, random_words, time_major, value_and_gradients

LOW, HIGH, BATCH = 3, 40, 4


def padded_epoch(words, buckets):
    stream = Batch(DataStream(IterableDataset({"words": words})), ConstantScheme(BATCH))
    return list(TimeMajor(Padding(stream, buckets=buckets)).get_epoch_iterator(as_dict=True))


def monitored_step(algorithm, slot, batch):
    """One training step; the cost and gradients it computed (read back)."""
    algorithm.process_batch(batch)
    values = algorithm.read_monitor(slot)
    grads = {path: values[v.name] for path, v in algorithm.gradients.items()}
    return values["cost"], grads


@pytest.mark.slow
def test_an_epoch_of_pow2_buckets_compiles_at_most_log2_programs_with_unchanged_results():
    words = random_words(24, LOW, HIGH, seed=1)
    bucketed, exact = padded_epoch(words, "pow2"), padded_epoch(words, None)
    bound = math.ceil(math.log2(HIGH / LOW)) + 1
    assert len({b["words"].shape for b in exact}) > bound  # unbucketed: more programs

    model = MaskedRNN()
    graph = model.graph()
    algorithm = GradientDescent(cost=graph, step_rule=Scale(0.05))
    slot = algorithm.add_monitor(["cost", *algorithm.gradients.values()])
    with CompileCounter() as counter:
        for b, e in zip(bucketed, exact, strict=True):
            params = algorithm.parameter_values()
            cost, grads = monitored_step(algorithm, slot, b)
            want_cost, want_grads = value_and_gradients(graph, params, e)
            np.testing.assert_allclose(cost, want_cost, rtol=1e-5)
            for path, g in want_grads.items():
                np.testing.assert_allclose(grads[path], g, rtol=1e-4, atol=1e-6, err_msg=path)
    lengths = {b["words"].shape[0] for b in bucketed}
    assert lengths <= {4, 8, 16, 32, 64}
    assert algorithm.compilations == len(lengths) <= bound
    assert counter.count("single") == algorithm.compilations


@pytest.mark.slow
def test_a_bucketed_batch_equals_its_examples_run_one_by_one_unpadded():
    words = random_words(4, LOW, 12, seed=2)
    (batch,) = padded_epoch(words, [16])
    model = MaskedRNN()
    graph = model.graph()
    params = {k: np.asarray(v) for k, v in graph.parameter_values().items()}
    cost, grads = value_and_gradients(graph, params, batch)
    alone = [value_and_gradients(graph, params, time_major([w])) for w in words]
    np.testing.assert_allclose(cost, np.mean([c for c, _ in alone]), rtol=1e-5)
    for path in grads:
        mean = np.mean([g[path] for _, g in alone], axis=0)
        np.testing.assert_allclose(grads[path], mean, rtol=1e-4, atol=1e-6, err_msg=path)


def test_compile_counter_counts_programs_by_name_and_stops():
    import jax
    import jax.numpy as jnp

    def triple(x):
        return 3 * x

    f = jax.jit(triple)
    counter = CompileCounter()
    with counter:
        f(jnp.ones(2))
        f(jnp.ones(2))
        f(jnp.ones(5))
    assert counter.count("triple") == 2 and counter.total >= 2
    f(jnp.ones(7))  # after the block: not counted
    assert counter.count("triple") == 2 and "triple" in repr(counter)


@pytest.mark.slow
def test_buckets_and_a_padded_last_batch_together_time_major():
    words = random_words(10, LOW, 12, seed=3)
    stream = Batch(DataStream(IterableDataset({"words": words})), ConstantScheme(BATCH))
    stream = TimeMajor(Padding(PadBatch(stream), mask_sources=["words"], buckets="pow2"))
    batches = list(stream.get_epoch_iterator(as_dict=True))
    model = MaskedRNN()
    algorithm = GradientDescent(cost=model.graph(batch_size=BATCH), step_rule=Scale(0.05))
    slot = algorithm.add_monitor(["cost", *algorithm.gradients.values()])
    for batch in batches:
        params = algorithm.parameter_values()
        cost, grads = monitored_step(algorithm, slot, batch)
    # the last batch: 2 real words (+ 2 repeats), against the 2 words alone, unpadded
    want_cost, want_grads = value_and_gradients(model.graph(), params, time_major(words[8:]))
    np.testing.assert_allclose(cost, want_cost, rtol=1e-5)
    for path, g in want_grads.items():
        np.testing.assert_allclose(grads[path], g, rtol=1e-4, atol=1e-6, err_msg=path)
    lengths = {b["words"].shape[0] for b in batches}
    assert algorithm.compilations == len(lengths) <= math.ceil(math.log2(12 / LOW)) + 1


def test_a_free_batch_size_beside_time_major_sequences_says_to_declare_it():
    with pytest.raises(ExampleMaskError, match="declare it"):
        ComputationGraph(
            MaskedRNN().masked_cost,
            words=((None, None), "int32"),
            words_mask=(None, None),
            example_mask=(None,),
        )


class _Listed:
    """The bucketed batches as a stream (same order every epoch)."""

    def __init__(self, batches):
        self.batches = batches

    def get_epoch_iterator(self, as_dict=True):
        return iter(self.batches)


@pytest.mark.slow
def test_steps_per_call_over_bucketed_batches_runs_each_run_of_one_shape_in_a_scan():
    """A chunk of mixed bucket shapes: consecutive batches of one shape run in that shape's
    (masked) scan, in order: no single-step program, at most two programs a shape, and
    the log and parameters those of steps_per_call=1."""
    from bricks.extensions import FinishAfter, TrainingDataMonitoring
    from bricks.main_loop import MainLoop

    words = random_words(40, LOW, HIGH, seed=4)
    batches = padded_epoch(words, "pow2")
    shapes = [b["words"].shape for b in batches]
    assert len(set(shapes)) >= 3 and any(
        shapes[i] == shapes[i + 1] for i in range(len(shapes) - 1)
    )  # runs longer than one batch, and several shapes in a chunk

    def run(k):
        algorithm = GradientDescent(cost=MaskedRNN().graph(), step_rule=Scale(0.05))
        loop = MainLoop(
            algorithm,
            _Listed(batches),
            extensions=[
                TrainingDataMonitoring(["cost"], every_n_batches=4),
                FinishAfter(after_n_epochs=1),
            ],
            steps_per_call=k,
        )
        loop.run()
        return loop, algorithm

    one, one_alg = run(1)
    with CompileCounter() as counter:
        fused, fused_alg = run(4)
    assert counter.count("single") == 0  # never one step at a time
    assert fused_alg.compilations <= 2 * len(set(shapes))
    for i, row in one.log.get_state()["rows"].items():
        for name, value in row.items():
            if name.startswith("train_"):
                np.testing.assert_allclose(
                    fused.log[i][name], value, rtol=1e-4, err_msg=f"{i} {name}"
                )
    for path, value in one_alg.parameter_values().items():
        np.testing.assert_allclose(
            fused_alg.parameter_values()[path], value, rtol=1e-4, atol=1e-6, err_msg=path
        )
    assert int(fused_alg._state["step"]) == len(batches)
