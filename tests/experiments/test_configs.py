"""Every other example config runs tiny through the runner and leaves a complete run directory."""

from __future__ import annotations

import pytest

from ._helpers import check_run_dir, run

NO_PLOT = ["--set", "plot_server=False"]

TINY = {
    "markov_chain": [
        "--set",
        "epochs=2",
        "--set",
        "num_sequences=40",
        "--set",
        "seq_len=20",
        "--set",
        "batch_size=20",
        "--set",
        "check_sequences=50",
    ],
    "parity": ["--set", "epochs=2", "--set", "num_examples=64", "--set", "batch_size=32"],
    "spiral_bn": ["--set", "epochs=1", "--set", "num_examples=200", "--set", "hidden_dims=[16]"],
    "lenet": [
        "--set",
        "epochs=1",
        "--set",
        "num_examples=64",
        "--set",
        "num_filters=[4, 4]",
        "--set",
        "hidden_dim=16",
        "--set",
        "batch_size=32",
    ],
    "custom_rnn": [
        "--set",
        "epochs=2",
        "--set",
        "num_examples=64",
        "--set",
        "seq_len=10",
        "--set",
        "dim=8",
        "--set",
        "batch_size=32",
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(TINY))
def test_config_runs_tiny(config, tmp_path):
    run_dir = tmp_path / config
    run(config, run_dir, *TINY[config], *NO_PLOT)
    summary = check_run_dir(run_dir)
    assert any(p.name.startswith("ckpt-") for p in (run_dir / "checkpoints").iterdir())
    assert (run_dir / f"{config}.html").is_file()
    records = summary["final_records"]
    assert any(k.endswith("_cost") for k in records), records
    if config == "markov_chain":
        learned = summary["results"]["learned_transitions"]
        assert len(learned) == 3 and all(abs(sum(row) - 1) < 1e-3 for row in learned)
    if config == "spiral_bn":
        assert {"bn_valid_error_rate", "plain_valid_error_rate"} <= set(summary["results"])


@pytest.mark.slow
def test_batch_norm_beats_the_plain_mlp_after_two_epochs(tmp_path):
    run_dir = tmp_path / "spiral"
    run("spiral_bn", run_dir, "--set", "plot=False")
    results = check_run_dir(run_dir)["results"]
    assert results["bn_beats_plain"], results
