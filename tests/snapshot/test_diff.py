"""Diff snapshots on the real VMM (Firecracker's semantics): the counter guest booted with
dirty page tracking, a Full snapshot, then Diff snapshots holding only the pages dirtied since
the snapshot before, each rebased onto a copy of the Full memory file; the result restores,
here and in a new pyrite-vmm process, and the count goes on from the Diff's point.

Needs /dev/kvm and gcc (the guest is built with pyrite's library OS); without either the
KVM tests skip and say which is missing.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time

import pytest

import pyrite
from pyrite.api.controller import ApiController
from pyrite.api.logger import Logger
from pyrite.api.metrics import Metrics
from pyrite.snapshot.microvm import SnapshotError
from pyrite.snapshot.rebase import RebaseError, data_extents, rebase

MEM_MIB = 64
FULL_SIZE = MEM_MIB << 20
COUNT = 6000          # about 0.6 ms per count here: a few seconds to the end

NEEDS_KVM = pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK),
                               reason="/dev/kvm missing or not accessible")


@pytest.fixture(scope="module")
def counter():
    from guests import guest_image        # tests/kvm: skips when gcc is missing
    return guest_image("counter")


def counts(console: bytes) -> list[int]:
    return [int(n) for n in re.findall(rb"count=(\d+)\n", console)]


def pause_after(vm, count: int) -> None:
    assert vm.wait_for_output(f"count={count}\n".encode(), 30), vm.console_output[-200:]
    vm.pause()


def assert_whole_run(console: bytes) -> None:
    """The guest's output from boot to exit: every count once, in order, and the right sum."""
    assert counts(console) == list(range(1, COUNT + 1))
    assert console.endswith(f"sum={COUNT * (COUNT + 1) // 2}\n".encode()), console[-100:]


def guest_memory(vm) -> bytes:
    return b"".join(bytes(r.mem) for r in vm.vmm.memory.regions)


def extents(path) -> list[tuple[int, int]]:
    fd = os.open(path, os.O_RDONLY)
    try:
        return data_extents(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@NEEDS_KVM
def test_diffs_rebased_onto_the_full_restore_here_and_in_a_new_process(counter, tmp_path):
    full_state, full_mem, rebased = tmp_path / "full.state", tmp_path / "full.mem", tmp_path / "rebased.mem"
    vm = pyrite.MicroVM(counter, cmdline=f"console=ttyS0 -- {COUNT}", mem_mib=MEM_MIB, track_dirty_pages=True)
    try:
        vm.start()
        pause_after(vm, 300)
        vm.snapshot(full_state, full_mem)
        assert os.stat(full_mem).st_size == FULL_SIZE
        shutil.copyfile(full_mem, rebased)
        for layer in (1, 2):
            vm.resume()
            pause_after(vm, counts(vm.console_output)[-1] + 300)
            state, diff = tmp_path / f"diff{layer}.state", tmp_path / f"diff{layer}.mem"
            vm.snapshot(state, diff, "Diff")
            st = os.stat(diff)
            assert st.st_size == FULL_SIZE                       # sparse, of the full size ...
            assert 0 < st.st_blocks * 512 <= 1 << 20             # ... with a few pages of data
            rebase(str(rebased), str(diff))
            assert rebased.read_bytes() == guest_memory(vm), f"layer {layer}: rebased file != guest memory"
        before = vm.console_output
    finally:
        vm.close()

    # The Diff's state with the rebased memory, in this process ...
    restored = pyrite.MicroVM.restore(tmp_path / "diff2.state", rebased)
    try:
        end = restored.wait(60)
        assert end is not None and end.status == 0, end
        assert_whole_run(before + restored.console_output)
    finally:
        restored.close()

    # ... and in a new pyrite-vmm process, through PUT /snapshot/load, with tracking on again
    # there (it is not saved in a snapshot): a Diff of that process holds only its own writes.
    from api_client import start_vmm
    vmm = start_vmm(tmp_path, "--id", "diff-restore")
    try:
        serial = tmp_path / "restored.out"
        assert vmm.request("PUT", "/serial", body={"serial_out_path": str(serial)}).status == 204
        r = vmm.request("PUT", "/snapshot/load", body={
            "snapshot_path": str(tmp_path / "diff2.state"), "track_dirty_pages": True,
            "mem_backend": {"backend_type": "File", "backend_path": str(rebased)}, "resume_vm": True})
        assert r.status == 204, r
        wait_for(lambda: serial.exists() and b"count=" in serial.read_bytes(), 30, "the restored guest to count")
        assert vmm.request("PATCH", "/vm", body={"state": "Paused"}).status == 204
        r = vmm.request("PUT", "/snapshot/create", body={"snapshot_type": "Diff", "snapshot_path": str(
            tmp_path / "diff3.state"), "mem_file_path": str(tmp_path / "diff3.mem")})
        assert r.status == 204, r
        assert 0 < os.stat(tmp_path / "diff3.mem").st_blocks * 512 <= 1 << 20
        assert vmm.request("PATCH", "/vm", body={"state": "Resumed"}).status == 204
        wait_for(lambda: b"sum=" in serial.read_bytes(), 60, "the restored guest to end")
        assert_whole_run(before + serial.read_bytes())
    finally:
        vmm.stop()


@NEEDS_KVM
def test_a_diff_after_restore_holds_the_pages_written_since(counter, tmp_path):
    """Restored with tracking, the memory file is the base: the Diff rebased onto a copy of it
    is guest memory at the Diff's pause."""
    vm = pyrite.MicroVM(counter, cmdline=f"console=ttyS0 -- {COUNT}", mem_mib=MEM_MIB)
    try:
        vm.start()
        pause_after(vm, 100)
        vm.snapshot(tmp_path / "full.state", tmp_path / "full.mem")
    finally:
        vm.close()
    restored = pyrite.MicroVM.restore(tmp_path / "full.state", tmp_path / "full.mem", track_dirty_pages=True)
    try:
        pause_after(restored, 400)
        restored.snapshot(tmp_path / "d.state", tmp_path / "d.mem", "Diff")
        assert 0 < os.stat(tmp_path / "d.mem").st_blocks * 512 <= 1 << 20
        shutil.copyfile(tmp_path / "full.mem", tmp_path / "rebased.mem")
        rebase(str(tmp_path / "rebased.mem"), str(tmp_path / "d.mem"))
        assert (tmp_path / "rebased.mem").read_bytes() == guest_memory(restored)
    finally:
        restored.close()


@NEEDS_KVM
def test_every_snapshot_starts_the_dirty_log_again(counter, tmp_path):
    """A Diff right after a Full (the guest paused in between) has no data; one after a short
    run has the few pages the guest wrote, not what it wrote before the Full."""
    vm = pyrite.MicroVM(counter, cmdline=f"console=ttyS0 -- {COUNT}", mem_mib=MEM_MIB, track_dirty_pages=True)
    try:
        vm.start()
        pause_after(vm, 100)
        vm.snapshot(tmp_path / "full.state", tmp_path / "full.mem")
        vm.snapshot(tmp_path / "empty.state", tmp_path / "empty.mem", "Diff")
        assert extents(tmp_path / "empty.mem") == []
        vm.resume()
        pause_after(vm, 150)
        vm.snapshot(tmp_path / "d.state", tmp_path / "d.mem", "Diff")
        assert 0 < sum(end - start for start, end in extents(tmp_path / "d.mem")) <= 64 << 10
    finally:
        vm.close()


@NEEDS_KVM
def test_diff_without_tracking_is_refused_and_writes_nothing(counter, tmp_path):
    vm = pyrite.MicroVM(counter, cmdline=f"console=ttyS0 -- {COUNT}", mem_mib=MEM_MIB)
    try:
        vm.start()
        pause_after(vm, 10)
        with pytest.raises(SnapshotError, match="Diff snapshots need dirty page tracking"):
            vm.snapshot(tmp_path / "d.state", tmp_path / "d.mem", "Diff")
        assert os.listdir(tmp_path) == []
    finally:
        vm.close()


@NEEDS_KVM
def test_rebase_of_a_real_diff_onto_a_file_of_another_size_is_refused(counter, tmp_path):
    vm = pyrite.MicroVM(counter, cmdline=f"console=ttyS0 -- {COUNT}", mem_mib=MEM_MIB, track_dirty_pages=True)
    try:
        vm.start()
        pause_after(vm, 10)
        vm.snapshot(tmp_path / "d.state", tmp_path / "d.mem", "Diff")
    finally:
        vm.close()
    small = tmp_path / "small.mem"
    small.write_bytes(bytes(32 << 20))
    with pytest.raises(RebaseError, match=f"is {FULL_SIZE} bytes, the base memory file {small} {32 << 20}"):
        rebase(str(small), str(tmp_path / "d.mem"))


@NEEDS_KVM
def test_api_diff_snapshot_and_its_latency_metric(counter, tmp_path):
    from api_client import start_vmm
    vmm = start_vmm(tmp_path, "--id", "diff-api")
    try:
        serial, metrics = tmp_path / "serial.out", tmp_path / "metrics.json"
        metrics.touch()
        for path, body in (("/boot-source", {"kernel_image_path": str(counter),
                                             "boot_args": f"console=ttyS0 -- {COUNT}"}),
                           ("/machine-config", {"vcpu_count": 1, "mem_size_mib": MEM_MIB, "track_dirty_pages": True}),
                           ("/serial", {"serial_out_path": str(serial)}),
                           ("/metrics", {"metrics_path": str(metrics)}),
                           ("/actions", {"action_type": "InstanceStart"})):
            r = vmm.request("PUT", path, body=body)
            assert r.status == 204, (path, r)
        for snapshot_type, at in (("Full", 100), ("Diff", 200)):
            wait_for(lambda: f"count={at}\n".encode() in serial.read_bytes(), 30, f"count={at}")
            assert vmm.request("PATCH", "/vm", body={"state": "Paused"}).status == 204
            r = vmm.request("PUT", "/snapshot/create", body={
                "snapshot_type": snapshot_type, "snapshot_path": str(tmp_path / f"{snapshot_type}.state"),
                "mem_file_path": str(tmp_path / f"{snapshot_type}.mem")})
            assert r.status == 204, r
            assert vmm.request("PATCH", "/vm", body={"state": "Resumed"}).status == 204
        assert vmm.request("PUT", "/actions", body={"action_type": "FlushMetrics"}).status == 204
    finally:
        vmm.stop()
    latencies = json.loads(metrics.read_text().splitlines()[0])["latencies_us"]
    assert latencies["full_create_snapshot"] > 0 and latencies["diff_create_snapshot"] > 0
    assert os.stat(tmp_path / "Diff.mem").st_blocks * 512 <= 1 << 20


def test_api_refuses_diff_without_tracking_in_firecrackers_words():
    """Checked before the microVM is touched: a stand-in for it is enough."""
    controller = ApiController(boot=None, logger=Logger("unit", level="Off"), metrics=Metrics())
    controller.vmm = object()
    r = controller.handle("PUT", "/snapshot/create", json.dumps(
        {"snapshot_type": "Diff", "snapshot_path": "/tmp/s", "mem_file_path": "/tmp/m"}).encode())
    assert (r.status, r.body) == (400, {"fault_message": "The requested operation is not supported: Diff "
                                        "snapshots are not allowed on uVMs with dirty page tracking disabled."})
