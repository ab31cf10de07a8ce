"""Blocks' Markov chain example: a SequenceGenerator learns a 3-state chain.

Sequences are drawn from the chain with transition matrix ``TRANSITIONS``
(rows: from, columns: to). A ``SequenceGenerator`` (SimpleRecurrent
transition, softmax readout, lookup feedback) is trained on them by
maximum likelihood; at the end it generates sequences, and the transition
frequencies it produces are compared with the true matrix (in
``summary.json`` under ``results``).

    python -m experiments.run experiments/configs/markov_chain.py
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bricks.algorithms import Adam, GradientDescent
from bricks.core import Constant, IsotropicGaussian, Tanh, apply_with
from bricks.data import DataStream, IndexableDataset, ShuffledScheme
from bricks.extensions import FinishAfter, Printing, Timing, TrainingDataMonitoring
from bricks.graph import ComputationGraph
from bricks.main_loop import MainLoop
from bricks.recurrent import (
    LookupFeedback,
    Readout,
    SequenceGenerator,
    SimpleRecurrent,
    SoftmaxEmitter,
)
from experiments.common import checkpoint_and_plot

#: Blocks' chain: P(next = j | current = i) = TRANSITIONS[i, j].
TRANSITIONS = np.array([[0.1, 0.5, 0.4], [0.1, 0.9, 0.0], [0.3, 0.3, 0.4]])


def get_config() -> dict[str, Any]:
    return {
        "seed": 1,
        "num_sequences": 1000,
        "seq_len": 50,
        "batch_size": 50,
        "dim": 10,
        "feedback_dim": 8,
        "learning_rate": 0.01,
        "epochs": 15,
        "checkpoint_every_n_epochs": 5,
        "plot": True,  # write <run-dir-name>.html at the end
        "plot_server": True,  # and serve the live plot while training
        "check_sequences": 200,  # generated at the end to count transitions
    }


def equilibrium() -> np.ndarray:
    """The chain's stationary distribution."""
    values, vectors = np.linalg.eig(TRANSITIONS.T)
    pi = np.real(vectors[:, np.argmax(np.real(values))])
    return pi / pi.sum()


def sample_chain(n: int, length: int, seed: int) -> np.ndarray:
    """``n`` sequences ``(n, length)`` of states, the first from the equilibrium."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, length), np.int32)
    out[:, 0] = rng.choice(3, size=n, p=equilibrium())
    cumulative = TRANSITIONS.cumsum(axis=1)
    for t in range(1, length):
        u = rng.random(n)[:, None]
        out[:, t] = (u > cumulative[out[:, t - 1]]).sum(axis=1)
    return out


def transition_frequencies(sequences: np.ndarray) -> np.ndarray:
    """Row-normalized counts of ``i -> j`` in batch-major ``(n, length)`` sequences."""
    counts = np.zeros((3, 3))
    np.add.at(counts, (sequences[:, :-1].ravel(), sequences[:, 1:].ravel()), 1)
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)


def build(config: dict[str, Any], run_dir: str) -> MainLoop:
    generator = SequenceGenerator(
        Readout(
            readout_dim=3,
            source_names=["states"],
            emitter=SoftmaxEmitter(),
            feedback_brick=LookupFeedback(3, config["feedback_dim"]),
        ),
        SimpleRecurrent(dim=config["dim"], activation=Tanh()),
        weights_init=IsotropicGaussian(0.1),
        biases_init=Constant(0.0),
        name="generator",
    )
    generator.initialize(seed=config["seed"])

    def cost(sequences):
        return generator.cost_matrix(sequences.T).mean()  # nats per step

    data = sample_chain(config["num_sequences"], config["seq_len"], config["seed"])
    cg = ComputationGraph(cost, sequences=((None, config["seq_len"]), jnp.int32))
    algorithm = GradientDescent(
        cost=cg, step_rule=Adam(config["learning_rate"]), seed=config["seed"]
    )
    stream = DataStream(
        IndexableDataset({"sequences": data}),
        iteration_scheme=ShuffledScheme(len(data), config["batch_size"], seed=config["seed"]),
    )
    main_loop = MainLoop(
        algorithm,
        stream,
        model=cg,
        extensions=[
            Timing(),
            FinishAfter(after_n_epochs=config["epochs"]),
            TrainingDataMonitoring(["cost"], after_epoch=True),
            *checkpoint_and_plot(config, run_dir, [["train_cost"]]),
            Printing(),
        ],
        log_path=os.path.join(run_dir, "log.jsonl"),
    )
    main_loop.generator = generator
    return main_loop


def finish(main_loop: MainLoop, config: dict[str, Any], run_dir: str) -> dict[str, Any]:
    """Generate sequences and compare their transition frequencies with the chain."""
    generator = main_loop.generator
    n, steps = config["check_sequences"], config["seq_len"]
    sample = jax.jit(lambda p, key: apply_with(p, generator.generate, steps, n, key))
    params = main_loop.algorithm.parameter_values()
    outputs = np.asarray(sample(params, jax.random.key(config["seed"]))["outputs"]).T
    learned = transition_frequencies(outputs)
    error = float(np.abs(learned - TRANSITIONS).max())
    entropy = -np.sum(
        equilibrium()[:, None] * TRANSITIONS * np.log(np.where(TRANSITIONS > 0, TRANSITIONS, 1))
    )
    print(
        "true transition matrix:\n",
        TRANSITIONS.round(3),
        f"\nlearned (from {n} generated sequences):\n",
        learned.round(3),
        f"\nmax abs difference {error:.3f}",
        flush=True,
    )
    return {
        "true_transitions": TRANSITIONS.tolist(),
        "learned_transitions": learned.round(4).tolist(),
        "max_abs_difference": round(error, 4),
        "entropy_rate_nats": round(float(entropy), 4),
    }
