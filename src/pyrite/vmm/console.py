"""The host side of the serial console: a lock around the UART, host input with backpressure,
and output sinks (a file descriptor, or a buffer for Python callers)."""
from __future__ import annotations

import os
import threading

PENDING_LIMIT = 1 << 16  # stop reading host input while this much waits for the guest
CTRL_D = 0x04


class FdSink:
    """Unbuffered output to a file descriptor; a closed reader does not stop the guest."""

    def __init__(self, fd: int):
        self.fd = fd
        self.broken = False

    def write(self, data: bytes) -> int:
        if not self.broken:
            try:
                os.write(self.fd, data)
            except OSError:
                self.broken = True
        return len(data)

    def flush(self) -> None:
        pass


class LinePrefixSink:
    """Output to a file descriptor shared by several guests: whole lines, each after `prefix`,
    written under `lock` (the rest of a line waits for its newline)."""

    def __init__(self, fd: int, prefix: bytes, lock: threading.Lock):
        self.fd, self.prefix, self.lock = fd, prefix, lock
        self.pending = bytearray()

    def write(self, data: bytes) -> int:
        self.pending += data
        end = self.pending.rfind(b"\n") + 1
        if end:
            lines = self.pending[:end].splitlines(keepends=True)
            del self.pending[:end]
            with self.lock:
                try:
                    os.write(self.fd, b"".join(self.prefix + line for line in lines))
                except OSError:
                    pass
        return len(data)

    def flush(self) -> None:
        pass


class BufferSink:
    """Keeps everything the guest printed, for callers that embed a microVM."""

    def __init__(self, tee=None):
        self.data = bytearray()
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.tee = tee

    def write(self, data: bytes) -> int:
        with self.lock:
            self.data += data
            self.changed.notify_all()
        if self.tee is not None:
            self.tee.write(data)
        return len(data)

    def flush(self) -> None:
        pass


class SerialConsole:
    """Serialises guest register access (vCPU threads) with host input (event-loop thread).

    End of host input reaches the guest as a break (Serial.enqueue_break) after the last
    byte: `end_of_input()` when stdin (a pipe, a file) ends; on a terminal, Ctrl-D at the start
    of a line, as the tty line discipline has it (elsewhere Ctrl-D passes as the byte 0x04)."""

    def __init__(self, serial):
        self.serial = serial
        self.lock = threading.Lock()
        self.pending = bytearray()
        self.breaks: list[int] = []   # offsets in `pending` where a break comes, in order
        self.at_line_start = True     # the last byte fed from a terminal ended a line
        self.on_drained = None  # called (once) when pending input has all reached the guest

    def pio_read(self, offset: int, length: int) -> bytes:
        with self.lock:
            value = self.serial.read(offset)
            if offset == 0 and (self.pending or self.breaks):
                self._refill()
        return bytes((value,)) * length

    def pio_write(self, offset: int, data: bytes) -> None:
        with self.lock:
            self.serial.write(offset, data[0])

    def feed(self, data: bytes, terminal: bool = False) -> bool:
        """Queue host input; False when the caller should stop reading until drained. From a
        `terminal`, Ctrl-D at the start of a line is end of input."""
        with self.lock:
            start = 0
            for i, byte in enumerate(data) if terminal else ():
                if byte == CTRL_D and (data[i - 1] in b"\r\n" if i else self.at_line_start):
                    self.pending += data[start:i]
                    self.breaks.append(len(self.pending))
                    start = i + 1
            self.pending += data[start:]
            if terminal and data:
                self.at_line_start = data[-1] in b"\r\n" or start == len(data)
            self._refill()
            return len(self.pending) < PENDING_LIMIT

    def end_of_input(self) -> None:
        """Host input ended: the guest gets a break after the bytes still pending."""
        with self.lock:
            self.breaks.append(len(self.pending))
            self._refill()

    def _refill(self) -> None:
        while self.breaks and self.breaks[0] == 0:
            if not self.serial.enqueue_break():
                break                 # after the guest has read what the FIFO holds
            self.breaks.pop(0)
        room = self.serial.fifo_capacity()
        if self.breaks:
            room = min(room, self.breaks[0])
        if room:
            taken = self.serial.enqueue_input(bytes(self.pending[:room]))
            del self.pending[:taken]
            self.breaks = [offset - taken for offset in self.breaks]
        if not self.pending and not self.breaks and self.on_drained is not None:
            callback, self.on_drained = self.on_drained, None
            callback()
