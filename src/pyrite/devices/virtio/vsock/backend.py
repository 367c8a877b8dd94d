"""Firecracker's hybrid vsock backend: guest vsock streams bridged to host Unix sockets.

- Host to guest: pyrite listens on `uds_path`. A host client connects and writes
  ``CONNECT <port>\\n``; pyrite sends the guest a REQUEST for `port` from a fresh host port,
  and once the guest answers RESPONSE writes ``OK <hostport>\\n`` to the client and bridges
  the two streams. A guest RST (nothing listening) closes the client's socket.
- Guest to host: a guest REQUEST to CID 2 port P connects to the Unix socket
  ``<uds_path>_P``; pyrite answers RESPONSE, or RST when nothing listens there.

This is the only vsock module with sockets. It is driven by the device (send_packet,
has_pending_rx, recv_packet, under the device's lock) and by the event loop through
handler.py (`fd_ready`); it asks for fd readiness through `watcher.set_interest(fd, events)`
(events 0: not watched) and for timeouts through `watcher.call_later(seconds, callback)`.
The per-connection protocol is connection.Connection.
"""
from __future__ import annotations

import os
import select
import socket

from .connection import CLOSED, CONNECTING, ESTABLISHED, Connection
from .packet import HOST_CID, OP_REQUEST, OP_RST, TYPE_STREAM, Header

MAX_CONNECTIONS = 1023            # Firecracker's muxer limit
CONNECT_LINE_MAX = 32             # "CONNECT 4294967295\n" fits
HOST_READ_MAX = 64 * 1024
LOCAL_PORT_BASE = 1 << 30         # host ports handed out for host-initiated connections
CONN_REQUEST_TIMEOUT_S = 2.0      # Firecracker's: a guest that does not answer a REQUEST
CONN_SHUTDOWN_TIMEOUT_S = 2.0     # Firecracker's: a closed guest whose bytes the host does not take

IN, OUT = select.EPOLLIN, select.EPOLLOUT


class VsockBackendError(OSError):
    """The backend could not be set up (the message uses Firecracker's words)."""


def _os_error_text(e: OSError) -> str:
    """Rust's io::Error display, as Firecracker's messages show it."""
    return f"{e.strerror or os.strerror(e.errno)} (os error {e.errno})" if e.errno else str(e)


class _HostStream:
    """A host socket: either waiting for its CONNECT line, or bridged to a connection."""
    __slots__ = ("sock", "fd", "line", "key", "interest", "ok_pending", "write_shut", "shutdown_timer")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.fd = sock.fileno()
        self.line = bytearray()
        self.key: tuple[int, int] | None = None
        self.interest = 0
        self.ok_pending = False
        self.write_shut = False
        self.shutdown_timer = False


class _NoWatcher:
    def set_interest(self, fd: int, events: int) -> None:
        pass

    def call_later(self, delay_s: float, callback) -> None:
        pass


class UnixBackend:
    def __init__(self, uds_path: str, guest_cid: int, watcher=None, log=None):
        self.uds_path = os.fspath(uds_path)
        self.guest_cid = guest_cid
        self.watcher = watcher or _NoWatcher()
        self.log = log or (lambda message: None)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            self.listener.bind(self.uds_path)
        except OSError as e:
            self.listener.close()
            raise VsockBackendError(e.errno, f"Error binding to the host-side Unix socket: "
                                             f"{_os_error_text(e)}") from None
        self.listener.listen(128)
        self.listener.setblocking(False)
        self.conns: dict[tuple[int, int], Connection] = {}      # (host port, guest port)
        self.streams: dict[int, _HostStream] = {}                 # fd -> host socket
        self.stream_of: dict[tuple[int, int], _HostStream] = {}
        self.rst_replies: list[Header] = []
        self._local_port = LOCAL_PORT_BASE
        self._rr = 0
        self.closed = False
        # Firecracker's vsock metric counters that pyrite keeps (cumulative).
        self.counters = dict.fromkeys(("conns_added", "conns_killed", "conns_removed", "tx_write_fails",
                                       "rx_read_fails"), 0)

    def __repr__(self) -> str:
        return f"UnixBackend({self.uds_path!r}, {len(self.conns)} connections)"

    def start(self, watcher) -> None:
        """Begin accepting host connections through `watcher` (the event loop's handler)."""
        self.watcher = watcher
        watcher.set_interest(self.listener.fileno(), IN)

    # -- the device's side --

    def send_packet(self, hdr: Header, payload: bytes) -> None:
        key = (hdr.dst_port, hdr.src_port)
        conn = self.conns.get(key)
        if conn is not None:
            conn.on_guest_packet(hdr, payload)
            if conn.reset_reason:
                self.log(f"vsock {conn.local_port}<->{conn.peer_port}: {conn.reset_reason}")
            self._update(key)
            stream = self.stream_of.get(key)
            if stream is not None and conn.peer_shutdown == 3 and not stream.shutdown_timer:
                stream.shutdown_timer = True
                self.watcher.call_later(CONN_SHUTDOWN_TIMEOUT_S, lambda: self._kill(
                    key, conn, "the host did not take the closed guest's last bytes in time"))
        elif hdr.op == OP_REQUEST:
            self._guest_connect(hdr)
        elif hdr.op != OP_RST:
            self.reply_rst(hdr)        # a packet for no connection (5.10.6.6)

    def reply_rst(self, hdr: Header) -> None:
        if len(self.rst_replies) < 256:     # bounded: a flooding guest loses answers, not memory
            self.rst_replies.append(Header(src_cid=HOST_CID, dst_cid=self.guest_cid, src_port=hdr.dst_port,
                                           dst_port=hdr.src_port, type=TYPE_STREAM, op=OP_RST))

    def has_pending_rx(self) -> bool:
        return bool(self.rst_replies) or any(c.has_packet() for c in self.conns.values())

    def recv_packet(self, max_payload: int):
        if self.rst_replies:
            return self.rst_replies.pop(0), b""
        keys = list(self.conns)
        for i in range(len(keys)):         # round robin, so one busy stream does not starve others
            key = keys[(self._rr + i) % len(keys)]
            conn = self.conns[key]
            if conn.has_packet():
                packet = conn.next_packet(max_payload)
                self._rr = (self._rr + i + 1) % max(1, len(keys))
                self._update(key)
                if packet is not None:
                    return packet
        return None

    def reset_connections(self) -> None:
        """The driver reset the device: every stream ends."""
        for key in list(self.conns):
            self._drop(key)
        self.rst_replies.clear()

    # -- guest-initiated connections --

    def _guest_connect(self, hdr: Header) -> None:
        key = (hdr.dst_port, hdr.src_port)
        if len(self.conns) >= MAX_CONNECTIONS:
            self.log(f"vsock: guest connection to port {hdr.dst_port} refused: {MAX_CONNECTIONS} connections open")
            self.reply_rst(hdr)
            return
        path = f"{self.uds_path}_{hdr.dst_port}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        try:
            sock.connect(path)
        except OSError as e:
            sock.close()
            self.log(f"vsock: guest connection to port {hdr.dst_port}: {path}: {_os_error_text(e)}")
            self.reply_rst(hdr)
            return
        conn = Connection(self.guest_cid, hdr.dst_port, hdr.src_port, host_initiated=False)
        conn.peer_buf_alloc, conn.peer_fwd_cnt = hdr.buf_alloc, hdr.fwd_cnt
        self._add(key, conn, _HostStream(sock))

    def _add(self, key, conn: Connection, stream: _HostStream) -> None:
        stream.key = key
        self.conns[key] = conn
        self.counters["conns_added"] += 1
        self.streams[stream.fd] = stream
        self.stream_of[key] = stream
        self._update(key)

    # -- the event loop's side --

    def fd_ready(self, fd: int, events: int) -> None:
        if fd == self.listener.fileno():
            self._accept()
            return
        stream = self.streams.get(fd)
        if stream is None:
            return
        if stream.key is None:
            self._read_connect_line(stream)
            return
        conn = self.conns[stream.key]
        if events & (IN | select.EPOLLHUP | select.EPOLLERR) and conn.wants_host_data():
            self._read_host(stream, conn)
        elif events & select.EPOLLERR:
            conn.host_reset("host socket error")
        self._update(stream.key)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self.log(f"vsock: accept on {self.uds_path}: {_os_error_text(e)}")
                return
            sock.setblocking(False)
            stream = _HostStream(sock)
            self.streams[stream.fd] = stream
            self._watch(stream, IN)

    def _read_connect_line(self, stream: _HostStream) -> None:
        try:
            data = stream.sock.recv(CONNECT_LINE_MAX - len(stream.line))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close_stream(stream)
            return
        stream.line += data
        end = stream.line.find(b"\n")
        if end < 0:
            if len(stream.line) >= CONNECT_LINE_MAX:
                self.log(f"vsock: host connection sent no CONNECT line in {CONNECT_LINE_MAX} bytes; closed")
                self._close_stream(stream)
            return
        line, rest = bytes(stream.line[:end]), bytes(stream.line[end + 1:])
        port = _parse_connect(line)
        if port is None or len(self.conns) >= MAX_CONNECTIONS:
            self.log(f"vsock: host connection request {line[:CONNECT_LINE_MAX]!r} refused; closed")
            self._close_stream(stream)
            return
        local = self._allocate_local_port()
        conn = Connection(self.guest_cid, local, port, host_initiated=True)
        if rest:
            conn.host_data(rest)
        stream.ok_pending = True
        self._add((local, port), conn, stream)
        self.watcher.call_later(CONN_REQUEST_TIMEOUT_S, lambda: self._kill(
            (local, port), conn, "the guest did not answer the connection request", only_connecting=True))

    def _kill(self, key, conn: Connection, reason: str, only_connecting: bool = False) -> None:
        """A timeout: close the host socket now and tell the guest RST."""
        if self.conns.get(key) is not conn or conn.state == CLOSED:
            return
        if only_connecting and conn.state != CONNECTING:
            return
        self.log(f"vsock {conn.local_port}<->{conn.peer_port}: {reason}; connection reset")
        self.counters["conns_killed"] += 1
        self._drop(key)
        self.rst_replies.append(Header(src_cid=HOST_CID, dst_cid=self.guest_cid, src_port=conn.local_port,
                                       dst_port=conn.peer_port, type=TYPE_STREAM, op=OP_RST))

    def _allocate_local_port(self) -> int:
        in_use = {k[0] for k in self.conns}
        while True:
            self._local_port = LOCAL_PORT_BASE | ((self._local_port + 1) & (LOCAL_PORT_BASE - 1))
            if self._local_port not in in_use:
                return self._local_port

    def _read_host(self, stream: _HostStream, conn: Connection) -> None:
        try:
            data = stream.sock.recv(min(HOST_READ_MAX, conn.peer_credit()))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self.counters["rx_read_fails"] += 1
            conn.host_reset(f"host socket: {_os_error_text(e)}")
            return
        if data:
            conn.host_data(data)
        else:
            conn.host_eof_reached()

    # -- keeping socket, connection and interest in step --

    def _update(self, key) -> None:
        conn, stream = self.conns.get(key), self.stream_of.get(key)
        if conn is None or stream is None:
            return
        if stream.ok_pending and conn.state == ESTABLISHED:
            stream.ok_pending = False
            self._send_all(stream, conn, f"OK {conn.local_port}\n".encode())
        if conn.to_host and conn.state != CLOSED:
            self._flush(stream, conn)
        if conn.state == CLOSED:
            if not conn.control:
                self._drop(key)
            return
        if conn.host_write_shut and not conn.to_host and not stream.write_shut:
            stream.write_shut = True
            try:
                stream.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        if stream.ok_pending:
            self._watch(stream, 0)         # nothing to read until the guest answers
            return
        self._watch(stream, (IN if conn.wants_host_data() else 0) | (OUT if conn.to_host else 0))

    def _send_all(self, stream: _HostStream, conn: Connection, data: bytes) -> None:
        try:
            stream.sock.send(data)         # a fresh socket's buffer takes a dozen bytes
        except OSError as e:
            conn.host_reset(f"host socket: {_os_error_text(e)}")

    def _flush(self, stream: _HostStream, conn: Connection) -> None:
        while conn.to_host:
            try:
                n = stream.sock.send(conn.to_host)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self.counters["tx_write_fails"] += 1
                conn.host_reset(f"host socket: {_os_error_text(e)}")
                return
            conn.host_consumed(n)

    def _watch(self, stream: _HostStream, events: int) -> None:
        if events != stream.interest:
            stream.interest = events
            self.watcher.set_interest(stream.fd, events)

    def _drop(self, key) -> None:
        if self.conns.pop(key, None) is not None:
            self.counters["conns_removed"] += 1
        stream = self.stream_of.pop(key, None)
        if stream is not None:
            self._close_stream(stream)

    def _close_stream(self, stream: _HostStream) -> None:
        self._watch(stream, 0)
        self.streams.pop(stream.fd, None)
        stream.sock.close()

    def close(self) -> None:
        """Close every socket and remove `uds_path` (the VM has ended)."""
        if self.closed:
            return
        self.closed = True
        for stream in list(self.streams.values()):
            stream.sock.close()
        self.streams.clear()
        self.stream_of.clear()
        self.conns.clear()
        self.listener.close()
        try:
            os.unlink(self.uds_path)
        except OSError:
            pass


def _parse_connect(line: bytes) -> int | None:
    """The port of ``CONNECT <port>`` (a decimal u32), or None."""
    word, _, port = line.rstrip(b"\r").partition(b" ")
    if word != b"CONNECT" or not port.isdigit() or len(port) > 10:
        return None
    value = int(port)
    return value if value < 1 << 32 else None


__all__ = ["UnixBackend", "VsockBackendError"]
