"""Saved state of the vsock device. Connections are not saved: as in Firecracker, a restored
device tells the guest VIRTIO_VSOCK_EVENT_TRANSPORT_RESET (Vsock.send_transport_reset) and
starts with none. The backend (uds_path) is a constructor argument passed in on restore."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..persist import VirtioDeviceState


@dataclass
class VsockState:
    virtio: VirtioDeviceState = field(default_factory=VirtioDeviceState)
    guest_cid: int = 3
