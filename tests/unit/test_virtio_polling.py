"""Notification suppression while the VMM polls a ring (virtio 1.2 2.7.7, 2.7.10), the
transport's polling entry points, and the event loop's pollers."""
import struct
import threading
import time

import pytest
from virtio_driver import MmioDriver, RingDriver

from pyrite.devices.virtio import mmio
from pyrite.devices.virtio import queue as vq
from pyrite.devices.virtio.rng.device import Entropy
from pyrite.memory import GuestMemory
from pyrite.vmm.event_loop import EventLoop


@pytest.fixture
def mem():
    m = GuestMemory([(0, 1 << 20)])
    yield m
    m.close()


def used_flags(d: RingDriver) -> int:
    return struct.unpack("<H", d.mem.read(d.used, 2))[0]


def test_suppression_sets_no_notify_and_enabling_clears_it_and_reports_waiting_chains(mem):
    d = RingDriver(mem)
    q = d.queue()
    q.suppress_notifications(mem)
    assert used_flags(d) == vq.VIRTQ_USED_F_NO_NOTIFY
    assert not q.enable_notifications(mem)               # nothing was made available meanwhile
    assert used_flags(d) == 0
    q.suppress_notifications(mem)
    d.publish(d.add_chain([(d.alloc(4), 4, True)]))       # the driver adds a chain and, told not to, does not kick
    assert q.enable_notifications(mem)                   # so the device must serve it now
    assert used_flags(d) == 0 and q.pop(mem) is not None


def test_with_event_idx_suppression_leaves_avail_event_behind(mem):
    d = RingDriver(mem)
    q = d.queue(event_idx=True)
    d.publish(d.add_chain([(d.alloc(4), 4, True)]))
    q.suppress_notifications(mem)
    assert q.pop_or_enable_notification(mem) is not None
    assert q.pop_or_enable_notification(mem) is None
    assert d.avail_event() == 0                          # not moved: the driver has passed it, no kick
    assert used_flags(d) == 0                            # flags are not the mechanism with EVENT_IDX
    assert not q.enable_notifications(mem)
    assert d.avail_event() == 1                          # kick me at the next entry


def test_used_index_is_published_with_the_element(mem):
    d = RingDriver(mem, size=4)
    q = d.queue()
    for n in range(300):                                 # past 255: both bytes of used->idx change
        d.publish(d.add_chain([(d.alloc(4), 4, True)]))
        q.add_used(mem, q.pop(mem).head, n % 5)
        assert d.used_idx() == n + 1
        assert d.take_used()[0][1] == n % 5
        d.data = d.data_start


def entropy_transport(mem):
    device = Entropy(source=lambda n: b"\x5a" * n)
    t = mmio.MmioTransport(device, mem, lambda: None, log=lambda message: None)
    ring = RingDriver(mem, size=8)
    MmioDriver(t).initialise({0: ring}, features=1 << 32)      # VERSION_1 only: flags-based suppression
    return device, t, ring


def test_transport_polls_a_queue_without_kicks(mem):
    device, t, ring = entropy_transport(mem)
    t.suppress_notifications(0)
    assert used_flags(ring) == vq.VIRTQ_USED_F_NO_NOTIFY
    assert not t.poll_queue(0)                           # nothing available
    buf = ring.alloc(16)
    ring.publish(ring.add_chain([(buf, 16, True)]))
    assert t.poll_queue(0)
    assert ring.take_used() == [(0, 16)] and mem.read(buf, 16) == b"\x5a" * 16
    assert not t.enable_notifications(0)
    assert used_flags(ring) == 0


def test_transport_does_not_poll_a_device_that_needs_reset(mem):
    device, t, ring = entropy_transport(mem)
    t.suppress_notifications(0)
    ring.set_avail_idx(100)                              # more than the queue size ahead: a guest error
    assert t.poll_queue(0)
    assert t.status & mmio.DEVICE_NEEDS_RESET
    assert not t.poll_queue(0)
    assert not t.enable_notifications(0)


class FakePoller:
    """Has work for the first `work` polls; records the calls the loop makes."""

    def __init__(self, work: int, found_when_ending: int = 0):
        self.work = work
        self.found_when_ending = found_when_ending
        self.calls: list[str] = []
        self.done = threading.Event()

    def begin_polling(self):
        self.calls.append("begin")

    def poll(self) -> bool:
        if self.work:
            self.work -= 1
            self.calls.append("work")
            return True
        return False

    def end_polling(self) -> bool:
        self.calls.append("end")
        if self.found_when_ending:
            self.found_when_ending -= 1
            self.work += 1
            return True
        self.done.set()
        return False


def test_event_loop_polls_until_idle_then_ends_polling():
    loop = EventLoop()
    poller = FakePoller(work=3, found_when_ending=1)
    try:
        loop.call_later(0, lambda: loop.start_polling(poller))
        loop.start()
        assert poller.done.wait(2)
    finally:
        loop.stop()
    # begin once; work until idle; the chain found when ending keeps it polled; then it ends.
    assert poller.calls == ["begin", "work", "work", "work", "end", "work", "end"]


def test_event_loop_runs_timers_while_polling():
    loop = EventLoop()
    fired = threading.Event()

    class Busy(FakePoller):
        def poll(self):
            return not fired.is_set()        # always work, until the timer fired

    poller = Busy(work=0)
    try:
        loop.call_later(0, lambda: loop.start_polling(poller))
        loop.start()
        time.sleep(0.01)
        loop.call_later(0.001, fired.set)
        assert fired.wait(2)
        assert poller.done.wait(2)
    finally:
        loop.stop()
