"""Rebase: a Diff snapshot's memory file written onto the memory file it follows, in place
(Firecracker's `snapshot-editor edit-memory rebase`). The diff's data is found as its
snapshot-editor finds it, with SEEK_DATA / SEEK_HOLE: the diff holds its dirty pages as data
and holes elsewhere. Afterwards the base is the full memory at the diff's time; layers are
rebased in the order they were created."""
from __future__ import annotations

import errno
import os
import stat


class RebaseError(Exception):
    """Files that cannot be rebased; the text names the file and why."""


def rebase(base_path: str, diff_path: str) -> int:
    """Copy the data of `diff_path` onto `base_path` at the same offsets; the bytes copied."""
    base_fd = _open(base_path, os.O_WRONLY, "base memory file")
    try:
        diff_fd = _open(diff_path, os.O_RDONLY, "diff memory file")
        try:
            _check_pair(base_path, base_fd, diff_path, diff_fd)
            return _copy_data(base_fd, diff_fd, diff_path)
        finally:
            os.close(diff_fd)
    finally:
        os.close(base_fd)


def data_extents(fd: int, size: int) -> list[tuple[int, int]]:
    """[start, end) of each data extent of the file (SEEK_DATA / SEEK_HOLE)."""
    extents, cursor = [], 0
    while cursor < size:
        try:
            start = os.lseek(fd, cursor, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:      # no data past `cursor`
                break
            raise
        end = os.lseek(fd, start, os.SEEK_HOLE)
        extents.append((start, end))
        cursor = end
    return extents


def _open(path: str, flags: int, what: str) -> int:
    try:
        fd = os.open(path, flags | os.O_CLOEXEC)
    except FileNotFoundError:
        raise RebaseError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise RebaseError(f"{what} {path}: is a directory") from None
    except OSError as e:
        raise RebaseError(f"{what} {path}: cannot open: {e.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RebaseError(f"{what} {path}: not a regular file")
    return fd


def _check_pair(base_path: str, base_fd: int, diff_path: str, diff_fd: int) -> None:
    base, diff = os.fstat(base_fd), os.fstat(diff_fd)
    if os.path.samestat(base, diff):
        raise RebaseError(f"diff memory file {diff_path} is the base memory file {base_path}")
    if base.st_size != diff.st_size:
        raise RebaseError(f"diff memory file {diff_path} is {diff.st_size} bytes, the base memory file "
                          f"{base_path} {base.st_size}: a diff applies to a memory file of its own size")


def _copy_data(base_fd: int, diff_fd: int, diff_path: str) -> int:
    size = os.fstat(diff_fd).st_size
    try:
        extents = data_extents(diff_fd, size)
    except OSError as e:
        raise RebaseError(f"diff memory file {diff_path}: cannot find its data: {e.strerror}") from None
    # A file system that does not report holes shows one extent over the whole file, with
    # fewer blocks than that allocated: the holes would be copied as zeros over the base.
    if extents == [(0, size)] and os.fstat(diff_fd).st_blocks * 512 < size:
        raise RebaseError(f"diff memory file {diff_path}: its file system does not report holes "
                          f"(SEEK_HOLE), so its pages cannot be told from its holes")
    copied = 0
    for start, end in extents:
        os.lseek(base_fd, start, os.SEEK_SET)
        offset = start
        while offset < end:
            try:
                n = os.sendfile(base_fd, diff_fd, offset, end - offset)
            except OSError as e:
                raise RebaseError(f"writing {diff_path}'s data at {offset:#x} onto the base: "
                                  f"{e.strerror}") from None
            if n == 0:
                raise RebaseError(f"diff memory file {diff_path}: ended at {offset:#x} while being read")
            offset += n
        copied += end - start
    return copied
