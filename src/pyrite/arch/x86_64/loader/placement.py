"""Where a kernel may be written in guest memory: above 1 MiB, inside RAM, outside the MMIO gap."""
from __future__ import annotations

from pyrite.memory import GuestMemory

from ..layout import FIRST_ADDR_PAST_32BITS, HIMEM_START, MMIO_GAP_START, MiB
from .errors import LoaderError


def describe_size(n: int) -> str:
    return f"{n // MiB} MiB" if n % MiB == 0 else f"{n:#x} bytes"


def check_placement(mem: GuestMemory, start: int, end: int, name: str, what: str,
                    error: type[LoaderError]) -> None:
    """Raise `error` unless [start, end) may hold kernel bytes."""
    span = f"{what} [{start:#x}, {end:#x})"
    if start < HIMEM_START:
        raise error(f"{name}: {span} starts below {HIMEM_START:#x} (1 MiB), "
                    "where pyrite keeps its boot structures")
    if start < FIRST_ADDR_PAST_32BITS and end > MMIO_GAP_START:
        raise error(f"{name}: {span} overlaps the MMIO gap "
                    f"[{MMIO_GAP_START:#x}, {FIRST_ADDR_PAST_32BITS:#x})")
    if not mem.contains(start, end - start):
        raise error(f"{name}: {span} does not fit in {describe_size(mem.size)} of guest memory")


def zero_fill(mem: GuestMemory, gpa: int, length: int) -> None:
    """Zero guest memory in bounded chunks (a bss can be many MiB)."""
    chunk = bytes(min(length, 1 * MiB))
    while length > 0:
        n = min(length, len(chunk))
        mem.view(gpa, n)[:] = chunk[:n] if n < len(chunk) else chunk
        gpa += n
        length -= n
