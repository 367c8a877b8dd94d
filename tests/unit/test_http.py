"""pyrite.api.http: the sans-I/O HTTP/1.1 machine, byte by byte, no socket."""
from __future__ import annotations

import pytest

from pyrite.api.http import CLOSED, NEED_DATA, Continue, HttpConnection, ProtocolError, Request


def events(conn: HttpConnection) -> list:
    out = []
    while True:
        e = conn.next_event()
        out.append(e)
        if e is NEED_DATA or e is CLOSED or isinstance(e, ProtocolError):
            return out


def test_request_split_at_every_byte():
    data = b"PUT /machine-config HTTP/1.1\r\nContent-Length: 2\r\nX-A: b\r\n\r\n{}"
    conn = HttpConnection()
    got = []
    for i in range(len(data)):
        conn.receive_data(data[i:i + 1])
        e = conn.next_event()
        if e is not NEED_DATA:
            got.append(e)
    assert len(got) == 1 and isinstance(got[0], Request)
    r = got[0]
    assert (r.method, r.target, r.version, r.body, r.headers["x-a"]) == ("PUT", "/machine-config", "HTTP/1.1", b"{}", "b")


def test_pipelined_requests_come_out_in_order():
    conn = HttpConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\n\r\nGET /version HTTP/1.0\r\n\r\nPATCH /vm HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    evs = events(conn)
    assert [(e.method, e.target, e.body) for e in evs[:-1]] == [("GET", "/", None), ("GET", "/version", None),
                                                                ("PATCH", "/vm", None)]
    assert evs[-1] is NEED_DATA


def test_absolute_form_target():
    conn = HttpConnection()
    conn.receive_data(b"GET http://localhost/version HTTP/1.1\r\n\r\n")
    assert conn.next_event().path == "/version"


def test_eof_mid_request_closes():
    conn = HttpConnection()
    conn.receive_data(b"PUT /boot-source HTTP/1.1\r\nContent-Length: 10\r\n\r\n{")
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"")
    assert conn.next_event() is CLOSED


def test_expect_continue_comes_before_the_request():
    conn = HttpConnection()
    conn.receive_data(b"PUT /mmds HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    assert isinstance(conn.next_event(), Continue)
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"{}")
    assert conn.next_event().body == b"{}"
    assert HttpConnection.interim_continue().startswith(b"HTTP/1.1 100 \r\n")


@pytest.mark.parametrize("data,message", [
    (b"HELLO\r\n\r\n", "Invalid request."),
    (b"POST / HTTP/1.1\r\n\r\n", "Invalid HTTP Method: Unsupported HTTP method."),
    (b"GET / HTTP/2.0\r\n\r\n", "Invalid HTTP Version: Unsupported HTTP version."),
    (b"GET / HTTP/1.1\r\nFoo\r\n\r\n", "Invalid header. Reason: Header is incorrectly formatted. Key: Foo"),
    (b"PUT / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "Invalid header. Reason: Invalid value. Key:Content-Length; Value: -1"),
    (b"PUT / HTTP/1.1\r\nContent-Length: 100\r\n\r\n",
     "Request payload with size 100 is larger than the limit of 99 allowed by server."),
    (b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", "Invalid request."),
    (b"GET /" + b"a" * 5000, "Invalid request."),
    (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 20000, "Invalid request."),
])
def test_protocol_errors_are_permanent(data, message):
    conn = HttpConnection(max_payload=99)
    conn.receive_data(data)
    e = conn.next_event()
    assert isinstance(e, ProtocolError) and e.message == message
    assert e.answer.startswith(b"HTTP/1.1 400 \r\nServer: Firecracker API\r\n")
    assert e.answer.endswith(b'{ "error": "' + message.encode() +
                             b'\nAll previous unanswered requests will be dropped." }')
    conn.receive_data(b"GET / HTTP/1.1\r\n\r\n")
    assert conn.next_event() is CLOSED


def test_responses_are_written_as_firecracker_writes_them():
    assert HttpConnection.response(204) == b"HTTP/1.1 204 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n\r\n"
    assert HttpConnection.response(200, b'{"a":1}', deprecation=True) == (
        b"HTTP/1.1 200 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\nDeprecation: true\r\n"
        b"Content-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}")
    assert b"Connection: close\r\n" in HttpConnection.response(204, keep_alive=False)


def test_connection_close_is_honoured():
    conn = HttpConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert conn.next_event().keep_alive is False
