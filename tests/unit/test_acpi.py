"""ACPI tables: written where Firecracker puts them, read back and verified as a guest kernel
would (signatures, lengths, checksums), with field offsets from the ACPI 6.5 specification
and AML checked against byte strings that iasl produced (quoted in Firecracker's aml.rs tests)."""
import struct

import pytest

from pyrite.arch.x86_64 import acpi, layout
from pyrite.arch.x86_64.acpi import AcpiError, parse_acpi, write_acpi_tables
from pyrite.arch.x86_64.bootparams import configure_boot
from pyrite.arch.x86_64.loader import LoadResult
from pyrite.arch.x86_64.mptable import mptable_size, parse_mptable, write_mptable
from pyrite.memory import GuestMemory

MiB = 1 << 20


@pytest.fixture
def mem():
    m = GuestMemory(layout.ram_regions(2 * MiB))
    m.write(0, b"\xaa" * MiB)                   # stale low memory: tables must not rely on zeros
    yield m
    m.close()


def table_sum(mem, addr, length):
    return sum(mem.read(addr, length)) & 0xFF


@pytest.mark.parametrize("vcpus", [1, 2, 32])
def test_round_trip_lists_every_vcpu(mem, vcpus):
    rsdp = write_acpi_tables(mem, vcpus)
    assert rsdp == 0xE0000
    t = parse_acpi(mem, rsdp)
    assert t.apic_ids == list(range(vcpus))
    assert [(c.uid, c.apic_id, c.enabled) for c in t.local_apics] == [(i, i, True) for i in range(vcpus)]
    assert t.io_apics == [acpi.MadtIoApic(0, 0xFEC00000, 0)]
    assert t.overrides == []                    # KVM routes ISA IRQ n to IOAPIC pin n
    assert (t.lapic_address, t.madt_flags) == (0xFEE00000, 0)
    madt = t.tables[b"APIC"]
    assert madt.length == 36 + 8 + 12 + 8 * vcpus
    assert madt.revision == 6


@pytest.mark.parametrize("vcpus", [1, 2, 32])
def test_layout_follows_firecracker(mem, vcpus):
    write_acpi_tables(mem, vcpus)
    t = parse_acpi(mem)
    dsdt, fadt, madt, xsdt = (t.tables[s] for s in (b"DSDT", b"FACP", b"APIC", b"XSDT"))
    # Firecracker's order, packed one after the other from 0xA0000 (just past the EBDA).
    assert dsdt.address == 0xA0000
    assert fadt.address == dsdt.address + dsdt.length
    assert madt.address == fadt.address + fadt.length
    assert xsdt.address == t.xsdt_address == madt.address + madt.length
    assert xsdt.address + xsdt.length <= 0xA0000 + 0x2000
    assert list(t.tables) == [b"XSDT", b"FACP", b"APIC", b"DSDT"]
    assert xsdt.data[36:] == struct.pack("<QQ", fadt.address, madt.address)
    assert [(x.revision, x.oem_id, x.creator_id) for x in (dsdt, fadt, madt, xsdt)] == [
        (2, b"PYRITE", b"PYRT"), (6, b"PYRITE", b"PYRT"), (6, b"PYRITE", b"PYRT"),
        (1, b"PYRITE", b"PYRT")]


def test_every_checksum_sums_to_zero(mem):
    write_acpi_tables(mem, 2)
    raw = mem.read(0xE0000, 36)
    assert raw[:8] == b"RSD PTR " and raw[15] == 2             # signature, revision 2
    assert struct.unpack_from("<I", raw, 20)[0] == 36          # length
    assert struct.unpack_from("<I", raw, 16)[0] == 0           # no RSDT: XSDT only
    assert sum(raw[:20]) & 0xFF == 0 and sum(raw) & 0xFF == 0  # checksum, extended checksum
    xsdt = struct.unpack_from("<Q", raw, 24)[0]
    for addr in [xsdt] + list(struct.unpack_from("<QQ", mem.read(xsdt + 36, 16))):
        length = mem.read_int(addr + 4, 4)
        assert table_sum(mem, addr, length) == 0, hex(addr)


def test_fadt_is_hardware_reduced_and_points_at_the_dsdt(mem):
    write_acpi_tables(mem, 1)
    t = parse_acpi(mem)
    fadt = t.tables[b"FACP"].data
    assert len(fadt) == 276 and t.tables[b"FACP"].revision == 6
    assert struct.unpack_from("<Q", fadt, 140)[0] == t.tables[b"DSDT"].address   # X_DSDT
    assert struct.unpack_from("<I", fadt, 40)[0] == 0                            # DSDT (32-bit)
    assert struct.unpack_from("<I", fadt, 36)[0] == 0                            # no FACS
    flags = struct.unpack_from("<I", fadt, 112)[0]
    assert flags == t.fadt_flags == (1 << 20) | (1 << 4) | (1 << 5)   # HW_REDUCED, no buttons
    iapc = struct.unpack_from("<H", fadt, 109)[0]
    assert iapc == t.iapc_boot_arch == (1 << 2) | (1 << 3) | (1 << 4)  # no VGA, no MSI, no ASPM
    assert fadt[131] == 5                                              # FADT minor version
    assert fadt[268:276] == t.hypervisor_vendor_id == b"PYRITEVM"


def test_tables_stay_clear_of_the_mp_table_and_of_ram(mem):
    write_mptable(mem, 32)
    write_acpi_tables(mem, 32)
    assert parse_mptable(mem).apic_ids == list(range(32))   # both survive: neither overlaps
    assert parse_acpi(mem).apic_ids == list(range(32))
    assert layout.MPTABLE_START + mptable_size(32) <= acpi.ACPI_MEM_START
    t = parse_acpi(mem)
    spans = [(x.address, x.address + x.length) for x in t.tables.values()] + [(0xE0000, 0xE0024)]
    for mem_size in (2 * MiB, 4096 * MiB + 512 * MiB):
        ram = [(addr, size) for addr, size, kind in layout.e820_map(mem_size) if kind == 1]
        assert ram
        for addr, size in ram:
            for start, end in spans:     # nothing the guest is told is RAM holds a table
                assert end <= addr or start >= addr + size


def test_the_dsdt_describes_com1_and_the_i8042(mem):
    write_acpi_tables(mem, 1)
    aml = parse_acpi(mem).tables[b"DSDT"].data[36:]
    # Walk the top-level terms: each is a Device whose PkgLength spans it exactly.
    devices, offset = [], 0
    while offset < len(aml):
        assert aml[offset:offset + 2] == b"\x5B\x82", offset      # DeviceOp
        length, size = decode_pkg_length(aml, offset + 2)
        devices.append(aml[offset + 2 + size:offset + 2 + length])
        offset += 2 + length
    assert offset == len(aml)
    com1, ps2 = devices
    assert com1.startswith(b"\x2E_SB_COM1")
    assert b"\x08_HID\x0C\x41\xD0\x05\x01" in com1              # EisaId("PNP0501")
    assert b"\x08_DDN\x0DCOM1\x00" in com1
    # IRQ 4 edge/high/exclusive, ports 0x3f8..0x3ff, end tag
    assert b"\x89\x06\x00\x03\x01\x04\x00\x00\x00\x47\x01\xF8\x03\xF8\x03\x01\x08\x79\x00" in com1
    assert ps2.startswith(b"\x2E_SB_PS2_")
    assert b"\x08_HID\x0C\x41\xD0\x03\x03" in ps2               # EisaId("PNP0303")
    assert b"\x14\x09_STA\x00\xA4\x0A\x0F" in ps2               # Method(_STA) { Return(0x0F) }
    assert b"\x47\x01\x60\x00\x60\x00\x01\x01\x47\x01\x64\x00\x64\x00\x01\x01" in ps2
    assert b"\x89\x06\x00\x03\x01\x01\x00\x00\x00\x79\x00" in ps2


def decode_pkg_length(data, at):
    lead = data[at]
    follow = lead >> 6
    if follow == 0:
        return lead & 0x3F, 1
    value = lead & 0x0F
    for i in range(follow):
        value |= data[at + 1 + i] << (4 + 8 * i)
    return value, 1 + follow


# --- AML encodings against iasl's output -------------------------------------------------------

def test_aml_device_matches_iasl():
    # Device (_SB.COM1) { Name (_HID, EisaId ("PNP0501")) Name (_CRS, ResourceTemplate () {
    #   Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, ) { 4 }
    #   IO (Decode16, 0x03F8, 0x03F8, 0x00, 0x08) }) }
    iasl = bytes([
        0x5B, 0x82, 0x30, 0x2E, 0x5F, 0x53, 0x42, 0x5F, 0x43, 0x4F, 0x4D, 0x31, 0x08, 0x5F,
        0x48, 0x49, 0x44, 0x0C, 0x41, 0xD0, 0x05, 0x01, 0x08, 0x5F, 0x43, 0x52, 0x53, 0x11,
        0x16, 0x0A, 0x13, 0x89, 0x06, 0x00, 0x03, 0x01, 0x04, 0x00, 0x00, 0x00, 0x47, 0x01,
        0xF8, 0x03, 0xF8, 0x03, 0x00, 0x08, 0x79, 0x00])
    ours = acpi._device("_SB_.COM1",
                        acpi._name("_HID", acpi._eisa_id("PNP0501")),
                        acpi._name("_CRS", acpi._resource_template(
                            acpi._interrupt(4), acpi._io_port(0x3F8, 8, alignment=0))))
    assert ours == iasl


def test_aml_method_names_and_lengths_match_iasl():
    assert acpi._method("_STA", 0, acpi._return(acpi._byte(0x0F))) == bytes(
        [0x14, 0x09, 0x5F, 0x53, 0x54, 0x41, 0x00, 0xA4, 0x0A, 0x0F])
    assert acpi._name_string("_SB_.PCI0._HID") == bytes(
        [0x2F, 0x03, 0x5F, 0x53, 0x42, 0x5F, 0x50, 0x43, 0x49, 0x30, 0x5F, 0x48, 0x49, 0x44])
    assert acpi._string("ACPI") == b"\x0DACPI\x00"
    # PkgLength counts its own bytes: 62 + 1 fits one byte, 64 + 2 needs two, 4096 + 3 three.
    assert acpi._pkg_length(62) == bytes([63])
    assert acpi._pkg_length(64) == bytes([(1 << 6) | (66 & 0xF), 66 >> 4])
    assert acpi._pkg_length(4096) == bytes([(2 << 6) | (4099 & 0xF), (4099 >> 4) & 0xFF,
                                             4099 >> 12])
    for n in (0, 1, 61, 62, 63, 64, 4092, 4093, 4094, 5000, 1 << 20):
        encoded = acpi._pkg_length(n)
        assert decode_pkg_length(encoded, 0) == (n + len(encoded), len(encoded))


def test_bad_aml_names_are_refused():
    with pytest.raises(AcpiError, match="'_SB.COM1'"):
        acpi._name_string("_SB.COM1")


# --- boot protocol hooks -----------------------------------------------------------------------

def test_pvh_start_info_and_zero_page_carry_the_rsdp(mem):
    rsdp = write_acpi_tables(mem, 2)
    configure_boot(mem, LoadResult("pvh", 0x1000000, 0x1000000, 0x1800000, None, "vmlinux"),
                   b"", None, 64 * MiB, rsdp_addr=rsdp)
    assert mem.read_int(layout.PVH_INFO_START + 32, 8) == 0xE0000     # hvm_start_info.rsdp_paddr
    configure_boot(mem, LoadResult("linux64", 0x1000000, 0x1000000, 0x1800000, None, "vmlinux"),
                   b"", None, 64 * MiB, rsdp_addr=rsdp)
    assert mem.read_int(layout.ZERO_PAGE_START + 0x070, 8) == 0xE0000  # boot_params.acpi_rsdp_addr
    configure_boot(mem, LoadResult("linux64", 0x1000000, 0x1000000, 0x1800000, None, "vmlinux"),
                   b"", None, 64 * MiB)
    assert mem.read_int(layout.ZERO_PAGE_START + 0x070, 8) == 0        # none given: 0, "scan"


# --- errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize("vcpus", [0, 255, "2", None])
def test_vcpu_count_out_of_range(mem, vcpus):
    with pytest.raises(AcpiError, match=f"vcpu_count {vcpus!r}"):
        write_acpi_tables(mem, vcpus)


def test_max_vcpus_fit_in_the_reserved_area(mem):
    write_acpi_tables(mem, acpi.MAX_VCPUS)
    t = parse_acpi(mem)
    assert t.apic_ids == list(range(254))
    xsdt = t.tables[b"XSDT"]
    assert xsdt.address + xsdt.length <= acpi.ACPI_MEM_START + acpi.ACPI_MEM_SIZE


def test_memory_without_the_bios_area_is_refused():
    small = GuestMemory([(0, 0xC0000)])          # holds 0xA0000.. but not the RSDP at 0xE0000
    try:
        with pytest.raises(AcpiError, match="0xe0000"):
            write_acpi_tables(small, 1)
    finally:
        small.close()


def test_parse_rejects_a_missing_rsdp(mem):
    with pytest.raises(AcpiError, match="no 'RSD PTR ' signature at 0xe0000"):
        parse_acpi(mem)


@pytest.mark.parametrize("offset, what", [(8, "bad checksum"), (32, "extended checksum")])
def test_parse_rejects_bad_rsdp_checksums(mem, offset, what):
    write_acpi_tables(mem, 1)
    mem.write(0xE0000 + offset, bytes([mem.read(0xE0000 + offset, 1)[0] ^ 1]))
    with pytest.raises(AcpiError, match=what):
        parse_acpi(mem)


@pytest.mark.parametrize("signature", [b"XSDT", b"FACP", b"APIC", b"DSDT"])
def test_parse_names_the_table_with_a_bad_checksum(mem, signature):
    write_acpi_tables(mem, 2)
    table = parse_acpi(mem).tables[signature]
    mem.write(table.address + table.length - 1, bytes([table.data[-1] ^ 0x40]))
    with pytest.raises(AcpiError, match=f"{signature.decode()} at {table.address:#x} has a bad checksum"):
        parse_acpi(mem)


def test_parse_rejects_a_madt_entry_of_length_zero(mem):
    write_acpi_tables(mem, 2)
    madt = parse_acpi(mem).tables[b"APIC"]
    entry = madt.address + 44 + 12                 # the first local APIC entry
    mem.write(entry + 1, b"\x00")
    mem.write(madt.address + 9, bytes([(madt.data[9] + 8) & 0xFF]))   # keep the checksum right
    with pytest.raises(AcpiError, match=f"MADT entry at {entry:#x}"):
        parse_acpi(mem)
