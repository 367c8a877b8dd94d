"""Unikernel applications (tests/guests/*.c built with pyrite's library OS) run on three
VMMs: pyrite, QEMU (-M microvm -kernel, isa-debug-exit at 0xf4) and the real Firecracker
(v1.12.1, fetched by benchmarks/refs.py). Each must give the same console output and end
by itself; the exit status is checked where the VMM reports one:

- pyrite: the byte written to port 0xf4;
- QEMU: isa-debug-exit exits with (byte << 1) | 1, which the OS truncates to 8 bits, so
  only the low 7 bits of the byte are seen;
- Firecracker has no exit port: the image resets through the i8042 and Firecracker
  exits 0.

Expected output comes from outside the guest where it can: the same C file built for the
host with glibc, given the same arguments, environment and input.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import pyrite
from guests import GUESTS, guest_image, host_musl_build, needs_native_cpl0
from pyrite.arch.x86_64.loader.symbols import elf_symbolizer
from pyrite.unikernel.cmdline import quote_args

QEMU = shutil.which("qemu-system-x86_64")
QEMU_ARGS = ["-M", "microvm,x-option-roms=off,isa-serial=on,rtc=off", "-enable-kvm",
             "-cpu", "host,-arch-capabilities", "-nodefaults", "-no-user-config", "-nographic",
             "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-no-reboot", "-m", "128M"]
VMMS = ("pyrite", "qemu", "firecracker")
TIMEOUT = 60


@dataclass(frozen=True)
class App:
    """One application run: what to build, what to give it, what it must print and return."""
    id: str
    source: str
    args: tuple[str, ...] = ()
    env: dict = field(default_factory=dict)
    stdin: bytes | None = None
    ring0: bool = False
    status: int = 0
    # The host build of the same source gives the expected output, with these arguments and
    # environment; else `expected` is the output, or `crash` names the exception. The host
    # build uses glibc, or with host_musl the images' own musl (for bit-identical floating point).
    host_args: tuple[str, ...] | None = None
    host_musl: bool = False
    host_env: dict = field(default_factory=dict)
    expected: str | None = None
    crash: tuple[str, int] | None = None


ARGS = ("a", "two words", "X=1", "")
# Every argument reaches main exactly as given: quotes, backslashes, blanks, `=`, `--`, empty.
QUOTED = ("-e", 'print("x")', "\\", '"', '\\"', " two  spaces ", "", "--", "a=b", "--", "tab\tnew\nline", "\xe9",
          "virtio_mmio.device=4K@0xd0000000:5")
APPS = [
    App("hello", "hello", expected="hello from pyrite\n"),
    App("args-env", "args", ARGS, {"GREETING": "hi there"}, status=4, host_args=ARGS,
        host_env={"GREETING": "hi there"}),
    App("args-quoted", "args", QUOTED, {"GREETING": 'say "hi" \\o/'}, status=13, host_args=QUOTED,
        host_env={"GREETING": 'say "hi" \\o/'}),
    App("malloc-stress", "malloc_stress", ("20000", "12345"), host_args=("20000", "12345")),
    App("fp-results", "fp_results", host_args=(), host_musl=True),
    App("div0", "crash", ("div0",), status=128, crash=("#DE divide error", 0)),
    App("null-write", "crash", ("null",), status=142, crash=("#PF page fault", 14)),
    App("stdin", "upper", stdin=b"hello\nWorld 42, done\nend\n", status=2, host_args=()),
    *[App(f"exit-{n}-{how}", "exit_code", (str(n), how), status=n,
          expected=f"exiting with {n}\n") for n, how in [(0, "return"), (1, "exit"), (42, "return"),
                                                          (127, "exit"), (128, "return"), (255, "exit")]],
    App("ring0-hello", "hello", ring0=True, expected="hello from pyrite\n"),
    App("ring0-args-env", "args", ARGS, {"GREETING": "hi there"}, ring0=True, status=4, host_args=ARGS,
        host_env={"GREETING": "hi there"}),
    App("ring0-div0", "crash", ("div0",), ring0=True, status=128, crash=("#DE divide error", 0)),
    App("ring0-null-write", "crash", ("null",), ring0=True, status=142, crash=("#PF page fault", 14)),
]


@dataclass
class Outcome:
    output: str
    status: int | None          # the guest's status byte as far as the VMM tells it
    status_bits: int            # which bits of it the VMM passes on


# ------------------------------------------------------------------ the three VMMs

def run_pyrite(image: Path, app: App, tmp_path: Path) -> Outcome:
    with pyrite.MicroVM(kernel=str(image), cmdline=quote_args(list(app.args), app.env), mem_mib=128) as vm:
        vm.start()
        if app.stdin is not None:
            vm.send_console_input(app.stdin)
        result = vm.wait(TIMEOUT)
        assert result is not None, f"guest did not end in {TIMEOUT} s: {vm.console_output!r}"
        assert result.reason == "exit-port", result
        return Outcome(vm.console_output.decode(errors="replace"), result.status, 0xFF)


def run_qemu(image: Path, app: App, tmp_path: Path) -> Outcome:
    if QEMU is None:
        pytest.skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
    proc = subprocess.run([QEMU, *QEMU_ARGS, "-kernel", str(image), "-append", quote_args(list(app.args), app.env)],
                          input=app.stdin, stdin=None if app.stdin is not None else subprocess.DEVNULL,
                          capture_output=True, timeout=TIMEOUT)
    assert proc.returncode & 1, f"QEMU did not end by isa-debug-exit (status {proc.returncode}): {proc.stderr!r}"
    return Outcome(proc.stdout.decode(errors="replace"), proc.returncode >> 1, 0x7F)


def run_firecracker(image: Path, app: App, tmp_path: Path, binary: Path) -> Outcome:
    config = tmp_path / "vm.json"
    config.write_text(json.dumps({
        "boot-source": {"kernel_image_path": str(image), "boot_args": quote_args(list(app.args), app.env)},
        "machine-config": {"vcpu_count": 1, "mem_size_mib": 128}, "drives": []}))
    log = tmp_path / "firecracker.log"
    log.touch()
    proc = subprocess.run([str(binary), "--no-api", "--config-file", str(config), "--level", "Warning",
                           "--log-path", str(log)], input=app.stdin,
                          stdin=None if app.stdin is not None else subprocess.DEVNULL,
                          capture_output=True, timeout=TIMEOUT)
    assert proc.returncode == 0, f"firecracker exited {proc.returncode}: {proc.stderr!r}\n{log.read_text()}"
    return Outcome(proc.stdout.decode(errors="replace").replace("\r\n", "\n"), None, 0)


# ------------------------------------------------------------------ expectations

@pytest.fixture(scope="session")
def host_outputs(tmp_path_factory):
    """Output of each source built for the host with glibc or musl (cached per source and arguments)."""
    cache: dict = {}
    workdir = tmp_path_factory.mktemp("host")

    def output(app: App) -> str:
        key = (app.source, app.host_args, tuple(sorted(app.host_env.items())), app.stdin, app.host_musl)
        if key not in cache:
            exe = workdir / f"{app.source}.{'musl' if app.host_musl else 'glibc'}"
            if app.host_musl and not exe.exists():
                host_musl_build(GUESTS / f"{app.source}.c", exe)
            elif not exe.exists():
                subprocess.run(["gcc", "-O2", "-w", str(GUESTS / f"{app.source}.c"), "-o", str(exe)], check=True)
            done = subprocess.run([str(exe), *app.host_args], input=app.stdin or b"", capture_output=True,
                                  env=app.host_env)
            assert done.returncode == app.status, done
            cache[key] = done.stdout.decode()
        return cache[key]
    return output


def check_crash_report(output: str, app: App, image: Path) -> None:
    name, vector = app.crash
    cpl = 0 if app.ring0 else 3
    assert output.startswith(f"crashing: {app.args[0]}\n")
    header = re.search(rf"^pyrite: crash: {re.escape(name)} \(vector {vector}\) error=\S+ "
                       rf"at rip=0x([0-9a-f]{{16}}) cpl={cpl}$", output, re.M)
    assert header, output
    # The faulting instruction is main's own (the report's RIP, looked up in the image's symbols).
    assert elf_symbolizer(image.read_bytes())(int(header.group(1), 16)).startswith("main+")
    if vector == 14:
        assert "  cr2=0x0000000000000000 (write not present" in output
    for register in ("rax=", "rsi=", "r8 =", "r12=", "rflags=", "stack:"):
        assert register in output
    assert "unreachable" not in output
    assert output.endswith(f"pyrite: exit status {app.status}\n")


def expected_output(app: App, host_outputs) -> str | None:
    if app.expected is not None:
        return app.expected
    if app.host_args is not None:
        return host_outputs(app)
    return None


@pytest.mark.parametrize("vmm", VMMS)
@pytest.mark.parametrize("app", [pytest.param(a, marks=needs_native_cpl0) if a.ring0 else a for a in APPS],
                         ids=[a.id for a in APPS])
def test_app_runs_the_same_on_every_vmm(kvm, app, vmm, tmp_path, host_outputs, request):
    image = guest_image(app.source, ring0=app.ring0)
    if vmm == "pyrite":
        outcome = run_pyrite(image, app, tmp_path)
    elif vmm == "qemu":
        outcome = run_qemu(image, app, tmp_path)
    else:
        outcome = run_firecracker(image, app, tmp_path, request.getfixturevalue("firecracker_bin"))
    if app.crash:
        check_crash_report(outcome.output, app, image)
    else:
        assert outcome.output == expected_output(app, host_outputs)
    if outcome.status_bits:
        assert outcome.status == app.status & outcome.status_bits


def test_every_exit_status_0_to_255_by_return_and_by_exit(kvm):
    image = guest_image("exit_code")
    for status in range(256):
        how = "exit" if status % 2 else "return"
        with pyrite.MicroVM(kernel=str(image), cmdline=f"{status} {how}", mem_mib=32) as vm:
            vm.start()
            result = vm.wait(10)
            assert (result.reason, result.status) == ("exit-port", status), vm.console_output
            assert vm.console_output == f"exiting with {status}\n".encode()

