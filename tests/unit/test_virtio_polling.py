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
from pyrite.vmm import event_loop as el
from pyrite.vmm.event_loop import ContentionGuard, EventLoop, PollPolicy


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


def uncontended_loop() -> EventLoop:
    """A loop that never sees contention, whatever else runs on the test machine."""
    loop = EventLoop()
    loop.contention = ContentionGuard(stolen_ns=1 << 62)
    return loop


def test_event_loop_polls_until_idle_then_ends_polling():
    loop = uncontended_loop()
    poller = FakePoller(work=3, found_when_ending=1)
    loop.poll_policy(poller).window_ns = el.POLL_MAX_NS     # a poller whose window has grown
    try:
        loop.call_later(0, lambda: loop.start_polling(poller))
        loop.start()
        assert poller.done.wait(2)
    finally:
        loop.stop()
    # begin once; work until idle; the chain found when ending keeps it polled; then it ends.
    assert poller.calls == ["begin", "work", "work", "work", "end", "work", "end"]


def test_event_loop_runs_timers_while_polling():
    loop = uncontended_loop()
    fired = threading.Event()

    class Busy(FakePoller):
        def poll(self):
            return not fired.is_set()        # always work, until the timer fired

    poller = Busy(work=0)
    loop.poll_policy(poller).window_ns = el.POLL_MAX_NS
    try:
        loop.call_later(0, lambda: loop.start_polling(poller))
        loop.start()
        time.sleep(0.01)
        loop.call_later(0.001, fired.set)
        assert fired.wait(2)
        assert poller.done.wait(2)
    finally:
        loop.stop()


# -- the adaptive policy (QEMU's poll-max-ns / grow / shrink), without threads or clocks

US = 1000


def test_a_new_poller_is_not_polled_until_kicks_come_close_together():
    policy = PollPolicy(max_ns=100 * US, grow_start_ns=16 * US)
    policy.kicked(0)
    assert policy.window_ns == 0 and policy.expired(0)      # one kick says nothing about the next
    policy.kicked(1_000 * US)                                # 1 ms later: polling would not have paid
    assert policy.window_ns == 0
    windows = []
    for n in range(1, 6):                                    # then a stream: a kick every 10 us
        policy.kicked(1_000 * US + n * 10 * US)
        windows.append(policy.window_ns)
    assert windows == [16 * US, 32 * US, 64 * US, 100 * US, 100 * US]   # grows x2 up to the max


def test_a_window_that_does_not_pay_shrinks_to_nothing():
    policy = PollPolicy(max_ns=100 * US, grow_start_ns=16 * US, window_ns=100 * US)
    policy.worked(0)
    assert not policy.expired(99 * US) and policy.expired(100 * US)
    now, windows = 0, []
    for _ in range(4):                                       # each next request 5 ms after the last
        now += 5_000 * US
        policy.kicked(now)
        windows.append(policy.window_ns)
    assert windows == [50 * US, 25 * US, 0, 0]               # halved; below the start: no polling


def test_work_found_by_polling_keeps_the_window():
    policy = PollPolicy(max_ns=100 * US, window_ns=64 * US)
    policy.worked(0)
    policy.worked(60 * US)
    assert policy.window_ns == 64 * US and not policy.expired(120 * US)


def test_contention_stops_polling_for_a_back_off_that_doubles_and_resets():
    guard = ContentionGuard(stolen_ns=200 * US, backoff_min_ns=20_000 * US, backoff_max_ns=50_000 * US)
    assert guard.may_poll(0)
    assert not guard.slice_done(wall_ns=60 * US, cpu_ns=55 * US, now=100 * US)   # ran all along
    assert guard.slice_done(wall_ns=3_050 * US, cpu_ns=50 * US, now=3_000 * US)  # preempted 3 ms
    assert not guard.may_poll(22_999 * US) and guard.may_poll(23_000 * US)     # 20 ms off
    assert guard.slice_done(wall_ns=1_000 * US, cpu_ns=50 * US, now=30_000 * US)
    assert not guard.may_poll(69_999 * US) and guard.may_poll(70_000 * US)     # then 40 ms
    guard.slice_done(wall_ns=1_000 * US, cpu_ns=0, now=100_000 * US)
    assert guard.resume_at == 150_000 * US                                      # capped at 50 ms
    for n in range(399):                                     # 19.95 ms of polling, not preempted
        assert not guard.slice_done(wall_ns=50 * US, cpu_ns=50 * US, now=150_000 * US + n * 50 * US)
    guard.slice_done(wall_ns=1_000 * US, cpu_ns=0, now=200_000 * US)
    assert guard.resume_at == 250_000 * US                   # not yet forgotten: still 50 ms
    for n in range(400):                                     # 20 ms not preempted: forgotten
        guard.slice_done(wall_ns=50 * US, cpu_ns=50 * US, now=250_000 * US + n * 50 * US)
    guard.slice_done(wall_ns=1_000 * US, cpu_ns=0, now=300_000 * US)
    assert guard.resume_at == 320_000 * US and guard.contended_slices == 5


def run_on_loop(loop: EventLoop, fn) -> None:
    done = threading.Event()
    loop.call_later(0, lambda: (fn(), done.set()))
    assert done.wait(2)


def test_event_loop_polls_a_poller_once_its_kicks_come_close_together():
    loop = uncontended_loop()
    poller = FakePoller(work=0)
    try:
        loop.start()
        run_on_loop(loop, lambda: loop.start_polling(poller))
        assert poller.calls == []                            # first kick: window 0, notifications stay on
        run_on_loop(loop, lambda: (loop.start_polling(poller), loop.start_polling(poller)))
        assert poller.done.wait(2)                           # second kick close behind: polled, then idle
    finally:
        loop.stop()
    assert poller.calls[0] == "begin" and poller.calls[-1] == "end"


def test_event_loop_stops_polling_when_the_cpu_is_contended_and_there_is_no_work():
    loop = EventLoop()
    loop.contention = ContentionGuard(stolen_ns=-1)          # every slice looks preempted
    busy_ns = 3_000_000

    class WorkThenIdle(FakePoller):
        started = None

        def poll(self):
            self.calls.append("poll")
            now = time.monotonic_ns()
            self.started = self.started or now
            return now - self.started < busy_ns               # work for 3 ms, then none

    poller = WorkThenIdle(work=0)
    loop.poll_policy(poller).window_ns = 10 * 10**9          # only contention can end it soon
    try:
        loop.start()
        begun = time.monotonic_ns()
        run_on_loop(loop, lambda: loop.start_polling(poller))
        assert poller.done.wait(2)                           # ended by the first idle, preempted slice
        assert time.monotonic_ns() - begun >= busy_ns        # not while slices still found work
        assert not loop.contention.may_poll(time.monotonic_ns())
        calls = len(poller.calls)
        run_on_loop(loop, lambda: loop.start_polling(poller))   # during the back-off: not polled
        time.sleep(0.005)
    finally:
        loop.stop()
    assert poller.calls[0] == "begin" and poller.calls.count("begin") == 1
    assert len(poller.calls) == calls and loop.contention.contended_slices == 1
