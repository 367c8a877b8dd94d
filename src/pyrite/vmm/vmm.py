"""A running microVM: its vCPU threads, event loop and devices, and its life cycle."""
from __future__ import annotations

import threading
import time

from .exit import VmExit
from .vcpu import RunControl, VcpuThread

NOT_STARTED, RUNNING, PAUSED = "Not started", "Running", "Paused"


class Vmm:
    def __init__(self, *, system, vm, memory, vcpus: list[VcpuThread], control: RunControl,
                 event_loop, devices: dict, closers: list, virtio: list | None = None):
        self.system = system
        self.vm = vm
        self.memory = memory
        self.vcpus = vcpus
        self.control = control
        self.event_loop = event_loop
        self.devices = devices
        self.virtio = virtio or []   # pyrite.vmm.devices.VirtioSlot, in MMIO slot order
        self._closers = closers
        self._exit: VmExit | None = None
        self._done = threading.Event()
        self.state = NOT_STARTED
        self.started_ns: int | None = None

    # life cycle -----------------------------------------------------------------------
    def start(self) -> None:
        if self.state != NOT_STARTED:
            raise RuntimeError("the microVM is already started")
        self.started_ns = time.monotonic_ns()
        self.event_loop.start()
        for v in self.vcpus:
            v.start()
        self.state = RUNNING

    def pause(self) -> None:
        """Returns once every vCPU has left KVM_RUN and parked."""
        control = self.control
        with control.cond:
            if self.state != RUNNING or self._done.is_set():
                return
            control.paused = True
        for v in self.vcpus:
            v.kick()
        with control.cond:
            control.cond.wait_for(lambda: control.parked == len(self.vcpus) or self._done.is_set(), timeout=5)
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
        for v in self.vcpus:
            if v.thread is not threading.current_thread():
                v.kick()
        self._done.set()

    def send_ctrl_alt_del(self) -> None:
        """Firecracker's SendCtrlAltDel: the key sequence on the i8042, which asks Linux to reboot."""
        with self.devices["i8042_lock"]:
            self.devices["i8042"].trigger_ctrl_alt_del()

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
    def _drive_slot(self, drive_id: str):
        for slot in self.virtio:
            if slot.kind == "block" and slot.id == drive_id:
                return slot
        from .devices import DeviceUpdateError
        raise DeviceUpdateError(f"drive {drive_id}: no such drive")

    def update_drive(self, drive_id: str, path: str | None = None, rate_limiter: dict | None = None) -> None:
        """PATCH /drives after boot: swap the backing file (the guest gets a configuration change
        interrupt and the new capacity) and/or update the rate limiter's buckets."""
        slot = self._drive_slot(drive_id)
        if path is not None:
            slot.update_backend(path)
        if rate_limiter is not None:
            slot.update_rate_limiter(rate_limiter)

    def update_net(self, iface_id: str, rx_rate_limiter: dict | None = None,
                   tx_rate_limiter: dict | None = None) -> None:
        """PATCH /network-interfaces after boot: update the rx and/or tx rate limiter's buckets."""
        for slot in self.virtio:
            if slot.kind == "net" and slot.id == iface_id:
                slot.update_rate_limiters(rx_rate_limiter, tx_rate_limiter)
                return
        from .devices import DeviceUpdateError
        raise DeviceUpdateError(f"network interface {iface_id}: no such interface")

    def device_metrics(self) -> dict[str, dict[str, int]]:
        """Cumulative counters per virtio device: "block_<drive_id>", "net_<iface_id>" and "entropy"."""
        names = {"block": "block_{}", "net": "net_{}"}
        return {names.get(s.kind, s.kind).format(s.id): s.metrics() for s in self.virtio}

    def exit_counts(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for v in self.vcpus:
            for k, n in v.exit_counts.items():
                total[k] = total.get(k, 0) + n
        return total
