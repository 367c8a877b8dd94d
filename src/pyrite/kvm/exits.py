"""What `Vcpu.run()` returns: one immutable record class per kind of vCPU exit, all `VcpuExit`s."""
from __future__ import annotations

import struct

from .ioctls import (
    EXIT_REASONS,
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
)

EXIT_REASON_NAMES = {number: name for name, number in EXIT_REASONS.items()}

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


_set = object.__setattr__   # how the immutable records below are initialised


class VcpuExit:
    """Base of every exit: an immutable record with equality, hash and repr over its __slots__.

    (Hand-written rather than frozen dataclasses: `import dataclasses` alone costs about
    10 ms, a tenth of a microVM's start.)
    """
    __slots__ = ()

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self), self._values()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable (cannot set {name!r})")

    __delattr__ = __setattr__


class IoOut(VcpuExit):
    """`out`/`outs` to `port`: `count` items of `size` bytes, all in `data`."""
    __slots__ = ("port", "size", "count", "data")

    def __init__(self, port: int, size: int, count: int, data: bytes):
        _set(self, "port", port)
        _set(self, "size", size)
        _set(self, "count", count)
        _set(self, "data", data)


class IoIn(VcpuExit):
    """`in`/`ins` from `port`: answer with Vcpu.complete_io_in(size * count bytes)."""
    __slots__ = ("port", "size", "count")

    def __init__(self, port: int, size: int, count: int):
        _set(self, "port", port)
        _set(self, "size", size)
        _set(self, "count", count)


class MmioWrite(VcpuExit):
    __slots__ = ("addr", "data")

    def __init__(self, addr: int, data: bytes):
        _set(self, "addr", addr)
        _set(self, "data", data)


class MmioRead(VcpuExit):
    """Answer with Vcpu.complete_mmio_read(`length` bytes) before the next run()."""
    __slots__ = ("addr", "length")

    def __init__(self, addr: int, length: int):
        _set(self, "addr", addr)
        _set(self, "length", length)


class Hlt(VcpuExit):
    """The guest executed `hlt` and KVM has no in-kernel irqchip to wait on."""
    __slots__ = ()


class Shutdown(VcpuExit):
    """Triple fault (or equivalent): the guest cannot continue."""
    __slots__ = ()


class Interrupted(VcpuExit):
    """KVM_RUN returned EINTR (a signal or immediate_exit), or KVM_EXIT_INTR."""
    __slots__ = ()


class InternalError(VcpuExit):
    """KVM_EXIT_INTERNAL_ERROR: `suberror` is KVM_INTERNAL_ERROR_*, `data` its ndata u64s."""
    __slots__ = ("suberror", "data")

    def __init__(self, suberror: int, data: tuple[int, ...]):
        _set(self, "suberror", suberror)
        _set(self, "data", data)

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


class FailEntry(VcpuExit):
    """KVM_EXIT_FAIL_ENTRY: the hardware refused to enter the guest."""
    __slots__ = ("reason", "cpu")

    def __init__(self, reason: int, cpu: int):
        _set(self, "reason", reason)
        _set(self, "cpu", cpu)

    def __str__(self) -> str:
        return f"KVM_EXIT_FAIL_ENTRY: hardware entry failure reason {self.reason:#x} on cpu {self.cpu}"


class SystemEvent(VcpuExit):
    """KVM_EXIT_SYSTEM_EVENT: `type` is KVM_SYSTEM_EVENT_*; `data[0]` is the legacy `flags`."""
    __slots__ = ("type", "data")

    def __init__(self, type: int, data: tuple[int, ...]):
        _set(self, "type", type)
        _set(self, "data", data)

    @property
    def flags(self) -> int:
        return self.data[0] if self.data else 0

    def __str__(self) -> str:
        return f"KVM_EXIT_SYSTEM_EVENT: {SYSTEM_EVENT_NAMES.get(self.type, self.type)}"


class Debug(VcpuExit):
    """KVM_EXIT_DEBUG (guest debugging): the exception vector, guest RIP, DR6 and DR7."""
    __slots__ = ("exception", "pc", "dr6", "dr7")

    def __init__(self, exception: int, pc: int, dr6: int, dr7: int):
        _set(self, "exception", exception)
        _set(self, "pc", pc)
        _set(self, "dr6", dr6)
        _set(self, "dr7", dr7)


class Unknown(VcpuExit):
    """An exit pyrite does not decode; `reason` is kvm_run.exit_reason."""
    __slots__ = ("reason", "hardware_exit_reason")

    def __init__(self, reason: int, hardware_exit_reason: int = 0):
        _set(self, "reason", reason)
        _set(self, "hardware_exit_reason", hardware_exit_reason)

    def __str__(self) -> str:
        name = EXIT_REASON_NAMES.get(self.reason)
        name = f"KVM_EXIT_{name}" if name else f"exit reason {self.reason}"
        return f"unhandled {name} (hardware exit reason {self.hardware_exit_reason:#x})"


# Field-less exits are returned as these shared instances (no allocation per exit).
HLT = Hlt()
SHUTDOWN = Shutdown()
INTERRUPTED = Interrupted()
