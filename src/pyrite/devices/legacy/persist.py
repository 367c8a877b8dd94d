"""Saved state of the legacy devices: plain records whose defaults are the reset values.

Kept apart from the device models (as Firecracker's persist.rs files are) so that booting
does not import dataclasses; `state()` and `from_state()` import this module when used.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import i8042, serial


@dataclass
class SerialState:
    """Every register of the UART; the defaults are its reset values (as vm-superio)."""
    dll: int = serial.RESET_DLL
    dlm: int = 0x00
    ier: int = 0x00
    lcr: int = serial.RESET_LCR
    mcr: int = serial.RESET_MCR
    lsr: int = serial.RESET_LSR
    msr: int = serial.RESET_MSR
    scr: int = 0x00
    thr_empty_pending: bool = False   # THR-empty interrupt raised and not yet acknowledged
    rx_fifo: list[int] = field(default_factory=list)


@dataclass
class I8042State:
    """The controller's registers; the defaults are Firecracker's reset values."""
    status: int = i8042.RESET_STATUS
    control: int = i8042.RESET_CONTROL
    outp: int = 0
    cmd: int = 0                      # last controller command that takes a parameter
    kbd_cmd: int = 0                  # keyboard command waiting for its parameter, 0 if none
    buffer: list[int] = field(default_factory=list)
