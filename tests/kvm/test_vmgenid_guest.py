"""The VM generation ID end to end, with tests/guests/vmgenid.c (the library OS finds the ID
through RSDP -> XSDT -> FADT -> DSDT and reseeds rand() when it changes): a boot gets an ID,
every restore of a snapshot a new one, at the address the DSDT gives; clones of one snapshot
draw different random numbers although they restored the same memory, and the original
keeps its ID and its sequence. The same guest finds Firecracker 1.12.1's VMGenID, at boot
and after a Firecracker snapshot load.

Needs /dev/kvm and gcc (and the Firecracker binary for the last two tests).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from guests import guest_image

import pyrite
from pyrite.arch.x86_64.acpi import parse_acpi, vmgenid_address

pytestmark = pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK),
                                reason="/dev/kvm missing or not accessible")

REPORT = re.compile(rb"vmgenid=([0-9a-f]{32}|none) rand=(\d+)( notified=(\d+))?\n")


def reports(console: bytes) -> list[tuple[str, int]]:
    return [(m[1].decode(), int(m[2])) for m in REPORT.finditer(console)]


def notifications(console: bytes) -> int:
    """The guest's count of interrupts on the VMGenID GSI, from its last report."""
    return int(list(REPORT.finditer(console))[-1][4])


def ask(vm) -> tuple[str, int]:
    """Send the guest a line and return the report it prints for it."""
    count = len(reports(vm.console_output))
    vm.send_console_input(b"\n")
    deadline = time.monotonic() + 20
    while len(seen := reports(vm.console_output)) <= count:
        assert time.monotonic() < deadline, vm.console_output[-500:]
        time.sleep(0.01)
    return seen[count]


def id_in_memory(vm) -> str:
    """The 16 bytes at the address the guest's own DSDT gives (read from guest memory)."""
    memory = vm.vmm.memory
    addr = vmgenid_address(parse_acpi(memory))
    assert addr == 0xDFFF0
    return memory.read(addr, 16).hex()


@pytest.fixture(scope="module")
def image():
    return guest_image("vmgenid")


@pytest.fixture
def booted(image):
    # No virtio devices: the VMGenID is on GSI 5 (vmm.devices.vmgenid_gsi), which the guest counts.
    with pyrite.MicroVM(image, cmdline="console=ttyS0 VMGENID_GSI=5", mem_mib=64) as vm:
        vm.start()
        deadline = time.monotonic() + 20
        while not reports(vm.console_output):                 # the report made at start
            assert time.monotonic() < deadline, vm.console_output
            time.sleep(0.01)
        yield vm


def test_boot_id_is_at_the_dsdt_address_and_the_guest_reads_it(booted):
    (first, _), = reports(booted.console_output)
    assert first != "none" and first != "0" * 32
    assert first == id_in_memory(booted) == booted.vmm.vmgenid.generation.hex()
    assert ask(booted)[0] == first                            # stable within a generation


def test_each_restore_gets_a_new_id_and_its_own_random_numbers(booted, tmp_path):
    id_a, _ = ask(booted)
    booted.pause()
    booted.snapshot(tmp_path / "vm.state", tmp_path / "vm.mem")
    booted.resume()
    with pyrite.MicroVM.restore(tmp_path / "vm.state", tmp_path / "vm.mem") as b, \
            pyrite.MicroVM.restore(tmp_path / "vm.state", tmp_path / "vm.mem") as c:
        id_b, rand_b = ask(b)
        id_c, rand_c = ask(c)
        assert id_b == id_in_memory(b) == b.vmm.vmgenid.generation.hex()
        assert id_c == id_in_memory(c) == c.vmm.vmgenid.generation.hex()
        id_a2, rand_a = ask(booted)
        assert id_a2 == id_a == id_in_memory(booted)          # the original is not a new generation
        assert len({id_a, id_b, id_c}) == 3
        # All three continue the same rand() state; only a reseed on the new ID sets them apart
        # (rand_a is what the snapshot's state gives unchanged).
        assert len({rand_a, rand_b, rand_c}) == 3
        assert (ask(b)[0], ask(c)[0]) == (id_b, id_c)         # and each keeps its new ID
        # Each restore's notification reached the guest (after the IOAPIC state, not lost).
        assert (notifications(b.console_output), notifications(c.console_output)) == (1, 1)
        assert notifications(booted.console_output) == 0


def test_a_regenerated_id_reaches_the_running_guest(booted):
    before, _ = ask(booted)
    assert booted.vmm.vmgenid.gsi == 5 and notifications(booted.console_output) == 0
    new = booted.vmm.vmgenid.regenerate(booted.vmm.memory).hex()
    assert new != before and ask(booted)[0] == new == id_in_memory(booted)
    assert notifications(booted.console_output) == 1


# --- Firecracker 1.12.1 --------------------------------------------------------------------------

FC_WRITES = re.compile(r"vmgenid: writing new generation ID to guest: 0x([0-9a-f]{32})")


def firecracker_ids(log: Path) -> list[str]:
    """The IDs Firecracker logged, as the guest sees them: a u128 stored little-endian."""
    return [int(h, 16).to_bytes(16, "little").hex() for h in FC_WRITES.findall(log.read_text())]


def test_the_library_os_finds_firecrackers_vmgenid(image, tmp_path, firecracker_bin):
    config = tmp_path / "vm.json"
    config.write_text(json.dumps({"boot-source": {"kernel_image_path": str(image), "boot_args": "once"},
                                  "machine-config": {"vcpu_count": 1, "mem_size_mib": 128},
                                  "drives": []}))
    log = tmp_path / "firecracker.log"
    log.touch()
    proc = subprocess.run([str(firecracker_bin), "--no-api", "--config-file", str(config), "--level", "Debug",
                           "--log-path", str(log)], stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    (seen, _), = reports(proc.stdout.replace(b"\r\n", b"\n"))
    assert [seen] == firecracker_ids(log)


class Firecracker:
    """A Firecracker process with an API socket; its serial output goes to a file."""

    def __init__(self, binary: Path, directory: Path, name: str):
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
        from api_client import Client
        self.out, self.log = directory / f"{name}.out", directory / f"{name}.log"
        self.log.touch()
        sock = directory / f"{name}.sock"
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen([str(binary), "--api-sock", str(sock), "--level", "Debug",
                                          "--log-path", str(self.log)], stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client = Client(str(sock))
                break
            except OSError:
                assert time.monotonic() < deadline and self.proc.poll() is None, self.out.read_bytes()
                time.sleep(0.01)

    def request(self, method: str, path: str, body: dict) -> None:
        result = self.client.request(method, path, body)
        assert result.status == 204, (method, path, result)

    def reports(self) -> list[tuple[str, int]]:
        return reports(self.out.read_bytes().replace(b"\r\n", b"\n"))

    def wait_for_reports(self, count: int) -> list[tuple[str, int]]:
        deadline = time.monotonic() + 20
        while len(seen := self.reports()) < count:
            assert time.monotonic() < deadline and self.proc.poll() is None, self.out.read_bytes()[-500:]
            time.sleep(0.02)
        return seen

    def kill(self) -> None:
        self.client.close()
        self.proc.kill()
        self.proc.wait(10)


def test_a_firecracker_snapshot_load_gives_the_library_os_a_new_id(image, tmp_path, firecracker_bin):
    a = Firecracker(firecracker_bin, tmp_path, "a")
    b = None
    try:
        a.request("PUT", "/boot-source", {"kernel_image_path": str(image),
                                             "boot_args": "every 50 VMGENID_GSI=5"})
        a.request("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 64})
        a.request("PUT", "/actions", {"action_type": "InstanceStart"})
        a.wait_for_reports(2)
        a.request("PATCH", "/vm", {"state": "Paused"})
        a.request("PUT", "/snapshot/create", {"snapshot_type": "Full", "snapshot_path": str(tmp_path / "vm.snap"),
                                              "mem_file_path": str(tmp_path / "vm.mem")})
        at_snapshot = len(a.reports())
        a.request("PATCH", "/vm", {"state": "Resumed"})
        b = Firecracker(firecracker_bin, tmp_path, "b")
        b.request("PUT", "/snapshot/load", {"snapshot_path": str(tmp_path / "vm.snap"), "resume_vm": True,
                                            "mem_backend": {"backend_type": "File",
                                                            "backend_path": str(tmp_path / "vm.mem")}})
        after_b = b.wait_for_reports(3)
        after_a = a.wait_for_reports(at_snapshot + 3)[at_snapshot:]
    finally:
        a.kill()
        if b is not None:
            b.kill()
    [id_a], [id_b] = firecracker_ids(a.log), firecracker_ids(b.log)
    assert id_a != id_b
    assert {i for i, _ in a.reports()} == {id_a}
    assert {i for i, _ in after_b} == {id_b}
    # Firecracker's notification is an edge on GSI 5 too (its DSDT's GED), once per load.
    assert notifications(b.out.read_bytes()) == 1 and notifications(a.out.read_bytes()) == 0
    # Both went on from the same rand() state; the clone's numbers are its own.
    assert not {r for _, r in after_a} & {r for _, r in after_b}
