"""Fixtures for the jailer tests: real jails (mount and pid namespaces, cgroups, device nodes,
uid drop) made by pyrite-jailer and by Firecracker's own jailer v1.12.1 for comparison.

Needs root (skips, saying so, otherwise). Every jail, process and cgroup a test makes is
removed in its teardown."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from jailing import PYRITE_VMM, Jail, remove_cgroups

NOT_ROOT = "the jailer needs root (namespaces, pivot_root, mknod, cgroups, setuid)"


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        here = Path(__file__).parent
        for item in items:
            if Path(item.fspath).parent == here:
                item.add_marker(pytest.mark.skip(reason=NOT_ROOT))


@pytest.fixture(scope="session")
def firecracker():
    from benchmarks.refs import RefError, firecracker_binary
    try:
        return firecracker_binary()
    except RefError as e:
        pytest.skip(f"Firecracker v1.12.1 is not available: {e}")


@pytest.fixture(scope="session")
def fc_jailer():
    from benchmarks.refs import RefError, jailer_binary
    try:
        return [str(jailer_binary())]
    except RefError as e:
        pytest.skip(f"Firecracker's jailer v1.12.1 is not available: {e}")


@pytest.fixture(scope="session")
def pyrite_vmm():
    if not PYRITE_VMM.exists():
        pytest.skip(f"{PYRITE_VMM} is not installed (make setup)")
    return PYRITE_VMM


@pytest.fixture
def jails():
    """start(jailer, exec_file, jail_id, jailer_args, vmm_args) -> Jail; all killed and their
    jails and cgroups removed afterwards. The base is short: a socket path has 107 bytes."""
    base = Path(tempfile.mkdtemp(prefix="jail-", dir="/tmp"))
    made: list[Jail] = []

    def start(jailer, exec_file, jail_id, jailer_args=(), vmm_args=(), wait=True):
        jail = Jail(jailer, Path(exec_file), base, jail_id, jailer_args, vmm_args)
        made.append(jail)
        return jail.wait_ready() if wait else jail

    start.base = base
    yield start
    for jail in made:
        jail.kill()
    for jail in made:
        remove_cgroups(jail.exec_name, jail.root.parent.name)
    shutil.rmtree(base, ignore_errors=True)
