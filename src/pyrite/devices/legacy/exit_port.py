"""QEMU's isa-debug-exit at port 0xf4: a guest ends the VM with an exit status.

The guest writes a value; the VMM ends with it. Under QEMU the process status becomes
``(value << 1) | 1`` (so a guest can never make QEMU exit 0); ``pyrite run`` exits
with the raw byte instead, so a guest that writes 0 makes ``pyrite run`` succeed.
Firecracker has no such port (its guests end with an i8042 reset).
"""
from __future__ import annotations

from collections.abc import Callable


class ExitPort:
    def __init__(self, on_exit: Callable[[int], None]):
        self._on_exit = on_exit

    def read(self) -> int:
        return 0

    def write(self, value: int) -> None:
        """A guest ``out`` of any width: only its low byte is the status."""
        self._on_exit(value & 0xFF)
