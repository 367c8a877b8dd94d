"""Saved state of the virtio core: plain records whose defaults are the reset values.

Kept apart from the device models (as Firecracker's persist.rs files are) so that booting
does not import dataclasses. Guest memory, backends and the interrupt callable are not
state: they are passed in again on restore.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class QueueState:
    """One split virtqueue (`pyrite.devices.virtio.queue.Queue`)."""
    max_size: int = 256
    size: int = 256
    ready: bool = False
    desc_table: int = 0
    avail_ring: int = 0
    used_ring: int = 0
    next_avail: int = 0
    next_used: int = 0
    num_added: int = 0
    event_idx_enabled: bool = False


@dataclass
class VirtioDeviceState:
    """What every virtio device shares: its features and whether the driver activated it."""
    device_type: int = 0
    avail_features: int = 0
    acked_features: int = 0
    activated: bool = False


@dataclass
class MmioTransportState:
    """The virtio-mmio registers that are not the device's own, plus the queues."""
    device_status: int = 0
    device_features_sel: int = 0
    driver_features_sel: int = 0
    driver_features: int = 0
    queue_sel: int = 0
    interrupt_status: int = 0
    config_generation: int = 0
    queues: list[QueueState] = field(default_factory=list)
