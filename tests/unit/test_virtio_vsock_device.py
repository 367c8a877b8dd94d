"""virtio-vsock without KVM: the header layout, the connection's credit and shutdown rules,
the device driven through virtio-mmio rings in a GuestMemory, and the Unix-socket backend
with real sockets in a temporary directory (bad guest input must never raise)."""
from __future__ import annotations

import os
import select
import socket
import struct

import pytest
from virtio_driver import MmioDriver, RingDriver

from pyrite.devices.virtio import mmio
from pyrite.devices.virtio.device import DEVICE_NEEDS_RESET, TYPE_VSOCK
from pyrite.devices.virtio.vsock import connection as csm
from pyrite.devices.virtio.vsock.backend import UnixBackend, VsockBackendError
from pyrite.devices.virtio.vsock.device import Vsock
from pyrite.devices.virtio.vsock.packet import (HDR_SIZE, OP_CREDIT_REQUEST, OP_CREDIT_UPDATE, OP_REQUEST,
                                                OP_RESPONSE, OP_RST, OP_RW, OP_SHUTDOWN, SHUTDOWN_RCV,
                                                SHUTDOWN_SEND, Header, PacketError, parse_tx)
from pyrite.memory import GuestMemory

GUEST_CID = 3


def hdr(op, src_port=1000, dst_port=52, length=0, flags=0, buf_alloc=65536, fwd_cnt=0,
        src_cid=GUEST_CID, dst_cid=2, type_=1) -> Header:
    return Header(src_cid, dst_cid, src_port, dst_port, length, type_, op, flags, buf_alloc, fwd_cnt)


# ----------------------------------------------------------------------------- packet
def test_header_is_the_44_byte_little_endian_struct():
    raw = hdr(OP_RW, 7, 9, 5, 2, 4096, 77).pack()
    assert len(raw) == HDR_SIZE == 44
    assert struct.unpack("<QQIIIHHIII", raw) == (3, 2, 7, 9, 5, 1, OP_RW, 2, 4096, 77)
    assert Header.unpack(raw) == hdr(OP_RW, 7, 9, 5, 2, 4096, 77)


def test_parse_tx_takes_a_header_split_across_buffers_and_checks_len():
    raw = hdr(OP_RW, length=3).pack() + b"abc"
    h, payload = parse_tx([memoryview(raw[:10]), memoryview(raw[10:50]), memoryview(raw[50:])])
    assert (h.op, payload) == (OP_RW, b"abc")
    with pytest.raises(PacketError, match="43 readable bytes"):
        parse_tx([memoryview(raw[:43])])
    with pytest.raises(PacketError, match="header len 9, but only 3"):
        parse_tx([memoryview(hdr(OP_RW, length=9).pack() + b"abc")])
    with pytest.raises(PacketError, match="over the 65536-byte maximum"):
        parse_tx([memoryview(hdr(OP_RW, length=1 << 20).pack())])


# ----------------------------------------------------------------------------- connection
def test_host_data_waits_for_the_guests_credit():
    c = csm.Connection(GUEST_CID, 1 << 30, 52, host_initiated=True)
    assert c.next_packet(100)[0].op == OP_REQUEST
    c.host_data(b"x" * 300)
    assert c.next_packet(100) is None              # not established yet
    c.on_guest_packet(hdr(OP_RESPONSE, buf_alloc=250), b"")
    sizes = []
    while (p := c.next_packet(100)) is not None:
        sizes.append(len(p[1]))
    assert sizes == [100, 100, 50] and c.peer_credit() == 0 and not c.wants_host_data()
    c.on_guest_packet(hdr(OP_CREDIT_UPDATE, buf_alloc=250, fwd_cnt=250), b"")
    h, data = c.next_packet(1000)
    assert (h.op, len(data), h.buf_alloc) == (OP_RW, 50, csm.BUF_ALLOC)


def test_guest_data_beyond_our_credit_resets_and_consumption_sends_credit_updates():
    c = csm.Connection(GUEST_CID, 1 << 30, 52, host_initiated=False)
    assert c.next_packet(0)[0].op == OP_RESPONSE
    c.on_guest_packet(hdr(OP_RW, length=csm.CREDIT_UPDATE_THRESHOLD), b"y" * csm.CREDIT_UPDATE_THRESHOLD)
    c.host_consumed(csm.CREDIT_UPDATE_THRESHOLD)
    h, _ = c.next_packet(0)
    assert (h.op, h.fwd_cnt) == (OP_CREDIT_UPDATE, csm.CREDIT_UPDATE_THRESHOLD)
    c.on_guest_packet(hdr(OP_CREDIT_REQUEST), b"")
    assert c.next_packet(0)[0].op == OP_CREDIT_UPDATE
    c.on_guest_packet(hdr(OP_RW, length=1), b"z" * (csm.BUF_ALLOC + 1))
    assert c.state == csm.CLOSED and c.next_packet(0)[0].op == OP_RST and "credit" in c.reset_reason


def test_shutdown_send_then_eof_from_the_host_ends_with_rst():
    c = csm.Connection(GUEST_CID, 1 << 30, 52, host_initiated=False)
    c.next_packet(0)
    c.on_guest_packet(hdr(OP_RW, length=2), b"hi")
    c.on_guest_packet(hdr(OP_SHUTDOWN, flags=SHUTDOWN_SEND), b"")
    assert c.host_write_shut and c.state == csm.ESTABLISHED     # to_host not flushed yet
    c.host_consumed(2)
    c.host_eof_reached()
    h, _ = c.next_packet(0)
    assert (h.op, h.flags) == (OP_SHUTDOWN, SHUTDOWN_SEND)
    assert c.next_packet(0)[0].op == OP_RST and c.state == csm.CLOSED


@pytest.mark.parametrize("op", [OP_REQUEST, OP_RESPONSE, 99])
def test_unexpected_ops_on_an_established_connection_reset_it(op):
    c = csm.Connection(GUEST_CID, 1 << 30, 52, host_initiated=False)
    c.next_packet(0)
    c.on_guest_packet(hdr(op), b"")
    assert c.state == csm.CLOSED and c.next_packet(0)[0].op == OP_RST


# ----------------------------------------------------------------------------- device + backend
class Guest:
    """A vsock device over a UnixBackend in tmp_path, driven through rings like a guest."""

    def __init__(self, tmp_path):
        self.uds = str(tmp_path / "v.sock")
        self.backend = UnixBackend(self.uds, GUEST_CID)
        self.device = Vsock(GUEST_CID, self.backend)
        self.mem = GuestMemory([(0, 1 << 20)])
        self.log: list[str] = []
        self.t = mmio.MmioTransport(self.device, self.mem, lambda: None, log=self.log.append)
        self.drv = MmioDriver(self.t)
        self.rx = RingDriver(self.mem, size=16, base=0x1000, data=0x20000)
        self.tx = RingDriver(self.mem, size=16, base=0x3000, data=0x60000)
        self.ev = RingDriver(self.mem, size=4, base=0x5000, data=0x90000)
        self.drv.initialise({0: self.rx, 1: self.tx, 2: self.ev})
        self.rx_bufs = {}

    def post_rx(self, n=4, size=HDR_SIZE + 4096):
        for _ in range(n):
            addr = self.rx.alloc(size)
            head = self.rx.add_chain([(addr, size, True)])
            self.rx_bufs[head] = addr
            self.rx.publish(head)
        self.drv.kick(0)

    def send(self, raw: bytes):
        addr = self.tx.alloc(len(raw), raw)
        self.tx.publish(self.tx.add_chain([(addr, len(raw), False)]))
        self.drv.kick(1)

    def received(self) -> list[tuple[Header, bytes]]:
        out = []
        for head, length in self.rx.take_used():
            data = self.mem.read(self.rx_bufs[head], length)
            h = Header.unpack(data)
            out.append((h, data[HDR_SIZE:HDR_SIZE + h.len]))
        return out

    def close(self):
        self.backend.close()


@pytest.fixture
def guest(tmp_path):
    g = Guest(tmp_path)
    yield g
    g.close()


def test_config_space_is_the_guest_cid_and_the_device_id_is_19(guest):
    assert guest.drv.read32(mmio.DEVICE_ID) == TYPE_VSOCK == 19
    assert guest.t.read(mmio.CONFIG, 8) == struct.pack("<Q", GUEST_CID)


def test_bad_guest_packets_are_answered_or_dropped_never_raised(guest):
    guest.post_rx(8)
    guest.send(b"\x01" * 20)                                       # shorter than a header
    guest.send(hdr(OP_RW, length=500).pack() + b"abc")             # len past the buffer
    guest.send(hdr(OP_RW, length=3).pack() + b"abc")               # no such connection
    guest.send(hdr(42, src_port=5).pack())                         # unknown op, no connection
    guest.send(hdr(OP_REQUEST, src_cid=9).pack())                  # spoofed source CID
    guest.send(hdr(OP_RST).pack())                                 # RST for nothing: no answer
    assert not guest.t.status & DEVICE_NEEDS_RESET
    answers = [(h.op, h.dst_port, h.src_port) for h, _ in guest.received()]
    assert answers == [(OP_RST, 1000, 52), (OP_RST, 5, 52), (OP_RST, 1000, 52)]
    assert any("43" in m or "header needs 44" in m for m in guest.log)
    assert any("only 3 payload bytes" in m for m in guest.log)
    assert guest.device.tx_dropped == 2 and guest.device.metrics()["tx_packets_count"] == 4


def test_guest_connect_reaches_the_host_listener_at_uds_path_port(guest):
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(guest.uds + "_1234")
    srv.listen()
    guest.post_rx(4)
    guest.send(hdr(OP_REQUEST, src_port=2000, dst_port=1234, buf_alloc=1 << 16).pack())
    peer, _ = srv.accept()
    guest.send(hdr(OP_RW, src_port=2000, dst_port=1234, length=5).pack() + b"hello")
    assert peer.recv(10) == b"hello"
    peer.sendall(b"world")
    stream = next(iter(guest.backend.streams))
    guest.backend.fd_ready(stream, select.EPOLLIN)
    guest.device.process_rx()
    got = guest.received()
    assert [(h.op, d) for h, d in got] == [(OP_RESPONSE, b""), (OP_RW, b"world")]
    peer.close()
    guest.backend.fd_ready(stream, select.EPOLLIN)      # host EOF: SHUTDOWN(SEND) for the guest
    guest.device.process_rx()
    [(h, _)] = guest.received()
    assert (h.op, h.flags) == (OP_SHUTDOWN, SHUTDOWN_SEND)
    srv.close()


def test_guest_connect_to_a_port_nobody_listens_on_gets_rst(guest):
    guest.post_rx(2)
    guest.send(hdr(OP_REQUEST, src_port=2000, dst_port=4321).pack())
    assert [h.op for h, _ in guest.received()] == [OP_RST]
    assert not guest.backend.conns


def test_host_connect_line_becomes_a_request_and_ok_after_the_response(guest):
    guest.post_rx(4)
    client = socket.socket(socket.AF_UNIX)
    client.connect(guest.uds)
    guest.backend.fd_ready(guest.backend.listener.fileno(), select.EPOLLIN)
    client.sendall(b"CONNECT 52\nearly")
    stream = next(iter(guest.backend.streams))
    guest.backend.fd_ready(stream, select.EPOLLIN)
    guest.device.process_rx()
    [(req, _)] = guest.received()
    assert (req.op, req.dst_port, req.src_port) == (OP_REQUEST, 52, 1 << 30 | 1)
    guest.send(hdr(OP_RESPONSE, src_port=52, dst_port=req.src_port, buf_alloc=1 << 16).pack())
    assert client.recv(100) == f"OK {req.src_port}\n".encode()
    [(h, data)] = guest.received()
    assert (h.op, data) == (OP_RW, b"early")         # bytes sent after the line are kept


@pytest.mark.parametrize("line", [b"CONNECT\n", b"CONNECT abc\n", b"HELLO 52\n", b"CONNECT 99999999999\n",
                                  b"x" * 40])
def test_a_bad_connect_line_closes_the_host_socket(guest, line):
    client = socket.socket(socket.AF_UNIX)
    client.connect(guest.uds)
    guest.backend.fd_ready(guest.backend.listener.fileno(), select.EPOLLIN)
    client.sendall(line)
    for fd in list(guest.backend.streams):
        guest.backend.fd_ready(fd, select.EPOLLIN)
    try:
        closed = client.recv(10) == b""
    except ConnectionResetError:           # closed with our unread bytes still queued
        closed = True
    assert closed and not guest.backend.streams and not guest.backend.conns


def test_an_existing_uds_path_is_refused_and_close_removes_the_socket(tmp_path):
    path = tmp_path / "taken"
    path.write_bytes(b"")
    with pytest.raises(VsockBackendError, match=r"Error binding to the host-side Unix socket: "
                                                r"Address already in use \(os error 98\)"):
        UnixBackend(str(path), GUEST_CID)
    backend = UnixBackend(str(tmp_path / "v.sock"), GUEST_CID)
    assert os.path.exists(tmp_path / "v.sock")
    backend.close()
    assert not os.path.exists(tmp_path / "v.sock")


def test_state_round_trip_and_transport_reset_event(guest):
    state = guest.device.state()
    assert state.guest_cid == GUEST_CID
    other = Vsock.from_state(state, guest.backend)
    assert other.guest_cid == GUEST_CID and other.acked_features == guest.device.acked_features
    addr = guest.ev.alloc(4)
    guest.ev.publish(guest.ev.add_chain([(addr, 4, True)]))
    assert guest.device.send_transport_reset()
    assert guest.ev.take_used()[0][1] == 4 and guest.mem.read(addr, 4) == b"\0\0\0\0"


# ----------------------------------------------------------------------------- configuration
def test_config_file_vsock_reaches_the_resources_and_an_existing_path_is_refused(tmp_path):
    import json

    from pyrite import config as c
    kernel = tmp_path / "vmlinux"
    kernel.write_bytes(b"\x7fELF")
    cfg = tmp_path / "vm.json"
    uds = tmp_path / "v.sock"
    cfg.write_text(json.dumps({"boot-source": {"kernel_image_path": str(kernel)},
                               "vsock": {"guest_cid": 7, "uds_path": str(uds)}}))
    resources = c.VmResources.from_config_file(cfg)
    resources.check_buildable()
    assert (resources.vsock.guest_cid, resources.vsock.uds_path) == (7, str(uds))
    assert resources.network_interfaces == []
    uds.write_bytes(b"")
    r = c.VmResources()
    with pytest.raises(c.ConfigError) as e:
        r.set_vsock(c.Vsock(guest_cid=3, uds_path=str(uds)))
    assert str(e.value) == ("Vsock config error: Cannot create backend for vsock device: Error binding to the "
                            "host-side Unix socket: Address already in use (os error 98)")
    with pytest.raises(c.ConfigError, match="Invalid guest CID 2"):
        r.set_vsock(c.Vsock(guest_cid=2, uds_path=str(tmp_path / "other")))


def test_slot_order_puts_vsock_after_drives_and_before_entropy(tmp_path):
    from pyrite.config import Drive, Entropy, VmResources, Vsock
    from pyrite.vmm.devices import plan_slots
    kernel, disk = tmp_path / "vmlinux", tmp_path / "x"
    kernel.write_bytes(b"\x7fELF")
    disk.write_bytes(bytes(512))
    resources = VmResources.for_kernel(kernel, cmdline="", drives=[Drive.from_path("d", str(disk))],
                                       vsock=Vsock(guest_cid=3, uds_path=str(tmp_path / "v")), entropy=Entropy())
    assert [(s.kind.kind, s.irq) for s in plan_slots(resources)] == [("block", 5), ("vsock", 6), ("entropy", 7)]


def test_a_uds_path_too_long_for_a_unix_socket_is_refused(tmp_path):
    from pyrite.config import ConfigError, VmResources, Vsock
    with pytest.raises(ConfigError, match="no room in a Unix socket address for the _<port> suffix"):
        VmResources().set_vsock(Vsock(guest_cid=3, uds_path="/tmp/" + "v" * 95))
    with pytest.raises(ConfigError) as e:            # Firecracker's bind error, word for word
        VmResources().set_vsock(Vsock(guest_cid=3, uds_path="/tmp/" + "v" * 110))
    assert str(e.value) == ("Vsock config error: Cannot create backend for vsock device: Error binding to the "
                            "host-side Unix socket: path must be shorter than SUN_LEN")


def test_cli_vsock_option():
    from pyrite.cli import UsageError, _parse_run
    from pyrite.config import Vsock
    assert _parse_run(["img", "--vsock", "5,/tmp/x.sock"])["vsock"] == Vsock(guest_cid=5, uds_path="/tmp/x.sock")
    for bad in ("x,/tmp/a", "5", "5,"):
        with pytest.raises(UsageError, match="--vsock"):
            _parse_run(["img", "--vsock", bad])


def test_guest_close_shutdown_both_ways_is_answered_with_rst_after_the_flush():
    c = csm.Connection(GUEST_CID, 1 << 30, 52, host_initiated=False)
    c.next_packet(0)
    c.host_data(b"pending for the guest")
    c.on_guest_packet(hdr(OP_RW, length=3), b"abc")
    c.on_guest_packet(hdr(OP_SHUTDOWN, flags=SHUTDOWN_RCV | SHUTDOWN_SEND), b"")
    assert not c.from_host and c.state == csm.ESTABLISHED   # the guest reads no more; 3 bytes to flush
    c.host_consumed(3)
    h, _ = c.next_packet(0)
    assert (h.op, h.fwd_cnt, c.state, c.reset_reason) == (OP_RST, 3, csm.CLOSED, "")


class RecordingWatcher:
    def __init__(self):
        self.timers = []

    def set_interest(self, fd, events):
        pass

    def call_later(self, delay_s, callback):
        self.timers.append((delay_s, callback))


def test_a_guest_that_never_answers_a_host_connect_is_reset_after_2_s(guest):
    watcher = RecordingWatcher()
    guest.backend.start(watcher)
    client = socket.socket(socket.AF_UNIX)
    client.connect(guest.uds)
    guest.backend.fd_ready(guest.backend.listener.fileno(), select.EPOLLIN)
    client.sendall(b"CONNECT 52\n")
    guest.backend.fd_ready(next(iter(guest.backend.streams)), select.EPOLLIN)
    [(delay, expire)] = watcher.timers
    assert delay == 2.0
    expire()
    assert client.recv(10) == b"" and not guest.backend.conns
    guest.post_rx(2)                # the rx kick runs process_rx, as the handler does after a timer
    assert [h.op for h, _ in guest.received()] == [OP_RST]    # the undelivered REQUEST went with it
    m = guest.device.metrics()
    assert (m["conns_added"], m["conns_killed"], m["conns_removed"]) == (1, 1, 1)


def test_a_closed_guest_whose_bytes_the_host_never_reads_is_reset_after_2_s(guest):
    watcher = RecordingWatcher()
    guest.backend.start(watcher)
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(guest.uds + "_9")
    srv.listen()
    guest.post_rx(4)
    guest.send(hdr(OP_REQUEST, src_port=3000, dst_port=9, buf_alloc=1 << 16).pack())
    peer, _ = srv.accept()          # the host program never reads
    sent = 0
    while not guest.backend.conns[(9, 3000)].to_host:   # fill the socket buffer, then ours
        guest.send(hdr(OP_RW, src_port=3000, dst_port=9, length=60000).pack() + bytes(60000))
        sent += 60000
        assert sent < 64 << 20
    guest.send(hdr(OP_SHUTDOWN, src_port=3000, dst_port=9, flags=SHUTDOWN_RCV | SHUTDOWN_SEND).pack())
    assert (9, 3000) in guest.backend.conns
    [(delay, expire)] = watcher.timers
    expire()
    guest.device.process_rx()       # what VsockHandler does after a timer
    assert not guest.backend.conns
    assert [h.op for h, _ in guest.received()][-1] == OP_RST
    peer.close()
    srv.close()


def test_a_short_rx_chain_is_returned_empty_and_counted_and_the_answer_takes_the_next(guest):
    guest.post_rx(1, size=HDR_SIZE - 1)
    guest.send(hdr(OP_RW, length=3).pack() + b"abc")               # no such connection: RST
    assert guest.rx.take_used() == [(0, 0)]
    assert guest.device.rx_dropped == 1 and any("need >= 44" in m for m in guest.log)
    guest.post_rx(1)
    assert [h.op for h, _ in guest.received()] == [OP_RST]
    assert guest.device.rx_dropped == 1 and guest.device.metrics()["rx_packets_count"] == 1
    assert not guest.t.status & DEVICE_NEEDS_RESET
