"""The host side of the serial console: a lock around the UART, host input with backpressure,
and output sinks (a file descriptor, or a buffer for Python callers)."""
from __future__ import annotations

import os
import threading

PENDING_LIMIT = 1 << 16  # stop reading host input while this much waits for the guest


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
    """Serialises guest register access (vCPU threads) with host input (event-loop thread)."""

    def __init__(self, serial):
        self.serial = serial
        self.lock = threading.Lock()
        self.pending = bytearray()
        self.on_drained = None  # called (once) when pending input has all reached the guest

    def pio_read(self, offset: int, length: int) -> bytes:
        with self.lock:
            value = self.serial.read(offset)
            if offset == 0 and self.pending:
                self._refill()
        return bytes((value,)) * length

    def pio_write(self, offset: int, data: bytes) -> None:
        with self.lock:
            self.serial.write(offset, data[0])

    def feed(self, data: bytes) -> bool:
        """Queue host input; False when the caller should stop reading until drained."""
        with self.lock:
            self.pending += data
            self._refill()
            return len(self.pending) < PENDING_LIMIT

    def _refill(self) -> None:
        room = self.serial.fifo_capacity()
        if room:
            taken = self.serial.enqueue_input(bytes(self.pending[:room]))
            del self.pending[:taken]
        if not self.pending and self.on_drained is not None:
            callback, self.on_drained = self.on_drained, None
            callback()
