"""Two processes x one CPU device (jax.distributed over loopback, gloo) equal one process x two."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .dp_models import STEPS, stream, train

WORKER = Path(__file__).with_name("mp_worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_equal_one_process_with_two_devices(tmp_path):
    out = tmp_path / "out.json"
    port = free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(port), "2", str(i), str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for i in range(2)
    ]
    logs = []
    for p in procs:
        try:
            logs.append(p.communicate(timeout=300)[0])
        finally:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(logs)
    got = json.loads(out.read_text())
    params, costs = train(2, data=stream())  # one process, two devices, the same global batches
    assert len(got["costs"]) == STEPS
    np.testing.assert_allclose(got["costs"], costs, rtol=1e-5)
    for k, v in params.items():
        np.testing.assert_allclose(np.asarray(got["params"][k]), v, rtol=1e-5, atol=1e-6)
