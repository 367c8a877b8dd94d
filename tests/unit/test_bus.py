import pytest

from pyrite.vmm.bus import Bus, BusError


def test_dispatch_by_offset_and_unclaimed_addresses():
    seen = []
    bus = Bus("port I/O")
    bus.register(0x3F8, 8, "serial", lambda off, n: bytes([off]) * n, lambda off, d: seen.append((off, d)))
    assert bus.read(0x3FD, 1) == b"\x05"
    assert bus.write(0x3F8, b"A") is True
    assert seen == [(0, b"A")]
    assert bus.read(0x80, 2) == b"\xff\xff"
    assert bus.write(0x80, b"\0") is False


def test_overlapping_ranges_are_refused():
    bus = Bus("MMIO")
    bus.register(0x1000, 0x100, "a", lambda o, n: b"", lambda o, d: None)
    with pytest.raises(BusError, match="overlaps a"):
        bus.register(0x10FF, 2, "b", lambda o, n: b"", lambda o, d: None)
