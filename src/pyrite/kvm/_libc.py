"""libc ioctl through ctypes: foreign calls release the GIL, so vCPU threads run in parallel."""
from __future__ import annotations

import ctypes

_libc = ctypes.CDLL(None, use_errno=True)

# A private function object so argtypes set here cannot clash with other users of libc.ioctl.
ioctl = _libc.ioctl
ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)
ioctl.restype = ctypes.c_int

get_errno = ctypes.get_errno


def call(fd: int, request: int, arg=None, name: str | None = None) -> int:
    """ioctl(fd, request, arg) -> its non-negative result, or KvmError naming the ioctl.

    `arg` is None, an int, or a ctypes object (passed by reference).
    """
    if isinstance(arg, ctypes._SimpleCData | ctypes.Structure | ctypes.Union | ctypes.Array):
        arg = ctypes.byref(arg)
    ret = ioctl(fd, request, arg)
    if ret < 0:
        from .errors import KvmError
        from .ioctls import IOCTL_NAMES
        raise KvmError(name or IOCTL_NAMES.get(request, f"ioctl {request:#x}"), get_errno())
    return ret
