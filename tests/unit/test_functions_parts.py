"""The function service's sans-I/O parts: agent frames, the route table, the on-disk event
queue, metrics, credentials, zip handling and the provided runtime's handler names."""
from __future__ import annotations

import io
import struct
import zipfile

import pytest

from pyrite.functions import credentials, protocol, rest, runtimes
from pyrite.functions.errors import LambdaError
from pyrite.functions.event_queue import RETRIES, EventQueue
from pyrite.functions.metrics import Metrics, quantile


def test_invoke_frame_layout():
    ctx = protocol.InvokeContext("req", "fn", "$LATEST", "arn:x", 256, 3_000_000)
    frame = protocol.encode_invoke(ctx, b'{"a":1}')
    kind, length = struct.unpack_from("<II", frame)
    assert kind == protocol.INVOKE and length == len(frame) - 8
    timeout_us, memory = struct.unpack_from("<QI", frame, 8)
    assert (timeout_us, memory) == (3_000_000, 256)
    assert frame[20:] == b'req\0fn\0$LATEST\0arn:x\0{"a":1}'


def test_frame_reader_byte_by_byte_and_limits():
    reader = protocol.FrameReader(max_payload=16)
    data = struct.pack("<II", protocol.LOG, 3) + b"abc" + struct.pack("<II", protocol.RESULT, 2) + b"{}"
    frames = []
    for byte in data:
        reader.receive(bytes([byte]))
        while (frame := reader.next_frame()) is not None:
            frames.append(frame)
    assert frames == [(protocol.LOG, b"abc"), (protocol.RESULT, b"{}")]
    reader.receive(struct.pack("<II", protocol.RESULT, 17))
    with pytest.raises(protocol.FrameTooLarge) as e:
        reader.next_frame()
    assert e.value.kind == protocol.RESULT
    bad = protocol.FrameReader(16)
    bad.receive(struct.pack("<II", 99, 0))
    with pytest.raises(protocol.ProtocolError, match="unknown type 99"):
        bad.next_frame()


def test_routes_are_lambdas():
    assert rest.route("POST", "/2015-03-31/functions/f/invocations") == ("invoke", {"name": "f"}, 200)
    assert rest.route("GET", "/2015-03-31/functions/") == ("list_functions", {}, 200)
    assert rest.route("POST", "/2015-03-31/functions") == ("create_function", {}, 201)
    assert rest.route("PUT", "/2017-10-31/functions/a%3Ab/concurrency") == \
        ("put_function_concurrency", {"name": "a:b"}, 200)
    assert rest.route("DELETE", "/2015-03-31/functions/f") == ("delete_function", {"name": "f"}, 204)
    assert rest.route("PATCH", "/2015-03-31/functions/f") is None
    assert rest.route("GET", "/2015-03-31/functions/f/unknown") is None
    for method, pattern, op, status in rest.ROUTES:          # every route reaches its operation
        path = pattern.replace("{name}", "x")
        assert rest.route(method, path) == (op, {"name": "x"} if "{name}" in pattern else {}, status)


def test_event_queue_survives_and_retries(tmp_path):
    q = EventQueue(tmp_path / "q")
    q.put("f", "r1", b'{"a":1}')
    q.put("f", "r2", b"{}")
    again = EventQueue(tmp_path / "q")                       # another process, after a restart
    name, entry = again.take(timeout=1)
    assert entry["request_id"] == "r1" and entry["function"] == "f"
    name2, entry2 = again.take(timeout=1)
    assert entry2["request_id"] == "r2"
    assert again.take(timeout=0.05) is None                  # both are held
    again.done(name2)
    for attempt in range(RETRIES):
        assert again.retry(name, entry)
        name, entry = again.take(timeout=1)
    assert not again.retry(name, entry)                      # retries spent: dropped
    assert again.pending() == 0


def test_metrics_text():
    m = Metrics()
    for ms, warm in ((1, True), (2, True), (3, False), (100, False)):
        m.invoked("f", ms / 1000, error=ms == 100, warm=warm, timeout=False)
    m.count("f", "throttles")
    text = m.render()
    assert 'pyrite_function_invocations_total{function="f"} 4' in text
    assert 'pyrite_function_errors_total{function="f"} 1' in text
    assert 'pyrite_function_warm_starts_total{function="f"} 2' in text
    assert 'pyrite_function_cold_starts_total{function="f"} 2' in text
    assert 'pyrite_function_throttles_total{function="f"} 1' in text
    assert 'pyrite_function_duration_seconds{function="f",quantile="0.5"} 0.002000' in text
    assert 'pyrite_function_duration_seconds{function="f",quantile="0.99"} 0.100000' in text
    assert "# TYPE pyrite_function_duration_seconds summary" in text
    assert quantile([], 0.5) == 0.0


def test_credentials_file(tmp_path):
    made = credentials.create(tmp_path / "credentials")
    assert (tmp_path / "credentials").stat().st_mode & 0o777 == 0o600
    assert credentials.load(tmp_path / "credentials") == {"default": made}
    (tmp_path / "other").write_text("[default]\nregion = x\n")
    with pytest.raises(credentials.CredentialsError, match="no profile"):
        credentials.load(tmp_path / "other")
    with pytest.raises(credentials.CredentialsError, match="missing"):
        credentials.load(tmp_path / "missing")


def test_zip_checks(tmp_path):
    with pytest.raises(LambdaError, match="Could not unzip"):
        runtimes.unpack_zip(b"PK\x03\x04 not really", tmp_path)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../escape.c", "int x;")
    with pytest.raises(LambdaError, match="leaves the package"):
        runtimes.unpack_zip(buffer.getvalue(), tmp_path / "code")
    assert runtimes.handler_symbol("handler.handler") == "handler"
    assert runtimes.handler_symbol("my_fn") == "my_fn"
    with pytest.raises(LambdaError, match="must name a C function"):
        runtimes.handler_symbol("bad-name")
    with pytest.raises(LambdaError, match="enum value set"):
        runtimes.check_runtime("nodejs20.x")
