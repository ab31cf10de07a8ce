"""A tiny training run that the exact-resume tests start in subprocesses.

    python tests/checkpoint/_train.py OUT CKPT_DIR [--cut K --how HOW] [--resume] [--every N]

A 4-16-3 MLP with dropout, Adam with a decaying learning rate, a shuffled
stream of 48 examples in batches of 8 (6 batches an epoch), monitoring every
5 batches and every epoch, 200 steps in all. ``--how`` says how the run is
stopped at iteration K:

* ``stop``: an extension requests the finish after batch K (clean stop);
* ``term``: SIGTERM arrives while batch K runs (the loop finishes it, saves);
* ``kill``: SIGKILL right after a checkpoint written after batch K;
* ``fault:<step>``: the checkpoint save after batch K is SIGKILLed at that
  write step (``BRICKS_CHECKPOINT_FAULT``); needs ``--every`` so that an
  older checkpoint exists.

At the end OUT/result.npz holds the final arrays of ``main_loop.get_state()``
and OUT/log.json the log rows; the exit code is ``exit_status(loop)``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")

import numpy as np  # noqa: E402

from bricks.algorithms import Adam, GradientDescent  # noqa: E402
from bricks.checkpoint import exit_status  # noqa: E402
from bricks.core import (  # noqa: E402
    MLP,
    OUTPUT,
    CategoricalCrossEntropy,
    Constant,
    IsotropicGaussian,
    Softmax,
    Tanh,
)
from bricks.data import DataStream, IndexableDataset, ShuffledScheme  # noqa: E402
from bricks.extensions import (  # noqa: E402
    FinishAfter,
    SharedVariableModifier,
    SimpleExtension,
    TrainingDataMonitoring,
)
from bricks.extensions.checkpoint import Checkpoint  # noqa: E402
from bricks.graph import ComputationGraph, VariableFilter, apply_dropout  # noqa: E402
from bricks.main_loop import MainLoop  # noqa: E402

TOTAL_STEPS = 200
EXAMPLES, BATCH = 48, 8


class Cut(SimpleExtension):
    """Stops the run at iteration ``k`` in the way ``how`` says."""

    def __init__(self, k: int | None, how: str | None) -> None:
        super().__init__(name="Cut", before_batch=True, after_batch=True)
        self.k, self.how = k, how

    def do(self, which_callback: str, *args: object) -> None:
        if self.k is None:
            return
        done = self.main_loop.status["iterations_done"]
        if which_callback == "before_batch" and done == self.k - 1:
            if self.how == "term":
                os.kill(os.getpid(), signal.SIGTERM)  # arrives while batch k runs
            elif self.how.startswith("fault:"):
                os.environ["BRICKS_CHECKPOINT_FAULT"] = self.how.split(":", 1)[1]
        if which_callback == "after_batch" and done == self.k:
            if self.how == "stop":
                self.main_loop.status["training_finish_requested"] = True
            elif self.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)


def build(ckpt_dir: str, cut: int | None, how: str | None, every: int | None) -> MainLoop:
    mlp = MLP(
        [Tanh(), Softmax()],
        [4, 16, 3],
        weights_init=IsotropicGaussian(0.3),
        biases_init=Constant(0.0),
    )
    mlp.initialize(seed=3)

    def cost(features, targets):
        return CategoricalCrossEntropy().apply(targets, mlp.apply(features))

    cg = ComputationGraph(cost, features=(None, 4), targets=((None,), "int32"))
    hidden = VariableFilter(bricks=[Tanh], roles=[OUTPUT])(cg.variables)
    cg = apply_dropout(cg, hidden, 0.5)
    rng = np.random.RandomState(0)
    x = rng.randn(EXAMPLES, 4).astype("float32")
    y = ((x[:, 0] > 0).astype("int32") + (x[:, 1] > 0.5).astype("int32")).astype("int32")
    stream = DataStream(
        IndexableDataset({"features": x, "targets": y}),
        iteration_scheme=ShuffledScheme(EXAMPLES, BATCH, seed=7),
    )
    step_rule = Adam(learning_rate=0.01)
    algorithm = GradientDescent(cost=cg, step_rule=step_rule, seed=11)
    conditions: dict[str, object] = {}
    if every:
        conditions["every_n_batches"] = every
    checkpoint = Checkpoint(ckpt_dir, **conditions)
    if how in ("kill",) or (how or "").startswith("fault:"):
        checkpoint.add_condition(
            ["after_batch"], predicate=lambda log: log.status["iterations_done"] == cut
        )
    return MainLoop(
        algorithm,
        stream,
        model=cg,
        extensions=[
            TrainingDataMonitoring(
                ["cost", algorithm.total_gradient_norm], every_n_batches=5, name="every5"
            ),
            TrainingDataMonitoring(["cost"], prefix="epoch", after_epoch=True, name="epochs"),
            SharedVariableModifier(
                step_rule.learning_rate, lambda iterations: 0.01 * 0.995**iterations
            ),
            FinishAfter(after_n_batches=TOTAL_STEPS),
            checkpoint,
            Cut(cut, how),
        ],
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("ckpt")
    parser.add_argument("--cut", type=int)
    parser.add_argument("--how")
    parser.add_argument("--every", type=int)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    loop = build(args.ckpt, args.cut, args.how, args.every)
    loop.run(resume=args.ckpt if args.resume else None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    state, arrays = loop.get_state()
    np.savez(out / "result.npz", **{f"a{i}": np.asarray(v) for i, v in enumerate(arrays.values())})
    (out / "log.json").write_text(
        json.dumps(
            {"names": list(arrays), "rows": state["log"]["rows"], "stream": state["data_stream"]}
        )
    )
    return exit_status(loop)


if __name__ == "__main__":
    sys.exit(main())
