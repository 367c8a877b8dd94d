"""One thread per vCPU: KVM_RUN, then dispatch the exit to the buses or end the VM."""
from __future__ import annotations

import threading
from collections.abc import Callable

from pyrite import kvm
from pyrite.kvm import exits
from .bus import Bus
from .exit import VmExit


class RunControl:
    """State the vCPU threads share with the VMM: stop and pause requests, who is parked."""

    def __init__(self):
        self.cond = threading.Condition()
        self.stopping = False
        self.paused = False
        self.parked = 0
        self.released = threading.Event()   # cleared while the host threads install their filters
        self.released.set()


class VcpuThread:
    def __init__(self, index: int, vcpu: kvm.Vcpu, pio: Bus, mmio: Bus, control: RunControl,
                 finish: Callable[[VmExit], None], describe: Callable[[kvm.Vcpu, object], str]):
        self.index = index
        self.vcpu = vcpu
        self.pio = pio
        self.mmio = mmio
        self.control = control
        self.finish = finish
        self.describe = describe
        self.exit_counts: dict[str, int] = {}
        self.thread = threading.Thread(target=self._run, name=f"fc_vcpu {index}", daemon=True)
        self.seccomp = None   # the "vcpu" pyrite.seccomp.Program, installed by the thread itself

    def start(self, seccomp=None) -> None:
        self.seccomp = seccomp
        self.thread.start()

    def kick(self) -> None:
        """Make a blocked KVM_RUN return now (immediate_exit covers the race before entry)."""
        self.vcpu.set_immediate_exit(True)
        if self.thread.ident is not None and self.thread.is_alive():
            kvm.kick_thread(self.thread.ident)

    def _run(self) -> None:
        try:
            if self.seccomp is not None:
                self.seccomp.install()
            self.control.released.wait()   # every host thread is filtered before the guest runs
            self._loop()
        except Exception as e:  # a VMM bug or a device error must end the VM, not hang it
            self.finish(VmExit("error", 1, f"vCPU {self.index}: {type(e).__name__}: {e}"))

    def _loop(self) -> None:
        run, pio, mmio, vcpu = self.vcpu.run, self.pio, self.mmio, self.vcpu
        control = self.control
        IoOut, IoIn, MmioWrite, MmioRead = exits.IoOut, exits.IoIn, exits.MmioWrite, exits.MmioRead
        counts = self.exit_counts
        while True:
            ex = run()
            kind = type(ex)
            counts[kind.__name__] = counts.get(kind.__name__, 0) + 1
            if kind is IoOut:
                if ex.count == 1:
                    pio.write(ex.port, ex.data)
                else:
                    size = ex.size
                    for i in range(0, len(ex.data), size):
                        pio.write(ex.port, ex.data[i:i + size])
                if control.stopping:
                    return
            elif kind is IoIn:
                vcpu.complete_io_in(pio.read(ex.port, ex.size) * ex.count)
            elif kind is MmioWrite:
                mmio.write(ex.addr, ex.data)
                if control.stopping:
                    return
            elif kind is MmioRead:
                vcpu.complete_mmio_read(mmio.read(ex.addr, ex.length))
            elif kind is exits.Interrupted:
                if not self._on_kick():
                    return
            else:
                result = self._terminal_exit(ex)
                if result is not None:
                    self.finish(result)
                    return

    def _on_kick(self) -> bool:
        """Park while paused; False when the VM is stopping."""
        control = self.control
        with control.cond:
            if control.paused and not control.stopping:
                control.parked += 1
                control.cond.notify_all()
                while control.paused and not control.stopping:
                    control.cond.wait()
                control.parked -= 1
            self.vcpu.set_immediate_exit(False)
            return not control.stopping

    def _terminal_exit(self, ex) -> VmExit | None:
        if isinstance(ex, exits.Hlt):
            return VmExit("halt", 0, f"vCPU {self.index} halted with interrupts off (KVM_EXIT_HLT)")
        if isinstance(ex, exits.SystemEvent):
            kind = exits.SYSTEM_EVENT_NAMES.get(ex.type, f"type {ex.type}")
            if kind == "reset":
                return VmExit("reset", 0, f"vCPU {self.index}: guest reset (KVM_SYSTEM_EVENT_RESET)")
            if kind == "shutdown":
                return VmExit("halt", 0, f"vCPU {self.index}: guest shut down")
            return VmExit("crash", 1, f"vCPU {self.index}: system event {kind}\n{self.describe(self.vcpu, None)}")
        from .crash import describe_failure   # only a failing guest needs the crash report
        reason = {exits.Shutdown: "crash", exits.InternalError: "internal-error",
                  exits.FailEntry: "fail-entry"}.get(type(ex), "error")
        return VmExit(reason, 1, describe_failure(self.index, ex, self.describe(self.vcpu, ex)))
