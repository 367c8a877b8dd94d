"""What a pyrite image is: its entry points, sections and build information.

Read from the file alone (no KVM, no gcc): the ELF header's e_entry, the PVH note
(XEN_ELFNOTE_PHYS32_ENTRY), a Multiboot 1 header in the first 8 KiB, the section
table, and the `.pyrite.info` section written by pyrite.unikernel.build.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")        # type flags offset vaddr paddr filesz memsz align
_SHDR = struct.Struct("<IIQQQQIIQQ")      # name type flags addr offset size link info addralign entsize
PT_LOAD, PT_NOTE = 1, 4
SHT_NOBITS = 8
SHF_ALLOC = 0x2
EM_X86_64 = 62
XEN_ELFNOTE_PHYS32_ENTRY = 18
MULTIBOOT_MAGIC = 0x1BADB002
MULTIBOOT_SEARCH = 8192
MULTIBOOT_AOUT_KLUDGE = 1 << 16
INFO_SECTION = ".pyrite.info"
INFO_MAGIC = b"pyrite-info"


class ImageError(Exception):
    """The file is not a pyrite image (or not one this version can read); the message says why."""


@dataclass(frozen=True)
class Section:
    name: str
    address: int
    size: int
    loaded: bool       # part of the image in memory (SHF_ALLOC)
    in_file: bool      # has bytes in the file (not .bss)


@dataclass(frozen=True)
class EntryPoint:
    protocol: str      # "PVH", "Linux 64-bit", "Multiboot 1"
    address: int
    how: str           # where it is written down
    symbol: str | None = None


@dataclass
class ImageInfo:
    path: str
    file_size: int
    entries: list[EntryPoint] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    info: dict[str, str] = field(default_factory=dict)      # version, name, cmdline, ...
    load_start: int = 0
    load_end: int = 0                                         # end of memory used (bss included)
    loaded_size: int = 0          # bytes a VMM copies into guest memory (PT_LOAD file sizes)

    @property
    def memory_size(self) -> int:
        return self.load_end - self.load_start


def read_image_info(path: str | Path) -> ImageInfo:
    """Describe the pyrite image at `path`; ImageError names the file and what is wrong."""
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a directory, not an image file") from None
    except OSError as e:
        raise ImageError(f"{name}: cannot read: {e.strerror}") from None
    return describe_image(data, name)


def describe_image(data: bytes, name: str = "image") -> ImageInfo:
    if data[:4] != b"\x7fELF":
        raise ImageError(f"{name}: not an ELF file (starts with {data[:4].hex(' ') or 'nothing'}); "
                         "pyrite images are ELF64 files made by `pyrite unikernel build`")
    if len(data) < _EHDR.size:
        raise ImageError(f"{name}: truncated ELF header ({len(data)} bytes, need {_EHDR.size})")
    ident, _, machine, _, entry, phoff, shoff, _, _, phentsize, phnum, shentsize, shnum, shstrndx = \
        _EHDR.unpack_from(data)
    if ident[4] != 2 or ident[5] != 1 or machine != EM_X86_64:
        raise ImageError(f"{name}: ELF file for another machine (class {ident[4]}, data {ident[5]}, "
                         f"e_machine {machine}); pyrite images are ELF64 x86-64")
    sections = _sections(data, name, shoff, shentsize, shnum, shstrndx)
    info_section = next((s for s in sections if s[0].name == INFO_SECTION), None)
    if info_section is None:
        raise ImageError(f"{name}: an ELF64 file but not a pyrite image (no {INFO_SECTION} section; "
                         "build one with `pyrite unikernel build`)")
    result = ImageInfo(path=name, file_size=len(data), sections=[s for s, _ in sections],
                       info=_parse_info(data[info_section[1]:info_section[1] + info_section[0].size], name))
    loads = _segments(data, name, phoff, phentsize, phnum)
    if loads:
        result.load_start = min(p[4] for p in loads if p[0] == PT_LOAD)
        result.load_end = max(p[4] + p[6] for p in loads if p[0] == PT_LOAD)
        result.loaded_size = sum(p[5] for p in loads if p[0] == PT_LOAD)
    from pyrite.arch.x86_64.loader.symbols import parse_symbols
    symbols = parse_symbols(data)

    def symbol_at(address: int) -> str | None:
        found = symbols.lookup(address)
        return found[0] if found and found[1] == 0 else None

    pvh = _pvh_entry(data, loads)
    if pvh is not None:
        result.entries.append(EntryPoint("PVH", pvh, "XEN_ELFNOTE_PHYS32_ENTRY note, 32-bit", symbol_at(pvh)))
    multiboot = _multiboot_header(data)
    if multiboot is not None and multiboot[1] & MULTIBOOT_AOUT_KLUDGE:
        mb_entry = multiboot[6]
        result.entries.append(EntryPoint("Multiboot 1", mb_entry,
                                         f"header at file offset {multiboot[0]:#x}, 32-bit", symbol_at(mb_entry)))
    if multiboot is None or multiboot[6] != entry:
        result.entries.append(EntryPoint("Linux 64-bit", entry, "ELF e_entry, 64-bit", symbol_at(entry)))
    return result


def _sections(data: bytes, name: str, shoff: int, shentsize: int, shnum: int,
              shstrndx: int) -> list[tuple[Section, int]]:
    if shoff == 0 or shnum == 0:
        return []
    if shentsize < _SHDR.size or shoff + shnum * shentsize > len(data) or shstrndx >= shnum:
        raise ImageError(f"{name}: section table at {shoff:#x} ({shnum} x {shentsize} bytes) "
                         f"does not fit in the file ({len(data)} bytes)")
    raw = [_SHDR.unpack_from(data, shoff + i * shentsize) for i in range(shnum)]
    names_offset = raw[shstrndx][4]
    out = []
    for sh_name, sh_type, flags, addr, offset, size, *_ in raw[1:]:
        start = names_offset + sh_name
        section_name = data[start:data.find(b"\0", start)].decode(errors="replace")
        in_file = sh_type != SHT_NOBITS
        if in_file and offset + size > len(data):
            raise ImageError(f"{name}: section {section_name} at file offset {offset:#x} "
                             f"(+{size:#x}) runs past the end of the file ({len(data)} bytes)")
        out.append((Section(section_name, addr, size, bool(flags & SHF_ALLOC), in_file), offset))
    return out


def _segments(data: bytes, name: str, phoff: int, phentsize: int, phnum: int) -> list[tuple]:
    if phnum and (phentsize < _PHDR.size or phoff + phnum * phentsize > len(data)):
        raise ImageError(f"{name}: program headers at {phoff:#x} ({phnum} x {phentsize} bytes) "
                         f"do not fit in the file ({len(data)} bytes)")
    return [_PHDR.unpack_from(data, phoff + i * phentsize) for i in range(phnum)]


def _pvh_entry(data: bytes, segments: list[tuple]) -> int | None:
    for p_type, _, offset, _, _, filesz, _, _ in segments:
        if p_type != PT_NOTE:
            continue
        pos, end = offset, min(offset + filesz, len(data))
        while pos + 12 <= end:
            namesz, descsz, note_type = struct.unpack_from("<III", data, pos)
            desc = pos + 12 + (namesz + 3 & ~3)
            if data[pos + 12:pos + 12 + namesz] == b"Xen\0" and note_type == XEN_ELFNOTE_PHYS32_ENTRY \
                    and descsz >= 4 and desc + 4 <= end:
                return struct.unpack_from("<I", data, desc)[0]
            pos = desc + (descsz + 3 & ~3)
    return None


def _multiboot_header(data: bytes) -> tuple[int, ...] | None:
    """(file offset, flags, header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr)."""
    for offset in range(0, min(len(data), MULTIBOOT_SEARCH) - 11, 4):
        magic, flags, checksum = struct.unpack_from("<III", data, offset)
        if magic == MULTIBOOT_MAGIC and (magic + flags + checksum) & 0xFFFFFFFF == 0:
            fields = struct.unpack_from("<5I", data, offset + 12) if offset + 32 <= len(data) else (0,) * 5
            return (offset, flags, *fields)
    return None


def _parse_info(raw: bytes, name: str) -> dict[str, str]:
    words = raw.split(b"\0")
    if not words or words[0] != INFO_MAGIC:
        raise ImageError(f"{name}: {INFO_SECTION} does not start with {INFO_MAGIC.decode()!r}")
    info = {}
    for word in words[1:]:
        key, eq, value = word.decode(errors="replace").partition("=")
        if eq:
            info[key] = value
    return info


def format_image_info(image: ImageInfo) -> str:
    """The report `pyrite unikernel inspect` prints."""
    info = image.info
    cmdline = info.get("cmdline", "")
    lines = [
        f"{image.path}: pyrite unikernel image, ELF64 x86-64, {image.file_size} bytes "
        f"({image.file_size / 1024:.1f} KiB), {image.loaded_size} loaded (the rest: symbol table "
        f"for crash reports); {image.memory_size / 1024:.0f} KiB in memory at {image.load_start:#x}",
        f"  library OS      {info.get('version', '?')}",
        f"  name (argv[0])  {info.get('name', '?')}",
        f"  default cmdline {cmdline!r}" if cmdline else "  default cmdline (none)",
    ]
    if "privilege" in info:
        lines.append(f"  privilege       {info['privilege']}")
    if info.get("stack", "").isdigit():
        lines.append(f"  stack           {int(info['stack']) >> 10} KiB (application; a guard page under it)")
    lines += ["", "entry points:"]
    for e in image.entries:
        symbol = f" <{e.symbol}>" if e.symbol else ""
        lines.append(f"  {e.protocol:<13} {e.address:#010x}{symbol}  ({e.how})")
    lines += ["", "sections:", f"  {'name':<16} {'address':>10} {'size':>9}"]
    for s in image.sections:
        if not s.name or s.name in (".shstrtab",):
            continue
        where = "" if s.loaded else "  (not loaded)"
        if s.loaded and not s.in_file:
            in_segment = image.load_start <= s.address < image.load_end
            where = "  (zeroed, not in file)" if in_segment else "  (not loaded: fresh memory, not in file)"
        address = f"{s.address:#010x}" if s.loaded else "-"
        lines.append(f"  {s.name:<16} {address:>10} {s.size:>9}{where}")
    return "\n".join(lines)
