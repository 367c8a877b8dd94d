"""pyrite's VMM in its jail, driven through <jail>/run/firecracker.socket like Firecracker: a guest
booted with a drive, a TAP (in the network namespace the jailer joined) and a vsock, all placed
in the jail; a snapshot taken there and loaded in a second jail. Runs with --new-pid-ns and
--daemonize, the production way."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from jailing import GID, PYRITE_JAILER, UID

TAP = "pjtap0"
TIMEOUT = 60


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=check)


@pytest.fixture
def netns():
    """A namespace holding a TAP the jail's uid may open; deleted afterwards."""
    if shutil.which("ip") is None:
        pytest.skip("the `ip` command (iproute2) is not installed")
    name = f"pyrite-jail-{os.getpid()}"
    ip("netns", "del", name, check=False)
    made = ip("netns", "add", name, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {made.stderr.strip()}")
    try:
        tap = ip("-n", name, "tuntap", "add", "dev", TAP, "mode", "tap", "user", str(UID), "group", str(GID),
                 check=False)
        if tap.returncode != 0:
            pytest.skip(f"cannot create a TAP device: {tap.stderr.strip()}")
        yield f"/var/run/netns/{name}"
    finally:
        ip("netns", "del", name, check=False)


def place(source: Path, root: Path, name: str) -> str:
    """Put a file in the jail as a user would (a hard link, a copy across file systems), owned
    by the jail's uid; returns its path as the VMM sees it."""
    dest = root / name
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)
    os.chown(dest, UID, GID)
    return "/" + name


def seccomp_modes(pid: int) -> dict[str, int]:
    """The Seccomp mode of each user thread of `pid`, by name (KVM's kernel worker runs no user code)."""
    modes = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        fields = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines()
                      if ":\t" in line)
        if not fields["Name"].startswith("kvm-"):
            modes[fields["Name"].strip()] = int(fields["Seccomp"])
    return modes


def configure(jail, kernel: Path, boot_args: str, drive: Path) -> None:
    root = jail.root
    for path, body in (
            ("/boot-source", {"kernel_image_path": place(kernel, root, "vmlinux"), "boot_args": boot_args}),
            ("/machine-config", {"vcpu_count": 1, "mem_size_mib": 64}),
            ("/serial", {"serial_out_path": "/serial.out"}),
            ("/drives/data", {"drive_id": "data", "path_on_host": place(drive, root, "data.img"),
                              "is_root_device": False, "is_read_only": False}),
            ("/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": TAP}),
            ("/vsock", {"guest_cid": 3, "uds_path": "/v.sock"})):
        r = jail.request("PUT", path, body=body)
        assert r.status == 204, (path, r, jail.log.read_text())


def wait_serial(jail, needle: bytes, after: int = 0) -> bytes:
    serial = jail.root / "serial.out"
    deadline = time.monotonic() + TIMEOUT
    while needle not in (serial.read_bytes()[after:] if serial.exists() else b""):
        assert time.monotonic() < deadline, (serial.read_bytes()[-500:] if serial.exists() else b"no serial",
                                             jail.log.read_text())
        time.sleep(0.05)
    return serial.read_bytes()


def host_connect(uds: Path, port: int) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(TIMEOUT)
    s.connect(str(uds))
    s.sendall(f"CONNECT {port}\n".encode())
    line = b""
    while not line.endswith(b"\n"):
        b = s.recv(1)
        assert b, f"no OK for CONNECT {port}: {line!r}"
        line += b
    assert line.startswith(b"OK "), line
    return s


def counts(serial: bytes) -> list[int]:
    return [int(c) for c in re.findall(rb"count=(\d+)\n", serial)]


@pytest.fixture
def drive(tmp_path):
    disk = tmp_path / "data.img"
    disk.write_bytes(b"\0" * (1 << 20))
    return disk


JAILER_ARGS = ("--new-pid-ns", "--daemonize")


def test_guest_with_drive_tap_and_vsock_in_the_jail(jails, pyrite_vmm, netns, drive):
    from guests import guest_image
    jail = jails(PYRITE_JAILER, pyrite_vmm, "e2e", [*JAILER_ARGS, "--netns", netns])
    configure(jail, guest_image("virtio_vsock"), "echo 52 1", drive)
    assert jail.request("PUT", "/actions", body={"action_type": "InstanceStart"}).status == 204
    wait_serial(jail, b"listening 52")
    # Jailed and filtered, as Firecracker: every thread runs under its seccomp filter (mode 2).
    threads = seccomp_modes(jail.pid)
    assert "fc_vcpu 0" in threads and "fc_api" in threads, threads
    assert set(threads.values()) == {2}, threads
    config = jail.request("GET", "/vm/config").json()
    assert config["network-interfaces"][0]["host_dev_name"] == TAP
    assert config["drives"][0]["path_on_host"] == "/data.img"
    s = host_connect(jail.root / "v.sock", 52)
    data = os.urandom(50_000)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    got = b""
    while chunk := s.recv(1 << 16):
        got += chunk
    s.close()
    assert got == data
    wait_serial(jail, b"echo conn=0 bytes=50000")   # then the guest ends, and its VMM with it
    assert "bad syscall" not in jail.log.read_text()


def test_snapshot_in_one_jail_loaded_in_another(jails, pyrite_vmm, netns, drive):
    from guests import guest_image
    source = jails(PYRITE_JAILER, pyrite_vmm, "snap-src", [*JAILER_ARGS, "--netns", netns])
    configure(source, guest_image("counter"), "console=ttyS0 -- 100000000", drive)
    assert source.request("PUT", "/actions", body={"action_type": "InstanceStart"}).status == 204
    wait_serial(source, b"count=5\n")
    assert source.request("PATCH", "/vm", body={"state": "Paused"}).status == 204
    r = source.request("PUT", "/snapshot/create", body={"snapshot_path": "/vm.state", "mem_file_path": "/vm.mem"})
    assert r.status == 204, r
    counted = counts((source.root / "serial.out").read_bytes())
    source.kill()   # frees the TAP for the clone
    assert os.stat(source.root / "vm.state").st_uid == UID   # written by the jailed, unprivileged VMM

    target = jails(PYRITE_JAILER, pyrite_vmm, "snap-dst", [*JAILER_ARGS, "--netns", netns])
    for name in ("vm.state", "vm.mem", "vmlinux", "data.img"):
        place(source.root / name, target.root, name)
    assert target.request("PUT", "/serial", body={"serial_out_path": "/serial.out"}).status == 204
    r = target.request("PUT", "/snapshot/load", body={"snapshot_path": "/vm.state",
                                                      "mem_backend": {"backend_type": "File",
                                                                      "backend_path": "/vm.mem"},
                                                      "resume_vm": True})
    assert r.status == 204, (r, target.log.read_text())
    after = wait_serial(target, f"count={counted[-1] + 3}\n".encode())
    # A line cut by the pause ends in the second jail's file: together they count without a gap.
    together = counts((source.root / "serial.out").read_bytes() + after)
    assert together[:counted[-1] + 3] == list(range(1, counted[-1] + 4)), together
