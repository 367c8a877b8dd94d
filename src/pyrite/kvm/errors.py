"""KvmError: a failed KVM call, naming the ioctl (or file) and the errno."""
from __future__ import annotations

import os


class KvmError(Exception):
    """`ioctl` is the ioctl's name (or the device path); `errno` the C errno (0 if none)."""

    def __init__(self, ioctl: str, errno: int = 0, detail: str = ""):
        self.ioctl = ioctl
        self.errno = errno
        message = f"{ioctl}: "
        message += f"{detail}" if detail else f"{os.strerror(errno)} (errno {errno})"
        if detail and errno:
            message += f" (errno {errno})"
        super().__init__(message)
