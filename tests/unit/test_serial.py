"""The 16550A model, driven register by register as Linux's 8250 driver drives it."""
import io

import pytest

from pyrite.devices.legacy.serial import (
    FIFO_SIZE, Serial, SerialError, SerialState,
)

# Offsets from the base port (0x3f8), named as in Linux's serial_reg.h.
RX = TX = DLL = 0
IER = DLM = 1
IIR = FCR = 2
LCR, MCR, LSR, MSR, SCR = 3, 4, 5, 6, 7

UART_IER_RDI, UART_IER_THRI, UART_IER_RLSI = 0x01, 0x02, 0x04
UART_IIR_NO_INT, UART_IIR_THRI, UART_IIR_RDI, UART_IIR_RLSI = 0x01, 0x02, 0x04, 0x06
UART_LSR_DR, UART_LSR_OE, UART_LSR_THRE, UART_LSR_TEMT = 0x01, 0x02, 0x20, 0x40
UART_MCR_LOOP, UART_MCR_OUT2 = 0x10, 0x08
UART_FCR_ENABLE_FIFO, UART_FCR_CLEAR_RCVR = 0x01, 0x02


class Irq:
    def __init__(self):
        self.count = 0

    def __call__(self):
        self.count += 1


def make(out=None):
    irq = Irq()
    out = io.BytesIO() if out is None else out
    return Serial(irq, out), irq, out


def linux_autoconfig(s: Serial) -> str:
    """The steps of drivers/tty/serial/8250/8250_port.c autoconfig() up to the type."""
    # IER scratch test: the port exists if IER keeps 0 and 0x0f.
    saved_ier = s.read(IER)
    s.write(IER, 0)
    scratch2 = s.read(IER) & 0x0F
    s.write(IER, 0x0F)
    scratch3 = s.read(IER) & 0x0F
    s.write(IER, saved_ier)
    if scratch2 != 0 or scratch3 != 0x0F:
        return "absent"
    # Loopback test: MSR must echo RTS/OUT2 as CTS/DCD.
    saved_mcr = s.read(MCR)
    s.write(MCR, UART_MCR_LOOP | 0x0A)
    status1 = s.read(MSR) & 0xF0
    s.write(MCR, saved_mcr)
    if status1 != 0x90:
        return "loopback failed"
    # FIFO probe.
    s.write(LCR, 0xBF)
    s.write(FCR, 0)          # EFR = 0
    s.write(LCR, 0)
    s.write(FCR, UART_FCR_ENABLE_FIFO)
    scratch = s.read(IIR) >> 6
    if scratch != 3:
        return {0: "16450", 1: "unknown", 2: "16550"}[scratch]
    # autoconfig_16550a: EFR (16650+) check reads offset 2 under LCR 0xBF.
    s.write(LCR, 0xBF)
    if s.read(2) == 0:
        return "16650"
    # 16750 check: IIR bit 5 reports the 64-byte FIFO.
    s.write(LCR, 0x80)
    s.write(FCR, UART_FCR_ENABLE_FIFO | 0x20)
    s.write(LCR, 0)
    status1 = s.read(IIR) >> 5
    s.write(FCR, UART_FCR_ENABLE_FIFO | 0x20)
    status2 = s.read(IIR) >> 5
    if status1 == 6 and status2 == 7:
        return "16750"
    # XScale check: IER bit 6 (UUE) must not stick.
    ier = s.read(IER)
    s.write(IER, ier & ~0x40)
    if not s.read(IER) & 0x40:
        s.write(IER, ier | 0x40)
        if s.read(IER) & 0x40:
            return "xscale"
    s.write(IER, ier)
    s.write(LCR, 0x03)
    return "16550A"


def test_reset_values_match_vm_superio():
    s, irq, _ = make()
    assert s.read(IER) == 0
    assert s.read(IIR) == 0xC1          # no interrupt, FIFOs enabled
    assert s.read(LCR) == 0x03
    assert s.read(MCR) == UART_MCR_OUT2
    assert s.read(LSR) == UART_LSR_THRE | UART_LSR_TEMT
    assert s.read(MSR) == 0xB0          # DCD | DSR | CTS
    assert s.read(SCR) == 0
    assert s.state() == SerialState()
    assert irq.count == 0


def test_linux_autoconfig_detects_16550a():
    s, irq, out = make()
    assert linux_autoconfig(s) == "16550A"
    assert out.getvalue() == b""


def test_scratch_register_keeps_what_is_written():
    s, _, _ = make()
    for value in (0x00, 0x55, 0xAA, 0xFF):
        s.write(SCR, value)
        assert s.read(SCR) == value


def test_dlab_aliases_divisor_latch_on_offsets_0_and_1():
    s, irq, out = make()
    s.write(IER, UART_IER_RDI)
    s.write(LCR, 0x83)
    assert (s.read(DLL), s.read(DLM)) == (0x0C, 0x00)   # 9600 baud at reset
    s.write(DLL, 0x01)                                  # 115200 baud
    s.write(DLM, 0x00)
    assert (s.read(DLL), s.read(DLM)) == (0x01, 0x00)
    s.write(LCR, 0x03)
    assert s.read(IER) == UART_IER_RDI                  # IER untouched by the DLM write
    assert out.getvalue() == b""                        # the DLL write sent nothing
    assert (s.state().dll, s.state().dlm) == (0x01, 0x00)


def test_ier_keeps_only_16550_bits():
    s, _, _ = make()
    s.write(IER, 0xFF)
    assert s.read(IER) == 0x0F


def test_loopback_msr_reflects_mcr_outputs():
    s, _, _ = make()
    expected = {0x10: 0x00, 0x11: 0x20, 0x12: 0x10, 0x14: 0x40, 0x18: 0x80, 0x1F: 0xF0}
    for mcr, msr in expected.items():
        s.write(MCR, mcr)
        assert s.read(MSR) & 0xF0 == msr, hex(mcr)
    s.write(MCR, UART_MCR_OUT2)
    assert s.read(MSR) == 0xB0


def test_loopback_transmit_comes_back_as_input():
    s, irq, out = make()
    s.write(MCR, UART_MCR_LOOP | UART_MCR_OUT2)
    s.write(IER, UART_IER_RDI)
    for byte in b"hi":
        s.write(TX, byte)
    assert irq.count == 1
    assert s.read(LSR) & UART_LSR_DR
    assert s.read(IIR) == 0xC0 | UART_IIR_RDI
    assert bytes([s.read(RX), s.read(RX)]) == b"hi"
    assert not s.read(LSR) & UART_LSR_DR
    s.flush()
    assert out.getvalue() == b""
    assert s.enqueue_input(b"x") == 0                   # the line is disconnected


def test_loopback_overrun_sets_oe_and_raises_line_status_interrupt():
    s, irq, _ = make()
    s.write(MCR, UART_MCR_LOOP)
    s.write(IER, UART_IER_RLSI | UART_IER_RDI)
    for i in range(FIFO_SIZE + 1):
        s.write(TX, i & 0xFF)
    assert s.read(IIR) & 0x0F == UART_IIR_RLSI         # line status outranks data
    assert s.read(LSR) & UART_LSR_OE
    assert not s.read(LSR) & UART_LSR_OE               # reading LSR cleared it
    assert s.read(IIR) & 0x0F == UART_IIR_RDI
    assert len(s.state().rx_fifo) == FIFO_SIZE


def test_interrupt_driven_transmit():
    s, irq, out = make()
    s.write(IER, UART_IER_THRI)
    # A 16550A raises THR empty as soon as it is enabled while THR is empty.
    assert irq.count == 1
    assert s.read(IIR) == 0xC0 | UART_IIR_THRI
    assert s.read(IIR) == 0xC0 | UART_IIR_NO_INT      # reading IIR acknowledged it
    for n, byte in enumerate(b"ok\n", start=2):
        assert s.read(LSR) & UART_LSR_THRE
        s.write(TX, byte)
        assert irq.count == n
        assert s.read(IIR) == 0xC0 | UART_IIR_THRI
    assert out.getvalue() == b"ok\n"
    assert s.tx_bytes == 3


def test_thre_without_iir_ack_raises_once():
    s, irq, out = make()
    s.write(IER, UART_IER_THRI)
    for byte in b"abc":
        s.write(TX, byte)
    assert irq.count == 1                               # the line never dropped
    s.flush()
    assert out.getvalue() == b"abc"


def test_linux_startup_thre_tests_find_no_bug():
    """serial8250_do_startup's THRE re-assert test and TXEN test."""
    s, irq, _ = make()
    s.write(IER, UART_IER_THRI)
    iir1 = s.read(IIR)
    s.write(IER, 0)
    s.write(IER, UART_IER_THRI)
    iir = s.read(IIR)
    s.write(IER, 0)
    bug_thre = not iir1 & UART_IIR_NO_INT and iir & UART_IIR_NO_INT
    assert not bug_thre
    s.write(IER, UART_IER_THRI)
    lsr = s.read(LSR)
    iir = s.read(IIR)
    s.write(IER, 0)
    bug_txen = lsr & UART_LSR_TEMT and iir & UART_IIR_NO_INT
    assert not bug_txen


class RecordingWriter:
    def __init__(self):
        self.data = bytearray()
        self.flushed_at = []

    def write(self, data):
        self.data += data
        return len(data)

    def flush(self):
        self.flushed_at.append(len(self.data))


def test_output_reaches_the_writer_per_byte_and_is_flushed_at_newline():
    out = RecordingWriter()
    s = Serial(Irq(), out)
    for byte in b"login: ":
        s.write(TX, byte)
    assert bytes(out.data) == b"login: "        # a prompt shows without a newline
    assert out.flushed_at == []
    for byte in b"root\n":
        s.write(TX, byte)
    assert bytes(out.data) == b"login: root\n"
    assert out.flushed_at == [12]
    assert s.pending_output == 0 and s.tx_bytes == 12


def test_buffered_output_waits_for_newline_or_flush():
    out = RecordingWriter()
    s = Serial(Irq(), out, buffer_output=True)
    for byte in b"login: ":
        s.write(TX, byte)
    assert bytes(out.data) == b""
    assert s.pending_output == 7
    s.flush()
    assert bytes(out.data) == b"login: " and out.flushed_at == [7]
    for byte in b"root\n":
        s.write(TX, byte)
    assert bytes(out.data) == b"login: root\n"
    assert s.pending_output == 0


def test_output_failure_counts_lost_bytes_and_still_raises_thre():
    class Broken:
        def write(self, data):
            raise BrokenPipeError(32, "Broken pipe")

    irq = Irq()
    s = Serial(irq, Broken())
    s.write(IER, UART_IER_THRI)
    s.read(IIR)
    s.write(TX, ord("x"))
    s.write(TX, ord("\n"))
    assert irq.count == 2
    assert s.read(IIR) == 0xC0 | UART_IIR_THRI
    assert s.tx_lost == 2 and s.tx_bytes == 0
    assert isinstance(s.output_error, BrokenPipeError)


def test_output_to_a_real_buffered_file(tmp_path):
    path = tmp_path / "console"
    with open(path, "wb") as f:
        s = Serial(Irq(), f)
        for byte in b"hello\n":
            s.write(TX, byte)
        # Flushed on newline: visible before the file is closed.
        assert path.read_bytes() == b"hello\n"


def test_input_raises_received_data_interrupt_and_reads_in_order():
    s, irq, _ = make()
    s.write(IER, UART_IER_RDI)
    assert s.enqueue_input(b"ab") == 2
    assert irq.count == 1
    assert s.read(LSR) & UART_LSR_DR
    assert s.read(IIR) == 0xC0 | UART_IIR_RDI
    assert s.read(IIR) == 0xC0 | UART_IIR_RDI           # IIR read does not clear data
    assert s.read(RX) == ord("a")
    assert s.enqueue_input(b"c") == 1
    assert irq.count == 1                               # still pending: no new edge
    assert s.read(RX) == ord("b")
    assert s.read(RX) == ord("c")
    assert s.read(IIR) == 0xC0 | UART_IIR_NO_INT
    assert not s.read(LSR) & UART_LSR_DR
    assert s.read(RX) == 0                              # empty FIFO reads 0
    s.enqueue_input(b"d")
    assert irq.count == 2                               # drained, so a new edge
    assert s.rx_bytes == 4


def test_input_without_interrupt_enabled_is_polled():
    s, irq, _ = make()
    s.enqueue_input(b"z")
    assert irq.count == 0
    assert s.read(LSR) & UART_LSR_DR
    s.write(IER, UART_IER_RDI)                          # enabling with data waiting
    assert irq.count == 1
    assert s.read(RX) == ord("z")


def test_fifo_backpressure():
    s, _, _ = make()
    assert s.fifo_capacity() == FIFO_SIZE
    assert s.enqueue_input(bytes(100)) == FIFO_SIZE
    assert s.fifo_capacity() == 0
    assert s.enqueue_input(b"x") == 0
    assert s.enqueue_input(b"") == 0
    s.read(RX)
    assert s.fifo_capacity() == 1


def test_fcr_clears_receive_fifo_and_reports_drain():
    drained = []
    s = Serial(Irq(), io.BytesIO(), on_input_drained=lambda: drained.append(True))
    s.enqueue_input(b"abc")
    s.write(FCR, UART_FCR_ENABLE_FIFO | UART_FCR_CLEAR_RCVR)
    assert not s.read(LSR) & UART_LSR_DR
    assert s.fifo_capacity() == FIFO_SIZE
    assert drained == [True]
    s.enqueue_input(b"q")
    s.read(RX)
    assert drained == [True, True]


def test_priority_received_data_before_thr_empty():
    s, irq, _ = make()
    s.write(IER, UART_IER_RDI | UART_IER_THRI)
    s.enqueue_input(b"k")
    assert s.read(IIR) & 0x0F == UART_IIR_RDI
    assert s.read(RX) == ord("k")
    # THR empty was not acknowledged by the IIR read that reported data.
    assert s.read(IIR) & 0x0F == UART_IIR_THRI
    assert s.read(IIR) & 0x0F == UART_IIR_NO_INT


def test_unknown_offsets_read_zero_and_ignore_writes():
    s, irq, out = make()
    before = s.state()
    for offset in (8, 9, 0x100, -1):
        s.write(offset, 0xFF)
        assert s.read(offset) == 0
    assert s.state() == before
    assert irq.count == 0


def test_state_round_trip_keeps_registers_and_input():
    s, _, _ = make()
    s.write(LCR, 0x83)
    s.write(DLL, 0x01)
    s.write(LCR, 0x1B)
    s.write(SCR, 0x5A)
    s.write(MCR, 0x0B)
    s.enqueue_input(b"xyz")
    state = s.state()
    irq = Irq()
    restored = Serial.from_state(state, irq, io.BytesIO())
    assert restored.state() == state
    assert irq.count == 0                       # no interrupt enabled
    assert bytes(restored.read(RX) for _ in range(3)) == b"xyz"
    assert restored.read(LCR) == 0x1B and restored.read(SCR) == 0x5A


def test_from_state_reraises_pending_interrupts():
    irq = Irq()
    Serial.from_state(SerialState(ier=UART_IER_RDI, rx_fifo=[0x41]), irq, io.BytesIO())
    assert irq.count == 1
    irq = Irq()
    s = Serial.from_state(SerialState(ier=UART_IER_THRI, thr_empty_pending=True), irq, None)
    assert irq.count == 1
    assert s.read(IIR) & 0x0F == UART_IIR_THRI


def test_from_state_rejects_an_overfull_fifo_and_bad_registers():
    with pytest.raises(SerialError, match="rx_fifo holds 65 bytes"):
        Serial.from_state(SerialState(rx_fifo=[0] * 65), Irq(), None)
    with pytest.raises(SerialError, match="lcr"):
        Serial.from_state(SerialState(lcr=0x100), Irq(), None)
    with pytest.raises(SerialError, match="not a byte"):
        Serial.from_state(SerialState(rx_fifo=[256]), Irq(), None)


# ---------------------------------------------------------------- end of input: a break

UART_LSR_BI = 0x10


def test_break_is_a_zero_character_with_bi_that_lsr_reads_do_not_lose():
    s, irq, _ = make()
    s.write(IER, UART_IER_RDI)
    assert s.enqueue_break()
    assert irq.count == 1                              # received data available
    # The transmit path reads LSR too: BI stays with its character until RBR gives it.
    for _ in range(3):
        assert s.read(LSR) & (UART_LSR_DR | UART_LSR_BI) == UART_LSR_DR | UART_LSR_BI
    assert s.read(RX) == 0
    assert s.read(LSR) & (UART_LSR_DR | UART_LSR_BI) == 0


def test_break_waits_for_an_empty_fifo_and_data_may_follow_it():
    s, _, _ = make()
    s.enqueue_input(b"ab")
    assert not s.enqueue_break()                       # BI would belong to 'a'
    assert [s.read(RX), s.read(RX)] == [ord("a"), ord("b")]
    assert s.enqueue_break()
    assert s.enqueue_input(b"c") == 1
    assert s.read(LSR) & UART_LSR_BI
    assert s.read(RX) == 0
    assert s.read(LSR) & (UART_LSR_DR | UART_LSR_BI) == UART_LSR_DR
    assert s.read(RX) == ord("c")


def test_break_is_refused_in_loopback():
    s, _, _ = make()
    s.write(MCR, UART_MCR_LOOP)
    assert not s.enqueue_break()


def test_a_pending_break_survives_a_snapshot():
    s, _, _ = make()
    s.enqueue_break()
    restored = Serial.from_state(s.state(), Irq(), io.BytesIO())
    assert restored.read(LSR) & UART_LSR_BI and restored.read(RX) == 0
