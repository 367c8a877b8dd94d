"""PVH: an ELF64 kernel whose Xen PHYS32_ENTRY note gives a 32-bit protected-mode entry."""
from __future__ import annotations

from pyrite.memory import GuestMemory

from . import elf
from .errors import ElfError
from .result import LoadResult


def load(mem: GuestMemory, data: memoryview, image: elf.ElfImage,
         setup_header: bytes | None = None) -> LoadResult:
    if image.pvh_entry is None:
        raise ElfError(f"{image.name}: no Xen PHYS32_ENTRY note (type "
                       f"{elf.XEN_ELFNOTE_PHYS32_ENTRY}): not a PVH kernel")
    if image.bits != 64:
        raise ElfError(f"{image.name}: 32-bit ELF images are not supported "
                       "(only as Multiboot kernels)")
    entry = image.pvh_entry
    if not any(s.paddr <= entry < s.paddr + s.memsz for s in image.segments):
        raise ElfError(f"{image.name}: PVH entry {entry:#x} is outside every PT_LOAD segment")
    elf.load_segments(mem, data, image)
    return LoadResult("pvh", entry, image.start, image.end, setup_header, image.name)
