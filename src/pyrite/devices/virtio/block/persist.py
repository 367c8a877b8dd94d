"""Saved state of the block device. The backend (file, read-only flag as opened) is a
constructor argument passed in again on restore, as in Firecracker's persist.rs."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..persist import VirtioDeviceState


@dataclass
class BlockState:
    virtio: VirtioDeviceState = field(default_factory=VirtioDeviceState)
    read_only: bool = False
    disk_id: bytes = b""
    capacity: int = 0             # in 512-byte sectors, as the guest last saw it
