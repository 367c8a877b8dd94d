"""Addresses to `function+0xoff` from an ELF64 image's .symtab, for crash reports.

A crash is rare, so nothing is parsed until the first lookup: `elf_symbolizer(image)`
costs nothing to make. The symbolizer never raises; an image without a symbol table
(stripped, not ELF64) just names nothing.
"""
from __future__ import annotations

import bisect
import os
import struct
from collections.abc import Callable

_SHDR = struct.Struct("<IIQQQQIIQQ")    # name type flags addr offset size link info addralign entsize
_SYM = struct.Struct("<IBBHQQ")         # name info other shndx value size
SHT_SYMTAB = 2
SHF_EXECINSTR = 0x4
STT_NOTYPE, STT_FUNC = 0, 2
SHN_UNDEF, SHN_LORESERVE = 0, 0xFF00


class SymbolTable:
    """Code symbols of one image: FUNC symbols with their sizes, and (for assembly)
    size-less labels in executable sections, which reach to the next symbol."""

    def __init__(self, symbols: list[tuple[int, int, str]]):
        # (start, end, name), sorted by start; end is exclusive
        self._symbols = sorted(symbols)
        self._starts = [s[0] for s in self._symbols]

    def __len__(self) -> int:
        return len(self._symbols)

    def lookup(self, address: int) -> tuple[str, int] | None:
        """(name, offset) of the symbol whose range holds `address`, or None."""
        i = bisect.bisect_right(self._starts, address) - 1
        # The nearest symbol at or below `address` may be a small one inside (or after) the
        # one that holds it: look back a few.
        for start, end, name in reversed(self._symbols[max(0, i - 15):i + 1]):
            if start <= address < end:
                return name, address - start
        return None

    def describe(self, address: int) -> str | None:
        found = self.lookup(address)
        return None if found is None else f"{found[0]}+{found[1]:#x}"


def _symtab(data: memoryview) -> tuple[list[tuple], list[tuple[str, int, int, int, int]]]:
    """The section headers and each named, defined symbol: (name, kind, section, value, size)."""
    if len(data) < 64 or bytes(data[:4]) != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return [], []
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    if shoff == 0 or shentsize < _SHDR.size or shoff + shnum * shentsize > len(data):
        return [], []
    sections = [_SHDR.unpack_from(data, shoff + i * shentsize) for i in range(shnum)]
    entries = []
    for sh_type, sh_offset, sh_size, sh_link, sh_entsize in (
            (s[1], s[4], s[5], s[6], s[9]) for s in sections):
        if sh_type != SHT_SYMTAB or sh_link >= shnum or sh_entsize < _SYM.size:
            continue
        strtab = sections[sh_link]
        str_start, str_end = strtab[4], strtab[4] + strtab[5]
        if sh_offset + sh_size > len(data) or str_end > len(data):
            continue
        for off in range(sh_offset, sh_offset + sh_size - _SYM.size + 1, sh_entsize):
            st_name, st_info, _, st_shndx, st_value, st_size = _SYM.unpack_from(data, off)
            if st_shndx == SHN_UNDEF or st_shndx >= min(shnum, SHN_LORESERVE) or st_name == 0:
                continue
            end = bytes(data[str_start + st_name:str_end]).find(b"\0")
            name = bytes(data[str_start + st_name:str_start + st_name + max(end, 0)]).decode(errors="replace")
            entries.append((name, st_info & 0xF, st_shndx, st_value, st_size))
    return sections, entries


def parse_symbols(image: bytes | bytearray | memoryview) -> SymbolTable:
    """The code symbols of an ELF64 little-endian image (empty if it has none or is not one)."""
    sections, entries = _symtab(memoryview(image))
    raw = []
    for name, kind, shndx, value, size in entries:
        if kind in (STT_FUNC, STT_NOTYPE) and sections[shndx][2] & SHF_EXECINSTR:
            raw.append((value, size, kind, name, sections[shndx][3] + sections[shndx][5]))
    return SymbolTable(_ranges(raw))


def symbol_value(image: bytes | bytearray | memoryview, name: str) -> int | None:
    """The value (address) of the defined symbol `name`, of any kind, or None."""
    return next((value for n, _, _, value, _ in _symtab(memoryview(image))[1] if n == name), None)


def _ranges(raw: list[tuple[int, int, int, str, int]]) -> list[tuple[int, int, str]]:
    """Give size-less labels the range up to the next symbol (or their section's end)."""
    starts = sorted({r[0] for r in raw})
    out = []
    for value, size, kind, name, section_end in raw:
        if size:
            out.append((value, value + size, name))
            continue
        if any(v == value and s and k == STT_FUNC for v, s, k, _, _ in raw):
            continue                        # a label at a sized function's start: the function names it
        i = bisect.bisect_right(starts, value)
        end = min(starts[i] if i < len(starts) else section_end, section_end)
        if end > value:
            out.append((value, end, name))
    return out


Symbolizer = Callable[[int], "str | None"]


def elf_symbolizer(image: bytes | bytearray | memoryview | str | os.PathLike | int) -> Symbolizer:
    """A function mapping an address to `function+0xoff` (None where no symbol holds it).

    `image` is the image's bytes, its path or an open fd (read with pread: a VMM thread whose
    seccomp filter refuses openat can still read it); it is only read on the first call."""
    table: list[SymbolTable] = []

    def symbolize(address: int) -> str | None:
        if not table:
            try:
                data = image if isinstance(image, (bytes, bytearray, memoryview)) else read_image(image)
                table.append(parse_symbols(data))
            except (OSError, struct.error, ValueError, IndexError):
                table.append(SymbolTable([]))
        return table[0].describe(address)

    return symbolize


def read_image(path: str | os.PathLike | int) -> bytes:
    """An image's bytes from its path or an open fd (pread: no openat needed)."""
    if isinstance(path, int):
        size, chunks, offset = os.fstat(path).st_size, [], 0
        while offset < size:
            chunk = os.pread(path, size - offset, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)
    with open(path, "rb") as f:
        return f.read()
