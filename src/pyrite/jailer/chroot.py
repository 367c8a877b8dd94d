"""Into the jail as Firecracker's chroot.rs does: a new mount namespace, every mount made a
slave (host mounts still propagate in, nothing propagates out), the jail root bind-mounted on
itself, pivot_root into it, and the old root detached and removed. After this, the process's
view of the file system is the jail root and nothing else."""
from __future__ import annotations

import os

from . import _libc
from .errors import JailerError, io_text

OLD_ROOT = "old_root"


def chroot(path: str) -> None:
    steps = (
        (lambda: _libc.unshare(_libc.CLONE_NEWNS), "Failed to unshare into new mount namespace"),
        (lambda: _libc.mount(None, "/", None, _libc.MS_SLAVE | _libc.MS_REC),
         "Failed to change the propagation type to slave"),
        (lambda: _libc.mount(path, path, None, _libc.MS_BIND | _libc.MS_REC),
         "Failed to bind mount the jail root directory"),
        (lambda: os.chdir(path), "Failed to change current directory"),
        (lambda: os.mkdir(OLD_ROOT, 0o600), "Failed to create the jail root directory before pivoting root"),
        (lambda: _libc.pivot_root(".", OLD_ROOT), "Failed to pivot root"),
        (lambda: os.chdir("/"), "Failed to chdir into chroot directory"),
        (lambda: _libc.umount2(OLD_ROOT, _libc.MNT_DETACH), "Failed to unmount the old jail root"),
        (lambda: os.rmdir(OLD_ROOT), "Failed to remove old jail root directory"),
    )
    for step, failure in steps:
        try:
            step()
        except OSError as e:
            raise JailerError(f"{failure}: {io_text(e)}") from None
