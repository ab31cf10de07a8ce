"""Downloads from a loopback HTTP server and conversions of the original formats."""

import functools
import gzip
import hashlib
import http.server
import io
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import threading

import numpy as np
import pytest

from bricks.data import H5PYDataset, convert, download, read_idx, safe_unpickle
from bricks.data._converters import download_file
from bricks.errors import ConversionError, DownloadError


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def served(tmp_path):
    """A directory served on 127.0.0.1 (no test reaches the internet)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def idx_bytes(arr: np.ndarray) -> bytes:
    code = {np.uint8: 0x08}[arr.dtype.type]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return gzip.compress(header + arr.tobytes())


def write_mnist(root, n_train=6, n_test=3):
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        imgs = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        (root / f"{prefix}-images-idx3-ubyte.gz").write_bytes(idx_bytes(imgs))
        (root / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(idx_bytes(labels))
        arrays[prefix] = (imgs, labels)
    return arrays


def md5s(root):
    return {
        p.name: hashlib.md5(p.read_bytes(), usedforsecurity=False).hexdigest()
        for p in root.iterdir()
    }


def test_download_and_convert_mnist(served, tmp_path):
    root, url = served
    arrays = write_mnist(root)
    dest = tmp_path / "data"
    paths = download("mnist", dest, base_url=url, checksums=md5s(root))
    assert sorted(p.name for p in paths) == sorted(p.name for p in root.iterdir())
    out = convert("mnist", dest)
    train = H5PYDataset(out, ("train",))
    assert train.sources == ("features", "targets") and train.num_examples == 6
    assert train.axis_labels["features"] == ("batch", "channel", "height", "width")
    f, t = train.get_data(None, [0, 5])
    np.testing.assert_array_equal(f[:, 0], arrays["train"][0][[0, 5]])
    assert t[:, 0].tolist() == arrays["train"][1][[0, 5]].tolist()
    test = H5PYDataset(out, ("test",))
    np.testing.assert_array_equal(test.get_data(None, [2])[0][0, 0], arrays["t10k"][0][2])


def test_checksum_mismatch_and_http_errors(served, tmp_path):
    root, url = served
    (root / "f.bin").write_bytes(b"hello")
    with pytest.raises(DownloadError, match="checksum mismatch.*expected MD5 0+"):
        download_file(f"{url}/f.bin", tmp_path / "f.bin", "0" * 32)
    assert not (tmp_path / "f.bin").exists()
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file(f"{url}/missing.bin", tmp_path / "m.bin", None)


def test_offline_message(tmp_path):
    # a port nothing listens on: connection refused, as when offline
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(DownloadError, match="Are you offline"):
        download("mnist", tmp_path, base_url=f"http://127.0.0.1:{port}")


def cifar_batch(n, seed):
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"training batch",
        b"labels": rng.integers(0, 10, n).tolist(),
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [b"a.png"] * n,
    }


def write_cifar(root, batches):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        for name, payload in zip(names, batches, strict=True):
            data = payload if isinstance(payload, bytes) else pickle.dumps(payload, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (root / "cifar-10-python.tar.gz").write_bytes(buf.getvalue())


def test_convert_cifar10(tmp_path):
    batches = [cifar_batch(2, i) for i in range(6)]
    write_cifar(tmp_path, batches)
    out = convert("cifar10", tmp_path, tmp_path / "c.hdf5")
    train, test = H5PYDataset(out, ("train",)), H5PYDataset(out, ("test",))
    assert train.num_examples == 10 and test.num_examples == 2
    f, t = train.get_data(None, [3])
    np.testing.assert_array_equal(f[0], batches[1][b"data"][1].reshape(3, 32, 32))
    assert int(t[0, 0]) == batches[1][b"labels"][1]


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_hostile_pickles_are_refused(tmp_path):
    with pytest.raises(ConversionError, match="refusing to unpickle global"):
        safe_unpickle(pickle.dumps({b"data": _Evil()}, protocol=2))
    with pytest.raises(ConversionError, match="dtype object"):
        safe_unpickle(pickle.dumps({b"data": np.array([1, "x"], dtype=object)}, protocol=2))
    with pytest.raises(ConversionError, match="expected a dict"):
        safe_unpickle(pickle.dumps([1, 2]))
    with pytest.raises(ConversionError, match="not a valid pickle"):
        safe_unpickle(b"\x80\x02garbage")
    batches = [cifar_batch(2, i) for i in range(6)]
    batches[2] = pickle.dumps({b"data": _Evil(), b"labels": []}, protocol=2)
    write_cifar(tmp_path, batches)
    with pytest.raises(ConversionError, match="data_batch_3.*refusing"):
        convert("cifar10", tmp_path, tmp_path / "c.hdf5")


def test_bad_idx_files(tmp_path):
    p = tmp_path / "x-idx3-ubyte.gz"
    arr = np.zeros((2, 3, 3), np.uint8)
    p.write_bytes(idx_bytes(arr)[:-5])
    with pytest.raises(ConversionError, match="x-idx3-ubyte.gz"):
        read_idx(p)
    p.write_bytes(gzip.compress(b"\x01\x02\x03\x04"))
    with pytest.raises(ConversionError, match="not an idx file"):
        read_idx(p)


def test_text_corpus_and_cli(served, tmp_path):
    root, url = served
    (root / "input.txt").write_text("First Citizen:\nBefore we proceed\n\nany further\n")
    dest = tmp_path / "d"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    run = functools.partial(subprocess.run, capture_output=True, text=True, timeout=60, env=env)
    r = run(
        [
            sys.executable,
            "-m",
            "bricks.data",
            "download",
            "text",
            "-d",
            str(dest),
            "--base-url",
            url,
        ]
    )
    assert r.returncode == 0, r.stderr
    assert "MD5 found" in r.stdout
    r = run([sys.executable, "-m", "bricks.data", "convert", "text", "-d", str(dest)])
    assert r.returncode == 0, r.stderr
    ds = H5PYDataset(dest / "text.hdf5", ("train",))
    assert ds.num_examples == 2 and ds.axis_labels["features"] == ("batch", "time")
    r = run([sys.executable, "-m", "bricks.data", "convert", "mnist", "-d", str(dest)])
    assert r.returncode == 1 and "download" in r.stderr and "Traceback" not in r.stderr
