"""Refusals: each bad command line gets Firecracker's jailer's text and exit status (a parse error
exits 1; a refused jail aborts, SIGABRT, as Firecracker's panic does), seen side by side with
Firecracker's jailer v1.12.1; and pyrite's jailer leaves nothing behind: no directory, no copy,
no cgroup (Firecracker's leaves some of them, noted where it does)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from jailing import GID, PYRITE_JAILER, UID, cgroup_dirs, remove_cgroups

ABORTED = -signal.SIGABRT


def run(jailer, base: Path, *args, exec_file=None, jail_id="bad-input", uid=UID):
    """The jailer with these arguments (those given in `args` replace the defaults):
    (exit status, its error lines)."""
    options = {"--id": jail_id, "--uid": str(uid), "--gid": str(GID), "--chroot-base-dir": str(base)}
    if exec_file is not None:
        options["--exec-file"] = str(exec_file)
    rest = list(args)
    for i in range(len(rest) - 1):
        if rest[i] in options and rest[i + 1] is not None:
            options[rest[i]] = rest[i + 1]
            rest[i] = rest[i + 1] = None
    cmd = [*jailer, *[x for kv in options.items() for x in kv], *[a for a in rest if a is not None]]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    return done.returncode, _error_line(done.stderr)


def _error_line(stderr: str) -> str:
    """The jailer's own words: Firecracker's panic adds thread and backtrace lines around them."""
    lines = [ln for ln in stderr.splitlines() if ln.startswith(("Jailer error:", "Failed to parse", "Error:"))]
    return "\n".join(lines)


@pytest.fixture
def base():
    d = Path(tempfile.mkdtemp(prefix="jail-bad-", dir="/tmp"))
    yield d
    subprocess.run(["rm", "-rf", str(d)])


def contents(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


CASES = {
    "invalid id": (["--id", "bad_id"], "Jailer error: Invalid instance ID: Invalid char (_) at position 3"),
    "id too long": (["--id", "a" * 65],
                    "Jailer error: Invalid instance ID: Invalid len (65);  the length must be between 1 and 64"),
    "uid not a number": (["--uid", "root"], "Jailer error: Invalid uid: root"),
    "bad cgroup version": (["--cgroup-version", "x", "--cgroup", "cpu.shares=10"],
                           "Jailer error: x is an invalid cgroup version specifier"),
    "cgroup without value": (["--cgroup", "cpu.shares="], "Jailer error: Invalid format for cgroups: cpu.shares="),
    "unknown controller": (["--cgroup", "nosuch.limit=1"], "Jailer error: Controller nosuch is unavailable"),
    "cgroup file escaping": (["--cgroup", "../cpu.shares=1"], "Jailer error: Cgroup invalid file: ../cpu.shares=1"),
    "parent cgroup absolute": (["--parent-cgroup", "/abs", "--cgroup", "cpu.shares=10"],
                               "Jailer error: Parent cgroup path is invalid. Path should not be absolute or "
                               "contain '..' or '.'"),
    "unknown resource": (["--resource-limit", "cpu=1"], "Jailer error: Invalid resource argument: cpu"),
    "resource value": (["--resource-limit", "no-file=lots"],
                       "Jailer error: Invalid limit value for resource: lots: invalid digit found in string"),
    "netns missing": (["--netns", "/var/run/netns/no-such-netns"],
                      "Jailer error: Failed to open file /var/run/netns/no-such-netns: No such file or directory "
                      "(os error 2)"),
    "base dir missing": (["--chroot-base-dir", "/no/such/base"],
                         "Jailer error: Failed to canonicalize path /no/such/base: No such file or directory "
                         "(os error 2)"),
}


@pytest.mark.parametrize("case", CASES)
def test_refusal_as_firecrackers_jailer_and_nothing_left(case, base, fc_jailer, firecracker):
    args, expected = CASES[case]
    theirs = base / "theirs"
    ours = base / "ours"
    theirs.mkdir(), ours.mkdir()
    assert run(fc_jailer, theirs, *args, exec_file=firecracker) == (ABORTED, expected)
    assert run(PYRITE_JAILER, ours, *args, exec_file=firecracker) == (ABORTED, expected)
    assert contents(ours) == []
    assert cgroup_dirs("firecracker", "bad-input") == []


def test_missing_and_wrong_exec_file(base, fc_jailer):
    for exec_file, expected in (
            ("/no/such/firecracker", "Jailer error: Failed to canonicalize path /no/such/firecracker: No such file "
                                     "or directory (os error 2)"),
            ("/bin/true", 'Jailer error: Invalid filename. The filename of `--exec-file` option must contain '
                          '"firecracker": true'),
            ("/tmp", "Jailer error: /tmp is not a file")):
        assert run(fc_jailer, base, exec_file=exec_file) == (ABORTED, expected)
        assert run(PYRITE_JAILER, base, exec_file=exec_file) == (ABORTED, expected)
        assert contents(base) == []


def test_command_line_errors_exit_1_with_firecrackers_words(fc_jailer, firecracker):
    required = ["--exec-file", str(firecracker), "--uid", "1", "--gid", "1"]
    for args in (["--id", "a", "--bogus", *required], ["--id", "a", "--exec-file"], ["--id", "a", "--id", "b"],
                 ["--id", "a", "--uid", "1"], ["--id", "--uid", "1"]):
        theirs = subprocess.run([*fc_jailer, *args], capture_output=True, text=True, timeout=30)
        ours = subprocess.run([*PYRITE_JAILER, *args], capture_output=True, text=True, timeout=30)
        assert theirs.returncode == 1 and theirs.stderr.startswith("Failed to parse arguments: ")
        assert (ours.returncode, ours.stdout, ours.stderr) == (theirs.returncode, theirs.stdout, theirs.stderr)


def test_existing_jail_is_refused_and_left_as_it_was(jails, fc_jailer, firecracker):
    expected = "Jailer error: Failed to create /dev/net/tun via mknod inside the jail: File exists (os error 17)"
    for jailer in (fc_jailer, PYRITE_JAILER):
        first = jails(jailer, firecracker, "again")
        first.kill()
        before = {p: os.lstat(p) for p in first.root.rglob("*")}
        assert run(jailer, jails.base, exec_file=firecracker, jail_id="again") == (ABORTED, expected)
        if jailer is PYRITE_JAILER:   # Firecracker's has by then copied its binary over the old one again
            assert {p: os.lstat(p) for p in first.root.rglob("*")} == before
        subprocess.run(["rm", "-rf", str(first.root.parent)])


def test_a_cgroup_failure_after_the_cgroup_was_made_removes_it(base, firecracker):
    """memory.no_such_file: the cgroup directory exists by the time its parent's file cannot be
    read. Firecracker's jailer leaves the directory (and the jail root); pyrite's removes both."""
    if not Path("/sys/fs/cgroup/memory").is_dir():
        pytest.skip("no cgroup v1 memory hierarchy at /sys/fs/cgroup/memory")
    parent = f"pyrite-test-{os.getpid()}"
    try:
        code, text = run(PYRITE_JAILER, base, "--cgroup", "memory.no_such_file=1", "--parent-cgroup", parent,
                         exec_file=firecracker)
        assert code == ABORTED
        assert text == (f"Jailer error: Failed to read file /sys/fs/cgroup/memory/{parent}/memory.no_such_file "
                        "into a string: No such file or directory (os error 2)")
        assert cgroup_dirs(parent, "bad-input") == [] and not Path(f"/sys/fs/cgroup/memory/{parent}").exists()
        assert contents(base) == []
    finally:
        remove_cgroups(parent, "bad-input")


def test_uid_0_is_accepted_as_firecrackers_jailer_accepts_it(fc_jailer, firecracker, pyrite_vmm):
    """Firecracker's jailer does not refuse --uid 0 (seen with v1.12.1); neither does pyrite's:
    the VMM then runs as root in its jail."""
    base = Path(tempfile.mkdtemp(prefix="jail-uid0-", dir="/tmp"))
    try:
        for jailer, exec_file in ((fc_jailer, firecracker), (PYRITE_JAILER, pyrite_vmm)):
            proc = subprocess.Popen([*jailer, "--id", "uid0", "--exec-file", str(exec_file), "--uid", "0",
                                     "--gid", "0", "--chroot-base-dir", str(base)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            root = base / exec_file.name / "uid0" / "root"
            try:
                deadline = time.monotonic() + 30
                while not (root / "run" / "firecracker.socket").exists():
                    assert proc.poll() is None and time.monotonic() < deadline
                    time.sleep(0.01)
                assert "\nUid:\t0\t0\t0\t0\n" in Path(f"/proc/{proc.pid}/status").read_text()
                assert os.stat(root).st_uid == 0
            finally:
                proc.kill()
                proc.wait()
    finally:
        subprocess.run(["rm", "-rf", str(base)])


def test_help_and_version_as_firecrackers_jailer(fc_jailer):
    theirs = subprocess.run([*fc_jailer, "--help"], capture_output=True, text=True)
    ours = subprocess.run([*PYRITE_JAILER, "--help"], capture_output=True, text=True)
    assert ours.returncode == theirs.returncode == 0
    assert ours.stdout.splitlines()[1:] == theirs.stdout.splitlines()[1:]   # all but the version line
    assert ours.stdout.startswith("Jailer v") and "--resource-limit <resource-limit>" in ours.stdout
    version = subprocess.run([*PYRITE_JAILER, "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("Jailer v") and version.stdout.endswith("\n\n")


def test_a_pyrite_vmm_launcher_of_another_python_is_refused(base):
    """pyrite's VMM runs in the jailer's own interpreter, so a launcher naming another one would
    silently run a different pyrite: refused, naming both."""
    launcher = base / "pyrite-vmm"
    launcher.write_text("#!/usr/bin/python3\nimport sys\nfrom pyrite.api.cli import main\nsys.exit(main())\n")
    launcher.chmod(0o755)
    jails_dir = base / "jails"
    jails_dir.mkdir()
    code, text = run(PYRITE_JAILER, jails_dir, exec_file=launcher)
    assert code == ABORTED
    assert text == (f"Jailer error: {launcher} runs pyrite's VMM with /usr/bin/python3, but this jailer runs in "
                    f"{sys.executable}: use the pyrite-jailer installed beside that VMM")
    assert contents(jails_dir) == []
