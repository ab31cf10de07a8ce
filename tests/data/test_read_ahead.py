"""Reading ahead: the main loop's chunk of K batches read with one fancy index per
source into one buffer, which the training step stacks without a copy."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_fancy_index import _dataset, assert_same_batches

from bricks.data import DataStream, IndexableDataset, SequentialScheme, ShuffledScheme
from bricks.data._aligned import ALIGNMENT, gather_chunk, stack

SCHEMES = [
    lambda: SequentialScheme(23, 5),  # a short last batch of 3
    lambda: ShuffledScheme(23, 4, seed=7),
    lambda: ShuffledScheme(23, 6, seed=2, sorted_indices=True),
]


def _read(stream, ahead):
    """One epoch, ``ahead`` batches hinted before each group of ``ahead`` is taken."""
    it = stream.get_epoch_iterator(as_dict=True)
    out = []
    while True:
        it.read_ahead(ahead)
        try:
            for _ in range(ahead):
                out.append(next(it))
        except StopIteration:
            return out


@pytest.mark.parametrize("make", SCHEMES)
@pytest.mark.parametrize("ahead", [2, 3, 16])
@pytest.mark.parametrize("sources", [("x", "y", "z"), ("z", "x")])
def test_batches_orders_and_dtypes_do_not_change(make, ahead, sources):
    plain = DataStream(_dataset(), iteration_scheme=make())
    ahead_stream = DataStream(_dataset(), iteration_scheme=make())
    plain.sources = ahead_stream.sources = sources
    for _ in range(2):  # two epochs: each its own order
        want = list(plain.get_epoch_iterator(as_dict=True))
        assert_same_batches(_read(ahead_stream, ahead), want, sources)


def test_a_state_taken_inside_a_chunk_resumes_at_the_next_unserved_batch():
    def make():
        return DataStream(_dataset(), iteration_scheme=ShuffledScheme(23, 4, seed=3))

    stream = make()
    it = stream.get_epoch_iterator()
    it.read_ahead(4)  # four batches read, two served
    next(it), next(it)
    saved = json.dumps(stream.get_state())
    rest = [b[1] for b in it]
    other = make()
    other.set_state(json.loads(saved))
    again = [b[1] for b in other.get_epoch_iterator()]
    assert len(again) == len(rest) == 4
    for a, b in zip(again, rest, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_chunk_is_stacked_in_place_and_anything_else_is_copied():
    x = np.random.RandomState(1).rand(4096, 32).astype(np.float32)  # 256 KB: aligned
    order = np.random.RandomState(2).permutation(4096)[:2048]
    parts = gather_chunk(x, order, 16)
    stacked = stack(parts)
    np.testing.assert_array_equal(stacked, x[order].reshape(16, 128, 32))
    assert np.shares_memory(stacked, parts[0]) and stacked.ctypes.data % ALIGNMENT == 0
    # a later run of the same chunk: in place too
    assert np.shares_memory(stack(parts[5:9]), parts[5])
    # not one after another, or not all of the chunk's buffer: copied
    for arrays in ([parts[0], parts[2]], parts[::-1], [parts[0], parts[1].copy()]):
        out = stack(arrays)
        np.testing.assert_array_equal(out, np.stack(arrays))
        assert not any(np.shares_memory(out, a) for a in arrays)
    # consecutive slices of a user's own array are copied: JAX may alias what it is
    # given, and the user may write their array while a step reads it
    own = np.arange(24.0).reshape(6, 4)
    out = stack([own[0:2], own[2:4], own[4:6]])
    np.testing.assert_array_equal(out, own.reshape(3, 2, 4))
    assert not np.shares_memory(out, own)


def test_the_main_loop_hands_the_training_step_its_chunk_without_a_copy(monkeypatch):
    import optax

    from bricks.algorithms import GradientDescent, gradient_descent
    from bricks.core import MLP, Constant, IsotropicGaussian, Rectifier, Softmax
    from bricks.core.cost import CategoricalCrossEntropy
    from bricks.extensions import FinishAfter
    from bricks.graph import ComputationGraph
    from bricks.main_loop import MainLoop

    rng = np.random.RandomState(3)
    n, batch, k = 8 * 40 + 8, 40, 4  # 9 batches: two chunks of 4, one short chunk
    arrays = {
        "features": rng.rand(n, 300).astype(np.float32),  # 48 KB a batch
        "targets": rng.randint(0, 5, n).astype(np.int32),
    }
    mlp = MLP(
        [Rectifier(), Softmax()],
        [300, 7, 5],
        weights_init=IsotropicGaussian(0.1),
        biases_init=Constant(0.0),
    )
    mlp.initialize(seed=1)

    def cost(features, targets):
        return CategoricalCrossEntropy().apply(targets, mlp.apply(features))

    cg = ComputationGraph(cost, features=(None, 300), targets=((None,), "int32"))
    in_place = []
    real = gradient_descent.stack

    def spy(arrays):
        out = real(arrays)
        in_place.append(np.shares_memory(out, arrays[0]))
        return out

    monkeypatch.setattr(gradient_descent, "stack", spy)

    def run(steps_per_call):
        stream = DataStream(
            IndexableDataset(arrays), iteration_scheme=ShuffledScheme(n, batch, seed=4)
        )
        mlp.initialize(seed=1)
        algorithm = GradientDescent(cost=cg, step_rule=optax.adam(1e-2))
        loop = MainLoop(
            algorithm,
            stream,
            model=cg,
            steps_per_call=steps_per_call,
            extensions=[FinishAfter(after_n_epochs=2)],
        )
        loop.run()
        return algorithm.parameter_values()

    chunked = run(k)
    # per epoch: two full chunks stacked in place (two sources each), the short
    # chunk padded (copied)
    assert in_place == [True] * 4 + [False] * 2 + [True] * 4 + [False] * 2
    single = run(1)
    for path in single:
        np.testing.assert_allclose(chunked[path], single[path], rtol=1e-5, atol=1e-6)
