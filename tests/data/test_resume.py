"""Resume from a JSON state at every cut point of two epochs."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from _pipelines import PIPELINES, build, canon, make_hdf5, run_epochs

from bricks.data import DataStream, IndexableDataset, SequentialScheme
from bricks.errors import IterationStateError

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume")
    make_hdf5(str(d / "resume.hdf5"))
    return str(d)


def cut_and_resume(name, workdir, k, prefetch=None, resume_prefetch="same"):
    """Read k items of two epochs, save the state as JSON, rebuild, read the rest."""
    a = build(name, workdir, prefetch)
    got, iterators = [], 0
    it = a.get_epoch_iterator()
    iterators += 1
    while len(got) < k:
        try:
            got.append(canon(next(it)))
        except StopIteration:
            it = a.get_epoch_iterator()
            iterators += 1
    state = json.loads(json.dumps(a.get_state()))
    if hasattr(it, "close"):
        it.close()
    b = build(name, workdir, prefetch if resume_prefetch == "same" else resume_prefetch)
    b.set_state(state)
    return got + run_epochs(b, 2 - iterators + 1)


@pytest.mark.parametrize("name", PIPELINES)
def test_resume_at_every_cut_point(name, workdir):
    stream = build(name, workdir)
    full = run_epochs(stream, 2)
    assert len(full) > 4
    # every example seen exactly once per epoch (where the pipeline keeps them all)
    if name in ("sequential", "shuffled", "examples_batch", "cache", "hdf5_flip",
                "fuel_mapping_dict"):
        first = full[: len(full) // 2]
        k = stream.sources.index("id")
        ids = sorted(i for item in first for i in np.ravel(item[k]).tolist())
        assert ids == list(range(23))
        assert full[: len(full) // 2] != full[len(full) // 2 :] or name == "sequential"
    for k in range(0, len(full) + 1):
        assert cut_and_resume(name, workdir, k) == full, f"cut after {k} items"


def test_stream_state_values():
    s = DataStream(IndexableDataset({"x": np.arange(5)}), iteration_scheme=SequentialScheme(5, 2))
    assert s.get_state() == {"version": 1, "epoch": 0, "iterator": None}
    it = s.get_epoch_iterator()
    next(it)
    assert s.get_state() == {"version": 1, "epoch": 0, "iterator": {"position": 1}}
    list(it)
    assert s.get_state() == {"version": 1, "epoch": 1, "iterator": None}
    # an epoch iterator can jump as well
    it2 = s.get_epoch_iterator()
    it2.set_state({"version": 1, "epoch": 0, "iterator": {"position": 2}})
    assert [b[0].tolist() for b in it2] == [[4]]


def test_bad_state_is_a_clear_error():
    s = DataStream(IndexableDataset({"x": np.arange(5)}), iteration_scheme=SequentialScheme(5, 2))
    with pytest.raises(IterationStateError, match="expected a dict"):
        s.set_state({"epoch": 0})
    s.set_state({"version": 1, "epoch": 0, "iterator": {"count": 3}})
    with pytest.raises(IterationStateError, match="lacks 'position'"):
        s.get_epoch_iterator()


@pytest.mark.parametrize("name", ["shuffled", "hdf5_flip", "fuel_rng_images"])
def test_resume_in_a_new_process(name, workdir):
    full = run_epochs(build(name, workdir), 2)
    k = len(full) // 2 - 2  # inside the first epoch
    a = build(name, workdir)
    it = a.get_epoch_iterator()
    head = [canon(next(it)) for _ in range(k)]
    state = json.dumps(a.get_state())
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]);"
        "from _pipelines import build, run_epochs;"
        "s = build(sys.argv[2], sys.argv[3]); s.set_state(json.loads(sys.argv[4]));"
        "print(json.dumps(run_epochs(s, 2)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, HERE, name, workdir, state],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert head + json.loads(out.stdout) == full
