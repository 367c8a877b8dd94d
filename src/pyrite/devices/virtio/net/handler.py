"""virtio-net in the VMM: made from a pyrite.config NetworkInterface; its TAP in the event
loop; PATCH /network-interfaces updates its rate limiters.

The TAP is watched edge-triggered: a frame that finds no receive buffer waits in the TAP
until the driver adds buffers and kicks the receive queue (which reads it then).
"""
from __future__ import annotations

import select

from ..handler import DeviceError, VirtioHandler, rate_limiter, update_rate_limiter
from . import RX_QUEUE, TX_QUEUE


class NetHandler(VirtioHandler):
    kind, kind_name, noun = "net", "virtio-net", "network interface"
    polled_queues = (TX_QUEUE,)   # a driver that transmits waits for its buffers back

    @staticmethod
    def configs(resources) -> list:
        return list(resources.network_interfaces)

    @classmethod
    def create(cls, iface) -> NetHandler:
        from .backend import NetBackendError, TapBackend
        from .device import Net, parse_mac
        what = f"network interface {iface.iface_id}"
        rx = rate_limiter(iface.rx_rate_limiter, what + " rx")
        tx = rate_limiter(iface.tx_rate_limiter, what + " tx")
        try:
            backend = TapBackend(iface.host_dev_name)
        except NetBackendError as e:
            raise DeviceError(f"{what}: {e}") from None
        mac = parse_mac(iface.guest_mac) if iface.guest_mac is not None else None
        return cls(iface, Net(backend, guest_mac=mac, mtu=iface.mtu, rx_rate_limiter=rx, tx_rate_limiter=tx))

    @property
    def id(self) -> str:
        return self.config.iface_id

    def limiters(self) -> tuple:
        return self.device.rate_limiters

    def polling_limiters(self) -> tuple:
        limiter = self.device.tx_rate_limiter
        return (limiter,) if limiter is not None else ()

    @staticmethod
    def state_types() -> tuple[type, type]:
        from ..persist import MmioTransportState
        from .persist import NetState
        return NetState, MmioTransportState

    def restored_device(self, state):
        from .device import Net
        old = self.device
        return Net.from_state(state, old.backend, rx_rate_limiter=old.rx_rate_limiter,
                              tx_rate_limiter=old.tx_rate_limiter)

    def attach(self, loop) -> None:
        super().attach(loop)
        loop.add(self.device.backend.fileno(), self.on_tap_readable, select.EPOLLIN | select.EPOLLET)

    def on_tap_readable(self, events: int) -> None:
        with self.lock:
            if self.device.activated:     # before DRIVER_OK frames wait in the TAP
                self.transport.notify_queue(RX_QUEUE)   # guest errors end as DEVICE_NEEDS_RESET there
            self._arm_limiter_timer()

    def update(self, update) -> None:
        """PATCH /network-interfaces (a NetworkInterfaceUpdate): each rate limiter's buckets."""
        with self.lock:
            for attr, config in (("rx_rate_limiter", update.rx_rate_limiter),
                                 ("tx_rate_limiter", update.tx_rate_limiter)):
                if config is not None:
                    setattr(self.device, attr, update_rate_limiter(getattr(self.device, attr), config,
                                                                   f"{self.name} {attr[:2]}"))

    def close(self) -> None:
        if self.loop is not None:
            self.loop.remove(self.device.backend.fileno())
        super().close()
