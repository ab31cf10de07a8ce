"""char_lm runs tiny through the runner, on Python's own text or a user's file."""

from __future__ import annotations

import pytest

from ._helpers import check_run_dir, read_json, run

TINY = [
    "--set",
    "num_batches=4",
    "--set",
    "hidden_dim=16",
    "--set",
    "embed_dim=8",
    "--set",
    "seq_len=16",
    "--set",
    "max_chars=4000",
    "--set",
    "monitor_every=2",
    "--set",
    "sample_length=30",
    "--set",
    "batch_size=8",
    "--set",
    "corpus_files=1",
    "--set",
    "plot=False",
    "--set",
    "steps_per_call=2",
]


@pytest.mark.slow
def test_char_lm_tiny_samples_text(tmp_path):
    run_dir = tmp_path / "lm"
    proc = run("char_lm", run_dir, *TINY)
    summary = check_run_dir(run_dir)
    assert summary["iterations_done"] == 4
    assert {"train_cost", "valid_cost"} <= set(summary["final_records"])
    sample = (run_dir / "sample.txt").read_text(encoding="utf8")
    assert sample.startswith("The ") and len(sample.rstrip("\n")) >= 30
    assert "--- sample" in proc.stdout and sample.strip()[:20] in proc.stdout
    assert summary["results"]["valid_bits_per_char"] > 0
    assert read_json(run_dir / "vocabulary.json")["level"] == "character"


@pytest.mark.slow
def test_char_lm_on_a_user_corpus(tmp_path):
    corpus = tmp_path / "book.txt"
    corpus.write_text("abcab cabca bcabc " * 60, encoding="utf8")
    run_dir = tmp_path / "lm"
    run("char_lm", run_dir, *TINY, "--set", f"corpus={corpus}", "--set", "prime=ab")
    assert read_json(run_dir / "config.json")["corpus"] == str(corpus)
    tokens = read_json(run_dir / "vocabulary.json")["tokens"]
    assert set(tokens) >= {"a", "b", "c", " "} and len(tokens) == 7  # 3 specials
    sample = (run_dir / "sample.txt").read_text(encoding="utf8")
    assert sample.startswith("ab") and set(sample.strip()) <= {"a", "b", "c", " ", "<", ">"} | set(
        "UNKS/"
    )
