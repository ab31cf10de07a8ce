"""Shared-memory transport of batches from worker processes to the main process.

Batches come back from worker processes through shared memory: the main
process owns a few slots in ``/dev/shm`` and names one with each request;
the worker writes the batch's numeric arrays there and sends only their
dtypes, shapes and offsets. The arrays handed out are views of the slot,
and a slot is given to a new request only when nothing refers to the
batch read into it any more, so a batch kept by the caller stays intact.
Arrays that are not plain numeric arrays (object arrays, lists) and
batches larger than a slot travel by pickling.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import secrets
import sys
from typing import Any

import numpy as np

__all__ = ["Slots", "Writer"]

_SHM_DIR = "/dev/shm"
_ALIGN = 64


def _layout(data: tuple) -> tuple[list, int]:
    """Offsets in a slot of the numeric arrays of ``data`` (``None`` for the others)."""
    offsets: list[int | None] = []
    total = 0
    for x in data:
        if type(x) is np.ndarray and not x.dtype.hasobject:
            offsets.append(total)
            total += -(-x.nbytes // _ALIGN) * _ALIGN
        else:
            offsets.append(None)
    return offsets, total


class _Slot:
    """One shared-memory buffer, owned by the main process."""

    def __init__(self, size: int) -> None:
        self.name = f"/bricks-{os.getpid()}-{secrets.token_hex(6)}"
        fd = os.open(_SHM_DIR + self.name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.posix_fallocate(fd, 0, size)  # ENOSPC now, not SIGBUS in a worker later
            self.mm = mmap.mmap(fd, size)
        except BaseException:
            os.unlink(_SHM_DIR + self.name)
            raise
        finally:
            os.close(fd)
        from multiprocessing import resource_tracker

        resource_tracker.register(self.name, "shared_memory")  # unlinked even after SIGKILL
        self.size = size
        self.busy = False
        self.view_type = ctypes.c_char * size
        self.live: Any = None  # the buffer the arrays of the last batch read here refer to

    def free(self) -> bool:
        if self.busy:
            return False
        if self.live is not None and sys.getrefcount(self.live) > 2:
            return False  # a batch read here is still referred to
        self.live = None
        return True

    def unpack(self, headers: list, data: list) -> tuple:
        # A fresh ctypes view per batch: numpy keeps it as the arrays' base (a memoryview
        # would be unwrapped to the mmap), so its reference count says whether the batch
        # is still in use.
        view = self.live = self.view_type.from_buffer(self.mm)
        return tuple(
            x if h is None else np.ndarray(h[1], h[0], buffer=view, offset=h[2])
            for h, x in zip(headers, data, strict=True)
        )

    def unlink(self) -> None:
        from multiprocessing import resource_tracker

        try:
            os.unlink(_SHM_DIR + self.name)
        except FileNotFoundError:
            pass
        resource_tracker.unregister(self.name, "shared_memory")
        if self.live is None or sys.getrefcount(self.live) <= 2:
            self.live = None
            self.mm.close()  # else the batches still read keep the mapping alive


class Slots:
    """The main process's slots: sized from the batches seen, reused once released."""

    def __init__(self, cap: int, enabled: bool) -> None:
        self.cap, self.enabled = cap, enabled and os.path.isdir(_SHM_DIR)
        self.size = 0
        self.slots: dict[str, _Slot] = {}
        self.dropped: list[str] = []  # unlinked since the workers were last told

    def take(self) -> _Slot | None:
        if not self.enabled or self.size == 0:
            return None
        for slot in list(self.slots.values()):
            if slot.free():
                if slot.size >= self.size:
                    slot.busy = True
                    return slot
                del self.slots[slot.name]  # too small for the batches now seen
                slot.unlink()
                self.dropped.append(slot.name)
        if len(self.slots) >= self.cap:
            return None  # the caller keeps many batches: pickle the next ones
        try:
            slot = _Slot(self.size)
        except OSError as error:
            if error.errno not in (errno.ENOSPC, errno.ENOMEM, errno.EMFILE, errno.ENOENT):
                raise
            self.enabled = False  # a full /dev/shm: batches travel by pickling
            return None
        slot.busy = True
        self.slots[slot.name] = slot
        return slot

    def learn(self, need: int) -> None:
        if need > self.size:
            self.size = -(-need // 4096) * 4096

    def release(self, name: str | None) -> _Slot | None:
        slot = self.slots.get(name) if name is not None else None
        if slot is not None:
            slot.busy = False
        return slot

    def close(self) -> None:
        for slot in self.slots.values():
            slot.unlink()
        self.slots = {}


class Writer:
    """In a worker process: the slots it was named, mapped once each."""

    def __init__(self) -> None:
        self.maps: dict[str, mmap.mmap] = {}

    def pack(self, data: tuple, slot: tuple | None) -> tuple:
        offsets, total = _layout(data)
        if slot is None or total > slot[1] or total == 0:
            return ("pickled", data, total)
        name, size = slot
        mm = self.maps.get(name)
        if mm is None:
            fd = os.open(_SHM_DIR + name, os.O_RDWR)
            try:
                mm = self.maps[name] = mmap.mmap(fd, size)
            finally:
                os.close(fd)
        headers, rest = [], []
        for x, off in zip(data, offsets, strict=True):
            if off is None:
                headers.append(None)
                rest.append(x)
            else:
                np.ndarray(x.shape, x.dtype, buffer=mm, offset=off)[...] = x
                headers.append((x.dtype, x.shape, off))
                rest.append(None)
        return ("shm", headers, rest, total)

    def forget(self, names: Any) -> None:
        for name in names:
            mm = self.maps.pop(name, None)
            if mm is not None:
                mm.close()

    def close(self) -> None:
        self.forget(list(self.maps))
