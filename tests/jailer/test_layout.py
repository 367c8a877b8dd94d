"""The jail pyrite-jailer makes is the one Firecracker's jailer v1.12.1 makes for the same
command line: the same paths, file types, modes, owners and device numbers, for the real
Firecracker binary and (with its own name) for pyrite's VMM."""
from __future__ import annotations

import os
import stat
from pathlib import Path

from jailing import GID, PYRITE_JAILER, UID


def tree(root: Path, rename: tuple[str, str] | None = None) -> dict:
    """{relative path: (type, mode, uid, gid, rdev)} of everything under root (root included)."""
    found = {}
    for here, dirs, files in os.walk(root):
        for name in [".", *dirs, *files] if Path(here) == root else [*dirs, *files]:
            path = Path(here) / name
            st = os.lstat(path)
            rel = str(path.relative_to(root)) if name != "." else "."
            if rename:
                rel = rel.replace(*rename)
            rdev = (os.major(st.st_rdev), os.minor(st.st_rdev)) if stat.S_ISCHR(st.st_mode) else None
            found[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, rdev)
    return found


def command_line(pid: int) -> list[str]:
    """The VMM's argv with the numbers (times) and the jail id blanked."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
    return ["N" if a.isdigit() else "ID" if a in (b"fc-jailer", b"pyrite-jailer") else a.decode() for a in argv]


def test_jail_of_firecracker_matches_firecrackers_jailer(jails, fc_jailer, firecracker):
    theirs = jails(fc_jailer, firecracker, "fc-jailer", vmm_args=["--boot-timer"])
    ours = jails(PYRITE_JAILER, firecracker, "pyrite-jailer", vmm_args=["--boot-timer"])
    assert command_line(ours.pid) == command_line(theirs.pid) == [
        "/firecracker", "--id", "ID", "--start-time-us", "N", "--start-time-cpu-us", "N", "--parent-cpu-time-us", "N",
        "--boot-timer"]
    assert Path(f"/proc/{ours.pid}/environ").read_bytes() == Path(f"/proc/{theirs.pid}/environ").read_bytes() == b""
    expected = tree(theirs.root)
    assert tree(ours.root) == expected
    # What the comparison covered, so that an empty or trivial jail cannot pass it.
    assert expected["dev/kvm"] == (stat.S_IFCHR, 0o600, UID, GID, (10, 232))
    assert expected["dev/net/tun"][4] == (10, 200) and expected["dev/urandom"][4] == (1, 9)
    assert expected["."][1:4] == (0o700, UID, GID)
    assert expected["firecracker"][:4] == (stat.S_IFREG, 0o755, 0, 0)
    assert expected["run/firecracker.socket"][0] == stat.S_IFSOCK
    assert int((ours.root / "firecracker.pid").read_text()) == ours.pid


def test_jail_of_pyrite_vmm_has_the_same_layout(jails, fc_jailer, firecracker, pyrite_vmm):
    theirs = jails(fc_jailer, firecracker, "fc-jailer")
    ours = jails(PYRITE_JAILER, pyrite_vmm, "pyrite-vmm-jail")
    assert ours.root == jails.base / "pyrite-vmm" / "pyrite-vmm-jail" / "root"
    assert tree(ours.root, rename=("pyrite-vmm", "firecracker")) == tree(theirs.root)
    assert (ours.root / "pyrite-vmm").read_bytes() == pyrite_vmm.read_bytes()   # a copy, as Firecracker's
    assert ours.request("GET", "/").status == 200
