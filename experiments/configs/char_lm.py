"""A character-level language model: embeddings, a stacked LSTM, a softmax readout.

The default experiment. It trains offline on text files that ship with
Python (the standard library's ``LICENSE.txt`` and module sources, found
by :func:`bricks.data.default_corpus_files`), or on your own files::

    python -m experiments.run experiments/configs/char_lm.py
    python -m experiments.run experiments/configs/char_lm.py --set corpus=my_book.txt

The text is cut into windows of ``seq_len`` characters; each window is
trained to predict its next characters (truncated back-propagation through
time, windows shuffled). At the end the model writes ``sample_length``
characters, starting from ``prime``, to ``sample.txt`` in the run
directory and prints them. Costs are in nats per character
(``bits = nats / ln 2``).

The console shows a progress bar (batches, rate, ETA, epoch, the latest
costs) and one line per report (every ``monitor_every`` batches) with the
training and validation costs; ``--set print_blocks=True`` adds Blocks'
status blocks. The live plot gets the training cost every ``plot_every``
batches, so its first points come within seconds of the first step.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bricks.algorithms import Adam, CompositeRule, GradientDescent, StepClipping
from bricks.core import (
    CategoricalCrossEntropy,
    Constant,
    IsotropicGaussian,
    Linear,
    LookupTable,
    apply_with,
)
from bricks.data import (
    DataStream,
    IndexableDataset,
    SequentialScheme,
    ShuffledScheme,
    Vocabulary,
    default_corpus_files,
)
from bricks.errors import ExperimentError
from bricks.extensions import (
    DataStreamMonitoring,
    FinishAfter,
    Printing,
    ProgressBar,
    Timing,
    TrainingDataMonitoring,
)
from bricks.graph import ComputationGraph
from bricks.main_loop import MainLoop
from bricks.recurrent import LSTM, RecurrentStack
from experiments.common import checkpoint_and_plot


def get_config() -> dict[str, Any]:
    return {
        "seed": 1,
        # data
        "corpus": None,  # a text file, a directory of .txt files, or a list; None: Python's own
        "corpus_files": 12,  # how many of Python's files when corpus is None
        "max_chars": 400_000,
        "valid_fraction": 0.05,
        "seq_len": 64,
        "batch_size": 32,
        # model
        "embed_dim": 32,
        "hidden_dim": 128,
        "num_layers": 2,
        # training
        "learning_rate": 3e-3,
        "clip": 1.0,
        "num_batches": 1500,
        "monitor_every": 100,  # validation cost and a report line every this many batches
        "plot_every": 10,  # the training cost, to the live plot (cheap: read once per call)
        "steps_per_call": 10,
        "checkpoint_every_n_batches": 500,
        "plot": True,  # write <run-dir-name>.html at the end
        "plot_server": True,  # and serve the live plot while training
        "print_blocks": False,  # also print Blocks' status blocks (Printing) at each report
        # sampling at the end
        "sample_length": 400,
        "temperature": 0.7,
        "prime": "The ",
    }


def _corpus_files(corpus: Any, n_default: int) -> list[Path]:
    if corpus is None:
        return list(default_corpus_files(n_default))
    items = [corpus] if isinstance(corpus, str) else list(corpus)
    files: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            files += sorted(p for p in path.rglob("*.txt") if p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            raise ExperimentError(f"corpus: {item!r} is neither a text file nor a directory")
    if not files:
        raise ExperimentError(f"corpus: no .txt files found in {corpus!r}")
    return files


def load_text(config: dict[str, Any]) -> str:
    """The corpus as one string, at most ``max_chars`` characters."""
    parts, total = [], 0
    for path in _corpus_files(config["corpus"], config["corpus_files"]):
        text = path.read_text(encoding="utf8", errors="replace")
        parts.append(text)
        total += len(text)
        if total >= config["max_chars"]:
            break
    return "".join(parts)[: config["max_chars"]]


def _windows(ids: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    n = (len(ids) - 1) // seq_len
    if n < 2:
        raise ExperimentError(
            f"corpus too short: {len(ids)} characters make fewer than 2 windows of "
            f"seq_len={seq_len}"
        )
    chars = ids[: n * seq_len].reshape(n, seq_len)
    targets = ids[1 : n * seq_len + 1].reshape(n, seq_len)
    return chars, targets


class CharLM:
    """The bricks of the model and its pure functions (cost, sampling)."""

    def __init__(self, vocab_size: int, config: dict[str, Any]) -> None:
        w = IsotropicGaussian(0.08)
        self.lookup = LookupTable(vocab_size, config["embed_dim"], weights_init=w, name="embed")
        self.stack = RecurrentStack(
            [LSTM(dim=config["hidden_dim"]) for _ in range(config["num_layers"])],
            weights_init=w,
            biases_init=Constant(0.0),
            name="stack",
        )
        self.to_stack = Linear(
            config["embed_dim"],
            self.stack.get_dim("inputs"),
            weights_init=w,
            biases_init=Constant(0.0),
            name="to_stack",
        )
        self.readout = Linear(
            config["hidden_dim"],
            vocab_size,
            weights_init=w,
            biases_init=Constant(0.0),
            name="readout",
        )
        for i, brick in enumerate((self.lookup, self.stack, self.to_stack, self.readout)):
            brick.initialize(seed=config["seed"] * 100 + i)
        top = config["num_layers"] - 1
        self.top = RecurrentStack.suffix("states", top)

    def logits(self, chars: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """``chars`` ``(time, batch)`` → logits ``(time, batch, vocab)`` and last states."""
        outputs = self.stack.apply(self.to_stack.apply(self.lookup.apply(chars)))
        named = dict(zip(self.stack.apply.outputs, outputs, strict=True))
        return self.readout.apply(named[self.top]), {k: v[-1] for k, v in named.items()}

    def cost(self, chars: jax.Array, targets: jax.Array) -> jax.Array:
        """Mean cross-entropy (nats per character) of batch-major ``(batch, time)`` windows."""
        logits, _ = self.logits(chars.T)
        return CategoricalCrossEntropy(from_logits=True).apply(targets.T, logits)

    def sampler(self, length: int, temperature: float) -> Any:
        """A jitted ``f(params, key, prime_ids) -> ids`` writing ``length`` characters."""

        def sample(params: dict, key: jax.Array, prime: jax.Array) -> jax.Array:
            def body(carry: tuple, key: jax.Array) -> tuple:
                states, logits = carry
                char = jax.random.categorical(key, logits / temperature)
                inputs = self.to_stack.apply(self.lookup.apply(char))
                new = self.stack.apply(inputs, iterate=False, **states)
                states = dict(zip(self.stack.apply.outputs, new, strict=True))
                return (states, self.readout.apply(states[self.top])), char

            def run() -> jax.Array:
                logits, states = self.logits(prime[:, None])
                carry = (states, logits[-1])
                _, chars = jax.lax.scan(body, carry, jax.random.split(key, length))
                return chars[:, 0]

            return apply_with(params, run)

        return jax.jit(sample)


def build(config: dict[str, Any], run_dir: str) -> MainLoop:
    text = load_text(config)
    vocab = Vocabulary.build([text], level="character")
    vocab.save(os.path.join(run_dir, "vocabulary.json"))
    chars, targets = _windows(np.asarray(vocab.encode(text), np.int32), config["seq_len"])
    n_valid = max(1, int(len(chars) * config["valid_fraction"]))
    n_train = len(chars) - n_valid
    if n_train < 1:
        raise ExperimentError(f"corpus too short: {len(chars)} windows leave none to train on")
    batch = min(config["batch_size"], n_train)
    train = DataStream(
        IndexableDataset({"chars": chars[:n_train], "targets": targets[:n_train]}),
        iteration_scheme=ShuffledScheme(n_train, batch, seed=config["seed"]),
    )
    valid = DataStream(
        IndexableDataset({"chars": chars[n_train:], "targets": targets[n_train:]}),
        iteration_scheme=SequentialScheme(n_valid, max(batch, 64)),
    )
    model = CharLM(len(vocab), config)
    seq = (None, config["seq_len"])
    cg = ComputationGraph(model.cost, chars=(seq, jnp.int32), targets=(seq, jnp.int32))
    rule = CompositeRule([StepClipping(config["clip"]), Adam(config["learning_rate"])])
    algorithm = GradientDescent(cost=cg, step_rule=rule, seed=config["seed"])
    every = config["monitor_every"]
    # the training cost feeds the live plot every few batches and every report
    train_every = math.gcd(int(config["plot_every"]) or every, every)
    main_loop = MainLoop(
        algorithm,
        train,
        model=cg,
        extensions=[
            Timing(),
            FinishAfter(after_n_batches=config["num_batches"]),
            TrainingDataMonitoring(["cost"], every_n_batches=train_every),
            DataStreamMonitoring(["cost"], valid, every_n_batches=every, after_training=True),
            *checkpoint_and_plot(
                {**config, "plot_every_n_batches": train_every},
                run_dir,
                [["train_cost", "valid_cost"]],
            ),
            ProgressBar(report_every_n_batches=every, records=["train_cost", "valid_cost"]),
            *([Printing(every_n_batches=every)] if config["print_blocks"] else []),
        ],
        log_path=os.path.join(run_dir, "log.jsonl"),
        steps_per_call=config["steps_per_call"],
    )
    main_loop.char_lm = model  # for finish()
    main_loop.vocabulary = vocab
    return main_loop


def finish(main_loop: MainLoop, config: dict[str, Any], run_dir: str) -> dict[str, Any]:
    """Sample text from the trained model; write ``sample.txt`` and print it."""
    model: CharLM = main_loop.char_lm
    vocab: Vocabulary = main_loop.vocabulary
    prime = vocab.encode(config["prime"]) or [vocab.index[vocab.bos_token]]
    sample = model.sampler(config["sample_length"], config["temperature"])
    params = main_loop.algorithm.parameter_values()
    ids = sample(params, jax.random.key(config["seed"]), jnp.asarray(prime, jnp.int32))
    text = config["prime"] + vocab.decode(np.asarray(ids).tolist())
    Path(run_dir, "sample.txt").write_text(text + "\n", encoding="utf8")
    print(f"\n--- sample (temperature {config['temperature']}) ---\n{text}\n---", flush=True)
    results: dict[str, Any] = {"sample_file": "sample.txt", "sample_start": text[:120]}
    valid = main_loop.log.last_value("valid_cost")
    if valid is not None:
        results["valid_bits_per_char"] = round(valid / math.log(2), 4)
    return results
