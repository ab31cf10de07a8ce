"""The runner's command line: overrides, run directories, errors, --help."""

from __future__ import annotations

import json

import pytest

from bricks.errors import ExperimentError, OverrideError
from experiments import run as runner
from experiments._overrides import apply_overrides, parse_value

from ._helpers import check_run_dir, read_json, run

CONFIG = {
    "seed": 1,
    "epochs": 2,
    "lr": 0.1,
    "name": "x",
    "corpus": None,
    "sizes": [1, 2],
    "plot": True,
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5", 5),
        ("0.5", 0.5),
        ("'a b'", "a b"),
        ("[1, 2]", [1, 2]),
        ("None", None),
        ("tanh", "tanh"),
        ("data/a.txt", "data/a.txt"),
        ("/tmp/x-1.txt", "/tmp/x-1.txt"),
        ("os.system", "os.system"),
    ],
)
def test_values_are_literals_or_bare_words(text, expected):
    assert parse_value(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('id')",
        "open('x').read()",
        "exec(1)",
        "a b",
        "1 + x",
        "[x for x in ()]",
        "lambda: 0",
        "'unclosed",
    ],
)
def test_code_is_refused(text):
    with pytest.raises(OverrideError, match="never evaluated as code"):
        apply_overrides(CONFIG, [f"name={text}"])


def test_overrides_fit_the_default_types():
    out = apply_overrides(
        CONFIG, ["epochs=5", "lr=1", "name=12", "corpus=a.txt", "sizes=(3, 4)", "plot=false"]
    )
    assert out == {
        **CONFIG,
        "epochs": 5,
        "lr": 1.0,
        "name": "12",
        "corpus": "a.txt",
        "sizes": [3, 4],
        "plot": False,
    }
    assert apply_overrides(CONFIG, ["sizes=7"])["sizes"] == [7]
    assert CONFIG["epochs"] == 2  # the base is not modified
    with pytest.raises(OverrideError, match="expected a int"):
        apply_overrides(CONFIG, ["epochs=0.5"])
    with pytest.raises(OverrideError, match="expected a float"):
        apply_overrides(CONFIG, ["lr=fast"])
    with pytest.raises(OverrideError, match="key=value"):
        apply_overrides(CONFIG, ["epochs"])


def test_unknown_key_says_did_you_mean():
    with pytest.raises(OverrideError, match="did you mean 'epochs'"):
        apply_overrides(CONFIG, ["epoch=3"])


def test_seed_and_plain_config():
    assert runner.resolve_config(CONFIG, seed=7)["seed"] == 7
    with pytest.raises(OverrideError, match="no 'seed'"):
        runner.resolve_config({"a": 1}, seed=7)
    with pytest.raises(OverrideError, match="plain data"):
        runner.resolve_config({"a": object()})
    with pytest.raises(ExperimentError, match="must return a dict"):
        runner.resolve_config([1])  # type: ignore[arg-type]


def test_help_warns_that_configs_are_code(capsys):
    with pytest.raises(SystemExit) as exit_info:
        runner.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "is code" in text and "privileges" in text and "--resume" in text


def test_config_errors(tmp_path, capsys):
    missing = tmp_path / "nope.py"
    assert runner.main([str(missing)]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.py"
    bad.write_text("def get_config():\n    return {}\n")
    assert runner.main([str(bad)]) == 2
    assert "must define build()" in capsys.readouterr().err


def test_hostile_override_is_refused_before_anything_runs(tmp_path):
    proc = run("sqrt", tmp_path / "r", "--set", "seed=__import__('os').system('id')", check=False)
    assert proc.returncode == 2
    assert "never evaluated as code" in proc.stderr
    assert "uid=" not in proc.stdout + proc.stderr
    assert not (tmp_path / "r" / "summary.json").exists()


def test_unknown_key_from_the_command_line(tmp_path):
    proc = run("sqrt", tmp_path / "r", "--set", "num_batch=3", check=False)
    assert proc.returncode == 2 and "did you mean 'num_batches'" in proc.stderr


def test_default_run_dir_and_refusing_to_mix_runs(tmp_path):
    run_dir = runner.new_run_dir("cfg", tmp_path)
    again = runner.new_run_dir("cfg", tmp_path)
    assert run_dir != again and run_dir.name.startswith("cfg-") and run_dir.is_dir()
    (again / "config.json").write_text("{}")
    assert runner.newest_run_dir("cfg", tmp_path) == again
    with pytest.raises(ExperimentError, match="no run of 'other'"):
        runner.newest_run_dir("other", tmp_path)


def test_sqrt_tiny(tmp_path):
    run_dir = tmp_path / "sqrt"
    proc = run("sqrt", run_dir, "--set", "num_batches=20", "--seed", "3", "--set", "plot=False")
    assert "finished after 20 iterations" in proc.stdout
    summary = check_run_dir(run_dir)
    assert summary["iterations_done"] == 20
    assert "test_cost" in summary["final_records"] and "train_cost" in summary["final_records"]
    config = read_json(run_dir / "config.json")
    assert config["seed"] == 3 and config["num_batches"] == 20 and config["plot"] is False
    again = run("sqrt", run_dir, check=False)
    assert again.returncode == 2 and "already holds a run" in again.stderr
    assert json.loads((run_dir / "log.jsonl").read_text().splitlines()[-1])
