"""Test-side virtio drivers: they write rings and registers the way a guest would.

`RingDriver` lays out one split virtqueue in a GuestMemory (descriptor table, available ring,
used ring) and adds chains, publishes them and reads the used ring back. `MmioDriver` runs
the virtio-mmio initialisation sequence of spec 3.1.1 / 4.2.3 against an `MmioTransport`.
Both use plain struct packing over guest memory, independent of the code under test.
"""
from __future__ import annotations

import struct

from pyrite.devices.virtio import mmio
from pyrite.devices.virtio.device import ACKNOWLEDGE, DRIVER, DRIVER_OK, FEATURES_OK
from pyrite.devices.virtio.queue import Queue

F_NEXT, F_WRITE, F_INDIRECT = 1, 2, 4


class RingDriver:
    """One split virtqueue of `size` entries at `base`, with a bump allocator for buffers."""

    def __init__(self, mem, size: int = 16, base: int = 0x1000, data: int = 0x20000):
        self.mem = mem
        self.size = size
        self.desc = base
        self.avail = base + 16 * size
        self.used = (self.avail + 6 + 2 * size + 3) & ~3
        self.end = self.used + 6 + 8 * size
        mem.write(base, bytes(self.end - base))
        self.avail_idx = 0
        self.used_seen = 0
        self.next_desc = 0
        self.data = self.data_start = data

    def queue(self, event_idx: bool = False, max_size: int | None = None, name: str = "test queue") -> Queue:
        q = Queue(max_size or self.size, name)
        q.set_size(self.size)
        q.set_desc_table(self.desc)
        q.set_avail_ring(self.avail)
        q.set_used_ring(self.used)
        q.event_idx_enabled = event_idx
        q.ready = True
        return q

    def alloc(self, length: int, fill: bytes | None = None) -> int:
        addr = self.data
        self.data += (length + 15) & ~15 or 16
        if fill is not None:
            self.mem.write(addr, fill)
        return addr

    def write_desc(self, index: int, addr: int, length: int, flags: int = 0, next: int = 0,
                   table: int | None = None) -> None:
        base = self.desc if table is None else table
        self.mem.write(base + 16 * index, struct.pack("<QIHH", addr, length, flags, next))

    def add_chain(self, buffers: list[tuple[int, int, bool]]) -> int:
        """Chain (addr, length, device_writable) buffers in free descriptors; returns the head."""
        indices = [(self.next_desc + i) % self.size for i in range(len(buffers))]
        self.next_desc = (self.next_desc + len(buffers)) % self.size
        for i, (addr, length, writable) in enumerate(buffers):
            last = i == len(buffers) - 1
            flags = (0 if last else F_NEXT) | (F_WRITE if writable else 0)
            self.write_desc(indices[i], addr, length, flags, 0 if last else indices[i + 1])
        return indices[0]

    def add_indirect_chain(self, buffers: list[tuple[int, int, bool]]) -> int:
        """The buffers in an indirect table, referenced by one descriptor of the ring."""
        table = self.alloc(16 * len(buffers))
        for i, (addr, length, writable) in enumerate(buffers):
            last = i == len(buffers) - 1
            flags = (0 if last else F_NEXT) | (F_WRITE if writable else 0)
            self.write_desc(i, addr, length, flags, 0 if last else i + 1, table=table)
        head = self.next_desc
        self.next_desc = (self.next_desc + 1) % self.size
        self.write_desc(head, table, 16 * len(buffers), F_INDIRECT)
        return head

    def publish(self, *heads: int) -> None:
        for head in heads:
            self.mem.write(self.avail + 4 + 2 * (self.avail_idx % self.size), struct.pack("<H", head))
            self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        self.set_avail_idx(self.avail_idx)

    def set_avail_idx(self, idx: int) -> None:
        self.mem.write(self.avail + 2, struct.pack("<H", idx & 0xFFFF))

    def set_avail_flags(self, flags: int) -> None:
        self.mem.write(self.avail, struct.pack("<H", flags))

    def set_used_event(self, idx: int) -> None:
        self.mem.write(self.avail + 4 + 2 * self.size, struct.pack("<H", idx & 0xFFFF))

    def avail_event(self) -> int:
        return struct.unpack("<H", self.mem.read(self.used + 4 + 8 * self.size, 2))[0]

    def used_idx(self) -> int:
        return struct.unpack("<H", self.mem.read(self.used + 2, 2))[0]

    def take_used(self) -> list[tuple[int, int]]:
        """Used entries (id, len) the device added since the last call."""
        out = []
        idx = self.used_idx()
        while self.used_seen != idx:
            slot = self.used + 4 + 8 * (self.used_seen % self.size)
            out.append(struct.unpack("<II", self.mem.read(slot, 8)))
            self.used_seen = (self.used_seen + 1) & 0xFFFF
        return out


class MmioDriver:
    """Register-level virtio-mmio driver over a transport."""

    def __init__(self, transport: mmio.MmioTransport):
        self.t = transport

    def read32(self, offset: int) -> int:
        return int.from_bytes(self.t.read(offset, 4), "little")

    def write32(self, offset: int, value: int) -> None:
        self.t.write(offset, value.to_bytes(4, "little"))

    def status(self) -> int:
        return self.read32(mmio.STATUS)

    def add_status(self, bit: int) -> None:
        self.write32(mmio.STATUS, self.status() | bit)

    def device_features(self) -> int:
        features = 0
        for sel in (0, 1):
            self.write32(mmio.DEVICE_FEATURES_SEL, sel)
            features |= self.read32(mmio.DEVICE_FEATURES) << (32 * sel)
        return features

    def write_driver_features(self, features: int) -> None:
        for sel in (0, 1):
            self.write32(mmio.DRIVER_FEATURES_SEL, sel)
            self.write32(mmio.DRIVER_FEATURES, (features >> (32 * sel)) & 0xFFFFFFFF)

    def setup_queue(self, index: int, ring: RingDriver) -> None:
        """4.2.3.2: select, check not in use, read max, set size and addresses, set ready."""
        self.write32(mmio.QUEUE_SEL, index)
        assert self.read32(mmio.QUEUE_READY) == 0
        assert self.read32(mmio.QUEUE_NUM_MAX) >= ring.size
        self.write32(mmio.QUEUE_NUM, ring.size)
        for low, addr in ((mmio.QUEUE_DESC_LOW, ring.desc), (mmio.QUEUE_DRIVER_LOW, ring.avail),
                          (mmio.QUEUE_DEVICE_LOW, ring.used)):
            self.write32(low, addr & 0xFFFFFFFF)
            self.write32(low + 4, addr >> 32)
        self.write32(mmio.QUEUE_READY, 1)

    def initialise(self, rings: dict[int, RingDriver], features: int | None = None) -> int:
        """3.1.1 steps 1-8; returns the negotiated features (all offered ones by default)."""
        self.write32(mmio.STATUS, 0)
        assert self.status() == 0
        self.add_status(ACKNOWLEDGE)
        self.add_status(DRIVER)
        offered = self.device_features()
        features = offered if features is None else features
        self.write_driver_features(features)
        self.add_status(FEATURES_OK)
        if not self.status() & FEATURES_OK:
            raise RuntimeError("device refused FEATURES_OK")
        for index, ring in rings.items():
            self.setup_queue(index, ring)
        self.add_status(DRIVER_OK)
        return features

    def kick(self, index: int) -> None:
        self.write32(mmio.QUEUE_NOTIFY, index)

    def ack_interrupts(self) -> int:
        pending = self.read32(mmio.INTERRUPT_STATUS)
        self.write32(mmio.INTERRUPT_ACK, pending)
        return pending
