"""The jailer's cgroup set-up and the VMM's memory cgroup check on a mock cgroup file system
(files in a temporary directory, as Firecracker's MockCgroupFs): the cgroup v2 path, which a
host whose controllers all sit in v1 cannot run for real, and v1's inheritance from the parent.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyrite.jailer import cgroups
from pyrite.jailer.errors import JailerError
from pyrite.vmm import memory_cgroup


def mock_v2(tmp_path: Path, controllers: str = "cpuset cpu io memory pids") -> tuple[str, Path]:
    unified = tmp_path / "sys" / "unified"
    unified.mkdir(parents=True)
    (unified / "cgroup.controllers").write_text(controllers + "\n")
    (unified / "cgroup.subtree_control").write_text("")
    mounts = tmp_path / "mounts"
    mounts.write_text(f"cgroup2 {unified} cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0\n")
    return str(mounts), unified


def test_v2_enables_the_controller_down_the_path_then_writes_and_attaches(tmp_path):
    mounts, unified = mock_v2(tmp_path)
    plan = cgroups.plan("2", ["memory.max=1048576"], "vm1", "fc", mounts)
    # A real cgroupfs makes these files with the directory; the mock makes them ahead.
    for d in (unified / "fc", unified / "fc" / "vm1"):
        d.mkdir()
        (d / "cgroup.subtree_control").write_text("")
    plan.setup()
    assert (unified / "cgroup.subtree_control").read_text() == "+memory\n"
    assert (unified / "fc" / "cgroup.subtree_control").read_text() == "+memory\n"
    assert (unified / "fc" / "vm1" / "memory.max").read_text() == "1048576\n"
    assert (unified / "fc" / "vm1" / "cgroup.procs").read_text() == f"{os.getpid()}\n"


def test_v2_refusals_name_the_controller_or_hierarchy(tmp_path):
    mounts, _ = mock_v2(tmp_path, controllers="cpu")
    with pytest.raises(JailerError, match="^Controller memory is unavailable$"):
        cgroups.plan("2", ["memory.max=1"], "vm1", "fc", mounts)
    v1_only = tmp_path / "v1mounts"
    v1_only.write_text("cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n")
    with pytest.raises(JailerError, match="^Hierarchy not found: No hierarchy found for this cgroup version.$"):
        cgroups.plan("2", ["cpu.max=1"], "vm1", "fc", str(v1_only))


def test_v1_inherits_an_empty_parent_value_then_writes_and_undo_removes_what_it_made(tmp_path):
    cpuset = tmp_path / "cpuset"
    (cpuset / "fc").mkdir(parents=True)
    (cpuset / "cpuset.mems").write_text("0\n")
    (cpuset / "fc" / "cpuset.mems").write_text("\n")          # empty, as a new cpuset cgroup's is
    (cpuset / "cgroup.procs").write_text("")
    mounts = tmp_path / "mounts"
    mounts.write_text(f"cgroup {cpuset} cgroup rw,nosuid,nodev,noexec,relatime,cpuset 0 0\n")
    plan = cgroups.plan("1", ["cpuset.mems=0"], "vm1", "fc", str(mounts))
    plan.setup()
    assert (cpuset / "fc" / "cpuset.mems").read_text() == "0\n"   # filled from its own parent
    assert (cpuset / "fc" / "vm1" / "cpuset.mems").read_text() == "0\n"
    assert (cpuset / "fc" / "vm1" / "tasks").read_text() == f"{os.getpid()}\n"
    for leftover in (cpuset / "fc" / "vm1").iterdir():  # a real cgroupfs has no files to remove
        leftover.unlink()
    plan.undo()
    assert not (cpuset / "fc" / "vm1").exists() and (cpuset / "fc").exists()   # only what it made
    assert (cpuset / "cgroup.procs").read_text() == f"{os.getpid()}\n"


def fake_proc(tmp_path: Path, cgroup_lines: str, mount_lines: str) -> str:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "cgroup").write_text(cgroup_lines)
    (proc / "mounts").write_text(mount_lines)
    return str(proc)


@pytest.fixture
def unpinned():
    yield
    memory_cgroup.unpin()


def test_memory_check_reads_the_smallest_limit_up_the_v2_tree(tmp_path, unpinned):
    unified = tmp_path / "unified"
    leaf = unified / "fc" / "vm1"
    leaf.mkdir(parents=True)
    (unified / "fc" / "memory.max").write_text("100663296\n")    # 96 MiB on the parent
    (leaf / "memory.max").write_text("max\n")
    (leaf / "memory.current").write_text(f"{20 << 20}\n")
    proc = fake_proc(tmp_path, "0::/fc/vm1\n", f"cgroup2 {unified} cgroup2 rw 0 0\n")
    assert memory_cgroup.pin(proc)
    assert memory_cgroup.fit_problem(64 << 20) is None
    assert memory_cgroup.fit_problem(128 << 20) == (
        f"memory size 128 MiB does not fit in the memory cgroup: {unified}/fc/memory.max is 96 MiB and the "
        f"VMM already uses 20 MiB ({leaf}/memory.current)")


def test_memory_check_v1_and_no_limit(tmp_path, unpinned):
    memory = tmp_path / "memory"
    leaf = memory / "vm1"
    leaf.mkdir(parents=True)
    (memory / "memory.limit_in_bytes").write_text("9223372036854771712\n")   # v1's "no limit"
    (leaf / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (leaf / "memory.usage_in_bytes").write_text(f"{30 << 20}\n")
    proc = fake_proc(tmp_path, "4:memory:/vm1\n0::/\n", f"cgroup {memory} cgroup rw,memory 0 0\n")
    assert memory_cgroup.pin(proc)
    assert memory_cgroup.fit_problem(1 << 40) is None
    (leaf / "memory.limit_in_bytes").write_text(f"{64 << 20}\n")   # read live through the open file
    assert "memory.limit_in_bytes is 64 MiB" in memory_cgroup.fit_problem(64 << 20)
