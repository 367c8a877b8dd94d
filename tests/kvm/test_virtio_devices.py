"""virtio-blk and virtio-rng wired into a real microVM: slots, command line, ioeventfd kicks
served by the device event loop, irqfd, rate limiters, PATCH-style backend swaps.

The driver side is played by the host (tests/unit/virtio_driver.py) writing registers through
the VMM's MMIO bus and rings into the VM's guest memory, as a guest would; the queue kick comes
either from the queue's ioeventfd written by the host, or from a real guest instruction that
writes QueueNotify (KVM matches it against the ioeventfd without a VM exit to pyrite).
"""
from __future__ import annotations

import os
import struct
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from loader_images import Elf, Seg, pvh_note  # noqa: E402
from virtio_driver import MmioDriver, RingDriver  # noqa: E402

from pyrite.arch.x86_64 import layout  # noqa: E402
from pyrite.devices.virtio import mmio  # noqa: E402
from pyrite.devices.virtio.device import DEVICE_NEEDS_RESET, TYPE_BLOCK, TYPE_RNG  # noqa: E402
from pyrite.config import ConfigError, DriveUpdate, VmResources  # noqa: E402
from pyrite.devices.virtio.handler import DeviceUpdateError  # noqa: E402
from pyrite.microvm import _drive, _entropy  # noqa: E402
from pyrite.vmm.builder import build_for_boot  # noqa: E402
from pyrite.vmm.console import BufferSink  # noqa: E402

from guests import guest_image, parse_facts  # noqa: E402

RING_BASE = 0x2000000          # 32 MiB: far from the kernel image and boot structures
SECTOR = 512


def pattern(n: int, seed: int) -> bytes:
    return bytes((i * 13 + seed) & 0xFF for i in range(n))


def exit_guest(code_before: bytes = b"") -> bytes:
    """A PVH ELF (32-bit flat protected mode, paging off) running `code_before`, then writing 0
    to the exit port."""
    code = code_before + b"\xb0\x00\xe6\xf4" + b"\xeb\xfe"   # mov al,0; out 0xf4,al; jmp $
    return Elf([Seg(0x100000, code)], entry=0x100000, notes=pvh_note(0x100000)).build()


def kick(addr: int, queue: int) -> bytes:
    """mov dword [addr + QueueNotify], queue"""
    return b"\xc7\x05" + struct.pack("<II", addr + mmio.QUEUE_NOTIFY, queue)


class SlotIo:
    """The MmioDriver's view of a slot: register access through the VMM's MMIO bus."""

    def __init__(self, vmm, slot):
        self.vmm, self.slot = vmm, slot

    def read(self, offset: int, length: int) -> bytes:
        return self.vmm.vcpus[0].mmio.read(self.slot.addr + offset, length)

    def write(self, offset: int, data: bytes) -> None:
        self.vmm.vcpus[0].mmio.write(self.slot.addr + offset, data)


def wait_used(ring: RingDriver, count: int, timeout: float = 5.0) -> list[tuple[int, int]]:
    got: list[tuple[int, int]] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += ring.take_used()
        if len(got) < count:
            time.sleep(0.005)
    return got


def drive(drive_id: str, path, **fields):
    """A Drive as pyrite.MicroVM's dict shorthand makes it (read_only, is_root_device, rate_limiter)."""
    return _drive({"drive_id": drive_id, "path": str(path), **fields}, 0)


@pytest.fixture
def build(kvm, tmp_path):
    made = []

    def make(drives=(), entropy=None, kernel=None, cmdline="", **kw):
        image = tmp_path / f"guest{len(made)}.elf"
        image.write_bytes(kernel if kernel is not None else exit_guest())
        resources = VmResources.for_kernel(image, cmdline=cmdline, mem_mib=64, drives=drives,
                                           entropy=_entropy(entropy))
        vmm = build_for_boot(resources, console_out=BufferSink(), on_boot_timer=None, **kw)
        made.append(vmm)
        return vmm
    yield make
    for vmm in made:
        vmm.close()


def blk_request(ring: RingDriver, type_: int, sector: int, data_out: bytes = b"", in_len: int = 0):
    hdr = ring.alloc(16, struct.pack("<IIQ", type_, 0, sector))
    bufs = [(hdr, 16, False)]
    if data_out:
        bufs.append((ring.alloc(len(data_out), data_out), len(data_out), False))
    din = ring.alloc(in_len) if in_len else None
    if in_len:
        bufs.append((din, in_len, True))
    status = ring.alloc(1, b"\xff")
    bufs.append((status, 1, True))
    ring.publish(ring.add_chain(bufs))
    return status, din


def setup_driver(vmm, slot, base=RING_BASE):
    drv = MmioDriver(SlotIo(vmm, slot))
    ring = RingDriver(vmm.memory, size=16, base=base, data=base + 0x10000)
    drv.initialise({0: ring})
    return drv, ring


# ----------------------------------------------------------------------------- placement

def test_slots_irqs_and_registers(build, tmp_path):
    data, root = tmp_path / "data.img", tmp_path / "root.img"
    data.write_bytes(bytes(8 * SECTOR))
    root.write_bytes(bytes(4 * SECTOR))
    vmm = build(drives=[drive("data", data), drive("rootfs", root, read_only=True, is_root_device=True)],
                entropy=True)
    assert [(s.kind, s.id, s.addr, s.irq) for s in vmm.virtio] == [
        ("block", "rootfs", layout.VIRTIO_MMIO_START, 5),
        ("block", "data", layout.VIRTIO_MMIO_START + 0x1000, 6),
        ("entropy", "entropy", layout.VIRTIO_MMIO_START + 0x2000, 7)]
    bus = vmm.vcpus[0].mmio
    for slot, device_id in zip(vmm.virtio, (TYPE_BLOCK, TYPE_BLOCK, TYPE_RNG)):
        assert int.from_bytes(bus.read(slot.addr, 4), "little") == mmio.MAGIC
        assert int.from_bytes(bus.read(slot.addr + mmio.DEVICE_ID, 4), "little") == device_id
    # the slot after the last device is unclaimed: a probing guest reads all-ones there
    assert bus.read(layout.VIRTIO_MMIO_START + 0x3000, 4) == b"\xff" * 4
    # capacity in the configuration space, in sectors
    assert bus.read(vmm.virtio[1].addr + mmio.CONFIG, 8) == struct.pack("<Q", 8)


def test_missing_drive_file_names_the_file(build, tmp_path):
    missing = tmp_path / "nope.img"
    with pytest.raises(ConfigError, match=r"backing file: No such file or directory \(os error 2\) .*nope\.img"):
        build(drives=[drive("scratch", missing)])


def test_cmdline_fragments_reach_the_guest(kvm, tmp_path):
    import pyrite
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(SECTOR))
    with pyrite.MicroVM(guest_image("bootinfo"), cmdline="hello", mem_mib=64,
                        drives=[{"drive_id": "rootfs", "path": str(disk), "is_root_device": True}],
                        entropy=True) as vm:
        vm.start()
        assert vm.wait(timeout=60) is not None, vm.console_output
        facts = parse_facts(vm.console_output)
    assert facts["cmdline"].endswith("hello root=/dev/vda rw virtio_mmio.device=4K@0xc0001000:5 "
                                     "virtio_mmio.device=4K@0xc0002000:6"), facts["cmdline"]


# ----------------------------------------------------------------------------- block

def test_block_write_then_read_through_the_event_loop(build, tmp_path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(16 * SECTOR))
    vmm = build(drives=[drive("d", disk)])
    slot = vmm.virtio[0]
    drv, ring = setup_driver(vmm, slot)
    vmm.event_loop.start()   # the device side runs; vCPUs are not needed for this
    data = pattern(2 * SECTOR, 3)
    status, _ = blk_request(ring, 1, 4, data_out=data)
    status_flush, _ = blk_request(ring, 4, 0)
    os.eventfd_write(slot.notify_fds[0], 1)
    assert len(wait_used(ring, 2)) == 2
    assert vmm.memory.read(status, 1) == b"\0" and vmm.memory.read(status_flush, 1) == b"\0"
    assert disk.read_bytes()[4 * SECTOR:6 * SECTOR] == data
    status, din = blk_request(ring, 0, 4, in_len=2 * SECTOR)
    os.eventfd_write(slot.notify_fds[0], 1)
    [(_, length)] = wait_used(ring, 1)
    assert length == 2 * SECTOR + 1 and vmm.memory.read(din, 2 * SECTOR) == data
    assert drv.ack_interrupts() & mmio.INT_VRING
    assert vmm.device_metrics()["block_d"] == {
        "read_bytes": 2 * SECTOR, "write_bytes": 2 * SECTOR, "read_count": 1, "write_count": 1,
        "flush_count": 1, "invalid_reqs_count": 0, "rate_limiter_throttled_events": 0}


def test_guest_kick_reaches_the_device_through_ioeventfd(build, tmp_path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(8 * SECTOR))
    base = layout.VIRTIO_MMIO_START
    vmm = build(drives=[drive("d", disk)], kernel=exit_guest(kick(base, 0)))
    slot = vmm.virtio[0]
    _, ring = setup_driver(vmm, slot)
    data = pattern(SECTOR, 9)
    status, _ = blk_request(ring, 1, 7, data_out=data)
    vmm.start()
    result = vmm.wait(timeout=30)
    assert result is not None and result.reason == "exit-port", result
    assert len(wait_used(ring, 1)) == 1
    assert vmm.memory.read(status, 1) == b"\0"
    assert disk.read_bytes()[7 * SECTOR:] == data
    # the kick never came to pyrite as an MMIO exit: KVM signalled the ioeventfd instead
    assert vmm.exit_counts().get("MmioWrite", 0) == 0


def test_read_only_drive_refuses_writes(build, tmp_path):
    disk = tmp_path / "ro.img"
    original = pattern(4 * SECTOR, 1)
    disk.write_bytes(original)
    os.chmod(disk, 0o444)    # opened O_RDONLY: a read-write open would fail here
    vmm = build(drives=[drive("ro", disk, read_only=True)])
    slot = vmm.virtio[0]
    _, ring = setup_driver(vmm, slot)
    vmm.event_loop.start()
    status, _ = blk_request(ring, 1, 0, data_out=bytes(SECTOR))
    os.eventfd_write(slot.notify_fds[0], 1)
    assert len(wait_used(ring, 1)) == 1
    assert vmm.memory.read(status, 1) == b"\x01"      # VIRTIO_BLK_S_IOERR
    assert disk.read_bytes() == original


def test_swapping_the_backing_file(build, tmp_path):
    first, second = tmp_path / "a.img", tmp_path / "b.img"
    first.write_bytes(pattern(2 * SECTOR, 1))
    second.write_bytes(pattern(6 * SECTOR, 2))
    vmm = build(drives=[drive("d", first)])
    slot = vmm.virtio[0]
    drv, ring = setup_driver(vmm, slot)
    vmm.event_loop.start()
    drv.ack_interrupts()
    vmm.update_device("block", "d", DriveUpdate(drive_id="d", path_on_host=str(second)))
    assert drv.ack_interrupts() & mmio.INT_CONFIG
    assert SlotIo(vmm, slot).read(mmio.CONFIG, 8) == struct.pack("<Q", 6)
    status, din = blk_request(ring, 0, 5, in_len=SECTOR)
    os.eventfd_write(slot.notify_fds[0], 1)
    assert len(wait_used(ring, 1)) == 1
    assert vmm.memory.read(din, SECTOR) == pattern(6 * SECTOR, 2)[5 * SECTOR:]
    with pytest.raises(DeviceUpdateError, match="missing.img"):
        vmm.update_device("block", "d", DriveUpdate(drive_id="d", path_on_host=str(tmp_path / "missing.img")))
    with pytest.raises(DeviceUpdateError, match="no such drive"):
        vmm.update_device("block", "other", DriveUpdate(drive_id="other", path_on_host=str(second)))


def test_guest_error_marks_the_device_not_the_vmm(build, tmp_path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(SECTOR))
    vmm = build(drives=[drive("d", disk)])
    slot = vmm.virtio[0]
    drv, ring = setup_driver(vmm, slot)
    vmm.event_loop.start()
    ring.set_avail_idx(100)        # more entries than the queue holds: a queue-level error
    os.eventfd_write(slot.notify_fds[0], 1)
    deadline = time.monotonic() + 5
    while not drv.status() & DEVICE_NEEDS_RESET and time.monotonic() < deadline:
        time.sleep(0.005)
    assert drv.status() & DEVICE_NEEDS_RESET
    assert drv.ack_interrupts() & mmio.INT_CONFIG
    assert vmm.event_loop._thread.is_alive()


def test_block_rate_limiter_defers_then_serves(build, tmp_path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(8 * SECTOR))
    # one request per 200 ms: the second waits for the limiter's timer in the event loop
    vmm = build(drives=[drive("d", disk, rate_limiter={"ops": {"size": 1, "refill_time": 200}})])
    slot = vmm.virtio[0]
    _, ring = setup_driver(vmm, slot)
    vmm.event_loop.start()
    blk_request(ring, 1, 0, data_out=pattern(SECTOR, 1))
    blk_request(ring, 1, 1, data_out=pattern(SECTOR, 2))
    started = time.monotonic()
    os.eventfd_write(slot.notify_fds[0], 1)
    assert len(wait_used(ring, 1, timeout=0.05)) == 1
    assert wait_used(ring, 1, timeout=0.05) == []          # throttled for now
    assert len(wait_used(ring, 1, timeout=5)) == 1
    assert time.monotonic() - started >= 0.09               # Firecracker retries after 100 ms
    assert disk.read_bytes()[:2 * SECTOR] == pattern(SECTOR, 1) + pattern(SECTOR, 2)
    assert vmm.device_metrics()["block_d"]["rate_limiter_throttled_events"] >= 1


# ----------------------------------------------------------------------------- entropy

def test_entropy_fills_buffers(build):
    vmm = build(entropy=True)
    slot = vmm.virtio[0]
    _, ring = setup_driver(vmm, slot)
    vmm.event_loop.start()
    bufs = [ring.alloc(64, bytes(64)) for _ in range(2)]
    ring.publish(*(ring.add_chain([(b, 64, True)]) for b in bufs))
    os.eventfd_write(slot.notify_fds[0], 1)
    used = wait_used(ring, 2)
    assert [length for _, length in used] == [64, 64]
    first, second = (vmm.memory.read(b, 64) for b in bufs)
    assert first != bytes(64) and second != bytes(64) and first != second
    assert vmm.device_metrics()["entropy"]["entropy_bytes"] == 128


def test_rate_limiter_config_errors_name_the_device(build, tmp_path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(SECTOR))
    with pytest.raises(ConfigError, match="rate limiter {'bytes': {}}: unknown field `bytes`"):
        build(drives=[drive("d", disk, rate_limiter={"bytes": {}})])


# ----------------------------------------------------------------------------- real guest drivers
# tests/guests/virtio_blk.c and virtio_rng.c use the library OS's drivers (<pyrite/virtio.h>).

def lcg_pattern(sectors: int, seed: int) -> bytes:
    """virtio_blk.c's pattern: 64-bit LCG words, the state advanced before each word."""
    state, words = seed, []
    for _ in range(sectors * SECTOR // 8):
        state = (state * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        words.append(state)
    return struct.pack(f"<{len(words)}Q", *words)


def run_guest(name: str, cmdline: str, timeout: float = 60, **devices):
    import pyrite
    with pyrite.MicroVM(guest_image(name), cmdline=cmdline, mem_mib=64, **devices) as vm:
        vm.start()
        result = vm.wait(timeout=timeout)
        assert result is not None, vm.console_output
        return result, vm.console_output.decode(errors="replace"), vm.device_metrics()


def test_guest_writes_flushes_and_the_host_finds_the_bytes(kvm, tmp_path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\x11" * (32 * SECTOR))
    result, out, metrics = run_guest("virtio_blk", "info write 5 3 42 read 5 3",
                                     drives=[{"drive_id": "data", "path": str(disk)}])
    assert result.status == 0, out
    facts = parse_facts(out.encode())
    assert facts["capacity"] == "32" and facts["read_only"] == "0" and facts["flush"] == "1"
    image = disk.read_bytes()
    assert image[5 * SECTOR:8 * SECTOR] == lcg_pattern(3, 42)
    assert image[:5 * SECTOR] == b"\x11" * (5 * SECTOR) and image[8 * SECTOR:] == b"\x11" * (24 * SECTOR)
    # what the guest read back is what it wrote
    lines = out.splitlines()
    written = next(line for line in lines if line.startswith("write 5 3 ")).split("=")[1]
    assert any(line == f"read 5 3 fnv1a64={written}" for line in lines), out
    assert "virtio_mmio.device" not in "".join(line for line in lines if line.startswith(("argv", "env")))
    assert metrics["block_data"]["write_bytes"] == 3 * SECTOR and metrics["block_data"]["flush_count"] == 1


def test_guest_write_to_read_only_drive_fails_and_file_is_unchanged(kvm, tmp_path):
    disk = tmp_path / "ro.img"
    original = pattern(8 * SECTOR, 5)
    disk.write_bytes(original)
    result, out, _ = run_guest("virtio_blk", "info write 0 1 1",
                               drives=[{"drive_id": "ro", "path": str(disk), "read_only": True}])
    assert result.status == 6 and "error write -5" in out, out      # -EIO from VIRTIO_BLK_S_IOERR
    assert "read_only=1" in out
    assert disk.read_bytes() == original


def test_guest_sees_two_drives_in_configuration_order(kvm, tmp_path):
    # (no root drive here: its "rw" word would reach the unikernel's argv as a command)
    a, b = tmp_path / "a.img", tmp_path / "b.img"
    a.write_bytes(bytes(4 * SECTOR))
    b.write_bytes(bytes(8 * SECTOR))
    result, out, _ = run_guest("virtio_blk", "disk 0 info disk 1 info write 1 1 9",
                               drives=[{"drive_id": "a", "path": str(a)}, {"drive_id": "b", "path": str(b)}])
    assert result.status == 0, out
    assert [line for line in out.splitlines() if line.startswith("capacity=")] == ["capacity=4", "capacity=8"]
    assert b.read_bytes()[SECTOR:2 * SECTOR] == lcg_pattern(1, 9)
    assert a.read_bytes() == bytes(4 * SECTOR)


def test_rate_limited_drive_still_completes(kvm, tmp_path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(8 * SECTOR))
    started = time.monotonic()
    # three requests (write, flush, read) at one op per 100 ms
    result, out, metrics = run_guest("virtio_blk", "write 0 1 3 read 0 1", drives=[
        {"drive_id": "d", "path": str(disk), "rate_limiter": {"ops": {"size": 1, "refill_time": 100}}}])
    assert result.status == 0, out
    assert time.monotonic() - started >= 0.15
    assert metrics["block_d"]["rate_limiter_throttled_events"] >= 1
    assert disk.read_bytes()[:SECTOR] == lcg_pattern(1, 3)


def test_guest_reads_random_bytes(kvm):
    result, out, metrics = run_guest("virtio_rng", "4096", entropy=True)
    assert result.status == 0, out
    facts = parse_facts(out.encode())
    assert facts["rng_read"] == "4096" and facts["reads_differ"] == "1" and int(facts["distinct"]) > 200
    assert metrics["entropy"]["entropy_bytes"] >= 8192


def test_guest_without_entropy_device_is_told_so(kvm):
    result, out, _ = run_guest("virtio_rng", "64")
    assert result.status == 3, out     # -ENODEV: nothing answers MagicValue in any slot
