"""DatasetEvaluator counts examples on the batch axis, not on time.

A time-major batch ``(time, batch)`` weighted by its first axis would weigh
every batch by its length in time: the "mean over examples" would silently
be the plain average of batch means. The stream's axis labels say where the
batch axis is; without them, inputs whose first axes disagree are refused.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from bricks.errors import ExtensionError
from bricks.extensions.evaluator import DatasetEvaluator
from bricks.graph import ComputationGraph


class _Stream:
    def __init__(self, batches, axis_labels=None):
        self.batches, self.axis_labels = batches, axis_labels

    def get_epoch_iterator(self, as_dict=False):
        return iter(self.batches)


def _evaluator(**shapes):
    graph = ComputationGraph(lambda x, y: jnp.mean(x) + 0.0 * jnp.sum(y), **shapes)
    (cost,) = graph.outputs
    return DatasetEvaluator([cost], graph), graph, cost.name


def test_time_major_batches_are_weighted_by_their_batch_axis():
    rng = np.random.RandomState(0)
    # two time-major batches of 4 steps: 3 examples, then 1
    xs = [rng.rand(4, 3).astype(np.float32), rng.rand(4, 1).astype(np.float32)]
    batches = [{"x": x, "y": np.zeros(x.shape[1], np.float32)} for x in xs]
    labels = {"x": ("time", "batch"), "y": ("batch",)}
    evaluator, graph, name = _evaluator(x=(None, None), y=(None,))
    value = evaluator.evaluate(_Stream(batches, labels), graph.parameter_values())[name]
    per_example = np.concatenate([x.mean(axis=0) for x in xs])  # each example's mean over time
    np.testing.assert_allclose(value, per_example.mean(), rtol=1e-6)
    assert not np.isclose(per_example.mean(), np.mean([x.mean() for x in xs]))


def test_inputs_whose_first_axes_disagree_without_labels_are_refused():
    xs = [np.ones((4, 3), np.float32), np.ones((4, 1), np.float32)]
    batches = [{"x": x, "y": np.zeros(x.shape[1], np.float32)} for x in xs]
    evaluator, graph, _ = _evaluator(x=(None, None), y=(None,))
    with pytest.raises(ExtensionError, match="cannot tell how many examples.*'batch'"):
        evaluator.evaluate(_Stream(batches), graph.parameter_values())
