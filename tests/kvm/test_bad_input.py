"""What a user gets from `pyrite run` for bad input: one clear message, a non-zero status."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from linux_kernel import KernelUnavailable, debian_vmlinuz

PYRITE = [sys.executable, "-m", "pyrite.cli", "run"]


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*PYRITE, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def tiny_elf(tmp_path_factory) -> Path:
    """A minimal valid ELF64 with a PVH note, built by the benchmark's tools."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from benchmarks.boot import build_tiny_pvh
    return Path(build_tiny_pvh())


def test_missing_kernel_file(tmp_path):
    r = run(str(tmp_path / "nope.elf"))
    assert r.returncode != 0
    assert f"kernel {tmp_path / 'nope.elf'}: The kernel file cannot be opened: No such file or directory" in r.stderr


def test_truncated_elf(tmp_path, tiny_elf):
    cut = tmp_path / "cut.elf"
    cut.write_bytes(tiny_elf.read_bytes()[:100])
    r = run(str(cut))
    assert r.returncode != 0
    assert "cut.elf" in r.stderr and "truncated" in r.stderr, r.stderr


def test_unknown_format(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00not a kernel" * 100)
    r = run(str(junk))
    assert r.returncode != 0
    assert "junk.bin" in r.stderr and "unknown image format" in r.stderr, r.stderr


def test_bzimage_with_corrupt_payload(tmp_path, kvm):
    try:
        vmlinuz = debian_vmlinuz()
    except KernelUnavailable as e:
        pytest.skip(f"cannot fetch Debian's cloud kernel: {e}")
    data = bytearray(vmlinuz.read_bytes())
    setup_size = (data[0x1F1] + 1) * 512
    payload_offset = int.from_bytes(data[0x248:0x24C], "little")
    start = setup_size + payload_offset + 64    # keep the lz4 magic, wreck what follows
    data[start:start + 4096] = bytes(range(256)) * 16
    bad = tmp_path / "vmlinuz-corrupt"
    bad.write_bytes(bytes(data))
    r = run(str(bad))
    assert r.returncode != 0
    assert "vmlinuz-corrupt" in r.stderr and "lz4" in r.stderr, r.stderr


def test_empty_initrd(tmp_path, tiny_elf):
    empty = tmp_path / "initrd.img"
    empty.write_bytes(b"")
    r = run(str(tiny_elf), "--initrd", str(empty))
    assert r.returncode != 0
    assert "initrd.img" in r.stderr and "empty" in r.stderr, r.stderr


@pytest.mark.parametrize("mem,message", [("0", "--mem-mib 0: The memory size (MiB) is either 0"),
                                         (str(1 << 30), "more than this host has")])
def test_memory_sizes_that_cannot_work(tiny_elf, mem, message):
    r = run(str(tiny_elf), "--mem-mib", mem)
    assert r.returncode != 0
    assert message in r.stderr, r.stderr


def test_kernel_that_does_not_fit_in_memory(tiny_elf, tmp_path, kvm):
    # An ELF whose segment is placed at 64 MiB in a 16 MiB guest.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
    from loader_images import Elf, Seg, pvh_note
    big = tmp_path / "high.elf"
    big.write_bytes(Elf([Seg(64 << 20, b"\x90" * 16)], entry=64 << 20, notes=pvh_note(64 << 20)).build())
    r = run(str(big), "--mem-mib", "16")
    assert r.returncode != 0
    assert "high.elf" in r.stderr and "does not fit" in r.stderr, r.stderr


def test_bad_vcpu_count(tiny_elf):
    r = run(str(tiny_elf), "--vcpus", "33")
    assert r.returncode != 0
    assert "--vcpus 33 --mem-mib 128: The number of vCPUs must be greater than 0, less than 32" in r.stderr


def test_unknown_option():
    r = run("--frobnicate")
    assert r.returncode == 2 and "unknown option --frobnicate" in r.stderr
