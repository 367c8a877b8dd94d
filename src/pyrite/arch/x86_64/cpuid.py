"""Per-vCPU CPUID: KVM_GET_SUPPORTED_CPUID's table normalised as Firecracker does.

``normalize(supported, vcpu_id, vcpu_count)`` follows Firecracker's
cpu_config/x86_64/cpuid/{normalize.rs, intel/normalize.rs, amd/normalize.rs}. The
leaves it changes, and why:

All vendors
  0x0         vendor id taken from the host when ``host`` is given (Firecracker: always).
  0x1         EBX: CLFLUSH line size 8 (x 8 = 64 bytes), max logical processor ids =
              vcpu_count rounded up to a power of two, initial APIC id = vcpu_id.
              ECX: PDCM off (no IA32_PERF_CAPABILITIES), TSC-deadline on (KVM's local
              APIC emulates it), hypervisor on, MONITOR off (pyrite: KVM runs MWAIT as
              a NOP, so a guest idling on it would spin). EDX: HTT = more than one vCPU.
  0xB         extended topology: subleaf 0 = SMT level (1 or 2 threads per core),
              subleaf 1 = core level holding every vCPU (shift 5: room for 32 vCPUs);
              EDX = x2APIC id = vcpu_id. Subleaf 1 is added when KVM leaves it out.
  0x6         turbo boost (EAX[1]) and energy-performance bias (ECX[3]) off: no
              frequency control in a guest. (Firecracker: Intel only; reserved on AMD.)
  0xA         architectural perfmon all zero: no PMU. (Firecracker: Intel only.)
  0x80000005/6  L1/L2/L3 cache and TLB info from the host when ``host`` is given;
              0x80000006 EDX[17:16] (reserved) cleared.
  0x40000000  "KVMKVMKVM\\0\\0\\0", EAX = 0x40000001 (the highest hypervisor leaf);
              0x40000001 (KVM paravirt features) is kept as KVM reports it.
Intel
  0x4         deterministic cache: L1/L2 shared by the threads of a core, L3 by every
              vCPU, EAX[31:26] = cores in the package - 1.
  0x7.0       EBX[6] FDP_EXCPTN_ONLY and EBX[13] "FPU CS/DS deprecated" on (as the
              kernel documents for KVM), ECX[5] WAITPKG off (UMWAIT would idle a
              physical CPU).
  0x1F        a copy of 0xB, when KVM reports 0x1F.
AMD
  0x7.0       EDX[29] off: IA32_ARCH_CAPABILITIES does not exist on AMD.
  0x80000000  highest extended leaf at least 0x8000001F, so the topology leaves are
              reachable (Firecracker sets exactly 0x8000001F; pyrite keeps a higher value
              so leaves such as 0x80000021 stay visible).
  0x80000001  ECX[22] TopologyExtensions on when 0x8000001D/E are present.
  0x80000008  ECX: APIC id size 7, NC = vcpu_count - 1.
  0x8000001D  cache topology (from the host when ``host`` is given): L1/L2 shared by
              the threads of a core, L3 shared by up to 32 vCPUs.
  0x8000001E  (from the host when given) extended APIC id = vcpu_id, compute unit id,
              threads per compute unit, one node.

Brand string leaves (0x80000002-4) are kept as KVM reports them, unlike Firecracker,
which writes "AMD EPYC" or a generic Xeon string.
"""
from __future__ import annotations

from collections.abc import Callable

from pyrite.kvm.types import CpuidEntry
from .layout import MAX_VCPUS

# (function, index) -> (eax, ebx, ecx, edx)
HostCpuid = Callable[[int, int], tuple[int, int, int, int]]

VENDOR_INTEL = b"GenuineIntel"
VENDOR_AMD = b"AuthenticAMD"
FLAG_SIGNIFICANT_INDEX = 1       # KVM_CPUID_FLAG_SIGNIFCANT_INDEX
KVM_CPUID_SIGNATURE = 0x4000_0000
KVM_CPUID_FEATURES = 0x4000_0001
KVM_SIGNATURE = b"KVMKVMKVM\0\0\0"


class CpuidError(Exception):
    """The supported CPUID table or the vCPU topology cannot be normalised."""


def _set_bit(value: int, bit: int, on: bool) -> int:
    return (value | (1 << bit)) if on else (value & ~(1 << bit))


def _set_bits(value: int, low: int, high: int, field: int, what: str) -> int:
    """Put ``field`` in bits high..low (inclusive) of ``value``."""
    width = high - low + 1
    if not 0 <= field < (1 << width):
        raise CpuidError(f"cpuid: {what} = {field} does not fit in bits {high}:{low}")
    mask = ((1 << width) - 1) << low
    return (value & ~mask) | (field << low)


def _get_bits(value: int, low: int, high: int) -> int:
    return (value >> low) & ((1 << (high - low + 1)) - 1)


def vendor_of(entries: list[CpuidEntry]) -> bytes:
    """The 12-byte vendor id from leaf 0 (EBX, EDX, ECX)."""
    for e in entries:
        if e.function == 0 and e.index == 0:
            return b"".join(r.to_bytes(4, "little") for r in (e.ebx, e.edx, e.ecx))
    raise CpuidError("cpuid: leaf 0x0 is missing from the supported table")


class _Table:
    """Entries keyed by (function, index); insertion keeps KVM's order."""

    def __init__(self, entries: list[CpuidEntry]):
        self.entries = {(e.function, e.index): e.copy() for e in entries}

    def get(self, function: int, index: int = 0) -> CpuidEntry | None:
        return self.entries.get((function, index))

    def require(self, function: int, index: int = 0) -> CpuidEntry:
        entry = self.get(function, index)
        if entry is None:
            raise CpuidError(f"cpuid: leaf {function:#x} subleaf {index} is missing "
                             "from the supported table")
        return entry

    def put(self, entry: CpuidEntry) -> CpuidEntry:
        self.entries[(entry.function, entry.index)] = entry
        return entry

    def subleaves(self, function: int) -> list[CpuidEntry]:
        """Subleaves 0, 1, 2, ... while they are present."""
        found = []
        while (e := self.get(function, len(found))) is not None:
            found.append(e)
        return found


def normalize(supported: list[CpuidEntry], vcpu_id: int, vcpu_count: int, *,
              smt: bool = False, host: HostCpuid | None = None) -> list[CpuidEntry]:
    """CPUID for vCPU ``vcpu_id`` of ``vcpu_count``; ``supported`` is left untouched.

    ``smt`` puts two threads in each core (Firecracker's ``smt`` machine-config option;
    it needs an even vcpu_count there). ``host`` answers CPUID on the host (see
    ``host_cpuid``); without it, the leaves Firecracker copies from the host keep the
    values KVM reported.
    """
    if not 1 <= vcpu_count <= MAX_VCPUS:
        raise CpuidError(f"cpuid: vcpu_count {vcpu_count} is outside 1..{MAX_VCPUS}")
    if not 0 <= vcpu_id < vcpu_count:
        raise CpuidError(f"cpuid: vcpu_id {vcpu_id} is outside 0..{vcpu_count - 1}")
    cpu_bits = 1 if smt and vcpu_count > 1 else 0
    cpus_per_core = 1 << cpu_bits

    table = _Table(supported)
    leaf0 = table.require(0x0)
    if host is not None:
        _, leaf0.ebx, leaf0.ecx, leaf0.edx = host(0x0, 0)
    vendor = vendor_of(list(table.entries.values()))
    if vendor not in (VENDOR_INTEL, VENDOR_AMD):
        raise CpuidError(f"cpuid: vendor {vendor.decode('latin-1')!r} is neither "
                         f"{VENDOR_INTEL.decode()} nor {VENDOR_AMD.decode()}")

    _feature_information(table, vcpu_id, vcpu_count)
    _extended_topology(table, vcpu_id, vcpu_count, cpu_bits, cpus_per_core)
    _extended_cache_features(table, host)
    _power_management(table)
    _performance_monitoring(table)
    _hypervisor_leaves(table)
    if vendor == VENDOR_INTEL:
        _intel_deterministic_cache(table, vcpu_count, cpus_per_core)
        _intel_extended_features(table)
        _intel_extended_topology_v2(table)
    else:
        _amd_passthrough_cache_topology(table, host)
        _amd_extended_features(table)
        _amd_largest_extended_function(table)
        _amd_extended_feature_flags(table)
        _amd_feature_entry(table, vcpu_count)
        _amd_extended_cache_topology(table, cpus_per_core)
        _amd_extended_apic_id(table, vcpu_id, cpus_per_core)
    return sorted(table.entries.values(), key=lambda e: (e.function, e.index))


def _feature_information(table: _Table, vcpu_id: int, vcpu_count: int) -> None:
    leaf = table.require(0x1)
    max_ids = 1 << (vcpu_count - 1).bit_length()      # next power of two
    leaf.ebx = _set_bits(leaf.ebx, 8, 15, 8, "CPUID.1:EBX CLFLUSH line size")
    leaf.ebx = _set_bits(leaf.ebx, 16, 23, max_ids, "CPUID.1:EBX max logical processor ids")
    leaf.ebx = _set_bits(leaf.ebx, 24, 31, vcpu_id, "CPUID.1:EBX initial APIC id")
    leaf.ecx = _set_bit(leaf.ecx, 3, False)    # MONITOR/MWAIT
    leaf.ecx = _set_bit(leaf.ecx, 15, False)   # PDCM
    leaf.ecx = _set_bit(leaf.ecx, 24, True)    # TSC-deadline
    leaf.ecx = _set_bit(leaf.ecx, 31, True)    # hypervisor
    leaf.edx = _set_bit(leaf.edx, 28, vcpu_count > 1)  # HTT


def _extended_topology(table: _Table, vcpu_id: int, vcpu_count: int, cpu_bits: int,
                       cpus_per_core: int) -> None:
    # Linux >= 6.2 KVM no longer reports subleaf 1; Firecracker adds it back.
    if table.get(0xB, 1) is None:
        table.put(CpuidEntry(0xB, 1, FLAG_SIGNIFICANT_INDEX))
    core_shift = (MAX_VCPUS - 1).bit_length()
    for index, sub in enumerate(table.subleaves(0xB)):
        sub.eax = sub.ebx = sub.ecx = 0
        sub.edx = vcpu_id                          # x2APIC id
        sub.flags = FLAG_SIGNIFICANT_INDEX
        if index == 0:                             # SMT level
            sub.eax = cpu_bits
            sub.ebx = cpus_per_core
            sub.ecx = 1 << 8
        elif index == 1:                           # core level: the whole package
            sub.eax = core_shift
            sub.ebx = vcpu_count
            sub.ecx = index | (2 << 8)
        else:
            sub.ecx = index                        # an invalid level: type 0


def _extended_cache_features(table: _Table, host: HostCpuid | None) -> None:
    for function in (0x8000_0005, 0x8000_0006):
        leaf = table.get(function)
        if leaf is None:
            continue
        if host is not None:
            leaf.eax, leaf.ebx, leaf.ecx, leaf.edx = host(function, 0)
        if function == 0x8000_0006:
            leaf.edx &= ~0x0003_0000              # bits 17:16 are reserved


def _power_management(table: _Table) -> None:
    leaf = table.get(0x6)
    if leaf is not None:
        leaf.eax = _set_bit(leaf.eax, 1, False)   # turbo boost
        leaf.ecx = _set_bit(leaf.ecx, 3, False)   # energy-performance bias


def _performance_monitoring(table: _Table) -> None:
    leaf = table.get(0xA)
    if leaf is not None:
        leaf.eax = leaf.ebx = leaf.ecx = leaf.edx = 0


def _hypervisor_leaves(table: _Table) -> None:
    sig = table.get(KVM_CPUID_SIGNATURE) or table.put(CpuidEntry(KVM_CPUID_SIGNATURE))
    sig.eax = KVM_CPUID_FEATURES
    sig.ebx, sig.ecx, sig.edx = (int.from_bytes(KVM_SIGNATURE[i:i + 4], "little")
                                 for i in (0, 4, 8))
    if table.get(KVM_CPUID_FEATURES) is None:
        table.put(CpuidEntry(KVM_CPUID_FEATURES))


def _intel_deterministic_cache(table: _Table, vcpu_count: int, cpus_per_core: int) -> None:
    cores = vcpu_count // cpus_per_core
    for sub in table.subleaves(0x4):
        if not (sub.eax or sub.ebx or sub.ecx or sub.edx):
            break                                  # the first invalid subleaf ends the list
        level = _get_bits(sub.eax, 5, 7)
        if level in (1, 2):
            sub.eax = _set_bits(sub.eax, 14, 25, cpus_per_core - 1,
                                "CPUID.4:EAX logical processors sharing the cache")
        elif level == 3:
            sub.eax = _set_bits(sub.eax, 14, 25, vcpu_count - 1,
                                "CPUID.4:EAX logical processors sharing the cache")
        sub.eax = _set_bits(sub.eax, 26, 31, cores - 1, "CPUID.4:EAX cores in the package")


def _intel_extended_features(table: _Table) -> None:
    leaf = table.require(0x7, 0)
    leaf.ebx = _set_bit(leaf.ebx, 6, True)         # FDP_EXCPTN_ONLY
    leaf.ebx = _set_bit(leaf.ebx, 13, True)        # FPU CS and DS deprecated
    leaf.ecx = _set_bit(leaf.ecx, 5, False)        # WAITPKG


def _intel_extended_topology_v2(table: _Table) -> None:
    if table.get(0x1F) is None:
        return
    for sub in table.subleaves(0xB):
        table.put(CpuidEntry(0x1F, sub.index, sub.flags, sub.eax, sub.ebx, sub.ecx, sub.edx))


def _amd_passthrough_cache_topology(table: _Table, host: HostCpuid | None) -> None:
    # Only reached for an AMD table, whose vendor came from ``host`` itself.
    if host is None:
        return
    eax, ebx, ecx, edx = host(0x8000_001E, 0)
    table.put(CpuidEntry(0x8000_001E, 0, 0, eax, ebx, ecx, edx))
    for index in range(64):
        eax, ebx, ecx, edx = host(0x8000_001D, index)
        if eax & 0xF == 0:                         # cache type 0: no more caches
            break
        table.put(CpuidEntry(0x8000_001D, index, FLAG_SIGNIFICANT_INDEX, eax, ebx, ecx, edx))


def _amd_extended_features(table: _Table) -> None:
    leaf = table.require(0x7, 0)
    leaf.edx = _set_bit(leaf.edx, 29, False)       # IA32_ARCH_CAPABILITIES


def _amd_largest_extended_function(table: _Table) -> None:
    leaf = table.require(0x8000_0000)
    leaf.eax = max(leaf.eax, 0x8000_001F)


def _amd_extended_feature_flags(table: _Table) -> None:
    leaf = table.require(0x8000_0001)
    has_topology = table.get(0x8000_001D) is not None and table.get(0x8000_001E) is not None
    leaf.ecx = _set_bit(leaf.ecx, 22, has_topology)


def _amd_feature_entry(table: _Table, vcpu_count: int) -> None:
    leaf = table.require(0x8000_0008)
    leaf.ecx = _set_bits(leaf.ecx, 12, 15, 7, "CPUID.80000008:ECX APIC id size")
    leaf.ecx = _set_bits(leaf.ecx, 0, 7, vcpu_count - 1, "CPUID.80000008:ECX NC")


def _amd_extended_cache_topology(table: _Table, cpus_per_core: int) -> None:
    for sub in table.subleaves(0x8000_001D):
        level = _get_bits(sub.eax, 5, 7)
        if level in (1, 2):
            sharing = cpus_per_core - 1
        elif level == 3:
            sharing = MAX_VCPUS - 1
        else:
            continue
        sub.eax = _set_bits(sub.eax, 14, 25, sharing,
                            "CPUID.8000001D:EAX logical processors sharing the cache")


def _amd_extended_apic_id(table: _Table, vcpu_id: int, cpus_per_core: int) -> None:
    leaf = table.get(0x8000_001E)
    if leaf is None:
        return
    leaf.eax = vcpu_id                                                  # extended APIC id
    leaf.ebx = _set_bits(leaf.ebx, 0, 7, vcpu_id // cpus_per_core, "compute unit id")
    leaf.ebx = _set_bits(leaf.ebx, 8, 15, cpus_per_core - 1, "threads per compute unit")
    leaf.ecx = _set_bits(leaf.ecx, 8, 10, 0, "nodes per processor")   # one node
    leaf.ecx = _set_bits(leaf.ecx, 0, 7, 0, "node id")


# -- the host's own CPUID -------------------------------------------------------------------

# push rbx; mov r8, rdx; mov eax, edi; mov ecx, esi; cpuid;
# mov [r8], eax; mov [r8+4], ebx; mov [r8+8], ecx; mov [r8+12], edx; pop rbx; ret
_CPUID_CODE = bytes.fromhex("53 4989d0 89f8 89f1 0fa2 418900 41895804 41894808 4189500c 5b c3")
_cpuid_fn = None


def host_cpuid(function: int, index: int = 0) -> tuple[int, int, int, int]:
    """Execute CPUID on the host CPU; returns (eax, ebx, ecx, edx).

    Runs a 30-byte routine from an executable anonymous mapping (built once): Python
    has no CPUID of its own. Raises CpuidError where executable mappings are refused.
    """
    global _cpuid_fn
    import ctypes
    if _cpuid_fn is None:
        import mmap
        try:
            page = mmap.mmap(-1, mmap.PAGESIZE,
                             prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        except OSError as exc:
            raise CpuidError(f"cpuid: cannot map executable memory for CPUID: {exc}") from None
        page.write(_CPUID_CODE)
        address = ctypes.addressof(ctypes.c_char.from_buffer(page))
        proto = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32,
                                 ctypes.POINTER(ctypes.c_uint32))
        _cpuid_fn = (proto(address), page)       # the page lives as long as the function
    regs = (ctypes.c_uint32 * 4)()
    _cpuid_fn[0](function, index, regs)
    return regs[0], regs[1], regs[2], regs[3]
