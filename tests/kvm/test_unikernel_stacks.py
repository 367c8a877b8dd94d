"""Stacks of pyrite images (tests/guests/stack.c): a guard page under each, so that an overflow
is a "stack overflow" crash report with status 142 (128 + #PF) instead of silent corruption;
the application's stack is 8 MiB unless the build says otherwise (--stack-size)."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from guests import guest_image, needs_native_cpl0
from pyrite.arch.x86_64.loader.symbols import elf_symbolizer
from test_unikernel_apps import App, run_firecracker, run_pyrite, run_qemu

OVERFLOW = re.compile(r"^  stack overflow: (the [^\[]+) \[0x([0-9a-f]{16}), 0x([0-9a-f]{16})\) \((\d+) KiB\) "
                      r"ran into its guard page at 0x([0-9a-f]{16})$", re.M)
HEADER = re.compile(r"^pyrite: crash: (#PF page fault \(vector 14\)|#DF double fault \(vector 8\)) "
                    r"error=\S+ at rip=0x([0-9a-f]{16}) cpl=(\d)$", re.M)


def run(vmm: str, image, args: tuple[str, ...], tmp_path, request):
    app = App("stack", "stack", args)
    if vmm == "pyrite":
        return run_pyrite(image, app, tmp_path)
    if vmm == "qemu":
        return run_qemu(image, app, tmp_path)
    return run_firecracker(image, app, tmp_path, request.getfixturevalue("firecracker_bin"))


def check_overflow(output: str, image, stack: str, kib: int | None = None, function: str | None = None) -> None:
    overflow = OVERFLOW.search(output)
    assert overflow, output
    name, bottom, top, size, fault = overflow.groups()
    assert name == stack
    bottom, top, fault = int(bottom, 16), int(top, 16), int(fault, 16)
    assert bottom - 4096 <= fault < bottom and top - bottom == int(size) << 10
    if kib is not None:
        assert int(size) == kib
    header = HEADER.search(output)
    assert header, output
    if function is not None:
        assert elf_symbolizer(image.read_bytes())(int(header.group(2), 16)).startswith(function + "+")
    assert output.endswith("pyrite: exit status 142\n")
    assert "unreachable" not in output


@pytest.mark.parametrize("vmm", ["pyrite", "qemu", "firecracker"])
@pytest.mark.parametrize("ring0", [False, pytest.param(True, marks=needs_native_cpl0)], ids=["cpl3", "ring0"])
def test_unbounded_recursion_is_a_stack_overflow_with_status_142(kvm, vmm, ring0, tmp_path, request):
    image = guest_image("stack", ring0=ring0)
    outcome = run(vmm, image, ("recurse",), tmp_path, request)
    check_overflow(outcome.output, image, "the application stack", kib=8192, function="descend")
    if outcome.status is not None:
        assert outcome.status & outcome.status_bits == 142 & outcome.status_bits


@pytest.mark.parametrize("vmm", ["pyrite", "qemu", "firecracker"])
def test_six_mib_of_stack_work_with_the_default(kvm, vmm, tmp_path, request):
    outcome = run(vmm, guest_image("stack"), ("use", "6300"), tmp_path, request)
    used = re.search(r"^used (\d+) KiB$", outcome.output, re.M)
    assert used and int(used.group(1)) >= 6 * 1024, outcome.output
    assert outcome.status in (0, None)


def test_a_small_stack_size_makes_the_same_guest_overflow(kvm, tmp_path, request):
    image = guest_image("stack", stack_size="1M")
    outcome = run("pyrite", image, ("use", "6300"), tmp_path, request)
    check_overflow(outcome.output, image, "the application stack", kib=1024, function="descend")
    assert outcome.status == 142


@pytest.mark.parametrize("stack, name", [
    ("app", "the application stack"),
    ("crash", "the start-up and crash stack"),
    ("kstack", "the CPL-0 interrupt stack (TSS.RSP0)"),
    ("dfstack", "the CPL-0 double-fault stack (IST1)"),
])
def test_every_stack_has_a_guard_page(kvm, stack, name, tmp_path, request):
    image = guest_image("stack")
    outcome = run("pyrite", image, ("below", stack), tmp_path, request)
    check_overflow(outcome.output, image, name, function="main")


def test_pyrite_names_the_crashing_function(kvm, tmp_path):
    """`pyrite run`'s own message says where the guest crashed, from the image's symbols."""
    image = guest_image("stack")
    r = subprocess.run([sys.executable, "-m", "pyrite.cli", "run", str(image), "recurse"],
                       capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    assert r.returncode == 142
    assert re.search(r"the guest wrote 142 to the exit port 0xf4: crashed at rip 0x[0-9a-f]+ <descend\+0x[0-9a-f]+>",
                     r.stderr.decode()), r.stderr


def test_too_little_memory_for_the_stack_is_a_clear_error(kvm, tmp_path):
    image = guest_image("stack", stack_size="64M")
    r = subprocess.run([sys.executable, "-m", "pyrite.cli", "run", str(image), "use", "1", "--mem-mib", "32",
                        "--quiet"], capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    assert r.returncode == 134
    assert "does not fit in this VM's RAM: give the VM more memory or build the image with a smaller " \
           "--stack-size" in r.stdout.decode()


def test_bad_stack_sizes_are_refused_by_name(tmp_path):
    from pyrite.unikernel.build import BuildError, build_image, parse_stack_size
    assert parse_stack_size("8M") == parse_stack_size("8MiB") == 8 << 20
    assert parse_stack_size("100000") == 102400             # whole pages
    for bad, why in (("12x", "expected a number"), ("4K", "between 16 KiB and 1 GiB"), ("2G", "between")):
        with pytest.raises(BuildError, match=why):
            parse_stack_size(bad)
    with pytest.raises(BuildError, match="stack size 'lots'"):
        build_image(["/nonexistent.c"], stack_size="lots")


def test_cli_stack_size_is_recorded_and_used(kvm, tmp_path):
    from test_unikernel_run import GUESTS, pyrite
    image = tmp_path / "stack.img"
    r = pyrite("unikernel", "build", GUESTS / "stack.c", "-o", image, "--stack-size", "512K")
    assert r.returncode == 0, r.stderr
    assert "  stack           512 KiB (application; a guard page under it)" in \
        pyrite("unikernel", "inspect", image).stdout.decode()
    r = pyrite("run", image, "use", "1000", "--quiet")
    assert r.returncode == 142
    assert "stack overflow: the application stack" in r.stdout.decode() and "(512 KiB)" in r.stdout.decode()
    r = pyrite("unikernel", "build", GUESTS / "stack.c", "-o", image, "--stack-size", "huge")
    assert r.returncode == 2 and b"--stack-size: stack size 'huge'" in r.stderr
