"""Small models whose costs honour masks, for the compile-count and ragged-batch tests."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bricks.algorithms import example_mean
from bricks.core import Constant, IsotropicGaussian, Linear, LookupTable, Orthogonal, Tanh
from bricks.graph import ComputationGraph
from bricks.recurrent import SimpleRecurrent

VOCAB, DIM = 12, 5


class MaskedRNN:
    """Embedding → SimpleRecurrent (masked) → Linear; per sequence, the masked sum
    over time of ``(y_t - 0.3)^2``. Sequences are time-major ``(time, batch)``."""

    def __init__(self, seed: int = 0) -> None:
        init = {"weights_init": IsotropicGaussian(0.5), "biases_init": Constant(0.1)}
        self.embed = LookupTable(VOCAB, DIM, name="embed", **init)
        self.rnn = SimpleRecurrent(
            dim=DIM, activation=Tanh(), weights_init=Orthogonal(), name="rnn"
        )
        self.out = Linear(DIM, 1, name="out", **init)
        for i, brick in enumerate((self.embed, self.rnn, self.out)):
            brick.initialize(seed=seed + i)

    def per_sequence(self, words, words_mask):
        states = self.rnn.apply(self.embed.apply(words), mask=words_mask)
        y = self.out.apply(states)[..., 0]
        return jnp.sum((y - 0.3) ** 2 * words_mask, axis=0)

    def cost(self, words, words_mask):
        return jnp.mean(self.per_sequence(words, words_mask))

    def masked_cost(self, words, words_mask, example_mask):
        return {"cost": example_mean(self.per_sequence(words, words_mask), example_mask)}

    def graph(self, batch_size: int | None = None) -> ComputationGraph:
        """The plain cost's graph; with ``batch_size`` (PadBatch's fixed size) the
        graph of the cost averaged with an ``example_mask``."""
        seq = {"words": ((None, batch_size), jnp.int32), "words_mask": (None, batch_size)}
        if batch_size is not None:
            return ComputationGraph(self.masked_cost, **seq, example_mask=(batch_size,))
        return ComputationGraph(self.cost, **seq)


_JITTED: dict = {}


def value_and_gradients(graph, params, batch):
    """The graph's cost and its gradients with respect to every parameter (jax.grad)."""
    inputs = {n: batch[n] for n in graph.inputs}
    fn = _JITTED.get(id(graph))
    if fn is None:
        fn = _JITTED[id(graph)] = jax.jit(
            jax.value_and_grad(lambda p, x: graph.evaluate(p, x)[0][0])
        )
    cost, grads = fn({k: jnp.asarray(v) for k, v in params.items()}, inputs)
    return float(cost), {k: np.asarray(v) for k, v in grads.items()}


def time_major(words):
    """``(time, batch)`` ids and mask of a list of id sequences, padded to the longest."""
    length = max(len(w) for w in words)
    ids = np.zeros((length, len(words)), np.int32)
    mask = np.zeros((length, len(words)), np.float32)
    for i, w in enumerate(words):
        ids[: len(w), i] = w
        mask[: len(w), i] = 1
    return {"words": ids, "words_mask": mask}


def random_words(n: int, low: int, high: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.RandomState(seed)
    return [rng.randint(1, VOCAB, size=rng.randint(low, high + 1)) for _ in range(n)]
