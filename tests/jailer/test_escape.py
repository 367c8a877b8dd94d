"""Escape attempts from inside the jail fail.

A jailed program is run for real (probe.c, built static and jailed under the name
firecracker-probe, by pyrite's jailer and, as the reference, by Firecracker's): it tries to
open a host file (directly and through ".."), to see /proc and a host process, to write the
root-owned program file, to chroot out, to become root, mount, mknod, and reports its
capabilities. pyrite's own VMM runs in the jailer's process (no exec), so its jailed state is
read from the host side (/proc/<pid>: root, credentials, capabilities, namespaces, environment)
and exercised through its API: the VMM itself is asked to open a host file and to write a
root-owned one."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from jailing import GID, PYRITE_JAILER, UID, Jail

PROBE_SOURCE = Path(__file__).with_name("probe.c")
EXPECTED = {"uid": str(UID), "euid": str(UID), "gid": str(GID), "pid": "1", "open_host": "ENOENT",
            "open_dotdot": "ENOENT", "proc": "ENOENT", "kill_host": "ESRCH", "write_exec": "EACCES",
            "chroot_escape": "EPERM", "setuid0": "EPERM", "mount": "EPERM", "mknod": "EPERM", "capeff": "0"}


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed: cannot build the jailed probe")
    out = tmp_path_factory.mktemp("probe") / "firecracker-probe"
    subprocess.run(["gcc", "-static", "-O2", "-o", str(out), str(PROBE_SOURCE)], check=True)
    return out


def run_probe(jailer, probe: Path, base: Path, secret: Path) -> dict:
    jail = Jail(jailer, probe, base, "probe", ["--new-pid-ns"], [str(secret), str(os.getpid())])
    deadline = time.monotonic() + 30
    while b"done\n" not in jail.log.read_bytes():
        assert time.monotonic() < deadline, jail.log.read_text()
        time.sleep(0.01)
    jail.kill()
    return dict(line.split("=", 1) for line in jail.log.read_text().splitlines() if "=" in line)


def test_a_jailed_program_cannot_escape(probe, tmp_path, fc_jailer):
    secret = tmp_path / "host-secret"
    secret.write_text("outside the jail")
    for jailer, name in ((PYRITE_JAILER, "pyrite"), (fc_jailer, "firecracker")):
        base = Path(f"/tmp/jail-probe-{name}-{os.getpid()}")
        base.mkdir()
        try:
            assert run_probe(jailer, probe, base, secret) == EXPECTED, name
        finally:
            shutil.rmtree(base, ignore_errors=True)


def proc_fields(pid: int) -> dict:
    return dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if ":\t" in line)


def test_the_jailed_pyrite_vmm_is_confined(jails, pyrite_vmm, tmp_path):
    jail = jails(PYRITE_JAILER, pyrite_vmm, "confined", ["--new-pid-ns"])
    pid = jail.pid
    status = proc_fields(pid)
    assert status["Uid"].split() == [str(UID)] * 4 and status["Gid"].split() == [str(GID)] * 4
    assert status["Groups"].strip() == ""
    assert int(status["CapEff"], 16) == int(status["CapPrm"], 16) == 0
    assert status["NSpid"].split() == [str(pid), "1"]              # pid 1 of its own pid namespace
    assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    assert os.stat(f"/proc/{pid}/root/").st_ino == os.stat(jail.root).st_ino   # its / is the jail
    assert sorted(os.listdir(f"/proc/{pid}/root")) == ["dev", "pyrite-vmm", "pyrite-vmm.pid", "run"]
    assert Path(f"/proc/{pid}/environ").read_bytes().strip(b"\0") == b""   # no trace of the host's

    # The VMM itself, asked to open a host file: the path does not exist in its world.
    host_file = tmp_path / "kernel-on-the-host"
    host_file.write_bytes(b"\x7fELF" + bytes(60))
    r = jail.request("PUT", "/boot-source", body={"kernel_image_path": str(host_file)})
    assert r.fault == "Boot source error: The kernel file cannot be opened: No such file or directory (os error 2)"
    # ... and to write a root-owned file inside its jail: refused, it is not root.
    owned_by_root = jail.root / "root-owned.img"
    owned_by_root.write_bytes(bytes(4096))
    r = jail.request("PUT", "/drives/rootfs", body={"drive_id": "rootfs", "path_on_host": "/root-owned.img",
                                                     "is_root_device": True, "is_read_only": False})
    assert r.status == 400 and "Permission denied" in r.fault, r
    assert owned_by_root.read_bytes() == bytes(4096)
    assert jail.request("GET", "/").status == 200   # the refusals left the VMM serving
