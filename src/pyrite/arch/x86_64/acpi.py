"""ACPI tables for x86_64 guests, as Firecracker (v1.8 on) writes them.

Kernels built without CONFIG_X86_MPPARSE (Debian's cloud kernel, for one) ignore the MP
table and find their CPUs in the MADT only. Like Firecracker (src/vmm/src/acpi/,
src/acpi-tables/), pyrite writes, one after the other from ACPI_MEM_START (0xA0000, just
past the EBDA that holds the MP table, in the legacy hole the e820 map leaves out of RAM):

    DSDT (rev 2)  AML: COM1 (PNP0501, 0x3f8, GSI 4) and the i8042 (PNP0303, 0x60/0x64, GSI 1);
                  with a VM generation ID, its device and the GED that notifies it (below)
    FADT (rev 6)  hardware-reduced ACPI, no power/sleep button, IA-PC boot flags "no VGA",
                  "no MSI", "no ASPM control"; X_DSDT -> the DSDT; hypervisor vendor id
    MADT (rev 6)  local APIC at 0xFEE00000, one I/O APIC (id 0, 0xFEC00000, GSI base 0),
                  one enabled Processor Local APIC entry per vCPU (UID = APIC id = index);
                  no interrupt source overrides: KVM routes ISA IRQ n to IOAPIC pin n
    XSDT (rev 1)  -> FADT, MADT

and the RSDP (revision 2, XSDT only) at RSDP_ADDR (0xE0000), where a guest that is not told
its address scans for it. The boot protocols pass that address too (hvm_start_info.rsdp_paddr,
boot_params.acpi_rsdp_addr): see bootparams.py. Specification: ACPI 6.5, chapters 5 and 20.

The VM generation ID (pyrite.devices.acpi.vmgenid) is described as Firecracker 1.12.1 does
(its DSDT, read back from a guest): ``\\_SB_.VGEN`` with _HID "FCVMGID", _CID and _DDN
"VM_Gen_Counter" and ``Name(ADDR, Package() {low, high})``, two DWords giving the 16 bytes'
guest-physical address (what Linux's drivers/virt/vmgenid.c evaluates); and a Generic Event
Device ``\\_SB_.GED_`` (ACPI0013) whose _CRS holds the notification GSI and whose _EVT
method does ``Notify(\\_SB_.VGEN, 0x80)`` when called for that GSI.
"""
from __future__ import annotations

import struct
from collections import namedtuple

from pyrite.arch.x86_64.layout import EBDA_START, I8042_PORT, SERIAL_IRQ, SERIAL_PORT
from pyrite.memory import GuestMemory, GuestMemoryError

ACPI_MEM_START = EBDA_START + 0x400    # 0xA0000: right after the EBDA's KiB (Firecracker)
ACPI_MEM_SIZE = 0x2000                 # [0xA0000, 0xA2000), as Firecracker reserves
RSDP_ADDR = 0xE0000                    # in the BIOS area a guest scans for "RSD PTR "
VMGENID_SIZE = 16
# Firecracker 1.12.1 takes the generation ID's 16 bytes (8-aligned) from the top of its
# system-memory area [0x9FC00, 0xE0000): 0xDFFF0, in the hole the e820 map leaves out of RAM.
VMGENID_ADDR = RSDP_ADDR - VMGENID_SIZE
MAX_VCPUS = 254                        # xAPIC ids 0..254; 0xFF is the broadcast id

APIC_ADDR = 0xFEE0_0000
IOAPIC_ADDR = 0xFEC0_0000
IOAPIC_ID = 0                          # the ID register of KVM's IOAPIC resets to 0
I8042_IRQ = 1

OEM_ID = b"PYRITE"
OEM_REVISION = 0
CREATOR_ID = b"PYRT"
CREATOR_REVISION = 0x20250101
HYPERVISOR_VENDOR_ID = b"PYRITEVM"     # FADT field a guest may use to tell who runs it

# signature length revision checksum oem_id oem_table_id oem_revision creator_id creator_revision
SDT_HEADER = struct.Struct("<4sIBB6s8sI4sI")                    # 36 bytes
# signature checksum oem_id revision rsdt_address length xsdt_address extended_checksum reserved
RSDP = struct.Struct("<8sB6sBIIQB3s")                            # 36 bytes (ACPI 2.0+)
RSDP_V1_SIZE = 20                      # the part the first checksum covers
MADT_HEADER = struct.Struct("<II")                               # local APIC address, flags
MADT_LOCAL_APIC = struct.Struct("<BBBBI")                        # type length uid apic_id flags
MADT_IO_APIC = struct.Struct("<BBBBII")                          # type length id 0 address gsi_base
MADT_INT_OVERRIDE = struct.Struct("<BBBBIH")                     # type length bus source gsi flags
MADT_LOCAL_X2APIC = struct.Struct("<BBHIII")                     # type length 0 x2apic_id flags uid
MADT_TYPE_LOCAL_APIC, MADT_TYPE_IO_APIC, MADT_TYPE_INT_OVERRIDE = 0, 1, 2
MADT_TYPE_LOCAL_X2APIC = 9
MADT_CPU_ENABLED = 1 << 0

# FADT (ACPI 6.5 table 5.9): offsets of the fields pyrite sets or a parser reads.
FADT_SIZE = 276
FADT_REVISION, FADT_MINOR_REVISION = 6, 5
FADT_DSDT = 40                         # 32-bit DSDT address (left 0: X_DSDT is used)
FADT_IAPC_BOOT_ARCH = 109
FADT_FLAGS = 112
FADT_MINOR_VERSION = 131
FADT_X_DSDT = 140
FADT_HYPERVISOR_VENDOR_ID = 268
FADT_F_PWR_BUTTON = 1 << 4             # "no fixed power button"
FADT_F_SLP_BUTTON = 1 << 5             # "no fixed sleep button"
FADT_F_HW_REDUCED_ACPI = 1 << 20
IAPC_BOOT_ARCH_VGA_NOT_PRESENT = 1 << 2
IAPC_BOOT_ARCH_MSI_NOT_SUPPORTED = 1 << 3
IAPC_BOOT_ARCH_PCIE_ASPM_CONTROLS = 1 << 4

# Table revisions, as Firecracker writes them.
DSDT_REVISION, MADT_REVISION, XSDT_REVISION = 2, 6, 1


class AcpiError(ValueError):
    """ACPI tables that cannot be written, or that do not read back as valid."""


def _checksum(data: bytes) -> int:
    """The byte that makes ``data`` plus itself sum to 0 mod 256."""
    return -sum(data) & 0xFF


def _sdt(signature: bytes, revision: int, table_id: bytes, body: bytes) -> bytes:
    """A System Description Table: the 36-byte header, with its checksum, then ``body``."""
    def header(checksum: int) -> bytes:
        return SDT_HEADER.pack(signature, SDT_HEADER.size + len(body), revision, checksum,
                               OEM_ID, table_id, OEM_REVISION, CREATOR_ID, CREATOR_REVISION)
    return header(_checksum(header(0) + body)) + body


# --- AML (ACPI 6.5 chapter 20): just the terms the DSDT needs --------------------------------

def _pkg_length(payload: int) -> bytes:
    """PkgLength for ``payload`` bytes; the encoded length counts its own 1..4 bytes."""
    for size in (1, 2, 3, 4):
        total = payload + size
        if size == 1 and total <= 0x3F:
            return bytes((total,))
        if size > 1 and total < 1 << (4 + 8 * (size - 1)):
            # Lead byte: size-1 in bits 7:6, the low 4 bits of the length; then 8 bits a byte.
            rest = total >> 4
            return bytes(((size - 1) << 6 | (total & 0xF),)) + rest.to_bytes(size - 1, "little")
    raise AcpiError(f"AML: package of {payload} bytes exceeds PkgLength's 2**28")


def _name_string(path: str) -> bytes:
    """"_SB_.COM1" -> DualNamePrefix + segments (each exactly 4 characters)."""
    segments = path.split(".")
    if any(len(s) != 4 for s in segments):
        raise AcpiError(f"AML: name {path!r} has a segment that is not 4 characters")
    raw = b"".join(s.encode("ascii") for s in segments)
    if len(segments) == 1:
        return raw
    if len(segments) == 2:
        return b"\x2E" + raw                                    # DualNamePrefix
    return b"\x2F" + bytes((len(segments),)) + raw              # MultiNamePrefix


def _byte(value: int) -> bytes:
    return b"\x0A" + bytes((value,))                            # BytePrefix


def _string(text: str) -> bytes:
    return b"\x0D" + text.encode("ascii") + b"\0"               # StringPrefix ... NullChar


def _eisa_id(pnp_id: str) -> bytes:
    """EisaId("PNP0501"): three 5-bit letters and four hex digits, big-endian, as a DWord."""
    letters = (ord(c) - 0x40 for c in pnp_id[:3])
    a, b, c = letters
    value = a << 26 | b << 21 | c << 16 | int(pnp_id[3:], 16)
    return b"\x0C" + value.to_bytes(4, "big")                   # DWordPrefix


def _name(path: str, data: bytes) -> bytes:
    return b"\x08" + _name_string(path) + data                  # NameOp


def _device(path: str, *terms: bytes) -> bytes:
    body = _name_string(path) + b"".join(terms)
    return b"\x5B\x82" + _pkg_length(len(body)) + body          # DeviceOp


def _method(path: str, arg_count: int, *terms: bytes, serialized: bool = False) -> bytes:
    flags = arg_count & 7 | (1 << 3 if serialized else 0)      # MethodFlags: SerializeFlag bit 3
    body = _name_string(path) + bytes((flags,)) + b"".join(terms)
    return b"\x14" + _pkg_length(len(body)) + body              # MethodOp


def _dword(value: int) -> bytes:
    return b"\x0C" + value.to_bytes(4, "little")                # DWordPrefix


def _package(*elements: bytes) -> bytes:
    body = bytes((len(elements),)) + b"".join(elements)         # NumElements, then the elements
    return b"\x12" + _pkg_length(len(body)) + body              # PackageOp


def _if(predicate: bytes, *terms: bytes) -> bytes:
    body = predicate + b"".join(terms)
    return b"\xA0" + _pkg_length(len(body)) + body              # IfOp


def _lequal(left: bytes, right: bytes) -> bytes:
    return b"\x93" + left + right                               # LEqualOp


ARG0 = b"\x68"                                                 # Arg0Op


def _notify(path: str, value: int) -> bytes:
    return b"\x86\x5C" + _name_string(path) + _byte(value)      # NotifyOp \path value


def _return(value: bytes) -> bytes:
    return b"\xA4" + value                                      # ReturnOp


def _resource_template(*descriptors: bytes) -> bytes:
    """Buffer holding the resource descriptors and an End Tag (checksum 0: "valid")."""
    data = b"".join(descriptors) + b"\x79\x00"
    body = _byte(len(data)) if len(data) <= 0xFF else b"\x0B" + len(data).to_bytes(2, "little")
    body += data
    return b"\x11" + _pkg_length(len(body)) + body              # BufferOp


def _io_port(port: int, length: int, alignment: int = 1) -> bytes:
    """IO(Decode16, port, port, alignment, length): a fixed range of I/O ports."""
    return struct.pack("<BBHHBB", 0x47, 1, port, port, alignment, length)


def _interrupt(gsi: int) -> bytes:
    """Interrupt(ResourceConsumer, Edge, ActiveHigh, Exclusive) { gsi }."""
    flags = 1 << 1 | 1 << 0                                     # edge-triggered, consumer
    return struct.pack("<BHBBI", 0x89, 6, flags, 1, gsi)


def vmgenid_aml(addr: int, gsi: int) -> bytes:
    """The VM generation ID device and the GED that notifies it on `gsi`, byte for byte as
    Firecracker 1.12.1 writes them (GED_ first)."""
    if not 0 <= addr < 1 << 64 or not 0 <= gsi <= 0xFF:
        raise AcpiError(f"acpi: VMGenID address {addr:#x} or GSI {gsi} out of range")
    ged = _device("_SB_.GED_",
                  _name("_HID", _string("ACPI0013")),
                  _name("_CRS", _resource_template(_interrupt(gsi))),
                  _method("_EVT", 1, _if(_lequal(ARG0, _byte(gsi)), _notify("_SB_.VGEN", 0x80)),
                          serialized=True))
    vgen = _device("_SB_.VGEN",
                   _name("_HID", _string("FCVMGID")),
                   _name("_CID", _string("VM_Gen_Counter")),
                   _name("_DDN", _string("VM_Gen_Counter")),
                   _name("ADDR", _package(_dword(addr & 0xFFFF_FFFF), _dword(addr >> 32))))
    return ged + vgen


def dsdt_aml() -> bytes:
    """The DSDT's definition block: the legacy devices, as Firecracker describes them."""
    com1 = _device("_SB_.COM1",
                   _name("_HID", _eisa_id("PNP0501")),
                   _name("_UID", _byte(0)),
                   _name("_DDN", _string("COM1")),
                   _name("_CRS", _resource_template(_interrupt(SERIAL_IRQ),
                                                    _io_port(SERIAL_PORT, 8))))
    ps2 = _device("_SB_.PS2_",
                  _name("_HID", _eisa_id("PNP0303")),
                  _method("_STA", 0, _return(_byte(0x0F))),     # present, enabled, shown, working
                  _name("_CRS", _resource_template(_io_port(I8042_PORT, 1),
                                                   _io_port(I8042_PORT + 4, 1),
                                                   _interrupt(I8042_IRQ))))
    return com1 + ps2


# --- the tables ------------------------------------------------------------------------------

def build_dsdt(vmgenid: tuple[int, int] | None = None) -> bytes:
    """`vmgenid`: (address, GSI) of a VM generation ID to describe, or None."""
    aml = (vmgenid_aml(*vmgenid) if vmgenid is not None else b"") + dsdt_aml()
    return _sdt(b"DSDT", DSDT_REVISION, b"PYVMDSDT", aml)


def build_fadt(dsdt_addr: int) -> bytes:
    fadt = bytearray(FADT_SIZE)
    struct.pack_into("<H", fadt, FADT_IAPC_BOOT_ARCH, IAPC_BOOT_ARCH_VGA_NOT_PRESENT
                     | IAPC_BOOT_ARCH_MSI_NOT_SUPPORTED | IAPC_BOOT_ARCH_PCIE_ASPM_CONTROLS)
    struct.pack_into("<I", fadt, FADT_FLAGS,
                     FADT_F_HW_REDUCED_ACPI | FADT_F_PWR_BUTTON | FADT_F_SLP_BUTTON)
    fadt[FADT_MINOR_VERSION] = FADT_MINOR_REVISION
    struct.pack_into("<Q", fadt, FADT_X_DSDT, dsdt_addr)
    fadt[FADT_HYPERVISOR_VENDOR_ID:FADT_HYPERVISOR_VENDOR_ID + 8] = HYPERVISOR_VENDOR_ID
    return _sdt(b"FACP", FADT_REVISION, b"PYVMFADT", bytes(fadt[SDT_HEADER.size:]))


def build_madt(vcpu_count: int) -> bytes:
    body = bytearray(MADT_HEADER.pack(APIC_ADDR, 0))           # flags 0: no PCAT_COMPAT 8259s
    body += MADT_IO_APIC.pack(MADT_TYPE_IO_APIC, MADT_IO_APIC.size, IOAPIC_ID, 0, IOAPIC_ADDR, 0)
    for cpu in range(vcpu_count):
        body += MADT_LOCAL_APIC.pack(MADT_TYPE_LOCAL_APIC, MADT_LOCAL_APIC.size, cpu, cpu,
                                     MADT_CPU_ENABLED)
    return _sdt(b"APIC", MADT_REVISION, b"PYVMMADT", bytes(body))


def build_xsdt(table_addrs: list[int]) -> bytes:
    return _sdt(b"XSDT", XSDT_REVISION, b"PYVMXSDT",
                b"".join(struct.pack("<Q", a) for a in table_addrs))


def build_rsdp(xsdt_addr: int) -> bytes:
    first = RSDP.pack(b"RSD PTR ", 0, OEM_ID, 2, 0, RSDP.size, xsdt_addr, 0, bytes(3))
    rsdp = bytearray(first)
    rsdp[8] = _checksum(rsdp[:RSDP_V1_SIZE])                    # covers the ACPI 1.0 part
    rsdp[32] = _checksum(rsdp)                                  # extended: all 36 bytes
    return bytes(rsdp)


def write_acpi_tables(mem: GuestMemory, vcpu_count: int, vmgenid: tuple[int, int] | None = None) -> int:
    """Write DSDT, FADT, MADT, XSDT from ACPI_MEM_START and the RSDP at RSDP_ADDR, in
    Firecracker's order and places; returns the RSDP's address. `vmgenid` is the (address,
    GSI) of a VM generation ID for the DSDT to describe (the device writes the ID itself)."""
    if not isinstance(vcpu_count, int) or not 1 <= vcpu_count <= MAX_VCPUS:
        raise AcpiError(f"acpi: vcpu_count {vcpu_count!r} is outside 1..{MAX_VCPUS}")
    dsdt_addr = ACPI_MEM_START
    dsdt = build_dsdt(vmgenid)
    fadt_addr = dsdt_addr + len(dsdt)
    fadt = build_fadt(dsdt_addr)
    madt_addr = fadt_addr + len(fadt)
    madt = build_madt(vcpu_count)
    xsdt_addr = madt_addr + len(madt)
    blob = dsdt + fadt + madt + build_xsdt([fadt_addr, madt_addr])
    end = ACPI_MEM_START + ACPI_MEM_SIZE
    if ACPI_MEM_START + len(blob) > end:
        raise AcpiError(f"acpi: {len(blob)} bytes of tables for {vcpu_count} vCPUs overrun "
                        f"[{ACPI_MEM_START:#x}, {end:#x})")
    rsdp = build_rsdp(xsdt_addr)
    pieces = ((ACPI_MEM_START, blob), (RSDP_ADDR, rsdp))
    for addr, data in pieces:          # check both before writing either
        if not mem.contains(addr, len(data)):
            raise AcpiError(f"acpi: guest memory does not hold "
                            f"[{addr:#x}, {addr + len(data):#x})")
    for addr, data in pieces:
        mem.write(addr, data)
    return RSDP_ADDR


# --- reading them back, as a guest kernel would ----------------------------------------------

# One table found through the XSDT (or the FADT, for the DSDT).
AcpiTable = namedtuple("AcpiTable", "signature address length revision oem_id oem_table_id "
                                    "creator_id data")
MadtLocalApic = namedtuple("MadtLocalApic", "uid apic_id enabled")
MadtIoApic = namedtuple("MadtIoApic", "ioapic_id address gsi_base")
MadtOverride = namedtuple("MadtOverride", "bus source gsi flags")


class AcpiTables(namedtuple("AcpiTables", "rsdp_address oem_id revision xsdt_address tables "
                                          "fadt_flags iapc_boot_arch hypervisor_vendor_id "
                                          "lapic_address madt_flags local_apics io_apics "
                                          "overrides")):
    """Parsed and verified ACPI tables. ``tables`` maps each signature to its AcpiTable: the
    XSDT, then the tables it lists (b"FACP", b"APIC", ...), then the DSDT."""
    __slots__ = ()

    @property
    def apic_ids(self) -> list[int]:
        return [cpu.apic_id for cpu in self.local_apics if cpu.enabled]


def _read(mem: GuestMemory, addr: int, length: int, what: str) -> bytes:
    try:
        return mem.read(addr, length)
    except GuestMemoryError as exc:
        raise AcpiError(f"acpi: {what} at {addr:#x} is not in guest memory: {exc}") from None


def _read_table(mem: GuestMemory, addr: int, expect: bytes | None = None) -> AcpiTable:
    head = _read(mem, addr, SDT_HEADER.size, "table header")
    signature, length, revision, _, oem_id, table_id, _, creator, _ = SDT_HEADER.unpack(head)
    name = signature.decode("latin-1")
    if expect is not None and signature != expect:
        raise AcpiError(f"acpi: expected {expect.decode()} at {addr:#x}, found {name!r}")
    if length < SDT_HEADER.size:
        raise AcpiError(f"acpi: {name} at {addr:#x} has length {length}, less than its header")
    data = _read(mem, addr, length, name)
    if sum(data) & 0xFF:
        raise AcpiError(f"acpi: {name} at {addr:#x} has a bad checksum")
    return AcpiTable(signature, addr, length, revision, oem_id, table_id, creator, data)


def parse_acpi(mem: GuestMemory, rsdp: int = RSDP_ADDR) -> AcpiTables:
    """Follow RSDP -> XSDT -> FADT (-> DSDT) and MADT, verifying every signature, length and
    checksum; decode the MADT's interrupt controller entries."""
    raw = _read(mem, rsdp, RSDP.size, "RSDP")
    signature, _, oem_id, revision, _, length, xsdt_addr, _, _ = RSDP.unpack(raw)
    if signature != b"RSD PTR ":
        raise AcpiError(f"acpi: no 'RSD PTR ' signature at {rsdp:#x}")
    if sum(raw[:RSDP_V1_SIZE]) & 0xFF:
        raise AcpiError(f"acpi: RSDP at {rsdp:#x} has a bad checksum")
    if revision < 2 or length != RSDP.size or sum(raw) & 0xFF:
        raise AcpiError(f"acpi: RSDP at {rsdp:#x} is not a valid ACPI 2.0+ RSDP (revision "
                        f"{revision}, length {length}, or a bad extended checksum)")
    xsdt = _read_table(mem, xsdt_addr, b"XSDT")
    entries = xsdt.data[SDT_HEADER.size:]
    if len(entries) % 8:
        raise AcpiError(f"acpi: XSDT at {xsdt_addr:#x} has a partial entry "
                        f"({len(entries)} bytes of entries)")
    tables = {xsdt.signature: xsdt}
    for (addr,) in struct.iter_unpack("<Q", entries):
        table = _read_table(mem, addr)
        if table.signature in tables:      # only SSDTs may repeat, and pyrite writes none
            raise AcpiError(f"acpi: XSDT at {xsdt_addr:#x} lists a second "
                            f"{table.signature.decode('latin-1')!r} (at {addr:#x})")
        tables[table.signature] = table
    fadt, madt = tables.get(b"FACP"), tables.get(b"APIC")
    if fadt is None or madt is None:
        raise AcpiError(f"acpi: XSDT at {xsdt_addr:#x} lists no "
                        f"{'FADT' if fadt is None else 'MADT'}")
    if fadt.length < FADT_HYPERVISOR_VENDOR_ID + 8:
        raise AcpiError(f"acpi: FADT at {fadt.address:#x} is {fadt.length} bytes, too short "
                        f"for revision 6 ({FADT_SIZE})")
    (dsdt_addr,) = struct.unpack_from("<Q", fadt.data, FADT_X_DSDT)
    if not dsdt_addr:
        (dsdt_addr,) = struct.unpack_from("<I", fadt.data, FADT_DSDT)
    tables[b"DSDT"] = _read_table(mem, dsdt_addr, b"DSDT")
    (iapc,) = struct.unpack_from("<H", fadt.data, FADT_IAPC_BOOT_ARCH)
    (fadt_flags,) = struct.unpack_from("<I", fadt.data, FADT_FLAGS)
    vendor = fadt.data[FADT_HYPERVISOR_VENDOR_ID:FADT_HYPERVISOR_VENDOR_ID + 8]

    lapic_addr, madt_flags = MADT_HEADER.unpack_from(madt.data, SDT_HEADER.size)
    local_apics, io_apics, overrides = [], [], []
    offset = SDT_HEADER.size + MADT_HEADER.size
    while offset < madt.length:
        if offset + 2 > madt.length or madt.data[offset + 1] < 2 \
                or offset + madt.data[offset + 1] > madt.length:
            raise AcpiError(f"acpi: MADT entry at {madt.address + offset:#x} runs past the table "
                            "or has a length under 2")
        kind, size = madt.data[offset], madt.data[offset + 1]
        entry = madt.data[offset:offset + size]
        layout = {MADT_TYPE_LOCAL_APIC: MADT_LOCAL_APIC, MADT_TYPE_IO_APIC: MADT_IO_APIC,
                  MADT_TYPE_INT_OVERRIDE: MADT_INT_OVERRIDE,
                  MADT_TYPE_LOCAL_X2APIC: MADT_LOCAL_X2APIC}.get(kind)
        if layout is not None and size != layout.size:
            raise AcpiError(f"acpi: MADT entry type {kind} at {madt.address + offset:#x} has "
                            f"length {size}, expected {layout.size}")
        if kind == MADT_TYPE_LOCAL_APIC:
            _, _, uid, apic_id, flags = MADT_LOCAL_APIC.unpack(entry)
            local_apics.append(MadtLocalApic(uid, apic_id, bool(flags & MADT_CPU_ENABLED)))
        elif kind == MADT_TYPE_LOCAL_X2APIC:
            _, _, _, apic_id, flags, uid = MADT_LOCAL_X2APIC.unpack(entry)
            local_apics.append(MadtLocalApic(uid, apic_id, bool(flags & MADT_CPU_ENABLED)))
        elif kind == MADT_TYPE_IO_APIC:
            _, _, ioapic_id, _, address, gsi_base = MADT_IO_APIC.unpack(entry)
            io_apics.append(MadtIoApic(ioapic_id, address, gsi_base))
        elif kind == MADT_TYPE_INT_OVERRIDE:
            _, _, bus, source, gsi, flags = MADT_INT_OVERRIDE.unpack(entry)
            overrides.append(MadtOverride(bus, source, gsi, flags))
        offset += size
    return AcpiTables(rsdp_address=rsdp, oem_id=oem_id, revision=revision,
                      xsdt_address=xsdt_addr, tables=tables, fadt_flags=fadt_flags,
                      iapc_boot_arch=iapc, hypervisor_vendor_id=vendor, lapic_address=lapic_addr,
                      madt_flags=madt_flags, local_apics=local_apics, io_apics=io_apics,
                      overrides=overrides)


def vmgenid_address(tables: AcpiTables) -> int | None:
    """The guest-physical address in the DSDT's ``Name(ADDR, Package(2) {DWord, DWord})``, found
    as the library OS finds it (a byte scan, no AML interpreter); None when the DSDT names no
    VM_Gen_Counter or holds no such package."""
    aml = tables.tables[b"DSDT"].data[SDT_HEADER.size:]
    if _string("VM_Gen_Counter") not in aml:
        return None
    at = aml.find(b"\x08ADDR\x12")
    package = aml[at + 6:at + 6 + 12] if at >= 0 else b""
    # PkgLength (one byte: 12), NumElements 2, DWordPrefix low, DWordPrefix high
    if len(package) < 12 or package[1] != 2 or package[2] != 0x0C or package[7] != 0x0C:
        return None
    low, high = struct.unpack_from("<I", package, 3)[0], struct.unpack_from("<I", package, 8)[0]
    return high << 32 | low
