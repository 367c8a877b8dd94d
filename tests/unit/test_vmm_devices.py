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
from pyrite.devices.virtio.rng.device import Entropy as EntropyDevice
from pyrite.config import ConfigError, Drive, Entropy, RateLimiter as RateLimiterConfig, TokenBucket as Bucket
from pyrite.config import VmResources
from pyrite.devices.virtio.handler import DeviceError, rate_limiter
from pyrite.memory import GuestMemory
from pyrite.microvm import _drive, _entropy
from pyrite.vmm.devices import MAX_VIRTIO_DEVICES, kernel_cmdline, plan_slots, vmgenid_gsi
from pyrite.vmm.event_loop import EventLoop


@pytest.fixture
def kernel(tmp_path):
    path = tmp_path / "vmlinux"
    path.write_bytes(b"\x7fELF")
    return path


def resources(kernel, tmp_path, *drives, entropy=False):
    """VmResources with drives (name, {read_only, root, partuuid}) over real files."""
    made = []
    for name, kw in drives:
        image = tmp_path / f"{name}.img"
        image.write_bytes(bytes(4096))
        drive = Drive.from_path(name, str(image), read_only=kw.get("read_only", False), root=kw.get("root", False))
        drive.partuuid = kw.get("partuuid")
        made.append(drive)
    return VmResources.for_kernel(kernel, cmdline="", drives=made, entropy=Entropy() if entropy else None)


def test_root_drive_first_then_others_in_order_then_entropy(kernel, tmp_path):
    slots = plan_slots(resources(kernel, tmp_path, ("a", {}), ("b", {}), ("root", {"root": True}), entropy=True))
    assert [(s.kind.kind, getattr(s.config, "drive_id", None), s.addr, s.irq) for s in slots] == [
        ("block", "root", 0xC0001000, 5), ("block", "a", 0xC0002000, 6),
        ("block", "b", 0xC0003000, 7), ("entropy", None, 0xC0004000, 8)]


def test_slot_count_keeps_irqs_at_or_below_22_and_23_for_the_vm_generation_id(kernel, tmp_path):
    assert MAX_VIRTIO_DEVICES == 18
    slots = plan_slots(resources(kernel, tmp_path, *((f"d{i}", {}) for i in range(17)), entropy=True))
    assert slots[-1].irq == 22 and slots[-1].addr == 0xC0001000 + 17 * 0x1000
    assert vmgenid_gsi(slots) == 23
    with pytest.raises(DeviceError, match="19 virtio devices configured; at most 18"):
        plan_slots(resources(kernel, tmp_path, *((f"d{i}", {}) for i in range(18)), entropy=True))


@pytest.mark.parametrize("root,expected", [
    ({"root": True}, "root=/dev/vda rw "),
    ({"root": True, "read_only": True}, "root=/dev/vda ro "),
    ({"root": True, "partuuid": "0eaa91a0-01"}, "root=PARTUUID=0eaa91a0-01 rw "),
    ({}, ""),
])
def test_kernel_cmdline_as_firecracker_writes_it(kernel, tmp_path, root, expected):
    slots = plan_slots(resources(kernel, tmp_path, ("r", root)))
    assert kernel_cmdline("console=ttyS0", slots) == f"console=ttyS0 {expected}virtio_mmio.device=4K@0xc0001000:5"
    assert kernel_cmdline("", slots) == f"{expected}virtio_mmio.device=4K@0xc0001000:5"
    assert kernel_cmdline("quiet", []) == "quiet"


def test_drive_validation_names_the_drive(kernel, tmp_path):
    with pytest.raises(ConfigError, match="drive id a is configured twice"):
        resources(kernel, tmp_path, ("a", {}), ("a", {}))
    with pytest.raises(ConfigError, match="A root block device already exists!"):
        resources(kernel, tmp_path, ("a", {"root": True}), ("b", {"root": True}))
    with pytest.raises(ConfigError, match="partuuid 'a b'"):
        resources(kernel, tmp_path, ("a", {"root": True, "partuuid": "a b"}))
    with pytest.raises(ConfigError, match=r"backing file: No such file or directory \(os error 2\) /nope.img"):
        VmResources.for_kernel(kernel, cmdline="", drives=[Drive.from_path("x", "/nope.img")])


def test_microvm_shorthands_read_paths_dicts_and_firecracker_names():
    drives = [_drive("/x.img", 0), _drive({"drive_id": "fc", "path_on_host": "/y.img", "is_read_only": True,
                                           "is_root_device": True}, 1)]
    assert [(d.drive_id, d.path_on_host, d.is_read_only, d.is_root_device, d.cache_type) for d in drives] == [
        ("drive0", "/x.img", False, False, "Writeback"), ("fc", "/y.img", True, True, "Writeback")]
    assert isinstance(_entropy(True), Entropy) and _entropy(None) is None and _entropy(False) is None
    assert _entropy({"rate_limiter": {"ops": {"size": 1, "refill_time": 10}}}).rate_limiter.ops.size == 1
    with pytest.raises(ConfigError, match="drive 'nopath': no path"):
        _drive({"drive_id": "nopath"}, 0)
    with pytest.raises(ConfigError, match="unknown field `iops`"):
        _entropy({"rate_limiter": {"iops": {}}})


def test_rate_limiter_configs():
    assert rate_limiter(None, "d") is None
    assert rate_limiter(RateLimiterConfig(bandwidth=Bucket(size=0, refill_time=100)), "d") is None  # disabled
    limiter = rate_limiter(RateLimiterConfig(ops=Bucket(size=10, refill_time=100, one_time_burst=5)), "d")
    assert limiter.ops.size == 10 and limiter.ops.one_time_burst == 5 and limiter.bandwidth is None


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
    dev = EntropyDevice(source=lambda n: b"\x5a" * n, rate_limiter=limiter)
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
