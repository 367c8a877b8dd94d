"""What `Vcpu.run()` returns: one frozen dataclass per kind of vCPU exit (`VcpuExit`)."""
from __future__ import annotations

import struct
from dataclasses import dataclass

from .ioctls import (
    KVM_INTERNAL_ERROR_DELIVERY_EV,
    KVM_INTERNAL_ERROR_EMULATION,
    KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES,
    KVM_INTERNAL_ERROR_SIMUL_EX,
    KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON,
    KVM_SYSTEM_EVENT_CRASH,
    KVM_SYSTEM_EVENT_RESET,
    KVM_SYSTEM_EVENT_SEV_TERM,
    KVM_SYSTEM_EVENT_SHUTDOWN,
    KVM_SYSTEM_EVENT_SUSPEND,
    KVM_SYSTEM_EVENT_WAKEUP,
    ExitReason,
)

INTERNAL_ERROR_NAMES = {
    KVM_INTERNAL_ERROR_EMULATION: "KVM_INTERNAL_ERROR_EMULATION (instruction emulation failed)",
    KVM_INTERNAL_ERROR_SIMUL_EX: "KVM_INTERNAL_ERROR_SIMUL_EX (simultaneous exceptions)",
    KVM_INTERNAL_ERROR_DELIVERY_EV: "KVM_INTERNAL_ERROR_DELIVERY_EV (exit while delivering an event)",
    KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON:
        "KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON (unexpected hardware exit)",
}

SYSTEM_EVENT_NAMES = {
    KVM_SYSTEM_EVENT_SHUTDOWN: "shutdown",
    KVM_SYSTEM_EVENT_RESET: "reset",
    KVM_SYSTEM_EVENT_CRASH: "crash",
    KVM_SYSTEM_EVENT_WAKEUP: "wakeup",
    KVM_SYSTEM_EVENT_SUSPEND: "suspend",
    KVM_SYSTEM_EVENT_SEV_TERM: "sev-term",
}


@dataclass(frozen=True, slots=True)
class IoOut:
    """`out`/`outs` to `port`: `count` items of `size` bytes, all in `data`."""
    port: int
    size: int
    count: int
    data: bytes


@dataclass(frozen=True, slots=True)
class IoIn:
    """`in`/`ins` from `port`: answer with Vcpu.complete_io_in(size * count bytes)."""
    port: int
    size: int
    count: int


@dataclass(frozen=True, slots=True)
class MmioWrite:
    addr: int
    data: bytes


@dataclass(frozen=True, slots=True)
class MmioRead:
    """Answer with Vcpu.complete_mmio_read(`length` bytes) before the next run()."""
    addr: int
    length: int


@dataclass(frozen=True, slots=True)
class Hlt:
    """The guest executed `hlt` and KVM has no in-kernel irqchip to wait on."""


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Triple fault (or equivalent): the guest cannot continue."""


@dataclass(frozen=True, slots=True)
class Interrupted:
    """KVM_RUN returned EINTR (a signal or immediate_exit), or KVM_EXIT_INTR."""


@dataclass(frozen=True, slots=True)
class InternalError:
    """KVM_EXIT_INTERNAL_ERROR: `suberror` is KVM_INTERNAL_ERROR_*, `data` its ndata u64s."""
    suberror: int
    data: tuple[int, ...]

    @property
    def instruction_bytes(self) -> bytes | None:
        """The failing instruction, when KVM reports it for an emulation failure."""
        if (self.suberror != KVM_INTERNAL_ERROR_EMULATION or len(self.data) < 3
                or not self.data[0] & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES):
            return None
        raw = struct.pack("<2Q", self.data[1], self.data[2])   # insn_size, insn_bytes[15]
        return raw[1:1 + min(raw[0], 15)]

    def __str__(self) -> str:
        name = INTERNAL_ERROR_NAMES.get(self.suberror, f"unknown suberror {self.suberror}")
        text = f"KVM_EXIT_INTERNAL_ERROR: {name}"
        insn = self.instruction_bytes
        if insn is not None:
            text += f", instruction bytes {insn.hex(' ')}"
        if self.data:
            text += ", data " + " ".join(f"{d:#x}" for d in self.data)
        return text


@dataclass(frozen=True, slots=True)
class FailEntry:
    """KVM_EXIT_FAIL_ENTRY: the hardware refused to enter the guest."""
    reason: int
    cpu: int

    def __str__(self) -> str:
        return f"KVM_EXIT_FAIL_ENTRY: hardware entry failure reason {self.reason:#x} on cpu {self.cpu}"


@dataclass(frozen=True, slots=True)
class SystemEvent:
    """KVM_EXIT_SYSTEM_EVENT: `type` is KVM_SYSTEM_EVENT_*; `data[0]` is the legacy `flags`."""
    type: int
    data: tuple[int, ...]

    @property
    def flags(self) -> int:
        return self.data[0] if self.data else 0

    def __str__(self) -> str:
        return f"KVM_EXIT_SYSTEM_EVENT: {SYSTEM_EVENT_NAMES.get(self.type, self.type)}"


@dataclass(frozen=True, slots=True)
class Debug:
    """KVM_EXIT_DEBUG (guest debugging): the exception vector, guest RIP, DR6 and DR7."""
    exception: int
    pc: int
    dr6: int
    dr7: int


@dataclass(frozen=True, slots=True)
class Unknown:
    """An exit pyrite does not decode; `reason` is kvm_run.exit_reason."""
    reason: int
    hardware_exit_reason: int = 0

    def __str__(self) -> str:
        try:
            name = f"KVM_EXIT_{ExitReason(self.reason).name}"
        except ValueError:
            name = f"exit reason {self.reason}"
        return f"unhandled {name} (hardware exit reason {self.hardware_exit_reason:#x})"


VcpuExit = (IoOut | IoIn | MmioWrite | MmioRead | Hlt | Shutdown | Interrupted
            | InternalError | FailEntry | SystemEvent | Debug | Unknown)

# Field-less exits are returned as these shared instances (no allocation per exit).
HLT = Hlt()
SHUTDOWN = Shutdown()
INTERRUPTED = Interrupted()
