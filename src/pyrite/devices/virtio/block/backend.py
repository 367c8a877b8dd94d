"""Block backends: where a virtio-blk device's sectors live.

`BlockBackend` is the interface the device model uses; `FileBackend` serves a raw image file
(or a host block device) with os.preadv/os.pwritev straight into and out of guest memory
views, so the only copy of the data is the one the kernel makes, and fdatasync for flush.
This is the only module of the block device that sees an fd.
"""
from __future__ import annotations

import errno
import os
from collections.abc import Sequence

# Linux's IOV_MAX; a chain can hold more buffers than one preadv takes.
IOV_MAX = 1024


class BlockBackend:
    """What the block device needs from storage. Offsets are in bytes; failures raise OSError."""

    size: int                         # bytes

    def readinto(self, offset: int, buffers: Sequence[memoryview]) -> None:
        """Fill `buffers`, in order, from `offset`."""
        raise NotImplementedError

    def write(self, offset: int, buffers: Sequence[memoryview]) -> None:
        """Write `buffers`, in order, at `offset`."""
        raise NotImplementedError

    def flush(self) -> None:
        """Make every completed write durable."""
        raise NotImplementedError

    def disk_id(self) -> bytes:
        """The identifier VIRTIO_BLK_T_GET_ID reports (up to 20 bytes)."""
        return b""


def _advance(buffers: list[memoryview], n: int) -> list[memoryview]:
    """`buffers` without their first `n` bytes (after a short read or write)."""
    while n and buffers:
        if n >= len(buffers[0]):
            n -= len(buffers[0])
            buffers = buffers[1:]
        else:
            buffers = [buffers[0][n:]] + buffers[1:]
            n = 0
    return buffers


class FileBackend(BlockBackend):
    """A raw disk image at `path`, opened read-only or read-write."""

    def __init__(self, path: str | os.PathLike, read_only: bool = False):
        self.path = os.fspath(path)
        self.read_only = read_only
        flags = (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC
        try:
            self.fd = os.open(self.path, flags)
        except OSError as e:
            raise BlockBackendError(f"block image {self.path}: cannot open "
                                    f"{'read-only' if read_only else 'read-write'}: {e.strerror}") from None
        try:
            self.size = os.lseek(self.fd, 0, os.SEEK_END)   # also right for a host block device
            st = os.fstat(self.fd)
        except OSError as e:
            os.close(self.fd)
            raise BlockBackendError(f"block image {self.path}: {e.strerror}") from None
        # As Firecracker (after kvmtool): st_dev, st_rdev and st_ino as decimal digits.
        self._disk_id = f"{st.st_dev}{st.st_rdev}{st.st_ino}".encode()[:20]

    def __repr__(self) -> str:
        return f"FileBackend({self.path!r}, read_only={self.read_only}, size={self.size})"

    def disk_id(self) -> bytes:
        return self._disk_id

    def readinto(self, offset: int, buffers: Sequence[memoryview]) -> None:
        pending = [b for b in buffers if len(b)]
        if len(pending) == 1 and os.preadv(self.fd, pending, offset) == len(pending[0]):
            return                   # the usual case: one buffer, read whole
        while pending:
            n = os.preadv(self.fd, pending[:IOV_MAX], offset)
            if n == 0:
                raise OSError(errno.EIO, f"{self.path}: end of file at byte {offset}")
            offset += n
            pending = _advance(pending, n)

    def write(self, offset: int, buffers: Sequence[memoryview]) -> None:
        pending = [b for b in buffers if len(b)]
        while pending:
            n = os.pwritev(self.fd, pending[:IOV_MAX], offset)
            offset += n
            pending = _advance(pending, n)

    def flush(self) -> None:
        os.fdatasync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class BlockBackendError(Exception):
    """A backing file that cannot be used; the message names it."""
