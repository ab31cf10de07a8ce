"""Run an experiment config: ``python -m experiments.run CONFIG.py [options]``.

A config is a Python file exporting two functions:

* ``get_config() -> dict`` -- the hyperparameters as plain values (numbers,
  strings, lists, dicts, None). ``--set key=value`` overrides them and
  ``--seed N`` sets ``config["seed"]``.
* ``build(config, run_dir) -> MainLoop`` -- the model, data and extensions,
  writing everything it produces (checkpoints, plots, samples) into
  ``run_dir``.

and optionally ``finish(main_loop, config, run_dir) -> dict`` -- called
after training ends (finished or interrupted); its dict is stored under
``"results"`` in ``summary.json`` (a sample of generated text, a learned
transition matrix ...).

Each run has a directory (``runs/<config-name>-<timestamp>`` by default)
holding ``config.json`` (the resolved config), ``log.jsonl`` (the training
log), the checkpoints and plot files the config's extensions write, and
``summary.json`` (status, iterations, epochs, wall time, the final value of
every record). ``--resume`` continues that directory's newest checkpoint.
See ``docs/experiments.md``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from bricks.errors import BricksError, ExperimentError, OverrideError

from ._overrides import apply_overrides, check_plain

__all__ = ["main", "load_config_module", "resolve_config", "new_run_dir", "newest_run_dir"]

CONFIG_FILE = "config.json"
LOG_FILE = "log.jsonl"
SUMMARY_FILE = "summary.json"
#: Exit status of a run stopped by Ctrl-C / SIGTERM after its checkpoint
#: (``EX_TEMPFAIL``, as :data:`bricks.checkpoint.EXIT_INTERRUPTED`): resume it.
EXIT_INTERRUPTED = 75
CHECKPOINT_DIR = "checkpoints"

_DESCRIPTION = """\
Train the model of an experiment config and keep everything in one run directory.

CONFIG.py is a Python file exporting get_config() and build(config, run_dir).
A config file is code: running it executes it with your privileges, so run
only configs you trust. Overrides (--set) are different: they are parsed as
literals and never evaluated.
"""

_EPILOG = """\
examples:
  python -m experiments.run experiments/configs/char_lm.py
  python -m experiments.run experiments/configs/mnist.py --set epochs=2 --set learning_rate=0.05
  python -m experiments.run experiments/configs/char_lm.py --output-dir runs/lm --resume
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.run",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="experiment config file (Python code, run as you)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value; VALUE is a Python literal (5, 0.1, 'text', [1, 2]) or "
        "a bare word (a path, a name) and is never evaluated as code; repeatable",
    )
    parser.add_argument(
        "--output-dir",
        default=None,
        metavar="DIR",
        help="run directory (default: runs/<config-name>-<timestamp>)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the newest checkpoint of the run directory (with no --output-dir: "
        "of the newest runs/<config-name>-* directory)",
    )
    parser.add_argument("--seed", type=int, default=None, help="set config['seed']")
    return parser


def load_config_module(path: str | os.PathLike) -> ModuleType:
    """Import the config file at ``path`` (this runs its code) and check its exports."""
    path = Path(path)
    if not path.is_file():
        raise ExperimentError(f"config file {os.fspath(path)!r} does not exist")
    name = f"_bricks_experiment_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ExperimentError(f"cannot import config file {os.fspath(path)!r} (not a .py file?)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    for export in ("get_config", "build"):
        if not callable(getattr(module, export, None)):
            raise ExperimentError(
                f"config file {os.fspath(path)!r} must define {export}(); "
                "see docs/experiments.md for the contract"
            )
    return module


def resolve_config(
    base: dict[str, Any], overrides: Sequence[str] = (), seed: int | None = None
) -> dict[str, Any]:
    """``base`` with ``--set`` overrides and ``--seed`` applied, checked to be plain data."""
    if not isinstance(base, dict):
        raise ExperimentError(f"get_config() must return a dict, found {type(base).__name__}")
    check_plain(base, "get_config()")
    config = apply_overrides(base, overrides)
    if seed is not None:
        if "seed" not in config:
            raise OverrideError("--seed given but the config has no 'seed' key to set")
        config["seed"] = int(seed)
    return config


def new_run_dir(config_name: str, root: str | os.PathLike = "runs") -> Path:
    """A new, empty ``root/<config_name>-<YYYYmmdd-HHMMSS>`` directory (suffixed if taken)."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{config_name}-{stamp}"
    candidate, n = base, 1
    while True:
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            n += 1
            candidate = Path(f"{base}-{n}")


def newest_run_dir(config_name: str, root: str | os.PathLike = "runs") -> Path:
    """The most recently modified ``root/<config_name>-*`` directory that holds a run."""
    runs = [
        p for p in Path(root).glob(f"{config_name}-*") if p.is_dir() and (p / CONFIG_FILE).is_file()
    ]
    if not runs:
        raise ExperimentError(
            f"--resume: no run of {config_name!r} under {os.fspath(root)!r}; pass --output-dir DIR"
        )
    return max(runs, key=lambda p: (p / CONFIG_FILE).stat().st_mtime)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf8")
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf8"))
    except (OSError, ValueError) as error:
        raise ExperimentError(f"cannot read {os.fspath(path)!r}: {error}") from error


def _final_records(log: Any) -> dict[str, Any]:
    """The last value of every scalar record in the log."""
    final: dict[str, Any] = {}
    for _, row in log:
        for key, value in row.items():
            if isinstance(value, bool | int | float | str) or value is None:
                if not (isinstance(value, str) and len(value) > 200):
                    final[key] = value
    return final


def _machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import jax

        info["jax"] = jax.__version__
        info["jax_backend"] = jax.default_backend()
        info["devices"] = [str(d) for d in jax.devices()]
    except Exception:  # the summary must be written even if jax is broken
        pass
    return info


def _find_resume_point(run_dir: Path) -> Path:
    """The newest good checkpoint under ``run_dir`` (damaged newer ones are skipped)."""
    from bricks.checkpoint import find_checkpoint
    from bricks.errors import CheckpointNotFoundError

    try:
        path, _problems = find_checkpoint(run_dir / CHECKPOINT_DIR)
    except CheckpointNotFoundError as error:
        raise ExperimentError(
            f"--resume: {error}; the run ended before its first checkpoint, start it again "
            "without --resume"
        ) from error
    return path


def _status_of(main_loop: Any) -> str:
    status = main_loop.log.status
    if status.get("epoch_interrupt_received") or status.get("batch_interrupt_received"):
        return "interrupted"
    return "finished"


def run_experiment(args: argparse.Namespace) -> int:
    """Resolve the config, make or find the run directory, train, write the summary."""
    module = load_config_module(args.config)
    name = Path(args.config).stem
    resume: Path | None = None
    if args.resume:
        run_dir = Path(args.output_dir) if args.output_dir else newest_run_dir(name)
        if not (run_dir / CONFIG_FILE).is_file():
            raise ExperimentError(f"--resume: {os.fspath(run_dir)!r} holds no {CONFIG_FILE}")
        resume = _find_resume_point(run_dir)
        # the saved values win; keys added to the config file since get their defaults
        base = {**module.get_config(), **_read_json(run_dir / CONFIG_FILE)}
        config = resolve_config(base, args.overrides, args.seed)
    else:
        config = resolve_config(module.get_config(), args.overrides, args.seed)
        if args.output_dir:
            run_dir = Path(args.output_dir)
            if (run_dir / CONFIG_FILE).exists():
                raise ExperimentError(
                    f"{os.fspath(run_dir)!r} already holds a run; pass --resume to continue it "
                    "or choose another --output-dir"
                )
            run_dir.mkdir(parents=True, exist_ok=True)
        else:
            run_dir = new_run_dir(name)
    _write_json(run_dir / CONFIG_FILE, config)
    print(f"run directory: {run_dir}", flush=True)

    summary_path = run_dir / SUMMARY_FILE
    previous = _read_json(summary_path) if args.resume and summary_path.is_file() else {}
    summary: dict[str, Any] = {
        "config_file": os.fspath(args.config),
        "config_name": name,
        "command": [sys.executable, "-m", "experiments.run", *sys.argv[1:]]
        if sys.argv and sys.argv[0].endswith(("run.py", "__main__.py"))
        else None,
        "status": "running",
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": _machine(),
    }
    _write_json(summary_path, summary)

    start = time.perf_counter()
    main_loop = module.build(config, os.fspath(run_dir))
    if not hasattr(main_loop, "run") or not hasattr(main_loop, "log"):
        raise ExperimentError(
            f"build() of {os.fspath(args.config)!r} must return a MainLoop, "
            f"found {type(main_loop).__name__}"
        )
    if main_loop.log.path is None:  # the runner owns the log file's place
        main_loop.log.path = os.fspath(run_dir / LOG_FILE)
    if resume is not None:
        summary["resumed_from_checkpoint"] = os.fspath(resume)
        print(f"resuming from {resume}", flush=True)

    def finish_summary(status: str, **extra: Any) -> None:
        wall = time.perf_counter() - start
        summary.update(
            status=status,
            ended=datetime.datetime.now().isoformat(timespec="seconds"),
            iterations_done=main_loop.log.status.get("iterations_done"),
            epochs_done=main_loop.log.status.get("epochs_done"),
            wall_time_s=round(wall, 3),
            total_wall_time_s=round(wall + float(previous.get("total_wall_time_s", 0.0)), 3),
            final_records=_final_records(main_loop.log),
            **extra,
        )
        _write_json(summary_path, summary)

    try:
        main_loop.run(resume=resume)
    except BaseException as error:
        finish_summary("error", error=f"{type(error).__name__}: {error}")
        raise
    status = _status_of(main_loop)
    finish: Callable[..., Any] | None = getattr(module, "finish", None)
    results = finish(main_loop, config, os.fspath(run_dir)) if callable(finish) else None
    finish_summary(status, **({"results": results} if results else {}))
    records = summary["final_records"]
    shown = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in records.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and not k.startswith("time_")
    )
    print(
        f"{status} after {summary['iterations_done']} iterations, {summary['epochs_done']} "
        f"epochs, {summary['wall_time_s']:.1f}s; {shown}\nsummary: {summary_path}",
        flush=True,
    )
    return 0 if status == "finished" else EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status.

    0: finished; 75: interrupted (resume it with ``--resume``); 1: an error
    while training; 2: a bad command line or config.
    """
    args = _parser().parse_args(argv)
    try:
        return run_experiment(args)
    except (OverrideError, ExperimentError) as error:
        print(f"python -m experiments.run: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted before training started", file=sys.stderr)
        return 130
    except BricksError:
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
