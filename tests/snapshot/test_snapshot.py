"""Full snapshots of a running guest (tests/guests/counter.c, counting at CPL 3): the count
goes on from where it was, in this process and in a new one, from one snapshot as often as
wanted; every refused file says why and leaves the process able to load a good one.

Needs /dev/kvm and gcc; skips, saying which is missing, only without them.
"""
from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kvm"))
from guests import guest_image  # noqa: E402

import pyrite  # noqa: E402
from pyrite import kvm  # noqa: E402
from pyrite.arch.x86_64 import cpuid  # noqa: E402
from pyrite.snapshot import format  # noqa: E402
from pyrite.snapshot.microvm import (MemoryFileError, NotPausedError, RestoreError,  # noqa: E402
                                     SnapshotFileError, StateFileError)

LIMIT = 400                      # the guest counts 1..LIMIT, then prints the sum and exits 0
PAUSE_AT = 100


def counts(console: bytes) -> list[int]:
    return [int(line[6:]) for line in console.decode().splitlines() if line.startswith("count=")]


def expect_complete_run(console: bytes) -> None:
    assert counts(console) == list(range(1, LIMIT + 1))
    assert f"sum={LIMIT * (LIMIT + 1) // 2}\n".encode() in console


@pytest.fixture(scope="module")
def counter():
    if not os.path.exists("/dev/kvm"):
        pytest.skip("/dev/kvm is not present")
    return guest_image("counter")


@pytest.fixture(scope="module")
def taken(counter, tmp_path_factory):
    """A snapshot taken at count PAUSE_AT: (state path, memory path, console before, RAM at pause)."""
    directory = tmp_path_factory.mktemp("snapshot")
    state, mem = directory / "vm.state", directory / "vm.mem"
    with pyrite.MicroVM(counter, cmdline=f"console=ttyS0 -- {LIMIT}", mem_mib=64) as vm:
        vm.start()
        assert vm.wait_for_output(f"count={PAUSE_AT}\n".encode(), 20)
        vm.pause()
        vm.snapshot(state, mem)
        ram = b"".join(bytes(r.mem) for r in vm.vmm.memory.regions)
        before = vm.console_output
    return state, mem, before, ram


def restore_and_finish(state, mem, **options) -> bytes:
    with pyrite.MicroVM.restore(state, mem, **options) as vm:
        result = vm.wait(20)
        assert result is not None and result.status == 0, result
        return vm.console_output


def test_restored_guest_continues_the_count_in_this_process(taken):
    state, mem, before, _ = taken
    expect_complete_run(before + restore_and_finish(state, mem))


def test_restored_guest_continues_the_count_in_a_new_process(taken):
    state, mem, before, _ = taken
    program = ("import sys, pyrite\n"
               "with pyrite.MicroVM.restore(sys.argv[1], sys.argv[2]) as vm:\n"
               "    result = vm.wait(20)\n"
               "    sys.stdout.buffer.write(vm.console_output)\n"
               "    sys.exit(result.status)\n")
    done = subprocess.run([sys.executable, "-c", program, str(state), str(mem)], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    expect_complete_run(before + done.stdout)


def test_memory_file_is_guest_ram_at_the_pause(taken):
    _, mem, _, ram = taken
    assert mem.read_bytes() == ram


def test_one_snapshot_restores_into_several_vms_at_once(taken):
    state, mem, before, _ = taken
    outputs: list[bytes] = []
    threads = [threading.Thread(target=lambda: outputs.append(restore_and_finish(state, mem))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(outputs) == 3
    for output in outputs:
        expect_complete_run(before + output)


def test_restored_paused_waits_for_resume(taken):
    state, mem, before, _ = taken
    with pyrite.MicroVM.restore(state, mem, resume=False) as vm:
        assert vm.state == "Paused"
        assert vm.wait(0.3) is None and vm.console_output == b""
        vm.resume()
        assert vm.wait(20).status == 0
        expect_complete_run(before + vm.console_output)


def test_create_refuses_a_running_vm(counter, tmp_path):
    with pyrite.MicroVM(counter, cmdline=f"console=ttyS0 -- {LIMIT}", mem_mib=64) as vm:
        vm.start()
        with pytest.raises(NotPausedError, match="paused"):
            vm.snapshot(tmp_path / "s", tmp_path / "m")
    assert not list(tmp_path.iterdir())


def test_create_into_a_missing_directory_names_the_file(counter, tmp_path):
    with pyrite.MicroVM(counter, cmdline=f"console=ttyS0 -- {LIMIT}", mem_mib=64) as vm:
        vm.start()
        vm.pause()
        with pytest.raises(SnapshotFileError, match="memory file .*nowhere.*No such file"):
            vm.snapshot(tmp_path / "s", tmp_path / "nowhere" / "m")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk_keeps_the_old_snapshot(counter, tmp_path):
    disk = tmp_path / "small"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (disk / "vm.state").write_bytes(b"old state")
        (disk / "vm.mem").write_bytes(b"old memory")
        with pyrite.MicroVM(counter, cmdline=f"console=ttyS0 -- {LIMIT}", mem_mib=64) as vm:
            vm.start()
            vm.pause()
            with pytest.raises(SnapshotFileError, match="cannot write: No space left"):
                vm.snapshot(disk / "vm.state", disk / "vm.mem")   # 64 MiB into 8 MiB
            vm.resume()
        assert (disk / "vm.state").read_bytes() == b"old state"
        assert (disk / "vm.mem").read_bytes() == b"old memory"
        assert sorted(p.name for p in disk.iterdir()) == ["vm.mem", "vm.state"]
    finally:
        subprocess.run(["umount", str(disk)])


# -- refused files -------------------------------------------------------------------------

def rewritten(path: Path, edit) -> bytes:
    """The state file at `path` with its decoded tree changed by `edit`, re-encoded (valid CRC)."""
    tree = format.decode(path.read_bytes())
    edit(tree)
    return format.encode(tree)


def edit_config(change):
    def edit(tree):
        config = json.loads(tree["config"])
        change(config)
        tree["config"] = json.dumps(config)
    return edit


def missing_cpu_feature(tree) -> None:
    """Give vCPU 0 a leaf-7 EBX feature that no VM on this host gets."""
    here = {(e.function, e.index): e for e in cpuid.normalize(kvm.System().get_supported_cpuid(), 0, 1)}
    offered = here[(7, 0)].ebx if (7, 0) in here else 0
    bit = next(b for b in range(32) if not offered >> b & 1)
    entries = [list(e) for e in struct.iter_unpack("<7I", tree["vcpus"][0]["cpuid"])]
    for entry in entries:
        if entry[:2] == [7, 0]:
            entry[4] |= 1 << bit
    tree["vcpus"][0]["cpuid"] = b"".join(struct.pack("<7I", *e) for e in entries)


def with_version(data: bytes, version: int) -> bytes:
    body = data[:8] + version.to_bytes(4, "little") + data[12:-4]
    return body + zlib.crc32(body).to_bytes(4, "little")


REFUSED_STATES = {
    "truncated": (lambda data, path: data[:len(data) // 2], StateFileError, "truncated"),
    "flipped byte": (lambda data, path: data[:200] + bytes([data[200] ^ 1]) + data[201:], StateFileError,
                     "CRC does not match"),
    "bad magic": (lambda data, path: b"NOTPYRIT" + data[8:], StateFileError, "bad magic"),
    "wrong version": (lambda data, path: with_version(data, 2), StateFileError, "version 2"),
    "vCPU count": (lambda data, path: rewritten(path, edit_config(
        lambda c: c["machine-config"].update(vcpu_count=2))), RestoreError, "1 vCPU states for a machine of 2"),
    "memory layout": (lambda data, path: rewritten(path, edit_config(
        lambda c: c["machine-config"].update(mem_size_mib=128))), RestoreError, "memory layout"),
    "CPU features": (lambda data, path: rewritten(path, missing_cpu_feature), RestoreError,
                     "CPU has features this host lacks"),
    "device records": (lambda data, path: rewritten(path, lambda t: t["serial"].update(ier="x")), RestoreError,
                       "serial.ier"),
}


@pytest.mark.parametrize("case", REFUSED_STATES)
def test_refused_state_file_says_why_and_a_good_one_still_loads(taken, tmp_path, case):
    state, mem, before, _ = taken
    make, error, text = REFUSED_STATES[case]
    bad = tmp_path / "bad.state"
    bad.write_bytes(make(state.read_bytes(), state))
    with pytest.raises(error, match=text):
        pyrite.MicroVM.restore(bad, mem)
    expect_complete_run(before + restore_and_finish(state, mem))


def test_refused_memory_files(taken, tmp_path):
    state, mem, _, _ = taken
    short = tmp_path / "short.mem"
    short.write_bytes(mem.read_bytes()[:4096])
    with pytest.raises(MemoryFileError, match="4096 bytes, the snapshot's guest memory is 67108864"):
        pyrite.MicroVM.restore(state, short)
    with pytest.raises(SnapshotFileError, match="memory file .*missing.mem.*No such file"):
        pyrite.MicroVM.restore(state, tmp_path / "missing.mem")
    with pytest.raises(SnapshotFileError, match="snapshot file .*missing.state.*No such file"):
        pyrite.MicroVM.restore(tmp_path / "missing.state", mem)


def expect_continued_run(console: bytes) -> None:
    """A run joined mid-way: its first line may be the rest of one; then counts to the end."""
    resumed = counts(console.partition(b"\n")[2])
    assert resumed and resumed == list(range(resumed[0], LIMIT + 1))
    assert f"sum={LIMIT * (LIMIT + 1) // 2}\n".encode() in console


def test_clone_gives_independent_vms_and_the_original_goes_on(counter):
    with pyrite.MicroVM(counter, cmdline=f"console=ttyS0 -- {LIMIT}", mem_mib=64) as vm:
        vm.start()
        assert vm.wait_for_output(f"count={PAUSE_AT}\n".encode(), 20)
        clones = vm.clone(4)
        try:
            assert vm.state == "Running"
            for clone in clones:
                assert clone.wait(20).status == 0
                expect_continued_run(clone.console_output)
        finally:
            for clone in clones:
                clone.close()
        assert vm.wait(20).status == 0
        expect_complete_run(vm.console_output)


def test_wall_clock_after_a_restore_is_the_time_of_the_restore(tmp_path):
    """Real time in the guest is monotonic time (the TSC) plus kvmclock's wall clock at boot:
    restored (clock_realtime, as Firecracker's), time() is the time of the restore, not
    of the snapshot."""
    if not os.path.exists("/dev/kvm"):
        pytest.skip("/dev/kvm is not present")
    image = guest_image("wallclock")
    state, mem = tmp_path / "vm.state", tmp_path / "vm.mem"
    with pyrite.MicroVM(image, cmdline="1000", mem_mib=64) as vm:
        vm.start()
        assert vm.wait_for_output(b"time=", 20)
        vm.pause()
        vm.snapshot(state, mem)
    taken_at = time.time()
    time.sleep(4)
    with pyrite.MicroVM.restore(state, mem, clock_realtime=True) as vm:
        restored_at = time.time()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and vm.console_output.count(b"time=") < 5:
            time.sleep(0.05)
        times = [int(t) for t in re.findall(rb"time=(\d+)", vm.console_output)]
    assert restored_at - taken_at >= 4
    assert times and restored_at - 2 <= times[-1] <= time.time() + 2, (times, taken_at, restored_at)
