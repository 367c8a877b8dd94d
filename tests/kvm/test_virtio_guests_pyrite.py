"""The library OS's virtio drivers (<pyrite/virtio.h>) against pyrite's own virtio-mmio devices.

The same guests as tests/kvm/test_virtio_guests_qemu.py (tests/guests/virtio_blk.c and
virtio_rng.c, at CPL 3), booted with `pyrite.MicroVM(..., drives=[...], entropy=True)`: the
devices sit in Firecracker's slots (0xC0001000 + 0x1000 * i, GSI 5 + i) and pyrite appends
Firecracker's `virtio_mmio.device=4K@ADDR:IRQ` words, which the driver uses and main never sees.
The host checks the disk image file byte for byte.
"""
from __future__ import annotations

import inspect
import os

import pytest

import pyrite
from guests import GUESTS, fnv1a64, guest_image
from pyrite.unikernel.build import build_image

SECTOR = 512
TIMEOUT = 60
NO_DEVICE, WRITE_EIO, READ_EIO = 3, 6, 9        # exit statuses of tests/guests/virtio_blk.c

pytestmark = [
    pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK), reason="/dev/kvm missing or not accessible"),
    pytest.mark.skipif("drives" not in inspect.signature(pyrite.MicroVM).parameters,
                       reason="pyrite.MicroVM has no drives= yet (the VMM side of virtio is not wired)"),
]


def pattern(sectors: int, seed: int) -> bytes:
    """What virtio_blk.c writes: 64-bit LCG words, little-endian, advanced before each word."""
    words, state = [], seed
    for _ in range(sectors * SECTOR // 8):
        state = (state * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        words.append(state.to_bytes(8, "little"))
    return b"".join(words)


class Run:
    def __init__(self, output: bytes, exit):
        self.output = output.decode(errors="replace")
        self.exit = exit

    @property
    def status(self) -> int:
        assert self.exit is not None, f"guest did not end in {TIMEOUT} s: {self!r}"
        assert self.exit.reason == "exit-port", f"{self.exit}: {self!r}"
        return self.exit.status

    def lines(self, prefix: str) -> list[str]:
        return [line[len(prefix):] for line in self.output.splitlines() if line.startswith(prefix)]

    def value(self, key: str) -> str:
        found = self.lines(key + "=")
        assert found, f"guest did not report {key}=: {self!r}"
        return found[0]

    def __repr__(self) -> str:
        return f"exit {self.exit}, output:\n{self.output}"


def boot(image, cmdline: str, drives=(), entropy=None) -> Run:
    with pyrite.MicroVM(kernel=str(image), cmdline=cmdline, mem_mib=128, drives=list(drives),
                        entropy=entropy) as vm:
        vm.start()
        result = vm.wait(TIMEOUT)
        return Run(vm.console_output, result)


def drive(path, drive_id: str = "d0", read_only: bool = False) -> dict:
    return {"drive_id": drive_id, "path": str(path), "read_only": read_only}


@pytest.fixture(scope="module")
def blk_image():
    return guest_image("virtio_blk")


@pytest.fixture(scope="module")
def rng_image():
    return guest_image("virtio_rng")


@pytest.fixture
def disk(tmp_path):
    """A 2 MiB raw image of random bytes (so that unwritten and misplaced bytes show)."""
    path = tmp_path / "disk.img"
    path.write_bytes(os.urandom(2 << 20))
    return path


# ---------------------------------------------------------------- block

def test_write_lands_exactly_in_the_disk_file(blk_image, disk):
    """2100 sectors: more than one 1 MiB request, at an odd sector."""
    before = disk.read_bytes()
    sector, count, seed = 37, 2100, 0x1234
    run = boot(blk_image, f"write {sector} {count} {seed}", [drive(disk)])
    assert run.status == 0, run
    data = pattern(count, seed)
    assert run.lines("write ") == [f"{sector} {count} fnv1a64={fnv1a64(data)}"]
    after = disk.read_bytes()
    assert len(after) == len(before)
    assert after[sector * SECTOR:(sector + count) * SECTOR] == data
    assert after[:sector * SECTOR] == before[:sector * SECTOR]
    assert after[(sector + count) * SECTOR:] == before[(sector + count) * SECTOR:]


def test_read_returns_the_disk_file_bytes(blk_image, disk):
    run = boot(blk_image, "read 0 1 read 4000 96", [drive(disk)])
    assert run.status == 0, run
    content = disk.read_bytes()
    assert run.lines("read ") == [f"0 1 fnv1a64={fnv1a64(content[:SECTOR])}",
                                  f"4000 96 fnv1a64={fnv1a64(content[4000 * SECTOR:4096 * SECTOR])}"]


def test_info_reports_capacity_flags_id_and_the_firecracker_slot(blk_image, disk):
    run = boot(blk_image, "info", [drive(disk)])
    assert run.status == 0, run
    assert int(run.value("capacity")) == disk.stat().st_size // SECTOR
    assert run.value("read_only") == "0" and run.value("flush") == "1"
    assert 0 < len(run.value("id")) <= 20
    assert run.lines("device ") == ["0 type=2 version=2 base=0xc0001000 size=0x1000 irq=5 source=cmdline"]
    assert run.lines("argv[") == ["1]=info"] and run.lines("env ") == []


def test_read_only_drive_refuses_writes_with_ioerr_and_file_is_unchanged(blk_image, disk):
    before = disk.read_bytes()
    run = boot(blk_image, "info write 0 8 5", [drive(disk, read_only=True)])
    assert run.value("read_only") == "1"
    assert run.lines("error ") == ["write -5"]          # VIRTIO_BLK_S_IOERR -> -EIO
    assert run.status == WRITE_EIO, run
    assert disk.read_bytes() == before


def test_read_past_the_end_is_an_io_error(blk_image, disk):
    last = disk.stat().st_size // SECTOR - 1
    run = boot(blk_image, f"read {last} 1 read {last} 2", [drive(disk)])
    assert run.lines("read ") == [f"{last} 1 fnv1a64={fnv1a64(disk.read_bytes()[last * SECTOR:])}"]
    assert run.lines("error ") == ["read -5"]
    assert run.status == READ_EIO, run


def test_two_drives_in_configuration_order(blk_image, disk, tmp_path):
    second = tmp_path / "second.img"
    second.write_bytes(os.urandom(64 * SECTOR))
    run = boot(blk_image, "disk 1 info read 0 64", [drive(disk), drive(second, "d1")])
    assert run.status == 0, run
    assert run.value("capacity") == "64"
    assert run.lines("read ") == [f"0 64 fnv1a64={fnv1a64(second.read_bytes())}"]


def test_devices_are_found_in_firecracker_slots_without_the_command_line(blk_image, disk, monkeypatch):
    """A VMM that does not append virtio_mmio.device= words: the driver probes the slots."""
    import pyrite.vmm.builder as builder
    monkeypatch.setattr(builder, "kernel_cmdline", lambda base, slots: base)
    run = boot(blk_image, "info read 3 1", [drive(disk)], entropy=True)
    assert run.status == 0, run
    assert run.lines("device ") == ["0 type=2 version=2 base=0xc0001000 size=0x1000 irq=5 source=firecracker-slots",
                                    "1 type=4 version=2 base=0xc0002000 size=0x1000 irq=6 source=firecracker-slots"]
    assert run.lines("read ") == [f"3 1 fnv1a64={fnv1a64(disk.read_bytes()[3 * SECTOR:4 * SECTOR])}"]


def test_default_command_line_applies_when_only_device_words_are_given(disk, tmp_path):
    image = build_image([GUESTS / "virtio_blk.c"], tmp_path / "baked.elf", cmdline="read 2 1")
    run = boot(image, "", [drive(disk)])
    assert run.status == 0, run
    assert run.lines("read ") == [f"2 1 fnv1a64={fnv1a64(disk.read_bytes()[2 * SECTOR:3 * SECTOR])}"]


def test_no_block_device(blk_image):
    run = boot(blk_image, "info")
    assert run.lines("error ") == [f"open {-19}"]        # -ENODEV
    assert run.status == NO_DEVICE, run


def test_swapped_drive_is_seen_by_the_guest(blk_image, disk, tmp_path):
    """Firecracker's PATCH /drives: a new backing file after boot, new capacity and data."""
    if not hasattr(pyrite.MicroVM, "update_drive"):
        pytest.skip("pyrite.MicroVM has no update_drive yet")
    other = tmp_path / "other.img"
    other.write_bytes(os.urandom(128 * SECTOR))
    with pyrite.MicroVM(kernel=str(blk_image), cmdline="info wait info read 0 128", mem_mib=128,
                        drives=[drive(disk)]) as vm:
        vm.start()
        assert vm.wait_for_output(b"waiting\n", timeout=TIMEOUT), vm.console_output
        vm.update_drive("d0", path=str(other))
        vm.send_console_input(b"go\n")
        result = vm.wait(TIMEOUT)
        run = Run(vm.console_output, result)
    assert run.status == 0, run
    assert [int(c) for c in run.lines("capacity=")] == [disk.stat().st_size // SECTOR, 128]
    assert run.lines("read ") == [f"0 128 fnv1a64={fnv1a64(other.read_bytes())}"]


# ---------------------------------------------------------------- entropy

def test_rng_reads_random_bytes(rng_image):
    n = 100_000
    run = boot(rng_image, str(n), entropy=True)
    assert run.status == 0, run
    assert int(run.value("rng_read")) == n
    assert run.value("all_equal") == "0" and run.value("reads_differ") == "1"
    assert int(run.value("distinct")) == 256           # 100 kB of random bytes miss no value


def test_rng_beside_a_drive(rng_image, disk):
    run = boot(rng_image, "64", [drive(disk)], entropy=True)
    assert run.status == 0, run
    assert int(run.value("rng_read")) == 64


def test_rng_missing(rng_image):
    run = boot(rng_image, "64")
    assert run.lines("error ") == [f"rng {-19}"]
    assert run.status == NO_DEVICE, run
