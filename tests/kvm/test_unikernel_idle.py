"""An idle unikernel costs the host (almost) nothing: a guest asleep in nanosleep, and one
blocked in vsock_accept, halt their vCPU (the library OS arms the LAPIC timer, or turns on
the device's interrupt) instead of spinning. Measured as the `pyrite run` process's CPU
time (user + system, /proc/<pid>/stat) over a window while the guest waits.

The bound asserted is generous (a tenth of a core) so that a loaded host does not fail it;
a spinning guest uses a whole core. PYRITE_IDLE_SECONDS sets the window (default 3 s; the
issue's measurement is 10 s) and the numbers are printed (pytest -s)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from guests import guest_image, needs_native_cpl0

WINDOW = float(os.environ.get("PYRITE_IDLE_SECONDS", "3"))
MAX_SHARE = 0.10          # of one core, over the window
TIMEOUT = 60

pytestmark = pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK),
                                reason="/dev/kvm missing or not accessible")


def cpu_seconds(pid: int) -> float:
    """utime + stime of process `pid` (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for_output(path: Path, text: bytes, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + TIMEOUT
    while text not in (path.read_bytes() if path.exists() else b""):
        assert proc.poll() is None, f"the guest ended early: {path.read_bytes()!r}"
        assert time.monotonic() < deadline, f"no {text!r} from the guest: {path.read_bytes()!r}"
        time.sleep(0.02)


def idle_share(proc: subprocess.Popen) -> float:
    """The share of one core the VMM process uses over WINDOW seconds, from now."""
    t0, c0 = time.monotonic(), cpu_seconds(proc.pid)
    time.sleep(WINDOW)
    t1, c1 = time.monotonic(), cpu_seconds(proc.pid)
    assert proc.poll() is None, "the guest ended during the measurement"
    return (c1 - c0) / (t1 - t0)


def run(image: Path, *args: str, serial: Path) -> subprocess.Popen:
    """`pyrite run` in the background; its messages go to a file beside `serial` (a pipe
    nobody reads could stall it)."""
    with open(serial.with_suffix(".stderr"), "wb") as stderr:
        return subprocess.Popen([sys.executable, "-m", "pyrite.cli", "run", str(image), *args, "--quiet",
                                 "--serial-out", str(serial)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=stderr)


def wait_for_end(proc: subprocess.Popen, serial: Path) -> int:
    try:
        return proc.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the guest did not end: console {serial.read_bytes()!r}, "
                             f"pyrite {serial.with_suffix('.stderr').read_bytes()!r}") from None


@pytest.mark.parametrize("ring0", [False, pytest.param(True, marks=needs_native_cpl0)], ids=["cpl3", "ring0"])
def test_a_sleeping_guest_uses_almost_no_host_cpu(kvm, tmp_path, ring0):
    image = guest_image("clock", ring0=ring0)
    serial = tmp_path / "serial.out"
    sleep_ms = int((WINDOW + 3) * 1000)
    proc = run(image, str(sleep_ms), serial=serial)
    try:
        wait_for_output(serial, b"tsc_hz=", proc)
        share = idle_share(proc)
        assert wait_for_end(proc, serial) == 0, serial.with_suffix(".stderr").read_bytes()
    finally:
        proc.kill()
        proc.wait()
    print(f"\nsleeping guest{' (ring 0)' if ring0 else ''}: {share * 100:.2f}% of a core over {WINDOW:.0f} s")
    facts = dict(line.split("=", 1) for line in serial.read_text().splitlines() if "=" in line)
    slept_ns = int(facts["slept_ns"].split()[0])
    assert sleep_ms * 1_000_000 <= slept_ns < sleep_ms * 1_000_000 + 500_000_000
    assert share < MAX_SHARE, f"a guest asleep in nanosleep used {share * 100:.1f}% of a core"


def test_a_guest_blocked_on_vsock_uses_almost_no_host_cpu(kvm, tmp_path):
    image = guest_image("virtio_vsock")
    serial, uds = tmp_path / "serial.out", str(tmp_path / "v.sock")
    proc = run(image, "echo", "5000", "1", "--vsock", f"3,{uds}", serial=serial)
    try:
        wait_for_output(serial, b"listening 5000", proc)
        share = idle_share(proc)
        # Still alive and serving: the host connects, sends, and reads the echo.
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(TIMEOUT)
        s.connect(uds)
        s.sendall(b"CONNECT 5000\n")
        assert s.recv(64).startswith(b"OK ")
        s.sendall(b"after the wait")
        s.shutdown(socket.SHUT_WR)
        echoed = b""
        while chunk := s.recv(4096):
            echoed += chunk
        assert echoed == b"after the wait"
        assert wait_for_end(proc, serial) == 0, serial.with_suffix(".stderr").read_bytes()
    finally:
        proc.kill()
        proc.wait()
    print(f"\nguest blocked on vsock: {share * 100:.2f}% of a core over {WINDOW:.0f} s")
    assert share < MAX_SHARE, f"a guest blocked in vsock_accept used {share * 100:.1f}% of a core"


def test_a_guest_snapshotted_asleep_wakes_up_after_restore(kvm, tmp_path):
    """The armed timer (the TSC deadline, or the LAPIC's count) is vCPU state a snapshot keeps:
    a restored sleeper ends its sleep instead of halting for ever."""
    import pyrite
    image = guest_image("clock")
    with pyrite.MicroVM(kernel=str(image), cmdline="1500", mem_mib=64) as vm:
        vm.start()
        assert vm.wait_for_output(b"tsc_hz=", TIMEOUT), vm.console_output
        time.sleep(0.3)
        vm.pause()
        assert b"slept_ns" not in vm.console_output
        vm.snapshot(str(tmp_path / "vm.state"), str(tmp_path / "vm.mem"))
    with pyrite.MicroVM.restore(str(tmp_path / "vm.state"), str(tmp_path / "vm.mem")) as clone:
        result = clone.wait(TIMEOUT)
        assert result is not None and result.status == 0, (result, clone.console_output)
        assert b"slept_ns=" in clone.console_output


@pytest.mark.parametrize("tsc_deadline", [True, False], ids=["tsc-deadline", "one-shot"])
def test_sleep_is_exact_in_both_lapic_timer_modes(kvm, tsc_deadline):
    """QEMU can hide CPUID's TSC-deadline bit: the library OS then counts the LAPIC's own clock
    (one-shot mode, its rate measured against the TSC). Either way a sleep neither ends early
    nor oversleeps by much, and the vCPU halts meanwhile."""
    import shutil
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        pytest.skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
    from test_unikernel_apps import QEMU_ARGS
    args = list(QEMU_ARGS)
    if not tsc_deadline:
        args[args.index("host,-arch-capabilities")] = "host,-arch-capabilities,-tsc-deadline"
    sleep_ms = 3000
    proc = subprocess.Popen([qemu, *args, "-kernel", str(guest_image("clock")), "-append", str(sleep_ms)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 1, out                  # isa-debug-exit: (0 << 1) | 1
    facts = dict(line.split("=", 1) for line in out.decode().splitlines() if "=" in line)
    slept_ns = int(facts["slept_ns"])
    assert sleep_ms * 1_000_000 <= slept_ns < sleep_ms * 1_000_000 + 200_000_000
    cpu = usage.ru_utime + usage.ru_stime             # QEMU's start-up and exit included
    print(f"\nQEMU, {'TSC-deadline' if tsc_deadline else 'one-shot'} timer: slept {slept_ns / 1e6:.2f} ms, "
          f"{cpu * 1000:.0f} ms of CPU in all")
    assert cpu < MAX_SHARE * sleep_ms / 1000 + 0.15, f"QEMU used {cpu:.2f} s of CPU for a {sleep_ms} ms sleep"
