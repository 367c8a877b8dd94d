"""The SIGSYS handler: a system call refused by a filter (action "trap") ends the process with
Firecracker's log line and exit code, and the line also names the call and the thread:

    Shutting down VM after intercepting a bad syscall (257): openat, in thread fc_vcpu 0.

Python's `signal` module gives a handler no siginfo (where the kernel puts the system call's
number), so the handler is a ctypes callback installed with sigaction(SA_SIGINFO). It runs in
the thread that made the call, uses only calls every filter allows (write, futex, exit_group)
and names the call from a table made when it is installed (no allocation in libseccomp then).
"""
from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable

EXIT_BAD_SYSCALL = 148          # Firecracker's FcExitCode::BadSyscall
EXIT_UNEXPECTED_ERROR = 1
SIGSYS = 31
SYS_SECCOMP = 1                 # si_code of a SIGSYS raised by a seccomp filter
_SA_SIGINFO = 4
_SI_CODE_OFFSET, _SI_SYSCALL_OFFSET = 8, 24   # siginfo_t on x86_64 (_sigsys._syscall)
_MAX_SYSCALL = 512

_HANDLER_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)


class _Sigaction(ctypes.Structure):
    """glibc's struct sigaction on x86_64."""
    _fields_ = [("sa_sigaction", ctypes.c_void_p), ("sa_mask", ctypes.c_ulong * 16),
                ("sa_flags", ctypes.c_int), ("sa_restorer", ctypes.c_void_p)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.sigaction.argtypes = (ctypes.c_int, ctypes.POINTER(_Sigaction), ctypes.POINTER(_Sigaction))
_installed = None   # the callback object: ctypes frees a callback nobody holds


def message(nr: int, name: str | None, thread: str) -> str:
    return f"Shutting down VM after intercepting a bad syscall ({nr}): {name or 'unknown'}, in thread {thread}."


def install_handler(report: Callable[[str], None], names: list[str | None] | None = None) -> None:
    """From now on a trapped system call calls `report(line)`, then ends the process with exit
    code 148. `report` must not take locks another thread may hold. `names`: the system calls'
    names by number (pyrite.seccomp.cache keeps them), asked of libseccomp when None."""
    global _installed
    if names is None:
        from .libseccomp import syscall_name
        names = [syscall_name(nr) for nr in range(_MAX_SYSCALL)]

    def on_sigsys(signum: int, info: int, _context: int) -> None:
        code = ctypes.c_int.from_address(info + _SI_CODE_OFFSET).value
        if code != SYS_SECCOMP:
            os._exit(EXIT_UNEXPECTED_ERROR)
        nr = ctypes.c_int.from_address(info + _SI_SYSCALL_OFFSET).value
        try:
            report(message(nr, names[nr] if 0 <= nr < _MAX_SYSCALL else None, threading.current_thread().name))
        finally:
            os._exit(EXIT_BAD_SYSCALL)

    callback = _HANDLER_TYPE(on_sigsys)
    action = _Sigaction()
    action.sa_sigaction = ctypes.cast(callback, ctypes.c_void_p).value
    action.sa_flags = _SA_SIGINFO
    for i in range(16):
        action.sa_mask[i] = ~0 & 0xFFFFFFFFFFFFFFFF   # nothing else runs in the thread meanwhile
    if _libc.sigaction(SIGSYS, ctypes.byref(action), None) != 0:
        raise OSError(ctypes.get_errno(), f"sigaction(SIGSYS): {os.strerror(ctypes.get_errno())}")
    _installed = callback
