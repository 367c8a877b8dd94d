"""The API server: a Unix socket, one thread, many keep-alive connections.

The thread polls the listening socket and every connection; each connection feeds a
sans-I/O `HttpConnection` and each complete request goes to the `ApiController`. Nothing
a client does can stop it: slow clients only hold their own buffers (bounded by the
payload limit), a half-closed client still gets its answers, a malformed request gets
micro_http's 400 and its connection is closed, and a write that would block is queued.
"""
from __future__ import annotations

import errno
import os
import select
import threading

# The C module behind `socket`: the same socket objects, without socket.py's enum and
# selectors imports, which cost several ms of every VMM's way to its first answer.
import _socket

from .http import CLOSED, NEED_DATA, Continue, HttpConnection, ProtocolError, Request
from .logger import LOGGER

MAX_CONNECTIONS = 64
READ_SIZE = 65536


class ApiSocketError(Exception):
    """The API socket cannot be opened; the text is Firecracker's."""


def bind_api_socket(path: str) -> _socket.socket:
    """Firecracker refuses a path that exists (it may be another VMM's socket)."""
    if os.path.lexists(path):
        raise ApiSocketError(f"Failed to open the API socket at: {path}. Check that it is not already used.")
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        sock.bind(path)
        sock.listen(128)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ApiSocketError(f"Failed to open the API socket at: {path}. Check that it is not already used.") \
                from None
        from pyrite.config import io_error_text
        raise ApiSocketError(f"Failed to bind and run the HTTP server: IO error: {io_error_text(e)}") from None
    sock.setblocking(False)
    return sock


class _Client:
    __slots__ = ("sock", "http", "out", "closing", "read_closed")

    def __init__(self, sock: _socket.socket, max_payload: int):
        self.sock = sock
        self.http = HttpConnection(max_payload)
        self.out = bytearray()
        self.closing = False      # close once `out` is written
        self.read_closed = False  # the peer shut down its sending side


class ApiServer:
    def __init__(self, path: str, controller, *, max_payload: int = 51200, logger=LOGGER):
        self.path = path
        self.controller = controller
        self.max_payload = max_payload
        self.logger = logger
        self.listener: _socket.socket | None = None
        self.thread: threading.Thread | None = None
        self._clients: dict[int, _Client] = {}
        self._poll = select.poll()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._stopping = False
        self._calls: list[tuple[object, threading.Event]] = []   # run_in_thread's, for the loop

    def bind(self) -> "ApiServer":
        self.listener = bind_api_socket(self.path)
        return self

    def start(self) -> "ApiServer":
        """Serve on a thread named like Firecracker's ("fc_api")."""
        if self.listener is None:
            self.bind()
        self.thread = threading.Thread(target=self.serve_forever, name="fc_api", daemon=True)
        self.thread.start()
        return self

    def stop(self, unlink: bool = True) -> None:
        self._stopping = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=5)
        if unlink:
            try:
                os.unlink(self.path)
            except OSError:
                pass

    def run_in_thread(self, fn, timeout: float = 5) -> bool:
        """Run `fn()` on the server's thread between two requests (installing its seccomp
        filter); returns once it ran, False if it did not within `timeout` seconds."""
        if self.thread is None or threading.current_thread() is self.thread:
            fn()
            return True
        done = threading.Event()
        self._calls.append((fn, done))
        os.write(self._wake_w, b"x")
        return done.wait(timeout)

    # ------------------------------------------------------------------ the loop
    def serve_forever(self) -> None:
        poll = self._poll
        poll.register(self.listener.fileno(), select.POLLIN)
        poll.register(self._wake_r, select.POLLIN)
        self.logger.info("API server started.")
        try:
            while not self._stopping:
                for fd, events in poll.poll():
                    if fd == self._wake_r:
                        self._run_calls()
                        continue
                    if fd == self.listener.fileno():
                        self._accept()
                        continue
                    client = self._clients.get(fd)
                    if client is None:
                        continue
                    try:
                        if events & (select.POLLIN | select.POLLHUP | select.POLLERR):
                            self._read(client)
                        if events & select.POLLOUT or client.out:
                            self._write(client)
                    except OSError:
                        self._close(client)
                        continue
                    self._update(client)
        finally:
            for client in list(self._clients.values()):
                self._close(client)
            self.listener.close()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _run_calls(self) -> None:
        try:
            os.read(self._wake_r, 64)
        except BlockingIOError:
            pass
        while self._calls:
            fn, done = self._calls.pop(0)
            try:
                fn()
            finally:
                done.set()

    def _accept(self) -> None:
        while True:
            try:
                fd, _ = self.listener._accept()  # accept4(SOCK_CLOEXEC); socket.accept() wraps it alike
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # EMFILE and friends: keep serving who we have
                self.logger.error(f"API server cannot accept a connection: {e}")
                return
            conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, fd)   # no getsockname/getsockopt
            if len(self._clients) >= MAX_CONNECTIONS:
                conn.close()
                continue
            conn.setblocking(False)
            client = _Client(conn, self.max_payload)
            self._clients[conn.fileno()] = client
            self._poll.register(conn.fileno(), select.POLLIN)

    def _read(self, client: _Client) -> None:
        if not client.read_closed:
            try:
                data = client.sock.recv(READ_SIZE)
            except (BlockingIOError, InterruptedError):
                data = None
            except ConnectionResetError:
                data = b""
            if data is not None:
                client.http.receive_data(data)
                if not data:
                    client.read_closed = True
        self._process(client)

    def _process(self, client: _Client) -> None:
        while not client.closing:
            event = client.http.next_event()
            if event is NEED_DATA:
                return
            if event is CLOSED:
                client.closing = True
                return
            if isinstance(event, Continue):
                client.out += HttpConnection.interim_continue()
                continue
            if isinstance(event, ProtocolError):
                self.logger.error(f"API server received an invalid request: {event.message}")
                client.out += event.answer
                client.closing = True
                return
            if isinstance(event, Request):
                self.logger.info(f"The API server received a {event.method} request on \"{event.path}\".")
                response = self.controller.handle(event.method, event.path, event.body)
                client.out += HttpConnection.response(response.status, response.body_bytes(),
                                                      deprecation=response.deprecation,
                                                      keep_alive=event.keep_alive)
                if not event.keep_alive:
                    client.closing = True

    def _write(self, client: _Client) -> None:
        while client.out:
            try:
                sent = client.sock.send(client.out)
            except (BlockingIOError, InterruptedError):
                return
            del client.out[:sent]

    def _update(self, client: _Client) -> None:
        fd = client.sock.fileno()
        if client.out:
            self._poll.modify(fd, select.POLLOUT | (0 if client.read_closed else select.POLLIN))
        elif client.closing or client.read_closed:
            self._close(client)
        else:
            self._poll.modify(fd, select.POLLIN)

    def _close(self, client: _Client) -> None:
        fd = client.sock.fileno()
        if fd >= 0:
            try:
                self._poll.unregister(fd)
            except (KeyError, ValueError):
                pass
            self._clients.pop(fd, None)
        client.sock.close()
