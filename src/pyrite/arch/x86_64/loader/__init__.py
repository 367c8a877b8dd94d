"""Kernel and initrd loaders: one module per format, one LoadResult.

`load_kernel` picks the format from the image's bytes:
ELF with a PVH note -> pvh; ELF with a Multiboot header -> multiboot; other ELF64 -> linux64;
bzImage (HdrS at 0x202) -> bzimage; a.out-kludge Multiboot binary -> multiboot.
"""
from __future__ import annotations

from pyrite.memory import GuestMemory

from . import elf, pvh
from .errors import (BzImageError, DecompressError, ElfError, InitrdError, LoaderError,
                     MultibootError)
from .initrd import load_initrd
from .result import LoadResult
from .source import ImageSource, image_name, open_image

__all__ = [
    "LoadResult", "load_kernel", "load_initrd", "LoaderError", "ElfError", "BzImageError",
    "MultibootError", "InitrdError", "DecompressError",
]


def load_kernel(mem: GuestMemory, source: ImageSource, name: str | None = None) -> LoadResult:
    """Load a kernel image (a path or bytes) into guest memory and say how to enter it."""
    name = image_name(source, name, "kernel")
    with open_image(source, name, LoaderError) as data:
        return _load(mem, data, name)


def _load(mem: GuestMemory, data: memoryview, name: str) -> LoadResult:
    # PVH, the common case, needs only elf and pvh; the other formats are imported on demand.
    if elf.is_elf(data):
        image = elf.parse(data, name)
        if image.bits == 64 and image.pvh_entry is not None:
            return pvh.load(mem, data, image)
        from . import multiboot
        header = multiboot.find_header(data, name)
        if header is not None:
            return multiboot.load(mem, data, name, header, image)
        return elf.load_linux64(mem, data, image)
    from . import bzimage, multiboot
    if bzimage.is_bzimage(data):
        return bzimage.load(mem, data, name)
    header = multiboot.find_header(data, name)
    if header is not None:
        return multiboot.load(mem, data, name, header)
    if bytes(data[:2]) == b"MZ":
        bzimage.parse_header(data, name)  # raises: a PE file without a Linux setup header
    first = bytes(data[:8]).hex(" ")
    raise LoaderError(f"{name}: unknown image format (first bytes {first})")
