import struct
from types import SimpleNamespace

from pyrite.arch.x86_64 import boot_cpu, layout
from pyrite.arch.x86_64.pagewalk import translate
from pyrite.memory import GuestMemory


def _segment():
    return SimpleNamespace(base=0, limit=0, selector=0, type=0, present=0, dpl=0, db=0, s=0, l=0, g=0,
                           avl=0, unusable=0)


def _sregs():
    names = ("cs", "ds", "es", "fs", "gs", "ss", "tr")
    return SimpleNamespace(**{n: _segment() for n in names}, gdt=SimpleNamespace(base=0, limit=0),
                           idt=SimpleNamespace(base=0, limit=0), cr0=0x60000010, cr3=0, cr4=0, efer=0)


def test_gdt_entries_match_firecracker_encoding():
    # Firecracker's gdt.rs tests: gdt_entry(0xa09b, 0, 0xfffff) == 0x00af9b000000ffff
    assert boot_cpu.gdt_entry(0xA09B, 0, 0xFFFFF) == 0x00AF9B000000FFFF
    assert boot_cpu.gdt_entry(0xC093, 0, 0xFFFFF) == 0x00CF93000000FFFF


def test_linux64_entry_is_long_mode_with_identity_map():
    mem = GuestMemory([(0, 2 << 20)])
    sregs = _sregs()
    boot_cpu.configure_sregs(mem, sregs, "linux64")
    assert sregs.cs.l == 1 and sregs.cs.selector == 0x8 and sregs.cs.type == 0xB
    assert sregs.ds.selector == 0x10 and sregs.tr.selector == 0x18 and sregs.tr.type == 0xB
    assert sregs.cr0 & boot_cpu.X86_CR0_PG and sregs.cr4 & boot_cpu.X86_CR4_PAE
    assert sregs.efer & boot_cpu.EFER_LMA and sregs.cr3 == layout.PML4_START
    assert sregs.gdt.base == layout.GDT_START and sregs.gdt.limit == 31
    gdt = struct.unpack_from("<4Q", mem.read(layout.GDT_START, 32))
    assert gdt[1] == 0x00AF9B000000FFFF
    # The page tables really map the first GiB onto itself.
    for vaddr in (0, 0x1234, 0x20_0000 + 5, 0x3FFF_FFFF):
        assert translate(mem, vaddr, sregs.cr0, sregs.cr3, sregs.cr4, sregs.efer) == vaddr
    assert translate(mem, 0x4000_0000, sregs.cr0, sregs.cr3, sregs.cr4, sregs.efer) is None


def test_pvh_entry_is_flat_32bit_protected_mode_without_paging():
    mem = GuestMemory([(0, 2 << 20)])
    sregs = _sregs()
    boot_cpu.configure_sregs(mem, sregs, "pvh")
    assert sregs.cr0 == boot_cpu.X86_CR0_PE | boot_cpu.X86_CR0_ET
    assert sregs.efer == 0 and sregs.cr4 == 0
    assert sregs.cs.db == 1 and sregs.cs.l == 0 and sregs.cs.limit == 0xFFFFFFFF and sregs.cs.base == 0
    assert sregs.ss.db == 1 and sregs.ds.type == 0x3


def test_boot_registers_per_protocol():
    assert boot_cpu.boot_gprs("pvh", 0x100000, {"rbx": layout.PVH_INFO_START}) == {
        "rflags": 2, "rip": 0x100000, "rbx": 0x6000}
    gprs = boot_cpu.boot_gprs("linux64", 0x1000000, {"rsi": layout.ZERO_PAGE_START})
    assert gprs["rsi"] == 0x7000 and gprs["rsp"] == layout.BOOT_STACK_POINTER


def test_set_lint_routes_lint0_extint_and_lint1_nmi():
    regs = bytearray(1024)
    struct.pack_into("<I", regs, 0x350, 0x10700)
    boot_cpu.set_lint(regs)
    assert struct.unpack_from("<I", regs, 0x350)[0] == 0x10700
    assert (struct.unpack_from("<I", regs, 0x360)[0] >> 8) & 7 == 4
