"""CPUID as a guest booted by pyrite sees it, on whatever host runs the suite (Intel or AMD,
hardware virtualisation or PVM): the contracts of pyrite.arch.x86_64.cpuid.normalize, never
one host's values. The vendor is the host's; vCPU 0 has APIC and x2APIC id 0; the logical
processor count, the topology leaves and the hypervisor bit and signature are pyrite's own.

tests/guests/cpuid.c runs CPUID in main and prints the four registers. Built `ring0=True`, main
runs at CPL 0, where CPUID always reaches KVM's table (a VM exit with VT-x/AMD-V; KVM's
emulator under PVM). At CPL 3 (the default build) it is a VM exit too with VT-x/AMD-V, but
PVM runs CPL-3 code natively on the host CPU and, without CPUID faulting, CPUID answers from
the host (seen: the host CPU's APIC id, whatever the vCPU). Only vCPU 0 runs main: the other
vCPUs' ids are checked at the KVM level in test_kvm_basic.py.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import pyrite
from guests import guest_image, needs_native_cpl0

PVM = os.path.exists("/sys/module/kvm_pvm")
INTEL, AMD = "GenuineIntel", "AuthenticAMD"
SIGNATURE = 0x4000_0000


def host_vendor() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("vendor_id"):
            return line.partition(":")[2].strip()
    raise AssertionError("/proc/cpuinfo has no vendor_id")


def bits(value: int, low: int, high: int) -> int:
    return (value >> low) & ((1 << (high - low + 1)) - 1)


def guest_cpuid(image: Path, vcpus: int, queries: list[tuple[int, int]]) -> dict:
    """{(leaf, subleaf): (eax, ebx, ecx, edx)} as the guest's CPUID answered on vCPU 0."""
    words = " ".join(f"{leaf:x}.{sub:x}" for leaf, sub in queries)
    with pyrite.MicroVM(kernel=str(image), cmdline=words, mem_mib=64, vcpus=vcpus) as vm:
        vm.start()
        result = vm.wait(60)
        console = vm.console_output.decode(errors="replace")
    assert result is not None and (result.reason, result.status) == ("exit-port", 0), (result, console)
    seen = {}
    for line in console.splitlines():
        if line.startswith("cpuid ") and line != "cpuid done":
            query, *regs = line.split()[1:]
            leaf, _, sub = query.partition(".")
            seen[(int(leaf, 16), int(sub, 16))] = tuple(int(r, 16) for r in regs)
    assert list(seen) == queries, console
    return seen


@pytest.fixture(scope="module")
def supported(kvm) -> dict:
    """KVM_GET_SUPPORTED_CPUID by (leaf, subleaf): which leaves exist on this host."""
    return {(e.function, e.index): e for e in kvm.get_supported_cpuid()}


@pytest.fixture(scope="module", params=["cpl0", "cpl3"])
def image(request, kvm):
    if request.param == "cpl3" and PVM:
        pytest.skip("PVM runs CPL-3 code natively: CPUID there answers from the host CPU, not KVM")
    if request.param == "cpl0" and PVM:
        pytest.skip(needs_native_cpl0.kwargs["reason"])
    return guest_image("cpuid", ring0=request.param == "cpl0")


def present(supported: dict, leaf: int) -> list[int]:
    """The subleaves of `leaf` in KVM's supported table, in order."""
    return sorted(sub for function, sub in supported if function == leaf)


@pytest.mark.parametrize("vcpus", [1, 3])
def test_guest_sees_pyrites_cpuid(image, supported, vcpus):
    vendor = host_vendor()
    assert vendor in (INTEL, AMD), f"pyrite supports Intel and AMD hosts, not {vendor}"
    max_basic = supported[(0x0, 0)].eax
    queries = [(0x0, 0), (0x1, 0), (0x6, 0), (0x7, 0), (0xA, 0), (0xB, 0), (0xB, 1),
               (SIGNATURE, 0), (0x8000_0000, 0)]
    if vendor == INTEL:
        queries += [(0x4, sub) for sub in present(supported, 0x4)]
        if (0x1F, 0) in supported and max_basic >= 0x1F:
            queries += [(0x1F, 0), (0x1F, 1)]
    else:
        queries += [(0x8000_0001, 0), (0x8000_0008, 0), (0x8000_001E, 0)]
        queries += [(0x8000_001D, sub) for sub in present(supported, 0x8000_001D)]
    assert_pyrite_cpuid(guest_cpuid(image, vcpus, queries), supported, vendor, vcpus)


def assert_pyrite_cpuid(seen: dict, supported: dict, vendor: str, vcpus: int) -> None:
    """What normalize promises vCPU 0 of `vcpus`, leaf by leaf, as far as `supported` has it."""
    max_basic = supported[(0x0, 0)].eax
    _, ebx, ecx, edx = seen[(0x0, 0)]
    assert b"".join(r.to_bytes(4, "little") for r in (ebx, edx, ecx)).decode() == vendor
    assert seen[(0x0, 0)][0] == max_basic                          # KVM's highest basic leaf

    eax, ebx, ecx, edx = seen[(0x1, 0)]
    assert eax == supported[(0x1, 0)].eax                          # family, model, stepping
    assert bits(ebx, 24, 31) == 0                                  # initial APIC id of vCPU 0
    assert bits(ebx, 16, 23) == {1: 1, 3: 4}[vcpus]                # logical ids: a power of two
    assert bits(ebx, 8, 15) == 8                                   # CLFLUSH: 64-byte lines
    assert bits(ecx, 31, 31) == 1 and bits(ecx, 24, 24) == 1       # hypervisor; TSC deadline
    assert bits(ecx, 15, 15) == 0 and bits(ecx, 3, 3) == 0         # no PDCM; no MONITOR/MWAIT
    if vcpus > 1:   # (for one vCPU pyrite clears HTT, but KVM may set it again: seen under PVM)
        assert bits(edx, 28, 28) == 1

    assert bits(seen[(0x6, 0)][0], 1, 1) == 0 and bits(seen[(0x6, 0)][2], 3, 3) == 0  # turbo; EPB
    assert seen[(0xA, 0)] == (0, 0, 0, 0)                          # no PMU
    assert seen[(0xB, 0)] == (0, 1, 0x100, 0)                      # SMT level, x2APIC id 0
    assert seen[(0xB, 1)] == (5, vcpus, 0x201, 0)                  # core level: every vCPU
    assert seen[(SIGNATURE, 0)] == (0x4000_0001, *(int.from_bytes(b, "little")
                                                   for b in (b"KVMK", b"VMKV", b"M\0\0\0")))

    leaf7 = seen[(0x7, 0)]
    if vendor == INTEL:
        assert bits(leaf7[1], 6, 6) == 1 and bits(leaf7[1], 13, 13) == 1   # FDP_EXCPTN_ONLY, no FPU CS/DS
        assert bits(leaf7[2], 5, 5) == 0                                    # no WAITPKG
        caches = [seen[(0x4, sub)] for sub in present(supported, 0x4)]
        for eax, *_ in caches:
            if bits(eax, 0, 4) == 0:                               # cache type 0: end of the list
                break
            assert bits(eax, 26, 31) == vcpus - 1                  # cores in the package - 1
            level = bits(eax, 5, 7)
            if level in (1, 2, 3):                                 # L1, L2 per core; L3 all vCPUs
                assert bits(eax, 14, 25) == (vcpus - 1 if level == 3 else 0)
        if (0x1F, 0) in seen:
            assert (seen[(0x1F, 0)], seen[(0x1F, 1)]) == (seen[(0xB, 0)], seen[(0xB, 1)])
    else:
        assert bits(leaf7[3], 29, 29) == 0                         # no IA32_ARCH_CAPABILITIES
        assert seen[(0x8000_0000, 0)][0] >= 0x8000_001F            # topology leaves reachable
        nc = seen[(0x8000_0008, 0)][2]
        assert (bits(nc, 0, 7), bits(nc, 12, 15)) == (vcpus - 1, 7)
        topology = (0x8000_001D, 0) in supported and (0x8000_001E, 0) in supported
        assert bits(seen[(0x8000_0001, 0)][2], 22, 22) == topology
        if (0x8000_001E, 0) in supported:
            eax, ebx, ecx, _ = seen[(0x8000_001E, 0)]
            assert eax == 0 and bits(ebx, 0, 15) == 0 and bits(ecx, 0, 10) == 0   # ids 0, node 0 of 1
        for sub in present(supported, 0x8000_001D):
            eax = seen[(0x8000_001D, sub)][0]
            level = bits(eax, 5, 7)
            if level in (1, 2, 3):
                assert bits(eax, 14, 25) == (31 if level == 3 else 0)
