"""A microVM's life through the API, on the real VMM: boot a test guest, pause it (it makes
no progress while paused), resume it, shut it down with SendCtrlAltDel, check the metrics.

Needs /dev/kvm and gcc (to build the guests with pyrite's library OS); without either the tests
skip and say which is missing. Anything else that goes wrong (an import, a library OS that does
not compile) is a failure.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from api_client import REPO, start_vmm
from pyrite.unikernel.build import build_image

GUESTS = Path(__file__).resolve().parents[1] / "guests"
GUEST_SOURCE = Path(__file__).resolve().parent / "guests" / "ticker.c"

# The only reasons to skip (test_drives.py uses them too).
NEEDS_KVM_AND_GCC = [
    pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK), reason="/dev/kvm missing or not accessible"),
    pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed (apt-get install gcc)"),
]
pytestmark = NEEDS_KVM_AND_GCC


@pytest.fixture(scope="module")
def ticker_image(tmp_path_factory):
    return build_image([GUEST_SOURCE], tmp_path_factory.mktemp("guest") / "ticker.elf")


def ticks(path: Path) -> int:
    found = re.findall(rb"tick (\d+)", path.read_bytes()) if path.exists() else []
    return int(found[-1]) + 1 if found else 0


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def configure(vmm, image: Path, tmp_path: Path) -> tuple[Path, Path]:
    serial = tmp_path / "serial.out"
    metrics = tmp_path / "metrics.json"
    metrics.touch()
    assert vmm.request("PUT", "/boot-source", body={"kernel_image_path": str(image)}).status == 204
    assert vmm.request("PUT", "/machine-config", body={"vcpu_count": 1, "mem_size_mib": 64}).status == 204
    assert vmm.request("PUT", "/serial", body={"serial_out_path": str(serial)}).status == 204
    assert vmm.request("PUT", "/metrics", body={"metrics_path": str(metrics)}).status == 204
    return serial, metrics


def test_boot_pause_resume_ctrl_alt_del(ticker_image, tmp_path):
    vmm = start_vmm(tmp_path, "--id", "lifecycle")
    try:
        serial, metrics = configure(vmm, ticker_image, tmp_path)
        r = vmm.request("PUT", "/actions", body={"action_type": "InstanceStart"})
        assert r.status == 204, r
        assert vmm.request("GET", "/").json()["state"] == "Running"
        wait_for(lambda: ticks(serial) >= 2, 60, "the guest to tick")

        # pre-boot only requests are refused now, with Firecracker's words
        r = vmm.request("PUT", "/machine-config", body={"vcpu_count": 2, "mem_size_mib": 64})
        assert (r.status, r.fault) == (400, "The requested operation is not supported after starting the microVM.")
        r = vmm.request("PUT", "/actions", body={"action_type": "InstanceStart"})
        assert r.fault == "The requested operation is not supported after starting the microVM."

        assert vmm.request("PATCH", "/vm", body={"state": "Paused"}).status == 204
        assert vmm.request("GET", "/").json()["state"] == "Paused"
        paused_at = ticks(serial)
        time.sleep(1.0)
        assert ticks(serial) == paused_at, "the guest made progress while paused"
        assert vmm.request("GET", "/version").status == 200  # the API stays responsive

        assert vmm.request("PATCH", "/vm", body={"state": "Resumed"}).status == 204
        assert vmm.request("GET", "/").json()["state"] == "Running"
        wait_for(lambda: ticks(serial) > paused_at + 1, 60, "the guest to tick again after resume")

        assert vmm.request("PUT", "/actions", body={"action_type": "FlushMetrics"}).status == 204
        assert vmm.request("PUT", "/actions", body={"action_type": "SendCtrlAltDel"}).status == 204
        wait_for(lambda: b"ctrl-alt-del" in serial.read_bytes(), 60, "the guest to see Ctrl+Alt+Del")
        assert vmm.proc.wait(timeout=30) == 0
    finally:
        vmm.stop()
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert len(lines) >= 2  # FlushMetrics, then the flush at exit
    assert lines[0]["put_api_requests"]["actions_count"] >= 1
    assert lines[0]["latencies_us"]["pause_vm"] > 0
    assert sum(line["vcpu"]["exit_io_out"] for line in lines) > 0
    assert "Firecracker exiting successfully. exit_code=0" in vmm.log.read_text()


def test_config_file_boot_without_api(ticker_image, tmp_path):
    """--no-api --config-file boots at once, as Firecracker does; the guest runs until
    the process is stopped."""
    serial = tmp_path / "serial.out"
    cfg = tmp_path / "vm.json"
    cfg.write_text(json.dumps({"boot-source": {"kernel_image_path": str(ticker_image)}, "drives": [],
                               "machine-config": {"vcpu_count": 1, "mem_size_mib": 64},
                               "serial": {"serial_out_path": str(serial)}}))
    proc = subprocess.Popen([sys.executable, "-m", "pyrite.api.cli", "--no-api", "--config-file", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        wait_for(lambda: ticks(serial) >= 2, 60, "the guest booted from the config file to tick")
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def virtio_blk_image(tmp_path_factory):
    return build_image([GUESTS / "virtio_blk.c"], tmp_path_factory.mktemp("guest") / "virtio_blk.elf")


def test_flush_metrics_reports_block_and_entropy_counters(virtio_blk_image, tmp_path):
    """Firecracker's device groups: "block_<drive_id>" per drive, "block" their sum, "entropy".
    The guest writes 8 sectors (then flushes) and reads 16 from one drive, then waits on its
    console, so that the counters are read from a live VMM by FlushMetrics."""
    disks = {name: tmp_path / f"{name}.img" for name in ("data", "spare")}
    for disk in disks.values():
        disk.write_bytes(bytes(64 * 512))
    vmm = start_vmm(tmp_path, "--id", "metrics")
    try:
        serial, metrics = configure(vmm, virtio_blk_image, tmp_path)
        r = vmm.request("PUT", "/boot-source", body={"kernel_image_path": str(virtio_blk_image),
                                                     "boot_args": "write 2 8 77 read 0 16 wait"})
        assert r.status == 204, r
        for name, disk in disks.items():
            r = vmm.request("PUT", f"/drives/{name}", body={"drive_id": name, "path_on_host": str(disk),
                                                             "is_root_device": False, "is_read_only": False,
                                                             "cache_type": "Writeback"})
            assert r.status == 204, r
        assert vmm.request("PUT", "/entropy", body={}).status == 204
        assert vmm.request("PUT", "/actions", body={"action_type": "InstanceStart"}).status == 204
        wait_for(lambda: b"waiting" in serial.read_bytes(), 60, "the guest to write, read and wait")
        assert vmm.request("PUT", "/actions", body={"action_type": "FlushMetrics"}).status == 204
        assert vmm.request("PUT", "/actions", body={"action_type": "FlushMetrics"}).status == 204
    finally:
        vmm.stop()
    first, second = [json.loads(line) for line in metrics.read_text().splitlines()[:2]]
    data, spare, total = first["block_data"], first["block_spare"], first["block"]
    assert (data["write_bytes"], data["write_count"]) == (8 * 512, 1)
    assert (data["read_bytes"], data["read_count"]) == (16 * 512, 1)
    assert data["flush_count"] == 1 and data["invalid_reqs_count"] == 0
    assert all(value == 0 for value in spare.values()), spare    # the guest used drive 0 only
    assert total == {name: data[name] + spare[name] for name in data}
    assert set(first["entropy"]) == {"entropy_bytes", "entropy_event_count", "entropy_rate_limiter_throttled"}
    # Incremental counters: nothing happened between the two flushes.
    assert all(value == 0 for group in ("block_data", "block") for value in second[group].values()), second
