"""Firecracker's logger: its levels and its line format.

    2024-05-01T10:00:00.123456789 [my-vm:fc_api:INFO:pyrite/api/server.py:88] API server started.

The bracket holds the instance id and the thread name, then the level (with show_level)
and the origin file:line (with show_log_origin). Lines go to stdout until a log path is
configured; the path (a file or a FIFO) must exist, as Firecracker requires, and is
written without blocking: a line that cannot be written is counted as missed, never waited
for. No `logging` import: it costs milliseconds at start-up and we need none of it.
"""
from __future__ import annotations

import os
import sys
import threading
import time

LEVELS = {"Off": 0, "Error": 1, "Warning": 2, "Info": 3, "Debug": 4, "Trace": 5}
_LEVEL_NAMES = {1: "ERROR", 2: "WARN", 3: "INFO", 4: "DEBUG", 5: "TRACE"}
DEFAULT_INSTANCE_ID = "anonymous-instance"
_PKG_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class LoggerError(Exception):
    """Firecracker's LoggerUpdateError text."""


def thread_label() -> str:
    t = threading.current_thread()
    return "main" if t is threading.main_thread() else t.name


class Logger:
    def __init__(self, instance_id: str = DEFAULT_INSTANCE_ID, level: str = "Info"):
        self.instance_id = instance_id
        self.level = LEVELS[level]
        self.show_level = False
        self.show_log_origin = False
        self.module: str | None = None
        self.fd = 1
        self._owned_fd = False
        self._lock = threading.Lock()
        self.missed = 0      # lines that could not be written (metrics: logger.missed_log_count)

    def configure(self, *, log_path: str | None = None, level: str | None = None,
                  show_level: bool | None = None, show_log_origin: bool | None = None,
                  module: str | None = None) -> None:
        """Apply a PUT /logger body (or the matching command line flags): only given fields change."""
        fd = None
        if log_path is not None:
            try:
                fd = open_nonblocking(log_path)
            except OSError as e:
                from pyrite.config import io_error_text
                raise LoggerError(f"Failed to open target file: {io_error_text(e)}") from None
        with self._lock:
            if fd is not None:
                if self._owned_fd:
                    os.close(self.fd)
                self.fd, self._owned_fd = fd, True
            if level is not None:
                self.level = LEVELS[level]
            if show_level is not None:
                self.show_level = show_level
            if show_log_origin is not None:
                self.show_log_origin = show_log_origin
            if module is not None:
                self.module = module

    def enabled(self, level: str) -> bool:
        return LEVELS[level] <= self.level

    def format(self, level: int, message: str, origin: tuple[str, int, str] | None) -> str:
        now = time.time_ns()
        secs, nanos = divmod(now, 1_000_000_000)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(secs))
        tags = f"{self.instance_id}:{thread_label()}"
        if self.show_level:
            tags += f":{_LEVEL_NAMES[level]}"
        if self.show_log_origin and origin is not None:
            tags += f":{origin[0]}:{origin[1]}"
        return f"{stamp}.{nanos:09d} [{tags}] {message}\n"

    def log(self, level: str, message: str, *, _depth: int = 2) -> None:
        n = LEVELS[level]
        if n > self.level or n == 0:
            return
        origin = None
        if self.show_log_origin or self.module is not None:
            frame = sys._getframe(_depth)
            path = frame.f_code.co_filename
            rel = os.path.relpath(path, _PKG_ROOT) if path.startswith(_PKG_ROOT) else path
            origin = (rel, frame.f_lineno, frame.f_globals.get("__name__", ""))
            if self.module is not None and not origin[2].startswith(self.module):
                return
        line = self.format(n, message, origin).encode("utf-8", "replace")
        with self._lock:
            try:
                written = os.write(self.fd, line)
                if written != len(line):
                    self.missed += 1
            except OSError:
                self.missed += 1

    def emergency(self, message: str) -> None:
        """An error line written at once, to the log and to stderr, without the lock: for a
        signal handler that ends the process (the interrupted thread may hold the lock)."""
        line = self.format(LEVELS["Error"], message, None).encode("utf-8", "replace")
        for fd in {self.fd, 2}:
            try:
                os.write(fd, line)
            except OSError:
                pass

    def error(self, message: str) -> None:
        self.log("Error", message, _depth=3)

    def warn(self, message: str) -> None:
        self.log("Warning", message, _depth=3)

    def info(self, message: str) -> None:
        self.log("Info", message, _depth=3)

    def debug(self, message: str) -> None:
        self.log("Debug", message, _depth=3)


def open_nonblocking(path: str) -> int:
    """Open an existing file or FIFO for appending without ever blocking (read-write, so a
    FIFO opens even with no reader yet), as Firecracker opens its log and metrics paths."""
    return os.open(path, os.O_RDWR | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC)


# The process's logger (one VMM per process, as in Firecracker).
LOGGER = Logger()
