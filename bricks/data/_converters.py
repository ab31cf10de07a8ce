"""Downloaders and converters: original dataset files → Fuel-layout HDF5.

``python -m bricks.data download mnist`` fetches the original files into the
data directory (``$BRICKS_DATA_PATH`` or ``~/.bricks/data``) and checks each
against its published MD5; ``python -m bricks.data convert mnist`` writes
``mnist.hdf5`` (the same layout as Fuel's, so Fuel's files work too). The
same goes for ``cifar10`` and ``text`` (Tiny Shakespeare).

About the CIFAR-10 pickles. The python version of CIFAR-10 stores each batch
as a pickle, and ``pickle.load`` runs whatever the file tells it to. Parsing
the pickle opcodes by hand would mean re-implementing numpy's array
reconstruction; instead :func:`safe_unpickle` uses the standard library's
documented way of restricting pickles (a ``pickle.Unpickler`` whose
``find_class`` allows only numpy's array-reconstruction helpers,
``numpy.ndarray`` and ``numpy.dtype``, plus a latin-1-only stand-in for
``_codecs.encode`` that Python 3 uses to pickle ``bytes``): every other global — ``os.system``,
``builtins.eval``, any class — is refused before it is looked up, so a
hostile file can build nothing but dicts, lists, strings, numbers and
numeric arrays. The result is then checked to be exactly that: a dict of
``bytes``/``str`` keys whose values are bytes, str, lists of numbers/bytes
or arrays of a numeric dtype.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bricks.errors import ConversionError, DownloadError

from ._hdf5 import write_hdf5

__all__ = [
    "DATASETS",
    "convert",
    "convert_cifar10",
    "convert_mnist",
    "convert_text",
    "data_path",
    "download",
    "download_file",
    "read_idx",
    "safe_unpickle",
]

#: name → {file name: (url, md5 or None)}
DATASETS: dict[str, dict[str, tuple[str, str | None]]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": (
            "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        ),
        "train-labels-idx1-ubyte.gz": (
            "https://ossci-datasets.s3.amazonaws.com/mnist/train-labels-idx1-ubyte.gz",
            "d53e105ee54ea40749a09fcbcd1e9432",
        ),
        "t10k-images-idx3-ubyte.gz": (
            "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz",
            "9fb629c4189551a2d022fa330f9573f3",
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz",
            "ec29112dd5afa0611ce80d1b7f02629c",
        ),
    },
    "cifar10": {
        "cifar-10-python.tar.gz": (
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "c58f30108f718f92721af3b95e74349a",
        ),
    },
    "text": {
        # no checksum is published for this file; the digest found is printed
        "input.txt": (
            "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
            None,
        ),
    },
}


def data_path() -> Path:
    """The data directory: ``$BRICKS_DATA_PATH`` or ``~/.bricks/data``."""
    return Path(os.environ.get("BRICKS_DATA_PATH", Path.home() / ".bricks" / "data"))


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_file(url: str, path: str | os.PathLike, md5: str | None, timeout: float = 30) -> str:
    """Download ``url`` to ``path`` (via a temporary name) and check its MD5.

    Returns the MD5 found. Raises :class:`~bricks.errors.DownloadError` when
    the server cannot be reached (offline), answers an error, or the
    checksum differs; nothing is left at ``path`` then.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
            while block := r.read(1 << 20):
                f.write(block)
    except urllib.error.HTTPError as e:
        tmp.unlink(missing_ok=True)
        raise DownloadError(f"download of {url} failed: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError) as e:
        tmp.unlink(missing_ok=True)
        raise DownloadError(
            f"cannot download {url}: {getattr(e, 'reason', e)}. Are you offline? Put the file "
            f"there by hand as {path} and run the command again"
        ) from e
    found = _md5(tmp)
    if md5 is not None and found != md5:
        tmp.unlink(missing_ok=True)
        raise DownloadError(
            f"checksum mismatch for {url}: expected MD5 {md5}, found {found}; the download was "
            "corrupted or the file changed upstream"
        )
    os.replace(tmp, path)
    return found


def download(
    name: str,
    directory: str | os.PathLike | None = None,
    base_url: str | None = None,
    checksums: Mapping[str, str | None] | None = None,
) -> list[Path]:
    """Download the original files of dataset ``name`` (skipping ones already verified).

    Args:
        name: ``"mnist"``, ``"cifar10"`` or ``"text"``.
        directory: where to put them (default :func:`data_path`).
        base_url: fetch ``base_url/<file name>`` instead (a mirror, or a test server).
        checksums: MD5s to use instead of the published ones.
    """
    files = _registry(name)
    directory = Path(directory) if directory is not None else data_path()
    out = []
    for fname, (url, md5) in files.items():
        md5 = checksums.get(fname, md5) if checksums else md5
        if base_url:
            url = base_url.rstrip("/") + "/" + fname
        path = directory / fname
        if path.is_file() and (md5 is None or _md5(path) == md5):
            out.append(path)
            continue
        found = download_file(url, path, md5)
        if md5 is None:
            print(f"{fname}: no published checksum, MD5 found {found}")
        out.append(path)
    return out


def _registry(name: str) -> dict[str, tuple[str, str | None]]:
    if name not in DATASETS:
        from bricks.errors import did_you_mean

        raise ConversionError(
            f"unknown dataset {name!r}{did_you_mean(name, DATASETS)}; known: {sorted(DATASETS)}"
        )
    return DATASETS[name]


def _need(path: Path) -> Path:
    if not path.is_file():
        raise ConversionError(f"missing {path}; run `python -m bricks.data download ...` first")
    return path


# --- MNIST ----------------------------------------------------------------------

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (gzipped or not), checking its header against its size."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise ConversionError(f"cannot read idx file {path}: {e}") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ConversionError(f"{path} is not an idx file (magic {raw[:4]!r})")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    body = raw[4 + 4 * ndim :]
    if len(body) != expected:
        raise ConversionError(
            f"{path}: header says shape {dims} of {dtype} ({expected} bytes), "
            f"found {len(body)} bytes"
        )
    return np.frombuffer(body, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def convert_mnist(directory: str | os.PathLike, output: str | os.PathLike) -> Path:
    """MNIST idx files → HDF5 (``features`` (n, 1, 28, 28) uint8, ``targets`` (n, 1) uint8)."""
    d = Path(directory)
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(_need(d / f"{prefix}-images-idx3-ubyte.gz"))
        labels = read_idx(_need(d / f"{prefix}-labels-idx1-ubyte.gz"))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ConversionError(
                f"MNIST {split}: expected images (n, rows, cols) and labels (n,), found "
                f"{images.shape} and {labels.shape} in {d}"
            )
        parts[split] = (images, labels)
    n_train = len(parts["train"][0])
    features = np.concatenate([parts[s][0] for s in ("train", "test")])[:, None]
    targets = np.concatenate([parts[s][1] for s in ("train", "test")]).astype(np.uint8)[:, None]
    write_hdf5(
        output,
        {"features": features, "targets": targets},
        splits={"train": (0, n_train), "test": (n_train, len(features))},
        axis_labels={
            "features": ("batch", "channel", "height", "width"),
            "targets": ("batch", "index"),
        },
    )
    return Path(output)


# --- CIFAR-10 -------------------------------------------------------------------

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """What Python 3 protocol-2 pickles of ``bytes`` call (``_codecs.encode(s, 'latin1')``)."""
    if not isinstance(text, str) or encoding != "latin1":
        raise ConversionError(f"refusing _codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        if (module, name) not in _ALLOWED_GLOBALS:
            raise ConversionError(
                f"refusing to unpickle global {module}.{name}: only numpy arrays, dicts, lists, "
                "strings and numbers are allowed in a dataset file"
            )
        return super().find_class(module, name)


def _check_value(v: Any, where: str) -> None:
    if isinstance(v, (bytes, str, int, float)):
        return
    if isinstance(v, list):
        for x in v:
            if not isinstance(x, (bytes, str, int, float)):
                raise ConversionError(f"{where}: a list holds a {type(x).__name__}")
        return
    if isinstance(v, np.ndarray):
        if v.dtype.kind not in "biuf":
            raise ConversionError(f"{where}: an array of dtype {v.dtype} (numeric dtypes only)")
        return
    raise ConversionError(f"{where}: unexpected value of type {type(v).__name__}")


def safe_unpickle(data: bytes, where: str = "pickle") -> dict:
    """Load a pickled dict of bytes/str/lists/numeric arrays, refusing anything else.

    See the module docstring for why a restricted ``Unpickler`` is used.
    """
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except ConversionError as e:
        raise ConversionError(f"{where}: {e}") from None
    except Exception as e:  # malformed pickles raise many types
        raise ConversionError(f"{where}: not a valid pickle ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise ConversionError(f"{where}: expected a dict, found {type(obj).__name__}")
    for k, v in obj.items():
        if not isinstance(k, (bytes, str)):
            raise ConversionError(f"{where}: a key of type {type(k).__name__}")
        _check_value(v, f"{where}[{k!r}]")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def convert_cifar10(directory: str | os.PathLike, output: str | os.PathLike) -> Path:
    """CIFAR-10 python tarball → HDF5 (``features`` (n, 3, 32, 32) uint8, ``targets`` (n, 1))."""
    tar_path = _need(Path(directory) / "cifar-10-python.tar.gz")
    names = [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)]
    names.append("cifar-10-batches-py/test_batch")
    batches = []
    try:
        with tarfile.open(tar_path, "r:gz") as tar:
            for name in names:
                try:
                    member = tar.extractfile(name)
                except KeyError:
                    raise ConversionError(f"{tar_path}: no member {name}") from None
                if member is None:
                    raise ConversionError(f"{tar_path}: {name} is not a regular file")
                d = safe_unpickle(member.read(), f"{tar_path}:{name}")
                if "data" not in d or "labels" not in d:
                    raise ConversionError(
                        f"{tar_path}:{name}: expected keys 'data' and 'labels', found {sorted(d)}"
                    )
                data, labels = np.asarray(d["data"]), np.asarray(d["labels"])
                if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
                    raise ConversionError(
                        f"{tar_path}:{name}: expected data (n, 3072) and n labels, found "
                        f"{data.shape} and {labels.shape}"
                    )
                batches.append(
                    (data.astype(np.uint8).reshape(-1, 3, 32, 32), labels.astype(np.uint8))
                )
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ConversionError(f"cannot read {tar_path}: {e}") from e
    n_train = sum(len(b[0]) for b in batches[:5])
    write_hdf5(
        output,
        {
            "features": np.concatenate([b[0] for b in batches]),
            "targets": np.concatenate([b[1] for b in batches])[:, None],
        },
        splits={"train": (0, n_train), "test": (n_train, sum(len(b[0]) for b in batches))},
        axis_labels={
            "features": ("batch", "channel", "height", "width"),
            "targets": ("batch", "index"),
        },
    )
    return Path(output)


# --- text -------------------------------------------------------------------------


def convert_text(
    directory: str | os.PathLike,
    output: str | os.PathLike,
    level: str = "character",
    valid_fraction: float = 0.1,
) -> Path:
    """``input.txt`` → HDF5 of one variable-length ``features`` source per non-empty line.

    The vocabulary (JSON of :class:`~bricks.data.Vocabulary`) is stored in
    the root attribute ``vocabulary``; the last ``valid_fraction`` of the
    lines are the ``valid`` split.
    """
    import json

    from ._text import Vocabulary

    path = _need(Path(directory) / "input.txt")
    text = path.read_text(encoding="utf8", errors="replace")
    vocab = Vocabulary.build([text], level=level)
    lines = [np.asarray(vocab.encode(line), dtype=np.int32) for line in text.splitlines() if line]
    if len(lines) < 2:
        raise ConversionError(f"{path}: expected at least 2 non-empty lines, found {len(lines)}")
    n_valid = max(1, int(len(lines) * valid_fraction))
    write_hdf5(
        output,
        {"features": lines},
        splits={"train": (0, len(lines) - n_valid), "valid": (len(lines) - n_valid, len(lines))},
        axis_labels={"features": ("batch", "time")},
    )
    import h5py

    with h5py.File(output, "a") as f:
        f.attrs["vocabulary"] = json.dumps(vocab.to_dict())
    return Path(output)


_CONVERTERS = {"mnist": convert_mnist, "cifar10": convert_cifar10, "text": convert_text}


def convert(
    name: str, directory: str | os.PathLike | None = None, output: str | os.PathLike | None = None
) -> Path:
    """Convert dataset ``name`` from ``directory`` into ``output``.

    The default output is ``<directory>/<name>.hdf5``.
    """
    _registry(name)
    directory = Path(directory) if directory is not None else data_path()
    output = Path(output) if output is not None else directory / f"{name}.hdf5"
    return _CONVERTERS[name](directory, output)
