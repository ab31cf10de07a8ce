"""mnist runs tiny through the runner, on the offline fallback when MNIST is not converted."""

from __future__ import annotations

import numpy as np

from ._helpers import REPO, check_run_dir, env, run


def test_mnist_tiny_uses_a_labelled_fallback(tmp_path):
    run_dir = tmp_path / "mnist"
    e = env()
    env_data = tmp_path / "no-data"  # no converted MNIST here
    proc = run_with_env(run_dir, e | {"BRICKS_DATA_PATH": str(env_data)})
    assert "OFFLINE FALLBACK" in proc.stdout
    summary = check_run_dir(run_dir)
    assert summary["epochs_done"] == 1
    assert "OFFLINE FALLBACK" in summary["results"]["data"]
    records = summary["final_records"]
    assert {"train_cost", "test_cost", "train_error_rate", "test_error_rate"} <= set(records)
    assert any(p.name.startswith("ckpt-") for p in (run_dir / "checkpoints").iterdir())
    html = run_dir / "mnist.html"
    assert html.is_file() and "train_error_rate" in html.read_text(encoding="utf8")


def run_with_env(run_dir, e):
    import subprocess

    from ._helpers import runner_command

    cmd = runner_command(
        "mnist",
        run_dir,
        "--set",
        "epochs=1",
        "--set",
        "num_examples=64",
        "--set",
        "batch_size=32",
        "--set",
        "plot_server=False",
    )
    proc = subprocess.run(cmd, cwd=REPO, env=e, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_real_mnist_is_required_when_asked_for(tmp_path):
    proc = run("mnist", tmp_path / "r", "--set", "dataset=mnist", check=False)
    if proc.returncode == 0:  # this machine has converted MNIST
        return
    assert proc.returncode == 2 and "python -m bricks.data convert mnist" in proc.stderr


def test_synthetic_digits_are_deterministic():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "_mnist_cfg", REPO / "experiments/configs/mnist.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    x1, y1 = module.synthetic_digits(50, seed=3)
    x2, y2 = module.synthetic_digits(50, seed=3)
    assert x1.shape == (50, 64) and x1.dtype == np.float32 and 0 <= x1.min() <= x1.max() <= 1
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert set(y1.tolist()) <= set(range(10))
