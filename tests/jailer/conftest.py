"""Fixtures for the jailer tests: real jails (mount and pid namespaces, cgroups, device nodes,
uid drop) made by pyrite-jailer and by Firecracker's own jailer v1.12.1 for comparison.

Needs root (skips, saying so, otherwise). Every jail, process and cgroup a test makes is
removed in its teardown."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "api"))
sys.path.insert(0, str(REPO / "tests" / "kvm"))
sys.path.insert(0, str(REPO))

from api_client import Client, _accepts  # noqa: E402

UID = GID = 123   # an unprivileged id with no account: what a jail should run as
PYRITE_JAILER = [sys.executable, "-m", "pyrite.jailer"]
PYRITE_VMM = Path(sys.executable).parent / "pyrite-vmm"
SOCKET = "run/firecracker.socket"
CGROUP_ROOTS = ("/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified")

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


class Jail:
    """One jailer run: its process, the jail root, and the VMM's pid once it is up."""

    def __init__(self, jailer: list[str], exec_file: Path, base: Path, jail_id: str, jailer_args=(),
                 vmm_args=(), log: Path | None = None):
        self.exec_name = exec_file.name
        self.root = base / exec_file.name / jail_id / "root"
        self.log = log or base / f"{jail_id}.log"
        cmd = [*jailer, "--id", jail_id, "--exec-file", str(exec_file), "--uid", str(UID), "--gid", str(GID),
               "--chroot-base-dir", str(base), *jailer_args]
        if vmm_args:
            cmd += ["--", *vmm_args]
        self.proc = subprocess.Popen(cmd, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd="/")

    @property
    def socket(self) -> str:
        return str(self.root / SOCKET)

    def wait_ready(self, timeout: float = 30) -> "Jail":
        deadline = time.monotonic() + timeout
        while not _accepts(self.socket):
            if time.monotonic() > deadline or (self.proc.poll() not in (None, 0)):
                raise AssertionError(f"the jailed VMM did not open {self.socket}: {self.log.read_text()}")
            time.sleep(0.01)
        return self

    @property
    def pid(self) -> int:
        return int((self.root / f"{self.exec_name}.pid").read_text())

    def client(self) -> Client:
        return Client(self.socket)

    def request(self, *args, **kwargs):
        c = self.client()
        try:
            return c.request(*args, **kwargs)
        finally:
            c.close()

    def kill(self) -> None:
        try:
            pid = self.pid
        except (OSError, ValueError):
            pid = None
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _wait_gone(pid)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def _wait_gone(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists():
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z"):
                return   # a zombie of a process we do not own: it is gone for our purposes
        except OSError:
            return
        assert time.monotonic() < deadline, f"pid {pid} did not end"
        time.sleep(0.01)


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


def remove_cgroups(parent: str, jail_id: str) -> None:
    for top in CGROUP_ROOTS:
        leaf = Path(top) / parent / jail_id
        deadline = time.monotonic() + 5
        while leaf.exists():
            try:
                leaf.rmdir()
            except OSError:   # busy until the killed VMM's exit has left the cgroup
                assert time.monotonic() < deadline, f"{leaf} still in use"
                time.sleep(0.02)
        try:
            (Path(top) / parent).rmdir()   # only if no other jail uses it
        except OSError:
            pass


def cgroup_dirs(parent: str, jail_id: str) -> list[Path]:
    return [Path(top) / parent / jail_id for top in CGROUP_ROOTS if (Path(top) / parent / jail_id).exists()]
