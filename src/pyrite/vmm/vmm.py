"""A running microVM: its vCPU threads, event loop and devices, and its life cycle."""
from __future__ import annotations

import threading
import time

from .exit import VmExit
from .vcpu import RunControl, VcpuThread

NOT_STARTED, RUNNING, PAUSED = "Not started", "Running", "Paused"
PAUSE_TIMEOUT_S = 5


class PauseError(Exception):
    """The vCPUs did not all stop in time; the microVM keeps running."""


class LegacyDevices:
    """The microVM's fixed devices: 16550 serial (and its console), i8042 (shared by vCPU
    threads and SendCtrlAltDel under `i8042_lock`), boot timer and exit port."""
    __slots__ = ("serial", "console", "i8042", "i8042_lock", "boot_timer", "exit_port")

    def __init__(self, *, serial, console, i8042, i8042_lock, boot_timer, exit_port):
        self.serial = serial
        self.console = console
        self.i8042 = i8042
        self.i8042_lock = i8042_lock
        self.boot_timer = boot_timer
        self.exit_port = exit_port


class Vmm:
    def __init__(self, *, system, vm, memory, vcpus: list[VcpuThread], control: RunControl,
                 event_loop, legacy: LegacyDevices, closers: list, virtio: list | None = None,
                 vmgenid=None):
        self.system = system
        self.vm = vm
        self.memory = memory
        self.vcpus = vcpus
        self.control = control
        self.event_loop = event_loop
        self.legacy = legacy
        self.virtio = virtio or []   # pyrite.devices.virtio handlers (VirtioHandler), in MMIO slot order
        self.vmgenid = vmgenid       # pyrite.devices.acpi.vmgenid.VmGenId
        self._closers = closers
        self._exit: VmExit | None = None
        self._done = threading.Event()
        self.state = NOT_STARTED
        self.started_ns: int | None = None

    # life cycle -----------------------------------------------------------------------
    def start(self, paused: bool = False, seccomp: dict | None = None) -> None:
        """Run the vCPUs; with `paused` (a restored VM not yet resumed) they park before entering
        the guest until resume().

        `seccomp`: pyrite.seccomp Programs by category; the event loop installs "vmm" and each
        vCPU thread "vcpu" for itself, and the vCPUs then wait for release() before entering the
        guest, so that the caller can filter its own threads first."""
        if self.state != NOT_STARTED:
            raise RuntimeError("the microVM is already started")
        self.started_ns = time.monotonic_ns()
        if paused:
            self.control.paused = True
            for v in self.vcpus:
                v.vcpu.set_immediate_exit(True)    # the first KVM_RUN returns at once: park
        if seccomp is not None:
            self.control.released.clear()
        self.event_loop.start(seccomp["vmm"] if seccomp is not None else None)
        for v in self.vcpus:
            v.start(seccomp["vcpu"] if seccomp is not None else None)
        self.state = PAUSED if paused else RUNNING

    def release(self) -> None:
        """Let the vCPUs of a start(seccomp=...) enter the guest."""
        self.control.released.set()

    def pause(self) -> None:
        """Returns once every vCPU has left KVM_RUN and parked; PauseError (and still Running)
        when they have not within PAUSE_TIMEOUT_S."""
        control = self.control
        with control.cond:
            if self.state != RUNNING or self._done.is_set():
                return
            control.paused = True
        for v in self.vcpus:
            v.kick()
        with control.cond:
            stopped = control.cond.wait_for(lambda: control.parked == len(self.vcpus) or self._done.is_set(),
                                            timeout=PAUSE_TIMEOUT_S)
            if not stopped:
                control.paused = False
                control.cond.notify_all()
                raise PauseError(f"{len(self.vcpus) - control.parked} of {len(self.vcpus)} vCPUs did not stop "
                                 f"within {PAUSE_TIMEOUT_S} s; the microVM keeps running")
        self.state = PAUSED

    def resume(self) -> None:
        with self.control.cond:
            self.control.paused = False
            self.control.cond.notify_all()
        if self.state == PAUSED:
            self.state = RUNNING

    def finish(self, result: VmExit) -> None:
        """End the VM with `result`; the first caller wins (exit port, reset, crash, stop)."""
        with self.control.cond:
            if self._exit is not None:
                return
            self._exit = result
            self.control.stopping = True
            self.control.cond.notify_all()
            self.control.released.set()       # held vCPUs go on to see `stopping`
        for v in self.vcpus:
            if v.thread is not threading.current_thread():
                v.kick()
        self._done.set()

    def send_ctrl_alt_del(self) -> None:
        """Firecracker's SendCtrlAltDel: the key sequence on the i8042, which asks Linux to reboot."""
        with self.legacy.i8042_lock:
            self.legacy.i8042.trigger_ctrl_alt_del()

    def stop(self, reason: str = "stopped by the host") -> None:
        self.finish(VmExit("stopped", 0, reason))

    def wait(self, timeout: float | None = None) -> VmExit | None:
        """The VM's end, or None if it is still running after `timeout` seconds."""
        if self.state == NOT_STARTED and timeout is None:
            raise RuntimeError("wait() on a microVM that was never started")
        self._done.wait(timeout)
        return self._exit

    @property
    def exit(self) -> VmExit | None:
        return self._exit

    def close(self) -> None:
        """Stop everything and release KVM fds and guest memory."""
        if self.state != NOT_STARTED:
            self.finish(VmExit("stopped", 0, "closed by the host"))
            for v in self.vcpus:
                if v.thread.is_alive():
                    v.thread.join(timeout=2)
        self.event_loop.stop()   # also closes its epoll fd when it never ran
        for close in reversed(self._closers):
            try:
                close()
            except Exception:
                pass
        self._closers.clear()

    # virtio devices ----------------------------------------------------------------------
    def virtio_device(self, kind: str, device_id: str):
        """The handler of the `kind` ("block", "net", ...) device `device_id`; DeviceUpdateError if none."""
        for handler in self.virtio:
            if handler.kind == kind and handler.id == device_id:
                return handler
        from pyrite.devices.virtio.handler import DeviceUpdateError
        from .devices import DEVICE_KINDS
        noun = next((k.noun for k in DEVICE_KINDS if k.kind == kind), f"{kind} device")
        raise DeviceUpdateError(f"{noun} {device_id}: no such {noun}")

    def update_device(self, kind: str, device_id: str, update) -> None:
        """PATCH after boot: `update` is the pyrite.config update model (DriveUpdate,
        NetworkInterfaceUpdate); DeviceUpdateError names what failed, and nothing changed."""
        self.virtio_device(kind, device_id).update(update)

    def device_metrics(self) -> dict[str, dict[str, int]]:
        """Cumulative counters per virtio device: "block_<drive_id>", "net_<iface_id>", "vsock", "entropy"."""
        return {h.metrics_group: h.metrics() for h in self.virtio}

    def exit_counts(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for v in self.vcpus:
            for k, n in v.exit_counts.items():
                total[k] = total.get(k, 0) + n
        return total
