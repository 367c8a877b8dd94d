"""Dirty page tracking without KVM: GuestMemory's log of the VMM's own writes, the harvest that
merges it with KVM's log (a stand-in Vm below), and the sparse Diff memory file."""
from __future__ import annotations

import os

import pytest

from pyrite.memory import PAGE_SIZE, GuestMemory
from pyrite.snapshot import dirty

from virtio_driver import RingDriver

MIB = 1 << 20


def dirty_pages(log) -> list[int]:
    return [i for i, b in enumerate(log) if b]


def tracked(layout=((0, MIB),)) -> GuestMemory:
    mem = GuestMemory(list(layout))
    mem.track_dirty_pages()
    return mem


class FakeVm:
    """TEST DOUBLE of pyrite.kvm.Vm.get_dirty_log: per slot, the pages the "guest" wrote,
    cleared by each read as KVM's log is."""

    def __init__(self):
        self.guest_writes: dict[int, set[int]] = {}

    def get_dirty_log(self, slot: int, npages: int) -> bytes:
        bits = 0
        for page in self.guest_writes.pop(slot, set()):
            bits |= 1 << page
        return bits.to_bytes((npages + 63) // 64 * 8, "little")


# -- GuestMemory's log ----------------------------------------------------------------------

def test_untracked_memory_logs_nothing():
    mem = GuestMemory([(0, MIB)])
    mem.write(0x3000, b"x")
    assert not mem.tracks_dirty_pages
    assert mem.take_dirty_pages() == []
    assert mem.regions[0].dirty is None


def test_views_and_writes_mark_the_pages_they_touch_and_reads_do_not():
    mem = tracked()
    mem.write(PAGE_SIZE - 2, b"abcd")                 # straddles pages 0 and 1
    mem.write_int(5 * PAGE_SIZE, 7, 8)
    mem.view(9 * PAGE_SIZE + 100, 3 * PAGE_SIZE)       # pages 9..12: a writable view counts
    mem.view(20 * PAGE_SIZE, 0)                       # an empty view touches nothing
    mem.read(30 * PAGE_SIZE, 64)
    mem.read_int(31 * PAGE_SIZE, 8)
    mem.read_u8(32 * PAGE_SIZE)
    assert dirty_pages(mem.take_dirty_pages()[0]) == [0, 1, 5, 9, 10, 11, 12]


def test_a_harvest_starts_the_log_again():
    mem = tracked()
    mem.write(0, b"a")
    assert dirty_pages(mem.take_dirty_pages()[0]) == [0]
    assert dirty_pages(mem.take_dirty_pages()[0]) == []
    mem.write(3 * PAGE_SIZE, b"b")
    assert dirty_pages(mem.take_dirty_pages()[0]) == [3]


def test_lasting_views_count_in_every_harvest():
    mem = tracked()
    view = mem.lasting_view(7 * PAGE_SIZE + 8, PAGE_SIZE)   # pages 7 and 8
    assert dirty_pages(mem.take_dirty_pages()[0]) == [7, 8]
    view[0] = 1                                             # a write the memory never sees
    assert dirty_pages(mem.take_dirty_pages()[0]) == [7, 8]


def test_each_region_has_its_own_log():
    mem = tracked([(0, MIB), (4 * MIB, MIB)])
    mem.write(4 * MIB + 2 * PAGE_SIZE, b"x")
    mem.write(PAGE_SIZE, b"y")
    low, high = mem.take_dirty_pages()
    assert (dirty_pages(low), dirty_pages(high)) == ([1], [2])
    assert len(low) == len(high) == MIB // PAGE_SIZE


def test_a_handed_back_harvest_is_merged_into_the_log():
    mem = tracked()
    mem.write(2 * PAGE_SIZE, b"x")
    taken = mem.take_dirty_pages()
    mem.write(6 * PAGE_SIZE, b"y")
    mem.mark_dirty_pages(0, taken[0])
    assert dirty_pages(mem.take_dirty_pages()[0]) == [2, 6]


def test_a_virtqueue_used_ring_is_logged_though_written_through_a_cached_view():
    """The device writes the used ring through a view it made once; a harvest after that must
    still count its pages, or a Diff would miss the used entries of the next requests."""
    mem = tracked()
    driver = RingDriver(mem, size=16, base=0x1000, data=0x20000)
    driver.used = 0x8000                         # the used ring alone in its page
    mem.write(driver.used, bytes(6 + 8 * 16))
    queue = driver.queue()
    for round_ in range(3):
        buf = driver.alloc(64)
        driver.publish(driver.add_chain([(buf, 64, True)]))
        mem.take_dirty_pages()                   # the driver's writes: KVM's log in a real VM
        before = mem.read(0, MIB)
        chain = queue.pop(mem)
        _, writable = chain.buffers()
        writable[0][:] = bytes([round_ + 1]) * 64
        queue.add_used(mem, chain.head, 64)
        logged = set(dirty_pages(mem.take_dirty_pages()[0]))
        after = mem.read(0, MIB)
        changed = {i // PAGE_SIZE for i in range(0, MIB, 8) if before[i:i + 8] != after[i:i + 8]}
        assert changed and changed <= logged, (round_, changed, logged)
        assert driver.used // PAGE_SIZE in logged


# -- the harvest and the Diff file ----------------------------------------------------------

def test_kvm_log_bits_become_a_byte_per_page():
    bitmap = (1 | 1 << 9 | 1 << 63 | 1 << 64).to_bytes(16, "little")
    assert dirty_pages(dirty.kvm_log_pages(bitmap, 70)) == [0, 9, 63, 64]
    assert len(dirty.kvm_log_pages(bitmap, 70)) == 70


def test_dirty_runs():
    assert list(dirty.dirty_runs(b"\x00\x01\x01\x00\x00\x01")) == [(1, 3), (5, 6)]
    assert list(dirty.dirty_runs(bytes(8))) == []


def test_a_harvest_merges_the_guest_and_vmm_logs_per_slot_and_clears_both():
    mem = tracked([(0, MIB), (4 * MIB, MIB)])
    vm = FakeVm()
    vm.guest_writes = {0: {3, 4}, 1: {0}}
    mem.write(4 * MIB + 5 * PAGE_SIZE, b"v")
    mem.write(3 * PAGE_SIZE, b"v")
    low, high = dirty.take_dirty_pages(vm, mem)
    assert (dirty_pages(low), dirty_pages(high)) == ([3, 4], [0, 5])
    assert [dirty_pages(p) for p in dirty.take_dirty_pages(vm, mem)] == [[], []]


def test_a_diff_file_is_full_size_with_only_the_dirty_pages_as_data(tmp_path):
    mem = tracked([(0, MIB), (4 * MIB, MIB)])
    vm = FakeVm()
    for gpa, fill in ((0, b"A"), (PAGE_SIZE, b"B"), (40 * PAGE_SIZE, b"C"), (4 * MIB + 7 * PAGE_SIZE, b"D")):
        mem.regions[0 if gpa < MIB else 1].mem[gpa % (4 * MIB): gpa % (4 * MIB) + PAGE_SIZE] = fill * PAGE_SIZE
    vm.guest_writes = {0: {0, 1, 40}, 1: {7}}
    path = tmp_path / "diff.mem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        written = dirty.write_diff(fd, mem, dirty.take_dirty_pages(vm, mem))
    finally:
        os.close(fd)
    assert written == 4 * PAGE_SIZE
    st = os.stat(path)
    assert st.st_size == 2 * MIB
    assert st.st_blocks * 512 <= 8 * PAGE_SIZE       # sparse: the data pages and little else
    data = path.read_bytes()
    assert data[:2 * PAGE_SIZE] == b"A" * PAGE_SIZE + b"B" * PAGE_SIZE
    assert data[40 * PAGE_SIZE:41 * PAGE_SIZE] == b"C" * PAGE_SIZE
    assert data[MIB + 7 * PAGE_SIZE:MIB + 8 * PAGE_SIZE] == b"D" * PAGE_SIZE
    assert data.count(0) == len(data) - 4 * PAGE_SIZE


def test_give_back_keeps_a_failed_harvest_for_the_next(tmp_path):
    mem = tracked()
    vm = FakeVm()
    vm.guest_writes = {0: {9}}
    mem.write(2 * PAGE_SIZE, b"x")
    pages = dirty.take_dirty_pages(vm, mem)
    dirty.give_back(mem, pages)
    assert dirty_pages(dirty.take_dirty_pages(vm, mem)[0]) == [2, 9]


def test_merge_is_a_per_page_or():
    assert dirty.merge(b"\x00\x01\x00\x00", b"\x01\x00\x00\x01") == b"\x01\x01\x00\x01"


@pytest.mark.parametrize("npages", [1, 63, 64, 65, 4096])
def test_kvm_log_pages_round_trip(npages):
    pages = {0, npages - 1, npages // 2}
    bits = sum(1 << p for p in pages).to_bytes((npages + 63) // 64 * 8, "little")
    assert set(dirty_pages(dirty.kvm_log_pages(bits, npages))) == pages
