"""The virtio-mmio transport, version 2 register layout (virtio 1.2 section 4.2).

Sans-I/O: `MmioTransport.read(offset, length)` and `write(offset, data)` are the guest's
accesses inside the device's 4 KiB window; `notify_queue(index)` is a queue kick (from the
QueueNotify register, or from the VMM when the queue's ioeventfd fires); `interrupt()` is
called to raise the device's interrupt line (the VMM wires it to an irqfd).

Spec rules enforced here:

- control registers take 32-bit aligned accesses only (4.2.2.2); others read 0 and are
  ignored; write-only registers read 0 and read-only ones ignore writes;
- Status (2.1): writing 0 resets the device; the driver may only add bits, in the order
  ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK (FAILED at any time); FEATURES_OK is only
  set if the driver's features are a subset of the device's and include VIRTIO_F_VERSION_1
  (a version 2 transport is virtio 1.x only, 6.1); DRIVER_OK activates the device after
  checking every ready queue against guest memory;
- driver features are written between DRIVER and FEATURES_OK, queues are configured
  between FEATURES_OK and DRIVER_OK (3.1.1), queue sizes are powers of two no larger than
  QueueNumMax and rings are aligned (2.7);
- on reset, InterruptStatus and every QueueReady read 0 (4.2.2.1);
- a guest error found by the device sets DEVICE_NEEDS_RESET and, once DRIVER_OK is set,
  raises a configuration change interrupt (2.1.2). Nothing a guest does raises into the VMM.

Not offered: VIRTIO_F_NOTIFICATION_DATA (QueueNotify carries the queue index), shared
memory regions (SHMSel reads as no region), VIRTIO_F_RING_RESET (QueueReset reads 0).
"""
from __future__ import annotations

import sys
from collections.abc import Callable

from .device import (ACKNOWLEDGE, DEVICE_NEEDS_RESET, DRIVER, DRIVER_OK, FAILED, FEATURES_OK,
                     VIRTIO_F_VERSION_1)
from .queue import VirtioError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ...memory import GuestMemory
    from .device import VirtioDevice
    from .persist import MmioTransportState
    from .queue import Queue

MAGIC = 0x74726976              # "virt"
VERSION = 2
VENDOR_ID = 0                   # as Firecracker
MMIO_DEVICE_SIZE = 0x1000       # one 4 KiB window per device

# Register offsets (4.2.2, table 4.1).
MAGIC_VALUE = 0x000
VERSION_REG = 0x004
DEVICE_ID = 0x008
VENDOR_ID_REG = 0x00C
DEVICE_FEATURES = 0x010
DEVICE_FEATURES_SEL = 0x014
DRIVER_FEATURES = 0x020
DRIVER_FEATURES_SEL = 0x024
QUEUE_SEL = 0x030
QUEUE_NUM_MAX = 0x034
QUEUE_NUM = 0x038
QUEUE_READY = 0x044
QUEUE_NOTIFY = 0x050
INTERRUPT_STATUS = 0x060
INTERRUPT_ACK = 0x064
STATUS = 0x070
QUEUE_DESC_LOW = 0x080
QUEUE_DESC_HIGH = 0x084
QUEUE_DRIVER_LOW = 0x090
QUEUE_DRIVER_HIGH = 0x094
QUEUE_DEVICE_LOW = 0x0A0
QUEUE_DEVICE_HIGH = 0x0A4
SHM_SEL = 0x0AC
SHM_LEN_LOW = 0x0B0
SHM_LEN_HIGH = 0x0B4
SHM_BASE_LOW = 0x0B8
SHM_BASE_HIGH = 0x0BC
QUEUE_RESET = 0x0C0
CONFIG_GENERATION = 0x0FC
CONFIG = 0x100

# Register map: offset -> (name, direction) as in table 4.1.
REGISTERS: dict[int, tuple[str, str]] = {
    MAGIC_VALUE: ("MagicValue", "R"),
    VERSION_REG: ("Version", "R"),
    DEVICE_ID: ("DeviceID", "R"),
    VENDOR_ID_REG: ("VendorID", "R"),
    DEVICE_FEATURES: ("DeviceFeatures", "R"),
    DEVICE_FEATURES_SEL: ("DeviceFeaturesSel", "W"),
    DRIVER_FEATURES: ("DriverFeatures", "W"),
    DRIVER_FEATURES_SEL: ("DriverFeaturesSel", "W"),
    QUEUE_SEL: ("QueueSel", "W"),
    QUEUE_NUM_MAX: ("QueueNumMax", "R"),
    QUEUE_NUM: ("QueueNum", "W"),
    QUEUE_READY: ("QueueReady", "RW"),
    QUEUE_NOTIFY: ("QueueNotify", "W"),
    INTERRUPT_STATUS: ("InterruptStatus", "R"),
    INTERRUPT_ACK: ("InterruptACK", "W"),
    STATUS: ("Status", "RW"),
    QUEUE_DESC_LOW: ("QueueDescLow", "W"),
    QUEUE_DESC_HIGH: ("QueueDescHigh", "W"),
    QUEUE_DRIVER_LOW: ("QueueDriverLow", "W"),
    QUEUE_DRIVER_HIGH: ("QueueDriverHigh", "W"),
    QUEUE_DEVICE_LOW: ("QueueDeviceLow", "W"),
    QUEUE_DEVICE_HIGH: ("QueueDeviceHigh", "W"),
    SHM_SEL: ("SHMSel", "W"),
    SHM_LEN_LOW: ("SHMLenLow", "R"),
    SHM_LEN_HIGH: ("SHMLenHigh", "R"),
    SHM_BASE_LOW: ("SHMBaseLow", "R"),
    SHM_BASE_HIGH: ("SHMBaseHigh", "R"),
    QUEUE_RESET: ("QueueReset", "RW"),
    CONFIG_GENERATION: ("ConfigGeneration", "R"),
}

# InterruptStatus bits (4.2.2).
INT_VRING = 0x1                 # used buffer notification
INT_CONFIG = 0x2                # configuration change notification

_QUEUE_ADDRESS_REGS = {
    QUEUE_DESC_LOW: ("desc_table", 0), QUEUE_DESC_HIGH: ("desc_table", 32),
    QUEUE_DRIVER_LOW: ("avail_ring", 0), QUEUE_DRIVER_HIGH: ("avail_ring", 32),
    QUEUE_DEVICE_LOW: ("used_ring", 0), QUEUE_DEVICE_HIGH: ("used_ring", 32),
}
_QUEUE_SETTERS = {"desc_table": "set_desc_table", "avail_ring": "set_avail_ring", "used_ring": "set_used_ring"}


def _log_to_stderr(message: str) -> None:
    print(f"pyrite: {message}", file=sys.stderr)


def _size_to_str(size: int) -> str:
    """Linux's memparse notation, as rust-vmm linux-loader writes it: 4096 -> "4K"."""
    for suffix, unit in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


def cmdline_fragment(addr: int, irq: int, size: int = MMIO_DEVICE_SIZE) -> str:
    """The kernel parameter that tells Linux's virtio_mmio driver where a device is.

    >>> cmdline_fragment(0xd0000000, 5)
    'virtio_mmio.device=4K@0xd0000000:5'
    """
    if size <= 0:
        raise ValueError(f"virtio-mmio device at {addr:#x}: size {size} must be positive")
    return f"virtio_mmio.device={_size_to_str(size)}@0x{addr:x}:{irq}"


def cmdline_fragments(devices: list[tuple[int, int]], size: int = MMIO_DEVICE_SIZE) -> str:
    """Fragments for several (addr, irq) slots, space-separated, in the given order."""
    return " ".join(cmdline_fragment(addr, irq, size) for addr, irq in devices)


class MmioTransport:
    """One virtio device behind a version 2 virtio-mmio register window.

    The transport is not thread-safe: the VMM serialises calls into it (the vCPU's MMIO exit
    and the event loop's `notify_queue`), as Firecracker does with a mutex per device.
    """

    def __init__(self, device: VirtioDevice, mem: GuestMemory, interrupt: Callable[[], None],
                 log: Callable[[str], None] = _log_to_stderr):
        self.device = device
        self.mem = mem
        self.interrupt = interrupt
        self.log = log
        self.config_generation = 0
        self._reset_registers()

    def _reset_registers(self) -> None:
        self.status = 0
        self.device_features_sel = 0
        self.driver_features_sel = 0
        self.driver_features = 0
        self.queue_sel = 0
        self.interrupt_status = 0
        self.queues: list[Queue] = self.device.make_queues()

    def reset(self) -> None:
        """Device reset (status written 0): registers to their reset values, device stopped.

        ConfigGeneration keeps counting, so a driver never sees an old value come back.
        """
        self.device.reset()
        self._reset_registers()

    def _warn(self, message: str) -> None:
        self.log(f"virtio-mmio {self.device.name}: {message}")

    # -- register access --

    def read(self, offset: int, length: int) -> bytes:
        if offset >= CONFIG:
            return self.device.read_config(offset - CONFIG, length)
        if length != 4 or offset % 4:
            self._warn(f"{length}-byte read at {offset:#x}: control registers take aligned 32-bit reads")
            return bytes(length)
        return self._read_register(offset).to_bytes(4, "little")

    def _selected_queue(self) -> Queue | None:
        return self.queues[self.queue_sel] if self.queue_sel < len(self.queues) else None

    def _read_register(self, offset: int) -> int:
        if offset == MAGIC_VALUE:
            return MAGIC
        if offset == VERSION_REG:
            return VERSION
        if offset == DEVICE_ID:
            return self.device.device_type
        if offset == VENDOR_ID_REG:
            return VENDOR_ID
        if offset == DEVICE_FEATURES:
            return (self.device.avail_features >> (32 * self.device_features_sel)) & 0xFFFFFFFF
        if offset == QUEUE_NUM_MAX:
            q = self._selected_queue()
            return q.max_size if q else 0
        if offset == QUEUE_READY:
            q = self._selected_queue()
            return int(q.ready) if q else 0
        if offset == INTERRUPT_STATUS:
            return self.interrupt_status
        if offset == STATUS:
            return self.status
        if offset in (SHM_LEN_LOW, SHM_LEN_HIGH):
            return 0xFFFFFFFF       # 4.2.2: a length of -1 means "no such shared memory region"
        if offset == CONFIG_GENERATION:
            return self.config_generation
        name, direction = REGISTERS.get(offset, (None, ""))
        if "R" not in direction:
            self._warn(f"read of {name or 'unknown register'} at {offset:#x}")
        return 0

    def write(self, offset: int, data: bytes) -> None:
        if offset >= CONFIG:
            if self.status & DRIVER and not self.status & (FAILED | DEVICE_NEEDS_RESET):
                try:
                    self.device.write_config(offset - CONFIG, bytes(data))
                except Exception as e:        # a guest's write must not reach the VMM
                    self._warn(f"config write at {offset - CONFIG:#x} ignored: {e}")
            else:
                self._warn(f"config write at {offset - CONFIG:#x} in status {self.status:#x} ignored")
            return
        if len(data) != 4 or offset % 4:
            self._warn(f"{len(data)}-byte write at {offset:#x}: control registers take aligned 32-bit writes")
            return
        self._write_register(offset, int.from_bytes(data, "little"))

    def _write_register(self, offset: int, value: int) -> None:
        if offset == STATUS:
            self._write_status(value)
        elif offset == QUEUE_NOTIFY:
            self.notify_queue(value)
        elif offset == INTERRUPT_ACK:
            self.interrupt_status &= ~value
        elif offset == DEVICE_FEATURES_SEL:
            self.device_features_sel = value
        elif offset == DRIVER_FEATURES_SEL:
            self.driver_features_sel = value
        elif offset == DRIVER_FEATURES:
            if self.status & DRIVER and not self.status & (FEATURES_OK | FAILED | DEVICE_NEEDS_RESET):
                shift = 32 * self.driver_features_sel
                self.driver_features = (self.driver_features & ~(0xFFFFFFFF << shift)) | (value << shift)
            else:
                self._warn(f"DriverFeatures written in status {self.status:#x}, ignored")
        elif offset == QUEUE_SEL:
            self.queue_sel = value
        elif offset in (QUEUE_NUM, QUEUE_READY) or offset in _QUEUE_ADDRESS_REGS:
            self._write_queue_register(offset, value)
        elif offset in (SHM_SEL, QUEUE_RESET):
            pass                     # features not offered; writes have no effect
        else:
            name, _ = REGISTERS.get(offset, (None, ""))
            self._warn(f"write of {value:#x} to {name or 'unknown register'} at {offset:#x} ignored")

    def _write_queue_register(self, offset: int, value: int) -> None:
        name = REGISTERS[offset][0]
        if not self.status & FEATURES_OK or self.status & (DRIVER_OK | FAILED | DEVICE_NEEDS_RESET):
            self._warn(f"{name} written in status {self.status:#x} (queues are set up between "
                       f"FEATURES_OK and DRIVER_OK), ignored")
            return
        q = self._selected_queue()
        if q is None:
            self._warn(f"{name} written for queue {self.queue_sel}, device has {len(self.queues)}")
            return
        try:
            if offset == QUEUE_NUM:
                q.set_size(value)
            elif offset == QUEUE_READY:
                q.ready = value == 1
            else:
                field, shift = _QUEUE_ADDRESS_REGS[offset]
                addr = (getattr(q, field) & ~(0xFFFFFFFF << shift)) | (value << shift)
                getattr(q, _QUEUE_SETTERS[field])(addr)
        except VirtioError as e:
            self._warn(f"{name} write ignored: {e}")

    # -- device status (2.1, 3.1.1) --

    def _write_status(self, value: int) -> None:
        if value == 0:
            self.reset()
            return
        value &= ~DEVICE_NEEDS_RESET          # the device's own bit: the driver cannot set or clear it
        current = self.status & ~DEVICE_NEEDS_RESET
        if current & ~value:
            self._warn(f"status write {value:#x} would clear bits of {self.status:#x}, ignored")
            return
        added = value & ~current
        if added & FAILED:
            self.status |= FAILED            # the driver gave up; it must reset before trying again
            return
        if current & FAILED:
            self._warn(f"status write {value:#x} after FAILED (reset first), ignored")
            return
        order_ok = ((not added & DRIVER or value & ACKNOWLEDGE)
                    and (not added & FEATURES_OK or value & DRIVER)
                    and (not added & DRIVER_OK or value & FEATURES_OK)
                    and not value & ~(ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK))
        if not order_ok:
            self._warn(f"status {self.status:#x} -> {value:#x} skips a step of driver initialisation, ignored")
            return
        if added & FEATURES_OK and not self._accept_features():
            value &= ~(FEATURES_OK | DRIVER_OK)   # 2.2.2: the driver reads FEATURES_OK back and sees it unset
        self.status = value | (self.status & DEVICE_NEEDS_RESET)
        if value & DRIVER_OK and added & DRIVER_OK:
            self._activate()

    def _accept_features(self) -> bool:
        offered = self.device.avail_features
        if self.driver_features & ~offered:
            self._warn(f"driver accepted features {self.driver_features:#x} outside the offered "
                       f"{offered:#x}: FEATURES_OK refused")
            return False
        if not self.driver_features >> VIRTIO_F_VERSION_1 & 1:
            self._warn("driver did not accept VIRTIO_F_VERSION_1 (legacy driver): FEATURES_OK refused")
            return False
        self.device.acked_features = self.driver_features
        return True

    def _activate(self) -> None:
        try:
            for q in self.queues:
                if q.ready:
                    q.check_valid(self.mem)
            self.device.activate(self.mem, self.queues, self)
        except Exception as e:        # a bad ring address must not reach the VMM
            self.device_needs_reset(f"activation failed: {e}")

    # -- queue notifications and interrupts --

    def notify_queue(self, index: int) -> None:
        """The driver kicked queue `index`: let the device process it; never raises."""
        if (self.status & (DRIVER_OK | FAILED | DEVICE_NEEDS_RESET)) != DRIVER_OK or not self.device.activated:
            self._warn(f"queue {index} notified in status {self.status:#x}, ignored")
            return
        try:
            self.device.queue_notify(index)
        except VirtioError as e:
            self.device_needs_reset(str(e))
        except Exception as e:        # a device bug triggered by a guest must not take the VMM down
            self.device_needs_reset(f"internal error {type(e).__name__}: {e}")

    def _running(self) -> bool:
        return (self.status & (DRIVER_OK | FAILED | DEVICE_NEEDS_RESET)) == DRIVER_OK and self.device.activated

    # -- polling: the VMM looks at a queue's ring itself instead of waiting for kicks --

    def suppress_notifications(self, index: int) -> None:
        """Ask the driver not to kick queue `index`: the VMM polls it (`poll_queue`)."""
        q = self.queues[index] if index < len(self.queues) else None
        if q is not None and q.ready and self._running():
            try:
                q.suppress_notifications(self.mem)
            except VirtioError as e:
                self.device_needs_reset(str(e))

    def enable_notifications(self, index: int) -> bool:
        """Ask the driver to kick queue `index` again; whether chains are already waiting."""
        q = self.queues[index] if index < len(self.queues) else None
        if q is None or not q.notifications_suppressed:
            return False
        if not q.ready or not self._running():
            q.notifications_suppressed = False
            return False
        try:
            return q.enable_notifications(self.mem)
        except VirtioError as e:
            self.device_needs_reset(str(e))
            return False

    def poll_queue(self, index: int) -> bool:
        """Serve queue `index` if the driver made chains available; whether there were any."""
        q = self.queues[index] if index < len(self.queues) else None
        if q is None or not q.ready or not self._running():
            return False
        try:
            if not q.pending(self.mem):
                return False
        except VirtioError:
            pass                      # notify_queue meets the same error and asks for a reset
        self.notify_queue(index)
        return True

    def signal_used_queue(self, index: int) -> None:
        self.interrupt_status |= INT_VRING
        self.interrupt()

    def signal_config_change(self) -> None:
        self.config_generation = (self.config_generation + 1) & 0xFFFFFFFF
        self.interrupt_status |= INT_CONFIG
        self.interrupt()

    def guest_error(self, message: str) -> None:
        """A guest error the device answered by itself: only logged."""
        self._warn(message)

    def device_needs_reset(self, reason: str) -> None:
        """2.1.2: set DEVICE_NEEDS_RESET and, if the driver is running, tell it."""
        self._warn(f"device needs reset: {reason}")
        self.status |= DEVICE_NEEDS_RESET
        if self.status & DRIVER_OK:
            self.interrupt_status |= INT_CONFIG
            self.interrupt()

    # -- snapshots --

    def state(self) -> MmioTransportState:
        from .persist import MmioTransportState
        return MmioTransportState(
            device_status=self.status, device_features_sel=self.device_features_sel,
            driver_features_sel=self.driver_features_sel, driver_features=self.driver_features,
            queue_sel=self.queue_sel, interrupt_status=self.interrupt_status,
            config_generation=self.config_generation, queues=[q.state() for q in self.queues])

    @classmethod
    def from_state(cls, state: MmioTransportState, device: VirtioDevice, mem: GuestMemory,
                   interrupt: Callable[[], None], log: Callable[[str], None] = _log_to_stderr) -> MmioTransport:
        """Rebuild a transport around a restored `device`; re-activates it if it was running."""
        from .queue import Queue
        t = cls(device, mem, interrupt, log)
        if len(state.queues) != len(device.queue_max_sizes):
            raise VirtioError(f"virtio-mmio {device.name}: saved {len(state.queues)} queues, "
                              f"device has {len(device.queue_max_sizes)}")
        t.queues = [Queue.from_state(qs, q.name) for qs, q in zip(state.queues, t.queues)]
        t.status = state.device_status
        t.device_features_sel = state.device_features_sel
        t.driver_features_sel = state.driver_features_sel
        t.driver_features = state.driver_features
        t.queue_sel = state.queue_sel
        t.interrupt_status = state.interrupt_status
        t.config_generation = state.config_generation
        if t.status & DRIVER_OK and not t.status & (FAILED | DEVICE_NEEDS_RESET):
            for q in t.queues:
                if q.ready:
                    q.check_valid(mem)
            event_idx = [q.event_idx_enabled for q in t.queues]
            device.activate(mem, t.queues, t)
            for q, enabled in zip(t.queues, event_idx):
                q.event_idx_enabled = enabled
                if q.ready:     # saved while the VMM polled the ring? Kicks are wanted again
                    q.enable_notifications(mem)
        return t
