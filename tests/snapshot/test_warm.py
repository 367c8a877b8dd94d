"""The warm parent: `pyrite warm-parent` forks pyrite-vmm on request (pyrite.warm.spawn), the
forked VMM loads a snapshot through its API and runs the guest to its end, and the status
comes back; `pyrite warm-run` does the same as a command; unknown programs are refused.

Needs /dev/kvm and gcc; skips, saying which is missing, only without them.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kvm"))
from guests import guest_image  # noqa: E402

import pyrite  # noqa: E402
from pyrite import warm  # noqa: E402

LIMIT = 300


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    if not os.path.exists("/dev/kvm"):
        pytest.skip("/dev/kvm is not present")
    directory = tmp_path_factory.mktemp("warm")
    state, mem = directory / "vm.state", directory / "vm.mem"
    with pyrite.MicroVM(guest_image("counter"), cmdline=f"console=ttyS0 -- {LIMIT}", mem_mib=64) as vm:
        vm.start()
        assert vm.wait_for_output(b"count=20\n", 20)
        vm.pause()
        vm.snapshot(state, mem)
    return state, mem


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("warm-parent") / "warm.sock")
    process = subprocess.Popen([sys.executable, "-m", "pyrite.cli", "warm-parent", path],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ready = process.stderr.readline()
    assert b"ready on" in ready, ready
    yield path
    process.terminate()
    process.wait(10)
    assert not os.path.exists(path)


def api(sock: str, method: str, path: str, body: dict) -> int:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(sock)
        data = json.dumps(body).encode()
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        return int(s.recv(4096).split()[1])


def test_forked_vmm_loads_a_snapshot_and_reports_its_status(parent, snapshot, tmp_path):
    state, mem = snapshot
    sock, log = str(tmp_path / "api.sock"), tmp_path / "vmm.log"
    with open(log, "wb") as out:
        child = warm.spawn(parent, ["pyrite-vmm", "--api-sock", sock], stdout=out.fileno(), stderr=out.fileno())
    deadline = time.monotonic() + 20
    while not os.path.exists(sock):
        assert time.monotonic() < deadline and child.wait(0) is None, log.read_text()
        time.sleep(0.005)
    assert api(sock, "PUT", "/snapshot/load", {"snapshot_path": str(state), "mem_file_path": str(mem),
                                               "resume_vm": True}) == 204
    assert child.wait(30) == 0, log.read_text()
    output = log.read_bytes()
    assert f"count={LIMIT}\n".encode() in output and b"count=5\n" not in output
    assert f"sum={LIMIT * (LIMIT + 1) // 2}".encode() in output


def test_warm_run_is_a_command(parent, snapshot):
    state, mem = snapshot
    done = subprocess.run([sys.executable, "-m", "pyrite.cli", "warm-run", parent, "pyrite", "snapshot", "load",
                           str(state), str(mem)], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"sum={LIMIT * (LIMIT + 1) // 2}".encode() in done.stdout


def test_refusals(parent, tmp_path):
    with pytest.raises(warm.WarmError, match="argv must start with one of"):
        warm.spawn(parent, ["sh", "-c", "true"])
    with pytest.raises(warm.WarmError, match="no warm parent at"):
        warm.spawn(str(tmp_path / "none.sock"), ["pyrite", "run"])
    child = warm.spawn(parent, ["pyrite", "no-such-command"], stderr=os.open(os.devnull, os.O_WRONLY))
    assert child.wait(30) == 2
