"""Sans-I/O HTTP/1.1 for the API server, in h11's shape: bytes in, events out, bytes back.

    conn = HttpConnection(max_payload=51200)
    conn.receive_data(chunk)           # b"" means the peer closed its side
    event = conn.next_event()          # Request | Continue | ProtocolError | NEED_DATA | CLOSED
    sock.sendall(conn.response(200, body))

The socket belongs to the caller. The dialect is Firecracker's micro_http: methods GET, PUT
and PATCH; HTTP/1.0 and 1.1; a body only with Content-Length (no chunked encoding); a
payload limit; `Expect: 100-continue` answered with an interim 100. A malformed request
ends the connection with micro_http's 400 answer (`{ "error": "..." }`): that state is
permanent, as h11's ERROR is.
"""
from __future__ import annotations

METHODS = ("GET", "PUT", "PATCH")
VERSIONS = ("HTTP/1.0", "HTTP/1.1")
MAX_REQUEST_LINE = 4096
MAX_HEAD = 64 * 1024  # request line and headers together
SERVER_HEADER = b"Server: Firecracker API\r\n"


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA = _Sentinel("NEED_DATA")
CLOSED = _Sentinel("CLOSED")


class Request:
    __slots__ = ("method", "target", "version", "headers", "body", "keep_alive")

    def __init__(self, method: str, target: str, version: str, headers: dict[str, str], body: bytes | None):
        self.method = method
        self.target = target          # as sent, e.g. "/drives/rootfs"
        self.version = version
        self.headers = headers        # lower-case names
        self.body = body              # None when there is no body (absent or zero Content-Length)
        self.keep_alive = headers.get("connection", "").lower() != "close"

    @property
    def path(self) -> str:
        """The absolute path: an absolute-form target (http://host/path) loses its scheme and host."""
        t = self.target
        if t.startswith("http://") or t.startswith("https://"):
            rest = t.split("://", 1)[1]
            slash = rest.find("/")
            return rest[slash:] if slash >= 0 else "/"
        return t

    def __repr__(self) -> str:
        return f"Request({self.method} {self.target}, body={len(self.body or b'')} bytes)"


class Continue:
    """The client sent `Expect: 100-continue`: answer with `HttpConnection.interim_continue()`."""
    __slots__ = ()


class ProtocolError:
    """A request that cannot be parsed; `answer` is the 400 to send before closing."""
    __slots__ = ("message", "answer")

    def __init__(self, message: str, answer: bytes):
        self.message = message
        self.answer = answer

    def __repr__(self) -> str:
        return f"ProtocolError({self.message!r})"


class HttpConnection:
    """One server-side connection: requests parsed in order, pipelining allowed."""

    def __init__(self, max_payload: int = 51200):
        self.max_payload = max_payload
        self._buf = bytearray()
        self._eof = False
        self._error: ProtocolError | None = None
        self._pending_head: tuple | None = None   # (method, target, version, headers, length)
        self._continue_sent = False

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def receive_data(self, data: bytes) -> None:
        if not data:
            self._eof = True
        else:
            self._buf += data

    def next_event(self):
        if self._error is not None:
            return CLOSED
        if self._pending_head is None:
            head_end = self._buf.find(b"\r\n\r\n")
            if head_end < 0:
                line_end = self._buf.find(b"\r\n")
                if (line_end < 0 and len(self._buf) > MAX_REQUEST_LINE) or len(self._buf) > MAX_HEAD:
                    return self._fail("Invalid request.")
                return CLOSED if self._eof else NEED_DATA
            if head_end > MAX_HEAD:
                return self._fail("Invalid request.")
            head = bytes(self._buf[:head_end])
            del self._buf[:head_end + 4]
            parsed = self._parse_head(head)
            if isinstance(parsed, ProtocolError):
                return parsed
            self._pending_head = parsed
            self._continue_sent = False
        method, target, version, headers, length = self._pending_head
        if headers.get("expect", "").lower() == "100-continue" and not self._continue_sent:
            self._continue_sent = True  # micro_http answers 100 even when the body is already here
            return Continue()
        if len(self._buf) < length:
            return CLOSED if self._eof else NEED_DATA
        body = bytes(self._buf[:length]) if length else None
        del self._buf[:length]
        self._pending_head = None
        return Request(method, target, version, headers, body)

    def _parse_head(self, head: bytes):
        try:
            text = head.decode("ascii")
        except UnicodeDecodeError:
            return self._fail("Invalid request.")
        lines = text.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or len(lines[0]) > MAX_REQUEST_LINE or not parts[1]:
            return self._fail("Invalid request.")
        method, target, version = parts
        if method not in METHODS:
            return self._fail("Invalid HTTP Method: Unsupported HTTP method.")
        if version not in VERSIONS:
            return self._fail("Invalid HTTP Version: Unsupported HTTP version.")
        if not (target.startswith("/") or target.startswith("http://") or target.startswith("https://")):
            return self._fail(f"Invalid URI: {target}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                return self._fail(f"Invalid header. Reason: Header is incorrectly formatted. Key: {line}")
            headers[name.lower()] = value.strip()
        if "transfer-encoding" in headers:
            return self._fail("Invalid request.")
        length = 0
        if "content-length" in headers:
            raw = headers["content-length"]
            if not raw.isdigit() or not raw.isascii():
                return self._fail(f"Invalid header. Reason: Invalid value. Key:Content-Length; Value: {raw}")
            length = int(raw)
            if length > self.max_payload:
                return self._fail(f"Request payload with size {length} is larger than the limit of "
                                  f"{self.max_payload} allowed by server.")
        return (method, target, version, headers, length)

    def _fail(self, message: str) -> ProtocolError:
        # micro_http's words; the JSON is written by hand there, so its newline is raw too
        body = ('{ "error": "' + message + '\nAll previous unanswered requests will be dropped." }').encode()
        self._error = ProtocolError(message, self.response(400, body))
        self._buf.clear()
        return self._error

    # ------------------------------------------------------------------ writing
    @staticmethod
    def response(status: int, body: bytes | None = None, *, deprecation: bool = False,
                 keep_alive: bool = True) -> bytes:
        """A response as Firecracker writes it (empty reason phrase, JSON body)."""
        head = [f"HTTP/1.1 {status} \r\n".encode(), SERVER_HEADER,
                b"Connection: keep-alive\r\n" if keep_alive else b"Connection: close\r\n"]
        if deprecation:
            head.append(b"Deprecation: true\r\n")
        if body is not None:
            head.append(b"Content-Type: application/json\r\n")
            head.append(f"Content-Length: {len(body)}\r\n".encode())
        head.append(b"\r\n")
        if body is not None:
            head.append(body)
        return b"".join(head)

    @staticmethod
    def interim_continue() -> bytes:
        return b"HTTP/1.1 100 \r\n" + SERVER_HEADER + b"Connection: keep-alive\r\n\r\n"
