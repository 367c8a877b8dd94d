"""One vsock stream connection as the host end sees it, sans-I/O (virtio 1.2 5.10.6.3-6).

The connection never touches a socket. The backend feeds it what the guest sent
(`on_guest_packet`) and what the host side produced (`host_data`, `host_eof`, `host_reset`),
takes bytes to write to the host (`to_host`, then `host_consumed(n)`), and asks it for the
next packet to give the guest (`next_packet(max_payload)`).

Credit (5.10.6.3): each side advertises buf_alloc (its receive buffer) and fwd_cnt (bytes it
has consumed). The host may send the guest at most peer_buf_alloc - (tx_cnt - peer_fwd_cnt)
more bytes; a guest that sends more than our buf_alloc allows has broken the protocol and the
connection is reset.
"""
from __future__ import annotations

from collections import deque

from .packet import (HOST_CID, OP_CREDIT_REQUEST, OP_NAMES, OP_CREDIT_UPDATE, OP_REQUEST, OP_RESPONSE,
                     OP_RST, OP_RW, OP_SHUTDOWN, SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM, Header)

BUF_ALLOC = 256 * 1024            # our receive buffer per connection (Firecracker's CONN_TX_BUF_SIZE)
CREDIT_UPDATE_THRESHOLD = BUF_ALLOC // 4   # forwarded bytes after which the guest is told unasked

# States (what the connection waits for).
CONNECTING = "connecting"         # host-initiated: REQUEST sent to the guest, awaiting RESPONSE
ESTABLISHED = "established"
CLOSED = "closed"                 # the backend drops the connection and its socket


class Connection:
    """The host end of one (local_port, peer_port) stream; see the module docstring."""

    def __init__(self, guest_cid: int, local_port: int, peer_port: int, host_initiated: bool):
        self.guest_cid = guest_cid
        self.local_port = local_port       # the host side's port (CID 2)
        self.peer_port = peer_port         # the guest's port
        self.state = CONNECTING if host_initiated else ESTABLISHED
        self.control: deque[tuple[int, int]] = deque()   # (op, flags) to send before data
        self.from_host = bytearray()       # host bytes not yet given to the guest
        self.to_host = bytearray()         # guest bytes not yet written to the host
        self.tx_cnt = 0                    # bytes sent to the guest
        self.fwd_cnt = 0                   # guest bytes written to the host
        self.last_fwd_cnt_sent = 0
        self.peer_buf_alloc = 0
        self.peer_fwd_cnt = 0
        self.peer_shutdown = 0             # SHUTDOWN flags the guest sent
        self.host_eof = False              # the host will send no more
        self.host_shutdown_sent = False    # SHUTDOWN(SEND) queued for the guest
        self.host_write_shut = False       # the backend should shut the host socket's write side
        self.reset_reason = ""
        if host_initiated:
            self.control.append((OP_REQUEST, 0))
        else:
            self.control.append((OP_RESPONSE, 0))

    def __repr__(self) -> str:
        return f"Connection(host {self.local_port} <-> guest {self.peer_port}, {self.state})"

    # -- credit --

    def peer_credit(self) -> int:
        """How many more bytes the guest can take now."""
        return max(0, self.peer_buf_alloc - ((self.tx_cnt - self.peer_fwd_cnt) & 0xFFFFFFFF))

    def wants_host_data(self) -> bool:
        """Whether the backend should read from the host socket (bounded buffering)."""
        return self.state == ESTABLISHED and not self.host_eof and not self.from_host \
            and not self.peer_shutdown & SHUTDOWN_RCV and self.peer_credit() > 0

    def has_packet(self) -> bool:
        if self.control:
            return True
        if self.state != ESTABLISHED:
            return False
        if self.from_host:
            return self.peer_credit() > 0
        return self.host_eof and not self.host_shutdown_sent

    # -- from the guest --

    def on_guest_packet(self, hdr: Header, payload: bytes) -> None:
        """A packet the guest sent on this connection (addresses already matched)."""
        if self.state == CLOSED:
            return
        self.peer_buf_alloc, self.peer_fwd_cnt = hdr.buf_alloc, hdr.fwd_cnt
        op = hdr.op
        if op == OP_RST:
            self.state = CLOSED
            self.reset_reason = "the guest reset the connection"
        elif self.state == CONNECTING:
            if op == OP_RESPONSE:
                self.state = ESTABLISHED
            else:
                self.reset(f"{_op(op)} before the guest answered the connection request")
        elif op == OP_RW:
            if self.peer_shutdown & SHUTDOWN_SEND:
                self.reset("data after the guest's SHUTDOWN(SEND)")
            elif len(self.to_host) + len(payload) > BUF_ALLOC:
                self.reset(f"the guest sent {len(payload)} bytes with {BUF_ALLOC - len(self.to_host)} of credit")
            else:
                self.to_host += payload
        elif op == OP_SHUTDOWN:
            self.peer_shutdown |= hdr.flags & (SHUTDOWN_RCV | SHUTDOWN_SEND)
            if self.peer_shutdown & SHUTDOWN_SEND:
                self.host_write_shut = True       # once to_host is flushed
            if self.peer_shutdown & SHUTDOWN_RCV:
                self.from_host.clear()
            self._maybe_finish()
        elif op == OP_CREDIT_REQUEST:
            self._queue(OP_CREDIT_UPDATE)
        elif op == OP_CREDIT_UPDATE:
            pass                                   # credit fields already taken above
        elif op in (OP_REQUEST, OP_RESPONSE):
            self.reset(f"{_op(op)} on an established connection")
        else:
            self.reset(f"unknown op {op}")

    def reset(self, reason: str) -> None:
        """Tell the guest RST and close (a protocol error or a host failure)."""
        if self.state != CLOSED:
            self.control.clear()
            self.control.append((OP_RST, 0))
            self.from_host.clear()
            self.state = CLOSED
            self.reset_reason = reason

    def _queue(self, op: int, flags: int = 0) -> None:
        if (op, flags) not in self.control:
            self.control.append((op, flags))

    def _maybe_finish(self) -> None:
        # Both directions are done: say RST, which is how a vsock stream ends (5.10.6.6).
        if self.peer_shutdown == SHUTDOWN_RCV | SHUTDOWN_SEND and not self.to_host:
            self.reset("closed by the guest")
            self.reset_reason = ""
        elif self.peer_shutdown & SHUTDOWN_SEND and self.host_eof and not self.to_host \
                and not self.from_host and not self.control:
            self.reset("closed by both ends")
            self.reset_reason = ""

    # -- from the host side --

    def host_data(self, data: bytes) -> None:
        if self.state != CLOSED and not self.peer_shutdown & SHUTDOWN_RCV:
            self.from_host += data

    def host_eof_reached(self) -> None:
        """The host closed its write side: SHUTDOWN(SEND) once buffered bytes are given.

        Firecracker sends SHUTDOWN(RCV|SEND) here, which ends a host's half-closed stream
        (shutdown(SHUT_WR), then read the answer); pyrite keeps the other direction open
        until the host socket fails or the guest closes."""
        self.host_eof = True

    def host_reset(self, reason: str) -> None:
        self.reset(reason)

    def host_consumed(self, n: int) -> None:
        """The backend wrote the first `n` bytes of `to_host` to the host."""
        del self.to_host[:n]
        self.fwd_cnt = (self.fwd_cnt + n) & 0xFFFFFFFF
        if (self.fwd_cnt - self.last_fwd_cnt_sent) & 0xFFFFFFFF >= CREDIT_UPDATE_THRESHOLD:
            self._queue(OP_CREDIT_UPDATE)
        if not self.to_host:
            self._maybe_finish()

    # -- to the guest --

    def _header(self, op: int, flags: int = 0, length: int = 0) -> Header:
        self.last_fwd_cnt_sent = self.fwd_cnt
        return Header(src_cid=HOST_CID, dst_cid=self.guest_cid, src_port=self.local_port,
                      dst_port=self.peer_port, len=length, type=TYPE_STREAM, op=op, flags=flags,
                      buf_alloc=BUF_ALLOC, fwd_cnt=self.fwd_cnt)

    def next_packet(self, max_payload: int) -> tuple[Header, bytes] | None:
        """The next packet for the guest, or None. Control packets go first."""
        if self.control:
            op, flags = self.control.popleft()
            return self._header(op, flags), b""
        if self.state != ESTABLISHED:
            return None
        if self.from_host:
            n = min(len(self.from_host), self.peer_credit(), max_payload)
            if n > 0:
                data = bytes(self.from_host[:n])
                del self.from_host[:n]
                self.tx_cnt = (self.tx_cnt + n) & 0xFFFFFFFF
                return self._header(OP_RW, 0, n), data
            return None
        if self.host_eof and not self.host_shutdown_sent:
            self.host_shutdown_sent = True
            self._maybe_finish()
            return self._header(OP_SHUTDOWN, SHUTDOWN_SEND), b""
        return None


def _op(op: int) -> str:
    return OP_NAMES.get(op, f"op {op}")
