import pytest
from virtio_driver import F_WRITE, MmioDriver, RingDriver

from pyrite.devices.virtio import mmio
from pyrite.devices.virtio.device import (ACKNOWLEDGE, DEVICE_NEEDS_RESET, DRIVER, DRIVER_OK, FAILED,
                                          FEATURES_OK, TYPE_RNG, VIRTIO_F_VERSION_1,
                                          VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC)
from pyrite.devices.virtio.rng.device import Entropy
from pyrite.memory import GuestMemory


class Rig:
    """An entropy device behind a transport, a ring for its queue, and a register-level driver."""

    def __init__(self, source=lambda n: bytes(i % 251 for i in range(n))):
        self.mem = GuestMemory([(0, 1 << 20)])
        self.interrupts = 0
        self.log = []
        self.device = Entropy(source=source)
        self.t = mmio.MmioTransport(self.device, self.mem, self._irq, log=self.log.append)
        self.drv = MmioDriver(self.t)
        self.ring = RingDriver(self.mem, size=16)

    def _irq(self):
        self.interrupts += 1

    def request(self, length):
        addr = self.ring.alloc(length)
        self.ring.publish(self.ring.add_chain([(addr, length, True)]))
        return addr


@pytest.fixture
def rig():
    r = Rig()
    yield r
    r.mem.close()


def test_identification_registers(rig):
    d = rig.drv
    assert d.read32(mmio.MAGIC_VALUE) == 0x74726976
    assert rig.t.read(mmio.MAGIC_VALUE, 4) == b"virt"
    assert d.read32(mmio.VERSION_REG) == 2
    assert d.read32(mmio.DEVICE_ID) == TYPE_RNG == 4
    assert d.read32(mmio.VENDOR_ID_REG) == 0


def test_device_features_offer_version_1_event_idx_and_indirect(rig):
    features = rig.drv.device_features()
    for bit in (VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC):
        assert features >> bit & 1
    rig.drv.write32(mmio.DEVICE_FEATURES_SEL, 2)
    assert rig.drv.read32(mmio.DEVICE_FEATURES) == 0


def test_full_initialisation_then_a_request(rig):
    negotiated = rig.drv.initialise({0: rig.ring})
    assert rig.drv.status() == ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK
    assert rig.device.activated and rig.device.acked_features == negotiated
    addr = rig.request(300)
    rig.drv.kick(0)
    assert rig.ring.take_used() == [(0, 300)]
    assert rig.mem.read(addr, 300) == bytes(i % 251 for i in range(300))
    assert rig.interrupts == 1
    assert rig.drv.ack_interrupts() == mmio.INT_VRING
    assert rig.drv.read32(mmio.INTERRUPT_STATUS) == 0


def test_event_idx_suppresses_interrupts_until_used_event(rig):
    rig.drv.initialise({0: rig.ring})            # EVENT_IDX accepted
    rig.ring.set_used_event(1)                   # interrupt when the second buffer is used
    rig.request(4)
    rig.drv.kick(0)
    assert rig.interrupts == 0 and rig.ring.take_used() == [(0, 4)]
    assert rig.ring.avail_event() == 1           # device asked to be kicked for entry 1
    rig.request(4)
    rig.drv.kick(0)
    assert rig.interrupts == 1


def test_features_ok_refused_for_features_the_device_does_not_offer(rig):
    with pytest.raises(RuntimeError, match="refused FEATURES_OK"):
        rig.drv.initialise({0: rig.ring}, features=(1 << VIRTIO_F_VERSION_1) | (1 << 5))
    assert rig.drv.status() == ACKNOWLEDGE | DRIVER
    assert any("outside the offered" in m for m in rig.log)


def test_features_ok_refused_without_version_1(rig):
    with pytest.raises(RuntimeError):
        rig.drv.initialise({0: rig.ring}, features=1 << VIRTIO_RING_F_EVENT_IDX)


def test_status_steps_cannot_be_skipped_or_cleared(rig):
    d = rig.drv
    d.write32(mmio.STATUS, ACKNOWLEDGE | FEATURES_OK)
    assert d.status() == 0
    d.add_status(ACKNOWLEDGE)
    d.write32(mmio.STATUS, ACKNOWLEDGE | DRIVER | DRIVER_OK)   # DRIVER_OK before FEATURES_OK
    assert d.status() == ACKNOWLEDGE
    d.add_status(DRIVER)
    d.write32(mmio.STATUS, DRIVER)                             # would clear ACKNOWLEDGE
    assert d.status() == ACKNOWLEDGE | DRIVER


def test_failed_is_sticky_until_reset(rig):
    d = rig.drv
    d.add_status(ACKNOWLEDGE)
    d.add_status(FAILED)
    d.add_status(DRIVER)
    assert d.status() == ACKNOWLEDGE | FAILED
    d.write32(mmio.STATUS, 0)
    assert d.status() == 0


def test_reset_clears_interrupts_queue_ready_and_device(rig):
    rig.drv.initialise({0: rig.ring})
    rig.request(4)
    rig.drv.kick(0)
    assert rig.drv.read32(mmio.INTERRUPT_STATUS)
    rig.drv.write32(mmio.STATUS, 0)
    assert rig.drv.status() == 0
    assert rig.drv.read32(mmio.INTERRUPT_STATUS) == 0
    rig.drv.write32(mmio.QUEUE_SEL, 0)
    assert rig.drv.read32(mmio.QUEUE_READY) == 0
    assert not rig.device.activated and rig.device.acked_features == 0
    # And the device can be brought up again on a fresh ring.
    rig.ring = RingDriver(rig.mem, size=16, base=0x8000, data=0x40000)
    rig.drv.initialise({0: rig.ring})
    rig.request(8)
    rig.drv.kick(0)
    assert rig.ring.take_used() == [(0, 8)]


def test_queue_registers_only_between_features_ok_and_driver_ok(rig):
    d = rig.drv
    d.add_status(ACKNOWLEDGE)
    d.add_status(DRIVER)
    d.write32(mmio.QUEUE_NUM, 8)
    assert rig.t.queues[0].size == 256                     # ignored before FEATURES_OK
    rig.drv.initialise({0: rig.ring})
    d.write32(mmio.QUEUE_NUM, 8)
    assert rig.t.queues[0].size == 16                      # ignored after DRIVER_OK
    assert any("QueueNum written in status" in m for m in rig.log)


def test_invalid_queue_size_and_missing_queue(rig):
    d = rig.drv
    d.add_status(ACKNOWLEDGE)
    d.add_status(DRIVER)
    d.write_driver_features(1 << VIRTIO_F_VERSION_1)
    d.add_status(FEATURES_OK)
    d.write32(mmio.QUEUE_NUM, 12)
    assert rig.t.queues[0].size == 256 and any("not a power of two" in m for m in rig.log)
    d.write32(mmio.QUEUE_DESC_LOW, 0x1008)
    assert rig.t.queues[0].desc_table == 0
    d.write32(mmio.QUEUE_SEL, 1)
    assert d.read32(mmio.QUEUE_NUM_MAX) == 0 and d.read32(mmio.QUEUE_READY) == 0


def test_64_bit_ring_addresses_are_assembled_from_two_halves(rig):
    d = rig.drv
    d.add_status(ACKNOWLEDGE)
    d.add_status(DRIVER)
    d.write_driver_features(1 << VIRTIO_F_VERSION_1)
    d.add_status(FEATURES_OK)
    d.write32(mmio.QUEUE_DEVICE_LOW, 0x2004)
    d.write32(mmio.QUEUE_DEVICE_HIGH, 0x1)
    assert rig.t.queues[0].used_ring == 0x1_0000_2004


def test_control_registers_take_only_aligned_32_bit_accesses(rig):
    assert rig.t.read(mmio.MAGIC_VALUE, 2) == b"\0\0"
    rig.t.write(mmio.STATUS, b"\x01")
    rig.t.write(mmio.STATUS + 2, b"\x01\0\0\0")
    assert rig.drv.status() == 0
    assert len(rig.log) == 3


def test_notification_before_driver_ok_is_ignored(rig):
    rig.drv.kick(0)
    rig.t.notify_queue(7)
    assert rig.drv.status() == 0 and rig.interrupts == 0
    assert any("queue 0 notified in status 0x0" in m for m in rig.log)


def test_ring_outside_memory_at_driver_ok_needs_reset(rig):
    rig.ring.used = (1 << 20) - 8                      # the used ring would run off the end
    rig.drv.initialise({0: rig.ring})
    assert rig.drv.status() & DEVICE_NEEDS_RESET
    assert not rig.device.activated
    assert rig.drv.read32(mmio.INTERRUPT_STATUS) == mmio.INT_CONFIG and rig.interrupts == 1
    assert any("used ring" in m and "outside guest memory" in m for m in rig.log)


def test_guest_error_sets_device_needs_reset_and_raises_config_interrupt(rig):
    rig.drv.initialise({0: rig.ring})
    rig.ring.set_avail_idx(100)                        # 100 entries ahead of a 16-entry queue
    rig.drv.kick(0)
    assert rig.drv.status() & DEVICE_NEEDS_RESET
    assert rig.drv.read32(mmio.INTERRUPT_STATUS) == mmio.INT_CONFIG
    assert any("entropy queue 0: avail->idx 100" in m for m in rig.log)
    rig.drv.kick(0)                                    # ignored until reset
    assert rig.interrupts == 1
    rig.drv.write32(mmio.STATUS, 0)
    assert rig.drv.status() == 0


def test_bad_chain_is_returned_empty_and_logged(rig):
    rig.drv.initialise({0: rig.ring})
    rig.ring.write_desc(0, 1 << 40, 16, F_WRITE)
    rig.ring.publish(0)
    rig.drv.kick(0)
    assert rig.ring.take_used() == [(0, 0)]
    assert not rig.drv.status() & DEVICE_NEEDS_RESET
    assert any("outside guest memory" in m for m in rig.log)


def test_readable_buffer_in_entropy_queue_gets_nothing(rig):
    rig.drv.initialise({0: rig.ring})
    addr = rig.ring.alloc(8, b"unchanged")
    rig.ring.publish(rig.ring.add_chain([(addr, 8, False)]))
    rig.drv.kick(0)
    assert rig.ring.take_used() == [(0, 0)] and rig.mem.read(addr, 8) == b"unchange"


def test_device_bug_is_contained():
    r = Rig(source=lambda n: 1 / 0)
    r.drv.initialise({0: r.ring})
    r.request(4)
    r.drv.kick(0)
    assert r.drv.status() & DEVICE_NEEDS_RESET
    assert any("internal error ZeroDivisionError" in m for m in r.log)
    r.mem.close()


def test_config_space_is_empty_for_entropy_and_writes_are_refused(rig):
    rig.drv.initialise({0: rig.ring})
    assert rig.t.read(mmio.CONFIG, 4) == bytes(4)
    rig.t.write(mmio.CONFIG, b"\1\2\3\4")
    assert any("read-only" in m for m in rig.log)


def test_state_round_trip_keeps_the_device_running(rig):
    rig.drv.initialise({0: rig.ring})
    rig.request(4)
    rig.drv.kick(0)
    assert rig.ring.take_used() == [(0, 4)]
    saved_transport, saved_device = rig.t.state(), rig.device.state()

    device = Entropy.from_state(saved_device, source=lambda n: b"\xaa" * n)
    t = mmio.MmioTransport.from_state(saved_transport, device, rig.mem, rig._irq, log=rig.log.append)
    assert t.state() == saved_transport and device.activated
    addr = rig.request(4)
    t.notify_queue(0)
    assert rig.ring.take_used() == [(1, 4)] and rig.mem.read(addr, 4) == b"\xaa" * 4


@pytest.mark.parametrize("addr,irq,size,expected", [
    (0xD0000000, 5, 0x1000, "virtio_mmio.device=4K@0xd0000000:5"),
    (0xC0001000, 6, 0x1000, "virtio_mmio.device=4K@0xc0001000:6"),
    (0x10000000, 7, 1 << 20, "virtio_mmio.device=1M@0x10000000:7"),
    (0x1000, 8, 100, "virtio_mmio.device=100@0x1000:8"),
])
def test_kernel_command_line_fragment(addr, irq, size, expected):
    assert mmio.cmdline_fragment(addr, irq, size) == expected


def test_kernel_command_line_for_several_devices():
    assert mmio.cmdline_fragments([(0xD0000000, 5), (0xD0001000, 6)]) == \
        "virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6"


def test_register_table_matches_the_spec_offsets():
    names = {name: off for off, (name, _) in mmio.REGISTERS.items()}
    assert names["QueueNotify"] == 0x50 and names["InterruptACK"] == 0x64
    assert names["Status"] == 0x70 and names["QueueDeviceHigh"] == 0xA4
    assert names["ConfigGeneration"] == 0xFC
    assert all(off % 4 == 0 and off < mmio.CONFIG for off in mmio.REGISTERS)


def test_entropy_source_short_of_bytes_fills_part_of_the_buffer():
    r = Rig(source=lambda n: b"\x42" * min(n, 10))
    r.drv.initialise({0: r.ring})
    a, b = r.ring.alloc(16), r.ring.alloc(16)
    r.ring.publish(r.ring.add_chain([(a, 16, True), (b, 16, True)]))
    r.drv.kick(0)
    assert r.ring.take_used() == [(0, 10)]          # 5.4.6.1: MAY use less than the whole buffer
    assert r.mem.read(a, 16) == b"\x42" * 10 + bytes(6)
    r.mem.close()
