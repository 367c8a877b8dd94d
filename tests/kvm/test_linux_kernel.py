"""A real Linux kernel (Debian's cloud kernel, a bzImage with an lz4 payload and a PVH note)
booted by pyrite: its banner, the command line and the e820 map must be exactly what pyrite
gave it, and it must find every vCPU in pyrite's ACPI tables (it has no MP-table support).
On our PVM hosts it later stops on an instruction KVM cannot emulate at CPL 0; pyrite must
report that clearly (elsewhere it runs on and panics for lack of a root disk)."""
from __future__ import annotations

import re

import pytest

from pyrite.arch.x86_64 import layout
from linux_kernel import KernelUnavailable, debian_vmlinuz


MEM_MIB = 256
VCPUS = 2
# earlyprintk: the 8250 console proper registers only after the point where PVM gives up.
CMDLINE = "console=ttyS0 earlyprintk=serial reboot=k panic=1 pci=off pyrite.test=e820-check"
E820_LINE = re.compile(rb"BIOS-e820: \[mem 0x([0-9a-f]+)-0x([0-9a-f]+)\] (\w+)")
# e.g. "ACPI: APIC 0x00000000000A01C2 000048 (v06 PYRITE PYVMMADT ..."
ACPI_TABLE_LINE = re.compile(rb"ACPI: (\w{4}) 0x([0-9A-F]{16}) ([0-9A-F]{6}) \(v(\d\d) PYRITE")


@pytest.fixture(scope="module")
def vmlinuz():
    try:
        return debian_vmlinuz()
    except KernelUnavailable as e:  # no apt / no network to the Debian mirror
        pytest.skip(f"cannot fetch Debian's cloud kernel: {e}")


@pytest.fixture(scope="module")
def boot(vmlinuz, kvm):
    import pyrite
    with pyrite.MicroVM(kernel=str(vmlinuz), cmdline=CMDLINE, mem_mib=MEM_MIB, vcpus=VCPUS) as vm:
        vm.start()
        result = vm.wait(timeout=300)
        if result is None:
            vm.stop()
            result = vm.wait(timeout=10)
        yield vm.console_output, result


def test_banner_command_line_and_e820_match_what_pyrite_gave(boot):
    console, _ = boot
    assert re.search(rb"Linux version 6\.\d+\.\d+\S*-cloud-amd64", console), console[:2000]
    assert f"Command line: {CMDLINE}\r\n".encode() in console or f"Command line: {CMDLINE}\n".encode() in console
    seen = [(int(a, 16), int(b, 16) + 1 - int(a, 16), kind) for a, b, kind in E820_LINE.findall(console)]
    # Linux itself reserves the legacy ISA hole [0xa0000, 0x100000); everything else is ours.
    seen = [e for e in seen if (e[0], e[0] + e[1]) != (0xA0000, 0x100000)]
    expected = [(addr, size, b"usable") for addr, size, kind in layout.e820_map(MEM_MIB << 20) if kind == 1]
    assert seen == expected


def test_the_kernel_reads_pyrites_acpi_tables_and_finds_every_vcpu(boot):
    from pyrite.arch.x86_64.acpi import VMGENID_ADDR, parse_acpi, write_acpi_tables
    from pyrite.memory import GuestMemory
    from pyrite.vmm.devices import vmgenid_gsi
    console, _ = boot
    mem = GuestMemory([(0, 1 << 20)])
    ours = parse_acpi(mem, write_acpi_tables(mem, VCPUS, vmgenid=(VMGENID_ADDR, vmgenid_gsi([]))))
    mem.close()
    # Debian's cloud kernel has no CONFIG_X86_MPPARSE: the MADT is its only source of CPUs.
    seen = {sig: (int(addr, 16), int(length, 16), int(rev))
            for sig, addr, length, rev in ACPI_TABLE_LINE.findall(console)}
    expected = {t.signature: (t.address, t.length, t.revision) for t in ours.tables.values()}
    expected[b"RSDP"] = (ours.rsdp_address, 36, ours.revision)
    assert seen == expected, console[:4000]
    assert b"ACPI: Using ACPI (MADT) for SMP configuration information" in console
    assert f"smpboot: Allowing {VCPUS} CPUs, 0 hotplug CPUs".encode() in console


def test_the_kernel_ends_with_a_clear_report(boot):
    console, result = boot
    assert result is not None, "the VM neither ended nor stopped"
    if result.reason == "internal-error":   # PVM: CPL 0 emulation gives up (e.g. lock cmpxchg16b)
        assert "KVM could not emulate an instruction" in result.message
        assert re.search(r"RIP=0x[0-9a-f]{16}", result.message)
        assert re.search(r"code at RIP: ([0-9a-f]{2} ){4}", result.message)
    else:                                    # hardware virtualization: no root disk, panic=1, reboot=k
        assert result.reason == "reset", result
        assert b"Kernel panic" in console


def test_distribution_bzimage_decompresses_to_its_pvh_vmlinux(vmlinuz):
    from pyrite.arch.x86_64.loader import load_kernel
    from pyrite.memory import GuestMemory
    mem = GuestMemory([(0, MEM_MIB << 20)])
    result = load_kernel(mem, str(vmlinuz))
    head = vmlinuz.read_bytes()[:0x1000]
    assert result.protocol == "pvh"                # the lz4 payload's ELF carries the PVH note
    assert result.kernel_start == 0x1000000 and result.kernel_end > result.kernel_start
    assert result.setup_header == head[0x1F1:0x202 + head[0x201]]
    mem.close()
