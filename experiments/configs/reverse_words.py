"""Blocks' reverse_words example: an attention model learns to spell words backwards.

A bidirectional GRU encoder reads a word (lower-case letters, then an
end-of-word symbol); a GRU decoder with content attention over the
encoder's states (:class:`~bricks.recurrent.SequenceGenerator`) writes the
word reversed, then the end symbol. The words come from an offline corpus
(Python's own ``LICENSE.txt`` and module sources, or your text files);
held-out words are words never seen in training. At the end the model
reverses the held-out words with :class:`~bricks.recurrent.BeamSearch` and
reports the exact-match accuracy (``results.valid_accuracy`` in
``summary.json``); the parameters go to ``params.npz`` in the run directory.

Every batch has one shape: words are padded to ``max_length + 1``, and with
``pad_last_batch`` (the default) the ragged last batch of an epoch is padded
to full size by :class:`~bricks.data.PadBatch`, whose ``example_mask`` the
cost averages with, so training compiles one step program (and the scan of
``steps_per_call`` steps) and validation one monitoring program; the counts
are ``results.compilations`` in ``summary.json``.

    python -m experiments.run experiments/configs/reverse_words.py
    python -m experiments.run experiments/configs/reverse_words.py --set num_batches=1500

Reverse words typed on the command line with a trained run::

    python -m experiments.configs.reverse_words runs/reverse_words-<stamp> hello world
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bricks.algorithms import (
    Adam,
    CompileCounter,
    CompositeRule,
    GradientDescent,
    StepClipping,
    example_mean,
)
from bricks.core import Constant, Fork, IsotropicGaussian, LookupTable, Orthogonal, apply_with
from bricks.data import (
    DataStream,
    IndexableDataset,
    PadBatch,
    SequentialScheme,
    ShuffledScheme,
    default_corpus_files,
)
from bricks.errors import ExperimentError
from bricks.extensions import (
    DataStreamMonitoring,
    FinishAfter,
    Printing,
    Timing,
    TrainingDataMonitoring,
)
from bricks.graph import ComputationGraph
from bricks.main_loop import MainLoop
from bricks.recurrent import (
    BeamSearch,
    Bidirectional,
    GatedRecurrent,
    LookupFeedback,
    Readout,
    SequenceContentAttention,
    SequenceGenerator,
    SoftmaxEmitter,
)
from experiments.common import checkpoint_and_plot

EOS = 0  # the end-of-word symbol; letters are 1..26
ALPHABET = "abcdefghijklmnopqrstuvwxyz"
VOCAB = len(ALPHABET) + 1
PARAMS_FILE = "params.npz"


def get_config() -> dict[str, Any]:
    return {
        "seed": 1,
        # data
        "corpus": None,  # a text file or a list of them; None: Python's own files
        "corpus_files": 30,
        "min_length": 2,
        "max_length": 8,  # longest word, in letters
        "valid_words": 300,  # held-out words (never trained on)
        "batch_size": 64,
        "pad_last_batch": True,  # no second program for an epoch's short last batch
        # model
        "embed_dim": 24,
        "dim": 64,
        # training
        "learning_rate": 4e-3,
        "clip": 1.0,
        "num_batches": 500,  # 100% of 300 held-out words reversed (beam 5), ~1.5 min on 2 CPUs
        "monitor_every": 100,
        "steps_per_call": 10,
        "checkpoint_every_n_epochs": 0,
        "plot": False,
        # evaluation
        "beam_size": 5,
    }


def encode(word: str) -> list[int]:
    return [ALPHABET.index(c) + 1 for c in word]


def decode(ids: Any) -> str:
    out = []
    for i in ids:
        if int(i) == EOS:
            break
        out.append(ALPHABET[int(i) - 1])
    return "".join(out)


def load_words(config: dict[str, Any]) -> list[str]:
    """Distinct lower-case words of the corpus, in a seeded random order."""
    corpus = config["corpus"]
    if corpus is None:
        files = list(default_corpus_files(config["corpus_files"]))
    else:
        files = [Path(p) for p in ([corpus] if isinstance(corpus, str) else corpus)]
    words: set[str] = set()
    for path in files:
        try:
            text = Path(path).read_text(encoding="utf8", errors="replace").lower()
        except OSError as e:
            raise ExperimentError(f"corpus: cannot read {os.fspath(path)!r}: {e}") from e
        words.update(re.findall(r"[a-z]+", text))
    lo, hi = config["min_length"], config["max_length"]
    chosen = sorted(w for w in words if lo <= len(w) <= hi)
    if len(chosen) <= 2 * config["valid_words"]:
        raise ExperimentError(
            f"corpus: only {len(chosen)} distinct words of {lo}..{hi} letters; need more than "
            f"2 * valid_words = {2 * config['valid_words']}"
        )
    np.random.RandomState(config["seed"]).shuffle(chosen)
    return chosen


def pad(words: list[str], length: int, reverse: bool) -> tuple[np.ndarray, np.ndarray]:
    """Batch-major ids ``(n, length)`` (the word, or its reverse, then EOS) and masks."""
    ids = np.full((len(words), length), EOS, np.int32)
    mask = np.zeros((len(words), length), np.float32)
    for i, w in enumerate(words):
        seq = encode(w[::-1] if reverse else w) + [EOS]
        ids[i, : len(seq)] = seq
        mask[i, : len(seq)] = 1
    return ids, mask


class WordReverser:
    """The encoder and the attention decoder, and their pure functions."""

    def __init__(self, config: dict[str, Any]) -> None:
        dim, embed = config["dim"], config["embed_dim"]
        init = {"weights_init": IsotropicGaussian(0.1), "biases_init": Constant(0.0)}
        self.embed = LookupTable(VOCAB, embed, name="embed", **init)
        self.fork = Fork(
            ["inputs", "gate_inputs"],
            embed,
            {"inputs": dim, "gate_inputs": 2 * dim},
            name="fork",
            **init,
        )
        self.encoder = Bidirectional(
            GatedRecurrent(dim=dim), name="encoder", weights_init=Orthogonal()
        )
        self.generator = SequenceGenerator(
            Readout(
                readout_dim=VOCAB,
                source_names=["states", "feedback", "weighted_averages"],
                emitter=SoftmaxEmitter(),
                feedback_brick=LookupFeedback(VOCAB, embed),
            ),
            GatedRecurrent(dim=dim),
            attention=SequenceContentAttention(["states"], attended_dim=2 * dim, match_dim=dim),
            name="generator",
            **init,
        )
        for i, brick in enumerate((self.embed, self.fork, self.encoder, self.generator)):
            brick.initialize(seed=config["seed"] * 100 + i)
        self.bricks = (self.embed, self.fork, self.encoder, self.generator)

    def parameter_values(self) -> dict[str, jax.Array]:
        return {k: v for b in self.bricks for k, v in b.get_parameter_values().items()}

    def set_parameter_values(self, values: dict[str, Any]) -> None:
        for brick in self.bricks:
            brick.set_parameter_values(
                {
                    k: v
                    for k, v in values.items()
                    if k.startswith(brick.path + "/") or k.startswith(brick.path + ".")
                }
            )

    def encode(self, words: jax.Array, words_mask: jax.Array) -> jax.Array:
        """Time-major ``(time, batch)`` ids → attended ``(time, batch, 2 dim)``."""
        inputs, gate_inputs = self.fork.apply(self.embed.apply(words))
        return self.encoder.apply(inputs=inputs, gate_inputs=gate_inputs, mask=words_mask)

    def cost(self, words, words_mask, targets, targets_mask) -> jax.Array:
        """Mean over the batch of each reversed word's negative log-likelihood."""
        words, words_mask = words.T, words_mask.T
        attended = self.encode(words, words_mask)
        return self.generator.cost(
            targets.T, targets_mask.T, attended=attended, attended_mask=words_mask
        )

    def masked_cost(self, words, words_mask, targets, targets_mask, example_mask):
        """:meth:`cost` over the real examples of a batch padded by PadBatch."""
        words, words_mask = words.T, words_mask.T
        attended = self.encode(words, words_mask)
        costs = self.generator.cost_matrix(
            targets.T, targets_mask.T, attended=attended, attended_mask=words_mask
        )
        return {"cost": example_mean(jnp.sum(costs, axis=0), example_mask)}

    def reverse(
        self, params: dict[str, Any], words: list[str], beam_size: int, max_length: int
    ) -> list[str]:
        """Reverse ``words`` with beam search (the best finished hypothesis)."""
        ids, mask = pad(words, max_length + 1, reverse=False)
        attended = jax.jit(lambda p, w, m: apply_with(p, self.encode, w, m))(params, ids.T, mask.T)
        search = BeamSearch(beam_size, self.generator)
        result = search.search(
            max_length + 1, EOS, params=params, attended=attended, attended_mask=jnp.asarray(mask.T)
        )
        best = np.asarray(result.outputs[:, :, 0]).T
        return [decode(row) for row in best]


def _stream(words: list[str], config: dict[str, Any], shuffle: bool) -> DataStream:
    length = config["max_length"] + 1
    src, src_mask = pad(words, length, reverse=False)
    tgt, tgt_mask = pad(words, length, reverse=True)
    dataset = IndexableDataset(
        {"words": src, "words_mask": src_mask, "targets": tgt, "targets_mask": tgt_mask}
    )
    n, size = len(words), min(config["batch_size"], len(words))
    scheme = ShuffledScheme(n, size, seed=config["seed"]) if shuffle else SequentialScheme(n, size)
    stream = DataStream(dataset, iteration_scheme=scheme)
    return PadBatch(stream) if config["pad_last_batch"] else stream


def build(config: dict[str, Any], run_dir: str) -> MainLoop:
    words = load_words(config)
    n_valid = config["valid_words"]
    valid_words, train_words = words[:n_valid], words[n_valid:]
    model = WordReverser(config)
    seq = (None, config["max_length"] + 1)
    inputs = {
        "words": (seq, jnp.int32),
        "words_mask": seq,
        "targets": (seq, jnp.int32),
        "targets_mask": seq,
    }
    if config["pad_last_batch"]:
        cg = ComputationGraph(model.masked_cost, **inputs, example_mask=(None,))
    else:
        cg = ComputationGraph(model.cost, **inputs)
    rule = CompositeRule([StepClipping(config["clip"]), Adam(config["learning_rate"])])
    algorithm = GradientDescent(cost=cg, step_rule=rule, seed=config["seed"])
    every = config["monitor_every"]
    valid = DataStreamMonitoring(
        ["cost"],
        _stream(valid_words, config, shuffle=False),
        every_n_batches=every,
        after_training=True,
    )
    main_loop = MainLoop(
        algorithm,
        _stream(train_words, config, shuffle=True),
        model=cg,
        extensions=[
            Timing(),
            FinishAfter(after_n_batches=config["num_batches"]),
            TrainingDataMonitoring(["cost"], every_n_batches=every),
            valid,
            *checkpoint_and_plot(config, run_dir, [["train_cost", "valid_cost"]]),
            Printing(every_n_batches=every * 5),
        ],
        log_path=os.path.join(run_dir, "log.jsonl"),
        steps_per_call=config["steps_per_call"],
    )
    main_loop.reverser = model  # for finish()
    main_loop.valid_words = valid_words
    main_loop.n_train_words = len(train_words)
    main_loop.valid_monitor = valid
    main_loop.compile_counter = CompileCounter().start()  # read in finish()
    return main_loop


def finish(main_loop: MainLoop, config: dict[str, Any], run_dir: str) -> dict[str, Any]:
    """Reverse the held-out words with beam search; save the parameters."""
    model: WordReverser = main_loop.reverser
    main_loop.compile_counter.stop()
    compilations = {
        "train_step": main_loop.algorithm.compilations,
        "valid": main_loop.valid_monitor.compilations,
        "all_programs": main_loop.compile_counter.total,  # also eager ops' small ones
    }
    params = {k: np.asarray(v) for k, v in main_loop.algorithm.parameter_values().items()}
    np.savez(os.path.join(run_dir, PARAMS_FILE), **params)
    words = main_loop.valid_words
    guesses = model.reverse(params, words, config["beam_size"], config["max_length"])
    right = [g == w[::-1] for g, w in zip(guesses, words, strict=True)]
    accuracy = float(np.mean(right))
    examples = [f"{w} -> {g}" for w, g in zip(words[:8], guesses[:8], strict=True)]
    print(
        f"\nheld-out words reversed exactly: {accuracy:.1%} of {len(words)} "
        f"(beam {config['beam_size']}); e.g. " + ", ".join(examples),
        flush=True,
    )
    return {
        "valid_accuracy": round(accuracy, 4),
        "valid_words": len(words),
        "train_words": main_loop.n_train_words,
        "examples": examples,
        "compilations": compilations,
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m experiments.configs.reverse_words RUN_DIR WORD...``: reverse words."""
    parser = argparse.ArgumentParser(
        prog="python -m experiments.configs.reverse_words",
        description="Reverse words with a trained run's model.",
    )
    parser.add_argument("run_dir", help="a finished reverse_words run directory")
    parser.add_argument("words", nargs="+", help="words to reverse (letters a-z)")
    parser.add_argument("--beam-size", type=int, default=None)
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    try:
        config = json.loads((run_dir / "config.json").read_text(encoding="utf8"))
        with np.load(run_dir / PARAMS_FILE, allow_pickle=False) as data:
            params = {k: jnp.asarray(data[k]) for k in data.files}
    except OSError as e:
        print(f"error: {run_dir} is not a finished reverse_words run ({e})", file=sys.stderr)
        return 2
    words = [w.lower() for w in args.words]
    bad = [w for w in words if not re.fullmatch(r"[a-z]+", w) or len(w) > config["max_length"]]
    if bad:
        print(f"error: {bad}: words must be 1..{config['max_length']} letters a-z", file=sys.stderr)
        return 2
    model = WordReverser(config)
    beam = args.beam_size or config["beam_size"]
    for word, guess in zip(
        words, model.reverse(params, words, beam, config["max_length"]), strict=True
    ):
        print(f"{word} -> {guess}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
