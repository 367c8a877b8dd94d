"""Boot parameters for a loaded kernel: command line, then hvm_start_info (PVH), the zero page
(Linux 64-bit protocol) or multiboot_info (Multiboot), and the registers the vCPU starts with.

Kept apart from loading, as linux-loader's BootConfigurator is. Layouts:
Xen public/arch-x86/hvm/start_info.h, Linux Documentation/arch/x86/{boot,zeropage}.rst,
the Multiboot 0.6.96 specification.
"""
from __future__ import annotations

import struct

from pyrite.memory import GuestMemory

from .layout import (CMDLINE_MAX_SIZE, CMDLINE_START, EBDA_START, HIMEM_START,
                     MULTIBOOT_INFO_START, PVH_INFO_START, PVH_MEMMAP_START, PVH_MODLIST_START,
                     ZERO_PAGE_START, e820_map, ram_regions)
from .loader.result import LoadResult


class BootConfigError(ValueError):
    """Boot parameters that cannot be given to the kernel (e.g. a command line too long)."""


class BootParams:
    """How the boot vCPU starts: the protocol, its entry point and registers."""
    __slots__ = ("protocol", "entry", "regs")

    def __init__(self, protocol: str, entry: int, regs: dict[str, int]):
        self.protocol = protocol
        self.entry = entry
        self.regs = regs          # general registers at entry, e.g. {"rsi": ZERO_PAGE_START}

    def __repr__(self) -> str:
        return f"BootParams({self.protocol!r}, entry={self.entry:#x}, regs={self.regs!r})"


# --- PVH: struct hvm_start_info and friends --------------------------------------------------
PVH_START_MAGIC = 0x336EC578
PVH_START_VERSION = 1
# magic version flags nr_modules modlist_paddr cmdline_paddr rsdp_paddr memmap_paddr
# memmap_entries reserved
HVM_START_INFO = struct.Struct("<IIIIQQQQII")              # 56 bytes
HVM_MODLIST_ENTRY = struct.Struct("<QQQQ")                 # paddr size cmdline_paddr reserved
HVM_MEMMAP_ENTRY = struct.Struct("<QQII")                  # addr size type reserved

# --- Linux: struct boot_params (the zero page) -----------------------------------------------
ZERO_PAGE_SIZE = 4096
ZP_ACPI_RSDP_ADDR = 0x070          # boot_params.acpi_rsdp_addr (Linux 5.0+; was 2.14's header field)
ZP_EXT_RAMDISK_IMAGE = 0x0C0
ZP_EXT_RAMDISK_SIZE = 0x0C4
ZP_EXT_CMD_LINE_PTR = 0x0C8
ZP_E820_ENTRIES = 0x1E8
ZP_SETUP_HEADER = 0x1F1
ZP_BOOT_FLAG = 0x1FE
ZP_HEADER = 0x202
ZP_TYPE_OF_LOADER = 0x210
ZP_LOADFLAGS = 0x211
ZP_RAMDISK_IMAGE = 0x218
ZP_RAMDISK_SIZE = 0x21C
ZP_HEAP_END_PTR = 0x224
ZP_CMD_LINE_PTR = 0x228
ZP_KERNEL_ALIGNMENT = 0x230
ZP_CMDLINE_SIZE = 0x238
ZP_E820_TABLE = 0x2D0
E820_MAX_ENTRIES_ZEROPAGE = 128
BOOT_E820_ENTRY = struct.Struct("<QQI")                    # addr size type, packed: 20 bytes
TYPE_OF_LOADER_UNDEFINED = 0xFF
HEAP_END_PTR = 0xE000 - 0x200      # boot.rst's sample: heap_end 0xe000, minus 0x200
KERNEL_ALIGNMENT = 0x1000000       # what Firecracker tells a vmlinux without a setup header

# --- Multiboot: struct multiboot_info ----------------------------------------------------------
MULTIBOOT_BOOTLOADER_MAGIC = 0x2BADB002
MBI_FLAG_MEMORY = 1 << 0
MBI_FLAG_CMDLINE = 1 << 2
MBI_FLAG_MODS = 1 << 3
MBI_FLAG_MMAP = 1 << 6
MBI_FLAG_LOADER_NAME = 1 << 9
# flags mem_lower mem_upper boot_device cmdline mods_count mods_addr syms[4] mmap_length
# mmap_addr drives_length drives_addr config_table boot_loader_name
MULTIBOOT_INFO = struct.Struct("<IIIIIII16sIIIIII")        # 68 bytes, up to boot_loader_name
MULTIBOOT_INFO_SIZE = 0x80         # room for the whole struct (apm, vbe, framebuffer: unused)
MULTIBOOT_MMAP_ENTRY = struct.Struct("<IQQI")              # size(=20) base_addr length type
MULTIBOOT_MODULE = struct.Struct("<IIII")                  # mod_start mod_end string reserved
MULTIBOOT_INFO_AREA = 0x1000       # everything Multiboot-related stays in [0x6000, 0x7000)
BOOT_LOADER_NAME = b"pyrite\0"
INITRD_MODULE_STRING = b"initrd\0"


def configure_boot(mem: GuestMemory, kernel: LoadResult, cmdline: bytes,
                   initrd: tuple[int, int] | None, mem_size: int,
                   rsdp_addr: int = 0) -> BootParams:
    """Write the command line and the protocol's boot structures; say how to start the vCPU.

    ``rsdp_addr`` (0: none) is the ACPI RSDP that acpi.write_acpi_tables() wrote; PVH and the
    zero page pass it on, Multiboot 1 has no field for it (a guest scans 0xE0000 for it)."""
    if kernel.protocol == "multiboot":
        # Multiboot loaders (GRUB, QEMU: "%s %s") pass the image path as the command line's first word.
        cmdline = kernel.image.encode() + b" " + cmdline
    write_cmdline(mem, cmdline, _cmdline_limit(kernel))
    if kernel.protocol == "pvh":
        _write_pvh(mem, initrd, mem_size, rsdp_addr)
        regs = {"rbx": PVH_INFO_START}
    elif kernel.protocol == "linux64":
        _write_zero_page(mem, kernel, cmdline, initrd, mem_size, rsdp_addr)
        regs = {"rsi": ZERO_PAGE_START}
    elif kernel.protocol == "multiboot":
        _write_multiboot_info(mem, initrd, mem_size)
        regs = {"rax": MULTIBOOT_BOOTLOADER_MAGIC, "rbx": MULTIBOOT_INFO_START}
    else:
        raise BootConfigError(f"{kernel.image}: unknown boot protocol {kernel.protocol!r}")
    return BootParams(kernel.protocol, kernel.entry, regs)


def _cmdline_limit(kernel: LoadResult) -> tuple[int, str]:
    """Longest command line (without its NUL) and what sets that limit."""
    limit, why = CMDLINE_MAX_SIZE - 1, f"CMDLINE_MAX_SIZE {CMDLINE_MAX_SIZE} including the NUL"
    if kernel.protocol == "linux64" and kernel.setup_header is not None:
        from .loader.bzimage import SetupHeader
        hdr_limit = SetupHeader(kernel.setup_header).cmdline_size
        if hdr_limit < limit:
            limit, why = hdr_limit, f"{kernel.image}'s setup header cmdline_size"
    return limit, why


def write_cmdline(mem: GuestMemory, cmdline: bytes, limit: tuple[int, str]) -> None:
    max_len, why = limit
    if b"\0" in cmdline:
        raise BootConfigError(f"kernel command line has a NUL byte at offset {cmdline.index(0)}")
    if len(cmdline) > max_len:
        raise BootConfigError(f"kernel command line is {len(cmdline)} bytes; the limit is "
                              f"{max_len} ({why})")
    mem.write(CMDLINE_START, cmdline + b"\0")


def _write_pvh(mem: GuestMemory, initrd: tuple[int, int] | None, mem_size: int,
               rsdp_addr: int = 0) -> None:
    memmap = e820_map(mem_size)
    for i, (addr, size, kind) in enumerate(memmap):
        mem.write(PVH_MEMMAP_START + i * HVM_MEMMAP_ENTRY.size,
                  HVM_MEMMAP_ENTRY.pack(addr, size, kind, 0))
    nr_modules, modlist = 0, 0
    if initrd is not None:
        mem.write(PVH_MODLIST_START, HVM_MODLIST_ENTRY.pack(initrd[0], initrd[1], 0, 0))
        nr_modules, modlist = 1, PVH_MODLIST_START
    mem.write(PVH_INFO_START, HVM_START_INFO.pack(
        PVH_START_MAGIC, PVH_START_VERSION, 0, nr_modules, modlist, CMDLINE_START, rsdp_addr,
        PVH_MEMMAP_START, len(memmap), 0))


def _write_zero_page(mem: GuestMemory, kernel: LoadResult, cmdline: bytes,
                     initrd: tuple[int, int] | None, mem_size: int, rsdp_addr: int = 0) -> None:
    from .loader.bzimage import BOOT_FLAG, CAN_USE_HEAP, HDRS_MAGIC, LOADED_HIGH
    zp = bytearray(ZERO_PAGE_SIZE)
    if kernel.setup_header is not None:
        zp[ZP_SETUP_HEADER:ZP_SETUP_HEADER + len(kernel.setup_header)] = kernel.setup_header
    else:
        # A bare vmlinux has no header: build the fields a 64-bit kernel reads.
        struct.pack_into("<H", zp, ZP_BOOT_FLAG, BOOT_FLAG)
        zp[ZP_HEADER:ZP_HEADER + 4] = HDRS_MAGIC
        struct.pack_into("<I", zp, ZP_KERNEL_ALIGNMENT, KERNEL_ALIGNMENT)
        struct.pack_into("<I", zp, ZP_CMDLINE_SIZE, len(cmdline))
    zp[ZP_TYPE_OF_LOADER] = TYPE_OF_LOADER_UNDEFINED
    struct.pack_into("<Q", zp, ZP_ACPI_RSDP_ADDR, rsdp_addr)   # ACPI: where the RSDP is (0: scan)
    zp[ZP_LOADFLAGS] |= LOADED_HIGH | CAN_USE_HEAP
    struct.pack_into("<H", zp, ZP_HEAP_END_PTR, HEAP_END_PTR)
    _pack_split(zp, ZP_CMD_LINE_PTR, ZP_EXT_CMD_LINE_PTR, CMDLINE_START)
    if initrd is not None:
        _pack_split(zp, ZP_RAMDISK_IMAGE, ZP_EXT_RAMDISK_IMAGE, initrd[0])
        _pack_split(zp, ZP_RAMDISK_SIZE, ZP_EXT_RAMDISK_SIZE, initrd[1])
    e820 = e820_map(mem_size)
    if len(e820) > E820_MAX_ENTRIES_ZEROPAGE:
        raise BootConfigError(f"{kernel.image}: {len(e820)} e820 entries do not fit in the zero "
                              f"page (at most {E820_MAX_ENTRIES_ZEROPAGE})")
    zp[ZP_E820_ENTRIES] = len(e820)
    for i, entry in enumerate(e820):
        BOOT_E820_ENTRY.pack_into(zp, ZP_E820_TABLE + i * BOOT_E820_ENTRY.size, *entry)
    mem.write(ZERO_PAGE_START, zp)


def _pack_split(zp: bytearray, low_at: int, high_at: int, value: int) -> None:
    """A 64-bit value split into a header field (low 32 bits) and its ext_ field (high 32)."""
    struct.pack_into("<I", zp, low_at, value & 0xFFFFFFFF)
    struct.pack_into("<I", zp, high_at, value >> 32)


def _write_multiboot_info(mem: GuestMemory, initrd: tuple[int, int] | None,
                          mem_size: int) -> None:
    """multiboot_info, then the mmap, the module list and strings, all in one 4 KiB area."""
    mmap_addr = MULTIBOOT_INFO_START + MULTIBOOT_INFO_SIZE
    mmap = b"".join(MULTIBOOT_MMAP_ENTRY.pack(MULTIBOOT_MMAP_ENTRY.size - 4, addr, size, kind)
                    for addr, size, kind in e820_map(mem_size))
    mods_addr = mmap_addr + len(mmap)
    mods = b""
    name_addr = mods_addr
    if initrd is not None:
        gpa, size = initrd
        if gpa + size > 1 << 32:
            raise BootConfigError(f"initrd [{gpa:#x}, {gpa + size:#x}) is above 4 GiB, out of "
                                  "reach of a Multiboot module")
        string_addr = mods_addr + MULTIBOOT_MODULE.size + len(BOOT_LOADER_NAME)
        mods = MULTIBOOT_MODULE.pack(gpa, gpa + size, string_addr, 0)
        name_addr = mods_addr + len(mods)
    tail = mods + BOOT_LOADER_NAME + (INITRD_MODULE_STRING if initrd is not None else b"")
    end = mods_addr + len(tail)
    if end > MULTIBOOT_INFO_START + MULTIBOOT_INFO_AREA:
        raise BootConfigError(f"Multiboot information needs {end - MULTIBOOT_INFO_START:#x} "
                              f"bytes, more than the {MULTIBOOT_INFO_AREA:#x} at "
                              f"{MULTIBOOT_INFO_START:#x}")
    low_gpa, low_size = ram_regions(mem_size)[0]
    mem_lower = min(EBDA_START, 640 * 1024) // 1024
    mem_upper = max(low_gpa + low_size - HIMEM_START, 0) // 1024
    flags = (MBI_FLAG_MEMORY | MBI_FLAG_CMDLINE | MBI_FLAG_MODS | MBI_FLAG_MMAP
             | MBI_FLAG_LOADER_NAME)
    info = MULTIBOOT_INFO.pack(flags, mem_lower, mem_upper, 0, CMDLINE_START,
                               1 if initrd is not None else 0, mods_addr, bytes(16),
                               len(mmap), mmap_addr, 0, 0, 0, name_addr)
    mem.write(MULTIBOOT_INFO_START, info.ljust(MULTIBOOT_INFO_SIZE, b"\0"))
    mem.write(mmap_addr, mmap + tail)
