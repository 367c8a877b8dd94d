"""CPUID normalisation (Firecracker's rules) on real and hand-made supported tables."""
import copy
import platform

import pytest

from pyrite.arch.x86_64.cpuid import (
    CpuidError, host_cpuid, normalize, vendor_of,
)
from pyrite.kvm.types import CpuidEntry

# KVM_GET_SUPPORTED_CPUID as KVM (PVM back end) answered it on an AMD EPYC development
# machine; leaves that were all zero are left out except where their presence matters.
AMD_EPYC_PVM = [CpuidEntry(*e) for e in [
    (0x0, 0, 0, 0x0000001c, 0x68747541, 0x444d4163, 0x69746e65),
    (0x1, 0, 0, 0x00a10f11, 0x00020800, 0x81202000, 0x078bfbff),
    (0x4, 0, 1, 0, 0, 0, 0),
    (0x6, 0, 0, 0x00000004, 0, 0, 0),
    (0x7, 0, 1, 0x00000001, 0x01800002, 0x00000104, 0x20000000),
    (0x7, 1, 1, 0, 0, 0, 0),
    (0xa, 0, 0, 0, 0, 0, 0),
    (0xb, 0, 1, 0, 0, 0, 0),
    (0xd, 0, 1, 0x000000e7, 0x00000980, 0x00000980, 0),
    (0xd, 1, 1, 0, 0, 0, 0),
    (0xd, 2, 1, 0x00000100, 0x00000240, 0, 0),
    (0x80000000, 0, 0, 0x80000021, 0x68747541, 0x444d4163, 0x69746e65),
    (0x80000001, 0, 0, 0x00a10f11, 0x40000000, 0x00400393, 0x23d3fbff),
    (0x80000002, 0, 0, 0, 0, 0, 0),
    (0x80000005, 0, 0, 0xff48ff40, 0xff48ff40, 0x20080140, 0x20080140),
    (0x80000006, 0, 0, 0x5c002200, 0x6c004200, 0x04006140, 0x0a009140),
    (0x80000008, 0, 0, 0x00003030, 0x50020005, 0x00007001, 0),
    (0x8000001d, 0, 1, 0x00000121, 0x01c0003f, 0x0000003f, 0),
    (0x8000001d, 1, 1, 0x00000122, 0x01c0003f, 0x0000003f, 0),
    (0x8000001d, 2, 1, 0x00000143, 0x01c0003f, 0x000007ff, 0x00000002),
    (0x8000001d, 3, 1, 0x00004163, 0x03c0003f, 0x00007fff, 0x00000001),
    (0x8000001d, 4, 1, 0, 0, 0, 0),
    (0x8000001e, 0, 0, 0, 0, 0, 0),
    (0x80000021, 0, 0, 0x00000204, 0, 0x00000006, 0),
    (0x40000000, 0, 0, 0x40000001, 0x4b4d564b, 0x564b4d56, 0x0000004d),
    (0x40000001, 0, 0, 0x01007efb, 0, 0, 0),
]]

# Hand-made in the shape of a Skylake-SP host's table (not captured).
INTEL_XEON = [CpuidEntry(*e) for e in [
    (0x0, 0, 0, 0x00000016, 0x756e6547, 0x6c65746e, 0x49656e69),
    (0x1, 0, 0, 0x00050654, 0x00000800, 0xf7fa320b, 0x0f8bfbff),   # MONITOR and PDCM set
    (0x4, 0, 1, 0x7c004121, 0x01c0003f, 0x0000003f, 0),             # L1d
    (0x4, 1, 1, 0x7c004122, 0x01c0003f, 0x0000003f, 0),             # L1i
    (0x4, 2, 1, 0x7c004143, 0x03c0003f, 0x000003ff, 0),             # L2
    (0x4, 3, 1, 0x7c0fc163, 0x0280003f, 0x0000b7ff, 0x00000004),    # L3
    (0x4, 4, 1, 0, 0, 0, 0),
    (0x6, 0, 0, 0x00000006, 0, 0x00000009, 0),                      # turbo, EPB
    (0x7, 0, 1, 0, 0xd19f0fbb, 0x00000028, 0xac000400),             # WAITPKG set
    (0xa, 0, 0, 0x07300402, 0, 0, 0x00000603),
    (0xb, 0, 1, 0x00000001, 0x00000002, 0x00000100, 0),             # no subleaf 1
    (0x1f, 0, 1, 0, 0, 0, 0),
    (0x80000000, 0, 0, 0x80000008, 0, 0, 0),
    (0x80000001, 0, 0, 0, 0, 0x00000121, 0x2c100800),
    (0x80000005, 0, 0, 0, 0, 0, 0),
    (0x80000006, 0, 0, 0, 0, 0x01006040, 0x00030000),
    (0x80000008, 0, 0, 0x0000302e, 0, 0, 0),
    (0x40000000, 0, 0, 0x40000001, 0x4b4d564b, 0x564b4d56, 0x0000004d),
    (0x40000001, 0, 0, 0x01007afb, 0, 0, 0),
]]


def leaf(entries, function, index=0):
    matches = [e for e in entries if (e.function, e.index) == (function, index)]
    assert len(matches) == 1, f"leaf {function:#x}.{index}: {len(matches)} entries"
    return matches[0]


def bits(value, low, high):
    return (value >> low) & ((1 << (high - low + 1)) - 1)


@pytest.mark.parametrize("table", [AMD_EPYC_PVM, INTEL_XEON], ids=["amd", "intel"])
@pytest.mark.parametrize("count", [1, 3, 4])
def test_common_leaves_give_each_vcpu_its_ids(table, count):
    original = copy.deepcopy(table)
    for vcpu in range(count):
        out = normalize(table, vcpu, count)
        l1 = leaf(out, 0x1)
        assert bits(l1.ebx, 24, 31) == vcpu                 # initial APIC id
        assert bits(l1.ebx, 16, 23) == {1: 1, 3: 4, 4: 4}[count]
        assert bits(l1.ebx, 8, 15) == 8                     # 64-byte cache lines
        assert bits(l1.ecx, 31, 31) == 1                    # hypervisor
        assert bits(l1.ecx, 24, 24) == 1                    # TSC deadline
        assert bits(l1.ecx, 15, 15) == 0                    # PDCM
        assert bits(l1.ecx, 3, 3) == 0                      # MONITOR
        assert bits(l1.edx, 28, 28) == (count > 1)          # HTT
        smt, core = leaf(out, 0xB, 0), leaf(out, 0xB, 1)
        assert smt.edx == core.edx == vcpu                  # x2APIC id
        assert (smt.eax, smt.ebx, smt.ecx) == (0, 1, 0x100)
        assert (core.eax, core.ebx, core.ecx) == (5, count, 0x201)
        assert smt.flags == core.flags == 1
        sig = leaf(out, 0x40000000)
        regs = b"".join(r.to_bytes(4, "little") for r in (sig.ebx, sig.ecx, sig.edx))
        assert (sig.eax, regs) == (0x40000001, b"KVMKVMKVM\0\0\0")
        assert leaf(out, 0x40000001).eax == leaf(table, 0x40000001).eax
        assert leaf(out, 0xA).eax == 0
        assert bits(leaf(out, 0x6).eax, 1, 1) == 0 and bits(leaf(out, 0x6).ecx, 3, 3) == 0
        assert bits(leaf(out, 0x80000006).edx, 16, 17) == 0
        assert vendor_of(out) == vendor_of(table)
    assert table == original                                # input left alone


@pytest.mark.parametrize("count", [1, 2, 4])
def test_amd_topology_leaves(count):
    for vcpu in range(count):
        out = normalize(AMD_EPYC_PVM, vcpu, count)
        ext = leaf(out, 0x8000001E)
        assert ext.eax == vcpu                               # extended APIC id
        assert bits(ext.ebx, 0, 7) == vcpu                  # one core per vCPU
        assert bits(ext.ebx, 8, 15) == 0                    # one thread per core
        assert bits(ext.ecx, 0, 10) == 0                    # node 0 of 1
        nc = leaf(out, 0x80000008).ecx
        assert (bits(nc, 0, 7), bits(nc, 12, 15)) == (count - 1, 7)
        sharing = [bits(leaf(out, 0x8000001D, i).eax, 14, 25) for i in range(4)]
        assert sharing == [0, 0, 0, 31]                     # L1d L1i L2 per core, L3 shared
        assert leaf(out, 0x80000000).eax == 0x80000021      # not lowered to 0x8000001f
        assert bits(leaf(out, 0x80000001).ecx, 22, 22) == 1  # topology extensions
        assert bits(leaf(out, 0x7).edx, 29, 29) == 0        # no ARCH_CAPABILITIES on AMD


def test_amd_smt_pairs_threads_into_cores():
    out = [normalize(AMD_EPYC_PVM, vcpu, 4, smt=True) for vcpu in range(4)]
    assert [bits(leaf(o, 0x8000001E).ebx, 0, 7) for o in out] == [0, 0, 1, 1]
    assert all(bits(leaf(o, 0x8000001E).ebx, 8, 15) == 1 for o in out)
    smt = leaf(out[0], 0xB, 0)
    assert (smt.eax, smt.ebx) == (1, 2)
    assert bits(leaf(out[0], 0x8000001D, 0).eax, 14, 25) == 1


def test_intel_leaves():
    out = normalize(INTEL_XEON, 2, 4, smt=True)
    sharing = [bits(leaf(out, 0x4, i).eax, 14, 25) for i in range(4)]
    assert sharing == [1, 1, 1, 3]                          # threads per core; L3 all vCPUs
    assert all(bits(leaf(out, 0x4, i).eax, 26, 31) == 1 for i in range(4))  # 2 cores - 1
    assert leaf(out, 0x4, 4).eax == 0                       # the terminator stays zero
    l7 = leaf(out, 0x7)
    assert bits(l7.ebx, 6, 6) == bits(l7.ebx, 13, 13) == 1
    assert bits(l7.ecx, 5, 5) == 0                          # WAITPKG
    assert bits(l7.edx, 29, 29) == 1                        # kept on Intel
    assert leaf(out, 0xA) == CpuidEntry(0xA, 0, 0, 0, 0, 0, 0)
    for index in (0, 1):
        v2, v1 = leaf(out, 0x1F, index), leaf(out, 0xB, index)
        assert (v2.eax, v2.ebx, v2.ecx, v2.edx) == (v1.eax, v1.ebx, v1.ecx, v1.edx)
    assert not any(e.function == 0x8000001E for e in out)


def test_host_values_are_passed_through_like_firecracker():
    host_leaves = {
        (0x0, 0): (0x10, 0x68747541, 0x444d4163, 0x69746e65),
        (0x80000005, 0): (1, 2, 3, 4),
        (0x80000006, 0): (5, 6, 7, 0x000F0000),
        (0x8000001E, 0): (0x22, 0x0101, 0x0300, 0),
        (0x8000001D, 0): (0x00000121, 0x01c0003f, 0x3f, 0),
        (0x8000001D, 1): (0x00004163, 0x03c0003f, 0x7fff, 1),
    }
    out = normalize(AMD_EPYC_PVM, 1, 2, host=lambda f, i: host_leaves.get((f, i), (0, 0, 0, 0)))
    l5, l6 = leaf(out, 0x80000005), leaf(out, 0x80000006)
    assert (l5.eax, l5.ebx, l5.ecx, l5.edx) == (1, 2, 3, 4)
    assert (l6.eax, l6.ebx, l6.ecx, l6.edx) == (5, 6, 7, 0x000C0000)
    assert bits(leaf(out, 0x8000001D, 1).eax, 14, 25) == 31
    assert leaf(out, 0x8000001E).eax == 1                   # then normalised per vCPU
    # Subleaves 2..3 came from KVM's table; the host's list ended after 1.
    assert leaf(out, 0x8000001D, 2).eax == 0x143


def test_vendor_comes_from_the_host_when_given():
    # Firecracker copies leaf 0's vendor from the host whatever the table says.
    table = copy.deepcopy(AMD_EPYC_PVM)
    table[0].ebx = table[0].ecx = table[0].edx = 0
    amd_host = {(0x0, 0): (0x10, 0x68747541, 0x444d4163, 0x69746e65)}
    out = normalize(table, 0, 1, host=lambda f, i: amd_host.get((f, i), (0, 0, 0, 0)))
    assert vendor_of(out) == b"AuthenticAMD"
    assert leaf(out, 0x0).eax == 0x1c                       # max basic leaf stays KVM's


@pytest.mark.parametrize("vcpu_id,count,message", [
    (0, 0, "vcpu_count 0 is outside 1..32"),
    (0, 33, "vcpu_count 33 is outside 1..32"),
    (2, 2, "vcpu_id 2 is outside 0..1"),
])
def test_bad_topology(vcpu_id, count, message):
    with pytest.raises(CpuidError, match=message):
        normalize(AMD_EPYC_PVM, vcpu_id, count)


def test_missing_and_unknown_leaves():
    without_leaf1 = [e for e in AMD_EPYC_PVM if e.function != 0x1]
    with pytest.raises(CpuidError, match="leaf 0x1 subleaf 0 is missing"):
        normalize(without_leaf1, 0, 1)
    other = copy.deepcopy(AMD_EPYC_PVM)
    other[0].ebx = int.from_bytes(b"Hygo", "little")
    with pytest.raises(CpuidError, match="vendor"):
        normalize(other, 0, 1)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="CPUID exists on x86_64 only")
def test_host_cpuid_reads_this_cpu():
    try:
        eax, ebx, ecx, edx = host_cpuid(0)
    except CpuidError as exc:
        pytest.skip(f"no executable mappings here: {exc}")
    vendor = b"".join(r.to_bytes(4, "little") for r in (ebx, edx, ecx)).decode()
    with open("/proc/cpuinfo") as f:
        expected = next(line.split(":")[1].strip() for line in f if line.startswith("vendor_id"))
    assert vendor == expected
    assert eax >= 1
    family_model = host_cpuid(1)[0]
    assert family_model != 0
