"""Guest RAM: anonymous mmap'd regions addressed by guest-physical address."""
from __future__ import annotations

import ctypes
import mmap


class GuestMemoryError(Exception):
    """A guest-physical access that falls outside guest RAM."""


class Region:
    """`size` bytes of guest RAM at guest-physical `gpa`, backed by the host mapping `mem`."""
    __slots__ = ("gpa", "size", "mem")

    def __init__(self, gpa: int, size: int, mem: mmap.mmap):
        self.gpa = gpa
        self.size = size
        self.mem = mem

    def __repr__(self) -> str:
        return f"Region(gpa={self.gpa:#x}, size={self.size:#x})"

    @property
    def end(self) -> int:
        return self.gpa + self.size

    @property
    def host_addr(self) -> int:
        """Host virtual address of the region's first byte (for KVM_SET_USER_MEMORY_REGION)."""
        return ctypes.addressof(ctypes.c_char.from_buffer(self.mem))


class GuestMemory:
    """RAM made of disjoint regions; every access is bounds-checked and may not straddle regions."""

    def __init__(self, layout: list[tuple[int, int]], file_fd: int | None = None):
        """Anonymous RAM; or, with `file_fd`, the file's pages mapped copy-on-write (MAP_PRIVATE:
        read lazily, shared with every other mapping of the file until written), the regions
        end to end in the file as a snapshot's memory file holds them."""
        if not layout:
            raise GuestMemoryError("guest memory needs at least one region")
        regions = []
        offset = 0
        for gpa, size in sorted(layout):
            if size <= 0 or size % mmap.PAGESIZE or gpa % mmap.PAGESIZE:
                raise GuestMemoryError(f"region at {gpa:#x} size {size:#x} is not page-aligned")
            if regions and gpa < regions[-1].end:
                raise GuestMemoryError(f"region at {gpa:#x} overlaps the one before it")
            if file_fd is None:
                flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_NORESERVE", 0)
                mem = mmap.mmap(-1, size, flags=flags)
            else:
                mem = mmap.mmap(file_fd, size, flags=mmap.MAP_PRIVATE | getattr(mmap, "MAP_NORESERVE", 0),
                                prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=offset)
            regions.append(Region(gpa, size, mem))
            offset += size
        self.regions: tuple[Region, ...] = tuple(regions)

    @property
    def size(self) -> int:
        return sum(r.size for r in self.regions)

    @property
    def end(self) -> int:
        """First guest-physical address past the highest region."""
        return self.regions[-1].end

    def contains(self, gpa: int, length: int = 1) -> bool:
        if length < 0:
            return False
        for r in self.regions:      # a plain loop: this is on every virtio descriptor's path
            off = gpa - r.gpa
            if off >= 0 and off + length <= r.size:
                return True
        return False

    def view(self, gpa: int, length: int) -> memoryview:
        """Zero-copy writable view of [gpa, gpa+length)."""
        if length < 0:
            raise GuestMemoryError(f"negative length {length} at {gpa:#x}")
        for r in self.regions:
            off = gpa - r.gpa
            if off >= 0 and off + length <= r.size:
                return memoryview(r.mem)[off:off + length]
        raise GuestMemoryError(f"guest range [{gpa:#x}, {gpa + length:#x}) is not in guest memory")

    def read(self, gpa: int, length: int) -> bytes:
        return bytes(self.view(gpa, length))

    def write(self, gpa: int, data: bytes | bytearray | memoryview) -> None:
        self.view(gpa, len(data))[:] = data

    def read_u8(self, gpa: int) -> int:
        return self.view(gpa, 1)[0]

    def read_int(self, gpa: int, size: int) -> int:
        return int.from_bytes(self.view(gpa, size), "little")

    def write_int(self, gpa: int, value: int, size: int) -> None:
        self.view(gpa, size)[:] = value.to_bytes(size, "little")

    def close(self) -> None:
        for r in self.regions:
            try:
                r.mem.close()
            except BufferError:
                pass  # a view is still alive; the mapping goes when it does
