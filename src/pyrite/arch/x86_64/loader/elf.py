"""ELF kernels: validate headers, load PT_LOAD segments by physical address, read the PVH note.

ELF64 x86_64 executables boot through PVH or the Linux 64-bit protocol; ELF32 is parsed
only so that Multiboot can load it (or so that we can say it is not supported).
"""
from __future__ import annotations

import struct

from pyrite.memory import GuestMemory

from .errors import ElfError, LoaderError
from .placement import check_placement, zero_fill
from .result import LoadResult

ELF_MAGIC = b"\x7fELF"
ELFCLASS32, ELFCLASS64 = 1, 2
ELFDATA2LSB = 1
EV_CURRENT = 1
ET_EXEC = 2
EM_386, EM_X86_64 = 3, 62
PT_LOAD, PT_NOTE = 1, 4
PN_XNUM = 0xFFFF
XEN_ELFNOTE_PHYS32_ENTRY = 18

# Per class: (header layout after e_ident, header size, phdr layout, phdr size)
_EHDR = {ELFCLASS32: struct.Struct("<HHIIIIIHHHHHH"), ELFCLASS64: struct.Struct("<HHIQQQIHHHHHH")}
_EHDR_SIZE = {ELFCLASS32: 52, ELFCLASS64: 64}
_PHDR32 = struct.Struct("<IIIIIIII")   # type offset vaddr paddr filesz memsz flags align
_PHDR64 = struct.Struct("<IIQQQQQQ")   # type flags offset vaddr paddr filesz memsz align
_MACHINE = {ELFCLASS32: (EM_386, "i386 (3)"), ELFCLASS64: (EM_X86_64, "x86_64 (62)")}
_NOTE = struct.Struct("<III")           # namesz descsz type


class Segment:
    """One PT_LOAD program header."""
    __slots__ = ("index", "offset", "vaddr", "paddr", "filesz", "memsz")

    def __init__(self, index: int, offset: int, vaddr: int, paddr: int, filesz: int, memsz: int):
        self.index = index      # program header number, for messages
        self.offset = offset
        self.vaddr = vaddr
        self.paddr = paddr
        self.filesz = filesz
        self.memsz = memsz

    def __repr__(self) -> str:
        return (f"Segment({self.index}, offset={self.offset:#x}, vaddr={self.vaddr:#x}, "
                f"paddr={self.paddr:#x}, filesz={self.filesz:#x}, memsz={self.memsz:#x})")


class ElfImage:
    """A validated ELF executable: what the loaders need from its headers."""
    __slots__ = ("name", "bits", "entry", "segments", "pvh_entry")

    def __init__(self, name: str, bits: int, entry: int, segments: tuple[Segment, ...],
                 pvh_entry: int | None):
        self.name = name
        self.bits = bits                # 32 or 64
        self.entry = entry              # e_entry as written in the header
        self.segments = segments        # PT_LOAD segments with memsz > 0
        self.pvh_entry = pvh_entry      # XEN_ELFNOTE_PHYS32_ENTRY, if present

    @property
    def start(self) -> int:
        return min(s.paddr for s in self.segments)

    @property
    def end(self) -> int:
        return max(s.paddr + s.memsz for s in self.segments)

    def physical_entry(self) -> int:
        """e_entry as a physical address: through the segment whose virtual range holds it,
        else as-is if a segment's physical range holds it (vmlinux's e_entry is physical)."""
        for s in self.segments:
            if s.vaddr <= self.entry < s.vaddr + s.memsz:
                return self.entry - s.vaddr + s.paddr
        for s in self.segments:
            if s.paddr <= self.entry < s.paddr + s.memsz:
                return self.entry
        raise ElfError(f"{self.name}: entry point {self.entry:#x} (e_entry) is outside every "
                       "PT_LOAD segment")


def is_elf(data: memoryview) -> bool:
    return bytes(data[:4]) == ELF_MAGIC


def parse(data: memoryview, name: str) -> ElfImage:
    """Validate an ELF32/ELF64 x86 executable and return its loadable segments and notes."""
    size = len(data)
    if size < 16 or bytes(data[:4]) != ELF_MAGIC:
        raise ElfError(f"{name}: not an ELF image (no 7f 45 4c 46 magic at 0x0)")
    cls, encoding, ident_version = data[4], data[5], data[6]
    if cls not in _EHDR:
        raise ElfError(f"{name}: unknown ELF class {cls} at 0x4 (EI_CLASS; 1 = 32-bit, 2 = 64-bit)")
    if encoding != ELFDATA2LSB:
        raise ElfError(f"{name}: ELF data encoding {encoding} at 0x5 is not little-endian (EI_DATA 1)")
    if ident_version != EV_CURRENT:
        raise ElfError(f"{name}: ELF version {ident_version} at 0x6 is not 1 (EI_VERSION)")
    bits = 32 if cls == ELFCLASS32 else 64
    ehsize = _EHDR_SIZE[cls]
    if size < ehsize:
        raise ElfError(f"{name}: truncated: the {bits}-bit ELF header needs {ehsize:#x} bytes, "
                       f"file has {size:#x}")
    (e_type, machine, version, entry, phoff, _shoff, _flags, _ehsize, phentsize, phnum,
     _shentsize, _shnum, _shstrndx) = _EHDR[cls].unpack_from(data, 16)
    if e_type != ET_EXEC:
        raise ElfError(f"{name}: ELF type {e_type} (e_type) is not ET_EXEC (2); "
                       "only executables can be loaded")
    want_machine, machine_name = _MACHINE[cls]
    if machine != want_machine:
        raise ElfError(f"{name}: ELF machine {machine} (e_machine) is not {machine_name}")
    if version != EV_CURRENT:
        raise ElfError(f"{name}: ELF version {version} (e_version) is not 1")
    phdr = _PHDR32 if cls == ELFCLASS32 else _PHDR64
    if phentsize != phdr.size:
        raise ElfError(f"{name}: program header size {phentsize} (e_phentsize) is not "
                       f"{phdr.size} for {bits}-bit ELF")
    if phnum == 0:
        raise ElfError(f"{name}: no program headers (e_phnum is 0)")
    if phnum == PN_XNUM:
        raise ElfError(f"{name}: extended program header count (e_phnum 0xffff) is not supported")
    if phoff < ehsize:
        raise ElfError(f"{name}: program headers at {phoff:#x} (e_phoff) overlap the ELF header")

    if phoff + phnum * phentsize > size:
        i = max(0, (size - phoff) // phentsize)     # the first header that does not fit
        raise ElfError(f"{name}: truncated: program header {i} ends at "
                       f"{phoff + (i + 1) * phentsize:#x} past end of file ({size:#x} bytes)")

    limit = (1 << bits) - 1
    segments: list[Segment] = []
    pvh_entry: int | None = None
    for i in range(phnum):
        at = phoff + i * phentsize
        if cls == ELFCLASS32:
            p_type, offset, vaddr, paddr, filesz, memsz, _pf, align = phdr.unpack_from(data, at)
        else:
            p_type, _pf, offset, vaddr, paddr, filesz, memsz, align = phdr.unpack_from(data, at)
        if p_type not in (PT_LOAD, PT_NOTE):
            continue
        if offset + filesz > size:
            raise ElfError(f"{name}: truncated: program header {i} file data "
                           f"[{offset:#x}, {offset + filesz:#x}) ends past end of file "
                           f"({size:#x} bytes)")
        if p_type == PT_NOTE:
            found = _find_pvh_note(data, offset, filesz, align, i, name)
            if found is not None:
                pvh_entry = found
            continue
        if filesz > memsz:
            raise ElfError(f"{name}: segment {i} has p_filesz {filesz:#x} larger than "
                           f"p_memsz {memsz:#x}")
        if paddr + memsz - 1 > limit or vaddr + memsz - 1 > limit:
            raise ElfError(f"{name}: segment {i} [{paddr:#x}, +{memsz:#x}) wraps around the "
                           f"{bits}-bit address space")
        if memsz:
            segments.append(Segment(i, offset, vaddr, paddr, filesz, memsz))
    if not segments:
        raise ElfError(f"{name}: no PT_LOAD segment with a non-zero size")
    return ElfImage(name, bits, entry, tuple(segments), pvh_entry)


def _find_pvh_note(data: memoryview, offset: int, filesz: int, align: int, index: int,
                   name: str) -> int | None:
    """Walk the notes of one PT_NOTE segment; return the Xen PHYS32 entry if there is one."""
    pad = 8 if align == 8 else 4     # notes are 4-aligned unless the segment says 8
    pos, end = offset, offset + filesz
    found = None
    while pos + _NOTE.size <= end:
        namesz, descsz, n_type = _NOTE.unpack_from(data, pos)
        name_at = pos + _NOTE.size
        desc_at = name_at + _align_up(namesz, pad)
        next_at = desc_at + _align_up(descsz, pad)
        if desc_at + descsz > end:
            raise ElfError(f"{name}: truncated: note at {pos:#x} runs past the end of "
                           f"PT_NOTE program header {index} ({end:#x})")
        if n_type == XEN_ELFNOTE_PHYS32_ENTRY and bytes(data[name_at:name_at + namesz]) == b"Xen\0":
            if descsz not in (4, 8):
                raise ElfError(f"{name}: Xen PHYS32_ENTRY note at {pos:#x} has a {descsz}-byte "
                               "value (expected 4 or 8)")
            found = int.from_bytes(data[desc_at:desc_at + descsz], "little")
            if found >= 1 << 32:
                raise ElfError(f"{name}: PVH entry {found:#x} (Xen PHYS32_ENTRY note at "
                               f"{pos:#x}) is not a 32-bit address")
        pos = next_at
    return found


def _align_up(n: int, a: int) -> int:
    return (n + a - 1) & ~(a - 1)


def load_segments(mem: GuestMemory, data: memoryview, image: ElfImage,
                  error: type[LoaderError] = ElfError) -> None:
    """Check every segment's placement first, then copy file bytes and zero the bss parts."""
    for s in image.segments:
        check_placement(mem, s.paddr, s.paddr + s.memsz, image.name, f"segment {s.index}", error)
    for s in image.segments:
        mem.write(s.paddr, data[s.offset:s.offset + s.filesz])
        if s.memsz > s.filesz:
            zero_fill(mem, s.paddr + s.filesz, s.memsz - s.filesz)


def load_linux64(mem: GuestMemory, data: memoryview, image: ElfImage,
                 setup_header: bytes | None = None) -> LoadResult:
    """An ELF64 vmlinux entered through the Linux 64-bit boot protocol at its physical e_entry."""
    if image.bits != 64:
        raise ElfError(f"{image.name}: 32-bit ELF images are not supported "
                       "(only as Multiboot kernels)")
    entry = image.physical_entry()
    load_segments(mem, data, image)
    return LoadResult("linux64", entry, image.start, image.end, setup_header, image.name)
