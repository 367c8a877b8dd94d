"""ctypes mirrors of the KVM structures pyrite exchanges with the kernel (x86_64).

Class names are the C struct names from <linux/kvm.h> and <asm/kvm.h>; a class that
mirrors a top-level C struct carries `_c_name_`, and tests/unit/test_kvm_layout.py checks
every field's offset and size of each such class against the compiler's answer.
Nested anonymous C structs get a helper class named <outer>_<member> without `_c_name_`.
Flexible array members are zero-length arrays here; `with_entries()` builds a sized copy.
"""
from __future__ import annotations

import ctypes
from ctypes import c_char, c_int32, c_int64, c_uint8, c_uint16, c_uint32, c_uint64
from functools import cache


class _Struct(ctypes.Structure):
    """Base for KVM structs: all fields are naturally aligned, as in the C headers."""
    _c_name_: str | None = None


class _Union(ctypes.Union):
    _c_name_: str | None = None


# --- memory -----------------------------------------------------------------------------

class kvm_userspace_memory_region(_Struct):
    _c_name_ = "struct kvm_userspace_memory_region"
    _fields_ = [
        ("slot", c_uint32),
        ("flags", c_uint32),
        ("guest_phys_addr", c_uint64),
        ("memory_size", c_uint64),
        ("userspace_addr", c_uint64),
    ]


class kvm_dirty_log(_Struct):
    _c_name_ = "struct kvm_dirty_log"
    _fields_ = [
        ("slot", c_uint32),
        ("padding1", c_uint32),
        ("dirty_bitmap", c_uint64),   # C: union { void *dirty_bitmap; __u64 padding2; }
    ]


# --- registers --------------------------------------------------------------------------

class kvm_regs(_Struct):
    _c_name_ = "struct kvm_regs"
    _fields_ = [(name, c_uint64) for name in (
        "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags")]


class kvm_segment(_Struct):
    _c_name_ = "struct kvm_segment"
    _fields_ = [
        ("base", c_uint64),
        ("limit", c_uint32),
        ("selector", c_uint16),
        ("type", c_uint8),
        ("present", c_uint8),
        ("dpl", c_uint8),
        ("db", c_uint8),
        ("s", c_uint8),
        ("l", c_uint8),
        ("g", c_uint8),
        ("avl", c_uint8),
        ("unusable", c_uint8),
        ("padding", c_uint8),
    ]


class kvm_dtable(_Struct):
    _c_name_ = "struct kvm_dtable"
    _fields_ = [
        ("base", c_uint64),
        ("limit", c_uint16),
        ("padding", c_uint16 * 3),
    ]


KVM_NR_INTERRUPTS = 256


class kvm_sregs(_Struct):
    _c_name_ = "struct kvm_sregs"
    _fields_ = [(name, kvm_segment) for name in ("cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt")] + [
        ("gdt", kvm_dtable),
        ("idt", kvm_dtable),
        ("cr0", c_uint64),
        ("cr2", c_uint64),
        ("cr3", c_uint64),
        ("cr4", c_uint64),
        ("cr8", c_uint64),
        ("efer", c_uint64),
        ("apic_base", c_uint64),
        ("interrupt_bitmap", c_uint64 * ((KVM_NR_INTERRUPTS + 63) // 64)),
    ]


class kvm_fpu(_Struct):
    _c_name_ = "struct kvm_fpu"
    _fields_ = [
        ("fpr", (c_uint8 * 16) * 8),
        ("fcw", c_uint16),
        ("fsw", c_uint16),
        ("ftwx", c_uint8),
        ("pad1", c_uint8),
        ("last_opcode", c_uint16),
        ("last_ip", c_uint64),
        ("last_dp", c_uint64),
        ("xmm", (c_uint8 * 16) * 16),
        ("mxcsr", c_uint32),
        ("pad2", c_uint32),
    ]


class kvm_debugregs(_Struct):
    _c_name_ = "struct kvm_debugregs"
    _fields_ = [
        ("db", c_uint64 * 4),
        ("dr6", c_uint64),
        ("dr7", c_uint64),
        ("flags", c_uint64),
        ("reserved", c_uint64 * 9),
    ]


class kvm_xcr(_Struct):
    _c_name_ = "struct kvm_xcr"
    _fields_ = [
        ("xcr", c_uint32),
        ("reserved", c_uint32),
        ("value", c_uint64),
    ]


KVM_MAX_XCRS = 16


class kvm_xcrs(_Struct):
    _c_name_ = "struct kvm_xcrs"
    _fields_ = [
        ("nr_xcrs", c_uint32),
        ("flags", c_uint32),
        ("xcrs", kvm_xcr * KVM_MAX_XCRS),
        ("padding", c_uint64 * 16),
    ]


class kvm_xsave(_Struct):
    _c_name_ = "struct kvm_xsave"
    _fields_ = [
        ("region", c_uint32 * 1024),
        ("extra", c_uint32 * 0),
    ]


# --- MSRs and CPUID (variable length) ---------------------------------------------------

class kvm_msr_entry(_Struct):
    _c_name_ = "struct kvm_msr_entry"
    _fields_ = [
        ("index", c_uint32),
        ("reserved", c_uint32),
        ("data", c_uint64),
    ]


class kvm_msrs(_Struct):
    _c_name_ = "struct kvm_msrs"
    _fields_ = [
        ("nmsrs", c_uint32),
        ("pad", c_uint32),
        ("entries", kvm_msr_entry * 0),
    ]


class kvm_msr_list(_Struct):
    _c_name_ = "struct kvm_msr_list"
    _fields_ = [
        ("nmsrs", c_uint32),
        ("indices", c_uint32 * 0),
    ]


class kvm_cpuid_entry2(_Struct):
    _c_name_ = "struct kvm_cpuid_entry2"
    _fields_ = [
        ("function", c_uint32),
        ("index", c_uint32),
        ("flags", c_uint32),
        ("eax", c_uint32),
        ("ebx", c_uint32),
        ("ecx", c_uint32),
        ("edx", c_uint32),
        ("padding", c_uint32 * 3),
    ]


class kvm_cpuid2(_Struct):
    _c_name_ = "struct kvm_cpuid2"
    _fields_ = [
        ("nent", c_uint32),
        ("padding", c_uint32),
        ("entries", kvm_cpuid_entry2 * 0),
    ]


@cache
def with_entries(base: type[_Struct], count: int) -> type[_Struct]:
    """`base` (a struct ending in a flexible array) with room for `count` array elements."""
    *head, (last_name, last_type) = base._fields_
    element = last_type._type_
    return type(f"{base.__name__}_{count}", (_Struct,),
                {"_fields_": [*head, (last_name, element * count)]})


# --- local APIC, vCPU state -------------------------------------------------------------

KVM_APIC_REG_SIZE = 0x400


class kvm_lapic_state(_Struct):
    _c_name_ = "struct kvm_lapic_state"
    _fields_ = [("regs", c_uint8 * KVM_APIC_REG_SIZE)]   # C: char; bytes(regs) is the page

    def regs_view(self) -> memoryview:
        """The 1 KiB register page as a writable byte view (struct.pack_into works on it)."""
        return memoryview(self.regs).cast("B")


class kvm_mp_state(_Struct):
    _c_name_ = "struct kvm_mp_state"
    _fields_ = [("mp_state", c_uint32)]


class kvm_vcpu_events_exception(_Struct):
    _fields_ = [
        ("injected", c_uint8),
        ("nr", c_uint8),
        ("has_error_code", c_uint8),
        ("pending", c_uint8),
        ("error_code", c_uint32),
    ]


class kvm_vcpu_events_interrupt(_Struct):
    _fields_ = [
        ("injected", c_uint8),
        ("nr", c_uint8),
        ("soft", c_uint8),
        ("shadow", c_uint8),
    ]


class kvm_vcpu_events_nmi(_Struct):
    _fields_ = [
        ("injected", c_uint8),
        ("pending", c_uint8),
        ("masked", c_uint8),
        ("pad", c_uint8),
    ]


class kvm_vcpu_events_smi(_Struct):
    _fields_ = [
        ("smm", c_uint8),
        ("pending", c_uint8),
        ("smm_inside_nmi", c_uint8),
        ("latched_init", c_uint8),
    ]


class kvm_vcpu_events_triple_fault(_Struct):
    _fields_ = [("pending", c_uint8)]


class kvm_vcpu_events(_Struct):
    _c_name_ = "struct kvm_vcpu_events"
    _fields_ = [
        ("exception", kvm_vcpu_events_exception),
        ("interrupt", kvm_vcpu_events_interrupt),
        ("nmi", kvm_vcpu_events_nmi),
        ("sipi_vector", c_uint32),
        ("flags", c_uint32),
        ("smi", kvm_vcpu_events_smi),
        ("triple_fault", kvm_vcpu_events_triple_fault),
        ("reserved", c_uint8 * 26),
        ("exception_has_payload", c_uint8),
        ("exception_payload", c_uint64),
    ]


# --- interrupt controllers, PIT, clock, eventfds ----------------------------------------

class kvm_irq_level(_Struct):
    _c_name_ = "struct kvm_irq_level"
    _fields_ = [
        ("irq", c_uint32),   # C: union { __u32 irq; __s32 status; }
        ("level", c_uint32),
    ]


class kvm_pic_state(_Struct):
    _c_name_ = "struct kvm_pic_state"
    _fields_ = [(name, c_uint8) for name in (
        "last_irr", "irr", "imr", "isr", "priority_add", "irq_base", "read_reg_select",
        "poll", "special_mask", "init_state", "auto_eoi", "rotate_on_auto_eoi",
        "special_fully_nested_mode", "init4", "elcr", "elcr_mask")]


KVM_IOAPIC_NUM_PINS = 24


class kvm_ioapic_state(_Struct):
    _c_name_ = "struct kvm_ioapic_state"
    _fields_ = [
        ("base_address", c_uint64),
        ("ioregsel", c_uint32),
        ("id", c_uint32),
        ("irr", c_uint32),
        ("pad", c_uint32),
        # C: union { __u64 bits; struct { bitfields } fields; }; the raw 64-bit entry.
        ("redirtbl", c_uint64 * KVM_IOAPIC_NUM_PINS),
    ]


class kvm_irqchip_chip(_Union):
    _fields_ = [
        ("dummy", c_uint8 * 512),
        ("pic", kvm_pic_state),
        ("ioapic", kvm_ioapic_state),
    ]


class kvm_irqchip(_Struct):
    _c_name_ = "struct kvm_irqchip"
    _fields_ = [
        ("chip_id", c_uint32),
        ("pad", c_uint32),
        ("chip", kvm_irqchip_chip),
    ]


class kvm_pit_config(_Struct):
    _c_name_ = "struct kvm_pit_config"
    _fields_ = [
        ("flags", c_uint32),
        ("pad", c_uint32 * 15),
    ]


class kvm_pit_channel_state(_Struct):
    _c_name_ = "struct kvm_pit_channel_state"
    _fields_ = [
        ("count", c_uint32),
        ("latched_count", c_uint16),
        ("count_latched", c_uint8),
        ("status_latched", c_uint8),
        ("status", c_uint8),
        ("read_state", c_uint8),
        ("write_state", c_uint8),
        ("write_latch", c_uint8),
        ("rw_mode", c_uint8),
        ("mode", c_uint8),
        ("bcd", c_uint8),
        ("gate", c_uint8),
        ("count_load_time", c_int64),
    ]


class kvm_pit_state2(_Struct):
    _c_name_ = "struct kvm_pit_state2"
    _fields_ = [
        ("channels", kvm_pit_channel_state * 3),
        ("flags", c_uint32),
        ("reserved", c_uint32 * 9),
    ]


class kvm_clock_data(_Struct):
    _c_name_ = "struct kvm_clock_data"
    _fields_ = [
        ("clock", c_uint64),
        ("flags", c_uint32),
        ("pad0", c_uint32),
        ("realtime", c_uint64),
        ("host_tsc", c_uint64),
        ("pad", c_uint32 * 4),
    ]


class kvm_irqfd(_Struct):
    _c_name_ = "struct kvm_irqfd"
    _fields_ = [
        ("fd", c_uint32),
        ("gsi", c_uint32),
        ("flags", c_uint32),
        ("resamplefd", c_uint32),
        ("pad", c_uint8 * 16),
    ]


class kvm_ioeventfd(_Struct):
    _c_name_ = "struct kvm_ioeventfd"
    _fields_ = [
        ("datamatch", c_uint64),
        ("addr", c_uint64),
        ("len", c_uint32),
        ("fd", c_int32),
        ("flags", c_uint32),
        ("pad", c_uint8 * 36),
    ]


# --- kvm_run: the page shared with KVM_RUN ----------------------------------------------

class kvm_debug_exit_arch(_Struct):
    _c_name_ = "struct kvm_debug_exit_arch"
    _fields_ = [
        ("exception", c_uint32),
        ("pad", c_uint32),
        ("pc", c_uint64),
        ("dr6", c_uint64),
        ("dr7", c_uint64),
    ]


class kvm_guest_debug_arch(_Struct):
    _c_name_ = "struct kvm_guest_debug_arch"
    _fields_ = [("debugreg", c_uint64 * 8)]


class kvm_guest_debug(_Struct):
    _c_name_ = "struct kvm_guest_debug"
    _fields_ = [
        ("control", c_uint32),
        ("pad", c_uint32),
        ("arch", kvm_guest_debug_arch),
    ]


class kvm_run_hw(_Struct):
    _fields_ = [("hardware_exit_reason", c_uint64)]


class kvm_run_fail_entry(_Struct):
    _fields_ = [
        ("hardware_entry_failure_reason", c_uint64),
        ("cpu", c_uint32),
    ]


class kvm_run_ex(_Struct):
    _fields_ = [
        ("exception", c_uint32),
        ("error_code", c_uint32),
    ]


class kvm_run_io(_Struct):
    _fields_ = [
        ("direction", c_uint8),
        ("size", c_uint8),
        ("port", c_uint16),
        ("count", c_uint32),
        ("data_offset", c_uint64),   # relative to the start of kvm_run
    ]


class kvm_run_debug(_Struct):
    _fields_ = [("arch", kvm_debug_exit_arch)]


class kvm_run_mmio(_Struct):
    _fields_ = [
        ("phys_addr", c_uint64),
        ("data", c_uint8 * 8),
        ("len", c_uint32),
        ("is_write", c_uint8),
    ]


class kvm_run_internal(_Struct):
    _fields_ = [
        ("suberror", c_uint32),
        ("ndata", c_uint32),
        ("data", c_uint64 * 16),
    ]


class kvm_run_system_event(_Struct):
    _fields_ = [
        ("type", c_uint32),
        ("ndata", c_uint32),
        ("data", c_uint64 * 16),    # C: union { __u64 flags; __u64 data[16]; }
    ]


class kvm_run_exit(_Union):
    _fields_ = [
        ("hw", kvm_run_hw),
        ("fail_entry", kvm_run_fail_entry),
        ("ex", kvm_run_ex),
        ("io", kvm_run_io),
        ("debug", kvm_run_debug),
        ("mmio", kvm_run_mmio),
        ("internal", kvm_run_internal),
        ("system_event", kvm_run_system_event),
        ("padding", c_char * 256),
    ]


SYNC_REGS_SIZE_BYTES = 2048


class kvm_run(_Struct):
    _c_name_ = "struct kvm_run"
    _anonymous_ = ("exit",)   # C: an anonymous union of per-exit structs
    _fields_ = [
        ("request_interrupt_window", c_uint8),
        ("immediate_exit", c_uint8),
        ("padding1", c_uint8 * 6),
        ("exit_reason", c_uint32),
        ("ready_for_interrupt_injection", c_uint8),
        ("if_flag", c_uint8),
        ("flags", c_uint16),
        ("cr8", c_uint64),
        ("apic_base", c_uint64),
        ("exit", kvm_run_exit),
        ("kvm_valid_regs", c_uint64),
        ("kvm_dirty_regs", c_uint64),
        ("s", c_char * SYNC_REGS_SIZE_BYTES),   # C: union { struct kvm_sync_regs; padding }
    ]


def c_structs() -> list[type]:
    """Every class here that mirrors a named C struct (what the layout test checks)."""
    return [obj for obj in globals().values()
            if isinstance(obj, type) and issubclass(obj, (_Struct, _Union))
            and obj.__dict__.get("_c_name_")]


def field_offset(struct: type, path: str) -> int:
    """Byte offset of a dotted field path (e.g. "io.port" in kvm_run) from the struct start."""
    offset = 0
    cls = struct
    for name in path.split("."):
        anonymous = getattr(cls, "_anonymous_", ())
        for field_name, field_type, *_ in cls._fields_:
            if field_name == name:
                offset += getattr(cls, name).offset
                cls = field_type
                break
        else:
            # a member of an anonymous union/struct is reached through it
            for anon in anonymous:
                anon_type = dict((f[0], f[1]) for f in cls._fields_)[anon]
                if any(f[0] == name for f in anon_type._fields_):
                    offset += getattr(cls, anon).offset + getattr(anon_type, name).offset
                    cls = dict((f[0], f[1]) for f in anon_type._fields_)[name]
                    break
            else:
                raise AttributeError(f"{struct.__name__} has no field {path!r} ({name!r})")
    return offset
