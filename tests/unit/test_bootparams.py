"""Boot structures parsed back field by field, with offsets taken from the specifications:
Xen public/arch-x86/hvm/start_info.h, Linux Documentation/arch/x86/{boot,zeropage}.rst,
Multiboot 0.6.96 section 3.3."""
import struct

import pytest

from loader_images import MiB, BzImage, compress
from pyrite.arch.x86_64 import layout
from pyrite.arch.x86_64.bootparams import BootConfigError, configure_boot
from pyrite.arch.x86_64.loader import LoadResult
from pyrite.memory import GuestMemory

GiB = 1 << 30
MEM = 64 * MiB


@pytest.fixture
def mem():
    m = GuestMemory([(0, MEM)])
    m.write(0, b"\xaa" * MiB)                                # stale low memory
    yield m
    m.close()


def result(protocol, header=None, image="vmlinux"):
    return LoadResult(protocol, 0x1000000, 0x1000000, 0x1800000, header, image)


def u(mem, gpa, size):
    return mem.read_int(gpa, size)


def cmdline_at(mem, gpa):
    raw = mem.read(gpa, layout.CMDLINE_MAX_SIZE)
    return raw[:raw.index(0)]


# --- PVH -------------------------------------------------------------------------------------

def test_pvh_start_info_modlist_and_memmap(mem):
    params = configure_boot(mem, result("pvh"), b"console=ttyS0 quiet", (0x3000000, 0x12345), MEM)
    assert (params.protocol, params.entry, params.regs) == ("pvh", 0x1000000, {"rbx": 0x6000})
    info = 0x6000
    magic, version, flags, nr_modules = struct.unpack("<IIII", mem.read(info, 16))
    modlist, cmdline, rsdp, memmap = struct.unpack("<QQQQ", mem.read(info + 16, 32))
    memmap_entries, reserved = struct.unpack("<II", mem.read(info + 48, 8))
    assert (magic, version, flags, nr_modules) == (0x336EC578, 1, 0, 1)
    assert (modlist, cmdline, rsdp, memmap) == (0x6040, 0x20000, 0, 0x7000)
    e820 = layout.e820_map(MEM)
    assert (memmap_entries, reserved) == (len(e820), 0)
    assert struct.unpack("<QQQQ", mem.read(0x6040, 32)) == (0x3000000, 0x12345, 0, 0)
    for i, (addr, size, kind) in enumerate(e820):
        assert struct.unpack("<QQII", mem.read(0x7000 + 24 * i, 24)) == (addr, size, kind, 0)
    assert cmdline_at(mem, 0x20000) == b"console=ttyS0 quiet"


def test_pvh_without_initrd_has_no_modules(mem):
    configure_boot(mem, result("pvh"), b"", None, MEM)
    assert u(mem, 0x6000 + 12, 4) == 0 and u(mem, 0x6000 + 16, 8) == 0
    assert u(mem, 0x20000, 1) == 0


def test_pvh_memmap_for_a_guest_above_4gib(mem):
    configure_boot(mem, result("pvh"), b"x", None, 6 * GiB)
    entries = [struct.unpack("<QQII", mem.read(0x7000 + 24 * i, 24)) for i in range(u(mem, 0x6030, 4))]
    assert entries[-1] == (4 * GiB, 3 * GiB, 1, 0)
    assert sum(size for _, size, kind, _ in entries if kind == 1) == 6 * GiB - (0x100000 - 0x9FC00)


# --- Linux 64-bit boot protocol ----------------------------------------------------------------

def test_zero_page_for_a_vmlinux_without_setup_header(mem):
    params = configure_boot(mem, result("linux64"), b"root=/dev/vda", (0x2000000, 0x5000), MEM)
    assert params.regs == {"rsi": 0x7000}
    zp = 0x7000
    assert u(mem, zp + 0x1FE, 2) == 0xAA55                      # boot_flag
    assert mem.read(zp + 0x202, 4) == b"HdrS"                   # header
    assert u(mem, zp + 0x210, 1) == 0xFF                        # type_of_loader
    assert u(mem, zp + 0x211, 1) == 0x81                        # LOADED_HIGH | CAN_USE_HEAP
    assert u(mem, zp + 0x224, 2) == 0xDE00                      # heap_end_ptr
    assert u(mem, zp + 0x228, 4) == 0x20000                     # cmd_line_ptr
    assert u(mem, zp + 0x0C8, 4) == 0                           # ext_cmd_line_ptr
    assert u(mem, zp + 0x238, 4) == len(b"root=/dev/vda")       # cmdline_size
    assert u(mem, zp + 0x230, 4) == 0x1000000                   # kernel_alignment
    assert (u(mem, zp + 0x218, 4), u(mem, zp + 0x21C, 4)) == (0x2000000, 0x5000)
    assert (u(mem, zp + 0x0C0, 4), u(mem, zp + 0x0C4, 4)) == (0, 0)
    e820 = layout.e820_map(MEM)
    assert u(mem, zp + 0x1E8, 1) == len(e820)
    table = [struct.unpack("<QQI", mem.read(zp + 0x2D0 + 20 * i, 20)) for i in range(len(e820))]
    assert table == e820
    assert mem.read(zp + 0x2D0 + 20 * len(e820), 20) == bytes(20)
    assert u(mem, zp + 0x1EF, 1) == 0                           # sentinel: the page is clean
    assert cmdline_at(mem, 0x20000) == b"root=/dev/vda"


def test_zero_page_splits_addresses_above_4gib_into_ext_fields(mem):
    configure_boot(mem, result("linux64"), b"", (0x1_2345_6000, 0x1_0000_0010), 8 * GiB)
    zp = 0x7000
    assert (u(mem, zp + 0x218, 4), u(mem, zp + 0x0C0, 4)) == (0x2345_6000, 1)
    assert (u(mem, zp + 0x21C, 4), u(mem, zp + 0x0C4, 4)) == (0x10, 1)


def test_zero_page_copies_the_bzimage_setup_header(mem):
    image = BzImage(compress("gzip", b"\x7fELF" + bytes(100)), loadflags=0x21, cmdline_size=300).build()
    header = image[0x1F1:0x26C]
    configure_boot(mem, result("linux64", header, "vmlinuz"), b"quiet", None, MEM)
    zp = mem.read(0x7000, 4096)
    copied = bytearray(header)
    for offset, size in ((0x210, 1), (0x211, 1), (0x224, 2), (0x228, 4)):  # loader-written fields
        copied[offset - 0x1F1:offset - 0x1F1 + size] = zp[offset:offset + size]
    assert zp[0x1F1:0x26C] == bytes(copied)
    assert zp[0x211] == 0x21 | 0x81                              # kernel's bits kept
    assert struct.unpack_from("<I", zp, 0x238)[0] == 300        # cmdline_size left as the kernel's
    assert struct.unpack_from("<I", zp, 0x230)[0] == 0x200000   # kernel_alignment left as the kernel's
    assert struct.unpack_from("<I", zp, 0x228)[0] == 0x20000


def test_bzimage_cmdline_size_limits_the_command_line(mem):
    header = BzImage(b"", cmdline_size=10).build()[0x1F1:0x26C]
    with pytest.raises(BootConfigError, match=r"command line is 11 bytes; the limit is 10 \(vmlinuz's setup "
                                              r"header cmdline_size\)"):
        configure_boot(mem, result("linux64", header, "vmlinuz"), b"x" * 11, None, MEM)


def test_command_line_limit_and_nul(mem):
    configure_boot(mem, result("pvh"), b"a" * 4095, None, MEM)
    assert mem.read(0x20000 + 4095, 1) == b"\0"
    with pytest.raises(BootConfigError, match=r"command line is 4096 bytes; the limit is 4095 "
                                              r"\(CMDLINE_MAX_SIZE 4096 including the NUL\)"):
        configure_boot(mem, result("pvh"), b"a" * 4096, None, MEM)
    with pytest.raises(BootConfigError, match="NUL byte at offset 3"):
        configure_boot(mem, result("pvh"), b"abc\0def", None, MEM)


# --- Multiboot ---------------------------------------------------------------------------------

def parse_multiboot(mem):
    mbi = 0x6000
    fields = struct.unpack("<IIIIIII16sIIIIII", mem.read(mbi, 68))
    names = ("flags mem_lower mem_upper boot_device cmdline mods_count mods_addr syms "
             "mmap_length mmap_addr drives_length drives_addr config_table boot_loader_name").split()
    return dict(zip(names, fields))


def read_c_string(mem, gpa):
    return cmdline_at(mem, gpa)


def test_multiboot_info_with_module_and_memory_map(mem):
    params = configure_boot(mem, result("multiboot"), b"mb kernel args", (0x3000000, 0x4321), MEM)
    assert params.regs == {"rax": 0x2BADB002, "rbx": 0x6000}
    info = parse_multiboot(mem)
    assert info["flags"] == (1 << 0) | (1 << 2) | (1 << 3) | (1 << 6) | (1 << 9)
    assert info["mem_lower"] == 0x9FC00 // 1024                 # 639 KiB below the EBDA
    assert info["mem_upper"] == (MEM - MiB) // 1024
    assert read_c_string(mem, info["cmdline"]) == b"vmlinux mb kernel args"   # image path first, as QEMU
    assert read_c_string(mem, info["boot_loader_name"]) == b"pyrite"
    assert info["mods_count"] == 1
    mod_start, mod_end, string, reserved = struct.unpack("<IIII", mem.read(info["mods_addr"], 16))
    assert (mod_start, mod_end, reserved) == (0x3000000, 0x3004321, 0)
    assert read_c_string(mem, string) == b"initrd"
    # mmap: each entry's size field (20) does not count itself
    e820 = layout.e820_map(MEM)
    assert info["mmap_length"] == 24 * len(e820)
    at, entries = info["mmap_addr"], []
    while at < info["mmap_addr"] + info["mmap_length"]:
        size, base, length, kind = struct.unpack("<IQQI", mem.read(at, 24))
        assert size == 20
        entries.append((base, length, kind))
        at += size + 4
    assert entries == e820
    # everything lies within [0x6000, 0x7000), clear of the zero page, stack and page tables
    ends = [info["mods_addr"] + 16, info["mmap_addr"] + info["mmap_length"],
            info["boot_loader_name"] + 7, string + 7]
    assert all(0x6000 < end <= 0x7000 for end in ends)
    regions = sorted([(0x6000, 0x6000 + 68), (info["mmap_addr"], info["mmap_addr"] + info["mmap_length"]),
                      (info["mods_addr"], info["mods_addr"] + 16),
                      (info["boot_loader_name"], info["boot_loader_name"] + 7), (string, string + 7)])
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(regions, regions[1:]))


def test_multiboot_without_initrd(mem):
    configure_boot(mem, result("multiboot"), b"", None, MEM)
    info = parse_multiboot(mem)
    assert info["mods_count"] == 0
    assert read_c_string(mem, info["boot_loader_name"]) == b"pyrite"


def test_multiboot_mem_upper_stops_at_the_mmio_gap(mem):
    configure_boot(mem, result("multiboot"), b"", None, 5 * GiB)
    assert parse_multiboot(mem)["mem_upper"] == (3 * GiB - MiB) // 1024


def test_unknown_protocol(mem):
    with pytest.raises(BootConfigError, match="vmlinux: unknown boot protocol 'efi'"):
        configure_boot(mem, result("efi"), b"", None, MEM)


def test_end_to_end_bzimage_zero_page(mem):
    image = BzImage(compress("gzip", b"\x7fELF")).build()
    kernel = LoadResult("linux64", 0x100200, 0x100000, 0x1400000, image[0x1F1:0x26C], "vmlinuz")
    configure_boot(mem, kernel, b"console=ttyS0", (0x3000000, 4096), MEM)
    assert mem.read(0x7000 + 0x202, 4) == b"HdrS"
    assert u(mem, 0x7000 + 0x206, 2) == 0x020F                  # the kernel's protocol version
