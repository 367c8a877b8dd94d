"""The vCPU state each boot protocol starts in: GDT, identity page tables, segment and
control registers, general registers, FPU. Values as Firecracker sets them."""
from __future__ import annotations

import struct

from pyrite.memory import GuestMemory
from . import layout

X86_CR0_PE = 1 << 0
X86_CR0_ET = 1 << 4
X86_CR0_PG = 1 << 31
X86_CR4_PAE = 1 << 5
EFER_LME = 1 << 8
EFER_LMA = 1 << 10

# GDT flags/access words (Firecracker's gdt.rs): G/DB/L nibble << 12 | access byte.
GDT_CODE64 = 0xA09B
GDT_CODE32 = 0xC09B
GDT_DATA = 0xC093
GDT_TSS = 0x808B
CODE_SELECTOR, DATA_SELECTOR, TSS_SELECTOR = 0x08, 0x10, 0x18


def gdt_entry(flags: int, base: int, limit: int) -> int:
    return (((base & 0xFF000000) << 32) | ((flags & 0x0000F0FF) << 40)
            | ((limit & 0x000F0000) << 32) | ((base & 0x00FFFFFF) << 16) | (limit & 0x0000FFFF))


def gdt_for(protocol: str) -> list[int]:
    """64-bit code for the Linux 64-bit protocol; flat 32-bit code for PVH and Multiboot."""
    code = GDT_CODE64 if protocol == "linux64" else GDT_CODE32
    tss_flags = GDT_TSS if protocol == "linux64" else 0x008B
    return [0, gdt_entry(code, 0, 0xFFFFF), gdt_entry(GDT_DATA, 0, 0xFFFFF), gdt_entry(tss_flags, 0, 0xFFFFF)]


def segment_from_gdt(seg, entry: int, index: int) -> None:
    """Fill a kvm_segment from a GDT descriptor, as the CPU would load it."""
    limit = (entry & 0xFFFF) | ((entry >> 32) & 0xF0000)
    g = (entry >> 55) & 1
    seg.base = ((entry >> 16) & 0xFFFFFF) | ((entry >> 32) & 0xFF000000)
    seg.limit = (limit << 12) | 0xFFF if g else limit
    seg.selector = index * 8
    seg.type = (entry >> 40) & 0xF
    seg.present = (entry >> 47) & 1
    seg.dpl = (entry >> 45) & 3
    seg.db = (entry >> 54) & 1
    seg.s = (entry >> 44) & 1
    seg.l = (entry >> 53) & 1
    seg.g = g
    seg.avl = (entry >> 52) & 1
    seg.unusable = 0 if seg.present else 1


def write_identity_page_tables(mem: GuestMemory) -> None:
    """Identity-map the first GiB with 2 MiB pages (PML4 -> PDPT -> PD), as Firecracker does."""
    mem.write_int(layout.PML4_START, layout.PDPTE_START | 0x03, 8)
    mem.write_int(layout.PDPTE_START, layout.PDE_START | 0x03, 8)
    mem.write(layout.PDE_START, struct.pack("<512Q", *((i << 21) | 0x83 for i in range(512))))


def configure_sregs(mem: GuestMemory, sregs, protocol: str) -> None:
    """Write the GDT (and page tables for 64-bit entry) and set sregs for `protocol` in place."""
    gdt = gdt_for(protocol)
    mem.write(layout.GDT_START, struct.pack(f"<{len(gdt)}Q", *gdt))
    mem.write_int(layout.IDT_START, 0, 8)
    sregs.gdt.base, sregs.gdt.limit = layout.GDT_START, len(gdt) * 8 - 1
    sregs.idt.base, sregs.idt.limit = layout.IDT_START, 7
    segment_from_gdt(sregs.cs, gdt[1], 1)
    for seg in (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss):
        segment_from_gdt(seg, gdt[2], 2)
    segment_from_gdt(sregs.tr, gdt[3], 3)
    if protocol == "linux64":
        write_identity_page_tables(mem)
        sregs.cr3 = layout.PML4_START
        sregs.cr4 |= X86_CR4_PAE
        sregs.cr0 |= X86_CR0_PE | X86_CR0_PG
        sregs.efer |= EFER_LME | EFER_LMA
    else:
        # PVH / Multiboot: 32-bit protected mode, paging off, caches on.
        sregs.cr0 = X86_CR0_PE | X86_CR0_ET
        sregs.cr4 = 0
        sregs.efer = 0


def boot_gprs(protocol: str, entry: int, regs: dict[str, int]) -> dict[str, int]:
    """General registers at the first instruction: entry, flags, stack, protocol pointers."""
    gprs = {"rflags": 0x2, "rip": entry}
    if protocol == "linux64":
        gprs["rsp"] = gprs["rbp"] = layout.BOOT_STACK_POINTER
    gprs.update(regs)
    return gprs


# Local APIC LVT registers (Firecracker's interrupts.rs set_lint): LINT0 ExtINT, LINT1 NMI.
APIC_LVT0, APIC_LVT1 = 0x350, 0x360
APIC_MODE_EXTINT, APIC_MODE_NMI = 0x7, 0x4


def set_lint(lapic_regs: bytearray) -> None:
    """Route LINT0 to ExtINT and LINT1 to NMI in a kvm_lapic_state register page."""
    for offset, mode in ((APIC_LVT0, APIC_MODE_EXTINT), (APIC_LVT1, APIC_MODE_NMI)):
        value = struct.unpack_from("<I", lapic_regs, offset)[0]
        struct.pack_into("<I", lapic_regs, offset, (value & ~0x700) | (mode << 8))
