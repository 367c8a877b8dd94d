"""Vcpu: a KVM vCPU fd, its mmap'd kvm_run page, register access and the run loop step.

run() is the hot path: KVM_RUN goes through ctypes (which releases the GIL, so vCPU
threads run in parallel) and the exit is decoded with precompiled struct.Struct objects
straight from the kvm_run mapping at offsets taken from the checked ctypes layout.

Stopping a vCPU blocked in KVM_RUN from another thread (see kick.py): set_immediate_exit(True),
then signal the vCPU thread with kick.kick_signal(); run() returns Interrupted(). The vCPU
thread clears immediate_exit before it runs again.
"""
from __future__ import annotations

import ctypes
import errno
import mmap
import os
import struct

from . import ioctls as io
from . import structs as s
from ._libc import call, get_errno, ioctl
from .errors import KvmError
from .exits import (
    HLT,
    INTERRUPTED,
    SHUTDOWN,
    Debug,
    FailEntry,
    InternalError,
    IoIn,
    IoOut,
    MmioRead,
    MmioWrite,
    SystemEvent,
    Unknown,
    VcpuExit,
)
from .types import CpuidEntry

_OFF = s.field_offset
OFF_IMMEDIATE_EXIT = _OFF(s.kvm_run, "immediate_exit")
OFF_EXIT_REASON = _OFF(s.kvm_run, "exit_reason")
OFF_IO = _OFF(s.kvm_run, "io")
OFF_IO_DATA_OFFSET = _OFF(s.kvm_run, "io.data_offset")
OFF_MMIO = _OFF(s.kvm_run, "mmio")
OFF_MMIO_DATA = _OFF(s.kvm_run, "mmio.data")
OFF_INTERNAL = _OFF(s.kvm_run, "internal")
OFF_FAIL_ENTRY = _OFF(s.kvm_run, "fail_entry")
OFF_SYSTEM_EVENT = _OFF(s.kvm_run, "system_event")
OFF_DEBUG = _OFF(s.kvm_run, "debug.arch")
OFF_HW = _OFF(s.kvm_run, "hw")

_U32 = struct.Struct("<I")
_IO = struct.Struct("<BBHIQ")          # direction, size, port, count, data_offset
_MMIO = struct.Struct("<Q8sIB")        # phys_addr, data[8], len, is_write
_TWO_U32 = struct.Struct("<II")        # internal / system_event: suberror|type, ndata
_FAIL_ENTRY = struct.Struct("<QI")
_DEBUG = struct.Struct("<IIQQQ")       # exception, pad, pc, dr6, dr7
_U64 = struct.Struct("<Q")
_MAX_DATA = 16                         # internal.data[16], system_event.data[16]

# Verify the hand-written formats against the ctypes layout once, at import.
assert _IO.size == ctypes.sizeof(s.kvm_run_io) and _MMIO.size <= ctypes.sizeof(s.kvm_run_mmio)
assert OFF_MMIO_DATA == OFF_MMIO + 8 and _DEBUG.size == ctypes.sizeof(s.kvm_debug_exit_arch)

# Plain ints from the exit-reason table, compared in the hot path.
_R = io.EXIT_REASONS
EXIT_IO, EXIT_MMIO, EXIT_HLT = _R["IO"], _R["MMIO"], _R["HLT"]
EXIT_SHUTDOWN, EXIT_INTR = _R["SHUTDOWN"], _R["INTR"]
EXIT_FAIL_ENTRY, EXIT_INTERNAL_ERROR = _R["FAIL_ENTRY"], _R["INTERNAL_ERROR"]
EXIT_SYSTEM_EVENT, EXIT_DEBUG = _R["SYSTEM_EVENT"], _R["DEBUG"]
EXIT_UNKNOWN = _R["UNKNOWN"]
# Module globals, not attribute lookups, in the hot path.
KVM_RUN, KVM_EXIT_IO_OUT = io.KVM_RUN, io.KVM_EXIT_IO_OUT


class Vcpu:
    """Made by Vm.create_vcpu(index); owns its fd and kvm_run mapping."""

    def __init__(self, fd: int, index: int, mmap_size: int):
        self.fd = fd
        self.index = index
        # What set_cpuid2 was last given: a snapshot saves this, since KVM_GET_CPUID2 may answer
        # with something else (seen on KVM's PVM back end: the host's own CPUID).
        self.cpuid: list[CpuidEntry] = []
        try:
            self._run = mmap.mmap(fd, mmap_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as e:
            os.close(fd)
            raise KvmError("mmap(vcpu fd)", e.errno, f"vCPU {index}: cannot map kvm_run: {e.strerror}") from None

    def __enter__(self) -> Vcpu:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            self._run.close()
            os.close(self.fd)
            self.fd = -1

    # --- running ------------------------------------------------------------------------
    def run(self) -> VcpuExit:
        """One KVM_RUN: run the guest until it exits, and say why."""
        if ioctl(self.fd, KVM_RUN, None) < 0:
            err = get_errno()
            if err == errno.EINTR:
                return INTERRUPTED
            raise KvmError("KVM_RUN", err, f"vCPU {self.index}: {os.strerror(err)}")
        kvm_run = self._run
        reason = _U32.unpack_from(kvm_run, OFF_EXIT_REASON)[0]
        if reason == EXIT_IO:
            direction, size, port, count, data_offset = _IO.unpack_from(kvm_run, OFF_IO)
            if direction == KVM_EXIT_IO_OUT:
                return IoOut(port, size, count, kvm_run[data_offset:data_offset + size * count])
            return IoIn(port, size, count)
        if reason == EXIT_MMIO:
            addr, data, length, is_write = _MMIO.unpack_from(kvm_run, OFF_MMIO)
            if is_write:
                return MmioWrite(addr, data[:length])
            return MmioRead(addr, length)
        if reason == EXIT_HLT:
            return HLT
        if reason == EXIT_INTR:
            return INTERRUPTED
        if reason == EXIT_SHUTDOWN:
            return SHUTDOWN
        if reason == EXIT_INTERNAL_ERROR:
            suberror, ndata = _TWO_U32.unpack_from(kvm_run, OFF_INTERNAL)
            return InternalError(suberror, self._u64s(OFF_INTERNAL + 8, ndata))
        if reason == EXIT_FAIL_ENTRY:
            return FailEntry(*_FAIL_ENTRY.unpack_from(kvm_run, OFF_FAIL_ENTRY))
        if reason == EXIT_SYSTEM_EVENT:
            event_type, ndata = _TWO_U32.unpack_from(kvm_run, OFF_SYSTEM_EVENT)
            # Without KVM_CAP_SYSTEM_EVENT_DATA, ndata is 0 and only `flags` (data[0]) is valid.
            return SystemEvent(event_type, self._u64s(OFF_SYSTEM_EVENT + 8, max(ndata, 1)))
        if reason == EXIT_DEBUG:
            exception, _pad, pc, dr6, dr7 = _DEBUG.unpack_from(kvm_run, OFF_DEBUG)
            return Debug(exception, pc, dr6, dr7)
        hardware_reason = _U64.unpack_from(kvm_run, OFF_HW)[0] if reason == EXIT_UNKNOWN else 0
        return Unknown(reason, hardware_reason)

    def _u64s(self, offset: int, count: int) -> tuple[int, ...]:
        count = min(count, _MAX_DATA)
        return struct.unpack_from(f"<{count}Q", self._run, offset)

    def complete_io_in(self, data: bytes) -> None:
        """Answer the IoIn exit just returned: `data` (size * count bytes) lands in the guest on the next run()."""
        direction, size, port, count, data_offset = _IO.unpack_from(self._run, OFF_IO)
        if _U32.unpack_from(self._run, OFF_EXIT_REASON)[0] != EXIT_IO or direction != io.KVM_EXIT_IO_IN:
            raise KvmError("KVM_RUN", 0, f"vCPU {self.index}: complete_io_in without a pending port read")
        if len(data) != size * count:
            raise ValueError(f"vCPU {self.index}: port {port:#x} read wants {size * count} bytes, got {len(data)}")
        self._run[data_offset:data_offset + len(data)] = data

    def complete_mmio_read(self, data: bytes) -> None:
        """Answer the MmioRead exit just returned with `length` bytes."""
        addr, _old, length, is_write = _MMIO.unpack_from(self._run, OFF_MMIO)
        if _U32.unpack_from(self._run, OFF_EXIT_REASON)[0] != EXIT_MMIO or is_write:
            raise KvmError("KVM_RUN", 0, f"vCPU {self.index}: complete_mmio_read without a pending MMIO read")
        if len(data) != length:
            raise ValueError(f"vCPU {self.index}: MMIO read at {addr:#x} wants {length} bytes, got {len(data)}")
        self._run[OFF_MMIO_DATA:OFF_MMIO_DATA + length] = data

    def set_immediate_exit(self, flag: bool) -> None:
        """While set, KVM_RUN returns EINTR at once (so a kick cannot be lost between runs)."""
        self._run[OFF_IMMEDIATE_EXIT] = 1 if flag else 0

    @property
    def immediate_exit(self) -> bool:
        return bool(self._run[OFF_IMMEDIATE_EXIT])

    # --- registers ----------------------------------------------------------------------
    def _get(self, request: int, struct_type: type):
        value = struct_type()
        call(self.fd, request, value)
        return value

    def get_regs(self) -> s.kvm_regs:
        return self._get(io.KVM_GET_REGS, s.kvm_regs)

    def set_regs(self, regs: s.kvm_regs) -> None:
        call(self.fd, io.KVM_SET_REGS, regs)

    def get_sregs(self) -> s.kvm_sregs:
        return self._get(io.KVM_GET_SREGS, s.kvm_sregs)

    def set_sregs(self, sregs: s.kvm_sregs) -> None:
        call(self.fd, io.KVM_SET_SREGS, sregs)

    def get_fpu(self) -> s.kvm_fpu:
        """x87 and SSE registers. KVM does not carry `mxcsr` through KVM_GET/SET_FPU (it reads
        back 0 and is ignored on set); MXCSR travels in get_xsave()/set_xsave()."""
        return self._get(io.KVM_GET_FPU, s.kvm_fpu)

    def set_fpu(self, fpu: s.kvm_fpu) -> None:
        call(self.fd, io.KVM_SET_FPU, fpu)

    def get_lapic(self) -> s.kvm_lapic_state:
        """The local APIC's 1 KiB register page (needs Vm.create_irqchip())."""
        return self._get(io.KVM_GET_LAPIC, s.kvm_lapic_state)

    def set_lapic(self, lapic: s.kvm_lapic_state) -> None:
        call(self.fd, io.KVM_SET_LAPIC, lapic)

    def get_mp_state(self) -> s.kvm_mp_state:
        return self._get(io.KVM_GET_MP_STATE, s.kvm_mp_state)

    def set_mp_state(self, mp_state: s.kvm_mp_state) -> None:
        call(self.fd, io.KVM_SET_MP_STATE, mp_state)

    def get_vcpu_events(self) -> s.kvm_vcpu_events:
        return self._get(io.KVM_GET_VCPU_EVENTS, s.kvm_vcpu_events)

    def set_vcpu_events(self, events: s.kvm_vcpu_events) -> None:
        call(self.fd, io.KVM_SET_VCPU_EVENTS, events)

    def get_xcrs(self) -> s.kvm_xcrs:
        return self._get(io.KVM_GET_XCRS, s.kvm_xcrs)

    def set_xcrs(self, xcrs: s.kvm_xcrs) -> None:
        call(self.fd, io.KVM_SET_XCRS, xcrs)

    def get_debugregs(self) -> s.kvm_debugregs:
        return self._get(io.KVM_GET_DEBUGREGS, s.kvm_debugregs)

    def set_debugregs(self, debugregs: s.kvm_debugregs) -> None:
        call(self.fd, io.KVM_SET_DEBUGREGS, debugregs)

    def get_xsave(self) -> s.kvm_xsave:
        return self._get(io.KVM_GET_XSAVE, s.kvm_xsave)

    def set_xsave(self, xsave: s.kvm_xsave) -> None:
        call(self.fd, io.KVM_SET_XSAVE, xsave)

    def set_guest_debug(self, control: int, debugreg: tuple[int, ...] = ()) -> None:
        """KVM_GUESTDBG_* flags (0 turns debugging off); `debugreg` DR0-DR7 for hardware breakpoints.

        Single-step and breakpoints then end run() with a Debug exit.
        """
        debug = s.kvm_guest_debug(control=control)
        for i, value in enumerate(debugreg[:8]):
            debug.arch.debugreg[i] = value
        call(self.fd, io.KVM_SET_GUEST_DEBUG, debug)

    def kvmclock_ctrl(self) -> None:
        """Tell a guest using kvmclock that it was paused (no soft-lockup alarm); EINVAL if it has no kvmclock."""
        call(self.fd, io.KVM_KVMCLOCK_CTRL)

    # --- MSRs -----------------------------------------------------------------------------
    def get_msrs(self, indices: list[int]) -> dict[int, int]:
        """{index: value} for each MSR in `indices`; KvmError names the first one KVM cannot read."""
        msrs = self._msrs([(index, 0) for index in indices])
        done = call(self.fd, io.KVM_GET_MSRS, msrs)
        if done < len(indices):
            raise KvmError("KVM_GET_MSRS", 0,
                           f"vCPU {self.index}: read {done} of {len(indices)} MSRs; "
                           f"MSR {indices[done]:#x} is not supported")
        return {entry.index: entry.data for entry in msrs.entries}

    def set_msrs(self, values: dict[int, int]) -> None:
        """Write each MSR; KvmError names the first one KVM refuses."""
        items = list(values.items())
        done = call(self.fd, io.KVM_SET_MSRS, self._msrs(items))
        if done < len(items):
            index, value = items[done]
            raise KvmError("KVM_SET_MSRS", 0,
                           f"vCPU {self.index}: set {done} of {len(items)} MSRs; "
                           f"MSR {index:#x} refused value {value:#x}")

    @staticmethod
    def _msrs(items: list[tuple[int, int]]) -> ctypes.Structure:
        msrs = s.with_entries(s.kvm_msrs, len(items))()
        msrs.nmsrs = len(items)
        for entry, (index, value) in zip(msrs.entries, items):
            entry.index = index
            entry.data = value
        return msrs

    # --- CPUID ----------------------------------------------------------------------------
    def set_cpuid2(self, entries: list[CpuidEntry]) -> None:
        cpuid = s.with_entries(s.kvm_cpuid2, len(entries))()
        cpuid.nent = len(entries)
        for dst, src in zip(cpuid.entries, entries):
            dst.function, dst.index, dst.flags = src.function, src.index, src.flags
            dst.eax, dst.ebx, dst.ecx, dst.edx = src.eax, src.ebx, src.ecx, src.edx
        call(self.fd, io.KVM_SET_CPUID2, cpuid)
        self.cpuid = list(entries)

    def get_cpuid2(self, max_entries: int = io.MAX_CPUID_ENTRIES) -> list[CpuidEntry]:
        cpuid = s.with_entries(s.kvm_cpuid2, max_entries)()
        cpuid.nent = max_entries
        call(self.fd, io.KVM_GET_CPUID2, cpuid)
        return [CpuidEntry(e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx)
                for e in cpuid.entries[:cpuid.nent]]
