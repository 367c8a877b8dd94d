"""Drives and the entropy device through the API on the real VMM: PUT /drives and /entropy
before boot, a guest that writes the disk, PATCH /drives after boot (file swap, errors).

Needs /dev/kvm and gcc (the guests are built with pyrite's library OS); skips, saying which
is missing, only without them.
"""
from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

from api_client import start_vmm
from test_lifecycle import NEEDS_KVM_AND_GCC, ticker_image, ticks, wait_for  # noqa: F401  (fixture)

GUESTS = Path(__file__).resolve().parents[1] / "guests"
pytestmark = NEEDS_KVM_AND_GCC


@pytest.fixture(scope="module")
def virtio_blk_image():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kvm"))
    from guests import guest_image
    return guest_image("virtio_blk")


def lcg_sector(seed: int) -> bytes:
    state, words = seed, []
    for _ in range(64):
        state = (state * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        words.append(state)
    return struct.pack("<64Q", *words)


def test_guest_writes_a_drive_configured_over_the_api(virtio_blk_image, tmp_path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(16 * 512))
    serial = tmp_path / "serial.out"
    vmm = start_vmm(tmp_path)
    try:
        assert vmm.request("PUT", "/boot-source", body={"kernel_image_path": str(virtio_blk_image),
                                                        "boot_args": "info write 2 1 77"}).status == 204
        assert vmm.request("PUT", "/machine-config", body={"vcpu_count": 1, "mem_size_mib": 64}).status == 204
        assert vmm.request("PUT", "/serial", body={"serial_out_path": str(serial)}).status == 204
        r = vmm.request("PUT", "/drives/data", body={"drive_id": "data", "path_on_host": str(disk),
                                                     "is_root_device": False, "is_read_only": False,
                                                     "cache_type": "Writeback"})
        assert r.status == 204, r
        assert vmm.request("PUT", "/entropy", body={}).status == 204
        r = vmm.request("PATCH", "/drives/data", body={"drive_id": "data", "path_on_host": str(disk)})
        assert r.fault == "The requested operation is not supported before starting the microVM."
        r = vmm.request("PUT", "/drives/gone", body={"drive_id": "gone", "path_on_host": str(tmp_path / "gone.img"),
                                                     "is_root_device": False, "is_read_only": True})
        assert (r.status, r.fault) == (400, "Drive config error: Unable to create the virtio block device: Virtio "
                                            "backend error: Error manipulating the backing file: No such file or "
                                            f"directory (os error 2) {tmp_path / 'gone.img'}")
        assert vmm.request("PUT", "/actions", body={"action_type": "InstanceStart"}).status == 204
        assert vmm.proc.wait(timeout=60) == 0, serial.read_text()
    finally:
        vmm.stop()
    out = serial.read_text()
    assert "device 1 type=4" in out and "flush=1" in out, out        # entropy in the next slot
    assert disk.read_bytes()[2 * 512:3 * 512] == lcg_sector(77)


def test_patch_drive_after_boot(ticker_image, tmp_path):  # noqa: F811  (module fixture)
    first, second = tmp_path / "a.img", tmp_path / "b.img"
    first.write_bytes(bytes(4 * 512))
    second.write_bytes(bytes(8 * 512))
    serial = tmp_path / "serial.out"
    vmm = start_vmm(tmp_path)
    try:
        assert vmm.request("PUT", "/boot-source", body={"kernel_image_path": str(ticker_image)}).status == 204
        assert vmm.request("PUT", "/machine-config", body={"vcpu_count": 1, "mem_size_mib": 64}).status == 204
        assert vmm.request("PUT", "/serial", body={"serial_out_path": str(serial)}).status == 204
        assert vmm.request("PUT", "/drives/rootfs", body={"drive_id": "rootfs", "path_on_host": str(first),
                                                          "is_root_device": True,
                                                          "is_read_only": False}).status == 204
        assert vmm.request("PUT", "/actions", body={"action_type": "InstanceStart"}).status == 204
        wait_for(lambda: ticks(serial) >= 1, 60, "the guest to tick")
        r = vmm.request("PATCH", "/drives/rootfs", body={"drive_id": "rootfs", "path_on_host": str(second)})
        assert r.status == 204, r
        [drive] = vmm.request("GET", "/vm/config").json()["drives"]
        assert drive["path_on_host"] == str(second)               # the configuration follows the PATCH
        r = vmm.request("PATCH", "/drives/rootfs", body={"drive_id": "rootfs",
                                                         "path_on_host": str(tmp_path / "gone.img")})
        assert r.status == 400 and r.fault.startswith("Drive config error: Unable to patch the block device: ")
        assert "gone.img" in r.fault
        r = vmm.request("PATCH", "/drives/other", body={"drive_id": "other", "path_on_host": str(second)})
        assert r.status == 400 and "no such drive" in r.fault
        assert vmm.request("GET", "/vm/config").json()["drives"][0]["path_on_host"] == str(second)
        r = vmm.request("PATCH", "/drives/rootfs", body={"drive_id": "rootfs",
                                                         "rate_limiter": {"ops": {"size": 10, "refill_time": 100}}})
        assert r.status == 204, r
        assert vmm.request("GET", "/").json()["state"] == "Running"
    finally:
        vmm.stop()
