"""QEMU isa-debug-exit compatible port."""
from pyrite.devices.legacy.exit_port import ExitPort


def test_write_passes_the_low_byte():
    seen = []
    port = ExitPort(seen.append)
    port.write(0x31)
    port.write(0)
    port.write(0x1FF)              # an outw: only the low byte is the status
    assert seen == [0x31, 0x00, 0xFF]


def test_read_is_zero_and_has_no_effect():
    seen = []
    port = ExitPort(seen.append)
    assert port.read() == 0
    assert seen == []
