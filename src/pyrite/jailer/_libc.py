"""The few system calls the jailer needs that Python's os module (3.11) lacks."""
from __future__ import annotations

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_BIND, MS_REC, MS_SLAVE = 0x1000, 0x4000, 0x80000
MNT_DETACH = 2
SYS_PIVOT_ROOT = 155  # x86-64


def _check(ret: int) -> None:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags))


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(fd, nstype))


def mount(source: str | None, target: str, fstype: str | None, flags: int) -> None:
    enc = (lambda s: None if s is None else os.fsencode(s))
    _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), None))


def umount2(target: str, flags: int) -> None:
    _check(_libc.umount2(os.fsencode(target), flags))


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_libc.syscall(SYS_PIVOT_ROOT, os.fsencode(new_root), os.fsencode(put_old)))
