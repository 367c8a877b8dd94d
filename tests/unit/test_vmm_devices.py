"""Where virtio devices go (slots, IRQs, kernel command line), how their specs are read, the
event loop's timers, and rate limiting inside the block and entropy devices. No KVM needed."""
from __future__ import annotations

import struct
import threading
import time

import pytest
from virtio_driver import MmioDriver, RingDriver

from pyrite.devices.virtio import mmio
from pyrite.devices.virtio.block.backend import FileBackend
from pyrite.devices.virtio.block.device import Block
from pyrite.devices.virtio.ratelimiter import RateLimiter, TokenBucket
from pyrite.devices.virtio.rng.device import Entropy
from pyrite.memory import GuestMemory
from pyrite.vmm.builder import BuildError, VmSpec
from pyrite.vmm.devices import (MAX_VIRTIO_DEVICES, DeviceConfigError, DriveSpec, EntropySpec,
                                kernel_cmdline, make_rate_limiter, plan_slots)
from pyrite.vmm.event_loop import EventLoop


def drives(*specs):
    return [DriveSpec(name, f"/img/{name}", **kw) for name, kw in specs]


def test_root_drive_first_then_others_in_order_then_entropy():
    plans = plan_slots(drives(("a", {}), ("b", {}), ("root", {"is_root_device": True})), EntropySpec())
    assert [(p.kind, getattr(p.spec, "drive_id", None), p.addr, p.irq) for p in plans] == [
        ("block", "root", 0xC0001000, 5), ("block", "a", 0xC0002000, 6),
        ("block", "b", 0xC0003000, 7), ("entropy", None, 0xC0004000, 8)]


def test_slot_count_keeps_irqs_at_or_below_23():
    assert MAX_VIRTIO_DEVICES == 19
    plans = plan_slots(drives(*((f"d{i}", {}) for i in range(18))), EntropySpec())
    assert plans[-1].irq == 23 and plans[-1].addr == 0xC0001000 + 18 * 0x1000
    with pytest.raises(DeviceConfigError, match="20 virtio devices configured; at most 19"):
        plan_slots(drives(*((f"d{i}", {}) for i in range(19))), EntropySpec())


@pytest.mark.parametrize("root,expected", [
    ({"is_root_device": True}, "root=/dev/vda rw "),
    ({"is_root_device": True, "read_only": True}, "root=/dev/vda ro "),
    ({"is_root_device": True, "partuuid": "0eaa91a0-01"}, "root=PARTUUID=0eaa91a0-01 rw "),
    ({}, ""),
])
def test_kernel_cmdline_as_firecracker_writes_it(root, expected):
    plans = plan_slots(drives(("r", root)), None)
    assert kernel_cmdline("console=ttyS0", plans) == f"console=ttyS0 {expected}virtio_mmio.device=4K@0xc0001000:5"
    assert kernel_cmdline("", plans) == f"{expected}virtio_mmio.device=4K@0xc0001000:5"
    assert kernel_cmdline("quiet", []) == "quiet"


def test_drive_validation_names_the_drive():
    with pytest.raises(DeviceConfigError, match="drive a: configured twice"):
        plan_slots(drives(("a", {}), ("a", {})), None)
    with pytest.raises(DeviceConfigError, match=r"drive b: a root drive already exists \(a\)"):
        plan_slots(drives(("a", {"is_root_device": True}), ("b", {"is_root_device": True})), None)
    with pytest.raises(DeviceConfigError, match="partuuid 'a b'"):
        plan_slots(drives(("a", {"is_root_device": True, "partuuid": "a b"})), None)


def test_vm_spec_reads_paths_dicts_and_firecracker_names():
    spec = VmSpec(b"", drives=["/x.img", {"drive_id": "fc", "path_on_host": "/y.img", "is_read_only": True,
                                          "is_root_device": True}], entropy=True)
    assert [(d.drive_id, d.path, d.read_only, d.is_root_device) for d in spec.drives] == [
        ("drive0", "/x.img", False, False), ("fc", "/y.img", True, True)]
    assert isinstance(spec.entropy, EntropySpec)
    assert VmSpec(b"").entropy is None and VmSpec(b"", entropy=False).entropy is None
    assert VmSpec(b"", entropy={"rate_limiter": {"ops": {"size": 1, "refill_time": 10}}}).entropy.rate_limiter
    with pytest.raises(BuildError, match="drive 'nopath': no path"):
        VmSpec(b"", drives=[{"drive_id": "nopath"}])
    with pytest.raises(BuildError, match="unknown field 'colour'"):
        VmSpec(b"", entropy={"colour": 1})
    with pytest.raises(BuildError, match="drive x: configured twice"):
        VmSpec(b"", drives=[DriveSpec("x", "/a"), DriveSpec("x", "/b")]).validate()


def test_rate_limiter_configs():
    assert make_rate_limiter(None, "d") is None
    assert make_rate_limiter({"bandwidth": {"size": 0, "refill_time": 100}}, "d") is None   # disabled bucket
    limiter = make_rate_limiter({"ops": {"size": 10, "refill_time": 100, "one_time_burst": 5}}, "d")
    assert limiter.ops.size == 10 and limiter.ops.one_time_burst == 5 and limiter.bandwidth is None
    with pytest.raises(DeviceConfigError, match="drive d: rate limiter has an unknown field 'iops'"):
        make_rate_limiter({"iops": {}}, "drive d")


# ----------------------------------------------------------------------------- event loop timers

def test_event_loop_runs_timers_in_order_on_its_thread():
    loop = EventLoop()
    ran: list[tuple[str, str]] = []
    done = threading.Event()
    loop.call_later(0.05, lambda: (ran.append(("late", threading.current_thread().name)), done.set()))
    loop.call_later(0.0, lambda: ran.append(("early", threading.current_thread().name)))
    loop.start()
    try:
        assert done.wait(5)
        assert ran == [("early", "fc_event_loop"), ("late", "fc_event_loop")]
    finally:
        loop.stop()


def test_event_loop_survives_a_failing_handler(capfd):
    loop = EventLoop()
    done = threading.Event()

    def broken():
        raise RuntimeError("device bug")
    loop.call_later(0, broken)
    loop.call_later(0.01, done.set)
    loop.start()
    try:
        assert done.wait(5)
    finally:
        loop.stop()
    assert "device bug" in capfd.readouterr().err


# ----------------------------------------------------------------------------- rate limiting in devices

class FakeClock:
    def __init__(self):
        self.ns = 1_000_000_000

    def __call__(self) -> int:
        return self.ns


def _driven(device):
    mem = GuestMemory([(0, 1 << 20)])
    t = mmio.MmioTransport(device, mem, lambda: None, log=lambda m: None)
    ring = RingDriver(mem, size=16)
    drv = MmioDriver(t)
    drv.initialise({0: ring})
    return mem, ring, drv


def test_block_requests_wait_for_ops_tokens(tmp_path):
    img = tmp_path / "d.img"
    img.write_bytes(bytes(8 * 512))
    clock = FakeClock()
    limiter = RateLimiter(ops=TokenBucket(1, refill_time=100, clock=clock))
    dev = Block(FileBackend(img), rate_limiter=limiter)
    mem, ring, drv = _driven(dev)
    for sector in range(2):
        hdr = ring.alloc(16, struct.pack("<IIQ", 1, 0, sector))
        data = ring.alloc(512, bytes([sector + 1]) * 512)
        status = ring.alloc(1, b"\xff")
        ring.publish(ring.add_chain([(hdr, 16, False), (data, 512, False), (status, 1, True)]))
    drv.kick(0)
    assert len(ring.take_used()) == 1 and limiter.blocked and limiter.timer_delay_ms == 100
    drv.kick(0)                                  # kicks while blocked serve nothing
    assert ring.take_used() == [] and dev.rate_limiter_throttled_events == 2
    clock.ns += 100_000_000
    limiter.timer_expired()
    drv.kick(0)
    assert len(ring.take_used()) == 1
    assert img.read_bytes()[:1024] == b"\x01" * 512 + b"\x02" * 512
    dev.backend.close()


def test_entropy_bandwidth_limit_puts_the_chain_back():
    clock = FakeClock()
    limiter = RateLimiter(bandwidth=TokenBucket(64, refill_time=1000, clock=clock))
    dev = Entropy(source=lambda n: b"\x5a" * n, rate_limiter=limiter)
    mem, ring, drv = _driven(dev)
    bufs = [ring.alloc(48) for _ in range(2)]
    ring.publish(*(ring.add_chain([(b, 48, True)]) for b in bufs))
    drv.kick(0)
    assert ring.take_used() == [(0, 48)] and limiter.blocked
    assert dev.metrics() == {"entropy_bytes": 48, "entropy_event_count": 1, "entropy_rate_limiter_throttled": 1}
    clock.ns += 1_000_000_000
    limiter.timer_expired()
    drv.kick(0)
    assert ring.take_used() == [(1, 48)]
    assert mem.read(bufs[1], 48) == b"\x5a" * 48
