"""A 16550A UART (COM1 at 0x3f8, IRQ 4), modelled on rust-vmm vm-superio's serial.rs.

Sans-I/O: the device sees register reads and writes at offsets 0..7 from its base
port, raises its interrupt through the ``irq`` callable (an edge: the VMM wires it
to an irqfd) and hands the guest's output to a binary writer.

Where vm-superio departs from the 16550A datasheet, pyrite follows the datasheet:

- End of host input is a break (``enqueue_break``): a 0 character with LSR.BI, the
  16550A's own line event, which the library OS reads as end of file. BI belongs to its
  character: it shows at every LSR read while that character is at the top of the FIFO and
  goes when the character is read from RBR (the datasheet clears it at the first LSR
  read), so that a driver whose transmit path also reads LSR, without a lock against its
  receive interrupt, cannot lose it.
- IIR reports the single highest-priority pending source (line status, then
  received data, then THR empty) instead of OR-ing the source codes together, and
  reading IIR clears the THR-empty interrupt only when that is the source it reports.
- Setting IER's THR-empty bit while THR is empty raises the interrupt at once, as a
  real 16550A does, so Linux's 8250 driver needs no "bad TX" workaround.
- The interrupt is raised on each rising edge of the UART's interrupt output (see
  ``_update_irq``), so input left in the FIFO after an interrupt is never stranded.

Output goes to ``out`` byte by byte with a ``flush()`` at each newline (vm-superio
flushes after every byte); ``buffer_output=True`` keeps whole lines instead.

Like vm-superio: THR empties instantly (THRE and TEMT always set), the 64-byte
receive FIFO exerts backpressure on host input (``fifo_capacity``), the THR-empty
interrupt is raised even when writing the output fails so the guest never stalls,
IIR always reports FIFOs enabled (16550A), and IER keeps only its 16550 bits so the
driver's XScale probe fails as it should.
"""
from __future__ import annotations

from collections.abc import Callable

TYPE_CHECKING = False   # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import BinaryIO

    from .persist import SerialState

# Register offsets from the base port.
DATA = 0          # read: RBR, write: THR; DLL while LCR.DLAB
IER = 1           # DLM while LCR.DLAB
IIR = 2           # read: IIR, write: FCR
FCR = 2
LCR = 3
MCR = 4
LSR = 5
MSR = 6
SCR = 7

FIFO_SIZE = 64

IER_RDA = 0x01            # received data available
IER_THRE = 0x02           # transmitter holding register empty
IER_RLS = 0x04            # receiver line status
IER_VALID = 0x0F          # the bits a 16550A implements

IIR_NONE = 0x01
IIR_THRE = 0x02
IIR_RDA = 0x04
IIR_RLS = 0x06
IIR_FIFO_ENABLED = 0xC0

FCR_CLEAR_RX = 0x02

LCR_DLAB = 0x80

LSR_DR = 0x01             # data ready
LSR_OE = 0x02             # overrun error
LSR_BI = 0x10             # break interrupt: the character at the top of the FIFO is a break
LSR_ERRORS = 0x1E         # OE | PE | FE | BI
LSR_THRE = 0x20
LSR_TEMT = 0x40

MCR_DTR = 0x01
MCR_RTS = 0x02
MCR_OUT1 = 0x04
MCR_OUT2 = 0x08
MCR_LOOP = 0x10

MSR_CTS = 0x10
MSR_DSR = 0x20
MSR_RI = 0x40
MSR_DCD = 0x80

# Output is passed on at a newline or when this much is buffered.
OUTPUT_BUFFER_LIMIT = 4096


class SerialError(Exception):
    """A serial state that cannot be restored."""


# Register values after reset, as vm-superio has them (DLM, IER and SCR reset to 0).
RESET_DLL = 0x0C                  # divisor 12: 9600 baud
RESET_LCR = 0x03                  # 8 data bits, no parity, 1 stop bit
RESET_MCR = MCR_OUT2              # most UARTs need OUT2 for interrupts
RESET_LSR = LSR_THRE | LSR_TEMT
RESET_MSR = MSR_DSR | MSR_CTS | MSR_DCD


def __getattr__(name: str):
    # The state record lives in persist.py, imported when a snapshot needs it, not at boot.
    if name == "SerialState":
        from .persist import SerialState
        return SerialState
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Serial:
    """The UART's registers; ``read(offset)``/``write(offset, value)`` are the guest's port I/O."""

    def __init__(self, irq: Callable[[], None], out: BinaryIO | None,
                 on_input_drained: Callable[[], None] | None = None, *,
                 buffer_output: bool = False):
        """``out`` gets each byte as the guest writes it and a ``flush()`` at each newline.

        With ``buffer_output`` the UART keeps a line (up to 4 KiB) itself and hands it
        over at a newline: fewer calls, but the VMM must then call ``flush()`` when the
        guest goes quiet and before it exits, or a prompt without a newline waits.
        """
        self._irq = irq
        self._out = out
        self._buffer_output = buffer_output
        self._on_input_drained = on_input_drained
        self._pending_out = bytearray()
        self._irq_level = False
        self.dll, self.dlm, self.ier, self.lcr = RESET_DLL, 0, 0, RESET_LCR
        self.mcr, self.lsr, self.msr, self.scr = RESET_MCR, RESET_LSR, RESET_MSR, 0
        self.thr_empty_pending = False    # THR-empty interrupt raised and not yet acknowledged
        self.rx_fifo: list[int] = []
        # Counters for metrics.
        self.tx_bytes = 0         # guest bytes handed to ``out``
        self.tx_lost = 0          # guest bytes dropped because ``out`` failed
        self.rx_bytes = 0         # host bytes accepted into the receive FIFO
        self.flush_count = 0
        self.output_error: OSError | None = None   # last failure of ``out``, for the VMM to log

    # -- state --------------------------------------------------------------------------

    def _load(self, s: SerialState) -> None:
        self.dll, self.dlm, self.ier = s.dll, s.dlm, s.ier & IER_VALID
        self.lcr, self.mcr, self.scr = s.lcr, s.mcr, s.scr
        self.msr = s.msr
        self.rx_fifo = list(s.rx_fifo)
        # DR mirrors the FIFO and THRE/TEMT are always set: keep only the error bits.
        self.lsr = (s.lsr & LSR_ERRORS) | LSR_THRE | LSR_TEMT | (LSR_DR if self.rx_fifo else 0)
        self.thr_empty_pending = bool(s.thr_empty_pending) and bool(self.ier & IER_THRE)

    def state(self) -> SerialState:
        from .persist import SerialState
        return SerialState(dll=self.dll, dlm=self.dlm, ier=self.ier, lcr=self.lcr, mcr=self.mcr,
                           lsr=self.lsr, msr=self.msr, scr=self.scr,
                           thr_empty_pending=self.thr_empty_pending, rx_fifo=list(self.rx_fifo))

    @classmethod
    def from_state(cls, state: SerialState, irq: Callable[[], None], out: BinaryIO | None,
                   on_input_drained: Callable[[], None] | None = None, *,
                   buffer_output: bool = False) -> "Serial":
        """Rebuild a UART from ``state`` (see restore)."""
        serial = cls(irq, out, on_input_drained, buffer_output=buffer_output)
        serial.restore(state)
        return serial

    def restore(self, state: SerialState) -> None:
        """Take ``state``, validating it first (SerialError), and re-raise any pending interrupt."""
        if len(state.rx_fifo) > FIFO_SIZE:
            raise SerialError(f"serial state: rx_fifo holds {len(state.rx_fifo)} bytes, "
                              f"the FIFO holds at most {FIFO_SIZE}")
        for name in ("dll", "dlm", "ier", "lcr", "mcr", "lsr", "msr", "scr"):
            value = getattr(state, name)
            if not isinstance(value, int) or not 0 <= value <= 0xFF:
                raise SerialError(f"serial state: register {name} = {value!r} is not a byte")
        if any(not isinstance(b, int) or not 0 <= b <= 0xFF for b in state.rx_fifo):
            raise SerialError("serial state: rx_fifo holds a value that is not a byte")
        self._load(state)
        self._update_irq()

    # -- interrupts ---------------------------------------------------------------------

    def _interrupt_id(self) -> int:
        """The highest-priority pending source, as IIR bits 0..3."""
        if self.ier & IER_RLS and self.lsr & LSR_ERRORS:
            return IIR_RLS
        if self.ier & IER_RDA and self.rx_fifo:
            return IIR_RDA
        if self.ier & IER_THRE and self.thr_empty_pending:
            return IIR_THRE
        return IIR_NONE

    def _update_irq(self) -> None:
        # The UART's INTR output is a level; the irqfd takes edges, so fire on each rise.
        level = self._interrupt_id() != IIR_NONE
        if level and not self._irq_level:
            self._irq()
        self._irq_level = level

    # -- guest port I/O -----------------------------------------------------------------

    def read(self, offset: int) -> int:
        if offset == DATA:
            if self.lcr & LCR_DLAB:
                return self.dll
            return self._read_rbr()
        if offset == IER:
            return self.dlm if self.lcr & LCR_DLAB else self.ier
        if offset == IIR:
            iid = self._interrupt_id()
            if iid == IIR_THRE:
                self.thr_empty_pending = False   # reading IIR acknowledges THR empty
                self._update_irq()
            return iid | IIR_FIFO_ENABLED
        if offset == LCR:
            return self.lcr
        if offset == MCR:
            return self.mcr
        if offset == LSR:
            value = self.lsr
            if value & LSR_ERRORS & ~LSR_BI:
                self.lsr &= ~LSR_ERRORS | LSR_BI  # reading LSR clears the error bits (BI: see above)
                self._update_irq()
            return value
        if offset == MSR:
            return self._modem_status()
        if offset == SCR:
            return self.scr
        return 0

    def write(self, offset: int, value: int) -> None:
        value &= 0xFF
        if offset == DATA:
            if self.lcr & LCR_DLAB:
                self.dll = value
            else:
                self._write_thr(value)
        elif offset == IER:
            if self.lcr & LCR_DLAB:
                self.dlm = value
                return
            enabling_thre = value & IER_THRE and not self.ier & IER_THRE
            self.ier = value & IER_VALID
            # THR is always empty: enabling its interrupt raises it at once (16550A).
            self.thr_empty_pending = bool(enabling_thre) or (
                self.thr_empty_pending and bool(self.ier & IER_THRE))
            self._update_irq()
        elif offset == FCR:
            if value & FCR_CLEAR_RX:
                self._clear_rx()
        elif offset == LCR:
            self.lcr = value
        elif offset == MCR:
            self.mcr = value
        elif offset == SCR:
            self.scr = value

    def _read_rbr(self) -> int:
        if not self.rx_fifo:
            return 0
        byte = self.rx_fifo.pop(0)
        if self.lsr & LSR_BI:
            self.lsr &= ~LSR_BI                   # a break is only ever the top character
            self._update_irq()
        if not self.rx_fifo:
            self.lsr &= ~LSR_DR
            self._update_irq()
            if self._on_input_drained is not None:
                self._on_input_drained()
        return byte

    def _write_thr(self, value: int) -> None:
        if self.mcr & MCR_LOOP:
            # Loopback: the transmitter feeds the receiver; nothing leaves the UART.
            if len(self.rx_fifo) < FIFO_SIZE:
                self.rx_fifo.append(value)
                self.lsr |= LSR_DR
            else:
                self.lsr |= LSR_OE
        elif self._buffer_output:
            self._pending_out.append(value)
            if value == 0x0A or len(self._pending_out) >= OUTPUT_BUFFER_LIMIT:
                self.flush()
        else:
            self._emit(bytes((value,)), flush=value == 0x0A)
        # The byte left THR at once; raised even if output failed so the guest never stalls.
        if self.ier & IER_THRE:
            self.thr_empty_pending = True
        self._update_irq()

    def _modem_status(self) -> int:
        if not self.mcr & MCR_LOOP:
            return self.msr
        # Loopback wires RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD.
        msr = self.msr & ~(MSR_CTS | MSR_DSR | MSR_RI | MSR_DCD)
        if self.mcr & MCR_RTS:
            msr |= MSR_CTS
        if self.mcr & MCR_DTR:
            msr |= MSR_DSR
        if self.mcr & MCR_OUT1:
            msr |= MSR_RI
        if self.mcr & MCR_OUT2:
            msr |= MSR_DCD
        return msr

    def _clear_rx(self) -> None:
        had_input = bool(self.rx_fifo)
        self.rx_fifo.clear()
        self.lsr &= ~LSR_DR
        self._update_irq()
        if had_input and self._on_input_drained is not None:
            self._on_input_drained()

    # -- host side ----------------------------------------------------------------------

    def fifo_capacity(self) -> int:
        """How many more input bytes the receive FIFO takes now."""
        return FIFO_SIZE - len(self.rx_fifo)

    def enqueue_input(self, data: bytes) -> int:
        """Queue host input for the guest; returns how many bytes fit (0 when full).

        Input is refused in loopback mode, where the receiver listens to the transmitter.
        """
        if not data or self.mcr & MCR_LOOP:
            return 0
        count = min(self.fifo_capacity(), len(data))
        if count:
            self.rx_fifo.extend(data[:count])
            self.rx_bytes += count
            self.lsr |= LSR_DR
            self._update_irq()
        return count

    def enqueue_break(self) -> bool:
        """Receive a break (the line held at 0 for longer than a character): one 0 character
        with LSR.BI, as a 16550A loads it into its FIFO. pyrite sends it at the end of host
        input. Taken only when the FIFO is empty, so that BI belongs to the character at its
        top (the 16550A reveals BI with its character); False when not taken."""
        if self.rx_fifo or self.mcr & MCR_LOOP:
            return False
        self.rx_fifo.append(0)
        self.lsr |= LSR_DR | LSR_BI
        self._update_irq()
        return True

    @property
    def pending_output(self) -> int:
        """Bytes the guest wrote that ``flush`` has not yet passed on."""
        return len(self._pending_out)

    def flush(self) -> None:
        """Pass buffered output to ``out`` and flush ``out``."""
        data = bytes(self._pending_out)
        self._pending_out.clear()
        self._emit(data, flush=True)

    def _emit(self, data: bytes, flush: bool) -> None:
        """Write ``data`` to ``out``; what cannot be written is counted as lost, never raised."""
        if self._out is None:
            self.tx_lost += len(data)
            return
        written = 0
        try:
            while written < len(data):
                n = self._out.write(data[written:])
                if not n:           # a non-blocking raw writer that accepted nothing
                    break
                written += n
            if flush:
                out_flush = getattr(self._out, "flush", None)
                if out_flush is not None:
                    out_flush()
                    self.flush_count += 1
        except BlockingIOError as exc:
            written += getattr(exc, "characters_written", 0)
            self.output_error = exc
        except (OSError, ValueError) as exc:   # ValueError: writing to a closed file
            self.output_error = exc if isinstance(exc, OSError) else OSError(str(exc))
        self.tx_bytes += written
        self.tx_lost += len(data) - written
