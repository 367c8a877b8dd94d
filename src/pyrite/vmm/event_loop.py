"""The device event loop: one thread, epoll over host fds (stdin, later tap/eventfds/sockets)."""
from __future__ import annotations

import os
import select
import threading
from collections.abc import Callable


class EventLoop:
    def __init__(self):
        self._epoll = select.epoll()
        self._handlers: dict[int, Callable[[int], None]] = {}
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._wake, select.EPOLLIN)
        self._stopping = False
        self._started = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, fd: int, handler: Callable[[int], None], events: int = select.EPOLLIN) -> None:
        self._handlers[fd] = handler
        self._epoll.register(fd, events)
        if self._started:
            self._start_thread()

    def remove(self, fd: int) -> None:
        if self._handlers.pop(fd, None) is not None:
            try:
                self._epoll.unregister(fd)
            except (OSError, ValueError):
                pass

    def start(self) -> None:
        """Handle events from now on. The thread starts with the first fd to watch: a microVM
        without host input (stdin from /dev/null or a file) runs without it."""
        self._started = True
        if self._handlers:
            self._start_thread()

    def _start_thread(self) -> None:
        with self._lock:
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(target=self._run, name="fc_event_loop", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
        os.eventfd_write(self._wake, 1)
        if self._thread and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        self._epoll.close()
        os.close(self._wake)

    def _run(self) -> None:
        while not self._stopping:
            try:
                ready = self._epoll.poll()
            except (OSError, ValueError):
                return  # closed under us during stop
            for fd, events in ready:
                handler = self._handlers.get(fd)
                if handler is not None:
                    handler(events)
