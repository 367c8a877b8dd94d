"""What the jailer tests share (a module of its own: every test folder has a conftest.py, and
`from conftest import` would find whichever was imported first): the jail's ids, a jailer run
(Jail), and cgroup clean-up."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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
