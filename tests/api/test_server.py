"""The API server against hostile and clumsy clients, and the pyrite-vmm command line.

Expected answers are Firecracker v1.12.1's, recorded by sending it the same bytes.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from api_client import REPO, Client, read_response, start_vmm

MICRO_HTTP_DROPPED = "\nAll previous unanswered requests will be dropped."


def micro_http_error(message: str) -> bytes:
    return ('{ "error": "' + message + MICRO_HTTP_DROPPED + '" }').encode()


def raw_exchange(path: str, data: bytes, timeout: float = 5.0) -> bytes:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(path)
    s.sendall(data)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except socket.timeout:
        pass
    s.close()
    return out


def test_get_instance_info_and_version(vmm):
    r = vmm.request("GET", "/")
    assert r.status == 200
    assert r.json() == {"id": "test-vm", "state": "Not started", "vmm_version": "1.16.1", "app_name": "Firecracker"}
    assert r.raw.startswith(b"HTTP/1.1 200 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n")
    assert vmm.request("GET", "/version").json() == {"firecracker_version": "1.16.1"}


def test_keep_alive_and_pipelining(vmm):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(vmm.sock)
    s.sendall(b"GET /version HTTP/1.1\r\n\r\nGET /machine-config HTTP/1.1\r\n\r\n")
    rfile = s.makefile("rb")
    first, second = read_response(rfile), read_response(rfile)
    assert first.json() == {"firecracker_version": "1.16.1"}
    assert second.json()["mem_size_mib"] == 128
    # the same connection keeps serving
    s.sendall(b"GET / HTTP/1.1\r\n\r\n")
    assert read_response(rfile).json()["state"] == "Not started"
    s.close()


def test_payload_over_the_limit_is_refused_and_the_vmm_survives(tmp_path):
    v = start_vmm(tmp_path, "--http-api-max-payload-size", "1000")
    try:
        body = json.dumps({"kernel_image_path": "a" * 2000}).encode()
        out = raw_exchange(v.sock, b"PUT /boot-source HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        assert out.split(b"\r\n\r\n", 1)[1] == micro_http_error(
            f"Request payload with size {len(body)} is larger than the limit of 1000 allowed by server.")
        assert v.request("GET", "/").status == 200
    finally:
        v.stop()


def test_default_payload_limit_is_51200(vmm):
    fits = b'{"kernel_image_path":"' + b"a" * (51200 - 25) + b'"}'
    assert len(fits) <= 51200
    r = vmm.request("PUT", "/boot-source", raw_body=fits)
    assert r.status == 400 and r.fault.startswith("Boot source error: The kernel file cannot be opened")
    out = raw_exchange(vmm.sock, b"PUT /boot-source HTTP/1.1\r\nContent-Length: 51201\r\n\r\n")
    assert micro_http_error("Request payload with size 51201 is larger than the limit of 51200 allowed by server.") in out


@pytest.mark.parametrize("request_bytes,message", [
    (b"HELLO\r\n\r\n", "Invalid request."),
    (b"GET / HTTP/2.0\r\n\r\n", "Invalid HTTP Version: Unsupported HTTP version."),
    (b"get /version HTTP/1.1\r\n\r\n", "Invalid HTTP Method: Unsupported HTTP method."),
    (b"GET /version HTTP/1.1\r\nFoo\r\n\r\n", "Invalid header. Reason: Header is incorrectly formatted. Key: Foo"),
    (b"PUT /mmds HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
     "Invalid header. Reason: Invalid value. Key:Content-Length; Value: abc"),
    (b"PUT /mmds HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", "Invalid request."),
    (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n", "Invalid request."),
])
def test_malformed_http_gets_micro_http_answer(vmm, request_bytes, message):
    out = raw_exchange(vmm.sock, request_bytes)
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert body == micro_http_error(message)
    assert vmm.request("GET", "/").status == 200


def test_expect_100_continue(vmm):
    body = b'{"vcpu_count":2,"mem_size_mib":256}'
    out = raw_exchange(vmm.sock, b"PUT /machine-config HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n"
                       % len(body) + body, timeout=1)
    assert out.startswith(b"HTTP/1.1 100 \r\n")
    assert b"HTTP/1.1 204 \r\n" in out
    assert vmm.request("GET", "/machine-config").json()["vcpu_count"] == 2


def test_slow_client_does_not_block_others(vmm):
    slow = socket.socket(socket.AF_UNIX)
    slow.connect(vmm.sock)
    slow.sendall(b"PUT /machine-config HTTP/1.1\r\nContent-Length: 35\r\n\r\n{\"vcpu_")
    # another client is served while the slow one dawdles
    assert vmm.request("GET", "/version").status == 200
    slow.settimeout(5)
    slow.sendall(b'count":2,"mem_size_mib":256}')
    assert read_response(slow).status == 204
    slow.close()


def test_half_closed_client_still_gets_its_answer(vmm):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(vmm.sock)
    s.sendall(b"GET /version HTTP/1.1\r\n\r\n")
    s.shutdown(socket.SHUT_WR)
    r = read_response(s)
    assert r.json() == {"firecracker_version": "1.16.1"}
    assert s.recv(100) == b""   # and then the server closes
    s.close()


def test_clients_vanishing_mid_request_and_mid_response(vmm):
    for _ in range(20):
        s = socket.socket(socket.AF_UNIX)
        s.connect(vmm.sock)
        s.sendall(b"PUT /boot-source HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"kern")
        s.close()
        s = socket.socket(socket.AF_UNIX)
        s.connect(vmm.sock)
        s.sendall(b"GET /vm/config HTTP/1.1\r\n\r\n" * 50)
        s.close()
    assert vmm.alive()
    assert vmm.request("GET", "/").status == 200


def test_many_connections(vmm):
    clients = [Client(vmm.sock) for _ in range(40)]
    for c in clients:
        assert c.request("GET", "/version").status == 200
    for c in clients:
        c.close()
    assert vmm.request("GET", "/").status == 200


def test_existing_socket_path_is_refused(tmp_path):
    path = tmp_path / "taken.sock"
    path.write_text("")
    proc = subprocess.run([sys.executable, "-m", "pyrite.api.cli", "--api-sock", str(path)],
                          capture_output=True, text=True, cwd=REPO, timeout=30)
    assert proc.returncode == 1
    assert f"RunWithApiError error: Failed to open the API socket at: {path}. Check that it is not already used." \
        in proc.stdout


def test_socket_in_a_missing_directory_is_refused(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pyrite.api.cli", "--api-sock", str(tmp_path / "no" / "x.sock")],
                          capture_output=True, text=True, cwd=REPO, timeout=30)
    assert proc.returncode == 1
    assert ("RunWithApiError error: Failed to bind and run the HTTP server: IO error: "
            "No such file or directory (os error 2)") in proc.stdout


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_socket_in_an_unwritable_directory_is_refused(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    proc = subprocess.run([sys.executable, "-m", "pyrite.api.cli", "--api-sock", str(d / "x.sock")],
                          capture_output=True, text=True, cwd=REPO, timeout=30)
    assert proc.returncode == 1
    assert "Permission denied (os error 13)" in proc.stdout


# ----------------------------------------------------------------------------- command line
def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyrite.api.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=30)


@pytest.mark.parametrize("args,message,code", [
    (["--bogus"], "Arguments parsing error: Found argument 'bogus' which wasn't expected, or isn't valid in this "
                  "context. \\n\\nFor more information try --help.", 153),
    (["positional"], "Found argument 'positional' which wasn't expected", 153),
    (["--api-sock"], "The argument 'api-sock' requires a value, but none was supplied.", 153),
    (["--id", "a", "--id", "b"], "The argument 'id' was provided more than once.", 153),
    (["--no-api"], "Argument 'config-file' required, but not found.", 153),
    (["--boot-timer", "x"], "Found argument 'x' which wasn't expected", 153),
    (["--level", "bogus"], "Invalid value for logger level: Failed to parse string to level filter: bogus.", 152),
    (["--http-api-max-payload-size", "abc"], "'http-api-max-payload-size' parameter expected to be of 'usize' type.",
     153),
    (["--mmds-size-limit", "-1"], "'mmds-size-limit' parameter expected to be of 'usize' type.", 153),
    (["--id", "a$b"], "Invalid instance ID: InvalidChar('$', 1)", 153),
])
def test_command_line_refusals(args, message, code):
    proc = run_cli(*args)
    assert proc.returncode == code
    assert message in proc.stdout
    assert f"Firecracker exiting with error. exit_code={code}" in proc.stdout


def test_version_and_help():
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("Firecracker v1.16.1")
    proc = run_cli("--help")
    assert proc.returncode == 0
    assert '--api-sock <api-sock>' in proc.stdout and '[default: "/run/firecracker.socket"]' in proc.stdout
    assert '[default: "51200"]' in proc.stdout


def test_log_path_level_and_format(tmp_path):
    log = tmp_path / "fc.log"
    log.touch()
    v = start_vmm(tmp_path, "--id", "logged-vm", "--log-path", str(log), "--level", "Debug", "--show-level",
                  "--show-log-origin")
    try:
        v.request("PUT", "/machine-config", body={"vcpu_count": 0, "mem_size_mib": 128})
    finally:
        v.stop()
    lines = log.read_text().splitlines()
    assert any("[logged-vm:main:INFO:pyrite/api/cli.py:" in line and "Running Firecracker v1.16.1" in line
               for line in lines)
    err = [line for line in lines if ":fc_api:ERROR:" in line and "Received Error. Status code: 400" in line]
    assert err and "The number of vCPUs must be greater than 0" in err[0]
    stamp = lines[0].split(" ")[0]
    assert len(stamp) == len("2024-01-01T00:00:00.000000000") and stamp[10] == "T"


def test_log_path_must_exist(tmp_path):
    proc = run_cli("--api-sock", str(tmp_path / "a.sock"), "--log-path", str(tmp_path / "missing.log"))
    assert proc.returncode == 1
    assert "Could not initialize logger: Failed to open target file: No such file or directory (os error 2)" \
        in proc.stdout


def test_metrics_path_and_put_metrics_once(tmp_path):
    metrics = tmp_path / "metrics.json"
    metrics.touch()
    v = start_vmm(tmp_path, "--metrics-path", str(metrics))
    try:
        r = v.request("PUT", "/metrics", body={"metrics_path": str(metrics)})
        assert r.status == 400
        assert r.fault == ("Metrics error: Cannot initialize the metrics system due to bad user input: "
                           "Reinitialization of metrics not allowed.")
        v.request("GET", "/machine-config")
        v.request("PUT", "/machine-config", body={"vcpu_count": 2, "mem_size_mib": 256})
    finally:
        v.proc.send_signal(2)  # SIGINT: pyrite-vmm flushes its metrics on the way out
        v.proc.wait(timeout=10)
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert lines, "no metrics line written at exit"
    last = lines[-1]
    assert last["put_api_requests"]["machine_cfg_count"] == 1
    assert last["put_api_requests"]["metrics_fails"] == 1
    assert last["get_api_requests"]["machine_cfg_count"] == 1
    assert last["api_server"]["process_startup_time_us"] > 0
    assert isinstance(last["utc_timestamp_ms"], int)


def test_config_file_errors_use_firecracker_words(tmp_path):
    cfg = tmp_path / "vm.json"
    cfg.write_text(json.dumps({"boot-source": {"kernel_image_path": "/nonexistent"}, "drives": []}))
    proc = run_cli("--no-api", "--config-file", str(cfg))
    assert proc.returncode == 1
    assert ("RunWithoutApiError error: Failed to build MicroVM from Json: Configuration for VMM from one single json "
            "failed: Boot source error: The kernel file cannot be opened: No such file or directory (os error 2)") \
        in proc.stdout
    cfg.write_text('{"machine-config": {"vcpu_count": 0, "mem_size_mib": 1}, "boot-source": {"kernel_image_path": '
                   f'"{cfg}"}}, "drives": []}}')
    proc = run_cli("--no-api", "--config-file", str(cfg))
    assert "failed: VM config error: The number of vCPUs must be greater than 0" in proc.stdout
    cfg.write_text('{"boot-source": {"kernel_image_path": 1}}')
    proc = run_cli("--no-api", "--config-file", str(cfg))
    assert "failed: Invalid JSON: invalid type: integer `1`, expected a string at line 1 column 39" in proc.stdout


def test_api_socket_is_ready_quickly(tmp_path):
    """The socket accepts a request soon after the process starts (the bar is 30 ms on a
    quiet machine; here a generous bound, as these machines are shared and noisy)."""
    start = time.monotonic()
    v = start_vmm(tmp_path, wait=False)
    try:
        while True:
            try:
                r = v.request("GET", "/")
                break
            except (FileNotFoundError, ConnectionRefusedError):
                time.sleep(0.001)
            assert time.monotonic() - start < 10
        assert r.status == 200
    finally:
        v.stop()


def test_first_answer_needs_no_heavy_imports():
    """GET / is answered without the modules that cost milliseconds of every VMM's start
    (socket.py and its enum, the resource models, the JSON reader, KVM, the builder): they
    load after the socket is up, or with the first request that needs them."""
    script = (
        "import sys\n"
        "from pyrite.api import cli, server\n"
        "from pyrite.api.controller import ApiController\n"
        "assert ApiController(instance_id='x').handle('GET', '/', None).status == 200\n"
        "heavy = ('socket', 'enum', 'pyrite.config.models', 'pyrite.config.resources', 'pyrite.config.decode',\n"
        "         'pyrite.kvm', 'pyrite.vmm.builder')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
