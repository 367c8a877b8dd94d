"""The C library of pyrite images (musl) on the library OS's system calls, end to end:
no `syscall` instruction anywhere, floating point bit-identical to the same program and C
library on the host, and the system calls a program reaches (memory, time, random,
identity, refusals with Linux's errno values, signals, TLS, constructors)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time

import pytest

from guests import GUESTS, guest_image, host_musl_build, parse_facts
from pyrite.unikernel.musl import musl_build

PYRITE = [sys.executable, "-m", "pyrite.cli", "run"]
needs_objdump = pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump (binutils) not installed")


def run(image, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*PYRITE, str(image), *args, "--quiet"], capture_output=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def syscall_instructions(path) -> list[str]:
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return [line for line in out.splitlines() if re.search(r"\t(syscall|sysenter|int\s+\$0x80)\b", line)]


@needs_objdump
def test_neither_the_c_library_nor_an_image_has_a_syscall_instruction():
    assert syscall_instructions(musl_build() / "lib" / "libc.a") == []
    assert syscall_instructions(guest_image("libc_check")) == []


def test_floating_point_is_bit_identical_to_the_host(kvm, tmp_path):
    """libm, printf %a/%.17g/%e/%f/%g, strtod and sscanf, long double (x87 precision
    control from the boot's fninit) and rounding modes (MXCSR): the guest prints exactly
    what the same program with the same C library prints on the host (QEMU and Firecracker
    too: tests/kvm/test_unikernel_apps.py)."""
    guest = run(guest_image("fp_results"))
    assert guest.returncode == 0, guest.stderr
    host = subprocess.run([str(host_musl_build(GUESTS / "fp_results.c", tmp_path / "fp_results"))],
                          capture_output=True, timeout=60)
    assert host.returncode == 0
    assert len(guest.stdout.splitlines()) > 350
    assert guest.stdout == host.stdout
    assert b"long double: 0x1.5555555555555556p-2" in guest.stdout       # 64-bit x87 mantissa


@pytest.fixture(scope="module")
def libc_check(kvm):
    return guest_image("libc_check")


def test_system_calls_of_the_library_os(libc_check):
    r = run(libc_check)
    assert r.returncode == 0, r.stderr
    facts = parse_facts(r.stdout)
    # memory: anonymous mappings zeroed (again after reuse), MAP_FIXED, mremap, brk, malloc
    assert facts["mmap_ok"] == "1" and facts["mmap_zeroed"] == "1" and facts["munmap"] == "0"
    assert facts["mmap_fixed_same"] == "1 reused_zeroed=1"
    assert facts["mremap_kept"] == "1 grown_zeroed=1"
    assert facts["mmap_file"] == "1 errno=19"                 # ENODEV: no file mappings
    assert facts["mprotect_rw"] == "0 errno=0" and facts["mprotect_ro"] == "-1 errno=13"
    assert facts["msync"] == "0 errno=0"
    assert facts["brk_grows"] == "1 zeroed=1" and facts["malloc_big"] == "1"
    assert facts["malloc_too_big"] == "1 errno=12"
    # identity, clocks, entropy
    assert facts["uname"] == "pyrite x86_64" and facts["pid"] == "1 ppid=0 uid=0"
    assert facts["monotonic_ok"] == "1" and facts["clock_bad"] == "-1 errno=22"
    assert facts["getrusage"] == "0 errno=0" and facts["user_time_ok"] == "1" and facts["times_ok"] == "1"
    assert facts["getrandom"] == "32 32 differ=1"
    # what a unikernel refuses: Linux's errno values, never a silent success
    assert facts["fork"] == "-1 errno=38" and facts["socket"] == "-1 errno=38"
    assert facts["execve"] == "-1 errno=38" and facts["setuid"] == "-1 errno=1"
    assert facts["pthread_create"] == "11"                    # EAGAIN
    assert facts["fopen_missing"] == "0 errno=2"
    # signals raised by the program itself, TLS, constructors, setjmp/longjmp
    assert facts["raise"] == "0 got=10"
    assert facts["blocked_then_delivered"] == "0 12"
    assert facts["ignored"] == "0"
    assert facts["tls"] == "7 8" and facts["constructed"] == "42" and facts["longjmp"] == "2"
    assert b"unsupported system call" not in r.stdout


def test_time_is_the_wall_clock(libc_check):
    """time() comes from kvmclock's wall-clock record: today's date, not 1970."""
    before = time.time()
    r = run(libc_check)
    guest_time = int(parse_facts(r.stdout)["time"])
    assert before - 120 <= guest_time <= time.time() + 120


def test_abort_and_a_fatal_signal_end_the_vm_with_128_plus_the_signal(libc_check):
    r = run(libc_check, "abort")
    assert r.returncode == 134
    assert r.stdout.endswith(b"pyrite: terminated by signal 6 (SIGABRT)\n")
    r = run(libc_check, "raise-term")
    assert r.returncode == 143
    assert r.stdout.endswith(b"pyrite: terminated by signal 15 (SIGTERM)\n")


def test_an_unknown_system_call_is_named_once_and_fails_with_enosys(libc_check):
    r = run(libc_check, "unknown-syscall")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count(b"pyrite: unsupported system call 206 (io_setup)\n") == 1
    facts = parse_facts(r.stdout)
    assert facts["unknown"] == "-1 errno=38" and facts["unknown_again"] == "-1 errno=38"


def test_avx_runs_at_cpl3_when_the_cpu_has_it(kvm):
    """XCR0 has SSE and AVX enabled by the boot entry (CR4.OSXSAVE, xsetbv) whenever CPUID
    offers AVX; without AVX the guest only reports that."""
    r = run(guest_image("avx"))
    assert r.returncode == 0, r.stdout + r.stderr
    facts = parse_facts(r.stdout)
    if facts["osxsave"].startswith("1 avx=1"):
        assert facts["osxsave"] == "1 avx=1 xcr0_sse_avx=6"
        assert facts["avx_sum"] == "9 7 5 3"
    else:
        assert "avx_sum" not in facts
