"""pyrite-vmm under its seccomp filters, in real processes with real filters: every thread
filtered (one filter each) before the guest runs, guests with vsock, block, entropy and a
TAP served, pause/resume and snapshot create/load working; a refused system call ends the
process with exit code 148 and a log line that names the call and the thread."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from api_client import start_vmm
from guests import guest_image
from helpers import filter_without, thread_seccomp, wait_for

TIMEOUT = 60
EXIT_BAD_SYSCALL = 148
SECCOMP_FILTER_MODE = 2

pytestmark = pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK),
                                reason="/dev/kvm missing or not accessible")


@pytest.fixture(scope="module")
def vsock_image():
    return guest_image("virtio_vsock")


@pytest.fixture(scope="module")
def ticker_image():
    from api_client import REPO
    from pyrite.unikernel.build import build_image
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed (apt-get install gcc): cannot build the test guests")
    return build_image([REPO / "tests" / "api" / "guests" / "ticker.c"])


def host_echo(uds: str, port: int, data: bytes) -> bytes:
    """Connect through the hybrid vsock's uds_path and read the guest's echo of `data`."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(TIMEOUT)
    s.connect(uds)
    s.sendall(f"CONNECT {port}\n".encode())
    line = b""
    while not line.endswith(b"\n"):
        line += s.recv(1)
    assert line.startswith(b"OK "), line
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    got = bytearray()
    while chunk := s.recv(1 << 16):
        got += chunk
    s.close()
    return bytes(got)


def put_all(vmm, requests) -> None:
    for method, path, body in requests:
        r = vmm.request(method, path, body=body)
        assert r.status == 204, (path, r)


def assert_all_threads_filtered(pid: int, expect: set[str]) -> None:
    """Every thread has exactly one filter, and the threads named in `expect` exist. (A load's
    answer comes before the host threads install theirs: its vCPUs wait for that.)"""
    def filtered():
        threads = thread_seccomp(pid)
        return expect <= {name for name, _, _ in threads} and \
            all((mode, count) == (SECCOMP_FILTER_MODE, 1) for _, mode, count in threads)
    try:
        wait_for(filtered, 10, "every thread to be filtered")
    except AssertionError:
        raise AssertionError(f"threads (name, Seccomp, Seccomp_filters): {thread_seccomp(pid)}") from None


def test_vsock_guest_pause_resume_snapshot_and_load_under_filters(vsock_image, tmp_path):
    uds, serial = str(tmp_path / "v.sock"), tmp_path / "serial.out"
    vmm = start_vmm(tmp_path, "--id", "filtered")
    loaded = None
    try:
        put_all(vmm, [("PUT", "/boot-source", {"kernel_image_path": str(vsock_image), "boot_args": "echo 5000 3"}),
                      ("PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 64}),
                      ("PUT", "/serial", {"serial_out_path": str(serial)}),
                      ("PUT", "/vsock", {"guest_cid": 3, "uds_path": uds}),
                      ("PUT", "/actions", {"action_type": "InstanceStart"})])
        wait_for(lambda: serial.exists() and b"listening 5000" in serial.read_bytes(), TIMEOUT, "the guest to listen")
        assert_all_threads_filtered(vmm.proc.pid, {"MainThread", "fc_api", "fc_event_loop", "fc_vcpu 0", "fc_vcpu 1"})
        data = os.urandom(300_000)
        assert host_echo(uds, 5000, data) == data

        put_all(vmm, [("PATCH", "/vm", {"state": "Paused"}),
                      ("PUT", "/snapshot/create", {"snapshot_path": str(tmp_path / "vm.state"),
                                                   "mem_file_path": str(tmp_path / "vm.mem")}),
                      ("PATCH", "/vm", {"state": "Resumed"}),
                      ("PUT", "/actions", {"action_type": "FlushMetrics"})])
        assert vmm.request("GET", "/vm/config").status == 200
        assert vmm.alive(), vmm.log.read_text()
    finally:
        vmm.stop()
    assert "bad syscall" not in vmm.log.read_text()

    # The snapshot, loaded by another filtered VMM: the guest still serves its second and third
    # connections, around a pause and a resume.
    os.unlink(uds)   # left by the killed VMM (a load checks the saved path before the override)
    try:
        loaded = start_vmm(tmp_path, "--id", "loaded", name="load.sock")
        uds2 = str(tmp_path / "v2.sock")
        put_all(loaded, [("PUT", "/snapshot/load", {"snapshot_path": str(tmp_path / "vm.state"),
                                                    "mem_backend": {"backend_type": "File",
                                                                    "backend_path": str(tmp_path / "vm.mem")},
                                                    "vsock_override": {"uds_path": uds2},
                                                    "resume_vm": True})])
        assert_all_threads_filtered(loaded.proc.pid, {"MainThread", "fc_api", "fc_event_loop", "fc_vcpu 0"})
        data = os.urandom(100_000)
        assert host_echo(uds2, 5000, data) == data
        put_all(loaded, [("PATCH", "/vm", {"state": "Paused"}), ("PATCH", "/vm", {"state": "Resumed"})])
        assert loaded.alive(), loaded.log.read_text()
        # The third and last connection (the guest ends after it: with two, it could end, and its
        # VMM with it, before the pause above arrived).
        assert host_echo(uds2, 5000, data) == data
    finally:
        if loaded is not None:
            loaded.stop()
    assert "bad syscall" not in loaded.log.read_text()


def test_no_seccomp_leaves_threads_unfiltered(ticker_image, tmp_path):
    serial = tmp_path / "serial.out"
    vmm = start_vmm(tmp_path, "--no-seccomp")
    try:
        put_all(vmm, [("PUT", "/boot-source", {"kernel_image_path": str(ticker_image)}),
                      ("PUT", "/serial", {"serial_out_path": str(serial)}),
                      ("PUT", "/actions", {"action_type": "InstanceStart"})])
        wait_for(lambda: serial.exists() and b"tick 1" in serial.read_bytes(), TIMEOUT, "the guest to tick")
        threads = thread_seccomp(vmm.proc.pid)
        assert len(threads) >= 3 and all(mode == 0 for _, mode, _ in threads), threads
    finally:
        vmm.stop()


def killed_by_filter(vmm, syscall: str, thread: str) -> None:
    assert vmm.proc.wait(TIMEOUT) == EXIT_BAD_SYSCALL, vmm.log.read_text()
    log = vmm.log.read_text()
    assert f"Shutting down VM after intercepting a bad syscall (" in log, log
    assert f"): {syscall}, in thread {thread}." in log, log


def test_a_call_the_api_filter_lacks_kills_the_process_and_is_named(ticker_image, tmp_path):
    """A custom filter without rename for the API thread: PUT /snapshot/create writes each file
    under a temporary name, then renames it into place."""
    serial, metrics = tmp_path / "serial.out", tmp_path / "metrics.json"
    metrics.touch()
    vmm = start_vmm(tmp_path, "--seccomp-filter", str(filter_without(tmp_path, "api", "rename")),
                    "--metrics-path", str(metrics))
    try:
        put_all(vmm, [("PUT", "/boot-source", {"kernel_image_path": str(ticker_image)}),
                      ("PUT", "/serial", {"serial_out_path": str(serial)}),
                      ("PUT", "/actions", {"action_type": "InstanceStart"})])
        wait_for(lambda: serial.exists() and b"tick 1" in serial.read_bytes(), TIMEOUT, "the guest to tick")
        put_all(vmm, [("PATCH", "/vm", {"state": "Paused"})])
        try:
            vmm.request("PUT", "/snapshot/create", body={"snapshot_path": str(tmp_path / "s.state"),
                                                         "mem_file_path": str(tmp_path / "s.mem")})
        except (ConnectionError, OSError):
            pass                        # the process died while answering: that is the point
        killed_by_filter(vmm, "rename", "fc_api")
    finally:
        vmm.stop()
    last = json.loads(metrics.read_text().splitlines()[-1])   # flushed by the handler, as Firecracker's
    assert last["seccomp"]["num_faults"] == 1


def test_openat_after_boot_is_refused_when_the_filter_says_so(ticker_image, tmp_path):
    """With an API filter without openat (Firecracker's threads have no openat either), a
    snapshot create after boot, which opens its files, ends the VMM; nothing is written."""
    serial = tmp_path / "serial.out"
    vmm = start_vmm(tmp_path, "--seccomp-filter", str(filter_without(tmp_path, "api", "openat")))
    try:
        put_all(vmm, [("PUT", "/boot-source", {"kernel_image_path": str(ticker_image)}),
                      ("PUT", "/serial", {"serial_out_path": str(serial)}),
                      ("PUT", "/actions", {"action_type": "InstanceStart"})])
        wait_for(lambda: serial.exists() and b"tick 1" in serial.read_bytes(), TIMEOUT, "the guest to tick")
        put_all(vmm, [("PATCH", "/vm", {"state": "Paused"})])
        try:
            vmm.request("PUT", "/snapshot/create", body={"snapshot_path": str(tmp_path / "s.state"),
                                                         "mem_file_path": str(tmp_path / "s.mem")})
        except (ConnectionError, OSError):
            pass
        killed_by_filter(vmm, "openat", "fc_api")
        assert not (tmp_path / "s.mem").exists()
    finally:
        vmm.stop()


# A thread of a real process installs one of pyrite's default programs, then opens a file.
OPEN_IN_FILTERED_THREAD = r"""
import os, sys, threading
from pyrite.seccomp import load_filters
from pyrite.seccomp.sigsys import install_handler
category = sys.argv[1]
filters = load_filters()
install_handler(lambda line: os.write(2, line.encode() + b"\n"))
def run():
    filters[category].install()
    os.write(1, b"filtered\n")
    os.open("/proc/self/status", os.O_RDONLY)
    os.write(1, b"opened\n")
t = threading.Thread(target=run, name="probe " + category)
t.start(); t.join()
sys.exit(0)
"""


@pytest.mark.parametrize("category", ["vcpu", "vmm"])
def test_default_vcpu_and_vmm_filters_refuse_openat(category):
    r = subprocess.run([sys.executable, "-c", OPEN_IN_FILTERED_THREAD, category], capture_output=True,
                       text=True, timeout=TIMEOUT)
    assert r.returncode == EXIT_BAD_SYSCALL, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == "filtered\n"
    assert f"Shutting down VM after intercepting a bad syscall (257): openat, in thread probe {category}." \
        in r.stderr, r.stderr


def test_a_crashing_guest_is_reported_not_killed_by_the_filters(tmp_path):
    """The vCPU thread's crash report reads the kernel's symbols through an fd opened at boot:
    under the vcpu filter (no openat) the report is made and the VMM ends normally."""
    serial = tmp_path / "serial.out"
    vmm = start_vmm(tmp_path)
    try:
        put_all(vmm, [("PUT", "/boot-source", {"kernel_image_path": str(guest_image("triple_fault"))}),
                      ("PUT", "/serial", {"serial_out_path": str(serial)}),
                      ("PUT", "/actions", {"action_type": "InstanceStart"})])
        assert vmm.proc.wait(TIMEOUT) == 1, vmm.log.read_text()
    finally:
        vmm.stop()
    log = vmm.log.read_text()
    assert "bad syscall" not in log
    assert "triple fault (KVM_EXIT_SHUTDOWN)" in log and "code at RIP: 0f 0b" in log, log
    assert "<main+0x" in log, log      # symbolized from the kernel's ELF symbols


def test_library_os_crash_is_named_under_filters(tmp_path):
    """A pyrite image's stack overflow under a filtered VMM: the vCPU thread reads the image's
    symbols (pyrite_crash_rip, the function) through the fd opened at boot, not by openat,
    which its filter refuses: the VMM ends with the guest's status, not killed by SIGSYS."""
    image = guest_image("stack")
    serial = tmp_path / "serial.out"
    vmm = start_vmm(tmp_path, "--id", "crash")
    try:
        put_all(vmm, [("PUT", "/boot-source", {"kernel_image_path": str(image), "boot_args": "recurse"}),
                      ("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 64}),
                      ("PUT", "/serial", {"serial_out_path": str(serial)}),
                      ("PUT", "/actions", {"action_type": "InstanceStart"})])
        vmm.proc.wait(timeout=TIMEOUT)
    finally:
        vmm.stop()
    log = vmm.log.read_text()
    assert "bad syscall" not in log and vmm.proc.returncode != EXIT_BAD_SYSCALL, log
    assert "stack overflow: the application stack" in serial.read_text()
    assert "crashed at rip 0x" in log and "<descend+0x" in log, log
