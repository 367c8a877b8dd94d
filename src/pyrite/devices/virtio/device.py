"""What every virtio device has (virtio 1.2 sections 2 and 6), independent of the transport.

A device offers feature bits, has a fixed number of virtqueues with a maximum size each,
a device-specific configuration space, and processes its queues once the driver has set
DRIVER_OK (`activate`). It never touches an fd or a thread: the transport hands it guest
memory, the queues and an `interrupt` object with three methods:

- ``signal_used_queue(index)``: the device put buffers in the used ring of queue `index`
  and the driver asked to be told (the device checked `Queue.needs_notification`);
- ``signal_config_change()``: the configuration space changed;
- ``device_needs_reset(reason)``: the device hit a guest error it cannot recover from
  (spec 2.1.2: DEVICE_NEEDS_RESET plus a configuration change notification);
- ``guest_error(message)``: a guest error the device answered (an error status, a buffer
  returned empty) and that the VMM should log.

Guest errors found while processing a queue are raised as `VirtioError`; the transport's
`notify_queue` turns them into DEVICE_NEEDS_RESET, so a guest never takes the VMM down.

Devices serve a queue with `serve(index, handle_chain)`: the one loop that pops chains,
hands each to the device, returns it to the driver and signals the driver once at the end.
"""
from __future__ import annotations

from .queue import InvalidChain, Queue

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from ...memory import GuestMemory
    from .persist import VirtioDeviceState
    from .queue import DescriptorChain

# Feature bits (6, "Reserved Feature Bits").
VIRTIO_RING_F_INDIRECT_DESC = 28
VIRTIO_RING_F_EVENT_IDX = 29
VIRTIO_F_VERSION_1 = 32

# Device status bits (2.1).
ACKNOWLEDGE = 0x01
DRIVER = 0x02
DRIVER_OK = 0x04
FEATURES_OK = 0x08
DEVICE_NEEDS_RESET = 0x40
FAILED = 0x80

# Device IDs (5).
TYPE_NET = 1
TYPE_BLOCK = 2
TYPE_CONSOLE = 3
TYPE_RNG = 4
TYPE_BALLOON = 5
TYPE_VSOCK = 19

# Every pyrite device offers these: virtio 1.x only, event-index suppression, indirect tables.
COMMON_FEATURES = (1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_RING_F_EVENT_IDX) | (1 << VIRTIO_RING_F_INDIRECT_DESC)


# What a `serve` callback returns instead of a byte count to stop serving the queue.
PUT_BACK = -1      # the chain goes back to the ring (Queue.undo_pop): served on a later call
KEEP = -2          # the device holds on to the chain and returns it to the driver itself later


class DeviceNotActivated(Exception):
    """The VMM asked an inactive device to process a queue."""


class VirtioDevice:
    """Base of the virtio device models; subclasses set `device_type`, `name` and override
    `config_space`, `process_queue` and, when they have state, `reset`."""

    device_type = 0
    name = "virtio"

    def __init__(self, queue_max_sizes: tuple[int, ...], avail_features: int = 0):
        self.queue_max_sizes = tuple(queue_max_sizes)
        self.avail_features = avail_features | COMMON_FEATURES
        self.acked_features = 0
        self.activated = False
        self.mem: GuestMemory | None = None
        self.queues: list[Queue] = []
        self.interrupt = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(activated={self.activated}, acked={self.acked_features:#x})"

    def has_feature(self, bit: int) -> bool:
        """Whether feature `bit` was negotiated (offered and accepted)."""
        return bool(self.acked_features >> bit & 1)

    def make_queues(self) -> list[Queue]:
        """Fresh queues at their reset values, named after the device for error messages."""
        return [Queue(size, f"{self.name} queue {i}") for i, size in enumerate(self.queue_max_sizes)]

    # -- configuration space --

    def config_space(self) -> bytes:
        """The device-specific configuration structure as the driver sees it (little-endian)."""
        return b""

    def read_config(self, offset: int, length: int) -> bytes:
        """Bytes past the end of the structure read as zero."""
        data = self.config_space()[offset:offset + length]
        return data + bytes(length - len(data))

    def write_config(self, offset: int, data: bytes) -> None:
        """Devices whose configuration is read-only ignore writes (the transport logs them)."""
        raise VirtioConfigReadOnly(f"{self.name}: configuration space is read-only "
                                   f"(write of {len(data)} bytes at {offset:#x})")

    # -- life cycle --

    def activate(self, mem: GuestMemory, queues: list[Queue], interrupt) -> None:
        """The driver set DRIVER_OK: start serving `queues` (already validated by the transport)."""
        event_idx = self.has_feature(VIRTIO_RING_F_EVENT_IDX)
        for q in queues:
            q.event_idx_enabled = event_idx
        self.mem = mem
        self.queues = queues
        self.interrupt = interrupt
        self.activated = True

    def reset(self) -> None:
        """The driver wrote 0 to the status register: forget negotiation and queues."""
        self.activated = False
        self.acked_features = 0
        self.mem = None
        self.queues = []

    def queue_notify(self, index: int) -> None:
        """The driver kicked queue `index` (or its ioeventfd fired): process it.

        Raises `VirtioError` on a guest error; the transport catches it.
        """
        if not self.activated or self.mem is None:
            raise DeviceNotActivated(f"{self.name}: queue {index} notified before DRIVER_OK")
        if not 0 <= index < len(self.queues) or not self.queues[index].ready:
            return   # spec leaves a kick on a missing or disabled queue meaningless: ignore it
        self.process_queue(index)

    def process_queue(self, index: int) -> None:
        raise NotImplementedError

    def serve(self, index: int, handle_chain: Callable[[DescriptorChain], int],
              more: Callable[[], bool] | None = None, returned: int = 0) -> None:
        """Pop the chains of queue `index` and return each to the driver; signal the driver once.

        `handle_chain(chain)` serves one chain and returns how many bytes it wrote into it, or
        PUT_BACK / KEEP to stop. An `InvalidChain` it raises returns the chain with 0 bytes,
        then goes to `on_invalid_chain`. `more()`, when given, is asked before each pop;
        `returned` counts chains the caller already put in the used ring, signalled with these.
        """
        queue, mem = self.queues[index], self.mem
        try:
            while more is None or more():
                chain = queue.pop_or_enable_notification(mem)
                if chain is None:
                    break
                try:
                    written = handle_chain(chain)
                except InvalidChain as e:
                    queue.add_used(mem, chain.head, 0)
                    returned += 1
                    self.on_invalid_chain(index, e)
                    continue
                if written < 0:
                    if written == PUT_BACK:
                        queue.undo_pop()
                    break
                queue.add_used(mem, chain.head, written)
                returned += 1
        finally:
            if returned:
                self.signal_used(index)

    def on_invalid_chain(self, index: int, error: InvalidChain) -> None:
        """A chain of queue `index` broke the spec and went back empty: log it and go on.

        A device that cannot answer such a chain re-raises `error`, so the transport sets
        DEVICE_NEEDS_RESET.
        """
        self.guest_error(str(error))

    def signal_used(self, index: int) -> None:
        """Notify the driver about queue `index` if it asked to be notified now."""
        if self.queues[index].needs_notification(self.mem):
            self.interrupt.signal_used_queue(index)

    def guest_error(self, message: str) -> None:
        if self.interrupt is not None:
            self.interrupt.guest_error(message)

    # -- snapshots --

    def virtio_state(self) -> VirtioDeviceState:
        from .persist import VirtioDeviceState
        return VirtioDeviceState(device_type=self.device_type, avail_features=self.avail_features,
                                 acked_features=self.acked_features, activated=self.activated)

    def load_virtio_state(self, state: VirtioDeviceState) -> None:
        """Check a saved record against this device; activation is redone by the transport."""
        if state.device_type != self.device_type:
            raise VirtioStateError(f"{self.name}: saved device type {state.device_type}, "
                                   f"this device is type {self.device_type}")
        if state.acked_features & ~self.avail_features:
            raise VirtioStateError(f"{self.name}: saved features {state.acked_features:#x} are not "
                                   f"all offered by this device ({self.avail_features:#x})")
        self.acked_features = state.acked_features


class VirtioConfigReadOnly(Exception):
    pass


class VirtioStateError(Exception):
    """A saved device record that does not fit the device it is restored into."""
