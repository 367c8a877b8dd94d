"""`pyrite run` and pyrite.MicroVM end to end with the test guests: console in and out,
exit status, crashes, pause/resume, Ctrl-C, --serial-out."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import pyrite
from guests import guest_image

PYRITE = [sys.executable, "-m", "pyrite.cli", "run"]


@pytest.fixture(scope="module")
def exit_code_image(kvm):
    return guest_image("exit_code")


def test_hello_through_the_cli(kvm):
    image = guest_image("hello")
    r = subprocess.run([*PYRITE, str(image)], capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert b"hello" in r.stdout
    assert b"Guest-boot-time" in r.stderr and b"exit port" in r.stderr


@pytest.mark.parametrize("status", [0, 1, 42, 127, 128, 200, 255])
def test_exit_status_reaches_the_cli(exit_code_image, status):
    r = subprocess.run([*PYRITE, str(exit_code_image), str(status), "--quiet"], capture_output=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == status, r.stderr
    assert f"exiting with {status}".encode() in r.stdout


def test_interrupt_driven_serial_input(kvm):
    image = guest_image("serial_echo")
    with pyrite.MicroVM(kernel=str(image), cmdline="", mem_mib=32) as vm:
        vm.start()
        assert vm.wait_for_output(b"ready irq=1\n", timeout=10), vm.console_output
        vm.send_console_input(b"first line\nsecond\n")
        assert vm.wait_for_output(b"echo:second\n", timeout=10), vm.console_output
        vm.send_console_input(b"x" * 200 + b"\nquit\n")   # more than the 64-byte FIFO at once
        result = vm.wait(10)
        out = vm.console_output
    assert b"echo:first line\n" in out and b"echo:" + b"x" * 200 + b"\n" in out
    assert result.status == 3
    interrupts = int(out.split(b"interrupts=")[1].split()[0])
    assert interrupts > 0


def test_stdin_pipe_reaches_the_guest(kvm):
    image = guest_image("serial_echo")
    r = subprocess.run([*PYRITE, str(image), "--quiet"], input=b"one\ntwo\nquit\n", capture_output=True,
                       timeout=30)
    assert r.returncode == 2, r.stderr
    assert b"echo:one\n" in r.stdout and b"echo:two\n" in r.stdout


def test_triple_fault_is_reported_as_a_crash(kvm):
    image = guest_image("triple_fault")
    r = subprocess.run([*PYRITE, str(image)], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 1
    assert "breaking the IDT" in r.stdout and "unreachable" not in r.stdout
    assert "triple fault (KVM_EXIT_SHUTDOWN)" in r.stderr
    assert "RIP=0x" in r.stderr and "code at RIP: 0f 0b" in r.stderr   # the ud2


def test_serial_out_file(kvm, tmp_path):
    image = guest_image("hello")
    out = tmp_path / "console.log"
    r = subprocess.run([*PYRITE, str(image), "--serial-out", str(out)], capture_output=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0
    assert b"hello" in out.read_bytes() and b"hello" not in r.stdout


def test_pause_stops_guest_progress_and_resume_continues(kvm):
    image = guest_image("spin")
    with pyrite.MicroVM(kernel=str(image), cmdline="3000000000", mem_mib=32) as vm:
        vm.start()
        time.sleep(0.2)
        vm.pause()
        assert vm.state == "Paused"
        rip = vm.vmm.vcpus[0].vcpu.get_regs().rip
        time.sleep(0.3)
        assert vm.vmm.vcpus[0].vcpu.get_regs().rip == rip   # parked: no instruction ran
        assert vm.exit is None
        vm.resume()
        assert vm.state == "Running"
        time.sleep(0.1)
        vm.stop()
        result = vm.wait(5)
    assert result.reason == "stopped"


def test_ctrl_c_stops_the_vm_cleanly(kvm):
    image = guest_image("spin")
    proc = subprocess.Popen([*PYRITE, str(image), "100000000000"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 130, err
    assert b"interrupted" in err and b"Traceback" not in err
