"""Where clones run: jailed (each in its own pyrite-vmm under pyrite-jailer, as the function's
own unprivileged uid, in a root holding only its snapshot) when the service runs as root, and
in the service's process otherwise; both serve the same invocations."""
from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from lambda_service import Running, create, requirements, short_state_dir

pytestmark = requirements


@pytest.fixture(params=["in-process", "jailed"])
def service(request):
    jail = request.param == "jailed"
    if jail and os.geteuid() != 0:
        pytest.skip("jailed clones need root (namespaces, pivot_root, setuid)")
    state = short_state_dir()
    running = Running(state, pool_size=1, max_concurrency=4, jail=jail)
    yield running
    running.close()
    shutil.rmtree(state, ignore_errors=True)


def test_invocations_crash_and_timeout(service):
    lam = service.client()
    create(lam, "modes", Timeout=1)
    for n in range(3):                              # cold, then from the pool
        body = json.loads(lam.invoke(FunctionName="modes", Payload=json.dumps({"n": n}))["Payload"].read())
        assert body["calls"] == 101
    crash = json.loads(lam.invoke(FunctionName="modes", Payload=b'"crash"')["Payload"].read())
    assert crash["errorType"] == "Runtime.ExitError" and "exit status 142" in crash["errorMessage"]
    spin = json.loads(lam.invoke(FunctionName="modes", Payload=b'"spin"')["Payload"].read())
    assert spin["errorMessage"].endswith("Task timed out after 1.00 seconds")
    assert json.loads(lam.invoke(FunctionName="modes", Payload=b"{}")["Payload"].read())["calls"] == 101


def test_jailed_clone_runs_as_the_functions_uid_in_its_own_root_filtered(service):
    if not service.service.jail:
        pytest.skip("in-process clones have no jail")
    lam = service.client()
    create(lam, "jailed-a")
    create(lam, "jailed-b")
    records = {name: service.service._resolve(name) for name in ("jailed-a", "jailed-b")}
    assert records["jailed-a"].jail_uid != records["jailed-b"].jail_uid != 0
    for name, record in records.items():
        clone = wait_for_pooled_clone(service, name)
        pid = clone.vm.proc.pid
        status = open(f"/proc/{pid}/status").read()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert uid_line.split()[1:] == [str(record.jail_uid)] * 4
        for tid in os.listdir(f"/proc/{pid}/task"):             # every thread filtered (seccomp)
            task = open(f"/proc/{pid}/task/{tid}/status").read()
            assert "\nSeccomp:\t2\n" in task, task
        seen = set(os.listdir(f"/proc/{pid}/root"))           # the VMM's whole file system
        assert {"vm.state", "vm.mem", "dev", "run"} <= seen
        assert not seen & {"etc", "usr", "home", "tmp", "functions"}
        snapshot = service.service.store.build_dir(name, record.build_id) / "vm.mem"
        assert (os.stat(snapshot).st_uid, os.stat(snapshot).st_mode & 0o777) == (record.jail_uid, 0o600)


def wait_for_pooled_clone(service, name: str):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with service.service.instances._lock:
            pool = service.service.instances._pools[name][1]
            if pool:
                return pool[0]
        time.sleep(0.01)
    raise AssertionError(f"no warm clone of {name} within 60 s")
