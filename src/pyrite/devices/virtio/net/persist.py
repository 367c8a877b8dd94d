"""Saved state of the network device. The backend (the TAP fd) and the rate limiters are
constructor arguments passed in again on restore, as in Firecracker's net/persist.rs."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..persist import VirtioDeviceState


@dataclass
class NetState:
    virtio: VirtioDeviceState = field(default_factory=VirtioDeviceState)
    guest_mac: bytes | None = None
    mtu: int | None = None
    # An rx chain already filled with a frame, held back by the rx rate limiter: (head, length).
    deferred_rx: tuple[int, int] | None = None
