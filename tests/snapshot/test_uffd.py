"""The Uffd memory backend with a real userfaultfd, real sockets and real KVM: `pyrite
uffd-handler` serves a snapshot's memory file page by page to pyrite's VMM (in this process and
through the API) and to the real Firecracker v1.12.1; the counting guest (tests/guests/counter.c)
goes on from where it was. A socket that is missing or refuses the connection gives
Firecracker's error and leaves pyrite's VMM able to load again.

Skips, saying why, without userfaultfd (it needs root, vm.unprivileged_userfaultfd=1 or access
to /dev/userfaultfd), /dev/kvm or gcc; the Firecracker test also when its binary cannot be had.
"""
from __future__ import annotations

import mmap
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "kvm"))
from guests import guest_image  # noqa: E402

sys.path.insert(0, str(TESTS / "api"))
from api_client import Client, start_vmm  # noqa: E402

import pyrite  # noqa: E402
from pyrite.snapshot.uffd import UffdError, Userfaultfd  # noqa: E402
from pyrite.snapshot.uffd_backend import UffdGuestMemory, UffdMemoryError  # noqa: E402

REPO = TESTS.parent
LIMIT = 400                      # the guest counts 1..LIMIT, then prints the sum and exits 0
PAUSE_AT = 100
FIRECRACKER_TEXT = ("Load snapshot error: Failed to restore from snapshot: Failed to load guest memory: Error "
                    "creating guest memory from uffd: Failed to connect to UDS Unix stream: {}")


def _userfaultfd_missing() -> str | None:
    try:
        Userfaultfd.create().close()
    except UffdError as e:
        return (f"userfaultfd is not usable here ({e}): it needs root, sysctl vm.unprivileged_userfaultfd=1 "
                "or access to /dev/userfaultfd, and a kernel built with it")
    return None


UFFD_MISSING = _userfaultfd_missing()
pytestmark = pytest.mark.skipif(UFFD_MISSING is not None, reason=str(UFFD_MISSING))
needs_kvm = pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK),
                               reason="/dev/kvm missing or not accessible")


def counts(console: bytes) -> list[int]:
    """N of each complete "count=N" line (a console still being written may end mid-line)."""
    lines = console.decode(errors="replace").split("\n")[:-1]
    return [int(line[6:]) for line in lines if line.startswith("count=")]


class Handler:
    """`pyrite uffd-handler SOCKET MEM_FILE` as its own process; ready once SOCKET exists."""

    def __init__(self, socket_path: Path, mem_file: Path):
        self.proc = subprocess.Popen([sys.executable, "-m", "pyrite.cli", "uffd-handler", str(socket_path),
                                      str(mem_file)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
        deadline = time.monotonic() + 20
        while not socket_path.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"uffd-handler did not listen on {socket_path}: {self.proc.stderr.read()!r}")
            time.sleep(0.005)

    def wait(self, timeout: float = 10) -> tuple[int, str]:
        status = self.proc.wait(timeout)
        return status, self.proc.stderr.read().decode()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def handler():
    started = []

    def start(socket_path: Path, mem_file: Path) -> Handler:
        started.append(Handler(socket_path, mem_file))
        return started[-1]

    yield start
    for h in started:
        h.stop()


# -- guest memory through the handler, no KVM ------------------------------------------------

def test_pages_come_in_from_the_memory_file_and_writes_stay_private(tmp_path, handler):
    data = os.urandom(1 << 20)
    (tmp_path / "mem").write_bytes(data)
    served = handler(tmp_path / "uffd.sock", tmp_path / "mem")
    memory = UffdGuestMemory([(0, 1 << 20)], str(tmp_path / "uffd.sock"))
    try:
        memory.write(0x3000, b"written first")              # a write fault copies the page in first
        assert memory.read(0, 1 << 20) == data[:0x3000] + b"written first" + data[0x3000 + 13:]
    finally:
        memory.close()
    status, report = served.wait()
    assert status == 0 and "256 pages copied in, 0 zeroed" in report, report
    assert (tmp_path / "mem").read_bytes() == data
    assert not (tmp_path / "uffd.sock").exists()


def test_pages_a_balloon_gave_back_fault_in_as_zeroes(tmp_path, handler):
    data = os.urandom(4 * mmap.PAGESIZE)
    (tmp_path / "mem").write_bytes(data)
    served = handler(tmp_path / "uffd.sock", tmp_path / "mem")
    memory = UffdGuestMemory([(0, len(data))], str(tmp_path / "uffd.sock"))
    try:
        assert memory.read(0, len(data)) == data
        memory.regions[0].mem.madvise(mmap.MADV_DONTNEED, mmap.PAGESIZE, 2 * mmap.PAGESIZE)  # UFFD_EVENT_REMOVE
        page = mmap.PAGESIZE
        assert memory.read(0, len(data)) == data[:page] + bytes(2 * page) + data[3 * page:]
    finally:
        memory.close()
    status, report = served.wait()
    assert status == 0 and "4 pages copied in, 2 zeroed" in report, report


def test_a_socket_that_is_missing_or_refuses_says_so(tmp_path):
    with pytest.raises(UffdMemoryError) as missing:
        UffdGuestMemory([(0, 1 << 20)], str(tmp_path / "none.sock"))
    assert missing.value.detail == "Failed to connect to UDS Unix stream: No such file or directory (os error 2)"
    assert str(tmp_path / "none.sock") in str(missing.value)
    with socket.socket(socket.AF_UNIX) as bound:              # bound, never listening
        bound.bind(str(tmp_path / "bound.sock"))
        with pytest.raises(UffdMemoryError, match=r"Connection refused \(os error 111\)"):
            UffdGuestMemory([(0, 1 << 20)], str(tmp_path / "bound.sock"))


# -- pyrite's VMM -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def taken(tmp_path_factory):
    """A pyrite snapshot of the counting guest paused at count PAUSE_AT or a few after: (state,
    memory, the console up to the pause)."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("/dev/kvm missing or not accessible")
    directory = tmp_path_factory.mktemp("uffd")
    state, mem = directory / "vm.state", directory / "vm.mem"
    with pyrite.MicroVM(guest_image("counter"), cmdline=f"console=ttyS0 -- {LIMIT}", mem_mib=64) as vm:
        vm.start()
        assert vm.wait_for_output(f"count={PAUSE_AT}\n".encode(), 20)
        vm.pause()
        vm.snapshot(state, mem)
        return state, mem, vm.console_output


@needs_kvm
def test_pyrite_restored_through_the_handler_counts_on_to_the_same_sum(tmp_path, taken, handler):
    state, mem, before = taken
    served = handler(tmp_path / "uffd.sock", mem)
    vm = pyrite.MicroVM.restore(state, tmp_path / "uffd.sock", mem_backend="Uffd")
    try:
        result = vm.wait(30)
        assert result is not None and result.status == 0, (result, vm.console_output[-200:])
        assert counts(before + vm.console_output) == list(range(1, LIMIT + 1))
        assert f"sum={LIMIT * (LIMIT + 1) // 2}\n".encode() in vm.console_output
    finally:
        vm.close()
    status, report = served.wait()
    assert status == 0 and "pages copied in" in report, report


@needs_kvm
def test_a_vm_restored_through_uffd_snapshots_again(tmp_path, taken, handler):
    """Creating a snapshot reads every page: the VMM's own faults are served as the vCPU's are."""
    state, mem, before = taken
    served = handler(tmp_path / "uffd.sock", mem)
    vm = pyrite.MicroVM.restore(state, tmp_path / "uffd.sock", mem_backend="Uffd")
    try:
        assert vm.wait_for_output(f"count={PAUSE_AT + 50}\n".encode(), 20)
        vm.pause()
        vm.snapshot(tmp_path / "again.state", tmp_path / "again.mem")
        middle = vm.console_output
    finally:
        vm.close()
    assert served.wait()[0] == 0
    with pyrite.MicroVM.restore(tmp_path / "again.state", tmp_path / "again.mem") as again:
        assert again.wait(30).status == 0
        assert counts(before + middle + again.console_output) == list(range(1, LIMIT + 1))


@needs_kvm
def test_api_load_errors_leave_the_vmm_able_to_load_through_the_handler(tmp_path, taken, handler):
    state, mem, before = taken
    vmm = start_vmm(tmp_path)
    try:
        def load(socket_path):
            return vmm.request("PUT", "/snapshot/load", {
                "snapshot_path": str(state), "resume_vm": True,
                "mem_backend": {"backend_type": "Uffd", "backend_path": str(socket_path)}})

        answer = load(tmp_path / "none.sock")
        assert (answer.status, answer.fault) == (400, FIRECRACKER_TEXT.format("No such file or directory (os error 2)"))
        with socket.socket(socket.AF_UNIX) as bound:
            bound.bind(str(tmp_path / "bound.sock"))
            answer = load(tmp_path / "bound.sock")
        assert (answer.status, answer.fault) == (400, FIRECRACKER_TEXT.format("Connection refused (os error 111)"))
        assert vmm.request("GET", "/vm/config").status == 200

        serial = tmp_path / "serial.out"             # the console apart from the VMM's log lines
        assert vmm.request("PUT", "/serial", {"serial_out_path": str(serial)}).status == 204
        served = handler(tmp_path / "uffd.sock", mem)
        answer = load(tmp_path / "uffd.sock")
        assert answer.status == 204, answer
        last = counts(before)[-1]                   # the guest may count a little past PAUSE_AT before the pause
        deadline = time.monotonic() + 30
        while f"count={last + 20}\n".encode() not in serial.read_bytes():
            assert time.monotonic() < deadline, (serial.read_bytes()[-300:], vmm.log.read_bytes()[-500:])
            time.sleep(0.05)
        assert counts(before + serial.read_bytes())[:last + 20] == list(range(1, last + 21))
        assert vmm.request("GET", "/vm/config").status == 200
    finally:
        vmm.stop()
    status, report = served.wait()                      # the VMM's end closed the connection
    assert status == 0 and "pages copied in" in report, report


# -- the real Firecracker ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def firecracker_bin() -> Path:
    """Firecracker v1.12.1: $PYRITE_FIRECRACKER, or the binary benchmarks/refs.py fetches."""
    if os.environ.get("PYRITE_FIRECRACKER"):
        return Path(os.environ["PYRITE_FIRECRACKER"])
    sys.path.insert(0, str(REPO))
    from benchmarks import refs
    try:
        return refs.firecracker_binary()
    except (refs.RefError, OSError) as e:
        pytest.skip(f"the Firecracker binary could not be fetched: {e}")


class Firecracker:
    """A Firecracker process driven through its API socket; the serial console is its stdout."""

    def __init__(self, binary: Path, directory: Path, name: str):
        self.sock, self.out, log = directory / f"{name}.sock", directory / f"{name}.out", directory / f"{name}.log"
        log.touch()
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen([str(binary), "--api-sock", str(self.sock), "--level", "Info",
                                          "--log-path", str(log)], stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                Client(str(self.sock)).close()
                break
            except OSError:
                assert self.proc.poll() is None and time.monotonic() < deadline, self.out.read_bytes()
                time.sleep(0.01)

    def request(self, method: str, path: str, body: dict):
        client = Client(str(self.sock))
        try:
            return client.request(method, path, body)
        finally:
            client.close()

    def wait_for_output(self, needle: bytes, timeout: float = 30) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.out.read_bytes():
            assert self.proc.poll() is None and time.monotonic() < deadline, self.out.read_bytes()[-300:]
            time.sleep(0.02)
        return self.out.read_bytes()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def firecracker(tmp_path, firecracker_bin):
    started = []

    def start(name: str) -> Firecracker:
        started.append(Firecracker(firecracker_bin, tmp_path, name))
        return started[-1]

    yield start
    for fc in started:
        fc.stop()


@needs_kvm
def test_firecracker_1_12_1_restores_through_pyrite_uffd_handler(tmp_path, firecracker, handler):
    state, mem = tmp_path / "fc.state", tmp_path / "fc.mem"
    first = firecracker("first")
    for method, path, body in [
            ("PUT", "/boot-source", {"kernel_image_path": str(guest_image("counter")),
                                     "boot_args": "console=ttyS0 -- 1000000"}),
            ("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 64}),
            ("PUT", "/actions", {"action_type": "InstanceStart"})]:
        assert first.request(method, path, body).status == 204
    first.wait_for_output(b"count=100\n")
    assert first.request("PATCH", "/vm", {"state": "Paused"}).status == 204
    answer = first.request("PUT", "/snapshot/create", {"snapshot_type": "Full", "snapshot_path": str(state),
                                                       "mem_file_path": str(mem)})
    assert answer.status == 204, answer
    first.stop()
    before = first.out.read_bytes()
    last = counts(before)[-1]

    served = handler(tmp_path / "uffd.sock", mem)
    second = firecracker("second")
    answer = second.request("PUT", "/snapshot/load", {
        "snapshot_path": str(state), "resume_vm": True,
        "mem_backend": {"backend_type": "Uffd", "backend_path": str(tmp_path / "uffd.sock")}})
    assert answer.status == 204, answer
    after = second.wait_for_output(f"count={last + 50}\n".encode())
    assert counts(before + after)[:last + 50] == list(range(1, last + 51))   # no gap, no repeat
    second.stop()
    status, report = served.wait()                       # Firecracker's end closed the connection
    assert status == 0 and "pages copied in" in report, report


@needs_kvm
@pytest.mark.parametrize("case", ["missing", "refusing"])
def test_pyrite_answers_a_bad_backend_socket_as_firecracker_does(tmp_path, taken, firecracker, case):
    """The same PUT /snapshot/load to both (Firecracker's own snapshot for Firecracker)."""
    socket_path = tmp_path / "backend.sock"
    with socket.socket(socket.AF_UNIX) as bound:
        if case == "refusing":
            bound.bind(str(socket_path))
        fc_state = tmp_path / "fc.state"
        first = firecracker("source")
        for method, path, body in [
                ("PUT", "/boot-source", {"kernel_image_path": str(guest_image("counter")),
                                         "boot_args": "console=ttyS0 -- 1000000"}),
                ("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 64}),
                ("PUT", "/actions", {"action_type": "InstanceStart"}),
                ("PATCH", "/vm", {"state": "Paused"}),
                ("PUT", "/snapshot/create", {"snapshot_path": str(fc_state),
                                             "mem_file_path": str(tmp_path / "fc.mem")})]:
            assert first.request(method, path, body).status == 204
        first.stop()
        body = {"mem_backend": {"backend_type": "Uffd", "backend_path": str(socket_path)}, "resume_vm": True}
        theirs = firecracker("loader").request("PUT", "/snapshot/load", {**body, "snapshot_path": str(fc_state)})
        vmm = start_vmm(tmp_path)
        try:
            ours = vmm.request("PUT", "/snapshot/load", {**body, "snapshot_path": str(taken[0])})
        finally:
            vmm.stop()
    assert theirs.status == 400, theirs
    assert (ours.status, ours.json()) == (theirs.status, theirs.json())
