"""`pyrite run --snapshot-on-signal`, `pyrite snapshot load|clone|inspect|create` as a user
runs them: real processes, signals and API sockets.

Needs /dev/kvm and gcc; skips, saying which is missing, only without them.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kvm"))
from guests import guest_image  # noqa: E402

PYRITE = [sys.executable, "-m", "pyrite.cli"]
LIMIT = 2000


def counts(text: str) -> list[int]:
    return [int(line[6:]) for line in text.splitlines() if line.startswith("count=")]


@pytest.fixture(scope="module")
def counter():
    if not os.path.exists("/dev/kvm"):
        pytest.skip("/dev/kvm is not present")
    return guest_image("counter")


@pytest.fixture(scope="module")
def signalled(counter, tmp_path_factory):
    """A `pyrite run` snapshotted by SIGUSR1 mid-run: (state, mem, its stdout up to the snapshot)."""
    directory = tmp_path_factory.mktemp("cli")
    state, mem = directory / "vm.state", directory / "vm.mem"
    run = subprocess.Popen([*PYRITE, "run", str(counter), "--mem-mib", "64", "--snapshot-on-signal",
                            f"{state},{mem}", "--", str(LIMIT)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = run.stdout.readline()          # the guest runs: the handler is installed
    assert first.startswith(b"count=")
    run.send_signal(signal.SIGUSR1)
    # Read on through the same buffered reader: communicate() would read the raw fd and miss
    # what readline() already buffered.
    out, err = run.stdout.read(), run.stderr.read()
    run.wait(60)
    assert run.returncode == 0, err.decode()
    assert f"snapshot written to {state} and {mem}".encode() in err
    assert counts((first + out).decode()) == list(range(1, LIMIT + 1))   # the run went on to its end
    return state, mem


def test_load_continues_from_the_signal(signalled):
    state, _ = signalled
    done = subprocess.run([*PYRITE, "snapshot", "load", str(state)], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    resumed = counts(done.stdout.decode().partition("\n")[2])      # the first line may be a line's rest
    assert resumed and resumed == list(range(resumed[0], LIMIT + 1)) and resumed[0] > 1
    assert f"sum={LIMIT * (LIMIT + 1) // 2}".encode() in done.stdout


def test_clone_runs_n_vms_from_one_snapshot(signalled):
    state, mem = signalled
    done = subprocess.run([*PYRITE, "snapshot", "clone", str(state), str(mem), "-n", "8", "--timeout", "60"],
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stdout.decode().splitlines()
    for i in range(8):
        mine = [line[len(f"[{i}] "):] for line in lines if line.startswith(f"[{i}] ")]
        assert mine[-1] == f"sum={LIMIT * (LIMIT + 1) // 2}"
        resumed = counts("\n".join(mine[1:]))
        assert resumed == list(range(resumed[0], LIMIT + 1))


def test_inspect_describes_the_state_file(signalled):
    state, mem = signalled
    done = subprocess.run([*PYRITE, "snapshot", "inspect", str(state)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "CRC ok" in done.stdout and f"memory file: {mem}" in done.stdout
    assert "vCPUs: 1, memory: 64 MiB" in done.stdout


def test_refusals_name_the_problem(signalled, tmp_path):
    state, _ = signalled
    broken = tmp_path / "broken.state"
    broken.write_bytes(state.read_bytes()[:-1])
    cases = [
        (["snapshot", "load", str(broken)], "truncated"),
        (["snapshot", "load", str(state), str(tmp_path / "none.mem")], "none.mem: cannot open: No such file"),
        (["snapshot", "load", str(state), "--net", "eth0=tap0"], "Unknown Network Device"),
        (["snapshot", "clone", str(state), "-n", "0"], "at least one clone"),
        (["snapshot", "create", str(state), "x"], "expected --api-sock SOCK STATE MEM"),
        (["snapshot", "create", "--api-sock", str(tmp_path / "no.sock"), "a", "b"], "No such file"),
        (["run", "--snapshot-on-signal", "only-one-path"], "expected STATE_PATH,MEM_PATH"),
    ]
    for argv, text in cases:
        done = subprocess.run([*PYRITE, *argv], capture_output=True, text=True, timeout=30)
        assert done.returncode == 2 and text in done.stderr, (argv, done.stderr)


def test_create_through_the_api_socket(counter, tmp_path):
    sock, state, mem = tmp_path / "api.sock", tmp_path / "api.state", tmp_path / "api.mem"
    vmm = subprocess.Popen([sys.executable, "-m", "pyrite.api.cli", "--api-sock", str(sock), "--no-seccomp"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        import json
        import http.client
        import socket as socketlib

        class Connection(http.client.HTTPConnection):
            def connect(self):
                self.sock = socketlib.socket(socketlib.AF_UNIX)
                self.sock.connect(str(sock))

        def put(path, body):
            connection = Connection("localhost")
            connection.request("PUT", path, json.dumps(body), {"Content-Type": "application/json"})
            response = connection.getresponse()
            assert response.status == 204, response.read()

        put("/boot-source", {"kernel_image_path": str(counter), "boot_args": f"console=ttyS0 -- {LIMIT}"})
        put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 64})
        put("/actions", {"action_type": "InstanceStart"})
        done = subprocess.run([*PYRITE, "snapshot", "create", "--api-sock", str(sock), str(state), str(mem)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        loaded = subprocess.run([*PYRITE, "snapshot", "load", str(state)], capture_output=True, timeout=60)
        assert f"sum={LIMIT * (LIMIT + 1) // 2}".encode() in loaded.stdout
    finally:
        vmm.kill()
        vmm.wait()
