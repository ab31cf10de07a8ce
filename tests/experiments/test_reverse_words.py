"""reverse_words runs tiny through the runner and reverses words from the command line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ._helpers import REPO, check_run_dir, env, run

TINY = [
    "--set",
    "num_batches=4",
    "--set",
    "dim=8",
    "--set",
    "embed_dim=4",
    "--set",
    "max_length=5",
    "--set",
    "valid_words=16",
    "--set",
    "corpus_files=3",
    "--set",
    "batch_size=8",
    "--set",
    "monitor_every=2",
    "--set",
    "steps_per_call=2",
    "--set",
    "beam_size=2",
    "--set",
    "plot=False",
]


@pytest.mark.slow
def test_reverse_words_tiny_then_reverse_from_the_command_line(tmp_path):
    run_dir = tmp_path / "rw"
    proc = run("reverse_words", run_dir, *TINY, timeout=240)
    summary = check_run_dir(run_dir)
    assert summary["iterations_done"] == 4
    assert {"train_cost", "valid_cost"} <= set(summary["final_records"])
    results = summary["results"]
    assert 0.0 <= results["valid_accuracy"] <= 1.0 and results["valid_words"] == 16
    assert "held-out words reversed exactly" in proc.stdout
    assert (run_dir / "params.npz").is_file()

    cli = subprocess.run(
        [sys.executable, "-m", "experiments.configs.reverse_words", str(run_dir), "Hello", "ab"],
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    pairs = [line.split(" ->") for line in cli.stdout.splitlines() if " ->" in line]
    assert [word for word, _ in pairs] == ["hello", "ab"]
    assert all(set(guess.strip()) <= set("abcdefghijklmnopqrstuvwxyz") for _, guess in pairs)

    bad = subprocess.run(
        [sys.executable, "-m", "experiments.configs.reverse_words", str(run_dir), "toolongword"],
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "letters a-z" in bad.stderr
