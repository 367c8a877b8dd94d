"""virtio-vsock end to end: tests/guests/virtio_vsock.c (the library OS driver, CPL 3) in a
real microVM with pyrite's hybrid Unix-socket backend, and host programs on real Unix sockets:
host -> guest through ``CONNECT <port>`` on uds_path, guest -> host through ``<uds_path>_<port>``."""
from __future__ import annotations

import os
import socket
import threading

import pytest

import pyrite
from guests import fnv1a64, guest_image
from pyrite.vmm.builder import BuildError

TIMEOUT = 60
GUEST_CID = 3

pytestmark = pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK),
                                reason="/dev/kvm missing or not accessible")


@pytest.fixture(scope="module")
def image():
    return guest_image("virtio_vsock")


@pytest.fixture
def uds(tmp_path):
    return str(tmp_path / "v.sock")


def host_connect(uds: str, port: int) -> socket.socket:
    """Firecracker's host-initiated connection: CONNECT, then the "OK <hostport>" line."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(TIMEOUT)
    s.connect(uds)
    s.sendall(f"CONNECT {port}\n".encode())
    line = b""
    while not line.endswith(b"\n"):
        b = s.recv(1)
        assert b, f"vsock: no OK for CONNECT {port} (got {line!r})"
        line += b
    word, _, hostport = line.decode().strip().partition(" ")
    assert word == "OK" and int(hostport) >= 1 << 30, line
    return s


def echo_round_trip(s: socket.socket, data: bytes) -> bytes:
    """Send everything (then shut down sending) while reading the echo until EOF."""
    sender = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)), daemon=True)
    sender.start()
    got = bytearray()
    while chunk := s.recv(1 << 16):
        got += chunk
    sender.join(TIMEOUT)
    s.close()
    return bytes(got)


def echo_lines(output: str) -> list[dict]:
    out = []
    for line in output.splitlines():
        if line.startswith("echo conn="):
            out.append(dict(word.split("=", 1) for word in line.split()[1:]))
    return out


def test_host_to_guest_echo_several_connections_and_4_mib(image, uds):
    payloads = [os.urandom(1000), os.urandom(300_000), os.urandom(50_000)]
    big = os.urandom(4 << 20)
    with pyrite.MicroVM(kernel=str(image), cmdline=f"echo 52 {len(payloads) + 1}", mem_mib=128,
                        vsock=(GUEST_CID, uds)) as vm:
        vm.start()
        assert vm.wait_for_output(b"listening 52 cid=3", TIMEOUT), vm.console_output
        # Three connections open at once, echoed interleaved by the guest.
        socks = [host_connect(uds, 52) for _ in payloads]
        results = [None] * len(payloads)
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, echo_round_trip(socks[i], payloads[i])))
                   for i in range(len(payloads))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        assert results == payloads
        assert echo_round_trip(host_connect(uds, 52), big) == big
        result = vm.wait(TIMEOUT)
        output = vm.console_output.decode()
    assert result is not None and result.status == 0, output
    lines = echo_lines(output)
    assert sorted((int(x["bytes"]), x["fnv1a64"]) for x in lines) == \
        sorted((len(p), fnv1a64(p)) for p in payloads + [big])
    assert all(x["end"] == "eof" for x in lines)
    assert not os.path.exists(uds), "uds_path must be removed when the VM ends"


def test_guest_to_host_connect_reaches_uds_path_port_listener(image, uds):
    total = 1_000_000
    server = socket.socket(socket.AF_UNIX)
    server.bind(f"{uds}_1234")
    server.listen()
    echoed = []

    def serve():
        conn, _ = server.accept()
        n = 0
        while data := conn.recv(1 << 16):
            conn.sendall(data)
            n += len(data)
        echoed.append(n)
        conn.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    with pyrite.MicroVM(kernel=str(image), cmdline=f"connect 1234 {total}", mem_mib=128,
                        vsock=(GUEST_CID, uds)) as vm:
        vm.start()
        result = vm.wait(TIMEOUT)
        output = vm.console_output.decode()
    t.join(TIMEOUT)
    server.close()
    assert result is not None and result.status == 0, output
    expected = fnv1a64(bytes((j * 7 + j // 251) & 0xFF for j in range(total)))
    assert f"connect sent={total} sent_fnv1a64={expected} received={total} received_fnv1a64={expected}" in output
    assert echoed == [total]


def test_guest_connect_without_host_listener_is_refused(image, uds):
    with pyrite.MicroVM(kernel=str(image), cmdline="connect 999 10", mem_mib=128, vsock=(GUEST_CID, uds)) as vm:
        vm.start()
        result = vm.wait(TIMEOUT)
        output = vm.console_output.decode()
    assert result is not None and result.status == 5, output
    assert "error connect -111" in output                # -ECONNREFUSED after the device's RST


def test_host_that_disconnects_mid_stream_leaves_the_vmm_serving(image, uds):
    with pyrite.MicroVM(kernel=str(image), cmdline="echo 52 2", mem_mib=128, vsock=(GUEST_CID, uds)) as vm:
        vm.start()
        assert vm.wait_for_output(b"listening 52", TIMEOUT), vm.console_output
        s = host_connect(uds, 52)
        s.sendall(os.urandom(200_000))                   # more than is echoed before we go
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")   # close with RST
        s.close()
        data = os.urandom(100_000)
        assert echo_round_trip(host_connect(uds, 52), data) == data
        result = vm.wait(TIMEOUT)
        output = vm.console_output.decode()
    assert result is not None and result.status == 0, output
    first, second = sorted(echo_lines(output), key=lambda x: int(x["conn"]))
    assert first["end"] in ("reset", "eof") and int(first["bytes"]) <= 200_000
    assert (second["end"], int(second["bytes"]), second["fnv1a64"]) == ("eof", len(data), fnv1a64(data))


def test_an_existing_uds_path_is_refused(image, uds):
    open(uds, "wb").close()
    with pytest.raises(BuildError, match=r"Cannot create backend for vsock device: Error binding to the "
                                         r"host-side Unix socket: Address already in use \(os error 98\)"):
        pyrite.MicroVM(kernel=str(image), cmdline="echo 52 1", vsock=(GUEST_CID, uds))
    assert os.path.exists(uds)                           # not ours: left alone


def test_guest_cid_below_3_is_refused(image, uds):
    with pytest.raises(BuildError, match="Invalid guest CID 2: must be 3 or more"):
        pyrite.MicroVM(kernel=str(image), cmdline="echo 52 1", vsock=(2, uds))


def test_cli_vsock_guest_reaches_host(image, uds):
    import subprocess
    import sys
    server = socket.socket(socket.AF_UNIX)
    server.bind(f"{uds}_77")
    server.listen()

    def serve():
        conn, _ = server.accept()
        while data := conn.recv(1 << 16):
            conn.sendall(data)
        conn.close()
    threading.Thread(target=serve, daemon=True).start()
    r = subprocess.run([sys.executable, "-m", "pyrite.cli", "run", str(image), "connect", "77", "5000",
                        "--vsock", f"5,{uds}", "--quiet"], capture_output=True, text=True, timeout=TIMEOUT,
                       stdin=subprocess.DEVNULL)
    server.close()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "connect sent=5000" in r.stdout and "received=5000" in r.stdout
    assert not os.path.exists(uds)


def test_api_put_vsock_then_host_connects(image, tmp_path):
    """PUT /vsock as a Firecracker client sends it, InstanceStart, then CONNECT from the host."""
    import sys
    import time
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
    from api_client import start_vmm
    uds = str(tmp_path / "fc.vsock")
    vmm = start_vmm(tmp_path, "--id", "vsock")
    try:
        for path, body in (("/boot-source", {"kernel_image_path": str(image), "boot_args": "echo 5000 1"}),
                           ("/machine-config", {"vcpu_count": 1, "mem_size_mib": 64}),
                           ("/serial", {"serial_out_path": str(tmp_path / "serial.out")}),
                           ("/vsock", {"guest_cid": 3, "uds_path": uds})):
            r = vmm.request("PUT", path, body=body)
            assert r.status == 204, (path, r)
        assert vmm.request("GET", "/vm/config").json()["vsock"] == {"guest_cid": 3, "uds_path": uds}
        assert vmm.request("PUT", "/actions", body={"action_type": "InstanceStart"}).status == 204
        serial = tmp_path / "serial.out"
        deadline = time.monotonic() + TIMEOUT
        while b"listening 5000" not in (serial.read_bytes() if serial.exists() else b""):
            assert time.monotonic() < deadline, "the guest did not listen"
            time.sleep(0.05)
        data = os.urandom(200_000)
        assert echo_round_trip(host_connect(uds, 5000), data) == data
        r = vmm.request("PUT", "/vsock", body={"guest_cid": 4, "uds_path": uds + "2"})
        assert r.status == 400                    # pre-boot only, as in Firecracker
    finally:
        vmm.stop()
