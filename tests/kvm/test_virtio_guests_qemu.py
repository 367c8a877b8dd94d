"""The library OS's virtio drivers (<pyrite/virtio.h>) against QEMU's virtio-mmio devices.

QEMU is the independent reference for the guest side: tests/guests/virtio_blk.c and
virtio_rng.c run at CPL 3 on `-M microvm` with `-device virtio-blk-device` / `virtio-rng-device`,
and the host checks the disk image file byte for byte. QEMU's virtio-mmio transports are
legacy (version 1) unless `-global virtio-mmio.force-legacy=false`; the driver only drives
version 2. With ACPI on (microvm's default) QEMU does not put the devices on the command line
and the driver finds them by probing QEMU's transports at 0xFEB00000; with `acpi=off` QEMU
appends `virtio_mmio.device=512@ADDR:IRQ` words, which the driver uses and main never sees.
QEMU's isa-debug-exit turns the guest's status byte b into exit status (b << 1) | 1.
"""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from guests import GUESTS, fnv1a64, guest_image
from pyrite.unikernel.build import build_image

QEMU = shutil.which("qemu-system-x86_64")
SECTOR = 512
MACHINE = "microvm,x-option-roms=off,isa-serial=on,rtc=off"
MODERN = ["-global", "virtio-mmio.force-legacy=false"]

pytestmark = [
    pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 not installed (apt-get install qemu-system-x86)"),
    pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK), reason="/dev/kvm missing or not accessible"),
]

# Exit statuses of tests/guests/virtio_blk.c and virtio_rng.c.
NO_DEVICE, REFUSED, WRITE_EIO, READ_EIO = 3, 4, 6, 9


def pattern(sectors: int, seed: int) -> bytes:
    """What virtio_blk.c writes: 64-bit LCG words, little-endian, advanced before each word."""
    words, state = [], seed
    for _ in range(sectors * SECTOR // 8):
        state = (state * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        words.append(state.to_bytes(8, "little"))
    return b"".join(words)


class Run:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.qemu_status = proc.returncode
        self.output = proc.stdout.decode(errors="replace").replace("\r\n", "\n")
        self.stderr = proc.stderr.decode(errors="replace")

    @property
    def status(self) -> int:
        """The guest's exit byte (QEMU exits with (byte << 1) | 1; the test statuses are small)."""
        assert self.qemu_status & 1, f"QEMU did not end by isa-debug-exit ({self.qemu_status}): {self}"
        return self.qemu_status >> 1

    def lines(self, prefix: str) -> list[str]:
        return [line[len(prefix):] for line in self.output.splitlines() if line.startswith(prefix)]

    def value(self, key: str) -> str:
        found = self.lines(key + "=")
        assert found, f"guest did not report {key}=: {self}"
        return found[0]

    def __repr__(self) -> str:
        return f"output:\n{self.output}\nstderr:\n{self.stderr}"


def qemu(image, append: str | None, *devices: str, machine: str = MACHINE, modern: bool = True) -> Run:
    cmd = [QEMU, "-M", machine, *(MODERN if modern else []), "-enable-kvm", "-cpu", "host,-arch-capabilities",
           "-m", "128M", "-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio",
           "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-no-reboot", "-kernel", str(image), *devices]
    if append is not None:
        cmd += ["-append", append]
    return Run(subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=60))


def drive(path, index: int = 0, read_only: bool = False, serial: str | None = None) -> list[str]:
    return ["-drive", f"id=d{index},file={path},format=raw,if=none" + (",readonly=on" if read_only else ""),
            "-device", f"virtio-blk-device,drive=d{index}" + (f",serial={serial}" if serial else "")]


RNG = ["-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-device,rng=rng0"]


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
    run = qemu(blk_image, f"write {sector} {count} {seed}", *drive(disk))
    assert run.status == 0, run
    data = pattern(count, seed)
    assert run.lines("write ") == [f"{sector} {count} fnv1a64={fnv1a64(data)}"]
    after = disk.read_bytes()
    assert len(after) == len(before)
    assert after[sector * SECTOR:(sector + count) * SECTOR] == data
    assert after[:sector * SECTOR] == before[:sector * SECTOR]
    assert after[(sector + count) * SECTOR:] == before[(sector + count) * SECTOR:]


def test_read_returns_the_disk_file_bytes(blk_image, disk):
    run = qemu(blk_image, "read 0 1 read 4000 96", *drive(disk))
    assert run.status == 0, run
    content = disk.read_bytes()
    assert run.lines("read ") == [f"0 1 fnv1a64={fnv1a64(content[:SECTOR])}",
                                  f"4000 96 fnv1a64={fnv1a64(content[4000 * SECTOR:4096 * SECTOR])}"]


def test_write_then_read_back_in_one_boot(blk_image, disk):
    run = qemu(blk_image, "write 100 8 99 read 100 8", *drive(disk))
    assert run.status == 0, run
    digest = fnv1a64(pattern(8, 99))
    assert run.lines("write ") == [f"100 8 fnv1a64={digest}"] and run.lines("read ") == [f"100 8 fnv1a64={digest}"]


def test_info_reports_capacity_flags_id_and_where_the_device_is(blk_image, disk):
    run = qemu(blk_image, "info", *drive(disk, serial="pyrite-disk-7"))
    assert run.status == 0, run
    assert int(run.value("capacity")) == disk.stat().st_size // SECTOR
    assert run.value("read_only") == "0"
    assert run.value("flush") == "1"
    assert run.value("id") == "pyrite-disk-7"
    [device] = run.lines("device ")
    # QEMU attaches the first -device to the last of its 24 transports.
    assert device == "0 type=2 version=2 base=0xfeb02e00 size=0x200 irq=-1 source=qemu-microvm"


def test_read_only_drive_refuses_writes_with_ioerr_and_file_is_unchanged(blk_image, disk):
    before = disk.read_bytes()
    run = qemu(blk_image, "info write 0 8 5", *drive(disk, read_only=True))
    assert run.value("read_only") == "1"
    assert run.lines("error ") == ["write -5"]          # VIRTIO_BLK_S_IOERR -> -EIO
    assert run.status == WRITE_EIO, run
    assert disk.read_bytes() == before


def test_read_past_the_end_is_an_io_error(blk_image, disk):
    last = disk.stat().st_size // SECTOR - 1
    run = qemu(blk_image, f"read {last} 1 read {last} 2", *drive(disk))
    assert run.lines("read ") == [f"{last} 1 fnv1a64={fnv1a64(disk.read_bytes()[last * SECTOR:])}"]
    assert run.lines("error ") == ["read -5"]
    assert run.status == READ_EIO, run


def test_legacy_transport_is_refused(blk_image, disk):
    """QEMU's default virtio-mmio is version 1 (legacy): listed, but not driven."""
    run = qemu(blk_image, "info", *drive(disk), modern=False)
    assert run.lines("error ") == [f"open {-95}"]        # -ENOTSUP
    assert run.status == REFUSED, run


def test_no_block_device(blk_image):
    run = qemu(blk_image, "info")
    assert run.lines("error ") == [f"open {-19}"]        # -ENODEV
    assert run.status == NO_DEVICE, run


def test_command_line_devices_are_used_and_hidden_from_main(blk_image, disk, tmp_path):
    """acpi=off: QEMU appends virtio_mmio.device= words for both drives, in -device order."""
    second = tmp_path / "second.img"
    second.write_bytes(os.urandom(64 * SECTOR))
    run = qemu(blk_image, "KEY=v info disk 1 info read 0 64", *drive(disk), *drive(second, 1, serial="two"),
               machine=MACHINE + ",acpi=off")
    assert run.status == 0, run
    assert run.lines("argv[") == ["1]=info", "2]=disk", "3]=1", "4]=info", "5]=read", "6]=0", "7]=64"], run
    assert run.lines("env ") == ["KEY=v"]
    devices = run.lines("device ")[:2]                 # "info" ran twice: the same list twice
    assert [d.split(" source=")[1] for d in devices] == ["cmdline", "cmdline"], run
    assert devices[0].split()[3] != devices[1].split()[3]
    assert [int(x) for x in run.lines("capacity=")] == [disk.stat().st_size // SECTOR, 64]
    assert run.lines("id=") == ["", "two"]
    assert run.lines("read ") == [f"0 64 fnv1a64={fnv1a64(second.read_bytes())}"]


def test_default_command_line_applies_when_only_device_words_are_given(disk, tmp_path):
    image = build_image([GUESTS / "virtio_blk.c"], tmp_path / "baked.elf", cmdline="read 2 1")
    run = qemu(image, None, *drive(disk), machine=MACHINE + ",acpi=off")
    assert run.status == 0, run
    assert run.lines("read ") == [f"2 1 fnv1a64={fnv1a64(disk.read_bytes()[2 * SECTOR:3 * SECTOR])}"]


# ---------------------------------------------------------------- entropy

def test_rng_reads_random_bytes(rng_image):
    n = 100_000
    run = qemu(rng_image, str(n), *RNG)
    assert run.status == 0, run
    assert int(run.value("rng_read")) == n
    assert run.value("all_equal") == "0" and run.value("reads_differ") == "1"
    assert int(run.value("distinct")) == 256           # 100 kB of random bytes miss no value


def test_rng_beside_a_drive(rng_image, disk):
    run = qemu(rng_image, "64", *drive(disk), *RNG)
    assert run.status == 0, run
    assert int(run.value("rng_read")) == 64


def test_rng_missing(rng_image):
    run = qemu(rng_image, "64")
    assert run.lines("error ") == [f"rng {-19}"]
    assert run.status == NO_DEVICE, run
