"""The Intel MultiProcessor Specification 1.4 table, as Firecracker's mptable.rs writes it.

It tells the guest how many CPUs there are (one processor entry per vCPU, APIC id =
vCPU index, the first is the boot processor), where the IOAPIC is, and that ISA IRQs
0..23 go to IOAPIC pins 0..23 as KVM's default IRQ routing does. Layout, at
MPTABLE_START (0x9fc00, in the EBDA, which the e820 map leaves out of RAM):

    mpf_intel (16)  "_MP_", physptr -> the configuration table, spec 1.4
    mpc_table (44)  "PCMP", length, checksum, OEM "FC      ", product "000000000000"
    mpc_cpu (20) x vcpu_count
    mpc_bus (8)     bus 0 "ISA   "
    mpc_ioapic (8)  id vcpu_count + 1, at 0xfec00000
    mpc_intsrc (8) x 24     INT, ISA IRQ n -> IOAPIC pin n
    mpc_lintsrc (8) x 2     ExtINT on LINT0 of the BSP, NMI on LINT1 of all CPUs

Two deliberate differences from Firecracker: the IOAPIC entry's version is 0x11 (the
version register of KVM's IOAPIC; Firecracker writes the local APIC's 0x14), and the
header's entry count is the number of base-table entries as the MP spec defines it
(Firecracker also counts the floating pointer). Linux reads neither.
"""
from __future__ import annotations

import struct
from collections import namedtuple

from pyrite.arch.x86_64.layout import EBDA_START, MAX_VCPUS, MPTABLE_START
from pyrite.memory import GuestMemory, GuestMemoryError

IRQ_MAX = 23                     # IOAPIC pins 0..23

MPF_INTEL = struct.Struct("<4sIBBB5s")          # signature physptr length spec checksum feature1-5
MPC_TABLE = struct.Struct("<4sHBB8s12sIHHII")   # signature length spec checksum oem product
#                                                oemptr oemsize entry_count lapic reserved
MPC_CPU = struct.Struct("<BBBBII8s")           # type apicid apicver cpuflag signature features
MPC_BUS = struct.Struct("<BB6s")
MPC_IOAPIC = struct.Struct("<BBBBI")            # type apicid apicver flags address
MPC_INTSRC = struct.Struct("<BBHBBBB")          # type irqtype irqflag srcbus srcbusirq dstapic dstirq
MPC_LINTSRC = struct.Struct("<BBHBBBB")         # type irqtype irqflag srcbusid srcbusirq
#                                                 destapic destapiclint

SMP_MAGIC_IDENT = b"_MP_"
MPC_SIGNATURE = b"PCMP"
MPC_SPEC = 4                     # MP spec 1.4
MPC_OEM = b"FC      "
MPC_PRODUCT_ID = b"0" * 12
BUS_TYPE_ISA = b"ISA   "

MP_PROCESSOR, MP_BUS, MP_IOAPIC, MP_INTSRC, MP_LINTSRC = 0, 1, 2, 3, 4
ENTRY_SIZES = {MP_PROCESSOR: MPC_CPU.size, MP_BUS: MPC_BUS.size, MP_IOAPIC: MPC_IOAPIC.size,
               MP_INTSRC: MPC_INTSRC.size, MP_LINTSRC: MPC_LINTSRC.size}
CPU_ENABLED = 1
CPU_BOOTPROCESSOR = 2
MPC_APIC_USABLE = 1
MP_IRQ_INT, MP_IRQ_NMI, MP_IRQ_SMI, MP_IRQ_EXTINT = 0, 1, 2, 3
MP_IRQPOL_DEFAULT = 0            # polarity and trigger "conforming to the bus" (ISA: edge, high)

APIC_DEFAULT_PHYS_BASE = 0xFEE0_0000
IO_APIC_DEFAULT_PHYS_BASE = 0xFEC0_0000
APIC_VERSION = 0x14
IOAPIC_VERSION = 0x11
CPU_STEPPING = 0x600             # family 6
CPU_FEATURE_APIC = 0x200
CPU_FEATURE_FPU = 0x001


class MptableError(Exception):
    """The MP table cannot be written or read back."""


# What parse_mptable() reads back (named tuples: cheap to define on the boot path).
MpProcessor = namedtuple("MpProcessor", "apic_id apic_version enabled bootstrap")
MpIoApic = namedtuple("MpIoApic", "apic_id version address")
# An I/O (``kind`` MP_INTSRC) or local (MP_LINTSRC) interrupt assignment.
MpInterrupt = namedtuple("MpInterrupt", "kind irq_type source_bus source_irq dest_apic dest_pin")


class MpTable(namedtuple("MpTable", "address processors ioapics buses interrupts local_interrupts "
                                    "oem product lapic_address entry_count entries_found")):
    """A parsed MP table. ``buses`` holds (bus id, type) pairs; ``entry_count`` is what the
    header states, ``entries_found`` what walking the table finds."""
    __slots__ = ()

    @property
    def apic_ids(self) -> list[int]:
        return [p.apic_id for p in self.processors]


def mptable_size(vcpu_count: int) -> int:
    return (MPF_INTEL.size + MPC_TABLE.size + MPC_CPU.size * vcpu_count + MPC_BUS.size
            + MPC_IOAPIC.size + MPC_INTSRC.size * (IRQ_MAX + 1) + MPC_LINTSRC.size * 2)


def _checksum(data: bytes) -> int:
    """The byte that makes ``data`` plus itself sum to 0 mod 256."""
    return -sum(data) & 0xFF


def write_mptable(mem: GuestMemory, vcpu_count: int) -> int:
    """Write the MP table for ``vcpu_count`` vCPUs at MPTABLE_START; returns its size in bytes."""
    if not isinstance(vcpu_count, int) or not 1 <= vcpu_count <= MAX_VCPUS:
        raise MptableError(f"mptable: vcpu_count {vcpu_count!r} is outside 1..{MAX_VCPUS}")
    size = mptable_size(vcpu_count)
    # The table lives in the EBDA's 1 KiB, below the legacy video hole at 0xA0000.
    ebda_end = EBDA_START + 0x400
    if MPTABLE_START + size > ebda_end:
        raise MptableError(f"mptable: {size} bytes for {vcpu_count} vCPUs overrun the EBDA "
                           f"[{EBDA_START:#x}, {ebda_end:#x})")
    if not mem.contains(MPTABLE_START, size):
        raise MptableError(f"mptable: guest memory does not hold [{MPTABLE_START:#x}, "
                           f"{MPTABLE_START + size:#x})")
    ioapic_id = vcpu_count + 1
    entries = bytearray()
    for cpu in range(vcpu_count):
        flags = CPU_ENABLED | (CPU_BOOTPROCESSOR if cpu == 0 else 0)
        entries += MPC_CPU.pack(MP_PROCESSOR, cpu, APIC_VERSION, flags, CPU_STEPPING,
                                CPU_FEATURE_APIC | CPU_FEATURE_FPU, bytes(8))
    entries += MPC_BUS.pack(MP_BUS, 0, BUS_TYPE_ISA)
    entries += MPC_IOAPIC.pack(MP_IOAPIC, ioapic_id, IOAPIC_VERSION, MPC_APIC_USABLE,
                               IO_APIC_DEFAULT_PHYS_BASE)
    # ISA IRQ n -> IOAPIC pin n, as kvm_setup_default_irq_routing() routes them.
    for irq in range(IRQ_MAX + 1):
        entries += MPC_INTSRC.pack(MP_INTSRC, MP_IRQ_INT, MP_IRQPOL_DEFAULT, 0, irq, ioapic_id, irq)
    entries += MPC_LINTSRC.pack(MP_LINTSRC, MP_IRQ_EXTINT, MP_IRQPOL_DEFAULT, 0, 0, 0, 0)
    entries += MPC_LINTSRC.pack(MP_LINTSRC, MP_IRQ_NMI, MP_IRQPOL_DEFAULT, 0, 0, 0xFF, 1)
    entry_count = vcpu_count + 1 + 1 + (IRQ_MAX + 1) + 2

    table_addr = MPTABLE_START + MPF_INTEL.size
    length = MPC_TABLE.size + len(entries)

    def header(checksum: int) -> bytes:
        return MPC_TABLE.pack(MPC_SIGNATURE, length, MPC_SPEC, checksum, MPC_OEM, MPC_PRODUCT_ID,
                              0, 0, entry_count, APIC_DEFAULT_PHYS_BASE, 0)

    table = header(_checksum(header(0) + entries)) + entries

    def floating(checksum: int) -> bytes:
        return MPF_INTEL.pack(SMP_MAGIC_IDENT, table_addr, 1, MPC_SPEC, checksum, bytes(5))

    blob = floating(_checksum(floating(0))) + table
    assert len(blob) == size
    mem.write(MPTABLE_START, blob)
    return size


def parse_mptable(mem: GuestMemory, address: int = MPTABLE_START) -> MpTable:
    """Read back and verify an MP table (signatures, checksums, entry layout)."""
    try:
        mpf = mem.read(address, MPF_INTEL.size)
    except GuestMemoryError as exc:
        raise MptableError(f"mptable: no floating pointer at {address:#x}: {exc}") from None
    signature, physptr, mpf_len, _, _, _ = MPF_INTEL.unpack(mpf)
    if signature != SMP_MAGIC_IDENT:
        raise MptableError(f"mptable: no {SMP_MAGIC_IDENT!r} signature at {address:#x}")
    if mpf_len != 1 or sum(mpf) & 0xFF:
        raise MptableError(f"mptable: floating pointer at {address:#x} has a bad length or checksum")
    try:
        head = mem.read(physptr, MPC_TABLE.size)
        (sig, length, _spec, _csum, oem, product, _oemptr, _oemsize, entry_count, lapic,
         _reserved) = MPC_TABLE.unpack(head)
        if sig != MPC_SIGNATURE:
            raise MptableError(f"mptable: no {MPC_SIGNATURE!r} signature at {physptr:#x}")
        table = mem.read(physptr, length)
    except GuestMemoryError as exc:
        raise MptableError(f"mptable: configuration table at {physptr:#x} is not in memory: "
                           f"{exc}") from None
    if sum(table) & 0xFF:
        raise MptableError(f"mptable: configuration table at {physptr:#x} has a bad checksum")

    processors, ioapics, buses, ints, lints = [], [], [], [], []
    offset, count = MPC_TABLE.size, 0
    while offset < length:
        kind = table[offset]
        entry_size = ENTRY_SIZES.get(kind)
        if entry_size is None or offset + entry_size > length:
            raise MptableError(f"mptable: bad entry type {kind} at {physptr + offset:#x}")
        raw = table[offset:offset + entry_size]
        if kind == MP_PROCESSOR:
            _, apic_id, version, flags, _, _, _ = MPC_CPU.unpack(raw)
            processors.append(MpProcessor(apic_id, version, bool(flags & CPU_ENABLED),
                                          bool(flags & CPU_BOOTPROCESSOR)))
        elif kind == MP_BUS:
            _, bus_id, bus_type = MPC_BUS.unpack(raw)
            buses.append((bus_id, bus_type))
        elif kind == MP_IOAPIC:
            _, apic_id, version, _flags, addr = MPC_IOAPIC.unpack(raw)
            ioapics.append(MpIoApic(apic_id, version, addr))
        else:
            _, irq_type, _flag, bus, bus_irq, dest, pin = MPC_INTSRC.unpack(raw)
            (ints if kind == MP_INTSRC else lints).append(
                MpInterrupt(kind, irq_type, bus, bus_irq, dest, pin))
        offset += entry_size
        count += 1
    return MpTable(address=address, processors=processors, ioapics=ioapics, buses=buses,
                   interrupts=ints, local_interrupts=lints, oem=oem, product=product,
                   lapic_address=lapic, entry_count=entry_count, entries_found=count)
