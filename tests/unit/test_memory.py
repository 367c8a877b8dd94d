import pytest

from pyrite.arch.x86_64 import layout
from pyrite.memory import GuestMemory, GuestMemoryError


def test_small_guest_is_one_region_below_the_mmio_gap():
    assert layout.ram_regions(128 << 20) == [(0, 128 << 20)]


def test_large_guest_skips_the_32bit_mmio_gap():
    regions = layout.ram_regions(5 * layout.GiB)
    assert regions == [(0, 3 * layout.GiB), (4 * layout.GiB, 2 * layout.GiB)]
    assert sum(size for _, size in regions) == 5 * layout.GiB


def test_e820_reserves_ebda_to_1mib_and_covers_high_ram():
    e820 = layout.e820_map(5 * layout.GiB)
    assert e820[0] == (0, layout.EBDA_START, 1)
    assert e820[1] == (layout.HIMEM_START, 3 * layout.GiB - layout.HIMEM_START, 1)
    assert e820[2] == (4 * layout.GiB, 2 * layout.GiB, 1)


def test_read_write_and_zero_copy_view():
    mem = GuestMemory([(0, 1 << 20), (4 << 20, 1 << 20)])
    mem.write(0x1000, b"pyrite")
    assert mem.read(0x1000, 6) == b"pyrite"
    view = mem.view(4 << 20, 4)
    view[:] = b"abcd"
    assert mem.read(4 << 20, 4) == b"abcd"
    mem.write_int(0x2000, 0x1122334455667788, 8)
    assert mem.read(0x2000, 2) == b"\x88\x77"
    assert mem.read_int(0x2000, 8) == 0x1122334455667788


@pytest.mark.parametrize("gpa,length", [((1 << 20) - 2, 4), (2 << 20, 1), (-1, 1), (5 << 20, 1)])
def test_accesses_outside_or_across_regions_are_refused(gpa, length):
    mem = GuestMemory([(0, 1 << 20), (4 << 20, 1 << 20)])
    with pytest.raises(GuestMemoryError, match="not in guest memory"):
        mem.read(gpa, length)
    assert not mem.contains(gpa, length)


def test_bad_layouts_are_refused():
    with pytest.raises(GuestMemoryError, match="page-aligned"):
        GuestMemory([(0, 1000)])
    with pytest.raises(GuestMemoryError, match="overlaps"):
        GuestMemory([(0, 2 << 20), (1 << 20, 1 << 20)])
