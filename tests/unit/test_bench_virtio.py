"""benchmarks/virtio.py's own parts: the guest's result lines, CPU per GiB against the idle
baseline, and the two VMM command lines. No KVM needed."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import virtio  # noqa: E402

OUTPUT = ("tsc_hz=2000000000 source=kvmclock\n"
          "result seqread bytes=1073741824 ops=8192 cycles=1000000000\n"
          "result flush bytes=0 ops=1 cycles=20000000\n")


def test_guest_results_are_converted_with_the_guests_tsc_frequency():
    results = virtio.parse_guest_output(OUTPUT)
    assert results["seqread"] == virtio.GuestResult(1 << 30, 8192, 0.5)
    assert results["flush"].seconds == 0.01


def test_output_without_tsc_frequency_is_refused():
    with pytest.raises(virtio.BenchError, match="tsc_hz"):
        virtio.parse_guest_output("result seqread bytes=1 ops=1 cycles=1\n")


def test_cpu_per_gib_subtracts_the_median_idle_boot():
    one_gib = {"seqread": virtio.GuestResult(1 << 30, 8192, 0.5)}
    half_gib = {"seqread": virtio.GuestResult(1 << 29, 4096, 0.25)}
    idle = virtio.Series([virtio.Run(40.0, 50.0, {}), virtio.Run(50.0, 60.0, {}), virtio.Run(60.0, 70.0, {})])
    work = virtio.Series([virtio.Run(650.0, 700.0, one_gib), virtio.Run(350.0, 400.0, half_gib),
                          virtio.Run(750.0, 800.0, one_gib)])
    assert virtio.cpu_ms_per_gib(work, idle, "seqread") == 600.0
    assert virtio.cpu_ms_per_gib(virtio.Series(), idle, "seqread") is None


def test_both_vmms_get_the_same_disk_and_qemu_gets_modern_transports(tmp_path):
    image, disk = tmp_path / "g.elf", tmp_path / "disk.img"
    pyrite, ok = virtio.vmm_command("pyrite", image, disk, ["seqread", "8"], None)
    assert ok == 0 and pyrite[pyrite.index("--drive") + 1] == str(disk) and "--entropy" in pyrite
    try:
        qemu, ok = virtio.vmm_command("qemu", image, disk, ["seqread", "8"], None)
    except virtio.refs.RefError:
        pytest.skip("qemu-system-x86_64 not installed")
    assert ok == 1                                       # isa-debug-exit: (0 << 1) | 1
    assert "virtio-mmio.force-legacy=false" in qemu and f"id=d0,file={disk},format=raw,if=none" in qemu
    assert qemu[qemu.index("-append") + 1] == "seqread 8"
