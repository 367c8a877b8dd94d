"""Firecracker's boot timer: the guest writes 123 to mark the end of its boot.

Firecracker maps it at the start of the MMIO gap (layout.BOOT_TIMER_ADDR); a guest's
init writes the magic byte there and Firecracker logs
``Guest-boot-time =   2345 us 2 ms,   1234 CPU us 1 CPU ms``: wall time since the
VMM started, and the CPU time the VMM process has used.
"""
from __future__ import annotations

import time
from collections.abc import Callable

MAGIC_VALUE_SIGNAL_GUEST_BOOT_COMPLETE = 123


class BootTime:
    """Wall and CPU time from the VMM's start to the guest's signal, in microseconds."""
    __slots__ = ("wall_us", "cpu_us")

    def __init__(self, wall_us: int, cpu_us: int):
        self.wall_us = wall_us
        self.cpu_us = cpu_us

    def __eq__(self, other: object) -> bool:
        if type(other) is not BootTime:
            return NotImplemented
        return (self.wall_us, self.cpu_us) == (other.wall_us, other.cpu_us)

    def __hash__(self) -> int:
        return hash((self.wall_us, self.cpu_us))

    def __repr__(self) -> str:
        return f"BootTime(wall_us={self.wall_us}, cpu_us={self.cpu_us})"

    def __str__(self) -> str:
        # Firecracker's exact log line.
        return (f"Guest-boot-time = {self.wall_us:>6} us {self.wall_us // 1000} ms, "
                f"{self.cpu_us:>6} CPU us {self.cpu_us // 1000} CPU ms")


class BootTimer:
    """MMIO pseudo device; ``report`` receives a BootTime (``str()`` gives Firecracker's line).

    ``start_ns`` is read from ``clock`` when the VMM started; ``start_cpu_ns`` from
    ``cpu_clock`` (default 0: the process's CPU time since it began, as Firecracker's
    start timestamp is taken at process start).
    """

    def __init__(self, start_ns: int, report: Callable[[BootTime], None],
                 clock: Callable[[], int] = time.monotonic_ns, *,
                 start_cpu_ns: int = 0,
                 cpu_clock: Callable[[], int] = time.process_time_ns):
        self._start_ns = start_ns
        self._start_cpu_ns = start_cpu_ns
        self._report = report
        self._clock = clock
        self._cpu_clock = cpu_clock

    def read(self, offset: int, length: int) -> bytes:
        return bytes(length)

    def write(self, offset: int, data: bytes) -> None:
        # Firecracker takes only single-byte writes at offset 0.
        if offset != 0 or len(data) != 1 or data[0] != MAGIC_VALUE_SIGNAL_GUEST_BOOT_COMPLETE:
            return
        wall_us = (self._clock() - self._start_ns) // 1000
        cpu_us = (self._cpu_clock() - self._start_cpu_ns) // 1000
        self._report(BootTime(wall_us=wall_us, cpu_us=cpu_us))
