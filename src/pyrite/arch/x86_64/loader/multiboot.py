"""Multiboot 1 kernels: a header in the first 8 KiB, then either ELF segments or the
a.out kludge's address fields (flags bit 16), entered in 32-bit protected mode."""
from __future__ import annotations

import struct
from dataclasses import dataclass

from pyrite.memory import GuestMemory

from . import elf
from .errors import MultibootError
from .placement import check_placement, zero_fill
from .result import LoadResult

HEADER_MAGIC = 0x1BADB002
BOOTLOADER_MAGIC = 0x2BADB002           # in eax at entry
SEARCH_LIMIT = 8192                    # the header lies wholly within the first 8 KiB
FLAG_PAGE_ALIGN_MODULES = 1 << 0
FLAG_MEMORY_INFO = 1 << 1
FLAG_VIDEO_MODE = 1 << 2
FLAG_AOUT_KLUDGE = 1 << 16
# Bits 0-15 are requirements: a loader must fail on one it cannot meet.
SUPPORTED_REQUIRED_FLAGS = FLAG_PAGE_ALIGN_MODULES | FLAG_MEMORY_INFO
REQUIRED_FLAGS_MASK = 0xFFFF

_HEAD = struct.Struct("<III")           # magic flags checksum
_ADDRESSES = struct.Struct("<IIIII")    # header_addr load_addr load_end_addr bss_end_addr entry_addr


@dataclass(frozen=True)
class MultibootHeader:
    offset: int                          # file offset of the magic
    flags: int
    header_addr: int = 0
    load_addr: int = 0
    load_end_addr: int = 0
    bss_end_addr: int = 0
    entry_addr: int = 0

    @property
    def has_addresses(self) -> bool:
        return bool(self.flags & FLAG_AOUT_KLUDGE)


def find_header(data: memoryview, name: str) -> MultibootHeader | None:
    """The first 4-aligned header in the first 8 KiB whose checksum holds, or None."""
    limit = min(len(data), SEARCH_LIMIT)
    for off in range(0, limit - _HEAD.size + 1, 4):
        if int.from_bytes(data[off:off + 4], "little") != HEADER_MAGIC:
            continue
        magic, flags, checksum = _HEAD.unpack_from(data, off)
        if (magic + flags + checksum) & 0xFFFFFFFF:
            continue  # a stray magic number, not a header
        if not flags & FLAG_AOUT_KLUDGE:
            return MultibootHeader(off, flags)
        end = off + _HEAD.size + _ADDRESSES.size
        if end > limit:
            raise MultibootError(f"{name}: truncated: Multiboot header at {off:#x} with address "
                                 f"fields (flags bit 16) ends at {end:#x}, past "
                                 f"{'the first 8 KiB' if limit == SEARCH_LIMIT else 'end of file'}")
        return MultibootHeader(off, flags, *_ADDRESSES.unpack_from(data, off + _HEAD.size))
    return None


def check_flags(header: MultibootHeader, name: str) -> None:
    unsupported = header.flags & REQUIRED_FLAGS_MASK & ~SUPPORTED_REQUIRED_FLAGS
    if unsupported & FLAG_VIDEO_MODE:
        raise MultibootError(f"{name}: Multiboot header at {header.offset:#x} requires video mode "
                             "information (flags bit 2), which pyrite does not provide")
    if unsupported:
        bits = ", ".join(str(b) for b in range(16) if unsupported >> b & 1)
        raise MultibootError(f"{name}: Multiboot header at {header.offset:#x} requires "
                             f"unsupported features (flags bits {bits}; flags {header.flags:#x})")


def load(mem: GuestMemory, data: memoryview, name: str, header: MultibootHeader,
         image: elf.ElfImage | None = None) -> LoadResult:
    """Load by the address fields if the header has them (as GRUB and QEMU do), else as ELF."""
    check_flags(header, name)
    if header.has_addresses:
        return _load_aout_kludge(mem, data, name, header)
    if image is None:
        raise MultibootError(f"{name}: Multiboot header at {header.offset:#x} has no address "
                             "fields (flags bit 16) and the image is not ELF")
    entry = image.physical_entry()
    if entry >= 1 << 32:
        raise MultibootError(f"{name}: Multiboot entry {entry:#x} (e_entry) is not a 32-bit "
                             "address")
    elf.load_segments(mem, data, image, MultibootError)
    return LoadResult("multiboot", entry, image.start, image.end, None, name)


def _load_aout_kludge(mem: GuestMemory, data: memoryview, name: str,
                      h: MultibootHeader) -> LoadResult:
    where = f"Multiboot header at {h.offset:#x}"
    if h.header_addr < h.load_addr:
        raise MultibootError(f"{name}: {where}: header_addr {h.header_addr:#x} is below "
                             f"load_addr {h.load_addr:#x}")
    file_start = h.offset - (h.header_addr - h.load_addr)
    if file_start < 0:
        raise MultibootError(f"{name}: {where}: load_addr {h.load_addr:#x} lies "
                             f"{h.header_addr - h.load_addr:#x} bytes before header_addr, "
                             "before the start of the file")
    if h.load_end_addr == 0:  # 0 means: load to the end of the file
        load_end = h.load_addr + len(data) - file_start
    elif h.load_end_addr < h.header_addr + _HEAD.size + _ADDRESSES.size:
        raise MultibootError(f"{name}: {where}: load_end_addr {h.load_end_addr:#x} ends before "
                             "the header itself")
    else:
        load_end = h.load_end_addr
        if file_start + (load_end - h.load_addr) > len(data):
            raise MultibootError(f"{name}: truncated: {where} loads "
                                 f"[{h.load_addr:#x}, {load_end:#x}) from file offset "
                                 f"{file_start:#x}, past end of file ({len(data):#x} bytes)")
    if h.bss_end_addr == 0:  # 0 means: no bss
        bss_end = load_end
    elif h.bss_end_addr < load_end:
        raise MultibootError(f"{name}: {where}: bss_end_addr {h.bss_end_addr:#x} is below "
                             f"load_end_addr {load_end:#x}")
    else:
        bss_end = h.bss_end_addr
    if not h.load_addr <= h.entry_addr < load_end:
        raise MultibootError(f"{name}: {where}: entry_addr {h.entry_addr:#x} is outside the "
                             f"loaded image [{h.load_addr:#x}, {load_end:#x})")
    check_placement(mem, h.load_addr, bss_end, name, "image", MultibootError)
    mem.write(h.load_addr, data[file_start:file_start + load_end - h.load_addr])
    if bss_end > load_end:
        zero_fill(mem, load_end, bss_end - load_end)
    return LoadResult("multiboot", h.entry_addr, h.load_addr, bss_end, None, name)
