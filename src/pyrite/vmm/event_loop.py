"""The device event loop: one thread, epoll over host fds (stdin, virtio queue eventfds, later
tap/sockets), plus one-shot timers (`call_later`, the rate limiters' retry) kept as epoll's
timeout, since os.timerfd_create needs Python 3.13.

Pollers (`start_polling`): after a device has had work, the loop keeps looking at its rings
for POLL_IDLE_NS instead of sleeping, with the driver asked not to kick meanwhile (as QEMU's
AioContext polling and vhost's busy polling do). A driver that waits for each request then
finds its next one served without a VM exit and a thread wake-up per request. The loop still
looks at its fds and timers every POLL_SLICE_NS. A poller has three methods:

- ``begin_polling()``: ask the driver not to kick;
- ``poll() -> bool``: serve what the driver made available; whether there was anything;
- ``end_polling() -> bool``: ask the driver to kick again; True if work arrived in between
  (then the poller stays polled).
"""
from __future__ import annotations

import heapq
import os
import select
import sys
import threading
import time
from collections.abc import Callable

POLL_IDLE_NS = 100_000          # polling stops after this long without work
POLL_SLICE_NS = 50_000          # fds and timers are looked at at least this often while polling


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
        self._timers: list[tuple[float, int, Callable[[], None]]] = []   # (deadline, seq, callback)
        self._timer_seq = 0
        self._pollers: dict = {}        # poller -> time.monotonic_ns() of its last work

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

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> None:
        """Run `callback` on the loop's thread after `delay_s` seconds (any thread may call this)."""
        with self._lock:
            if self._wake < 0:
                return            # stopped: nothing will run it
            self._timer_seq += 1
            heapq.heappush(self._timers, (time.monotonic() + delay_s, self._timer_seq, callback))
        if threading.current_thread() is not self._thread:
            os.eventfd_write(self._wake, 1)   # recompute the poll timeout
        if self._started:
            self._start_thread()

    def _due_timers(self) -> tuple[list[Callable[[], None]], float]:
        """Callbacks whose time has come, and the poll timeout until the next one (-1: none)."""
        now = time.monotonic()
        due = []
        with self._lock:
            while self._timers and self._timers[0][0] <= now:
                due.append(heapq.heappop(self._timers)[2])
            timeout = self._timers[0][0] - now if self._timers else -1
        return due, timeout

    def start(self) -> None:
        """Handle events from now on. The thread starts with the first fd to watch: a microVM
        without host input (stdin from /dev/null or a file) runs without it."""
        self._started = True
        if self._handlers or self._timers:
            self._start_thread()

    def _start_thread(self) -> None:
        with self._lock:
            if self._thread is None and not self._stopping and (self._handlers or self._timers):
                self._thread = threading.Thread(target=self._run, name="fc_event_loop", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """End the thread and close the loop's fds; later calls do nothing."""
        with self._lock:
            if self._wake < 0:
                return
            self._stopping = True
        os.eventfd_write(self._wake, 1)
        if self._thread and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        self._epoll.close()
        os.close(self._wake)
        self._wake = -1

    def _run(self) -> None:
        while not self._stopping:
            due, timeout = self._due_timers()
            for callback in due:
                self._call(callback)
            if due:
                continue            # a callback may have added a timer that is already due
            if self._pollers:
                timeout = 0
            try:
                ready = self._epoll.poll(timeout)
            except (OSError, ValueError):
                return  # closed under us during stop
            for fd, events in ready:
                if fd == self._wake:
                    try:
                        os.eventfd_read(self._wake)
                    except OSError:
                        pass
                    continue
                handler = self._handlers.get(fd)
                if handler is not None:
                    self._call(handler, events)
            if self._pollers:
                self._poll()

    def start_polling(self, poller) -> None:
        """Poll `poller` until it has been idle for POLL_IDLE_NS (on the loop's thread only)."""
        if poller not in self._pollers:
            self._call(poller.begin_polling)
        self._pollers[poller] = time.monotonic_ns()

    def _poll(self) -> None:
        """One slice of polling: every poller in turn until the slice ends or none is left."""
        pollers = self._pollers
        clock = time.monotonic_ns
        end = clock() + POLL_SLICE_NS
        while pollers:
            now = clock()
            for poller, last_work in list(pollers.items()):
                try:
                    if poller.poll():
                        pollers[poller] = now
                    elif now - last_work >= POLL_IDLE_NS:
                        if poller.end_polling():
                            pollers[poller] = now
                        else:
                            del pollers[poller]
                except Exception as e:    # as _call: a failing device must not stop the loop
                    pollers.pop(poller, None)
                    print(f"pyrite: event loop: polling {poller!r} failed: {type(e).__name__}: {e}",
                          file=sys.stderr)
            if now >= end:
                return

    @staticmethod
    def _call(fn, *args) -> None:
        try:
            fn(*args)
        except Exception as e:  # one failing device handler must not stop the others' events
            print(f"pyrite: event loop: {getattr(fn, '__name__', fn)} failed: {type(e).__name__}: {e}",
                  file=sys.stderr)
