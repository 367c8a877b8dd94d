"""libseccomp (Debian's libseccomp2) through ctypes: the few calls that turn a list of rules
into a BPF program for this machine's architecture, and system call names and numbers.

Nothing here installs a filter: `pyrite.seccomp.install` loads the program into a thread.
"""
from __future__ import annotations

import ctypes
import os

# seccomp.h: actions.
ACT_KILL_PROCESS = 0x80000000
ACT_KILL_THREAD = 0x00000000
ACT_TRAP = 0x00030000
ACT_LOG = 0x7FFC0000
ACT_ALLOW = 0x7FFF0000


def act_errno(value: int) -> int:
    return 0x00050000 | (value & 0xFFFF)


def act_trace(value: int) -> int:
    return 0x7FF00000 | (value & 0xFFFF)


# enum scmp_compare
CMP_NE, CMP_LT, CMP_LE, CMP_EQ, CMP_GE, CMP_GT, CMP_MASKED_EQ = 1, 2, 3, 4, 5, 6, 7

ARCH_NATIVE = 0
_ATTR_CTL_NNP = 3        # SCMP_FLTATR_CTL_NNP: pyrite.seccomp.install sets no_new_privs itself
_ATTR_CTL_OPTIMIZE = 8   # SCMP_FLTATR_CTL_OPTIMIZE: 2 = a binary tree of system calls
_NR_SCMP_ERROR = -1


class LibseccompError(Exception):
    """libseccomp is missing or refused a rule; the text names what."""


class ArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp"""
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


class _Version(ctypes.Structure):
    """struct scmp_version"""
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


_lib = None


def library() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        try:
            lib = ctypes.CDLL("libseccomp.so.2")   # the soname: find_library would run ldconfig
        except OSError as e:
            raise LibseccompError(f"libseccomp is not installed ({e}); install Debian's libseccomp2 "
                                  "or run with --no-seccomp") from None
        lib.seccomp_init.argtypes = (ctypes.c_uint32,)
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_release.argtypes = (ctypes.c_void_p,)
        lib.seccomp_release.restype = None
        lib.seccomp_attr_set.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32)
        lib.seccomp_rule_add_array.argtypes = (ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                               ctypes.POINTER(ArgCmp))
        lib.seccomp_export_bpf.argtypes = (ctypes.c_void_p, ctypes.c_int)
        lib.seccomp_version.restype = ctypes.POINTER(_Version)
        lib.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
        lib.seccomp_syscall_resolve_num_arch.argtypes = (ctypes.c_uint32, ctypes.c_int)
        lib.seccomp_syscall_resolve_num_arch.restype = ctypes.c_void_p   # malloc'd: freed below
        _lib = lib
    return _lib


_libc = ctypes.CDLL(None)
_libc.free.argtypes = (ctypes.c_void_p,)


def version() -> str:
    v = library().seccomp_version().contents
    return f"{v.major}.{v.minor}.{v.micro}"


def syscall_number(name: str) -> int | None:
    """This architecture's number for system call `name`, or None if it has none."""
    nr = library().seccomp_syscall_resolve_name(name.encode())
    return None if nr == _NR_SCMP_ERROR or nr < 0 else nr


def syscall_name(nr: int) -> str | None:
    """The name of system call `nr` on this architecture, or None."""
    ptr = library().seccomp_syscall_resolve_num_arch(ARCH_NATIVE, nr)
    if not ptr:
        return None
    try:
        return ctypes.string_at(ptr).decode()
    finally:
        _libc.free(ptr)


class Filter:
    """A filter being built: a default action and rules (system call, action, argument
    comparisons, all of which must hold). `bpf()` gives the program as bytes."""

    def __init__(self, default_action: int):
        lib = library()
        self._ctx = lib.seccomp_init(default_action)
        if not self._ctx:
            raise LibseccompError(f"seccomp_init refused the default action {default_action:#x}")
        lib.seccomp_attr_set(self._ctx, _ATTR_CTL_NNP, 0)
        lib.seccomp_attr_set(self._ctx, _ATTR_CTL_OPTIMIZE, 2)

    def add_rule(self, action: int, nr: int, comparisons: list[tuple[int, int, int, int]]) -> None:
        """`comparisons`: (argument index, CMP_*, datum_a, datum_b)."""
        array = (ArgCmp * max(1, len(comparisons)))(*(ArgCmp(*c) for c in comparisons))
        rc = library().seccomp_rule_add_array(self._ctx, action, nr, len(comparisons), array)
        if rc < 0:
            raise LibseccompError(os.strerror(-rc))

    def bpf(self) -> bytes:
        """The classic-BPF program (struct sock_filter[]) for this machine's architecture."""
        fd = os.memfd_create("pyrite-seccomp", os.MFD_CLOEXEC)
        try:
            rc = library().seccomp_export_bpf(self._ctx, fd)
            if rc < 0:
                raise LibseccompError(f"seccomp_export_bpf: {os.strerror(-rc)}")
            size = os.lseek(fd, 0, os.SEEK_END)
            return os.pread(fd, size, 0)
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._ctx:
            library().seccomp_release(self._ctx)
            self._ctx = None
