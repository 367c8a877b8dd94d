"""Dirty pages and Diff memory files (Firecracker's Diff snapshots).

A page is dirty when the guest wrote it (KVM's dirty log of its memory slot) or the VMM did
(GuestMemory's log) since the last harvest, that is since the last snapshot, Full or Diff,
or since boot or restore. Reading KVM's log clears it, so a harvest is also the reset that
follows every snapshot of a tracked microVM.

A Diff memory file is as long as the full one (the regions end to end) and holds the dirty
pages at their offsets, with holes elsewhere: `pyrite snapshot rebase` (rebase.py) copies
its data onto the memory file it follows.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterator

from pyrite.memory import PAGE_SHIFT, GuestMemory

# A byte of KVM's log (8 pages, lowest bit first) as a byte per page.
_EXPAND = tuple(bytes((b >> bit) & 1 for bit in range(8)) for b in range(256))
_DIRTY_RUN = re.compile(rb"[^\x00]+")


def kvm_log_pages(bitmap: bytes, npages: int) -> bytes:
    """KVM's dirty log (bit n of its little-endian u64 words: page n) as a byte per page."""
    return b"".join(map(_EXPAND.__getitem__, bitmap))[:npages]


def merge(a: bytes | bytearray, b: bytes | bytearray) -> bytes:
    """Two byte-per-page logs of one region: a page is dirty in the result if it is in either."""
    return (int.from_bytes(a, "little") | int.from_bytes(b, "little")).to_bytes(len(a), "little")


def take_dirty_pages(vm, memory: GuestMemory) -> list[bytes]:
    """Per region, a byte per page (1: dirty) since the last harvest; both logs start
    again. Needs the memory registered with KVM's dirty log (KvmError otherwise). The builder
    puts region i in KVM slot i."""
    vmm_logs = memory.take_dirty_pages()
    pages = []
    for slot, region in enumerate(memory.regions):
        npages = region.size >> PAGE_SHIFT
        guest = kvm_log_pages(vm.get_dirty_log(slot, npages), npages)
        pages.append(merge(guest, vmm_logs[slot]) if vmm_logs else guest)
    return pages


def give_back(memory: GuestMemory, pages: list[bytes]) -> None:
    """A harvest that no file received (a failed snapshot): its pages stay dirty for the next."""
    for index, region_pages in enumerate(pages):
        memory.mark_dirty_pages(index, region_pages)


def dirty_runs(pages: bytes | bytearray) -> Iterator[tuple[int, int]]:
    """(first page, end page) of each run of dirty pages."""
    for run in _DIRTY_RUN.finditer(pages):
        yield run.start(), run.end()


def write_diff(fd: int, memory: GuestMemory, pages: list[bytes]) -> int:
    """The Diff memory file into `fd` (a new, empty file): the full memory's length, the dirty
    pages of `pages` at their offsets, holes elsewhere. Returns the bytes of data written."""
    os.ftruncate(fd, memory.size)
    written, region_offset = 0, 0
    for region, region_pages in zip(memory.regions, pages, strict=True):
        view = memoryview(region.mem)
        for first, end in dirty_runs(region_pages):
            start, stop = first << PAGE_SHIFT, end << PAGE_SHIFT
            _pwrite_all(fd, view[start:stop], region_offset + start)
            written += stop - start
        region_offset += region.size
    return written


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        n = os.pwrite(fd, data, offset)
        data, offset = data[n:], offset + n
