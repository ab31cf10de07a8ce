"""The on-disk format of one checkpoint, written atomically and read safely.

A checkpoint is a directory holding three files in open formats::

    ckpt-000000123/
        arrays.bin      the header ``BRICKSARRAYS/2\n`` (16 bytes), then each
                        array's raw bytes (C order, little-endian), each
                        starting at a multiple of 64 bytes (zero padding)
        state.json      {"format": "bricks.checkpoint/2",
                         "arrays": {name: {"offset", "nbytes", "shape", "dtype"}},
                         "state": <JSON-able state>, "meta": {...}}
        manifest.json   {"format": ..., "files": {file: {"size": n, "sha256": hex}}}

``arrays.bin`` needs no library to read: ``np.fromfile(path, dtype,
count, offset=offset)`` for each entry of the index (``dtype`` a numpy dtype
name; ``bfloat16`` and the ``float8`` types are those of ``ml_dtypes``).

Writing goes to ``ckpt-000000123.tmp-<pid>-<random>/``: each file is written
(``arrays.bin`` with one ``os.write`` per 4 MiB, hashed in the same pass),
flushed and fsynced, the manifest last, the directory fsynced, then renamed
into place and the parent directory fsynced. A directory without the
``.tmp-`` suffix is therefore complete unless the disk itself corrupted it,
which the manifest's sizes and sha256 sums detect.

Reading never unpickles: arrays are raw bytes read into numpy arrays of a
plain numeric dtype named in the index (object and structured dtypes are
refused), a file without the header is refused, and JSON is parsed with a
hook that refuses keys naming classes or callables (``__class__``,
``py/object``, ``_target_`` ...). Nothing in a checkpoint is ever imported
or called.

For fault-injection tests, ``BRICKS_CHECKPOINT_FAULT=<step>`` makes the
writer SIGKILL its own process at that step (see :data:`WRITE_STEPS`), and
``BRICKS_CHECKPOINT_DELAY=<step>:<seconds>`` makes it sleep there.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import shutil
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bricks.errors import (
    CheckpointCorruptError,
    CheckpointNotFoundError,
    CheckpointWriteError,
    UnsafeCheckpointError,
)

from ._safe_json import MAX_DIM, MAX_INDEX_ENTRIES, MAX_JSON_BYTES, MAX_NDIM, safe_json_loads

__all__ = [
    "FORMAT",
    "WRITE_STEPS",
    "ARRAYS_FILE",
    "STATE_FILE",
    "MANIFEST_FILE",
    "write_checkpoint",
    "read_checkpoint",
    "read_metadata",
    "verify_checkpoint",
    "safe_json_loads",
]

FORMAT = "bricks.checkpoint/2"
ARRAYS_FILE = "arrays.bin"
#: the first bytes of ``arrays.bin``; arrays start at multiples of :data:`ALIGN`
ARRAYS_MAGIC = b"BRICKSARRAYS/2\n\0"  # 16 bytes
ALIGN = 64
STATE_FILE = "state.json"
MANIFEST_FILE = "manifest.json"
TMP_MARK = ".tmp-"

#: The steps of a write, in order; ``BRICKS_CHECKPOINT_FAULT`` names one.
WRITE_STEPS = (
    "mkdir",  # the temporary directory exists, empty
    "arrays_partial",  # half of arrays.bin is written
    "arrays",  # arrays.bin written and fsynced
    "state",  # state.json written and fsynced
    "manifest_partial",  # half of manifest.json is written
    "manifest",  # manifest.json written and fsynced
    "dir_fsync",  # the temporary directory fsynced, not yet renamed
    "rename",  # renamed into place, parent not yet fsynced
    "committed",  # parent fsynced: the checkpoint is durable
)

#: dtypes written as they are; others (bfloat16 ...) are stored as raw bits.
_NATIVE_KINDS = "biuf"  # bool, signed, unsigned, float (complex "c" too)
_SAFE_DTYPE_NAMES = frozenset(
    [
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
        "complex64",
        "complex128",
        "bfloat16",
        "float8_e4m3fn",
        "float8_e5m2",
        "float8_e4m3b11fnuz",
        "float8_e4m3fnuz",
        "float8_e5m2fnuz",
        "int4",
        "uint4",
    ]
)
_HASH_CHUNK = 1 << 22  # hashing and writing go in pieces of 4 MiB (the GIL is released)


# -- fault injection -----------------------------------------------------------


def _fault(step: str) -> None:
    """SIGKILL this process at ``step`` when ``BRICKS_CHECKPOINT_FAULT`` names it;
    sleep there when ``BRICKS_CHECKPOINT_DELAY`` is ``<step>:<seconds>`` (a slow disk)."""
    wanted = os.environ.get("BRICKS_CHECKPOINT_FAULT")
    if wanted and wanted == step:
        os.kill(os.getpid(), signal.SIGKILL)
    delay = os.environ.get("BRICKS_CHECKPOINT_DELAY", "")
    if delay.partition(":")[0] == step:
        time.sleep(float(delay.partition(":")[2] or 0))


def _dumps(value: Any, what: str) -> bytes:
    try:
        text = json.dumps(value, sort_keys=True, allow_nan=True, separators=(",", ":"))
    except (TypeError, ValueError) as error:
        raise CheckpointWriteError(
            f"the {what} is not JSON-serializable ({error}); extensions' get_state() must "
            "return dicts of strings, numbers, booleans, lists and None"
        ) from None
    # NaN/Infinity are allowed in values (a diverged cost is logged as NaN)
    return text.encode()


# -- durable file writing ------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_bytes(path: Path, data: bytes, partial_step: str | None = None) -> None:
    with open(path, "wb") as f:
        if partial_step is not None and os.environ.get("BRICKS_CHECKPOINT_FAULT") == partial_step:
            f.write(data[: len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
            _fault(partial_step)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _write_arrays(path: Path, stored: list[np.ndarray]) -> tuple[int, str]:
    """Write the header and arrays into ``path`` in one pass that also hashes
    them; fsync; return ``(size, sha256)``.

    Each 4 MiB piece is hashed, then written with ``os.write``: both release
    the GIL, so a training loop in the main thread keeps running.
    """
    digest = hashlib.sha256()
    partial = os.environ.get("BRICKS_CHECKPOINT_FAULT") == "arrays_partial"
    total = _aligned_end(stored)
    limit = max(total // 2, 1) if partial else total
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        pieces: list[memoryview] = [memoryview(ARRAYS_MAGIC)]
        offset = len(ARRAYS_MAGIC)
        for array in stored:
            pad = -offset % ALIGN
            if pad:
                pieces.append(memoryview(bytes(pad)))
            flat = memoryview(array.reshape(-1).view(np.uint8)) if array.size else memoryview(b"")
            pieces.append(flat)
            offset += pad + array.nbytes
        for piece in pieces:
            for start in range(0, len(piece), _HASH_CHUNK):
                chunk = piece[start : start + _HASH_CHUNK]
                if written + len(chunk) > limit:
                    chunk = chunk[: limit - written]
                digest.update(chunk)
                _write_all(fd, chunk)
                written += len(chunk)
                if written >= limit and partial:
                    os.fsync(fd)
                    _fault("arrays_partial")
        os.fsync(fd)
    finally:
        os.close(fd)
    return written, digest.hexdigest()


def _aligned_end(stored: list[np.ndarray]) -> int:
    offset = len(ARRAYS_MAGIC)
    for array in stored:
        offset += -offset % ALIGN + array.nbytes
    return offset


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _encode_array(name: str, value: Any) -> tuple[np.ndarray, str]:
    """Return ``(array to store, dtype name)``; exotic float types go as raw bits."""
    array = np.asarray(value)
    kind = array.dtype.kind
    dtype_name = array.dtype.name
    if kind == "O" or array.dtype.hasobject:
        raise CheckpointWriteError(
            f"array {name!r} has dtype object; checkpoints hold only numeric arrays "
            "(object arrays would need pickle)"
        )
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    if kind in _NATIVE_KINDS + "c" and array.dtype.fields is None:
        return (array if array.flags.c_contiguous else array.copy(order="C")), dtype_name
    if dtype_name in _SAFE_DTYPE_NAMES and array.dtype.itemsize in (1, 2, 4, 8):
        bits = np.dtype(f"u{array.dtype.itemsize}")
        return array.copy(order="C").view(bits), dtype_name
    raise CheckpointWriteError(
        f"array {name!r} has dtype {array.dtype} (kind {kind!r}); checkpoints hold bool, "
        "integer, float and complex arrays only"
    )


def _decode_dtype(name: str, where: str) -> np.dtype:
    if name not in _SAFE_DTYPE_NAMES:
        raise UnsafeCheckpointError(f"{where}: dtype {name!r} is not a plain numeric dtype")
    try:
        return np.dtype(name)
    except TypeError:
        import ml_dtypes  # installed with jax; gives bfloat16, float8 ...

        return np.dtype(getattr(ml_dtypes, name))


def write_checkpoint(
    directory: str | os.PathLike,
    name: str,
    state: Mapping[str, Any],
    arrays: Mapping[str, Any],
    meta: Mapping[str, Any] | None = None,
    before_commit: Callable[[str | None], None] | None = None,
) -> Path:
    """Write one checkpoint atomically and durably; return its final path.

    Args:
        directory: the run's checkpoint directory (created if missing).
        name: the checkpoint's directory name (e.g. ``"ckpt-000000123"``);
            it must not exist yet.
        state: a JSON-able mapping (the main loop's state).
        arrays: ``{name: array}`` of numeric arrays (numpy or jax).
        meta: JSON-able metadata (step, versions, configuration hash, metrics).
        before_commit: called once everything is written and fsynced, just
            before the rename that commits it, with ``None``; or, when the
            write failed, with what went wrong (before the error is raised).
            It may raise to keep the checkpoint uncommitted (the temporary
            directory is then removed). A multi-process run waits there for
            every process (:class:`bricks.distributed.SaveCommit`).

    Raises:
        CheckpointWriteError: an object array or a non-JSON value; or the
            write failed (a full disk: the message names the directory and
            its free space, and the temporary directory is removed at once).
    """
    directory = Path(directory)
    final = directory / name
    if TMP_MARK in name or "/" in name:
        raise CheckpointWriteError(f"bad checkpoint name {name!r}")
    if final.exists():
        raise CheckpointWriteError(f"checkpoint {final} exists already; names are never reused")
    index: dict[str, dict[str, Any]] = {}
    stored: list[np.ndarray] = []
    offset = len(ARRAYS_MAGIC)
    for key, value in arrays.items():
        array, dtype_name = _encode_array(key, value)
        offset += -offset % ALIGN
        index[str(key)] = {
            "offset": offset,
            "nbytes": int(array.nbytes),
            "shape": list(np.shape(value)),
            "dtype": dtype_name,
        }
        stored.append(array)
        offset += array.nbytes
    state_bytes = _dumps(
        {"format": FORMAT, "meta": dict(meta or {}), "arrays": index, "state": state},
        "checkpoint state",
    )
    tmp = directory / f"{name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        _fault("mkdir")
        arrays_size, arrays_sha = _write_arrays(tmp / ARRAYS_FILE, stored)
        _fault("arrays")
        _write_bytes(tmp / STATE_FILE, state_bytes)
        _fault("state")
        files = {
            ARRAYS_FILE: {"size": arrays_size, "sha256": arrays_sha},
            STATE_FILE: {
                "size": len(state_bytes),
                "sha256": hashlib.sha256(state_bytes).hexdigest(),
            },
        }
        manifest = _dumps({"format": FORMAT, "files": files}, "manifest")
        _write_bytes(tmp / MANIFEST_FILE, manifest, partial_step="manifest_partial")
        _fault("manifest")
        _fsync_dir(tmp)
        _fault("dir_fsync")
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)  # at once: a full disk must not fill up more
        needed = _aligned_end(stored) + len(state_bytes)
        failure = CheckpointWriteError(
            f"writing checkpoint {name} into {directory} failed: {error.strerror or error} "
            f"({_free_space(directory)} free there, this checkpoint needs about "
            f"{_human(needed)}); the previous checkpoints are untouched"
        )
        if before_commit is not None:
            before_commit(str(failure))
        raise failure from error
    try:
        if before_commit is not None:
            before_commit(None)
        os.rename(tmp, final)
    except BaseException as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(error, OSError):
            raise CheckpointWriteError(
                f"committing checkpoint {name} into {directory} failed: {error}; the previous "
                "checkpoints are untouched"
            ) from error
        raise
    _fault("rename")
    _fsync_dir(directory)
    _fault("committed")
    return final


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _free_space(directory: Path) -> str:
    for candidate in (directory, *directory.parents):
        try:
            stats = os.statvfs(candidate)
        except OSError:
            continue
        return _human(stats.f_bavail * stats.f_frsize)
    return "unknown space"


# -- reading ---------------------------------------------------------------------


def _read_json_file(path: Path, checkpoint: Path) -> Any:
    return safe_json_loads(
        _read_json_bytes(path, checkpoint), where=f"checkpoint {checkpoint}: {path.name}"
    )


def _read_json_bytes(path: Path, checkpoint: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_JSON_BYTES:
                raise CheckpointCorruptError(
                    f"checkpoint {checkpoint}: {path.name} is {size} bytes, more than the cap "
                    f"of {MAX_JSON_BYTES}"
                )
            data = f.read()
    except FileNotFoundError:
        raise CheckpointCorruptError(
            f"checkpoint {checkpoint}: file {path.name} is missing"
        ) from None
    except IsADirectoryError:
        raise CheckpointCorruptError(
            f"checkpoint {checkpoint}: {path.name} is a directory, not a file"
        ) from None
    return data


def verify_checkpoint(path: str | os.PathLike) -> list[str]:
    """Check a checkpoint's files against its manifest; return the problems found.

    An empty list means every file listed in ``manifest.json`` exists with the
    recorded size and sha256. Each problem names the file.
    """
    path = Path(path)
    if not path.is_dir():
        return [f"{path} is not a directory"]
    try:
        manifest = _read_json_file(path / MANIFEST_FILE, path)
    except (CheckpointCorruptError, UnsafeCheckpointError) as error:
        return [str(error)]
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or manifest.get("format") != FORMAT:
        return [f"{path / MANIFEST_FILE}: not a {FORMAT} manifest"]
    if len(files) > 16:
        return [f"{path / MANIFEST_FILE}: lists {len(files)} files; a checkpoint has 3"]
    problems = []
    for required in (ARRAYS_FILE, STATE_FILE):
        if required not in files:
            problems.append(f"{path / MANIFEST_FILE}: does not list {required}")
    for fname, entry in files.items():
        fpath = path / str(fname)
        if not isinstance(entry, dict) or Path(str(fname)).name != fname:
            problems.append(f"{path / MANIFEST_FILE}: bad entry for {fname!r}")
            continue
        if not fpath.is_file():
            problems.append(f"{fpath}: missing")
            continue
        size = fpath.stat().st_size
        if size != entry.get("size") or not isinstance(entry.get("sha256"), str):
            problems.append(
                f"{fpath}: size {size} bytes, manifest says {entry.get('size')} (truncated?)"
            )
            continue
        if _sha256(fpath) != entry.get("sha256"):
            problems.append(f"{fpath}: sha256 differs from the manifest (corrupted)")
    return problems


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``state.json`` of a checkpoint (no arrays loaded, no checks)."""
    path = Path(path)
    data = _read_json_bytes(path / STATE_FILE, path)
    entries = data.count(b'"offset"')  # counted before parsing: cheap on hostile sizes
    if entries > MAX_INDEX_ENTRIES:
        raise CheckpointCorruptError(
            f"checkpoint {path}: {STATE_FILE} indexes about {entries} arrays, more than the "
            f"cap of {MAX_INDEX_ENTRIES}"
        )
    doc = safe_json_loads(data, where=f"checkpoint {path}: {STATE_FILE}")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise CheckpointCorruptError(
            f"checkpoint {path}: {STATE_FILE} is not in format {FORMAT!r} (found {found!r})"
        )
    if not isinstance(doc.get("arrays"), dict):
        raise CheckpointCorruptError(f"checkpoint {path}: {STATE_FILE} lacks the array index")
    if len(doc["arrays"]) > MAX_INDEX_ENTRIES:
        raise CheckpointCorruptError(
            f"checkpoint {path}: {STATE_FILE} indexes {len(doc['arrays'])} arrays, more than "
            f"the cap of {MAX_INDEX_ENTRIES}"
        )
    return doc


def _read_array(f: Any, size: int, entry: Any, where: str) -> np.ndarray:
    """One array of the index from the open ``arrays.bin`` (of ``size`` bytes)."""
    if not isinstance(entry, dict):
        raise CheckpointCorruptError(f"{where}: bad index entry {entry!r}")
    dtype = _decode_dtype(str(entry.get("dtype")), where)
    if dtype.hasobject or dtype.fields is not None:
        raise UnsafeCheckpointError(f"{where} has dtype {dtype}; refused")
    shape, offset, nbytes = entry.get("shape"), entry.get("offset"), entry.get("nbytes")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_NDIM
        or not all(isinstance(n, int) and 0 <= n <= MAX_DIM for n in shape)
        or not isinstance(offset, int)
        or not isinstance(nbytes, int)
        or offset < len(ARRAYS_MAGIC)
        or nbytes != math.prod(shape) * dtype.itemsize
    ):
        raise CheckpointCorruptError(
            f"{where}: index entry {entry!r} is inconsistent (shape, dtype and nbytes disagree)"
        )
    if offset + nbytes > size:
        raise CheckpointCorruptError(
            f"{where}: bytes {offset}..{offset + nbytes} lie beyond the end of {ARRAYS_FILE} "
            f"({size} bytes; truncated?)"
        )
    stored = dtype if dtype.kind in _NATIVE_KINDS + "c" else np.dtype(f"u{dtype.itemsize}")
    out = np.empty(shape, stored.newbyteorder("<"))
    if nbytes:
        f.seek(offset)
        if f.readinto(memoryview(out.reshape(-1).view(np.uint8))) != nbytes:
            raise CheckpointCorruptError(f"{where}: {ARRAYS_FILE} ended early (truncated?)")
    out = out.astype(out.dtype.newbyteorder("="), copy=False)
    return out if out.dtype == dtype else out.view(dtype)


def read_checkpoint(
    path: str | os.PathLike, verify: bool = True, names: Any = None
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
    """Read a checkpoint: ``(state, arrays, meta)``.

    Args:
        path: the checkpoint directory (``.../ckpt-000000123``).
        verify: check sizes and sha256 sums against the manifest first.
        names: if given, a predicate on array names; only those are loaded.

    Raises:
        CheckpointNotFoundError: ``path`` is no directory.
        CheckpointCorruptError: a file is missing, truncated or corrupted.
        UnsafeCheckpointError: an arrays file not in the bricks format (a pickle),
            an object dtype or class names in metadata.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointNotFoundError(f"no checkpoint directory at {path}")
    if verify:
        problems = verify_checkpoint(path)
        if problems:
            raise CheckpointCorruptError(f"checkpoint {path} is damaged: " + "; ".join(problems))
    doc = read_metadata(path)
    arrays_file = path / ARRAYS_FILE
    arrays: dict[str, np.ndarray] = {}
    try:
        with open(arrays_file, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if f.read(len(ARRAYS_MAGIC)) != ARRAYS_MAGIC:
                raise UnsafeCheckpointError(
                    f"checkpoint {path}: {ARRAYS_FILE} does not start with the bricks array "
                    "header (a pickle, .npy or other file put in its place?); refused, nothing "
                    "in it is interpreted"
                )
            for name, entry in doc["arrays"].items():
                if names is not None and not names(name):
                    continue
                arrays[name] = _read_array(f, size, entry, f"checkpoint {path}: array {name!r}")
    except FileNotFoundError:
        raise CheckpointCorruptError(f"checkpoint {path}: {ARRAYS_FILE} is missing") from None
    except OSError as error:
        raise CheckpointCorruptError(
            f"checkpoint {path}: {ARRAYS_FILE} unreadable ({error})"
        ) from None
    state = doc.get("state")
    if not isinstance(state, dict):
        raise CheckpointCorruptError(f"checkpoint {path}: {STATE_FILE} has no state object")
    meta = doc.get("meta") or {}
    if not isinstance(meta, dict):
        raise CheckpointCorruptError(f"checkpoint {path}: {STATE_FILE} has no meta object")
    return state, arrays, dict(meta)
