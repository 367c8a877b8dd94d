"""`pyrite unikernel build` then `pyrite run IMAGE ARGS...`, end to end as a user types them."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from guests import PVM, needs_native_cpl0

GUESTS = Path(__file__).resolve().parents[1] / "guests"

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed (apt-get install gcc)")


def pyrite(*args, stdin: bytes | None = None, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyrite.cli", *map(str, args)], capture_output=True,
                          input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
                          timeout=120, env=env)


def build(tmp_path: Path, source: str, *options) -> Path:
    image = tmp_path / f"{source}.img"
    r = pyrite("unikernel", "build", GUESTS / f"{source}.c", "-o", image, *options)
    assert r.returncode == 0, r.stderr
    return image


@pytest.mark.parametrize("ring0", [False, pytest.param(True, marks=needs_native_cpl0)], ids=["cpl3", "ring0"])
def test_build_then_run_with_arguments(kvm, tmp_path, ring0):
    image = build(tmp_path, "args", *(["--ring0"] if ring0 else []))
    r = pyrite("run", image, "a", "b", "c", "--env", "GREETING=hello")
    assert r.returncode == 3, r.stderr
    assert r.stdout.decode() == ("argc=4\nargv[1]=a\nargv[2]=b\nargv[3]=c\nGREETING=hello\n"
                                 "NOT_SET=(unset)\nenv GREETING=hello\n")


@pytest.mark.skipif(not PVM, reason="only KVM's PVM back end emulates guest CPL 0 (without SSE)")
def test_ring0_image_under_pvm_stops_with_a_clear_emulation_report(kvm, tmp_path):
    """Not a hang and not silence: the VMM names the emulation failure, the CPL and the
    function (musl's code uses SSE, which PVM's CPL-0 emulator lacks)."""
    r = pyrite("run", build(tmp_path, "hello", "--ring0"))
    assert r.returncode != 0
    assert b"KVM_INTERNAL_ERROR_EMULATION" in r.stderr and b"CPL=0" in r.stderr
    assert b"hello from pyrite" not in r.stdout


def test_run_reads_stdin_and_returns_mains_status(kvm, tmp_path):
    image = build(tmp_path, "upper")
    r = pyrite("run", image, "--quiet", stdin=b"one\ntwo\nthree\nend\n")
    assert r.returncode == 3, r.stderr
    assert r.stdout == b'type lines; "end" ends\nONE\nTWO\nTHREE\nlines=3\n'
    assert r.stderr == b""


def test_crash_report_and_status(kvm, tmp_path):
    image = build(tmp_path, "crash")
    r = pyrite("run", image, "null")
    assert r.returncode == 142
    out = r.stdout.decode()
    assert "pyrite: crash: #PF page fault (vector 14)" in out and "cpl=3" in out
    assert out.endswith("pyrite: exit status 142\n")


def test_run_without_an_image_boots_the_demo(kvm, tmp_path):
    r = pyrite("run", env={**os.environ, "PYRITE_CACHE": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert out.startswith("Hello from pyrite's demo unikernel (library OS 0.1.0).\n")
    assert "  booted by   pvh\n" in out and "  CPUs        1\n" in out and "  running at  CPL 3\n" in out
    assert "  memory      127 MiB\n" in out          # 128 MiB less the legacy hole below 1 MiB


def test_an_argument_with_blanks_stays_one_argument(kvm, tmp_path):
    r = pyrite("run", build(tmp_path, "args"), "two words", "")
    assert r.stdout.decode().startswith("argc=3\nargv[1]=two words\nargv[2]=\n")


def test_the_images_default_command_line_applies_without_arguments(kvm, tmp_path):
    image = build(tmp_path, "args", "--cmdline", "from-image GREETING=baked")
    r = pyrite("run", image)
    assert r.stdout.decode().startswith("argc=2\nargv[1]=from-image\nGREETING=baked\n")


def test_triple_fault_report_names_the_function(kvm, tmp_path):
    r = pyrite("run", build(tmp_path, "triple_fault"))
    assert "triple fault" in r.stderr.decode()
    assert "RIP=0x" in r.stderr.decode() and " <main+0x" in r.stderr.decode()


def test_arguments_reach_main_exactly_as_typed(kvm, tmp_path):
    """`lua -e 'print("x")'` and `lua -e x=1` as a user types them: quotes, backslashes, `=`, empty."""
    r = pyrite("run", build(tmp_path, "args"), "--quiet", "--env", "GREETING=a \"b\"", "-e", 'print("x")',
               "x=1", "\\", "", "--", "--", "--quiet")
    assert r.returncode == 7, r.stderr
    assert r.stdout.decode() == ('argc=8\nargv[1]=-e\nargv[2]=print("x")\nargv[3]=x=1\nargv[4]=\\\nargv[5]=\n'
                                 'argv[6]=--\nargv[7]=--quiet\nGREETING=a "b"\nNOT_SET=(unset)\nenv GREETING=a "b"\n')
    r = pyrite("run", build(tmp_path, "args"), "--env", "=x")
    assert r.returncode == 2 and "--env '=x': expected NAME=VALUE" in r.stderr.decode()


@pytest.mark.parametrize("how", ["read", "fread"])
@pytest.mark.parametrize("source", ["pipe", "file", "empty file"])
def test_end_of_stdin_is_end_of_file_in_the_guest(kvm, tmp_path, how, source):
    """The host's stdin ends (a pipe whose writer closes, a file, /dev/null-like empty file):
    the guest's read() returns 0 after the last byte, and again after that."""
    from guests import fnv1a64
    image = build(tmp_path, "stdin_count")
    data = b"" if source == "empty file" else bytes(range(256)) * 40 + b"no newline at the end"
    cmd = [sys.executable, "-m", "pyrite.cli", "run", image, how, "--quiet"]
    if source == "pipe":
        r = subprocess.run(cmd, input=data, capture_output=True, timeout=120)
    else:
        (tmp_path / "in").write_bytes(data)
        with open(tmp_path / "in", "rb") as stdin:
            r = subprocess.run(cmd, stdin=stdin, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == f"bytes={len(data)} fnv1a64={fnv1a64(data)} eof_again=1\n"
