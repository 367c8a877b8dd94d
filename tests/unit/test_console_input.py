"""Host input to the serial console (pyrite.vmm.console.SerialConsole): bytes in order through
the 16550's FIFO, and end of input as a break after the last byte."""
import io

from pyrite.devices.legacy.serial import Serial
from pyrite.vmm.console import SerialConsole

RX, LSR = 0, 5
LSR_DR, LSR_BI = 0x01, 0x10
BREAK = "<break>"


def guest_reads(console: SerialConsole, limit: int = 10_000) -> list:
    """What a guest driver sees reading LSR then RBR until no data is ready: bytes and breaks."""
    seen: list = []
    for _ in range(limit):
        lsr = console.pio_read(LSR, 1)[0]
        if not lsr & LSR_DR:
            return seen
        byte = console.pio_read(RX, 1)[0]
        seen.append(BREAK if lsr & LSR_BI else byte)
    raise AssertionError("the FIFO never emptied")


def make() -> SerialConsole:
    return SerialConsole(Serial(lambda: None, io.BytesIO()))


def test_end_of_input_comes_after_every_byte_even_beyond_the_fifo():
    console = make()
    data = bytes(range(256)) * 2                       # more than the 64-byte FIFO holds
    console.feed(data)
    console.end_of_input()
    assert guest_reads(console) == [*data, BREAK]


def test_without_end_of_input_no_break():
    console = make()
    console.feed(b"abc")
    assert guest_reads(console) == list(b"abc")


def test_terminal_ctrl_d_at_line_start_is_end_of_input_elsewhere_a_byte():
    console = make()
    console.feed(b"\x04", terminal=True)               # at the start: end of input
    console.feed(b"ab\x04c\n", terminal=True)          # mid-line: the byte 0x04
    console.feed(b"\x04", terminal=True)               # after a newline: end of input
    console.feed(b"more", terminal=True)
    assert guest_reads(console) == [BREAK, *b"ab\x04c\n", BREAK, *b"more"]


def test_ctrl_d_from_a_pipe_is_just_a_byte():
    console = make()
    console.feed(b"\x04x")
    assert guest_reads(console) == [4, ord("x")]
