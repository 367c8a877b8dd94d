"""The device event loop: one thread, epoll over host fds (stdin, virtio queue eventfds, TAPs,
vsock host sockets), plus one-shot timers (`call_later`, the rate limiters' retry) kept as epoll's
timeout, since os.timerfd_create needs Python 3.13.

Pollers (`start_polling`): after a device has had work, the loop keeps looking at its rings
for a while instead of sleeping, with the driver asked not to kick meanwhile (as QEMU's
AioContext polling and vhost's busy polling do). A driver that waits for each request then
finds its next one served without a VM exit and a thread wake-up per request. The loop still
looks at its fds and timers every POLL_SLICE_NS.

Polling pays only when the next request comes soon and the loop has a CPU of its own, so it
adapts (PollPolicy), as QEMU's poll-max-ns / poll-grow / poll-shrink do:

- each poller has a window, at most POLL_MAX_NS, that starts at 0 (no polling): a kick that
  comes within POLL_MAX_NS of the poller's last work grows it (x2, from POLL_GROW_START_NS),
  since a window that long would have caught the request; a window that runs out, with the
  next kick later than POLL_MAX_NS, halves it (under POLL_GROW_START_NS: 0);
- the loop stops polling when the host's CPUs are contended: while polling, the thread's CPU
  time (time.thread_time_ns) should keep up with wall time; a slice in which the thread was
  off the CPU for POLL_STOLEN_NS or more and found no work means something else wanted this
  CPU (another process, or the guest's own vCPU thread), and then a polling thread only waits
  for its turn, while a sleeping one is woken at once by the kick. (A preempted slice that
  found work keeps polling: under load the requests still come faster than wake-ups would
  serve them.) Polling then stops for a back-off
  (POLL_BACKOFF_MIN_NS, doubling per contended attempt up to POLL_BACKOFF_MAX_NS, back to the
  minimum after POLL_BACKOFF_MIN_NS of polling that was not preempted).

A poller has three methods:

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

POLL_MAX_NS = 100_000           # the longest window: polling stops after this long without work
POLL_GROW_START_NS = 16_000     # the first window a growing poller gets; shrunk below it: 0
POLL_SLICE_NS = 50_000          # fds and timers are looked at at least this often while polling
POLL_STOLEN_NS = 200_000        # off the CPU this long within one slice: the CPU is contended
POLL_BACKOFF_MIN_NS = 20_000_000        # no polling for this long after contention ...
POLL_BACKOFF_MAX_NS = 1_000_000_000     # ... doubling per contended attempt up to this
POLL_STOP_TRIES = 8             # work found while stopping a poller: serve it, this many times


class PollPolicy:
    """One poller's window (QEMU's adaptive polling): how long to keep polling after its last
    work. Sans-I/O: the caller passes monotonic nanoseconds."""
    __slots__ = ("window_ns", "max_ns", "grow_start_ns", "last_work_ns")

    def __init__(self, max_ns: int = POLL_MAX_NS, grow_start_ns: int = POLL_GROW_START_NS,
                 window_ns: int = 0):
        self.max_ns = max_ns
        self.grow_start_ns = grow_start_ns
        self.window_ns = window_ns
        self.last_work_ns: int | None = None

    def kicked(self, now: int) -> None:
        """The driver kicked (polling did not find the request): adapt to the gap since the
        last work, then count the kick as work."""
        if self.last_work_ns is not None:
            gap = now - self.last_work_ns
            if gap <= self.max_ns:
                if self.window_ns < self.max_ns:        # a longer window would have caught it
                    self.window_ns = min(self.max_ns, max(self.window_ns * 2, self.grow_start_ns))
            else:                                       # no window could have: poll less
                self.window_ns //= 2
                if self.window_ns < self.grow_start_ns:
                    self.window_ns = 0
        self.last_work_ns = now

    def worked(self, now: int) -> None:
        """Polling found work: it paid."""
        self.last_work_ns = now

    def expired(self, now: int) -> bool:
        """Whether the window since the last work has run out."""
        return self.last_work_ns is None or now - self.last_work_ns >= self.window_ns


class ContentionGuard:
    """Whether the loop may poll: not while the host's CPUs are contended. Sans-I/O: the
    caller passes monotonic nanoseconds and the thread's CPU nanoseconds per polling slice."""
    __slots__ = ("stolen_ns", "backoff_min_ns", "backoff_max_ns", "backoff_ns", "resume_at",
                 "clean_ns", "contended_slices")

    def __init__(self, stolen_ns: int = POLL_STOLEN_NS, backoff_min_ns: int = POLL_BACKOFF_MIN_NS,
                 backoff_max_ns: int = POLL_BACKOFF_MAX_NS):
        self.stolen_ns = stolen_ns
        self.backoff_min_ns = backoff_min_ns
        self.backoff_max_ns = backoff_max_ns
        self.backoff_ns = backoff_min_ns
        self.resume_at = 0                  # no polling before this time
        self.clean_ns = 0                   # polling not preempted since the last contention
        self.contended_slices = 0           # for metrics and tests

    def may_poll(self, now: int) -> bool:
        return now >= self.resume_at

    def slice_done(self, wall_ns: int, cpu_ns: int, now: int) -> bool:
        """One polling slice took `wall_ns`, of which the thread ran `cpu_ns`. True if the
        CPU was contended: polling must stop, and stays off for the back-off."""
        if wall_ns - cpu_ns >= self.stolen_ns:
            self.contended_slices += 1
            self.resume_at = now + self.backoff_ns
            self.backoff_ns = min(self.backoff_max_ns, self.backoff_ns * 2)
            self.clean_ns = 0
            return True
        self.clean_ns += wall_ns
        if self.clean_ns >= self.backoff_min_ns:      # contention has passed: forget it
            self.backoff_ns = self.backoff_min_ns
        return False


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
        self._pollers: dict = {}        # the pollers being polled -> their PollPolicy
        self._policies: dict = {}       # every poller seen -> its PollPolicy (windows persist)
        self.contention = ContentionGuard()
        self._seccomp = None            # the "vmm" pyrite.seccomp.Program, installed by the thread

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

    def start(self, seccomp=None) -> None:
        """Handle events from now on. The thread starts with the first fd to watch: a microVM
        without host input (stdin from /dev/null or a file) runs without it. With `seccomp` (a
        pyrite.seccomp.Program) it starts now, since a thread started later by a filtered thread
        would inherit that thread's filter, and installs the program first."""
        self._started = True
        self._seccomp = seccomp
        if self._handlers or self._timers or seccomp is not None:
            self._start_thread()

    def _start_thread(self) -> None:
        with self._lock:
            if self._thread is None and not self._stopping and (self._handlers or self._timers or self._seccomp):
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
        if self._seccomp is not None:
            self._seccomp.install()
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
        """`poller`'s driver kicked and was served: poll it for its window, if polling pays
        (PollPolicy, ContentionGuard; on the loop's thread only)."""
        now = time.monotonic_ns()
        policy = self._pollers.get(poller)
        if policy is not None:
            policy.worked(now)              # already polled (a kick sent before suppression)
            return
        policy = self.poll_policy(poller)
        policy.kicked(now)
        if policy.window_ns and self.contention.may_poll(now):
            self._pollers[poller] = policy
            self._call(poller.begin_polling)

    def poll_policy(self, poller) -> PollPolicy:
        """`poller`'s window, kept for the loop's life (made on first use)."""
        policy = self._policies.get(poller)
        if policy is None:
            policy = self._policies[poller] = PollPolicy()
        return policy

    def _poll(self) -> None:
        """One slice of polling: every poller in turn until the slice ends or none is left;
        all of them stop when the slice shows the CPU contended."""
        pollers = self._pollers
        clock = time.monotonic_ns
        cpu_clock = time.thread_time_ns
        start, start_cpu = clock(), cpu_clock()
        end = start + POLL_SLICE_NS
        found = False
        while pollers:
            now = clock()
            for poller, policy in list(pollers.items()):
                try:
                    if poller.poll():
                        found = True
                        policy.worked(clock())
                    elif policy.expired(now):
                        if poller.end_polling():
                            policy.worked(now)
                        else:
                            del pollers[poller]
                except Exception as e:    # as _call: a failing device must not stop the loop
                    pollers.pop(poller, None)
                    print(f"pyrite: event loop: polling {poller!r} failed: {type(e).__name__}: {e}",
                          file=sys.stderr)
            if now >= end:
                break
        now = clock()
        if not found and self.contention.slice_done(now - start, cpu_clock() - start_cpu, now):
            self._stop_polling()     # preempted and nothing to do: polling only takes a turn

    def _stop_polling(self) -> None:
        """End every poller's polling now; a driver that added work meanwhile is served first.
        A poller that keeps having work stays polled (its window ends it later)."""
        for poller in list(self._pollers):
            try:
                for _ in range(POLL_STOP_TRIES):
                    if not poller.end_polling():
                        del self._pollers[poller]
                        break
                    poller.poll()                  # work arrived while suppressed: serve it
            except Exception as e:
                self._pollers.pop(poller, None)
                print(f"pyrite: event loop: polling {poller!r} failed: {type(e).__name__}: {e}",
                      file=sys.stderr)

    @staticmethod
    def _call(fn, *args) -> None:
        try:
            fn(*args)
        except Exception as e:  # one failing device handler must not stop the others' events
            print(f"pyrite: event loop: {getattr(fn, '__name__', fn)} failed: {type(e).__name__}: {e}",
                  file=sys.stderr)
