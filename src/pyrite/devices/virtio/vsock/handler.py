"""virtio-vsock in the VMM: made from a pyrite.config Vsock, with Firecracker's Unix-socket
backend; host socket readiness -> backend -> device.

The event loop calls `on_fd` on its thread; the handler takes the device's lock, lets the
backend read, write or accept, then lets the device move pending packets into the guest's
rx queue. The backend asks for readiness through `set_interest` and for its connection
timeouts through `call_later`. The socket file is created at build and removed when the VM
ends; an existing file is refused, as Firecracker's bind refuses it.
"""
from __future__ import annotations

from ..handler import DeviceError, VirtioHandler


class VsockHandler(VirtioHandler):
    kind, kind_name, noun = "vsock", "virtio-vsock", "vsock device"
    polled_queues = ()            # host sockets drive it, through the backend

    @staticmethod
    def configs(resources) -> list:
        return [resources.vsock] if resources.vsock is not None else []

    @classmethod
    def create(cls, vsock) -> VsockHandler:
        from .backend import UnixBackend, VsockBackendError
        from .device import Vsock
        try:
            backend = UnixBackend(vsock.uds_path, vsock.guest_cid)
        except VsockBackendError as e:
            raise DeviceError(f"Cannot create backend for vsock device: {e.strerror} "
                              f"(uds_path {vsock.uds_path})") from None
        return cls(vsock, Vsock(vsock.guest_cid, backend))

    def attach(self, loop) -> None:
        super().attach(loop)
        self.device.backend.log = self.log
        self.device.backend.start(self)

    @staticmethod
    def state_types() -> tuple[type, type]:
        from ..persist import MmioTransportState
        from .persist import VsockState
        return VsockState, MmioTransportState

    def restored_device(self, state):
        from .device import Vsock
        return Vsock.from_state(state, self.device.backend)

    def restore(self, device_state, transport_state, memory) -> None:
        """Connections are not saved: the guest is told VIRTIO_VSOCK_EVENT_TRANSPORT_RESET, as
        Firecracker does after a restore, and reconnects."""
        super().restore(device_state, transport_state, memory)
        with self.lock:
            self.device.send_transport_reset()

    # -- the backend's watcher
    def set_interest(self, fd: int, events: int) -> None:
        self.loop.remove(fd)
        if events:
            self.loop.add(fd, lambda ready, fd=fd: self.on_fd(fd, ready), events)

    def call_later(self, delay_s: float, callback) -> None:
        self.loop.call_later(delay_s, lambda: self._locked(callback))

    def on_fd(self, fd: int, events: int) -> None:
        self._locked(lambda: self.device.backend.fd_ready(fd, events))

    def _locked(self, work) -> None:
        """`work` on the backend, then whatever it produced for the guest, under the lock."""
        with self.lock:
            if self.device.backend.closed:
                return
            work()
            if self.device.activated:
                from ..queue import VirtioError
                try:
                    self.device.process_rx()
                except VirtioError as e:       # a broken rx ring: the guest must reset the device
                    self.device.interrupt.device_needs_reset(str(e))
