"""Builders of small crafted kernel images for the loader tests (not a test module).

Every layout here is written from the format's specification (ELF, Multiboot 0.6.96,
Linux boot.rst), independently of pyrite's parsers.
"""
from __future__ import annotations

import bz2
import gzip
import lzma
import shutil
import struct
import subprocess
from dataclasses import dataclass, field

MiB = 1 << 20
PAGE = 0x1000


@dataclass
class Seg:
    paddr: int
    data: bytes
    memsz: int | None = None         # default: len(data) (no bss)
    vaddr: int | None = None         # default: paddr
    p_type: int = 1                  # PT_LOAD

    @property
    def mem_size(self) -> int:
        return len(self.data) if self.memsz is None else self.memsz


def note(name: bytes, n_type: int, desc: bytes, align: int = 4) -> bytes:
    pad = lambda b: b + bytes(-len(b) % align)
    return struct.pack("<III", len(name), len(desc), n_type) + pad(name) + pad(desc)


def pvh_note(entry: int, size: int = 4) -> bytes:
    return note(b"Xen\0", 18, entry.to_bytes(size, "little"))


@dataclass
class Elf:
    segments: list[Seg]
    entry: int
    bits: int = 64
    notes: bytes | None = None       # contents of one PT_NOTE segment
    note_align: int = 4
    machine: int | None = None
    e_type: int = 2
    head_extra: bytes = b""          # bytes right after the program headers (Multiboot header)
    phentsize: int | None = None
    ident: bytes | None = None

    def build(self) -> bytes:
        is64 = self.bits == 64
        ehsize, phsize = (64, 56) if is64 else (52, 32)
        phdrs = list(self.segments)
        phnum = len(phdrs) + (1 if self.notes is not None else 0)
        extra_at = ehsize + phnum * phsize
        notes_at = extra_at + len(self.head_extra)
        data_at = -(-(notes_at + len(self.notes or b"") + 1) // PAGE) * PAGE
        body = bytearray()
        entries = []
        for s in phdrs:
            entries.append((s.p_type, data_at + len(body), s.vaddr if s.vaddr is not None else s.paddr,
                            s.paddr, len(s.data), s.mem_size, PAGE))
            body += s.data + bytes(-len(s.data) % PAGE)
        if self.notes is not None:
            entries.append((4, notes_at, 0, 0, len(self.notes), len(self.notes), self.note_align))
        machine = self.machine if self.machine is not None else (62 if is64 else 3)
        ident = self.ident or (b"\x7fELF" + bytes([2 if is64 else 1, 1, 1]) + bytes(9))
        if is64:
            ehdr = ident + struct.pack("<HHIQQQIHHHHHH", self.e_type, machine, 1, self.entry,
                                       ehsize, 0, 0, ehsize, self.phentsize or phsize, phnum, 0, 0, 0)
            ph = b"".join(struct.pack("<IIQQQQQQ", t, 5, off, va, pa, fs, ms, al)
                          for t, off, va, pa, fs, ms, al in entries)
        else:
            ehdr = ident + struct.pack("<HHIIIIIHHHHHH", self.e_type, machine, 1, self.entry,
                                       ehsize, 0, 0, ehsize, self.phentsize or phsize, phnum, 0, 0, 0)
            ph = b"".join(struct.pack("<IIIIIIII", t, off, va, pa, fs, ms, 5, al)
                          for t, off, va, pa, fs, ms, al in entries)
        head = ehdr + ph + self.head_extra + (self.notes or b"")
        return head + bytes(data_at - len(head)) + bytes(body)


def multiboot_header(flags: int, addresses: tuple[int, int, int, int, int] | None = None,
                     checksum: int | None = None) -> bytes:
    magic = 0x1BADB002
    csum = (-(magic + flags)) & 0xFFFFFFFF if checksum is None else checksum
    out = struct.pack("<III", magic, flags, csum)
    if addresses is not None:
        out += struct.pack("<IIIII", *addresses)
    return out


def aout_kludge(load_addr: int, code: bytes, bss: int = 0, entry_offset: int = 0x40,
                header_offset: int = 0x20, flags: int = 1 << 16 | 0b11,
                load_end: int | None = None, bss_end: int | None = None,
                header_addr: int | None = None) -> bytes:
    """A flat binary loaded whole at load_addr; the header sits at header_offset inside it."""
    image = bytearray(code)
    end = load_addr + len(image)
    fields = (load_addr + header_offset if header_addr is None else header_addr, load_addr,
              end if load_end is None else load_end,
              (end + bss if bss else 0) if bss_end is None else bss_end,
              load_addr + entry_offset)
    hdr = multiboot_header(flags, fields)
    image[header_offset:header_offset + len(hdr)] = hdr
    return bytes(image)


# --- bzImage ---------------------------------------------------------------------------------

def size_append(compressed: bytes, raw_len: int) -> bytes:
    """What the kernel's build does after compressing vmlinux.bin (scripts/Makefile.lib)."""
    return compressed + struct.pack("<I", raw_len)


def compress(fmt: str, data: bytes) -> bytes:
    if fmt == "gzip":
        out = gzip.compress(data, 9, mtime=0)
    elif fmt == "xz":
        out = lzma.compress(data, lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)
    elif fmt == "lzma":
        out = lzma.compress(data, lzma.FORMAT_ALONE)
    elif fmt == "bzip2":
        out = bz2.compress(data, 9)
    elif fmt == "zstd":
        out = _cli(["zstd", "-q", "-19", "-c"], data) if shutil.which("zstd") else _zstd_py(data)
    elif fmt == "lz4":
        out = _cli(["lz4", "-l", "-9", "-c"], data)   # the kernel's legacy frame format
    else:
        raise ValueError(fmt)
    return size_append(out, len(data))


def _cli(argv: list[str], data: bytes) -> bytes:
    return subprocess.run(argv, input=data, stdout=subprocess.PIPE, check=True).stdout


def _zstd_py(data: bytes) -> bytes:
    import zstandard
    return zstandard.ZstdCompressor(level=19).compress(data)


@dataclass
class BzImage:
    payload: bytes                   # compressed vmlinux (or anything)
    setup_sects: int = 4
    version: int = 0x020F
    loadflags: int = 0x01
    xloadflags: int = 0x01           # XLF_KERNEL_64
    stub: bytes = field(default_factory=lambda: b"\x90" * 0x200 + b"\xcc" * 0x200)
    boot_flag: int = 0xAA55
    magic: bytes = b"HdrS"
    pref_address: int = 0x1000000
    init_size: int = 0x400000
    kernel_alignment: int = 0x200000
    relocatable: int = 1
    cmdline_size: int = 2047
    initrd_addr_max: int = 0x7FFFFFFF
    mz: bool = True
    payload_length: int | None = None

    def build(self) -> bytes:
        setup = bytearray((max(self.setup_sects, 0) or 4) * 512 + 512)
        if self.mz:
            setup[0:2] = b"MZ"
        setup[0x1F1] = self.setup_sects
        struct.pack_into("<H", setup, 0x1FE, self.boot_flag)
        setup[0x200] = 0xEB
        setup[0x201] = 0x26C - 0x202          # jump over the header, to its end at 0x26c
        setup[0x202:0x206] = self.magic
        struct.pack_into("<H", setup, 0x206, self.version)
        setup[0x211] = self.loadflags
        struct.pack_into("<I", setup, 0x22C, self.initrd_addr_max)
        struct.pack_into("<I", setup, 0x230, self.kernel_alignment)
        setup[0x234] = self.relocatable
        struct.pack_into("<H", setup, 0x236, self.xloadflags)
        struct.pack_into("<I", setup, 0x238, self.cmdline_size)
        struct.pack_into("<I", setup, 0x248, len(self.stub))
        length = len(self.payload) if self.payload_length is None else self.payload_length
        struct.pack_into("<I", setup, 0x24C, length)
        struct.pack_into("<Q", setup, 0x258, self.pref_address)
        struct.pack_into("<I", setup, 0x260, self.init_size)
        return bytes(setup) + self.stub + self.payload + b"\xee" * 16   # trailing pm code
