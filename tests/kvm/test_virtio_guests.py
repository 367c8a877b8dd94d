"""The library OS's virtio drivers (<pyrite/virtio.h>) against two VMMs' virtio-mmio devices:
pyrite's own and QEMU's, the independent reference for the guest side.

The same guests (tests/guests/virtio_blk.c and virtio_rng.c, at CPL 3) run on each runner and
the host checks the disk image file byte for byte. Every case runs on both runners unless it is
marked `@only(...)`: what only one VMM can do.

- pyrite: `pyrite.MicroVM(..., drives=[...], entropy=True)`. The devices sit in Firecracker's
  slots (0xC0001000 + 0x1000 * i, GSI 5 + i) and pyrite appends Firecracker's
  `virtio_mmio.device=4K@ADDR:IRQ` words, which the driver uses and main never sees. A block
  device's id is Firecracker's, made from the backing file (not configurable).
- QEMU `-M microvm` with `-device virtio-blk-device` / `virtio-rng-device`. Its virtio-mmio
  transports are legacy (version 1) unless `-global virtio-mmio.force-legacy=false`; the driver
  only drives version 2. With ACPI on (microvm's default) QEMU does not put the devices on the
  command line and the driver finds them by probing QEMU's transports at 0xFEB00000; with
  `acpi=off` (`cmdline_devices=True` here) QEMU appends `virtio_mmio.device=512@ADDR:IRQ` words.
  A block device's id is its `serial=`. isa-debug-exit turns the guest's status byte b into exit
  status (b << 1) | 1.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

import pyrite
from guests import GUESTS, fnv1a64, guest_image
from pyrite.unikernel.build import build_image

QEMU = shutil.which("qemu-system-x86_64")
SECTOR = 512
TIMEOUT = 60
# Exit statuses of tests/guests/virtio_blk.c and virtio_rng.c.
NO_DEVICE, REFUSED, WRITE_EIO, READ_EIO = 3, 4, 6, 9

pytestmark = pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK),
                                reason="/dev/kvm missing or not accessible")


def pattern(sectors: int, seed: int) -> bytes:
    """What virtio_blk.c writes: 64-bit LCG words, little-endian, advanced before each word."""
    words, state = [], seed
    for _ in range(sectors * SECTOR // 8):
        state = (state * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        words.append(state.to_bytes(8, "little"))
    return b"".join(words)


@dataclass(frozen=True)
class Disk:
    """A virtio-blk disk as a test asks for it; each runner turns it into its own options."""
    path: Path
    read_only: bool = False
    serial: str | None = None          # QEMU only: pyrite's ids come from the backing file


class Run:
    """A finished guest: its console output and the status byte it wrote to the exit port."""

    def __init__(self, output: str, status: int | None, ending: str):
        self.output = output
        self._status = status
        self.ending = ending

    @property
    def status(self) -> int:
        assert self._status is not None, f"the guest did not end by its exit port: {self!r}"
        return self._status

    def lines(self, prefix: str) -> list[str]:
        return [line[len(prefix):] for line in self.output.splitlines() if line.startswith(prefix)]

    def value(self, key: str) -> str:
        found = self.lines(key + "=")
        assert found, f"guest did not report {key}=: {self!r}"
        return found[0]

    def __repr__(self) -> str:
        return f"{self.ending}, output:\n{self.output}"


class PyriteRunner:
    name = "pyrite"
    serial_ids = False
    # The one block device, as the driver reports it (Firecracker's first slot, from the command line).
    first_device = "0 type=2 version=2 base=0xc0001000 size=0x1000 irq=5 source=cmdline"

    @staticmethod
    def drive(disk: Disk, index: int = 0) -> dict:
        return {"drive_id": f"d{index}", "path": str(disk.path), "read_only": disk.read_only}

    def boot(self, image, cmdline: str | None, disks=(), rng: bool = False, *,
             cmdline_devices: bool = False) -> Run:
        # pyrite always puts the devices on the command line: cmdline_devices holds as asked.
        with pyrite.MicroVM(kernel=str(image), cmdline=cmdline or "", mem_mib=128,
                            drives=[self.drive(d, i) for i, d in enumerate(disks)],
                            entropy=True if rng else None) as vm:
            vm.start()
            result = vm.wait(TIMEOUT)
            output = vm.console_output.decode(errors="replace")
        if result is None:
            return Run(output, None, f"no exit in {TIMEOUT} s")
        return Run(output, result.status if result.reason == "exit-port" else None, f"exit {result}")


class QemuRunner:
    name = "qemu"
    serial_ids = True
    # QEMU attaches the first -device to the last of its 24 transports, found by probing.
    first_device = "0 type=2 version=2 base=0xfeb02e00 size=0x200 irq=-1 source=qemu-microvm"
    MACHINE = "microvm,x-option-roms=off,isa-serial=on,rtc=off"
    MODERN = ["-global", "virtio-mmio.force-legacy=false"]
    RNG = ["-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-device,rng=rng0"]

    @staticmethod
    def drive(disk: Disk, index: int = 0) -> list[str]:
        return ["-drive", f"id=d{index},file={disk.path},format=raw,if=none"
                + (",readonly=on" if disk.read_only else ""),
                "-device", f"virtio-blk-device,drive=d{index}" + (f",serial={disk.serial}" if disk.serial else "")]

    def boot(self, image, cmdline: str | None, disks=(), rng: bool = False, *,
             cmdline_devices: bool = False, modern: bool = True) -> Run:
        machine = self.MACHINE + (",acpi=off" if cmdline_devices else "")
        cmd = [QEMU, "-M", machine, *(self.MODERN if modern else []), "-enable-kvm",
               "-cpu", "host,-arch-capabilities", "-m", "128M", "-nodefaults", "-no-user-config",
               "-nographic", "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
               "-no-reboot", "-kernel", str(image)]
        for index, disk in enumerate(disks):
            cmd += self.drive(disk, index)
        if rng:
            cmd += self.RNG
        if cmdline is not None:
            cmd += ["-append", cmdline]
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT)
        output = proc.stdout.decode(errors="replace").replace("\r\n", "\n")
        ending = f"QEMU exited {proc.returncode}, stderr:\n{proc.stderr.decode(errors='replace')}"
        # The test statuses are small: (byte << 1) | 1 is never truncated.
        return Run(output, proc.returncode >> 1 if proc.returncode & 1 else None, ending)


RUNNERS = {"pyrite": PyriteRunner, "qemu": QemuRunner}


@pytest.fixture(params=list(RUNNERS))
def runner(request):
    if request.param == "qemu" and QEMU is None:
        pytest.skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
    return RUNNERS[request.param]()


def only(name: str):
    """Marks a case that only one runner can do."""
    return pytest.mark.parametrize("runner", [name], indirect=True)


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

def test_write_lands_exactly_in_the_disk_file(runner, blk_image, disk):
    """2100 sectors: more than one 1 MiB request, at an odd sector."""
    before = disk.read_bytes()
    sector, count, seed = 37, 2100, 0x1234
    run = runner.boot(blk_image, f"write {sector} {count} {seed}", [Disk(disk)])
    assert run.status == 0, run
    data = pattern(count, seed)
    assert run.lines("write ") == [f"{sector} {count} fnv1a64={fnv1a64(data)}"]
    after = disk.read_bytes()
    assert len(after) == len(before)
    assert after[sector * SECTOR:(sector + count) * SECTOR] == data
    assert after[:sector * SECTOR] == before[:sector * SECTOR]
    assert after[(sector + count) * SECTOR:] == before[(sector + count) * SECTOR:]


def test_read_returns_the_disk_file_bytes(runner, blk_image, disk):
    run = runner.boot(blk_image, "read 0 1 read 4000 96", [Disk(disk)])
    assert run.status == 0, run
    content = disk.read_bytes()
    assert run.lines("read ") == [f"0 1 fnv1a64={fnv1a64(content[:SECTOR])}",
                                  f"4000 96 fnv1a64={fnv1a64(content[4000 * SECTOR:4096 * SECTOR])}"]


def test_write_then_read_back_in_one_boot(runner, blk_image, disk):
    run = runner.boot(blk_image, "write 100 8 99 read 100 8", [Disk(disk)])
    assert run.status == 0, run
    digest = fnv1a64(pattern(8, 99))
    assert run.lines("write ") == [f"100 8 fnv1a64={digest}"] and run.lines("read ") == [f"100 8 fnv1a64={digest}"]


def test_info_reports_capacity_flags_id_and_where_the_device_is(runner, blk_image, disk):
    run = runner.boot(blk_image, "info", [Disk(disk, serial="pyrite-disk-7")])
    assert run.status == 0, run
    assert int(run.value("capacity")) == disk.stat().st_size // SECTOR
    assert run.value("read_only") == "0" and run.value("flush") == "1"
    if runner.serial_ids:
        assert run.value("id") == "pyrite-disk-7"
    else:
        assert 0 < len(run.value("id")) <= 20
    assert run.lines("device ") == [runner.first_device]
    assert run.lines("argv[") == ["1]=info"] and run.lines("env ") == []


def test_read_only_drive_refuses_writes_with_ioerr_and_file_is_unchanged(runner, blk_image, disk):
    before = disk.read_bytes()
    run = runner.boot(blk_image, "info write 0 8 5", [Disk(disk, read_only=True)])
    assert run.value("read_only") == "1"
    assert run.lines("error ") == ["write -5"]          # VIRTIO_BLK_S_IOERR -> -EIO
    assert run.status == WRITE_EIO, run
    assert disk.read_bytes() == before


def test_read_past_the_end_is_an_io_error(runner, blk_image, disk):
    last = disk.stat().st_size // SECTOR - 1
    run = runner.boot(blk_image, f"read {last} 1 read {last} 2", [Disk(disk)])
    assert run.lines("read ") == [f"{last} 1 fnv1a64={fnv1a64(disk.read_bytes()[last * SECTOR:])}"]
    assert run.lines("error ") == ["read -5"]
    assert run.status == READ_EIO, run


def test_no_block_device(runner, blk_image):
    run = runner.boot(blk_image, "info")
    assert run.lines("error ") == [f"open {-19}"]        # -ENODEV
    assert run.status == NO_DEVICE, run


def test_command_line_devices_in_configuration_order_are_used_and_hidden_from_main(runner, blk_image, disk,
                                                                                  tmp_path):
    """Both drives' virtio_mmio.device= words, in configuration order: disk 1 is the second drive."""
    second = tmp_path / "second.img"
    second.write_bytes(os.urandom(64 * SECTOR))
    run = runner.boot(blk_image, "KEY=v info disk 1 info read 0 64", [Disk(disk), Disk(second, serial="two")],
                      cmdline_devices=True)
    assert run.status == 0, run
    assert run.lines("argv[") == ["1]=info", "2]=disk", "3]=1", "4]=info", "5]=read", "6]=0", "7]=64"], run
    assert run.lines("env ") == ["KEY=v"]
    devices = run.lines("device ")[:2]                 # "info" ran twice: the same list twice
    assert [d.split(" source=")[1] for d in devices] == ["cmdline", "cmdline"], run
    assert devices[0].split()[3] != devices[1].split()[3]
    assert [int(x) for x in run.lines("capacity=")] == [disk.stat().st_size // SECTOR, 64]
    ids = run.lines("id=")
    if runner.serial_ids:
        assert ids == ["", "two"]
    else:
        assert len(ids) == 2 and ids[0] != ids[1] and all(0 < len(i) <= 20 for i in ids), ids
    assert run.lines("read ") == [f"0 64 fnv1a64={fnv1a64(second.read_bytes())}"]


def test_default_command_line_applies_when_only_device_words_are_given(runner, disk, tmp_path):
    image = build_image([GUESTS / "virtio_blk.c"], tmp_path / "baked.elf", cmdline="read 2 1")
    run = runner.boot(image, None, [Disk(disk)], cmdline_devices=True)
    assert run.status == 0, run
    assert run.lines("read ") == [f"2 1 fnv1a64={fnv1a64(disk.read_bytes()[2 * SECTOR:3 * SECTOR])}"]


@only("pyrite")
def test_devices_are_found_in_firecracker_slots_without_the_command_line(runner, blk_image, disk, monkeypatch):
    """A VMM that does not append virtio_mmio.device= words: the driver probes the slots."""
    import pyrite.vmm.builder as builder
    monkeypatch.setattr(builder, "kernel_cmdline", lambda base, slots: base)
    run = runner.boot(blk_image, "info read 3 1", [Disk(disk)], rng=True)
    assert run.status == 0, run
    assert run.lines("device ") == ["0 type=2 version=2 base=0xc0001000 size=0x1000 irq=5 source=firecracker-slots",
                                    "1 type=4 version=2 base=0xc0002000 size=0x1000 irq=6 source=firecracker-slots"]
    assert run.lines("read ") == [f"3 1 fnv1a64={fnv1a64(disk.read_bytes()[3 * SECTOR:4 * SECTOR])}"]


@only("pyrite")
def test_swapped_drive_is_seen_by_the_guest(runner, blk_image, disk, tmp_path):
    """Firecracker's PATCH /drives: a new backing file after boot, new capacity and data."""
    other = tmp_path / "other.img"
    other.write_bytes(os.urandom(128 * SECTOR))
    with pyrite.MicroVM(kernel=str(blk_image), cmdline="info wait info read 0 128", mem_mib=128,
                        drives=[runner.drive(Disk(disk))]) as vm:
        vm.start()
        assert vm.wait_for_output(b"waiting\n", timeout=TIMEOUT), vm.console_output
        vm.update_drive("d0", path=str(other))
        vm.send_console_input(b"go\n")
        result = vm.wait(TIMEOUT)
        output = vm.console_output.decode(errors="replace")
    run = Run(output, result.status if result and result.reason == "exit-port" else None, f"exit {result}")
    assert run.status == 0, run
    assert [int(c) for c in run.lines("capacity=")] == [disk.stat().st_size // SECTOR, 128]
    assert run.lines("read ") == [f"0 128 fnv1a64={fnv1a64(other.read_bytes())}"]


@only("qemu")
def test_legacy_transport_is_refused(runner, blk_image, disk):
    """QEMU's default virtio-mmio is version 1 (legacy): listed, but not driven."""
    run = runner.boot(blk_image, "info", [Disk(disk)], modern=False)
    assert run.lines("error ") == [f"open {-95}"]        # -ENOTSUP
    assert run.status == REFUSED, run


# ---------------------------------------------------------------- entropy

def test_rng_reads_random_bytes(runner, rng_image):
    n = 100_000
    run = runner.boot(rng_image, str(n), rng=True)
    assert run.status == 0, run
    assert int(run.value("rng_read")) == n
    assert run.value("all_equal") == "0" and run.value("reads_differ") == "1"
    assert int(run.value("distinct")) == 256           # 100 kB of random bytes miss no value


def test_rng_beside_a_drive(runner, rng_image, disk):
    run = runner.boot(rng_image, "64", [Disk(disk)], rng=True)
    assert run.status == 0, run
    assert int(run.value("rng_read")) == 64


def test_rng_missing(runner, rng_image):
    run = runner.boot(rng_image, "64")
    assert run.lines("error ") == [f"rng {-19}"]
    assert run.status == NO_DEVICE, run
