"""Guest RAM: anonymous mmap'd regions addressed by guest-physical address.

Dirty pages (for Diff snapshots): KVM logs the pages the guest writes; the pages the VMM
writes itself (virtio rings and buffers, boot-time loads) are logged here once
`track_dirty_pages()` is on, one byte per page and region. Views are writable, so handing
one out marks its pages (conservatively: a view only read is counted too); reads through
`read*` do not. With tracking off the cost is one `is None` test per view.
"""
from __future__ import annotations

import ctypes
import mmap

PAGE_SIZE = mmap.PAGESIZE
PAGE_SHIFT = PAGE_SIZE.bit_length() - 1


class GuestMemoryError(Exception):
    """A guest-physical access that falls outside guest RAM."""


class Region:
    """`size` bytes of guest RAM at guest-physical `gpa`, backed by the host mapping `mem`.
    With dirty tracking on, `dirty` has a byte per page (1: the VMM wrote it since the last
    harvest) and `lasting` marks the pages of lasting views (see GuestMemory.lasting_view)."""
    __slots__ = ("gpa", "size", "mem", "dirty", "lasting")

    def __init__(self, gpa: int, size: int, mem: mmap.mmap):
        self.gpa = gpa
        self.size = size
        self.mem = mem
        self.dirty: bytearray | None = None
        self.lasting: bytearray | None = None

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
                # Transparent huge pages where the host offers them (as QEMU asks for its RAM):
                # a guest's first touch of fresh memory costs one fault per 2 MiB, not per 4 KiB.
                try:
                    mem.madvise(mmap.MADV_HUGEPAGE)
                except (AttributeError, OSError):    # a kernel built without THP: 4 KiB pages
                    pass
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
        """Zero-copy writable view of [gpa, gpa+length); with tracking on, its pages are marked
        dirty now, so write through it soon (a view kept for later writes: lasting_view)."""
        if length < 0:
            raise GuestMemoryError(f"negative length {length} at {gpa:#x}")
        for r in self.regions:
            off = gpa - r.gpa
            if off >= 0 and off + length <= r.size:
                if r.dirty is not None and length:
                    _mark(r.dirty, off, length)
                return memoryview(r.mem)[off:off + length]
        raise GuestMemoryError(f"guest range [{gpa:#x}, {gpa + length:#x}) is not in guest memory")

    def _peek(self, gpa: int, length: int) -> memoryview:
        """view() for reading: the pages are not marked dirty."""
        if length < 0:
            raise GuestMemoryError(f"negative length {length} at {gpa:#x}")
        for r in self.regions:
            off = gpa - r.gpa
            if off >= 0 and off + length <= r.size:
                return memoryview(r.mem)[off:off + length]
        raise GuestMemoryError(f"guest range [{gpa:#x}, {gpa + length:#x}) is not in guest memory")

    def read(self, gpa: int, length: int) -> bytes:
        return bytes(self._peek(gpa, length))

    def write(self, gpa: int, data: bytes | bytearray | memoryview) -> None:
        self.view(gpa, len(data))[:] = data

    def read_u8(self, gpa: int) -> int:
        return self._peek(gpa, 1)[0]

    def read_int(self, gpa: int, size: int) -> int:
        return int.from_bytes(self._peek(gpa, size), "little")

    def write_int(self, gpa: int, value: int, size: int) -> None:
        self.view(gpa, size)[:] = value.to_bytes(size, "little")

    # -- dirty pages ------------------------------------------------------------------------

    def track_dirty_pages(self) -> None:
        """Log the pages the VMM writes from now on (before any view is handed out: the builder
        turns it on as it registers the memory with KVM's dirty log)."""
        for r in self.regions:
            if r.dirty is None:
                r.dirty = bytearray(r.size >> PAGE_SHIFT)
                r.lasting = bytearray(r.size >> PAGE_SHIFT)

    @property
    def tracks_dirty_pages(self) -> bool:
        return self.regions[0].dirty is not None

    def lasting_view(self, gpa: int, length: int) -> memoryview:
        """view() for a holder that keeps it and writes through it at any time (a virtqueue's
        used ring): writes through it are never seen, so with tracking on its pages count as
        dirty in every harvest."""
        view = self.view(gpa, length)
        for r in self.regions:
            off = gpa - r.gpa
            if r.lasting is not None and length and 0 <= off < r.size:
                _mark(r.lasting, off, length)
        return view

    def take_dirty_pages(self) -> list[bytearray]:
        """Per region, a byte per page, 1 where the VMM wrote since the last call (or
        since tracking began); the log starts again from the pages of lasting views. Empty
        when tracking is off."""
        taken = []
        for r in self.regions:
            if r.dirty is None:
                return []
            page_bytes, r.dirty = r.dirty, bytearray(r.lasting)   # one swap: markers see old or new
            taken.append(page_bytes)
        return taken

    def mark_dirty_pages(self, index: int, pages: bytes | bytearray) -> None:
        """Mark again, in region `index`, the pages that are 1 in `pages` (a harvest handed
        back by a snapshot that failed: the next one must still write them)."""
        dirty = self.regions[index].dirty
        if dirty is None:
            return
        page = pages.find(1)
        while page >= 0:            # only sets bytes: a concurrent mark is never undone
            dirty[page] = 1
            page = pages.find(1, page + 1)

    def close(self) -> None:
        for r in self.regions:
            try:
                r.mem.close()
            except BufferError:
                pass  # a view is still alive; the mapping goes when it does


def _mark(dirty: bytearray, off: int, length: int) -> None:
    """Mark the pages of [off, off+length) (length > 0) in a byte-per-page log."""
    first, last = off >> PAGE_SHIFT, (off + length - 1) >> PAGE_SHIFT
    if first == last:
        dirty[first] = 1
    else:
        dirty[first:last + 1] = b"\x01" * (last + 1 - first)
