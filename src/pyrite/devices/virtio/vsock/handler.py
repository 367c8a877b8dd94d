"""The vsock device in the VMM's event loop: host socket readiness -> backend -> device.

The event loop (pyrite.vmm.event_loop.EventLoop, or anything with add(fd, handler, events)
and remove(fd)) calls `on_fd` on its thread; the handler takes the device's lock, lets the
backend read, write or accept, then lets the device move pending packets into the guest's
rx queue. The backend asks for readiness through `set_interest` and for its connection
timeouts through `call_later`.
"""
from __future__ import annotations

from ..queue import VirtioError


class VsockHandler:
    def __init__(self, device, backend, loop, lock):
        self.device = device
        self.backend = backend
        self.loop = loop
        self.lock = lock           # the slot's lock: vCPU threads touch the same device

    def start(self) -> None:
        self.backend.start(self)

    def set_interest(self, fd: int, events: int) -> None:
        self.loop.remove(fd)
        if events:
            self.loop.add(fd, lambda ready, fd=fd: self.on_fd(fd, ready), events)

    def call_later(self, delay_s: float, callback) -> None:
        self.loop.call_later(delay_s, lambda: self._locked(callback))

    def on_fd(self, fd: int, events: int) -> None:
        self._locked(lambda: self.backend.fd_ready(fd, events))

    def _locked(self, work) -> None:
        """`work` on the backend, then whatever it produced for the guest, under the lock."""
        with self.lock:
            if self.backend.closed:
                return
            work()
            if self.device.activated:
                try:
                    self.device.process_rx()
                except VirtioError as e:       # a broken rx ring: the guest must reset the device
                    self.device.interrupt.device_needs_reset(str(e))
