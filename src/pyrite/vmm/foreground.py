"""A microVM in the foreground of a terminal: stdin as its serial input (keys one by one, no
local echo), Ctrl-C ends it with status 130. Shared by `pyrite run` and `pyrite snapshot load`."""
from __future__ import annotations

import os
import sys

from .exit import VmExit


def console_input() -> int | None:
    """stdin as the guest's serial input, when there is one."""
    try:
        fd = sys.stdin.fileno()
        os.fstat(fd)
    except (AttributeError, OSError, ValueError):
        return None
    return fd


def run_in_foreground(vmm, stdin_fd: int | None, paused: bool = False) -> VmExit:
    """Start `vmm` (built with `stdin_fd` as its console input) and wait for its end; closes it."""
    restore_tty = _terminal_cbreak(stdin_fd)
    try:
        vmm.start(paused=paused)
        while True:
            try:
                return vmm.wait(timeout=None)
            except KeyboardInterrupt:
                vmm.finish(VmExit("stopped", 130, "interrupted (Ctrl-C)"))
    finally:
        restore_tty()
        vmm.close()


def _terminal_cbreak(fd: int | None):
    """Keys go to the guest one by one without local echo; Ctrl-C still reaches pyrite."""
    if fd is None or not os.isatty(fd):
        return lambda: None
    import termios
    import tty
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    return lambda: termios.tcsetattr(fd, termios.TCSADRAIN, saved)
