"""virtio-net end to end: pyrite's device over a TAP, driven by the library OS's driver
(tests/guests/virtio_net.c, at CPL 3), inside a network namespace this test makes and
deletes. The TAP's address and the guest's are private addresses that exist only inside
that namespace: no frame leaves it.

The guest first ARPs for the host side and pings it (guest -> host), then answers the
host's `ping` (host -> guest). pyrite runs as `ip netns exec NS python -m pyrite.cli run
IMAGE --net TAP,mac=MAC`, so the CLI's --net and the TAP backend are what is tested.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading

import pytest

from guests import guest_image

TAP = "pyrtap0"
HOST_IP, GUEST_IP = "192.168.254.1", "192.168.254.2"
GUEST_MAC = "06:00:c0:a8:fe:02"
PINGS = 3
TIMEOUT = 60


def _why_no_netns() -> str | None:
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "/dev/kvm missing or not accessible"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun does not exist (no TUN/TAP support)"
    if not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        return "/dev/net/tun is not readable and writable by this user"
    return None


pytestmark = pytest.mark.skipif(_why_no_netns() is not None, reason=_why_no_netns() or "")


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=check)


@pytest.fixture
def netns():
    """A fresh namespace `pyrite-test-<pid>` holding TAP with HOST_IP/24, up; always deleted."""
    name = f"pyrite-test-{os.getpid()}"
    ip("netns", "del", name, check=False)        # a leftover from a killed run of this process id
    made = ip("netns", "add", name, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace (needs CAP_SYS_ADMIN and CAP_NET_ADMIN): "
                    f"{made.stderr.strip()}")
    try:
        tap = ip("-n", name, "tuntap", "add", "dev", TAP, "mode", "tap", check=False)
        if tap.returncode != 0:
            pytest.skip(f"cannot create a TAP device in {name}: {tap.stderr.strip()}")
        ip("-n", name, "addr", "add", f"{HOST_IP}/24", "dev", TAP)
        ip("-n", name, "link", "set", TAP, "up")
        ip("-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        ip("netns", "del", name, check=False)


class Lines:
    """A process's stdout, read line by line on a thread, waitable for a line."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream) -> None:
        for raw in stream:
            with self.cond:
                self.lines.append(raw.decode(errors="replace").rstrip("\r\n"))
                self.cond.notify_all()
        with self.cond:
            self.lines.append(None)
            self.cond.notify_all()

    def wait_for(self, text: str, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: text in self.lines or None in self.lines, timeout) \
                and text in self.lines

    def starting(self, prefix: str) -> list[str]:
        return [line[len(prefix):] for line in self.lines if line and line.startswith(prefix)]

    @property
    def text(self) -> str:
        return "\n".join(line for line in self.lines if line is not None)


# The host side's ping, in Python over a raw ICMP socket (no ping binary needed): sends
# `count` echo requests to `ip`, one at a time, and prints "reply seq=<n> bytes=<payload>"
# for each matching reply; exit status 0 when every request got its reply within 5 s.
PINGER = r"""
import os, select, socket, struct, sys
dst, count = sys.argv[1], int(sys.argv[2])
ident, payload = os.getpid() & 0xFFFF, bytes(range(48))

def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
answered = 0
for seq in range(1, count + 1):
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    packet = struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, seq) + payload
    sock.sendto(packet, (dst, 0))
    while select.select([sock], [], [], 5)[0]:
        data, (src, _) = sock.recvfrom(2048)
        icmp = data[(data[0] & 0xF) * 4:]
        kind, _, _, rid, rseq = struct.unpack("!BBHHH", icmp[:8])
        if src == dst and kind == 0 and rid == ident and rseq == seq and icmp[8:] == payload:
            print("reply seq=%d bytes=%d" % (seq, len(icmp) - 8), flush=True)
            answered += 1
            break
sys.exit(0 if answered == count else 1)
"""


def tap_mac(netns: str) -> str:
    info = json.loads(ip("-n", netns, "-j", "link", "show", TAP).stdout)
    return info[0]["address"]


def test_guest_and_host_exchange_arp_and_ping(netns):
    image = guest_image("virtio_net")
    cmd = ["ip", "netns", "exec", netns, sys.executable, "-m", "pyrite.cli", "run", str(image),
           "--net", f"{TAP},mac={GUEST_MAC}", "--", GUEST_IP, HOST_IP, str(PINGS)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = Lines(proc.stdout)
    try:
        assert out.wait_for("ready", TIMEOUT), f"guest never got ready:\n{out.text}"
        # guest -> host: the guest learnt the TAP's MAC by ARP and got an echo reply.
        assert out.starting("mac=") == [GUEST_MAC]
        assert out.starting("arp_reply ") == [f"ip={HOST_IP} mac={tap_mac(netns)}"]
        assert out.starting("ping_reply ") == ["seq=1 ttl=64 bytes=56 payload_ok=1"]
        # The host learnt the guest's MAC from its ARP request (while the TAP is up: closing it
        # drops the carrier and flushes the entry).
        neigh = ip("-n", netns, "neigh", "show", GUEST_IP, "dev", TAP).stdout
        assert GUEST_MAC in neigh, neigh
        # host -> guest: the host's ping, answered by the guest, which then exits 0.
        ping = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", PINGER, GUEST_IP,
                               str(PINGS)], capture_output=True, text=True, timeout=TIMEOUT)
        assert ping.returncode == 0, ping.stdout + ping.stderr + out.text
        assert ping.stdout.splitlines() == [f"reply seq={i} bytes=48" for i in range(1, PINGS + 1)]
        assert proc.wait(TIMEOUT) == 0, out.text
        assert out.starting("echo_served=") == [str(i) for i in range(1, PINGS + 1)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_missing_tun_device_or_bad_name_is_a_clear_error(netns):
    image = guest_image("virtio_net")
    r = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-m", "pyrite.cli", "run", str(image),
                        "--net", "x" * 20, "--", GUEST_IP, HOST_IP, "0"],
                       capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    assert r.returncode != 0
    assert f"tap {'x' * 20!r}: not a valid interface name" in r.stderr, r.stderr
