"""Cgroups and resource limits hold, set as Firecracker's jailer sets them (compared side by side
where the two can be): cgroup v1 files and task attachment, cgroup v2 --parent-cgroup placement,
RLIMIT_NOFILE / RLIMIT_FSIZE, and a memory limit below what the guest needs refused at
InstanceStart with the reason instead of an OOM kill mid-run."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from jailing import PYRITE_JAILER, remove_cgroups

V1 = Path("/sys/fs/cgroup")
UNIFIED = Path("/sys/fs/cgroup/unified")


def limits(pid: int) -> dict:
    found = {}
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]:
        name, soft, hard = re.split(r"\s{2,}", line.strip())[:3]
        found[name] = (soft, hard)
    return found


def cgroup_of(pid: int) -> dict:
    return {controllers: path for _, controllers, path in
            (line.split(":", 2) for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines())}


@pytest.fixture
def parent():
    """A parent cgroup of this test's own; listed before `jails`, so removed after the jails."""
    name = f"pyrite-test-{os.getpid()}"
    yield name
    for top in (V1 / "memory", V1 / "cpu", UNIFIED):
        for leaf in (top / name).glob("*/") if (top / name).exists() else []:
            remove_cgroups(name, leaf.name)
        try:
            (top / name).rmdir()
        except OSError:
            pass


def both(jails, fc_jailer, firecracker, pyrite_vmm):
    """The same jail, by Firecracker's jailer around Firecracker and by pyrite's around its VMM."""
    return ((fc_jailer, firecracker, "fc"), (PYRITE_JAILER, pyrite_vmm, "py"))


def test_resource_limits_as_firecrackers_jailer(jails, fc_jailer, firecracker, pyrite_vmm):
    for jailer, exec_file, name in both(jails, fc_jailer, firecracker, pyrite_vmm):
        default = jails(jailer, exec_file, f"{name}-default")
        assert limits(default.pid)["Max open files"] == ("2048", "2048"), name
        limited = jails(jailer, exec_file, f"{name}-limited",
                        ["--resource-limit", "no-file=512", "--resource-limit", "fsize=1048576"])
        assert limits(limited.pid)["Max open files"] == ("512", "512"), name
        assert limits(limited.pid)["Max file size"] == ("1048576", "1048576"), name
        assert limited.request("GET", "/").status == 200


def test_cgroup_v1_values_and_tasks_as_firecrackers_jailer(parent, jails, fc_jailer, firecracker, pyrite_vmm):
    if not (V1 / "cpu" / "cpu.shares").exists():
        pytest.skip("no cgroup v1 cpu hierarchy at /sys/fs/cgroup/cpu")
    for jailer, exec_file, name in both(jails, fc_jailer, firecracker, pyrite_vmm):
        jail = jails(jailer, exec_file, name, ["--cgroup", "cpu.shares=123", "--parent-cgroup", parent])
        leaf = V1 / "cpu" / parent / name
        assert (leaf / "cpu.shares").read_text() == "123\n"
        assert str(jail.pid) in (leaf / "tasks").read_text().split()
        assert cgroup_of(jail.pid)["cpu"] == f"/{parent}/{name}"


def test_cgroup_v2_parent_cgroup_placement_as_firecrackers_jailer(parent, jails, fc_jailer, firecracker,
                                                                  pyrite_vmm):
    """--cgroup-version 2 with only --parent-cgroup: the process joins that existing cgroup."""
    if not (UNIFIED / "cgroup.procs").exists():
        pytest.skip("no cgroup v2 hierarchy at /sys/fs/cgroup/unified")
    (UNIFIED / parent).mkdir()
    for jailer, exec_file, name in both(jails, fc_jailer, firecracker, pyrite_vmm):
        jail = jails(jailer, exec_file, name, ["--cgroup-version", "2", "--parent-cgroup", parent])
        assert cgroup_of(jail.pid)[""] == f"/{parent}", name
        jail.kill()


def test_cgroup_v2_memory_limit(parent, jails, pyrite_vmm):
    if "memory" not in (UNIFIED / "cgroup.controllers").read_text().split() if UNIFIED.exists() else True:
        pytest.skip("the cgroup v2 hierarchy has no memory controller on this host (cgroup v1 holds it)")
    jail = jails(PYRITE_JAILER, pyrite_vmm, "mem-v2", ["--cgroup-version", "2", "--cgroup", "memory.max=100663296",
                                                      "--parent-cgroup", parent])
    assert (UNIFIED / parent / "mem-v2" / "memory.max").read_text() == "100663296\n"
    refused_then_fits(jail, "memory.max", UNIFIED / parent / "mem-v2")


def test_cgroup_v1_memory_limit_below_the_guest_is_refused_at_start(parent, jails, pyrite_vmm):
    if not (V1 / "memory" / "memory.limit_in_bytes").exists():
        pytest.skip("no cgroup v1 memory hierarchy at /sys/fs/cgroup/memory")
    jail = jails(PYRITE_JAILER, pyrite_vmm, "mem-v1", ["--cgroup", "memory.limit_in_bytes=100663296",
                                                      "--parent-cgroup", parent])
    leaf = V1 / "memory" / parent / "mem-v1"
    assert (leaf / "memory.limit_in_bytes").read_text() == "100663296\n"
    assert str(jail.pid) in (leaf / "tasks").read_text().split()
    refused_then_fits(jail, "memory.limit_in_bytes", leaf)


def refused_then_fits(jail, limit_file: str, leaf: Path) -> None:
    """128 MiB of guest memory in a 96 MiB cgroup: refused, naming the file; the VMM stays up,
    and a 16 MiB guest then boots and runs in the same cgroup."""
    from guests import guest_image
    kernel = jail.root / "vmlinux"
    os.link(guest_image("counter"), kernel) if _same_fs(guest_image("counter"), jail.root) else \
        kernel.write_bytes(guest_image("counter").read_bytes())
    assert jail.request("PUT", "/boot-source", body={"kernel_image_path": "/vmlinux",
                                                     "boot_args": "console=ttyS0 -- 30"}).status == 204
    assert jail.request("PUT", "/serial", body={"serial_out_path": "/serial.out"}).status == 204
    assert jail.request("PUT", "/machine-config", body={"vcpu_count": 1, "mem_size_mib": 128}).status == 204
    r = jail.request("PUT", "/actions", body={"action_type": "InstanceStart"})
    assert r.status == 400, r
    assert re.fullmatch(r"Start microvm error: Invalid Memory Configuration: memory size 128 MiB does not fit in "
                        rf"the memory cgroup: {re.escape(str(leaf / limit_file))} is 96 MiB and the VMM already "
                        r"uses \d+ MiB \(.*\)", r.fault), r.fault
    assert jail.request("PUT", "/machine-config", body={"vcpu_count": 1, "mem_size_mib": 16}).status == 204
    assert jail.request("PUT", "/actions", body={"action_type": "InstanceStart"}).status == 204
    serial = jail.root / "serial.out"
    deadline = time.monotonic() + 60
    while b"sum=465" not in (serial.read_bytes() if serial.exists() else b""):
        assert time.monotonic() < deadline, serial.read_bytes()[-300:] if serial.exists() else "no serial"
        time.sleep(0.05)


def _same_fs(a: Path, b: Path) -> bool:
    return os.stat(a).st_dev == os.stat(b).st_dev
