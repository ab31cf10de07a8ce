"""TrainingLog rows, status, the JSON-lines file and its live follower."""

import json

import numpy as np
import pytest

from bricks.errors import LogError
from bricks.log import LogFollower, TrainingLog, read_log, read_status


def test_rows_and_status():
    log = TrainingLog()
    log.current_row["a"] = np.float32(1.5)
    log.status["iterations_done"] = 3
    log.current_row["b"] = np.arange(2)
    assert log[0] == {"a": 1.5}
    assert log[3] == {"b": [0, 1]}
    assert log.last_value("a") == 1.5
    assert log.records("b") == [(3, [0, 1])]
    assert [i for i, _ in log] == [0, 3]
    with pytest.raises(LogError):
        log[-1]


def test_state_round_trip():
    log = TrainingLog()
    log.current_row["x"] = 1
    log.status["iterations_done"] = 2
    state = json.loads(json.dumps(log.get_state()))
    other = TrainingLog()
    other.set_state(state)
    assert other.status["iterations_done"] == 2
    assert other[0] == {"x": 1}


def test_file_follow_and_read(tmp_path):
    path = tmp_path / "sub" / "log.jsonl"
    log = TrainingLog(path)
    follower = LogFollower(path)
    assert follower.poll() == []
    log[1]["train_cost"] = 2.0
    log.flush()
    assert follower.poll() == [(1, {"train_cost": 2.0})]
    log[1]["valid_cost"] = 3.0
    log[2]["train_cost"] = 1.0
    log.flush(with_status=True)
    assert follower.poll() == [(1, {"valid_cost": 3.0}), (2, {"train_cost": 1.0})]
    assert follower.status["iterations_done"] == 0
    # a half-written line is not read until it is complete
    with open(path, "a") as f:
        f.write('{"iteration": 3, "rec')
    assert follower.poll() == []
    assert read_log(path) == {1: {"train_cost": 2.0, "valid_cost": 3.0}, 2: {"train_cost": 1.0}}
    assert read_status(path)["epochs_done"] == 0
    log.close()
    with pytest.raises(LogError):
        read_log(tmp_path / "missing.jsonl")
