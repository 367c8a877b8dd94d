"""Devices across a snapshot: a block request in flight at the pause completes after the load
(its rate limiter's budget restored), and a vsock guest is told VIRTIO_VSOCK_EVENT_TRANSPORT_RESET,
drops its connection and takes a new one on the restored VM's socket.

Needs /dev/kvm and gcc; skips, saying which is missing, only without them.
"""
from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kvm"))
from guests import fnv1a64, guest_image  # noqa: E402

import pyrite  # noqa: E402

SECTOR = 512
TIMEOUT = 20


@pytest.fixture(scope="module", autouse=True)
def needs_kvm():
    if not os.path.exists("/dev/kvm"):
        pytest.skip("/dev/kvm is not present")


def test_block_request_in_flight_completes_after_load(tmp_path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(os.urandom(8 * SECTOR))
    # One request per second: the second read waits in the device when the VM is paused.
    drive = {"drive_id": "data", "path": str(disk),
             "rate_limiter": {"ops": {"size": 1, "refill_time": 1000}}}
    commands = " ".join(f"read {i} 1" for i in range(3))
    state, mem = tmp_path / "vm.state", tmp_path / "vm.mem"
    with pyrite.MicroVM(guest_image("virtio_blk"), cmdline=commands, mem_mib=64, drives=[drive]) as vm:
        vm.start()
        assert vm.wait_for_output(b"read 0 1 fnv1a64=", TIMEOUT), vm.console_output
        time.sleep(0.2)
        vm.pause()
        assert b"read 1 1" not in vm.console_output
        assert vm.vmm.device_metrics()["block_data"]["rate_limiter_throttled_events"] >= 1
        vm.snapshot(state, mem)
    with pyrite.MicroVM.restore(state, mem) as restored:
        result = restored.wait(TIMEOUT)
        out = restored.console_output.decode()
    assert result is not None and result.status == 0, out
    data = disk.read_bytes()
    for i in (1, 2):
        assert f"read {i} 1 fnv1a64={fnv1a64(data[i * SECTOR:(i + 1) * SECTOR])}" in out, out


def host_connect(uds: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(TIMEOUT)
    s.connect(uds)
    s.sendall(f"CONNECT {port}\n".encode())
    reply = b""
    while not reply.endswith(b"\n"):
        chunk = s.recv(1)
        assert chunk, f"no OK for CONNECT {port} (got {reply!r})"
        reply += chunk
    assert reply.startswith(b"OK "), reply
    return s


def test_vsock_guest_sees_the_transport_reset_and_reconnects(tmp_path):
    uds, new_uds = str(tmp_path / "v.sock"), str(tmp_path / "restored.sock")
    state, mem = tmp_path / "vm.state", tmp_path / "vm.mem"
    with pyrite.MicroVM(guest_image("virtio_vsock"), cmdline="echo 52 2", mem_mib=64, vsock=(3, uds)) as vm:
        vm.start()
        assert vm.wait_for_output(b"listening 52", TIMEOUT), vm.console_output
        first = host_connect(uds, 52)
        first.sendall(b"before the snapshot")
        assert first.recv(100) == b"before the snapshot"        # echoed: the connection is up
        vm.pause()
        vm.snapshot(state, mem)
    first.settimeout(TIMEOUT)
    assert first.recv(100) == b""                               # the original VM is gone
    with pyrite.MicroVM.restore(state, mem, vsock_uds_path=new_uds) as restored:
        assert restored.wait_for_output(b"end=reset", TIMEOUT), restored.console_output
        second = host_connect(new_uds, 52)
        second.sendall(b"after the load")
        second.shutdown(socket.SHUT_WR)
        echoed = b""
        while chunk := second.recv(100):
            echoed += chunk
        assert echoed == b"after the load"
        result = restored.wait(TIMEOUT)
        out = restored.console_output.decode()
    assert result is not None and result.status == 0, out
    assert f"echo conn=0 bytes=19 fnv1a64={fnv1a64(b'before the snapshot')} end=reset" in out
    assert f"echo conn=1 bytes=14 fnv1a64={fnv1a64(b'after the load')} end=eof" in out
    assert not os.path.exists(new_uds)
