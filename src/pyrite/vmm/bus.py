"""Address dispatch for port I/O and MMIO: ranges mapped to device read/write callables."""
from __future__ import annotations

from collections.abc import Callable

ReadFn = Callable[[int, int], bytes]        # (offset, length) -> data
WriteFn = Callable[[int, bytes], None]      # (offset, data)


class BusRange:
    """[base, base + size) claimed by the device `name`."""
    __slots__ = ("base", "size", "name", "read", "write")

    def __init__(self, base: int, size: int, name: str, read: ReadFn, write: WriteFn):
        self.base = base
        self.size = size
        self.name = name
        self.read = read
        self.write = write

    def __repr__(self) -> str:
        return f"BusRange({self.name!r}, [{self.base:#x}, {self.base + self.size:#x}))"


class BusError(Exception):
    pass


class Bus:
    """Non-overlapping address ranges; unclaimed addresses read as all-ones and ignore writes."""

    def __init__(self, kind: str):
        self.kind = kind
        self._ranges: list[BusRange] = []
        self._cache: dict[int, BusRange | None] = {}

    def register(self, base: int, size: int, name: str, read: ReadFn, write: WriteFn) -> None:
        for r in self._ranges:
            if base < r.base + r.size and r.base < base + size:
                raise BusError(f"{self.kind} range {name} [{base:#x}, {base + size:#x}) overlaps {r.name}")
        self._ranges.append(BusRange(base, size, name, read, write))
        self._cache.clear()

    def lookup(self, addr: int) -> BusRange | None:
        try:
            return self._cache[addr]
        except KeyError:
            found = next((r for r in self._ranges if r.base <= addr < r.base + r.size), None)
            if len(self._cache) > 4096:  # a guest probing many addresses must not grow it forever
                self._cache.clear()
            self._cache[addr] = found
            return found

    def read(self, addr: int, length: int) -> bytes:
        r = self.lookup(addr)
        return r.read(addr - r.base, length) if r else b"\xff" * length

    def write(self, addr: int, data: bytes) -> bool:
        """Returns False when no device claims `addr`."""
        r = self.lookup(addr)
        if r is None:
            return False
        r.write(addr - r.base, data)
        return True
