"""The REST API tests' client side: a live `pyrite-vmm` process and an HTTP client over its
Unix socket."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]
SWAGGER = REPO.parent / "shared" / "firecracker" / "firecracker-v1.16.1.yaml"


class HttpResult:
    def __init__(self, raw: bytes):
        self.raw = raw
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ")[1]) if lines[0].startswith("HTTP/1.1 ") else 0
        self.headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.body = body

    def json(self):
        return json.loads(self.body)

    @property
    def fault(self) -> str:
        return self.json()["fault_message"]

    def __repr__(self) -> str:
        return f"HttpResult({self.status}, {self.body[:300]!r})"


def read_response(sock) -> HttpResult:
    """One response from a socket (or a file from sock.makefile("rb"), which keeps any
    bytes of the next pipelined response for the next call)."""
    rfile = sock.makefile("rb") if isinstance(sock, socket.socket) else sock
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = rfile.readline()
        if not line:
            raise ConnectionError(f"connection closed after {head!r}")
        head += line
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    body = rfile.read(length) if length else b""
    return HttpResult(head + body)


class Client:
    """One keep-alive connection to an API socket."""

    def __init__(self, path: str, timeout: float = 10.0):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.rfile = self.sock.makefile("rb")

    def request(self, method: str, target: str, body=None, raw_body: bytes | None = None,
                headers: dict | None = None) -> HttpResult:
        data = raw_body if raw_body is not None else (None if body is None else json.dumps(body).encode())
        head = f"{method} {target} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
        for k, v in (headers or {}).items():
            head += f"{k}: {v}\r\n"
        if data is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        self.sock.sendall(head.encode() + b"\r\n" + (data or b""))
        return read_response(self.rfile)

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()


class VmmProcess:
    def __init__(self, proc: subprocess.Popen, sock: str, log: Path):
        self.proc, self.sock, self.log = proc, sock, log

    def client(self) -> Client:
        return Client(self.sock)

    def request(self, *args, **kwargs) -> HttpResult:
        c = self.client()
        try:
            return c.request(*args, **kwargs)
        finally:
            c.close()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _accepts(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
            return True
        except OSError:
            return False


def start_vmm(tmp_path: Path, *args: str, name: str = "api.sock", wait: bool = True) -> VmmProcess:
    sock = str(tmp_path / name)
    log = tmp_path / (name + ".log")
    proc = subprocess.Popen([sys.executable, "-m", "pyrite.api.cli", "--api-sock", sock, *args],
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT, cwd=str(REPO))
    vmm = VmmProcess(proc, sock, log)
    if wait:
        deadline = time.monotonic() + 20
        while not _accepts(sock):  # the path appears at bind(), connections only after listen()
            if proc.poll() is not None or time.monotonic() > deadline:
                vmm.stop()
                raise RuntimeError(f"pyrite-vmm did not open its socket: {log.read_text()}")
            time.sleep(0.01)
    return vmm
