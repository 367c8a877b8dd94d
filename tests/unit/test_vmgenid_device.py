"""The VM generation ID: its DSDT entry (checked against the bytes Firecracker 1.12.1 gives a
guest) read back as Linux's vmgenid driver and pyrite's library OS read it, the device
model, and its GSI beside the virtio devices'. No KVM needed."""
from __future__ import annotations

import pytest

from pyrite.arch.x86_64 import acpi, layout
from pyrite.arch.x86_64.acpi import parse_acpi, vmgenid_address, write_acpi_tables
from pyrite.devices.acpi.persist import VmGenIdState
from pyrite.devices.acpi.vmgenid import VmGenId, VmGenIdError
from pyrite.memory import GuestMemory
from pyrite.vmm.devices import IRQ_BASE, IRQ_MAX, MAX_VIRTIO_DEVICES, vmgenid_gsi

MiB = 1 << 20

# Firecracker 1.12.1's DSDT, as a guest read it (tests/guests-style probe, no virtio devices):
# Device(\_SB_.GED_) then Device(\_SB_.VGEN); its COM1..COM4 and PS2_ follow and are not ours.
FIRECRACKER_1_12_1_GED_AND_VGEN = bytes.fromhex(
    "5b8248042e5f53425f4745445f085f4849440d414350493030313300085f435253110e0a0b8906000301"
    "05000000790014195f45565409a01293680a05865c2e5f53425f5647454e0a805b8245052e5f53425f"
    "5647454e085f4849440d4643564d47494400085f4349440d564d5f47656e5f436f756e74657200085f"
    "44444e0d564d5f47656e5f436f756e746572000841444452120c020cf0ff0d000c00000000")


@pytest.fixture
def mem():
    m = GuestMemory(layout.ram_regions(2 * MiB))
    yield m
    m.close()


def pkg_length(data: bytes, at: int) -> tuple[int, int]:
    lead = data[at]
    follow = lead >> 6
    value = lead & (0x0F if follow else 0x3F)
    for i in range(follow):
        value |= data[at + 1 + i] << (4 + 8 * i)
    return value, 1 + follow


def devices(aml: bytes) -> dict[str, bytes]:
    """Top-level Device terms by path ("_SB_.VGEN"): each one's body after its name."""
    found, offset = {}, 0
    while offset < len(aml):
        assert aml[offset:offset + 2] == b"\x5B\x82", offset
        length, size = pkg_length(aml, offset + 2)
        body = aml[offset + 2 + size:offset + 2 + length]
        assert body[0] == 0x2E                                   # DualNamePrefix
        found[f"{body[1:5].decode()}.{body[5:9].decode()}"] = body[9:]
        offset += 2 + length
    assert offset == len(aml)
    return found


def string_name(body: bytes, name: str) -> str:
    """Name(<name>, "<string>") inside a device body."""
    at = body.index(b"\x08" + name.encode() + b"\x0D") + 6
    return body[at:body.index(b"\0", at)].decode()


def test_dsdt_describes_vgen_and_ged_as_firecracker(mem):
    write_acpi_tables(mem, 1, vmgenid=(acpi.VMGENID_ADDR, 7))
    aml = parse_acpi(mem).tables[b"DSDT"].data[36:]
    found = devices(aml)
    assert list(found) == ["_SB_.GED_", "_SB_.VGEN", "_SB_.COM1", "_SB_.PS2_"]
    vgen, ged = found["_SB_.VGEN"], found["_SB_.GED_"]
    assert string_name(vgen, "_HID") == "FCVMGID"
    assert string_name(vgen, "_CID") == "VM_Gen_Counter"     # what Linux's driver matches
    assert string_name(vgen, "_DDN") == "VM_Gen_Counter"
    # Name(ADDR, Package(2) {DWord low, DWord high}): 0xDFFF0, below the RSDP, outside RAM
    assert b"\x08ADDR\x12\x0C\x02\x0C\xF0\xFF\x0D\x00\x0C\x00\x00\x00\x00" in vgen
    assert string_name(ged, "_HID") == "ACPI0013"            # Generic Event Device
    assert b"\x89\x06\x00\x03\x01\x07\x00\x00\x00\x79\x00" in ged   # Interrupt(edge) {7}
    # Method(_EVT, 1, Serialized) { If (Arg0 == 7) { Notify(\_SB_.VGEN, 0x80) } }
    assert b"\x14\x19_EVT\x09\xA0\x12\x93\x68\x0A\x07\x86\x5C\x2E_SB_VGEN\x0A\x80" in ged


def test_vgen_and_ged_are_byte_for_byte_firecracker_1_12_1():
    assert acpi.vmgenid_aml(0xDFFF0, 5) == FIRECRACKER_1_12_1_GED_AND_VGEN


def test_the_address_reads_back_from_the_dsdt(mem):
    write_acpi_tables(mem, 2, vmgenid=(acpi.VMGENID_ADDR, 5))
    assert vmgenid_address(parse_acpi(mem)) == 0xDFFF0
    write_acpi_tables(mem, 2, vmgenid=(0x1_2345_6780, 5))     # the high DWord is used too
    assert vmgenid_address(parse_acpi(mem)) == 0x1_2345_6780
    write_acpi_tables(mem, 2)                                 # no device: no address
    assert vmgenid_address(parse_acpi(mem)) is None
    assert len(devices(parse_acpi(mem).tables[b"DSDT"].data[36:])) == 2


def test_the_id_lies_outside_the_tables_and_outside_ram(mem):
    write_acpi_tables(mem, acpi.MAX_VCPUS, vmgenid=(acpi.VMGENID_ADDR, 5))
    t = parse_acpi(mem)
    start, end = acpi.VMGENID_ADDR, acpi.VMGENID_ADDR + acpi.VMGENID_SIZE
    assert acpi.VMGENID_ADDR % 8 == 0 and end == acpi.RSDP_ADDR
    for table in t.tables.values():
        assert table.address + table.length <= start or table.address >= end
    for mem_size in (64 * MiB, 4096 * MiB + 512 * MiB):
        for addr, size, kind in layout.e820_map(mem_size):
            assert kind != 1 or end <= addr or start >= addr + size


def test_bad_places_are_refused():
    with pytest.raises(acpi.AcpiError, match="GSI 256"):
        acpi.vmgenid_aml(0xDFFF0, 256)
    with pytest.raises(VmGenIdError, match="0xdfff4 is not 8-byte aligned"):
        VmGenId(0xDFFF4, 5, lambda: None)


# --- the device --------------------------------------------------------------------------------

class Edges:
    def __init__(self):
        self.count = 0

    def __call__(self):
        self.count += 1


def test_generate_writes_16_random_bytes_without_an_interrupt(mem):
    edges = Edges()
    dev = VmGenId(acpi.VMGENID_ADDR, 5, edges)
    assert dev.generation == bytes(16)
    first = dev.generate(mem)
    assert len(first) == 16 and mem.read(0xDFFF0, 16) == first == dev.generation
    assert edges.count == 0                                   # a boot has no one to tell


def test_regenerate_writes_a_new_id_then_raises_the_interrupt(mem):
    ids = iter([b"A" * 16, b"B" * 16])
    seen = []
    dev = VmGenId(acpi.VMGENID_ADDR, 5, lambda: seen.append(mem.read(0xDFFF0, 16)),
                  random=lambda n: next(ids))
    dev.generate(mem)
    assert dev.regenerate(mem) == b"B" * 16
    assert seen == [b"B" * 16]                                # the new ID is there before the edge


def test_each_generation_differs(mem):
    dev = VmGenId(acpi.VMGENID_ADDR, 5, lambda: None)
    assert len({dev.regenerate(mem) for _ in range(50)}) == 50


def test_state_is_the_place_and_restore_renews_and_notifies(mem):
    edges = Edges()
    dev = VmGenId(acpi.VMGENID_ADDR, 9, edges)
    before = dev.generate(mem)
    assert dev.state() == VmGenIdState(gsi=9, addr=0xDFFF0)
    clone = VmGenId(acpi.VMGENID_ADDR, 9, edges)
    after = clone.restore(dev.state(), mem)
    assert after != before and mem.read(0xDFFF0, 16) == after and edges.count == 1


def test_restore_refuses_another_place_or_gsi(mem):
    dev = VmGenId(acpi.VMGENID_ADDR, 5, lambda: None)
    with pytest.raises(VmGenIdError, match="GSI 6, this VM at 0xdfff0 on GSI 5"):
        dev.restore(VmGenIdState(gsi=6, addr=0xDFFF0), mem)
    with pytest.raises(VmGenIdError, match="at 0xdfff8"):
        dev.restore(VmGenIdState(gsi=5, addr=0xDFFF8), mem)
    assert mem.read(0xDFFF0, 16) == bytes(16)                 # nothing written


def test_a_short_random_source_is_refused(mem):
    dev = VmGenId(acpi.VMGENID_ADDR, 5, lambda: None, random=lambda n: b"short")
    with pytest.raises(VmGenIdError, match="5 bytes, not 16"):
        dev.generate(mem)


# --- its GSI -----------------------------------------------------------------------------------

def test_the_gsi_follows_the_virtio_devices_as_in_firecracker():
    # Firecracker 1.12.1: IRQ 5 with no virtio device, 6 with one drive (its log says so).
    assert vmgenid_gsi([]) == 5
    assert vmgenid_gsi([object()]) == 6
    assert vmgenid_gsi([object()] * MAX_VIRTIO_DEVICES) == IRQ_MAX == 23
    assert IRQ_BASE == 5 and MAX_VIRTIO_DEVICES == 18
