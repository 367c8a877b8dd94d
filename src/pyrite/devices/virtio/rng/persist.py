"""Saved state of the entropy device (the entropy source is passed in again on restore)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..persist import VirtioDeviceState


@dataclass
class EntropyState:
    virtio: VirtioDeviceState = field(default_factory=VirtioDeviceState)
