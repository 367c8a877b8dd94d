"""Checked filter descriptions (pyrite.seccomp.spec) compiled by libseccomp into BPF programs,
and a program installed in the calling thread.

Compiling happens once, at start-up; installing is two system calls (no_new_privs, then
seccomp), done by each thread for itself before the guest runs (seccomp filters are per thread
and inherited by the threads it starts, so a thread starts its children before it installs).
"""
from __future__ import annotations

import ctypes
import os
import threading

from . import libseccomp as lib
from .spec import SeccompFilterError, ThreadFilter

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_NAME = 15
_SYS_SECCOMP = 317            # x86_64
_SECCOMP_SET_MODE_FILTER = 1

_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl
_prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
_syscall = _libc.syscall
_syscall.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_void_p)

_OPS = {"eq": lib.CMP_EQ, "ne": lib.CMP_NE, "lt": lib.CMP_LT, "le": lib.CMP_LE, "gt": lib.CMP_GT,
        "ge": lib.CMP_GE, "masked_eq": lib.CMP_MASKED_EQ}
_ACTIONS = {"allow": lib.ACT_ALLOW, "trap": lib.ACT_TRAP, "log": lib.ACT_LOG,
            "kill_thread": lib.ACT_KILL_THREAD, "kill_process": lib.ACT_KILL_PROCESS}


class SeccompInstallError(Exception):
    """The kernel refused a filter (no seccomp support, or a program it does not accept)."""


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class Program:
    """One thread category's BPF program, ready to install."""
    __slots__ = ("category", "bpf", "_buffer", "_fprog")

    def __init__(self, category: str, bpf: bytes):
        self.category = category
        self.bpf = bpf
        self._buffer = ctypes.create_string_buffer(bpf, len(bpf))
        self._fprog = _SockFprog(len(bpf) // 8, ctypes.addressof(self._buffer))

    @property
    def instructions(self) -> int:
        return len(self.bpf) // 8

    def install(self) -> None:
        """Filter the calling thread from now on (and the threads it starts later). The thread
        also gets its Python name in the kernel, so that /proc and the audit log show it."""
        name_thread(threading.current_thread().name)
        if _prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise SeccompInstallError(f"{self.category} filter: prctl(PR_SET_NO_NEW_PRIVS): "
                                      f"{os.strerror(ctypes.get_errno())}")
        if _syscall(_SYS_SECCOMP, _SECCOMP_SET_MODE_FILTER, 0, ctypes.addressof(self._fprog)) != 0:
            raise SeccompInstallError(f"{self.category} filter: seccomp(SECCOMP_SET_MODE_FILTER): "
                                      f"{os.strerror(ctypes.get_errno())}")


def name_thread(name: str) -> None:
    """Give the calling thread its name in the kernel (/proc/.../comm, the audit log), as
    Firecracker's threads have theirs ("fc_vcpu 0"); 15 bytes at most."""
    buffer = ctypes.create_string_buffer(name.encode()[:15])
    _prctl(_PR_SET_NAME, ctypes.addressof(buffer), 0, 0, 0)


def _action(action) -> int:
    if isinstance(action, tuple):
        name, value = action
        return lib.act_errno(value) if name == "errno" else lib.act_trace(value)
    return _ACTIONS[action]


def compile_filter(category: str, spec: ThreadFilter) -> Program:
    """`spec` as a BPF program; SeccompFilterError names a rule libseccomp refuses."""
    f = lib.Filter(_action(spec.default_action))
    try:
        action = _action(spec.filter_action)
        for i, rule in enumerate(spec.rules):
            comparisons = []
            for c in rule.conditions:
                if c.type == "dword" and c.op in ("eq", "masked_eq"):   # the low 32 bits only
                    mask = 0xFFFFFFFF if c.mask is None else c.mask
                    comparisons.append((c.index, lib.CMP_MASKED_EQ, mask, c.val & mask))
                elif c.op == "masked_eq":
                    comparisons.append((c.index, lib.CMP_MASKED_EQ, c.mask, c.val & c.mask))
                else:
                    comparisons.append((c.index, _OPS[c.op], c.val, 0))
            try:
                f.add_rule(action, lib.syscall_number(rule.syscall), comparisons)
            except lib.LibseccompError as e:
                raise SeccompFilterError(f"{category}.filter[{i}] ({rule.syscall}): libseccomp refused the rule: "
                                         f"{e}") from None
        return Program(category, f.bpf())
    finally:
        f.release()


def compile_filters(specs: dict[str, ThreadFilter]) -> dict[str, Program]:
    return {category: compile_filter(category, spec) for category, spec in specs.items()}
