"""virtio-net device model, driven through virtio-mmio like a guest, over a socket-pair backend
(one datagram = one frame, as a TAP with IFF_VNET_HDR gives them)."""
from __future__ import annotations

import socket
import struct

import pytest
from virtio_driver import F_NEXT, MmioDriver, RingDriver

from pyrite.devices.virtio import mmio
from pyrite.devices.virtio.device import DEVICE_NEEDS_RESET, TYPE_NET, VIRTIO_F_VERSION_1
from pyrite.devices.virtio.net.backend import FdBackend, NetBackendError, TapBackend
from pyrite.devices.virtio.net.device import (RX_QUEUE, TX_QUEUE, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MTU, Net,
                                              format_mac, parse_mac)
from pyrite.devices.virtio.ratelimiter import RateLimiter, TokenBucket
from pyrite.memory import GuestMemory

MAC = bytes.fromhex("0600c0a8fe02")
HDR = 12


def frame(n: int, seed: int = 1) -> bytes:
    """An Ethernet frame of n bytes: broadcast destination, MAC source, then a pattern."""
    return b"\xff" * 6 + MAC + bytes((i * 7 + seed) & 0xFF for i in range(n - 12))


class Clock:
    def __init__(self):
        self.ns = 0

    def __call__(self) -> int:
        return self.ns


class Nic:
    """A Net device with its rx and tx rings initialised, and the host end of its backend."""

    def __init__(self, mac=MAC, mtu=None, rx_limiter=None, tx_limiter=None, size=16):
        self.mem = GuestMemory([(0, 1 << 20)])
        self.host, device_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.host.settimeout(1)
        device_end.setblocking(False)
        self.backend = FdBackend(device_end.detach(), "socketpair")
        self.device = Net(self.backend, guest_mac=mac, mtu=mtu, rx_rate_limiter=rx_limiter,
                          tx_rate_limiter=tx_limiter)
        self.log: list[str] = []
        self.interrupts = 0
        self.t = mmio.MmioTransport(self.device, self.mem, self._irq, log=self.log.append)
        self.drv = MmioDriver(self.t)
        self.rx = RingDriver(self.mem, size=size, base=0x1000, data=0x20000)
        self.tx = RingDriver(self.mem, size=size, base=0x4000, data=0x80000)
        self.features = self.drv.initialise({RX_QUEUE: self.rx, TX_QUEUE: self.tx})

    def _irq(self):
        self.interrupts += 1

    def send(self, data: bytes, split: int | None = None) -> tuple[int, int]:
        """The guest transmits `data` (header included), optionally in two descriptors."""
        addr = self.tx.alloc(len(data), data)
        parts = [(addr, len(data), False)] if split is None else \
            [(addr, split, False), (addr + split, len(data) - split, False)]
        head = self.tx.add_chain(parts)
        self.tx.publish(head)
        self.drv.kick(TX_QUEUE)
        [(used_head, used_len)] = self.tx.take_used()
        assert used_head == head
        return used_head, used_len

    def post_rx(self, *lengths: int) -> tuple[int, list[int]]:
        """One receive chain of device-writable buffers of `lengths`; (head, addresses)."""
        addrs = [self.rx.alloc(n, b"\xaa" * n) for n in lengths]
        head = self.rx.add_chain([(a, n, True) for a, n in zip(addrs, lengths)])
        self.rx.publish(head)
        self.drv.kick(RX_QUEUE)
        return head, addrs

    def close(self):
        self.host.close()
        self.backend.close()
        self.mem.close()


@pytest.fixture
def nic():
    n = Nic()
    yield n
    n.close()


def test_identity_features_and_config_space(nic):
    assert nic.drv.read32(mmio.DEVICE_ID) == TYPE_NET == 1
    assert nic.features >> VIRTIO_NET_F_MAC & 1 and nic.features >> VIRTIO_F_VERSION_1 & 1
    assert not nic.features >> VIRTIO_NET_F_MTU & 1
    config = b"".join(nic.t.read(mmio.CONFIG + i, 1) for i in range(10))
    assert config == MAC + struct.pack("<HH", 0, 1)


def test_no_mac_no_feature_and_mtu_in_config():
    n = Nic(mac=None, mtu=1400)
    try:
        assert not n.features >> VIRTIO_NET_F_MAC & 1
        assert n.features >> VIRTIO_NET_F_MTU & 1
        assert n.t.read(mmio.CONFIG, 4) == bytes(4)
        assert n.t.read(mmio.CONFIG + 10, 2) == struct.pack("<H", 1400)
    finally:
        n.close()


def test_transmit_gathers_the_chain_with_a_clean_header(nic):
    data = frame(100)
    junk_header = bytes(range(1, HDR + 1))        # offloads the device never offered
    _, used_len = nic.send(junk_header + data, split=HDR + 20)
    assert used_len == 0
    assert nic.host.recv(4096) == bytes(HDR) + data
    assert nic.device.metrics()["tx_packets_count"] == 1
    assert nic.device.metrics()["tx_bytes_count"] == HDR + 100
    assert nic.interrupts >= 1


def test_receive_fills_the_chain_and_sets_num_buffers(nic):
    head, (a, b) = nic.post_rx(5, 2000)          # the header spans two descriptors
    data = frame(300, seed=9)
    nic.host.send(b"\x77" * HDR + data)           # whatever header the TAP wrote
    nic.device.process_rx()
    [(used_head, used_len)] = nic.rx.take_used()
    assert (used_head, used_len) == (head, HDR + 300)
    received = nic.mem.read(a, 5) + nic.mem.read(b, HDR + 300 - 5)
    assert received == struct.pack("<BBHHHHH", 0, 0, 0, 0, 0, 0, 1) + data
    assert nic.device.metrics()["rx_packets_count"] == 1


def test_frames_wait_for_buffers_and_come_in_order(nic):
    for seed in (1, 2, 3):
        nic.host.send(bytes(HDR) + frame(60, seed))
    nic.device.process_rx()                      # no buffers yet: nothing read, nothing lost
    assert nic.rx.take_used() == []
    got = []
    for _ in range(3):
        _, (addr,) = nic.post_rx(2048)           # the kick reads the next frame
        [(_, used_len)] = nic.rx.take_used()
        got.append(nic.mem.read(addr + HDR, used_len - HDR))
    assert got == [frame(60, s) for s in (1, 2, 3)]


def test_frame_larger_than_the_buffers_is_dropped_and_the_chain_reused(nic):
    head, (addr,) = nic.post_rx(HDR + 100)
    nic.host.send(bytes(HDR) + frame(500))
    nic.host.send(bytes(HDR) + frame(80, seed=4))
    nic.device.process_rx()
    assert nic.rx.take_used() == [(head, HDR + 80)]
    assert nic.mem.read(addr + HDR, 80) == frame(80, seed=4)
    assert nic.device.metrics()["rx_fails"] == 1
    assert not nic.t.status & DEVICE_NEEDS_RESET


@pytest.mark.parametrize("chain", [
    [(0x30000, 0, True)],                         # zero-length buffer
    [(0x30000, 8, True)],                         # no room for the header
    [(0x30000, 64, False), (0x30100, 2048, True)],  # device-readable buffer
    [(0xFFFFF000, 2048, True)],                   # outside guest memory
])
def test_bad_receive_chains_are_returned_empty(nic, chain):
    head = nic.rx.add_chain(chain)
    good = nic.rx.add_chain([(0x31000, 2048, True)])
    nic.rx.publish(head, good)
    nic.host.send(bytes(HDR) + frame(60))
    nic.drv.kick(RX_QUEUE)
    assert nic.rx.take_used() == [(head, 0), (good, HDR + 60)]
    assert nic.log and not nic.t.status & DEVICE_NEEDS_RESET


@pytest.mark.parametrize("length", [0, HDR, HDR + 13, HDR + 65550 + 1])
def test_bad_transmit_lengths_are_returned_unsent(nic, length):
    addr = 0x40000
    head = nic.tx.add_chain([(addr, length, False)])
    nic.tx.publish(head)
    nic.drv.kick(TX_QUEUE)
    assert nic.tx.take_used() == [(head, 0)]
    assert nic.device.metrics()["tx_malformed_frames"] == 1
    nic.host.settimeout(0)
    with pytest.raises(BlockingIOError):
        nic.host.recv(70000)
    assert not nic.t.status & DEVICE_NEEDS_RESET


def test_transmit_descriptor_loop_and_writable_buffer_do_not_hang(nic):
    loop_head = 0
    nic.tx.write_desc(0, 0x40000, 64, F_NEXT, 1)
    nic.tx.write_desc(1, 0x40100, 64, F_NEXT, 0)   # back to 0
    writable = nic.tx.next_desc = 2
    nic.tx.add_chain([(0x40200, 64, True)])
    nic.tx.publish(loop_head, writable)
    nic.drv.kick(TX_QUEUE)
    assert nic.tx.take_used() == [(loop_head, 0), (writable, 0)]
    assert nic.device.metrics()["tx_malformed_frames"] == 2
    assert not nic.t.status & DEVICE_NEEDS_RESET


def test_avail_index_running_ahead_needs_reset_without_raising(nic):
    nic.tx.set_avail_idx(1000)
    nic.drv.kick(TX_QUEUE)
    assert nic.t.status & DEVICE_NEEDS_RESET


def test_kick_before_driver_ok_is_ignored():
    n = Nic()
    try:
        n.drv.write32(mmio.STATUS, 0)             # reset: not activated any more
        n.drv.kick(TX_QUEUE)
        n.device.process_rx()                     # the TAP became readable: nothing to do
        assert n.log
    finally:
        n.close()


def test_transmit_rate_limiter_holds_frames_until_the_timer():
    clock = Clock()
    limiter = RateLimiter(ops=TokenBucket(1, 0, 1000, clock))
    n = Nic(tx_limiter=limiter)
    try:
        n.send(bytes(HDR) + frame(60, 1))
        addr = n.tx.alloc(HDR + 60, bytes(HDR) + frame(60, 2))
        head = n.tx.add_chain([(addr, HDR + 60, False)])
        n.tx.publish(head)
        n.drv.kick(TX_QUEUE)
        assert n.tx.take_used() == [] and limiter.blocked
        assert n.device.metrics()["tx_rate_limiter_throttled"] == 1
        clock.ns += 1_000_000_000                 # a full refill
        limiter.timer_expired()
        n.drv.kick(TX_QUEUE)
        assert n.tx.take_used() == [(head, 0)]
        assert [n.host.recv(4096)[HDR:] for _ in range(2)] == [frame(60, 1), frame(60, 2)]
    finally:
        n.close()


def test_receive_rate_limiter_defers_a_read_frame():
    clock = Clock()
    limiter = RateLimiter(bandwidth=TokenBucket(100, 0, 1000, clock))
    n = Nic(rx_limiter=limiter)
    try:
        head1, _ = n.post_rx(2048)
        head2, (addr2,) = n.post_rx(2048)
        n.host.send(bytes(HDR) + frame(60, 1))
        n.host.send(bytes(HDR) + frame(60, 2))
        n.device.process_rx()
        assert n.rx.take_used() == [(head1, HDR + 60)]     # 72 tokens of 100; the next one waits
        assert n.device.deferred_rx == (head2, HDR + 60)
        state = n.device.state()
        assert state.deferred_rx == (head2, HDR + 60)
        clock.ns += 1_000_000_000
        limiter.timer_expired()
        n.device.process_rx()
        assert n.rx.take_used() == [(head2, HDR + 60)]
        assert n.mem.read(addr2 + HDR, 60) == frame(60, 2)
    finally:
        n.close()


def test_state_round_trip_and_validation(nic):
    from pyrite.devices.virtio.device import VirtioStateError
    state = nic.device.state()
    again = Net.from_state(state, nic.backend)
    assert again.guest_mac == MAC and again.acked_features == nic.device.acked_features
    state.deferred_rx = (70000, 5)
    with pytest.raises(VirtioStateError, match="deferred receive"):
        Net.from_state(state, nic.backend)


def test_mac_parsing():
    assert parse_mac("06:00:C0:a8:FE:02") == MAC
    assert format_mac(MAC) == "06:00:c0:a8:fe:02"
    for bad in ("06:00:c0:a8:fe", "06-00-c0-a8-fe-02", "zz:00:c0:a8:fe:02", "6:0:c0:a8:fe:02"):
        with pytest.raises(ValueError, match="MAC address"):
            parse_mac(bad)


@pytest.mark.parametrize("name", ["", "x" * 16, "a/b"])
def test_tap_backend_refuses_bad_names(name):
    with pytest.raises(NetBackendError, match="not a valid interface name"):
        TapBackend(name)


def test_net_slots_follow_drives_and_precede_entropy(tmp_path):
    from pyrite.arch.x86_64 import layout
    from pyrite.config import ConfigError, Drive, Entropy, NetworkInterface, VmResources
    from pyrite.microvm import _interface
    from pyrite.vmm.devices import kernel_cmdline, plan_slots
    kernel, disk = tmp_path / "vmlinux", tmp_path / "x"
    kernel.write_bytes(b"\x7fELF")
    disk.write_bytes(bytes(512))

    def configured(nets, drives=()):
        return VmResources.for_kernel(kernel, cmdline="", drives=drives, network_interfaces=nets, entropy=Entropy())
    nets = [_interface("tap0", 0), _interface({"host_dev_name": "tap1", "guest_mac": "06:00:00:00:00:01"}, 1)]
    slots = plan_slots(configured(nets, [Drive.from_path("d", str(disk))]))
    assert [(s.kind.kind, s.irq) for s in slots] == [("block", 5), ("net", 6), ("net", 7), ("entropy", 8)]
    assert [s.config.iface_id for s in slots[1:3]] == ["eth0", "eth1"]
    assert f"virtio_mmio.device=4K@{layout.VIRTIO_MMIO_START + 0x1000:#x}:6" in kernel_cmdline("", slots)
    iface = NetworkInterface
    for bad, message in (([iface(iface_id="a", host_dev_name="t0"), iface(iface_id="a", host_dev_name="t1")],
                          "configured twice"),
                         ([iface(iface_id="a", host_dev_name="t0"), iface(iface_id="b", host_dev_name="t0")],
                          "already in use"),
                         ([iface(iface_id="a", host_dev_name="t0", mtu=20)], "MTU")):
        with pytest.raises(ConfigError, match=message):
            configured(bad)
    with pytest.raises(ConfigError, match="MAC address"):
        _interface({"host_dev_name": "t0", "guest_mac": "nope"}, 0)


def test_cli_net_option():
    from pyrite.cli import UsageError, _parse_net
    from pyrite.config import NetworkInterface
    assert _parse_net("tap0,mac=06:00:00:00:00:01", 2) == NetworkInterface(
        iface_id="eth2", host_dev_name="tap0", guest_mac="06:00:00:00:00:01")
    with pytest.raises(UsageError, match="unknown option"):
        _parse_net("tap0,speed=10", 0)


def test_a_deferred_frame_published_on_the_timer_interrupts_the_driver():
    clock = Clock()
    limiter = RateLimiter(bandwidth=TokenBucket(100, 0, 1000, clock))
    n = Nic(rx_limiter=limiter)
    try:
        head1, _ = n.post_rx(2048)
        head2, _ = n.post_rx(2048)
        n.host.send(bytes(HDR) + frame(60, 1))
        n.host.send(bytes(HDR) + frame(60, 2))
        n.device.process_rx()
        assert n.rx.take_used() == [(head1, HDR + 60)] and n.device.deferred_rx is not None
        n.rx.set_used_event(1)                     # the driver wants to hear of the next entry
        before = n.interrupts
        clock.ns += 1_000_000_000
        limiter.timer_expired()
        n.device.process_rx()                      # no further chain: only the deferred one goes
        assert n.rx.take_used() == [(head2, HDR + 60)] and n.device.deferred_rx is None
        assert n.interrupts == before + 1
        assert n.device.metrics()["rx_packets_count"] == 2
    finally:
        n.close()


def test_a_bad_receive_chain_is_returned_empty_and_the_frame_goes_to_the_next(nic):
    bad, _ = nic.post_rx(HDR - 1)                  # no room for the header
    nic.host.send(bytes(HDR) + frame(60))
    good, (addr,) = nic.post_rx(2048)
    nic.device.process_rx()
    assert nic.rx.take_used() == [(bad, 0), (good, HDR + 60)]
    assert nic.mem.read(addr + HDR, 60) == frame(60)
    assert any(f"chain {bad} is not a device-writable buffer" in m for m in nic.log)
    metrics = nic.device.metrics()
    assert metrics["tx_malformed_frames"] == 0 and metrics["rx_packets_count"] == 1
    assert not nic.t.status & DEVICE_NEEDS_RESET
