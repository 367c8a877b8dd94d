"""The KVM side of a snapshot: each vCPU's registers and the VM's interrupt controllers, PIT
and clock, to and from the plain values of a state file.

What is saved per vCPU is Firecracker's VcpuState (vstate/vcpu.rs): CPUID (as pyrite set it),
MSRs (those of KVM_GET_MSR_INDEX_LIST that this vCPU can read), regs, sregs, xsave, XCRs, debug registers,
LAPIC, MP state and vCPU events. It is restored in Firecracker's order, CPUID first and
vCPU events last (they may inject a pending exception into the state set before them).
"""
from __future__ import annotations

import struct
import time

from pyrite import kvm
from pyrite.arch.x86_64 import cpuid as arch_cpuid
from pyrite.kvm import ioctls, structs as s

_CPUID_ENTRY = struct.Struct("<7I")      # function, index, flags, eax, ebx, ecx, edx
_MSR_ENTRY = struct.Struct("<IQ")        # index, value

# (name, ctypes struct, getter, setter), in restore order after CPUID and before MSRs.
_VCPU_RECORDS = (
    ("mp_state", s.kvm_mp_state, "get_mp_state", "set_mp_state"),
    ("regs", s.kvm_regs, "get_regs", "set_regs"),
    ("sregs", s.kvm_sregs, "get_sregs", "set_sregs"),
    ("xsave", s.kvm_xsave, "get_xsave", "set_xsave"),
    ("xcrs", s.kvm_xcrs, "get_xcrs", "set_xcrs"),
    ("debugregs", s.kvm_debugregs, "get_debugregs", "set_debugregs"),
    ("lapic", s.kvm_lapic_state, "get_lapic", "set_lapic"),
)
_EVENTS = ("vcpu_events", s.kvm_vcpu_events, "get_vcpu_events", "set_vcpu_events")
_CHIPS = (("pic_master", ioctls.KVM_IRQCHIP_PIC_MASTER), ("pic_slave", ioctls.KVM_IRQCHIP_PIC_SLAVE),
          ("ioapic", ioctls.KVM_IRQCHIP_IOAPIC))
# CPUID feature registers checked against what this host would give a VM: (leaf, subleaf, register, dynamic bits).
_FEATURE_WORDS = ((1, 0, "ecx", 1 << 27), (1, 0, "edx", 0), (7, 0, "ebx", 0), (7, 0, "ecx", 1 << 4),
                  (7, 0, "edx", 0), (0xD, 1, "eax", 0), (0x80000001, 0, "ecx", 0), (0x80000001, 0, "edx", 0))


class StateMismatchError(Exception):
    """A saved state this host or this VM cannot take (CPU features, MSRs, vCPU count, layout)."""


def _struct(struct_type, data, where: str):
    if not isinstance(data, bytes) or len(data) != s.ctypes.sizeof(struct_type):
        size = len(data) if isinstance(data, bytes) else type(data).__name__
        raise StateMismatchError(f"{where}: saved as {size} bytes, KVM's {struct_type.__name__} "
                                 f"is {s.ctypes.sizeof(struct_type)}")
    return struct_type.from_buffer_copy(data)


# -- vCPUs ---------------------------------------------------------------------------------

def readable_msrs(system, vcpu) -> list[int]:
    """The MSRs of KVM_GET_MSR_INDEX_LIST this vCPU can read (KVM lists some the CPU lacks)."""
    pending, readable = list(system.get_msr_index_list()), []
    while pending:
        try:
            vcpu.get_msrs(pending)
            return readable + pending
        except kvm.KvmError:
            done = _msrs_read_before_failure(vcpu, pending)
            readable += pending[:done]
            pending = pending[done + 1:]
    return readable


def _msrs_read_before_failure(vcpu, indices: list[int]) -> int:
    for i, index in enumerate(indices):
        try:
            vcpu.get_msrs([index])
        except kvm.KvmError:
            return i
    return len(indices)


def save_vcpu(vcpu, msr_indices: list[int]) -> dict:
    """One vCPU's state; the vCPU must be out of KVM_RUN (paused)."""
    state = {"cpuid": b"".join(_CPUID_ENTRY.pack(e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx)
                               for e in vcpu.cpuid)}
    for name, _, get, _ in (*_VCPU_RECORDS, _EVENTS):
        state[name] = bytes(getattr(vcpu, get)())
    state["msrs"] = b"".join(_MSR_ENTRY.pack(index, value) for index, value in vcpu.get_msrs(msr_indices).items())
    return state


def cpuid_entries(data, where: str) -> list[tuple[int, ...]]:
    """save_vcpu's packed CPUID as (function, index, flags, eax, ebx, ecx, edx) tuples."""
    return list(_unpack(_CPUID_ENTRY, data, f"{where} cpuid"))


def _unpack(layout: struct.Struct, data, where: str):
    if not isinstance(data, bytes) or len(data) % layout.size:
        raise StateMismatchError(f"{where}: not a whole number of {layout.size}-byte entries")
    return layout.iter_unpack(data)


def restore_vcpu(vcpu, state: dict, where: str) -> None:
    """Set a new vCPU from save_vcpu's record (KvmError, StateMismatchError)."""
    vcpu.set_cpuid2([kvm.CpuidEntry(*entry) for entry in cpuid_entries(state["cpuid"], where)])
    for name, struct_type, _, set_ in _VCPU_RECORDS:
        getattr(vcpu, set_)(_struct(struct_type, state[name], f"{where} {name}"))
    try:
        vcpu.set_msrs(dict(_unpack(_MSR_ENTRY, state["msrs"], f"{where} msrs")))
    except kvm.KvmError as e:
        raise StateMismatchError(f"{where}: this host refuses a saved MSR: {e}") from None
    name, struct_type, _, set_ = _EVENTS
    getattr(vcpu, set_)(_struct(struct_type, state[name], f"{where} {name}"))


def check_cpu_features(saved_cpuid: list, supported, vcpu_count: int) -> None:
    """StateMismatchError naming the first CPU feature the saved vCPU had that a VM on this
    host would not get (the snapshot was taken on a CPU with more features). `saved_cpuid`:
    cpuid_entries(); `supported`: KVM_GET_SUPPORTED_CPUID's entries."""
    saved = {(e[0], e[1]): e for e in saved_cpuid}
    here = {(e.function, e.index): e for e in arch_cpuid.normalize(supported, 0, vcpu_count)}
    registers = {"eax": 3, "ebx": 4, "ecx": 5, "edx": 6}
    for leaf, subleaf, register, dynamic in _FEATURE_WORDS:
        if (leaf, subleaf) not in saved:
            continue
        have = getattr(here[(leaf, subleaf)], register) if (leaf, subleaf) in here else 0
        missing = saved[(leaf, subleaf)][registers[register]] & ~have & ~dynamic
        if missing:
            bit = (missing & -missing).bit_length() - 1
            raise StateMismatchError(f"the snapshot's CPU has features this host lacks: CPUID leaf "
                                     f"{leaf:#x}.{subleaf} {register} bit {bit} (mask {missing:#x})")


# -- the VM --------------------------------------------------------------------------------

def save_vm(vm) -> dict:
    """The in-kernel PIC pair, IOAPIC, PIT and kvmclock."""
    state = {name: bytes(vm.get_irqchip(chip_id)) for name, chip_id in _CHIPS}
    state["pit"] = bytes(vm.get_pit2())
    state["clock"] = vm.get_clock().clock
    state["realtime_ns"] = time.time_ns()
    return state


def restore_vm(vm, state: dict, clock_realtime: bool = False) -> None:
    """Set a new VM's irqchip, PIT and clock. With `clock_realtime` the guest clock also
    advances by the wall time that passed since the snapshot (Firecracker's clock_realtime)."""
    for name, chip_id in _CHIPS:
        chip = _struct(s.kvm_irqchip, state[name], f"VM {name}")
        if chip.chip_id != chip_id:
            raise StateMismatchError(f"VM {name}: saved as chip {chip.chip_id}, expected {chip_id}")
        vm.set_irqchip(chip)
    vm.set_pit2(_struct(s.kvm_pit_state2, state["pit"], "VM pit"))
    clock = s.kvm_clock_data(clock=state["clock"])
    if clock_realtime:
        clock.clock += max(0, time.time_ns() - state["realtime_ns"])
    vm.set_clock(clock)
