"""The first hour of a new user (issue 22): the default run in a terminal shows a
progress bar and the live plot's URL; an interrupted run says how to resume it, and
that command works; the README's commands and URL are the ones the runner prints."""

from __future__ import annotations

import fcntl
import importlib.util
import os
import pty
import re
import shlex
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from experiments.run import _parser

from ._helpers import REPO, check_run_dir, env

README = (REPO / "README.md").read_text(encoding="utf8")
CONFIG = "experiments/configs/char_lm.py"
# a few batches of the default config; the model and the data are the default ones
FEW = ["--set", "num_batches=40", "--set", "monitor_every=10", "--set", "sample_length=20"]

BAR = re.compile(r"epoch 1 \[[#.]+\]\s+\d+/\d+\s+[\d.]+(it/s|s/it) ETA \d\d:\d\d")
REPORT = re.compile(
    r"epoch 1 20/\d+ batches\s+[\d.]+(it/s|s/it) ETA \d\d:\d\d, train_cost=[\d.]+, "
    r"valid_cost=[\d.]+"
)
URL_LINE = re.compile(r"Serving live plots of '([^']+)' at (http://127\.0\.0\.1:\d+/(\S+))")


class _Terminal:
    """The runner on a pseudo-terminal of 120 x 40 (its stdout and stderr are a tty)."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.proc = subprocess.Popen(
            args, cwd=cwd, env=env(), stdin=slave, stdout=slave, stderr=slave, close_fds=True
        )
        os.close(slave)
        self.master, self.text = master, ""

    def read_until(self, pattern: re.Pattern | str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.text)
            if found:
                return found
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"no {pattern!r} in {timeout} s:\n{self.text[-3000:]}")
            self._read(0.2)

    def _read(self, wait: float) -> bool:
        import select

        ready, _, _ = select.select([self.master], [], [], wait)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # the child closed the terminal
            return False
        self.text += data.decode("utf8", "replace")
        return bool(data)

    def finish(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.2)
        for _ in range(100):  # what it wrote before exiting
            ready_and_data = self._read(0.05)
            if not ready_and_data:
                break
        os.close(self.master)
        if self.proc.poll() is None:
            self.proc.kill()
            raise AssertionError(f"the runner did not end in {timeout} s:\n{self.text[-3000:]}")
        return self.proc.returncode


def _readme_pattern(template: str) -> re.Pattern:
    """A README line with its placeholders (PORT, YYYYmmdd-HHMMSS) as a regex."""
    pattern = re.escape(template)
    pattern = pattern.replace("PORT", r"\d+").replace(r"YYYYmmdd\-HHMMSS", r"\d{8}-\d{6}")
    return re.compile(pattern.replace("YYYYmmdd-HHMMSS", r"\d{8}-\d{6}"))


def _readme_line(prefix: str) -> str:
    found = re.search(re.escape(prefix) + r"[^`]*", README)
    assert found, f"README.md has no {prefix!r}"
    return found.group(0)


@pytest.mark.slow
def test_default_run_in_a_terminal_then_interrupted_and_resumed(tmp_path):
    cache = tmp_path / "compile-cache"
    # the runner's own naming of run directories (runs/char_lm-<timestamp>), under tmp_path
    args = [sys.executable, "-m", "experiments.run", str(REPO / CONFIG), *FEW]
    args += ["--compile-cache", str(cache)]
    term = _Terminal(args, cwd=tmp_path)
    url = term.read_until(URL_LINE, 120)
    term.read_until(BAR, 240)
    report = term.read_until(REPORT, 240)
    term.proc.send_signal(signal.SIGTERM)  # stop after the current batch
    assert term.finish(120) == 75, term.text[-3000:]
    run_dir = Path(tmp_path / "runs").glob("char_lm-*").__next__()
    # the page's path is the run directory's name, as the README says
    assert url.group(1) == url.group(3) == run_dir.name
    assert _readme_pattern(_readme_line("Serving live plots of ")).fullmatch(url.group(0))
    assert report.group(0) in term.text
    # the last lines say how to resume, with the exact command
    hint = re.search(r"to resume: (.+)", term.text)
    assert hint, term.text[-2000:]
    command = shlex.split(hint.group(1).strip())
    assert command[:4] == ["python", "-m", "experiments.run", str(REPO / CONFIG)]
    assert command[4:] == ["--output-dir", str(Path("runs") / run_dir.name), "--resume",
                           "--compile-cache", str(cache)]
    assert check_run_dir(run_dir, status="interrupted")["iterations_done"] < 40
    assert any(cache.iterdir()), "the compilation cache stayed empty"
    # ... and that command continues the run to its end
    proc = subprocess.run(
        [sys.executable, *command[1:]], cwd=tmp_path, env=env(), capture_output=True, text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert check_run_dir(run_dir)["iterations_done"] == 40
    assert "resuming from" in proc.stdout and "to resume" not in proc.stdout


def test_readme_commands_are_the_runners():
    parser = _parser()
    commands = re.findall(r"(?:^|`)(python -m experiments\.run [^#\n`]*)", README, re.M)
    assert len(commands) >= 3, commands
    for command in commands:
        args = parser.parse_args(shlex.split(command)[3:])
        if "<" not in args.config:  # a placeholder: experiments/configs/<config>.py
            assert (REPO / args.config).is_file(), command
    for module in re.findall(r"(?:^|`)python -m ([\w.]+)", README, re.M):
        spec = importlib.util.find_spec(module)
        assert spec is not None, module
        if spec.submodule_search_locations:  # a package: run by its __main__
            assert importlib.util.find_spec(module + ".__main__"), module
    # the resume line has the form the runner prints (see resume_command)
    hint = _readme_line("to resume: python -m experiments.run ")
    from experiments.run import resume_command

    example = resume_command(parser.parse_args([CONFIG]), "runs/char_lm-20261122-150000")
    printed = "to resume: " + shlex.join(example)
    assert _readme_pattern(hint).fullmatch(printed), (hint, printed)
    # the live-plot line names the run directory, as Plot serves it
    line = _readme_line("Serving live plots of ")
    assert _readme_pattern(line).fullmatch(
        "Serving live plots of 'char_lm-20261122-150000' at "
        "http://127.0.0.1:8123/char_lm-20261122-150000"
    ), line
    assert "/char_lm`" not in README and "/char_lm " not in README  # the 404 of issue 22


def test_readme_states_compile_cache_figures():
    assert re.search(r"--no-compile-cache", README)
    assert re.search(r"first step[^.]*\d+ s[^.]*\d+ s", README), "cold vs warm figures"


def test_compile_cache_directory_is_chosen_in_order(tmp_path, monkeypatch):
    from experiments._compile_cache import _choose, default_cache_dir

    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "bricks" / "jax-compile"
    assert _choose(None, False, {}) == default_cache_dir()
    assert _choose(None, True, {"compile_cache": "x"}) is None  # --no-compile-cache wins
    assert _choose("flag", False, {"compile_cache": "cfg"}) == Path("flag")
    assert _choose(None, False, {"compile_cache": "cfg"}) == Path("cfg")
    assert _choose(None, False, {"compile_cache": False}) is None
    assert _choose(None, False, {"compile_cache": None}) == default_cache_dir()
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax"))
    assert _choose(None, False, {}) == tmp_path / "jax"
    from bricks.errors import ExperimentError

    with pytest.raises(ExperimentError, match="compile_cache: expected a directory"):
        _choose(None, False, {"compile_cache": 3})


def test_compile_cache_flags_set_jax(tmp_path):
    import jax

    from experiments._compile_cache import configure_compile_cache

    names = ("jax_compilation_cache_dir", "jax_enable_compilation_cache")
    saved = {name: getattr(jax.config, name) for name in names}
    try:
        path = configure_compile_cache(str(tmp_path / "c"), False, {})
        assert path == tmp_path / "c" and path.is_dir()
        assert jax.config.jax_compilation_cache_dir == str(path)
        assert configure_compile_cache(str(tmp_path / "c"), True, {}) is None
        assert jax.config.jax_compilation_cache_dir is None
        assert not jax.config.jax_enable_compilation_cache
    finally:
        for name, value in saved.items():
            jax.config.update(name, value)


def test_the_plot_gets_values_every_few_batches():
    from experiments.common import checkpoint_and_plot

    plot = checkpoint_and_plot(
        {"plot_every_n_batches": 10, "checkpoint_every_n_batches": 500, "plot_server": False},
        "/tmp/unused-run-dir",
        [["train_cost"]],
    )[1]
    assert plot.batches_until_needed(0) == 10 and plot.batches_until_needed(13) == 7


@pytest.mark.slow
def test_default_console_is_one_line_per_report_and_blocks_on_request(tmp_path):
    from ._helpers import run
    from .test_char_lm import TINY

    plain = run("char_lm", tmp_path / "plain", *TINY).stdout + "\n"
    proc = run("char_lm", tmp_path / "blocks", *TINY, "--set", "print_blocks=True")
    assert "Training status:" not in plain and "Training status:" in proc.stdout
    # stderr is a pipe here: report lines (every monitor_every=2 batches), no redraws
    lines = [s for s in proc.stderr.splitlines() if s.startswith("epoch ")]
    assert [s.split(" batches")[0] for s in lines] == ["epoch 1 2/30", "epoch 1 4/30"], lines
    assert "\r" not in proc.stderr
    assert all("train_cost=" in s and "valid_cost=" in s for s in lines)
