"""A virtio device in the VMM: the descriptor each device kind has beside its model.

A kind (block/handler.py, net/handler.py, ...) says what the VMM's device manager needs to
wire it without knowing which device it is (Firecracker's attach_* step and event_handler.rs):

    kind, kind_name, noun     "block" / "virtio-blk" / "drive": metrics prefix, log name, in messages
    configs(resources)        its pyrite.config models in a VmResources, in slot order
    create(config)            the sans-I/O device made from its model (DeviceError names it)
    polled_queues             the request queues the event loop polls after a kick
    limiters()                its rate limiters (their timers re-serve its queues)
    attach(loop)              extra host fds (a TAP, host sockets) into the event loop
    cmdline_words(config)     what it adds to the kernel command line before its MMIO slot
    update(update)            a PATCH after boot (DeviceUpdateError names what failed)
    metrics_group, metrics()  its Firecracker metrics group and counters
    state_types()             its saved records' classes: (device record, transport record)
    state(), restore(...)     its saved records, and taking them back after attach()
    restored_device(record)   the device rebuilt from its record around this one's backend

The transport is touched by vCPU threads (MMIO) and by the event loop's thread (queue
kicks, timers, host fds), so every access goes through `lock`, as Firecracker holds a mutex
per device. Threads themselves live in pyrite.vmm.
"""
from __future__ import annotations

import os
import threading

LOG_LIMIT = 20                   # messages per device before the rest are counted, not printed


class DeviceError(Exception):
    """A configured device that cannot be made (its backing file, TAP or socket); names it."""


class DeviceUpdateError(Exception):
    """A runtime update (PATCH) that could not be applied; nothing changed."""


class OnceLog:
    """A device's messages to stderr: each text once, at most LOG_LIMIT, so that a guest that
    keeps kicking a broken device cannot flood the VMM's log."""

    def __init__(self, name: str):
        self.name = name
        self.seen: set[str] = set()
        self.suppressed = 0

    def __call__(self, message: str) -> None:
        if message in self.seen:
            return
        if len(self.seen) >= LOG_LIMIT:
            self.suppressed += 1
            if self.suppressed == 1:
                os.write(2, f"pyrite: {self.name}: further messages suppressed\n".encode())
            return
        self.seen.add(message)
        os.write(2, f"pyrite: {self.name}: {message}\n".encode())


class VirtioHandler:
    kind = "virtio"
    kind_name = "virtio"
    noun = "device"
    polled_queues: tuple[int, ...] = ()

    def __init__(self, config, device):
        self.config = config          # its pyrite.config model
        self.device = device
        self.log = OnceLog(self.name)
        self.lock = threading.Lock()
        self.transport = None         # set by the device manager before attach()
        self.loop = None
        self.notify_fds: list[int] = []
        self.addr = self.irq = 0      # its MMIO window and GSI, set by the device manager
        self._timer_armed = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id!r})"

    # -- what each kind says
    @staticmethod
    def configs(resources) -> list:
        raise NotImplementedError

    @classmethod
    def create(cls, config) -> VirtioHandler:
        raise NotImplementedError

    @property
    def id(self) -> str:
        return self.kind

    @property
    def name(self) -> str:
        return f"{self.kind_name} {self.id}" if self.id != self.kind else self.kind_name

    @property
    def metrics_group(self) -> str:
        return f"{self.kind}_{self.id}" if self.id != self.kind else self.kind

    def limiters(self) -> tuple:
        limiter = getattr(self.device, "rate_limiter", None)
        return (limiter,) if limiter is not None else ()

    def attach(self, loop) -> None:
        self.loop = loop

    @staticmethod
    def cmdline_words(config) -> list[str]:
        return []

    def update(self, update) -> None:
        raise DeviceUpdateError(f"{self.name}: cannot be updated after boot")

    def metrics(self) -> dict[str, int]:
        with self.lock:
            return self.device.metrics()

    @staticmethod
    def state_types() -> tuple[type, type]:
        raise NotImplementedError

    def state(self) -> tuple:
        """(device record, transport record); the caller holds `lock`, with the vCPUs paused."""
        return self.device.state(), self.transport.state()

    def restore(self, device_state, transport_state, memory) -> None:
        """After attach(): the device and its transport rebuilt from saved records, keeping this
        handler's backend, limiters and interrupt line (VirtioStateError names what does not fit)."""
        from .mmio import MmioTransport
        with self.lock:
            device = self.restored_device(device_state)
            self.transport = MmioTransport.from_state(transport_state, device, memory,
                                                      self.transport.interrupt, log=self.log)
            self.device = device
        for fd in self.notify_fds:        # what the driver queued before the snapshot is served:
            os.eventfd_write(fd, 1)       # every queue is kicked once, as Firecracker does

    def restored_device(self, state):
        raise NotImplementedError

    def close(self) -> None:
        backend = getattr(self.device, "backend", None)
        if backend is not None and hasattr(backend, "close"):
            backend.close()

    # -- MMIO bus callbacks (vCPU threads)
    def mmio_read(self, offset: int, length: int) -> bytes:
        with self.lock:
            return self.transport.read(offset, length)

    def mmio_write(self, offset: int, data: bytes) -> None:
        with self.lock:
            self.transport.write(offset, data)
            self._arm_limiter_timer()     # a QueueNotify no ioeventfd matched lands here

    # -- event loop callbacks
    def on_queue_event(self, index: int, fd: int) -> None:
        try:
            os.eventfd_read(fd)           # drain: one pass serves every kick so far
        except BlockingIOError:
            return
        with self.lock:
            self.transport.notify_queue(index)
            self._arm_limiter_timer()
        if index in self.polled_queues:
            self.loop.start_polling(self)

    # -- polling (event loop thread; see EventLoop.start_polling)
    def _throttled(self) -> bool:
        return any(limiter.blocked for limiter in self.polling_limiters())

    def polling_limiters(self) -> tuple:
        """The limiters that gate the polled queues."""
        return self.limiters()

    def begin_polling(self) -> None:
        with self.lock:
            for index in self.polled_queues:
                self.transport.suppress_notifications(index)

    def poll(self) -> bool:
        with self.lock:
            if self._throttled():
                return False          # the limiter's timer serves the queue
            worked = False
            for index in self.polled_queues:
                if self.transport.poll_queue(index):
                    worked = True
            if worked:
                self._arm_limiter_timer()
            return worked

    def end_polling(self) -> bool:
        with self.lock:
            waiting = False
            for index in self.polled_queues:
                if self.transport.enable_notifications(index):
                    waiting = True
            if waiting and not self._throttled():
                for index in self.polled_queues:     # keep polling: the driver did not kick
                    self.transport.suppress_notifications(index)
                return True
            if waiting:
                self._arm_limiter_timer()
            return False

    # -- rate limiter timers
    def _arm_limiter_timer(self) -> None:
        if self._timer_armed:
            return
        blocked = [limiter for limiter in self.limiters() if limiter.blocked]
        if blocked:
            self._timer_armed = True
            delay_ms = min(limiter.timer_delay_ms for limiter in blocked)
            self.loop.call_later(delay_ms / 1000, self._on_limiter_timer)

    def _on_limiter_timer(self) -> None:
        with self.lock:
            self._timer_armed = False
            for limiter in self.limiters():
                if limiter.blocked:
                    limiter.timer_expired()
            if self.device.activated:
                for index, queue in enumerate(self.transport.queues):
                    if queue.ready:
                        self.transport.notify_queue(index)
            self._arm_limiter_timer()


def update_rate_limiter(limiter, update, what: str):
    """PATCH of a rate limiter (Firecracker's BucketUpdate): a bucket given replaces the old
    one, one of size 0 or refill_time 0 removes it, an absent one stays. `update` is a
    pyrite.config RateLimiter model; returns the limiter to keep (a new one if there was none)."""
    from .ratelimiter import RateLimiter, bucket_from_config
    buckets = {}
    for kind in ("bandwidth", "ops"):
        config = getattr(update, kind)
        if config is not None:
            try:
                buckets[kind] = bucket_from_config(config)
            except ValueError as e:
                raise DeviceUpdateError(f"{what}: invalid {kind} bucket: {e}") from None
    if limiter is None:
        return RateLimiter(buckets.get("bandwidth"), buckets.get("ops")) if any(buckets.values()) else None
    limiter.update_buckets(buckets.get("bandwidth", False), buckets.get("ops", False))
    return limiter


def rate_limiter(config, what: str):
    """A RateLimiter from a pyrite.config RateLimiter model, or None when it limits nothing."""
    if config is None:
        return None
    from .ratelimiter import RateLimiter
    try:
        limiter = RateLimiter.from_config(config)
    except ValueError as e:
        raise DeviceError(f"{what}: invalid rate limiter: {e}") from None
    return limiter if limiter.bandwidth is not None or limiter.ops is not None else None

