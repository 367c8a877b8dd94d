"""Files in real guests: tests/guests/fsh.c built with musl and the library OS, run under
pyrite, QEMU and Firecracker 1.12.1. Its output must be the output of the same program on
the host's Linux; ext2 drives written by a guest must pass e2fsck and read back with debugfs;
`--files` archives arrive as the root file system through each VMM's initrd.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pyrite
from guests import guest_image
from pyrite.unikernel.files import write_archive

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from fs_script import SCRIPT, pattern  # noqa: E402

MKE2FS, E2FSCK, DEBUGFS = (shutil.which(t) or shutil.which(f"/sbin/{t}") for t in ("mke2fs", "e2fsck", "debugfs"))
QEMU = shutil.which("qemu-system-x86_64")
TIMEOUT = 120

pytestmark = [
    pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK), reason="/dev/kvm missing or not accessible"),
    pytest.mark.skipif(not (MKE2FS and E2FSCK and DEBUGFS), reason="e2fsprogs not installed (apt-get install e2fsprogs)"),
]


@pytest.fixture(scope="module")
def fsh():
    return guest_image("fsh")


@pytest.fixture(scope="module")
def linux_output(tmp_path_factory):
    """The script's output from fsh built for the host, on the host's own file system."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    binary = tmp_path_factory.mktemp("host") / "fsh"
    subprocess.run(["gcc", "-O1", str(REPO / "tests" / "guests" / "fsh.c"), "-o", str(binary)], check=True)
    work = tmp_path_factory.mktemp("linux")
    return subprocess.run([str(binary), *SCRIPT], cwd=work, capture_output=True, text=True, check=True).stdout


def boot(image: Path, words: list[str], drives=(), initrd: Path | None = None) -> str:
    """Run fsh under pyrite; its console output (it must end with status 0)."""
    with pyrite.MicroVM(kernel=str(image), cmdline=" ".join(words), initrd=initrd and str(initrd), mem_mib=256,
                        drives=[{"drive_id": f"d{i}", "path": str(p), "read_only": ro}
                                for i, (p, ro) in enumerate(drives)]) as vm:
        vm.start()
        result = vm.wait(TIMEOUT)
        output = vm.console_output.decode(errors="replace")
    assert result is not None and result.reason == "exit-port" and result.status == 0, f"{result}\n{output}"
    return output


def mkfs(path: Path, size: str = "16M", source: Path | None = None) -> Path:
    subprocess.run([MKE2FS, "-q", "-F", "-t", "ext2", *(["-d", str(source)] if source else []), str(path), size],
                   check=True, capture_output=True)
    return path


def fsck(path: Path) -> None:
    proc = subprocess.run([E2FSCK, "-fn", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, f"e2fsck -fn {path}: {proc.returncode}\n{proc.stdout}{proc.stderr}"


def debugfs(path: Path, request: str) -> bytes:
    return subprocess.run([DEBUGFS, "-R", request, str(path)], capture_output=True, check=True).stdout


def after_first_line(output: str) -> str:
    return output.split("\n", 1)[1]


def test_guest_ramfs_behaves_as_linux(fsh, linux_output):
    assert after_first_line(boot(fsh, ["mkdir", "/tmp/w", "cd", "/tmp/w", *SCRIPT])) == linux_output


def test_guest_ext2_behaves_as_linux_and_e2fsck_finds_it_clean(fsh, linux_output, tmp_path):
    disk = mkfs(tmp_path / "disk.img")
    out = boot(fsh, ["cd", "/mnt/vda", "mkdir", "w", "cd", "w", *SCRIPT], drives=[(disk, False)])
    assert after_first_line(out) == linux_output
    fsck(disk)


def test_stdio_on_files_as_on_linux(fsh, tmp_path):
    binary = tmp_path / "fsh-host"
    subprocess.run(["gcc", "-O1", str(REPO / "tests" / "guests" / "fsh.c"), "-o", str(binary)], check=True)
    host = subprocess.run([str(binary), "stdio", "s.txt", "pwd"], cwd=tmp_path, capture_output=True, text=True,
                          check=True).stdout
    disk = mkfs(tmp_path / "disk.img")
    guest = boot(fsh, ["cd", "/tmp", "stdio", "s.txt", "cd", "/mnt/vda", "stdio", "s.txt", "pwd"],
                 drives=[(disk, False)])
    stdio_line = host.splitlines()[0]
    assert "lines=1000 eof=1" in stdio_line and "past=0" in stdio_line and "missing=ENOENT" in stdio_line
    assert guest.splitlines()[:2] == [stdio_line, stdio_line]
    assert "pwd /mnt/vda" in guest
    assert debugfs(disk, "cat /s.txt").endswith(b"line 999\ntail\n")


def test_files_directory_is_the_guest_root(fsh, tmp_path):
    source = tmp_path / "files"
    (source / "data").mkdir(parents=True)
    blob = os.urandom(500_000)
    (source / "data" / "blob").write_bytes(blob)
    (source / "data" / "greeting").write_text("hello from the host\n")
    (source / "latest").symlink_to("data/greeting")
    archive, _ = write_archive(source, tmp_path / "fsh.cpio")
    out = boot(fsh, ["ls", "/", "ls", "/data", "cat", "/data/blob", "show", "/latest", "put", "/data/greeting", "new",
                     "show", "/latest"], initrd=archive)
    assert "ls /: data/ dev/ latest@ tmp/" in out
    assert f"cat /data/blob size=500000 fnv={fnv1a64(blob)}" in out
    assert "show /latest: [hello from the host\n]" in out
    assert "show /latest: [new]" in out


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def test_ext2_files_cross_between_host_tools_and_the_guest(fsh, tmp_path):
    source = tmp_path / "src"
    (source / "dir").mkdir(parents=True)
    blob = os.urandom(2_000_003)
    (source / "dir" / "blob").write_bytes(blob)
    (source / "old-name").write_text("renamed by the guest")
    (source / "doomed").write_text("deleted by the guest")
    disk = mkfs(tmp_path / "disk.img", "32M", source)
    out = boot(fsh, ["cd", "/mnt/vda", "cat", "dir/blob", "write", "dir/made", "5000000", "3", "rename", "old-name",
                     "dir/new-name", "unlink", "doomed", "mkdir", "left-dirty", "write", "held", "100000", "1", "hold", "held",
                     "unlink", "held"], drives=[(disk, False)])
    assert f"cat dir/blob size=2000003 fnv={fnv1a64(blob)}" in out
    fsck(disk)                              # "held", removed while open, was freed at the end
    assert debugfs(disk, "cat /dir/new-name") == b"renamed by the guest"
    listing = debugfs(disk, "ls -l /").decode()
    assert "doomed" not in listing
    assert "left-dirty" in listing          # only in the block cache until exit wrote it back
    assert debugfs(disk, "cat /dir/made") == pattern(5_000_000, 3)


def test_read_only_drive_gives_erofs_and_a_clear_message(fsh, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "kept").write_text("unchanged")
    disk = mkfs(tmp_path / "disk.img", "8M", source)
    before = disk.read_bytes()
    out = boot(fsh, ["cd", "/mnt/vda", "show", "kept", "put", "kept", "x", "mkdir", "d", "unlink", "kept"],
               drives=[(disk, True)])
    assert "show kept: [unchanged]" in out
    assert "pyrite: vda is mounted read-only (a read-only drive): writes fail with EROFS" in out
    assert out.count("ERR EROFS") == 3
    assert disk.read_bytes() == before


# ------------------------------------------------------------------ other VMMs

SHORT = ["cd", "/mnt/vda", "ls", ".", "cat", "data/blob", "write", "from-guest", "300000", "4", "rename", "data/x",
         "data/y", "ls", "/", "show", "/note"]


@pytest.fixture
def vmm_inputs(tmp_path):
    source = tmp_path / "src"
    (source / "data").mkdir(parents=True)
    blob = os.urandom(400_000)
    (source / "data" / "blob").write_bytes(blob)
    (source / "data" / "x").write_text("x")
    disk = mkfs(tmp_path / "disk.img", "16M", source)
    files = tmp_path / "files"
    files.mkdir()
    (files / "note").write_text("from the initrd")
    archive, _ = write_archive(files, tmp_path / "fsh.cpio")
    return disk, archive, fnv1a64(blob)


def check_vmm_run(out: str, disk: Path, blob_hash: str) -> None:
    assert "ls .: data/ lost+found/" in out
    assert f"cat data/blob size=400000 fnv={blob_hash}" in out
    assert "ls /: dev/ mnt/ note  tmp/" in out
    assert "show /note: [from the initrd]" in out
    assert "fsh done failures=0" in out
    fsck(disk)
    assert debugfs(disk, "cat /from-guest") == pattern(300_000, 4)
    assert debugfs(disk, "cat /data/y") == b"x"


@pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 not installed")
@pytest.mark.parametrize("protocol", ["default", "multiboot"])
def test_qemu_initrd_and_virtio_blk(vmm_inputs, protocol):
    """PVH (the initrd as module 0) and Multiboot (the first module)."""
    fsh = guest_image("fsh", protocol=protocol)
    disk, archive, blob_hash = vmm_inputs
    cmd = [QEMU, "-M", "microvm,x-option-roms=off,isa-serial=on,rtc=off", "-global", "virtio-mmio.force-legacy=false",
           "-enable-kvm", "-cpu", "host,-arch-capabilities", "-m", "256M", "-nodefaults", "-no-user-config",
           "-nographic", "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-no-reboot",
           "-kernel", str(fsh), "-initrd", str(archive), "-append", " ".join(SHORT),
           "-drive", f"id=d0,file={disk},format=raw,if=none", "-device", "virtio-blk-device,drive=d0"]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT)
    out = proc.stdout.decode(errors="replace").replace("\r\n", "\n")
    assert proc.returncode == 1, f"QEMU exited {proc.returncode} (status byte 0 gives 1)\n{out}\n{proc.stderr!r}"
    check_vmm_run(out, disk, blob_hash)


def test_firecracker_initrd_path_and_drive(fsh, vmm_inputs, tmp_path, firecracker_bin):
    disk, archive, blob_hash = vmm_inputs
    config = tmp_path / "vm.json"
    config.write_text(json.dumps({
        "boot-source": {"kernel_image_path": str(fsh), "boot_args": " ".join(SHORT), "initrd_path": str(archive)},
        "machine-config": {"vcpu_count": 1, "mem_size_mib": 256},
        "drives": [{"drive_id": "d0", "path_on_host": str(disk), "is_root_device": False, "is_read_only": False}],
    }))
    log = tmp_path / "firecracker.log"
    log.touch()
    proc = subprocess.run([str(firecracker_bin), "--no-api", "--config-file", str(config), "--level", "Warning",
                           "--log-path", str(log)], stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT)
    out = proc.stdout.decode(errors="replace").replace("\r\n", "\n")
    assert proc.returncode == 0, f"firecracker exited {proc.returncode}\n{out}\n{log.read_text()}"
    check_vmm_run(out, disk, blob_hash)
