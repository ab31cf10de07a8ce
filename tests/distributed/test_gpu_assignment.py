"""``--processes P`` on a GPU machine: each local process gets its own block of GPUs.

No GPU is needed: the assignment is a function of the visible GPUs and ``P``, and the
launcher's wiring is checked with a stand-in for ``subprocess.Popen``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import experiments._distributed as launcher
from bricks.distributed._process import local_device_environments
from bricks.errors import DeviceAssignmentError
from experiments.run import main

CONFIG = str(Path(__file__).with_name("dp_config.py"))


def test_gpus_are_split_in_contiguous_blocks():
    eight = [str(i) for i in range(8)]
    assert local_device_environments(eight, 2) == [
        {"CUDA_VISIBLE_DEVICES": "0,1,2,3"}, {"CUDA_VISIBLE_DEVICES": "4,5,6,7"}]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in local_device_environments(eight, 8)] == eight
    uuids = ["GPU-aa", "GPU-bb"]  # CUDA_VISIBLE_DEVICES may name GPUs by UUID
    assert local_device_environments(uuids, 2) == [
        {"CUDA_VISIBLE_DEVICES": "GPU-aa"}, {"CUDA_VISIBLE_DEVICES": "GPU-bb"}]
    assert local_device_environments([], 3) == [{}, {}, {}]  # CPU: nothing to assign


def test_gpus_that_do_not_divide_are_refused():
    with pytest.raises(DeviceAssignmentError,
                       match=r"--processes 3: the 8 visible GPUs \(0,1,2,3,4,5,6,7\) do not "
                       r"divide evenly over 3 processes"):
        local_device_environments([str(i) for i in range(8)], 3)
    with pytest.raises(DeviceAssignmentError, match="the 1 visible GPUs"):
        local_device_environments(["0"], 2)
    with pytest.raises(DeviceAssignmentError, match="at least 1 local process, got 0"):
        local_device_environments(["0"], 0)
    assert issubclass(DeviceAssignmentError, ValueError)


def test_visible_gpus_come_from_cuda_visible_devices():
    assert launcher._visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert launcher._visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []  # none visible
    assert launcher._visible_gpus({"CUDA_VISIBLE_DEVICES": "0", "JAX_PLATFORMS": "cpu"}) == []


class _Started:
    """Stands in for a started process: records its command and environment, exits 0."""

    started: list[_Started] = []

    def __init__(self, command, env=None, **kwargs):
        self.command, self.env, self.pid, self.returncode = command, env, 0, None
        _Started.started.append(self)

    def poll(self):
        self.returncode = 0
        return 0

    def wait(self, timeout=None):
        return 0


def test_the_launcher_gives_each_process_its_gpus(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    monkeypatch.setattr(launcher.subprocess, "Popen", _Started)
    _Started.started = []
    assert main([CONFIG, "--output-dir", str(tmp_path / "r"), "--processes", "2"]) == 0
    envs = [p.env for p in _Started.started]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0,1", "2,3"]
    # with GPUs the launcher sets no forced CPU device count of its own
    assert all(e.get("XLA_FLAGS") == os.environ.get("XLA_FLAGS") for e in envs)
    assert [p.command[p.command.index("--process-id") + 1] for p in _Started.started] == ["0", "1"]


def test_the_launcher_refuses_gpus_that_do_not_divide(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    monkeypatch.setattr(launcher.subprocess, "Popen", _Started)
    _Started.started = []
    assert main([CONFIG, "--output-dir", str(tmp_path / "r"), "--processes", "3"]) == 2
    err = capsys.readouterr().err
    assert "the 2 visible GPUs (0,1) do not divide evenly over 3 processes" in err
    assert _Started.started == []  # nothing was started
