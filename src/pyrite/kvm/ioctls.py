"""The one table of KVM ioctl numbers, capabilities, exit reasons and flags (x86_64).

Numbers are computed the way <asm-generic/ioctl.h> does, from the sizes of the ctypes
mirrors in structs.py; tests/unit/test_kvm_layout.py compares them with the C macros.
"""
from __future__ import annotations

import ctypes

from . import structs as s

# <asm-generic/ioctl.h>
_IOC_NRSHIFT, _IOC_TYPESHIFT, _IOC_SIZESHIFT, _IOC_DIRSHIFT = 0, 8, 16, 30
_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2


def _IOC(direction: int, type_: int, nr: int, size: int) -> int:
    return (direction << _IOC_DIRSHIFT) | (type_ << _IOC_TYPESHIFT) | (nr << _IOC_NRSHIFT) | (size << _IOC_SIZESHIFT)


def _IO(type_: int, nr: int) -> int:
    return _IOC(_IOC_NONE, type_, nr, 0)


def _IOR(type_: int, nr: int, struct: type) -> int:
    return _IOC(_IOC_READ, type_, nr, ctypes.sizeof(struct))


def _IOW(type_: int, nr: int, struct: type) -> int:
    return _IOC(_IOC_WRITE, type_, nr, ctypes.sizeof(struct))


def _IOWR(type_: int, nr: int, struct: type) -> int:
    return _IOC(_IOC_READ | _IOC_WRITE, type_, nr, ctypes.sizeof(struct))


KVMIO = 0xAE
KVM_API_VERSION = 12

# /dev/kvm (system) ioctls
KVM_GET_API_VERSION = _IO(KVMIO, 0x00)
KVM_CREATE_VM = _IO(KVMIO, 0x01)
KVM_GET_MSR_INDEX_LIST = _IOWR(KVMIO, 0x02, s.kvm_msr_list)
KVM_CHECK_EXTENSION = _IO(KVMIO, 0x03)
KVM_GET_VCPU_MMAP_SIZE = _IO(KVMIO, 0x04)
KVM_GET_SUPPORTED_CPUID = _IOWR(KVMIO, 0x05, s.kvm_cpuid2)
KVM_GET_MSR_FEATURE_INDEX_LIST = _IOWR(KVMIO, 0x0A, s.kvm_msr_list)

# VM ioctls
KVM_CREATE_VCPU = _IO(KVMIO, 0x41)
KVM_GET_DIRTY_LOG = _IOW(KVMIO, 0x42, s.kvm_dirty_log)
KVM_SET_USER_MEMORY_REGION = _IOW(KVMIO, 0x46, s.kvm_userspace_memory_region)
KVM_SET_TSS_ADDR = _IO(KVMIO, 0x47)
KVM_SET_IDENTITY_MAP_ADDR = _IOW(KVMIO, 0x48, ctypes.c_uint64)
KVM_CREATE_IRQCHIP = _IO(KVMIO, 0x60)
KVM_IRQ_LINE = _IOW(KVMIO, 0x61, s.kvm_irq_level)
KVM_GET_IRQCHIP = _IOWR(KVMIO, 0x62, s.kvm_irqchip)
KVM_SET_IRQCHIP = _IOR(KVMIO, 0x63, s.kvm_irqchip)   # sic: _IOR in the kernel header
KVM_IRQFD = _IOW(KVMIO, 0x76, s.kvm_irqfd)
KVM_CREATE_PIT2 = _IOW(KVMIO, 0x77, s.kvm_pit_config)
KVM_IOEVENTFD = _IOW(KVMIO, 0x79, s.kvm_ioeventfd)
KVM_SET_CLOCK = _IOW(KVMIO, 0x7B, s.kvm_clock_data)
KVM_GET_CLOCK = _IOR(KVMIO, 0x7C, s.kvm_clock_data)
KVM_GET_PIT2 = _IOR(KVMIO, 0x9F, s.kvm_pit_state2)
KVM_SET_PIT2 = _IOW(KVMIO, 0xA0, s.kvm_pit_state2)

# vCPU ioctls
KVM_RUN = _IO(KVMIO, 0x80)
KVM_GET_REGS = _IOR(KVMIO, 0x81, s.kvm_regs)
KVM_SET_REGS = _IOW(KVMIO, 0x82, s.kvm_regs)
KVM_GET_SREGS = _IOR(KVMIO, 0x83, s.kvm_sregs)
KVM_SET_SREGS = _IOW(KVMIO, 0x84, s.kvm_sregs)
KVM_GET_MSRS = _IOWR(KVMIO, 0x88, s.kvm_msrs)
KVM_SET_MSRS = _IOW(KVMIO, 0x89, s.kvm_msrs)
KVM_GET_FPU = _IOR(KVMIO, 0x8C, s.kvm_fpu)
KVM_SET_FPU = _IOW(KVMIO, 0x8D, s.kvm_fpu)
KVM_GET_LAPIC = _IOR(KVMIO, 0x8E, s.kvm_lapic_state)
KVM_SET_LAPIC = _IOW(KVMIO, 0x8F, s.kvm_lapic_state)
KVM_SET_CPUID2 = _IOW(KVMIO, 0x90, s.kvm_cpuid2)
KVM_GET_CPUID2 = _IOWR(KVMIO, 0x91, s.kvm_cpuid2)
KVM_GET_MP_STATE = _IOR(KVMIO, 0x98, s.kvm_mp_state)
KVM_SET_MP_STATE = _IOW(KVMIO, 0x99, s.kvm_mp_state)
KVM_SET_GUEST_DEBUG = _IOW(KVMIO, 0x9B, s.kvm_guest_debug)
KVM_GET_VCPU_EVENTS = _IOR(KVMIO, 0x9F, s.kvm_vcpu_events)
KVM_SET_VCPU_EVENTS = _IOW(KVMIO, 0xA0, s.kvm_vcpu_events)
KVM_GET_DEBUGREGS = _IOR(KVMIO, 0xA1, s.kvm_debugregs)
KVM_SET_DEBUGREGS = _IOW(KVMIO, 0xA2, s.kvm_debugregs)
KVM_GET_XSAVE = _IOR(KVMIO, 0xA4, s.kvm_xsave)
KVM_SET_XSAVE = _IOW(KVMIO, 0xA5, s.kvm_xsave)
KVM_GET_XCRS = _IOR(KVMIO, 0xA6, s.kvm_xcrs)
KVM_SET_XCRS = _IOW(KVMIO, 0xA7, s.kvm_xcrs)
KVM_KVMCLOCK_CTRL = _IO(KVMIO, 0xAD)

# Names by number, for error messages (KvmError("KVM_SET_REGS: ...")).
IOCTL_NAMES: dict[int, str] = {}
for _name, _value in list(globals().items()):
    if _name.startswith("KVM_") and _name != "KVM_API_VERSION" and isinstance(_value, int):
        IOCTL_NAMES.setdefault(_value, _name)


# KVM_CHECK_EXTENSION capability numbers (<linux/kvm.h> KVM_CAP_*), as the Cap enum.
CAPABILITIES: dict[str, int] = {
    "IRQCHIP": 0,
    "HLT": 1,
    "USER_MEMORY": 3,
    "SET_TSS_ADDR": 4,
    "EXT_CPUID": 7,
    "CLOCKSOURCE": 8,
    "NR_VCPUS": 9,
    "NR_MEMSLOTS": 10,
    "PIT": 11,
    "NOP_IO_DELAY": 12,
    "MP_STATE": 14,
    "COALESCED_MMIO": 15,
    "SYNC_MMU": 16,
    "USER_NMI": 22,
    "SET_GUEST_DEBUG": 23,
    "IRQ_ROUTING": 25,
    "IRQ_INJECT_STATUS": 26,
    "MCE": 31,
    "IRQFD": 32,
    "PIT2": 33,
    "PIT_STATE2": 35,
    "IOEVENTFD": 36,
    "SET_IDENTITY_MAP_ADDR": 37,
    "ADJUST_CLOCK": 39,
    "INTERNAL_ERROR_DATA": 40,
    "VCPU_EVENTS": 41,
    "DEBUGREGS": 50,
    "ENABLE_CAP": 54,
    "XSAVE": 55,
    "XCRS": 56,
    "TSC_CONTROL": 60,
    "GET_TSC_KHZ": 61,
    "MAX_VCPUS": 66,
    "TSC_DEADLINE_TIMER": 72,
    "KVMCLOCK_CTRL": 76,
    "SIGNAL_MSI": 77,
    "READONLY_MEM": 81,
    "IRQFD_RESAMPLE": 82,
    "ENABLE_CAP_VM": 98,
    "IOEVENTFD_NO_LENGTH": 100,
    "CHECK_EXTENSION_VM": 105,
    "SPLIT_IRQCHIP": 121,
    "IOEVENTFD_ANY_LENGTH": 122,
    "MAX_VCPU_ID": 128,
    "X2APIC_API": 129,
    "IMMEDIATE_EXIT": 136,
    "X86_DISABLE_EXITS": 143,
    "GET_MSR_FEATURES": 153,
    "MANUAL_DIRTY_LOG_PROTECT2": 168,
    "SYSTEM_EVENT_DATA": 215,
    "XSAVE2": 208,
}

# kvm_run.exit_reason (<linux/kvm.h> KVM_EXIT_*), as the ExitReason enum.
EXIT_REASONS: dict[str, int] = {
    "UNKNOWN": 0,
    "EXCEPTION": 1,
    "IO": 2,
    "HYPERCALL": 3,
    "DEBUG": 4,
    "HLT": 5,
    "MMIO": 6,
    "IRQ_WINDOW_OPEN": 7,
    "SHUTDOWN": 8,
    "FAIL_ENTRY": 9,
    "INTR": 10,
    "SET_TPR": 11,
    "TPR_ACCESS": 12,
    "NMI": 16,
    "INTERNAL_ERROR": 17,
    "SYSTEM_EVENT": 24,
    "IOAPIC_EOI": 26,
    "HYPERV": 27,
    "X86_RDMSR": 29,
    "X86_WRMSR": 30,
    "DIRTY_RING_FULL": 31,
    "X86_BUS_LOCK": 33,
    "XEN": 34,
    "NOTIFY": 37,
}


_ENUMS = {"Cap": (CAPABILITIES, "KVM_CHECK_EXTENSION capability numbers (KVM_CAP_*)."),
          "ExitReason": (EXIT_REASONS, "kvm_run.exit_reason values (KVM_EXIT_*).")}


def __getattr__(name: str):
    # Cap and ExitReason are IntEnums built from the tables on first use: the boot path
    # compares plain ints and should not pay for importing enum.
    if name in _ENUMS:
        from enum import IntEnum
        table, doc = _ENUMS[name]
        enum = globals()[name] = IntEnum(name, table, module=__name__)
        enum.__doc__ = doc
        return enum
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


KVM_EXIT_IO_IN = 0
KVM_EXIT_IO_OUT = 1

# KVM_EXIT_INTERNAL_ERROR suberrors
KVM_INTERNAL_ERROR_EMULATION = 1
KVM_INTERNAL_ERROR_SIMUL_EX = 2
KVM_INTERNAL_ERROR_DELIVERY_EV = 3
KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON = 4
KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES = 1 << 0

# KVM_EXIT_SYSTEM_EVENT types
KVM_SYSTEM_EVENT_SHUTDOWN = 1
KVM_SYSTEM_EVENT_RESET = 2
KVM_SYSTEM_EVENT_CRASH = 3
KVM_SYSTEM_EVENT_WAKEUP = 4
KVM_SYSTEM_EVENT_SUSPEND = 5
KVM_SYSTEM_EVENT_SEV_TERM = 6

# memory region flags
KVM_MEM_LOG_DIRTY_PAGES = 1 << 0
KVM_MEM_READONLY = 1 << 1

# irqchips (KVM_GET/SET_IRQCHIP chip_id)
KVM_IRQCHIP_PIC_MASTER = 0
KVM_IRQCHIP_PIC_SLAVE = 1
KVM_IRQCHIP_IOAPIC = 2

KVM_PIT_SPEAKER_DUMMY = 1
KVM_PIT_FLAGS_HPET_LEGACY = 0x1

KVM_IRQFD_FLAG_DEASSIGN = 1 << 0
KVM_IRQFD_FLAG_RESAMPLE = 1 << 1

KVM_IOEVENTFD_FLAG_DATAMATCH = 1 << 0
KVM_IOEVENTFD_FLAG_PIO = 1 << 1
KVM_IOEVENTFD_FLAG_DEASSIGN = 1 << 2

KVM_CPUID_FLAG_SIGNIFCANT_INDEX = 1 << 0

# kvm_guest_debug.control
KVM_GUESTDBG_ENABLE = 0x00000001
KVM_GUESTDBG_SINGLESTEP = 0x00000002
KVM_GUESTDBG_USE_SW_BP = 0x00010000
KVM_GUESTDBG_USE_HW_BP = 0x00020000

KVM_CLOCK_TSC_STABLE = 2

# kvm_vcpu_events.flags
KVM_VCPUEVENT_VALID_NMI_PENDING = 0x1
KVM_VCPUEVENT_VALID_SIPI_VECTOR = 0x2
KVM_VCPUEVENT_VALID_SHADOW = 0x4
KVM_VCPUEVENT_VALID_SMM = 0x8

KVM_MP_STATE_RUNNABLE = 0
KVM_MP_STATE_UNINITIALIZED = 1
KVM_MP_STATE_INIT_RECEIVED = 2
KVM_MP_STATE_HALTED = 3
KVM_MP_STATE_SIPI_RECEIVED = 4

# First buffer size for CPUID answers (KVM returns E2BIG when a buffer is too small).
MAX_CPUID_ENTRIES = 256
