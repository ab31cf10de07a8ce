"""The process group's settings, argument checks and the mesh's device checks."""

from __future__ import annotations

import doctest
import importlib

import jax
import pytest

from bricks.distributed import data_mesh, initialize, settings_from_environment
from bricks.errors import DistributedError, MeshError


@pytest.mark.parametrize(
    "name", ["bricks.distributed._mesh", "bricks.distributed._process",
             "bricks.distributed._placement", "bricks.distributed._agreement"]
)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0 and result.attempted > 0


def test_bricks_variables_must_come_together():
    with pytest.raises(DistributedError, match=r"BRICKS_PROCESS_ID"):
        settings_from_environment({"BRICKS_COORDINATOR": "h:1", "BRICKS_NUM_PROCESSES": "2"})
    with pytest.raises(DistributedError, match="expected integers"):
        settings_from_environment({"BRICKS_COORDINATOR": "h:1", "BRICKS_NUM_PROCESSES": "two",
                                   "BRICKS_PROCESS_ID": "0"})


def test_launchers_of_one_task_are_a_single_process():
    assert settings_from_environment({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}) == {}
    env = {"OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_RANK": "2"}
    assert settings_from_environment(env) == {"launcher": "ompi"}


def test_initialize_checks_its_arguments(monkeypatch):
    for name in ("BRICKS_COORDINATOR", "SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE",
                 "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(name, raising=False)
    group = initialize()
    assert (group.index, group.count, group.launcher) == (0, 1, "single")
    with pytest.raises(DistributedError, match="together"):
        initialize(coordinator="localhost:1", num_processes=2)
    with pytest.raises(DistributedError, match="process_id=2, num_processes=2"):
        initialize(coordinator="localhost:1", num_processes=2, process_id=2)


def test_mesh_device_counts():
    assert data_mesh().devices.shape == (len(jax.devices()),)
    assert data_mesh(jax.devices()[:1]).devices.shape == (1,)
    with pytest.raises(MeshError, match=r"expected 1 to 2 devices.*got 3"):
        data_mesh(3)
    with pytest.raises(MeshError, match="empty"):
        data_mesh([])


def test_agreement_hands_back_the_previous_steps_flags():
    from bricks.distributed import Agreement

    agreement = Agreement(2)
    assert agreement.flush() == (False, False)
    assert agreement.step([False, True]) == (False, False)
    assert agreement.step([False, False]) == (False, True)
    assert agreement.flush() == (False, False)
