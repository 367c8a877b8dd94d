"""Kicking a vCPU thread out of KVM_RUN from another thread.

A signal delivered to a thread blocked in KVM_RUN makes the ioctl return EINTR, so
Vcpu.run() returns Interrupted(). A signal that arrives while the vCPU thread is between
two runs would be lost, so the kicker first sets kvm_run.immediate_exit: the next
KVM_RUN then returns EINTR at once. The vCPU thread clears it when it handles the kick.

Python runs signal handlers in the main thread, but the kernel still interrupts the
target thread's system call; the no-op handler only has to exist (an ignored signal
would not interrupt anything).
"""
from __future__ import annotations

import threading

# The C module behind `signal`: same functions, without the IntEnum wrappers whose enum
# import costs a few ms of every microVM's start.
import _signal as signal

from .vcpu import Vcpu

_kick_signal: int | None = None


def kick_signal() -> int:
    """The signal used to kick vCPU threads (SIGRTMIN), with a no-op handler installed.

    Call it once from the main thread before starting vCPU threads (signal.signal only
    works there); later calls from any thread return the same number.
    """
    global _kick_signal
    if _kick_signal is None:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("kick_signal() must first be called from the main thread")
        signum = signal.SIGRTMIN
        signal.signal(signum, lambda _signum, _frame: None)
        signal.siginterrupt(signum, True)   # never restart the interrupted ioctl
        _kick_signal = signum
    return _kick_signal


def install_kick_handler() -> int:
    """Same as kick_signal(): call once from the main thread at start-up."""
    return kick_signal()


def kick_thread(thread_id: int) -> None:
    """Send the kick signal to thread `thread_id` (Thread.ident); pair it with set_immediate_exit(True)."""
    signal.pthread_kill(thread_id, kick_signal())


def kick(vcpu: Vcpu, thread_id: int) -> None:
    """Make `vcpu`, run by thread `thread_id` (threading.get_ident() / Thread.ident), return Interrupted()."""
    vcpu.set_immediate_exit(True)
    kick_thread(thread_id)
