"""virtio-mmio devices in a running microVM: what to attach (DriveSpec, EntropySpec), where
(Firecracker's slots, IRQs and kernel command line), and the wiring of each device to its
MMIO window, irqfd, queue ioeventfds and the device event loop.

Slots: device i sits at layout.VIRTIO_MMIO_START + i * VIRTIO_MMIO_SIZE with GSI 5 + i (edge,
through an irqfd), drives first in configuration order with the root device moved to the
front (Firecracker's BlockBuilder), then network interfaces (NetSpec), the vsock device (VsockSpec), then the entropy device. GSIs stop at 23, the last IOAPIC
pin, so there are at most 19 devices. For each device the kernel command line gets
Firecracker's ``virtio_mmio.device=4K@0x<addr>:<irq>``, preceded for the root drive by
``root=/dev/vda`` (or ``root=PARTUUID=<partuuid>``) and ``ro``/``rw`` (builder.rs,
attach_block_devices).

Threads: a device's transport is touched by vCPU threads (register reads and writes over the
MMIO bus) and by the event-loop thread (queue kicks from ioeventfds, rate limiter timers), so
every access goes through the slot's lock, as Firecracker holds a mutex per device.
"""
from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable

from pyrite.arch.x86_64 import layout

IRQ_BASE = 5                     # Firecracker's first GSI for MMIO devices (x86_64)
IRQ_MAX = 23                     # the IOAPIC's last pin
MAX_VIRTIO_DEVICES = IRQ_MAX - IRQ_BASE + 1
QUEUE_NOTIFY = 0x50              # virtio-mmio QueueNotify register offset
LOG_LIMIT = 20                   # messages per device before the rest are counted, not printed


class DeviceConfigError(ValueError):
    """A drive or entropy device that cannot be attached; the message names it."""


class DeviceUpdateError(Exception):
    """A runtime device update (PATCH /drives) that could not be applied; nothing changed."""


# ----------------------------------------------------------------------------- what to attach
class DriveSpec:
    """A virtio-blk drive over a raw image file (Firecracker's BlockDeviceConfig, virtio only).

    `rate_limiter` is Firecracker's RateLimiterConfig as a dict: {"bandwidth": {"size",
    "one_time_burst", "refill_time"}, "ops": {...}}. `flush` offers VIRTIO_BLK_F_FLUSH
    (Firecracker offers it for cache_type "Writeback" only)."""
    __slots__ = ("drive_id", "path", "read_only", "is_root_device", "partuuid", "rate_limiter", "flush")

    def __init__(self, drive_id: str, path: str | os.PathLike, read_only: bool = False,
                 is_root_device: bool = False, partuuid: str | None = None,
                 rate_limiter: dict | None = None, flush: bool = True):
        self.drive_id = drive_id
        self.path = os.fspath(path)
        self.read_only = read_only
        self.is_root_device = is_root_device
        self.partuuid = partuuid
        self.rate_limiter = rate_limiter
        self.flush = flush

    def __repr__(self) -> str:
        return (f"DriveSpec({self.drive_id!r}, {self.path!r}, read_only={self.read_only}, "
                f"is_root_device={self.is_root_device})")

    @classmethod
    def coerce(cls, value, index: int = 0) -> DriveSpec:
        """A DriveSpec from itself, a path (drive id "drive<index>") or a dict with either
        pyrite's field names or Firecracker's (path_on_host, is_read_only)."""
        if isinstance(value, DriveSpec):
            return value
        if isinstance(value, (str, os.PathLike)):
            return cls(f"drive{index}", value)
        if isinstance(value, dict):
            d = dict(value)
            path = d.pop("path", None) or d.pop("path_on_host", None)
            if path is None:
                raise DeviceConfigError(f"drive {d.get('drive_id', index)!r}: no path (or path_on_host)")
            read_only = d.pop("read_only", d.pop("is_read_only", False))
            drive_id = d.pop("drive_id", f"drive{index}")
            try:
                return cls(drive_id, path, read_only=bool(read_only), **d)
            except TypeError as e:
                raise DeviceConfigError(f"drive {drive_id!r}: {e}") from None
        raise DeviceConfigError(f"drive {index}: {value!r} is not a DriveSpec, a path or a dict")


class EntropySpec:
    """A virtio-rng device fed from the host's getrandom, optionally rate limited."""
    __slots__ = ("rate_limiter",)

    def __init__(self, rate_limiter: dict | None = None):
        self.rate_limiter = rate_limiter

    def __repr__(self) -> str:
        return f"EntropySpec(rate_limiter={self.rate_limiter!r})"

    @classmethod
    def coerce(cls, value) -> EntropySpec | None:
        """None/False: no device; True: one; a dict: {"rate_limiter": ...}; or an EntropySpec."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, EntropySpec):
            return value
        if isinstance(value, dict):
            unknown = set(value) - {"rate_limiter"}
            if unknown:
                raise DeviceConfigError(f"entropy device: unknown field {sorted(unknown)[0]!r}")
            return cls(value.get("rate_limiter"))
        raise DeviceConfigError(f"entropy device: {value!r} is not True, a dict or an EntropySpec")


class NetSpec:
    """A virtio-net interface over an existing TAP device (Firecracker's NetworkInterfaceConfig):
    `guest_mac` "06:00:AC:10:00:02" or None (then VIRTIO_NET_F_MAC is not offered), rate
    limiters as RateLimiterConfig dicts, `mtu` offered as VIRTIO_NET_F_MTU when given."""
    __slots__ = ("iface_id", "host_dev_name", "guest_mac", "rx_rate_limiter", "tx_rate_limiter", "mtu")

    def __init__(self, iface_id: str, host_dev_name: str, guest_mac: str | None = None,
                 rx_rate_limiter: dict | None = None, tx_rate_limiter: dict | None = None,
                 mtu: int | None = None):
        self.iface_id = iface_id
        self.host_dev_name = host_dev_name
        self.guest_mac = guest_mac
        self.rx_rate_limiter = rx_rate_limiter
        self.tx_rate_limiter = tx_rate_limiter
        self.mtu = mtu

    def __repr__(self) -> str:
        return f"NetSpec({self.iface_id!r}, {self.host_dev_name!r}, guest_mac={self.guest_mac!r})"

    @classmethod
    def coerce(cls, value, index: int = 0) -> NetSpec:
        """A NetSpec from itself, a TAP name (iface id "eth<index>") or a dict of its fields."""
        if isinstance(value, NetSpec):
            return value
        if isinstance(value, str):
            return cls(f"eth{index}", value)
        if isinstance(value, dict):
            d = dict(value)
            iface_id = d.pop("iface_id", f"eth{index}")
            if "host_dev_name" not in d:
                raise DeviceConfigError(f"network interface {iface_id!r}: no host_dev_name")
            try:
                return cls(iface_id, **d)
            except TypeError as e:
                raise DeviceConfigError(f"network interface {iface_id!r}: {e}") from None
        raise DeviceConfigError(f"network interface {index}: {value!r} is not a NetSpec, a TAP name or a dict")


def validate_nets(nets) -> None:
    if not nets:
        return                    # no import of the net device for a VM without one
    from pyrite.devices.virtio.net.device import MAX_MTU, MIN_MTU, parse_mac
    ids: set[str] = set()
    macs: set[bytes] = set()
    taps: set[str] = set()
    for n in nets:
        if not isinstance(n, NetSpec):
            raise DeviceConfigError(f"network interface {n!r}: not a NetSpec")
        if not isinstance(n.iface_id, str) or not n.iface_id:
            raise DeviceConfigError(f"network interface {n.iface_id!r}: the iface id must be a non-empty string")
        if n.iface_id in ids:
            raise DeviceConfigError(f"network interface {n.iface_id}: configured twice")
        ids.add(n.iface_id)
        if n.host_dev_name in taps:
            raise DeviceConfigError(f"network interface {n.iface_id}: TAP {n.host_dev_name} is already in use")
        taps.add(n.host_dev_name)
        if n.guest_mac is not None:
            try:
                mac = parse_mac(n.guest_mac)
            except (ValueError, AttributeError) as e:
                raise DeviceConfigError(f"network interface {n.iface_id}: {e}") from None
            if mac in macs:
                raise DeviceConfigError(f"network interface {n.iface_id}: guest MAC {n.guest_mac} is already in use")
            macs.add(mac)
        if n.mtu is not None and (not isinstance(n.mtu, int) or not MIN_MTU <= n.mtu <= MAX_MTU):
            raise DeviceConfigError(f"network interface {n.iface_id}: MTU {n.mtu!r} is not between "
                                    f"{MIN_MTU} and {MAX_MTU}")


def make_rate_limiter(config: dict | None, what: str):
    """A RateLimiter from Firecracker's RateLimiterConfig dict, or None when it limits nothing."""
    if not config:
        return None
    from pyrite.devices.virtio.ratelimiter import RateLimiter
    unknown = set(config) - {"bandwidth", "ops"}
    if unknown:
        raise DeviceConfigError(f"{what}: rate limiter has an unknown field {sorted(unknown)[0]!r}")
    try:
        limiter = RateLimiter.from_config(config.get("bandwidth"), config.get("ops"))
    except (ValueError, TypeError, AttributeError) as e:
        raise DeviceConfigError(f"{what}: invalid rate limiter {config!r}: {e}") from None
    return limiter if limiter.bandwidth is not None or limiter.ops is not None else None


# ----------------------------------------------------------------------------- where
class SlotPlan:
    """One device's place: MMIO window, GSI, and what it adds to the kernel command line."""
    __slots__ = ("kind", "spec", "addr", "irq")

    def __init__(self, kind: str, spec, addr: int, irq: int):
        self.kind = kind          # "block", "net", "vsock" or "entropy"
        self.spec = spec
        self.addr = addr
        self.irq = irq

    def __repr__(self) -> str:
        return f"SlotPlan({self.kind}, {self.addr:#x}, irq {self.irq})"

    @property
    def name(self) -> str:
        if self.kind == "net":
            return f"virtio-net {self.spec.iface_id}"
        if self.kind == "vsock":
            return "virtio-vsock"
        return f"virtio-blk {self.spec.drive_id}" if self.kind == "block" else "virtio-rng"


def validate_drives(drives) -> None:
    seen: set[str] = set()
    root = None
    for d in drives:
        if not isinstance(d, DriveSpec):
            raise DeviceConfigError(f"drive {d!r}: not a DriveSpec")
        if not isinstance(d.drive_id, str) or not d.drive_id:
            raise DeviceConfigError(f"drive {d.drive_id!r}: the drive id must be a non-empty string")
        if d.drive_id in seen:
            raise DeviceConfigError(f"drive {d.drive_id}: configured twice")
        seen.add(d.drive_id)
        if d.is_root_device:
            if root is not None:
                raise DeviceConfigError(f"drive {d.drive_id}: a root drive already exists ({root})")
            root = d.drive_id
        if d.partuuid is not None and (not d.partuuid or any(c.isspace() or c == "\0" for c in d.partuuid)):
            raise DeviceConfigError(f"drive {d.drive_id}: partuuid {d.partuuid!r} is not a single word")


def plan_slots(drives, entropy: EntropySpec | None, net=(), vsock: VsockSpec | None = None) -> list[SlotPlan]:
    """Firecracker's order (builder.rs): the root drive first, other drives as configured,
    network interfaces, then entropy."""
    validate_drives(drives)
    validate_nets(net)
    ordered = [d for d in drives if d.is_root_device] + [d for d in drives if not d.is_root_device]
    devices = [("block", d) for d in ordered] + [("net", n) for n in net]
    devices += [("vsock", vsock)] if vsock is not None else []
    devices += [("entropy", entropy)] if entropy is not None else []
    if len(devices) > MAX_VIRTIO_DEVICES:
        raise DeviceConfigError(f"{len(devices)} virtio devices configured; at most {MAX_VIRTIO_DEVICES} fit "
                                f"in the IRQs {IRQ_BASE}-{IRQ_MAX}")
    return [SlotPlan(kind, spec, layout.VIRTIO_MMIO_START + i * layout.VIRTIO_MMIO_SIZE, IRQ_BASE + i)
            for i, (kind, spec) in enumerate(devices)]


def kernel_cmdline(base: str, slots: list[SlotPlan]) -> str:
    """`base` plus each device's parameters, space-separated as linux-loader's Cmdline inserts."""
    from pyrite.devices.virtio.mmio import cmdline_fragment
    words = [base] if base else []
    for slot in slots:
        if slot.kind == "block" and slot.spec.is_root_device:
            spec = slot.spec
            words.append(f"root=PARTUUID={spec.partuuid}" if spec.partuuid else "root=/dev/vda")
            words.append("ro" if spec.read_only else "rw")
        words.append(cmdline_fragment(slot.addr, slot.irq, layout.VIRTIO_MMIO_SIZE))
    return " ".join(words)


# ----------------------------------------------------------------------------- wiring
class _OnceLog:
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
                print(f"pyrite: {self.name}: further messages suppressed", file=sys.stderr)
            return
        self.seen.add(message)
        print(f"pyrite: {self.name}: {message}", file=sys.stderr)


class VirtioSlot:
    """One attached device: its model, transport, lock and place, for the VMM and metrics."""

    def __init__(self, plan: SlotPlan, device, transport, loop, log: _OnceLog):
        self.plan = plan
        self.kind = plan.kind
        self.id = {"block": getattr(plan.spec, "drive_id", None),
                   "net": getattr(plan.spec, "iface_id", None), "vsock": "vsock"}.get(plan.kind, "rng")
        self.addr, self.irq = plan.addr, plan.irq
        self.device = device
        self.transport = transport
        self.lock = threading.Lock()
        self.loop = loop
        self.log = log
        self.notify_fds: list[int] = []
        self._timer_armed = False
        # Queues the event loop polls after a kick (EventLoop.start_polling): the request
        # queues, where a driver waits for each answer. Not vsock (its own handler serves it).
        self.polled_queues: tuple[int, ...] = {"block": (0,), "entropy": (0,), "net": (1,)}.get(plan.kind, ())

    def __repr__(self) -> str:
        return f"VirtioSlot({self.kind} {self.id!r} at {self.addr:#x}, irq {self.irq})"

    # MMIO bus callbacks (vCPU threads)
    def mmio_read(self, offset: int, length: int) -> bytes:
        with self.lock:
            return self.transport.read(offset, length)

    def mmio_write(self, offset: int, data: bytes) -> None:
        with self.lock:
            self.transport.write(offset, data)
            self._arm_limiter_timer()     # a QueueNotify no ioeventfd matched lands here

    # event loop callbacks
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

    # polling (event loop thread; see EventLoop.start_polling)
    def _throttled(self) -> bool:
        return any(limiter.blocked for limiter in self._limiters())

    def _limiters(self) -> tuple:
        limiter = getattr(self.device, "rate_limiter", None)
        return (limiter,) if limiter is not None else ()

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

    def _arm_limiter_timer(self) -> None:
        limiter = getattr(self.device, "rate_limiter", None)
        if limiter is not None and limiter.blocked and not self._timer_armed:
            self._timer_armed = True
            self.loop.call_later(limiter.timer_delay_ms / 1000, self._on_limiter_timer)

    def _on_limiter_timer(self) -> None:
        with self.lock:
            self._timer_armed = False
            limiter = self.device.rate_limiter
            if limiter is None:
                return
            limiter.timer_expired()
            if self.device.activated:
                for index, queue in enumerate(self.transport.queues):
                    if queue.ready:
                        self.transport.notify_queue(index)
            self._arm_limiter_timer()

    # runtime updates (API thread)
    def update_backend(self, path: str) -> None:
        """PATCH /drives path_on_host: reopen with the drive's mode, swap, tell the driver."""
        from pyrite.devices.virtio.block.backend import BlockBackendError, FileBackend
        spec = self.plan.spec
        try:
            backend = FileBackend(path, read_only=spec.read_only)
        except BlockBackendError as e:
            raise DeviceUpdateError(f"drive {self.id}: {e}") from None
        with self.lock:
            old = self.device.backend
            self.device.update_backend(backend)   # new capacity + configuration change interrupt
        spec.path = backend.path
        old.close()

    def update_rate_limiter(self, config: dict | None) -> None:
        """PATCH rate_limiter: a bucket given replaces the old one, a bucket of size 0 or
        refill_time 0 removes it, an absent bucket stays (Firecracker's BucketUpdate)."""
        import time
        from pyrite.devices.virtio.ratelimiter import RateLimiter, _bucket
        config = config or {}
        updates = {}
        for kind in ("bandwidth", "ops"):
            if config.get(kind) is not None:
                try:
                    updates[kind] = _bucket(config[kind], time.monotonic_ns)
                except (ValueError, TypeError, AttributeError) as e:
                    raise DeviceUpdateError(f"{self.id}: invalid {kind} bucket {config[kind]!r}: {e}") from None
        with self.lock:
            limiter = self.device.rate_limiter
            if limiter is None:
                if not any(updates.values()):
                    return
                self.device.rate_limiter = RateLimiter(updates.get("bandwidth"), updates.get("ops"))
            else:
                limiter.update_buckets(updates.get("bandwidth", False), updates.get("ops", False))

    def metrics(self) -> dict[str, int]:
        with self.lock:
            return self.device.metrics()

    def close(self) -> None:
        backend = getattr(self.device, "backend", None)
        if backend is not None and hasattr(backend, "close"):
            backend.close()


class NetSlot(VirtioSlot):
    """A virtio-net slot: two rate limiters (rx, tx) and the TAP fd in the event loop. The
    TAP is watched edge-triggered: a frame that finds no receive buffer waits in the TAP
    until the driver adds buffers and kicks the receive queue (which reads it then)."""

    def _limiters(self) -> tuple:
        limiter = self.device.tx_rate_limiter         # the polled queue is the transmit queue
        return (limiter,) if limiter is not None else ()

    def on_tap_readable(self, events: int) -> None:
        from pyrite.devices.virtio.net.device import RX_QUEUE
        with self.lock:
            if self.device.activated:     # before DRIVER_OK frames wait in the TAP
                self.transport.notify_queue(RX_QUEUE)   # guest errors end as DEVICE_NEEDS_RESET there
            self._arm_limiter_timer()

    def _arm_limiter_timer(self) -> None:
        blocked = [limiter for limiter in self.device.rate_limiters if limiter.blocked]
        if blocked and not self._timer_armed:
            self._timer_armed = True
            delay = min(limiter.timer_delay_ms for limiter in blocked)
            self.loop.call_later(delay / 1000, self._on_limiter_timer)

    def _on_limiter_timer(self) -> None:
        from pyrite.devices.virtio.net.device import RX_QUEUE, TX_QUEUE
        with self.lock:
            self._timer_armed = False
            for limiter in self.device.rate_limiters:
                if limiter.blocked:
                    limiter.timer_expired()
            if self.device.activated:
                for index in (TX_QUEUE, RX_QUEUE):
                    if self.transport.queues[index].ready:
                        self.transport.notify_queue(index)
            self._arm_limiter_timer()

    def update_rate_limiters(self, rx: dict | None, tx: dict | None) -> None:
        """PATCH /network-interfaces: each limiter as VirtioSlot.update_rate_limiter."""
        for attr, config in (("rx_rate_limiter", rx), ("tx_rate_limiter", tx)):
            if config is not None:
                self._update_limiter(attr, config)

    def _update_limiter(self, attr: str, config: dict) -> None:
        import time
        from pyrite.devices.virtio.ratelimiter import RateLimiter, _bucket
        updates = {}
        for kind in ("bandwidth", "ops"):
            if config.get(kind) is not None:
                try:
                    updates[kind] = _bucket(config[kind], time.monotonic_ns)
                except (ValueError, TypeError, AttributeError) as e:
                    raise DeviceUpdateError(f"{self.id}: invalid {kind} bucket {config[kind]!r}: {e}") from None
        with self.lock:
            limiter = getattr(self.device, attr)
            if limiter is None:
                if any(updates.values()):
                    setattr(self.device, attr, RateLimiter(updates.get("bandwidth"), updates.get("ops")))
            else:
                limiter.update_buckets(updates.get("bandwidth", False), updates.get("ops", False))

    def close(self) -> None:
        self.loop.remove(self.device.backend.fileno())
        super().close()


def _make_net_device(spec: NetSpec):
    from pyrite.devices.virtio.net.backend import NetBackendError, TapBackend
    from pyrite.devices.virtio.net.device import Net, parse_mac
    what = f"network interface {spec.iface_id}"
    rx = make_rate_limiter(spec.rx_rate_limiter, what + " rx")
    tx = make_rate_limiter(spec.tx_rate_limiter, what + " tx")
    try:
        backend = TapBackend(spec.host_dev_name)
    except NetBackendError as e:
        raise DeviceConfigError(f"{what}: {e}") from None
    mac = parse_mac(spec.guest_mac) if spec.guest_mac is not None else None
    return Net(backend, guest_mac=mac, mtu=spec.mtu, rx_rate_limiter=rx, tx_rate_limiter=tx)


def _make_device(plan: SlotPlan):
    if plan.kind == "vsock":
        return _make_vsock_device(plan.spec)
    if plan.kind == "net":
        return _make_net_device(plan.spec)
    if plan.kind == "block":
        from pyrite.devices.virtio.block.backend import BlockBackendError, FileBackend
        from pyrite.devices.virtio.block.device import Block
        spec = plan.spec
        limiter = make_rate_limiter(spec.rate_limiter, f"drive {spec.drive_id}")
        try:
            backend = FileBackend(spec.path, read_only=spec.read_only)
        except BlockBackendError as e:
            raise DeviceConfigError(f"drive {spec.drive_id}: {e}") from None
        if backend.size < 512:
            backend.close()
            raise DeviceConfigError(f"drive {spec.drive_id}: {spec.path} is {backend.size} bytes, "
                                    f"smaller than one 512-byte sector")
        return Block(backend, read_only=spec.read_only, flush=spec.flush, rate_limiter=limiter)
    from pyrite.devices.virtio.rng.device import Entropy
    return Entropy(rate_limiter=make_rate_limiter(plan.spec.rate_limiter, "entropy device"))


def attach_virtio_devices(vm, mmio_bus, memory, loop, plans: list[SlotPlan],
                          irq_line: Callable[[int], Callable[[], None]], closers: list) -> list[VirtioSlot]:
    """Create each planned device, put its transport on the MMIO bus behind its lock, raise its
    interrupt through an irqfd on its GSI, and route each queue's QueueNotify write (4 bytes,
    value = queue index) through an ioeventfd to the event loop."""
    from pyrite.devices.virtio.mmio import MmioTransport
    slots = []
    for plan in plans:
        device = _make_device(plan)
        log = _OnceLog(plan.name)
        transport = MmioTransport(device, memory, irq_line(plan.irq), log=log)
        slot = {"net": NetSlot, "vsock": VsockSlot}.get(plan.kind, VirtioSlot)(plan, device, transport, loop, log)
        closers.append(slot.close)
        if plan.kind == "vsock":
            slot.start()
        if plan.kind == "net":
            import select
            loop.add(device.backend.fileno(), slot.on_tap_readable, select.EPOLLIN | select.EPOLLET)
        mmio_bus.register(plan.addr, layout.VIRTIO_MMIO_SIZE, plan.name, slot.mmio_read, slot.mmio_write)
        for index in range(len(device.queue_max_sizes)):
            fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            closers.append(lambda fd=fd: os.close(fd))
            vm.register_ioeventfd(fd, plan.addr + QUEUE_NOTIFY, 4, datamatch=index)
            slot.notify_fds.append(fd)
            loop.add(fd, lambda events, slot=slot, index=index, fd=fd: slot.on_queue_event(index, fd))
        slots.append(slot)
    return slots


# ----------------------------------------------------------------------------- vsock
class VsockSpec:
    """A virtio-vsock device with Firecracker's Unix-socket backend: the guest's CID (3 or
    more) and `uds_path`, where host clients connect (``CONNECT <port>``); guest connections
    to host port P reach ``<uds_path>_P``. The socket file is created at build and removed
    when the VM ends; an existing file is refused, as Firecracker's bind refuses it."""
    __slots__ = ("guest_cid", "uds_path")

    def __init__(self, guest_cid: int, uds_path: str | os.PathLike):
        self.guest_cid = guest_cid
        self.uds_path = os.fspath(uds_path)

    def __repr__(self) -> str:
        return f"VsockSpec({self.guest_cid}, {self.uds_path!r})"

    @classmethod
    def coerce(cls, value) -> VsockSpec | None:
        """None: no device; a VsockSpec; a dict {"guest_cid", "uds_path"} (Firecracker's
        VsockDeviceConfig, vsock_id ignored); or a (guest_cid, uds_path) pair."""
        if value is None:
            return None
        if isinstance(value, VsockSpec):
            spec = value
        elif isinstance(value, dict):
            unknown = set(value) - {"guest_cid", "uds_path", "vsock_id"}
            if unknown or "guest_cid" not in value or "uds_path" not in value:
                raise DeviceConfigError(f"vsock device: {value!r} needs guest_cid and uds_path"
                                        + (f", not {sorted(unknown)[0]!r}" if unknown else ""))
            spec = cls(value["guest_cid"], value["uds_path"])
        elif isinstance(value, (tuple, list)) and len(value) == 2:
            spec = cls(*value)
        else:
            raise DeviceConfigError(f"vsock device: {value!r} is not a VsockSpec, a dict or (guest_cid, uds_path)")
        spec.validate()
        return spec

    def validate(self) -> None:
        if not isinstance(self.guest_cid, int) or isinstance(self.guest_cid, bool) or not 3 <= self.guest_cid < 1 << 32:
            raise DeviceConfigError(f"vsock device: guest CID {self.guest_cid!r} must be between 3 and 2^32 - 1")
        if not self.uds_path or "\0" in self.uds_path:
            raise DeviceConfigError(f"vsock device: uds_path {self.uds_path!r} is not a path")
        # sun_path holds 107 bytes and a NUL; "_<port>" is appended for guest connections.
        if len(os.fsencode(self.uds_path)) + len("_4294967295") > 107:
            raise DeviceConfigError(f"vsock device: uds_path {self.uds_path} is too long for a Unix socket "
                                    f"(with the _<port> suffix it must fit in 107 bytes)")


def _make_vsock_device(spec: VsockSpec):
    from pyrite.devices.virtio.vsock.backend import UnixBackend, VsockBackendError
    from pyrite.devices.virtio.vsock.device import Vsock
    try:
        backend = UnixBackend(spec.uds_path, spec.guest_cid)
    except VsockBackendError as e:
        raise DeviceConfigError(f"Cannot create backend for vsock device: {e.strerror} "
                                f"(uds_path {spec.uds_path})") from None
    return Vsock(spec.guest_cid, backend)


class VsockSlot(VirtioSlot):
    """The vsock slot: its backend's host sockets are watched by the event loop through a
    VsockHandler, which takes this slot's lock."""

    def start(self) -> None:
        from pyrite.devices.virtio.vsock.handler import VsockHandler
        self.device.backend.log = self.log
        self.handler = VsockHandler(self.device, self.device.backend, self.loop, self.lock)
        self.handler.start()
