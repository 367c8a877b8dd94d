"""Each boot protocol, checked from inside the guest: what the guest saw must be exactly
what pyrite meant to give it (memory map, command line, initrd bytes, zero page, CPUs)."""
from __future__ import annotations

import os

import pytest

import pyrite
from pyrite.arch.x86_64 import layout
from guests import fnv1a64, guest_image, parse_facts

MEM_MIB = 128


def boot(image, *, cmdline="", initrd=None, vcpus=1, mem_mib=MEM_MIB, timeout=30):
    with pyrite.MicroVM(kernel=str(image), cmdline=cmdline, initrd=initrd, mem_mib=mem_mib, vcpus=vcpus) as vm:
        vm.start()
        result = vm.wait(timeout)
        assert result is not None, f"guest did not finish in {timeout}s: {vm.console_output[-500:]!r}"
        return result, vm.console_output


def expected_e820(mem_mib=MEM_MIB):
    return [(a, s, t) for a, s, t in layout.e820_map(mem_mib << 20)]


@pytest.fixture(scope="module")
def bootinfo(kvm):
    return guest_image("bootinfo")


def test_pvh_boot_gives_cmdline_memory_map_and_initrd(bootinfo, tmp_path):
    initrd = os.urandom(100_000)
    path = tmp_path / "initrd.img"
    path.write_bytes(initrd)
    result, console = boot(bootinfo, cmdline="alpha beta=2 gamma", initrd=str(path))
    facts = parse_facts(console)
    assert result.reason == "exit-port" and result.status == 0, (result, console)
    assert facts["protocol"] == "pvh"
    assert facts["cmdline"] == "alpha beta=2 gamma"
    assert facts["e820"] == expected_e820()
    [(addr, size, digest)] = facts["initrd"]
    assert size == len(initrd) and digest == fnv1a64(initrd)
    assert addr % 4096 == 0 and addr + size <= MEM_MIB << 20


def test_linux64_boot_gives_zero_page(kvm, tmp_path):
    image = guest_image("bootinfo", pvh_note=False)
    initrd = b"\x5a" * 8191
    path = tmp_path / "initrd.img"
    path.write_bytes(initrd)
    result, console = boot(image, cmdline="console=ttyS0 hello", initrd=str(path))
    facts = parse_facts(console)
    assert result.status == 0, (result, console)
    assert facts["protocol"] == "linux64"
    assert facts["cmdline"] == "console=ttyS0 hello"
    assert facts["e820"] == expected_e820()
    zp = facts["zeropage"]
    assert zp["boot_flag"] == 0xAA55 and zp["header"] == 0x53726448  # "HdrS"
    assert zp["type_of_loader"] == 0xFF
    assert zp["cmd_line_ptr"] == layout.CMDLINE_START
    assert zp["e820_entries"] == len(expected_e820())
    [(addr, size, digest)] = facts["initrd"]
    assert (zp["ramdisk_image"], zp["ramdisk_size"]) == (addr, size) == (addr, len(initrd))
    assert digest == fnv1a64(initrd)


def test_multiboot_boot_gives_info_structure(kvm, tmp_path):
    image = guest_image("bootinfo", protocol="multiboot")
    initrd = b"module bytes" * 1000
    path = tmp_path / "mod.bin"
    path.write_bytes(initrd)
    result, console = boot(image, cmdline="mb one two", initrd=str(path))
    facts = parse_facts(console)
    assert result.status == 0, (result, console)
    assert facts["protocol"] == "multiboot"
    assert facts["cmdline"] == f"{image} mb one two"   # the image path first, as GRUB and QEMU do
    assert facts["argv"][1:] == ["mb", "one", "two"]
    assert facts["e820"] == expected_e820()
    [(_, size, digest)] = facts["initrd"]
    assert size == len(initrd) and digest == fnv1a64(initrd)


@pytest.mark.parametrize("vcpus", [1, 2, 4, 32])
def test_guest_finds_every_vcpu_in_the_mp_table(bootinfo, vcpus):
    result, console = boot(bootinfo, vcpus=vcpus)
    facts = parse_facts(console)
    assert result.status == 0, (result, console)
    assert (facts["cpus"], facts["cpu_source"]) == (vcpus, "mptable")


def test_large_guest_memory_map_spans_the_mmio_gap(bootinfo):
    mem_mib = 4096 + 512
    result, console = boot(bootinfo, mem_mib=mem_mib)
    assert result.status == 0, (result, console)
    e820 = parse_facts(console)["e820"]
    assert e820 == expected_e820(mem_mib)
    assert e820[-1][0] == 4 << 30
