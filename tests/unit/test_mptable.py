"""MP table: written at the EBDA, read back and verified as a guest kernel would."""
import pytest

from pyrite.arch.x86_64 import mptable
from pyrite.arch.x86_64.layout import MPTABLE_START, ram_regions
from pyrite.arch.x86_64.mptable import MptableError, parse_mptable, write_mptable
from pyrite.memory import GuestMemory


@pytest.fixture
def mem():
    m = GuestMemory(ram_regions(1 << 20))
    yield m
    m.close()


@pytest.mark.parametrize("vcpus", [1, 2, 5, 32])
def test_round_trip(mem, vcpus):
    size = write_mptable(mem, vcpus)
    assert size == 16 + 44 + 20 * vcpus + 8 + 8 + 8 * 24 + 8 * 2
    table = parse_mptable(mem)              # checks signatures and both checksums
    assert table.apic_ids == list(range(vcpus))
    assert [p.bootstrap for p in table.processors] == [True] + [False] * (vcpus - 1)
    assert all(p.enabled and p.apic_version == 0x14 for p in table.processors)
    assert table.buses == [(0, b"ISA   ")]
    [ioapic] = table.ioapics
    assert (ioapic.apic_id, ioapic.version, ioapic.address) == (vcpus + 1, 0x11, 0xFEC00000)
    assert [(i.source_irq, i.dest_apic, i.dest_pin) for i in table.interrupts] == [
        (irq, vcpus + 1, irq) for irq in range(24)]
    assert all(i.irq_type == mptable.MP_IRQ_INT and i.source_bus == 0 for i in table.interrupts)
    lint0, lint1 = table.local_interrupts
    assert (lint0.irq_type, lint0.dest_apic, lint0.dest_pin) == (mptable.MP_IRQ_EXTINT, 0, 0)
    assert (lint1.irq_type, lint1.dest_apic, lint1.dest_pin) == (mptable.MP_IRQ_NMI, 0xFF, 1)
    assert table.oem == b"FC      " and table.product == b"0" * 12
    assert table.lapic_address == 0xFEE00000
    assert table.entry_count == table.entries_found == vcpus + 28
    assert MPTABLE_START + size <= 0xA0000


def test_floating_pointer_fields(mem):
    write_mptable(mem, 1)
    raw = mem.read(MPTABLE_START, 16)
    assert raw[:4] == b"_MP_"
    assert int.from_bytes(raw[4:8], "little") == MPTABLE_START + 16
    assert raw[8] == 1 and raw[9] == 4           # 16 bytes long, spec 1.4
    assert sum(raw) % 256 == 0
    assert raw[11:16] == bytes(5)                # no default configuration: a table follows
    assert mem.read(MPTABLE_START + 16, 4) == b"PCMP"


def test_rewrite_with_fewer_vcpus_leaves_a_valid_table(mem):
    write_mptable(mem, 32)
    write_mptable(mem, 2)
    assert parse_mptable(mem).apic_ids == [0, 1]


@pytest.mark.parametrize("vcpus", [0, 33, -1])
def test_vcpu_count_out_of_range(mem, vcpus):
    with pytest.raises(MptableError, match=f"vcpu_count {vcpus} is outside 1..32"):
        write_mptable(mem, vcpus)


def test_memory_without_the_ebda_is_refused():
    small = GuestMemory([(0, 0x9F000)])
    try:
        with pytest.raises(MptableError, match="does not hold"):
            write_mptable(small, 1)
    finally:
        small.close()


def test_corruption_is_detected(mem):
    write_mptable(mem, 4)
    addr = MPTABLE_START + 16 + 44 + 1           # first processor's APIC id
    mem.write(addr, b"\x09")
    with pytest.raises(MptableError, match="bad checksum"):
        parse_mptable(mem)
    mem.write(MPTABLE_START, b"_XP_")
    with pytest.raises(MptableError, match="signature"):
        parse_mptable(mem)
