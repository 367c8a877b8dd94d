"""PUT /snapshot/create and /snapshot/load on the real VMM, each refusal with the text the real
Firecracker 1.12.1 gives for the same request (seen side by side with its binary), and a
failed load leaving the VMM able to load a good snapshot; --snapshot-version and
--describe-snapshot as Firecracker prints them.

Needs /dev/kvm and gcc; skips, saying which is missing, only without them.
"""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from api_client import REPO, start_vmm
from test_lifecycle import NEEDS_KVM_AND_GCC  # noqa: F401

pytestmark = NEEDS_KVM_AND_GCC
LOAD = "Load snapshot error: Failed to restore from snapshot: "


@pytest.fixture(scope="module")
def counter():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kvm"))
    from guests import guest_image
    return guest_image("counter")


# The VMM's log lines go to stdout too and may land in the middle of a guest's line.
LOG_LINE = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+ \[[^\]\n]*\] [^\n]*\n")


def counts(log: Path) -> list[int]:
    return [int(c) for c in re.findall(rb"count=(\d+)\n", LOG_LINE.sub(b"", log.read_bytes()))]


def last_count(log: Path) -> int:
    found = counts(log)
    return found[-1] if found else 0


def wait_for_count_above(log: Path, value: int, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while (count := last_count(log)) <= value:
        assert time.monotonic() < deadline, log.read_text(errors="replace")[-2000:]
        time.sleep(0.02)
    return count


@pytest.fixture(scope="module")
def snapshot(counter, tmp_path_factory):
    """A counter VM booted through the API, refusals of /snapshot/create, then a snapshot:
    (state, mem, the count when it was taken)."""
    tmp = tmp_path_factory.mktemp("snapshot-api")
    state, mem = tmp / "vm.state", tmp / "vm.mem"
    vmm = start_vmm(tmp, name="source.sock")
    try:
        assert vmm.request("PUT", "/boot-source", body={"kernel_image_path": str(counter),
                                                        "boot_args": "console=ttyS0 -- 100000000"}).status == 204
        assert vmm.request("PUT", "/machine-config", body={"vcpu_count": 1, "mem_size_mib": 64}).status == 204
        create = {"snapshot_path": str(state), "mem_file_path": str(mem)}
        assert vmm.request("PUT", "/snapshot/create", body=create).fault == \
            "The requested operation is not supported before starting the microVM."
        assert vmm.request("PUT", "/actions", body={"action_type": "InstanceStart"}).status == 204
        wait_for_count_above(vmm.log, 10)
        assert vmm.request("PUT", "/snapshot/create", body=create).fault == \
            "Create snapshot error: Cannot save the microVM state: Operation not allowed: save/restore unavailable " \
            "while running"
        assert vmm.request("PUT", "/snapshot/create", body={**create, "snapshot_type": "Diff"}).fault == \
            "The requested operation is not supported: Diff snapshots are not allowed on uVMs with dirty page " \
            "tracking disabled."
        assert vmm.request("PATCH", "/vm", body={"state": "Paused"}).status == 204
        for key, which in (("snapshot_path", "snapshot"), ("mem_file_path", "memory")):
            r = vmm.request("PUT", "/snapshot/create", body={**create, key: str(tmp / "no" / "such")})
            assert r.fault == f"Create snapshot error: Cannot perform open on the {which} backing file: " \
                              "No such file or directory (os error 2)"
        assert vmm.request("PUT", "/snapshot/create", body=create).status == 204
        taken_at = last_count(vmm.log)
        assert vmm.request("GET", "/").json()["state"] == "Paused"
        assert vmm.request("PATCH", "/vm", body={"state": "Resumed"}).status == 204
        wait_for_count_above(vmm.log, taken_at)          # the source goes on after its snapshot
    finally:
        vmm.stop()
    return state, mem, taken_at


def test_refused_loads_name_the_problem_and_a_good_load_follows(snapshot, tmp_path):
    state, mem, taken_at = snapshot
    truncated = tmp_path / "truncated.state"
    truncated.write_bytes(state.read_bytes()[:100])
    short_mem = tmp_path / "short.mem"
    short_mem.write_bytes(b"\0" * 4096)
    vmm = start_vmm(tmp_path)
    try:
        cases = [
            ({"snapshot_path": str(tmp_path / "none"), "mem_file_path": str(mem)},
             LOAD + "Failed to get snapshot state from file: Failed to open snapshot file: No such file or "
                    "directory (os error 2)"),
            ({"snapshot_path": str(truncated), "mem_file_path": str(mem)},
             LOAD + "Failed to get snapshot state from file: Failed to load snapshot state from file: "),
            ({"snapshot_path": str(state), "mem_file_path": str(mem),
              "network_overrides": [{"iface_id": "eth9", "host_dev_name": "tap9"}]},
             LOAD + "Failed to get snapshot state from file: Unknown Network Device."),
            ({"snapshot_path": str(state), "mem_file_path": str(short_mem)},
             LOAD + "Failed to load guest memory: Error creating guest memory from file: "),
            ({"snapshot_path": str(state)},
             "An error occurred when deserializing the json body of a request: missing field: either "
             "`mem_backend` or `mem_file_path` is required."),
            ({"snapshot_path": str(state), "mem_file_path": str(mem),
              "mem_backend": {"backend_type": "File", "backend_path": str(mem)}},
             "An error occurred when deserializing the json body of a request: too many fields: either "
             "`mem_backend` or `mem_file_path` exclusively is required."),
        ]
        for body, fault in cases:
            r = vmm.request("PUT", "/snapshot/load", body=body)
            assert r.status == 400 and r.fault.startswith(fault), (body, r.fault)
        assert vmm.request("GET", "/").json()["state"] == "Not started"
        r = vmm.request("PUT", "/snapshot/load", body={
            "snapshot_path": str(state), "mem_backend": {"backend_type": "File", "backend_path": str(mem)}})
        assert r.status == 204, r.fault
        assert vmm.request("GET", "/").json()["state"] == "Paused"      # resume_vm defaults to false
        config = vmm.request("GET", "/vm/config").json()
        assert config["machine-config"]["mem_size_mib"] == 64
        assert config["boot-source"]["boot_args"] == "console=ttyS0 -- 100000000"
        for method, path, body in (("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 64}),
                                   ("PUT", "/snapshot/load", {"snapshot_path": str(state), "mem_file_path": str(mem)}),
                                   ("PUT", "/actions", {"action_type": "InstanceStart"})):
            assert vmm.request(method, path, body=body).fault == \
                "The requested operation is not supported after starting the microVM."
        time.sleep(0.2)
        assert last_count(vmm.log) == 0                              # paused: nothing printed
        assert vmm.request("PATCH", "/vm", body={"state": "Resumed"}).status == 204
        assert wait_for_count_above(vmm.log, taken_at) > taken_at
        # The count goes on from the snapshot (the line being printed at the pause may be split).
        first = min(counts(vmm.log))
        assert taken_at < first <= taken_at + 2
    finally:
        vmm.stop()


def test_load_after_boot_specific_configuration_is_refused(snapshot, counter, tmp_path):
    state, mem, _ = snapshot
    vmm = start_vmm(tmp_path)
    try:
        assert vmm.request("PUT", "/boot-source", body={"kernel_image_path": str(counter)}).status == 204
        assert vmm.request("PUT", "/snapshot/load", body={"snapshot_path": str(state), "mem_file_path": str(mem)}
                           ).fault == "Load snapshot error: Loading a microVM snapshot not allowed after " \
                                      "configuring boot-specific resources."
    finally:
        vmm.stop()


def test_snapshot_version_and_describe_snapshot(snapshot, tmp_path):
    state, _, _ = snapshot
    def run(*args):
        return subprocess.run([sys.executable, "-m", "pyrite.api.cli", *args], capture_output=True, text=True,
                              cwd=str(REPO), timeout=30)
    assert run("--snapshot-version").stdout.startswith("v1.0.0\n")
    done = run("--describe-snapshot", str(state))
    assert done.returncode == 0 and done.stdout.startswith("v1.0.0\n")
    done = run("--describe-snapshot", str(tmp_path / "none"))
    assert done.returncode == 1 and "Unable to open snapshot state file: No such file or directory (os error 2)" \
        in done.stdout + done.stderr
