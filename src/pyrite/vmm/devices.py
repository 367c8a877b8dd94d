"""The virtio device manager: Firecracker's MMIO slots, IRQs and kernel command line, and the
generic wiring of each device's descriptor (pyrite.devices.virtio.*/handler.py) to its MMIO
window, irqfd, queue ioeventfds and the device event loop.

Slots: device i sits at layout.VIRTIO_MMIO_START + i * VIRTIO_MMIO_SIZE with GSI 5 + i (edge,
through an irqfd), in Firecracker's order (builder.rs): drives (the root drive first), network
interfaces, the vsock device, the entropy device. The VM generation ID takes the next GSI
after the last device (Firecracker 1.12.1 allocates it from the same pool, after the virtio
devices: GSI 5 with none, 6 with one). GSIs stop at 23, the last IOAPIC pin, so there are at
most 18 devices: one pin of 5..23 is always left for the VM generation ID. For each device the kernel command line gets Firecracker's
``virtio_mmio.device=4K@0x<addr>:<irq>``, preceded by what the device adds itself (a root
drive's ``root=/dev/vda`` and ``ro``/``rw``).
"""
from __future__ import annotations

import os
from collections.abc import Callable

from pyrite.arch.x86_64 import layout
from pyrite.devices.virtio.block.handler import BlockHandler
from pyrite.devices.virtio.handler import DeviceError, VirtioHandler
from pyrite.devices.virtio.net.handler import NetHandler
from pyrite.devices.virtio.rng.handler import EntropyHandler
from pyrite.devices.virtio.vsock.handler import VsockHandler

IRQ_BASE = 5                     # Firecracker's first GSI for MMIO devices (x86_64)
IRQ_MAX = 23                     # the IOAPIC's last pin
MAX_VIRTIO_DEVICES = IRQ_MAX - IRQ_BASE  # 5..22 at most: the VM generation ID's pin follows
QUEUE_NOTIFY = 0x50              # virtio-mmio QueueNotify register offset

# The device kinds, in Firecracker's slot order: adding a device is a folder and a line here.
DEVICE_KINDS: tuple[type[VirtioHandler], ...] = (BlockHandler, NetHandler, VsockHandler, EntropyHandler)


class Slot:
    """One device's place: its kind, config, MMIO window and GSI."""
    __slots__ = ("kind", "config", "addr", "irq")

    def __init__(self, kind: type[VirtioHandler], config, addr: int, irq: int):
        self.kind = kind
        self.config = config
        self.addr = addr
        self.irq = irq

    def __repr__(self) -> str:
        return f"Slot({self.kind.kind}, {self.addr:#x}, irq {self.irq})"


def plan_slots(resources) -> list[Slot]:
    """Each configured device's slot, in Firecracker's order."""
    configs = [(kind, config) for kind in DEVICE_KINDS for config in kind.configs(resources)]
    if len(configs) > MAX_VIRTIO_DEVICES:
        raise DeviceError(f"{len(configs)} virtio devices configured; at most {MAX_VIRTIO_DEVICES} fit "
                          f"in the IRQs {IRQ_BASE}-{IRQ_MAX}")
    return [Slot(kind, config, layout.VIRTIO_MMIO_START + i * layout.VIRTIO_MMIO_SIZE, IRQ_BASE + i)
            for i, (kind, config) in enumerate(configs)]


def vmgenid_gsi(slots: list[Slot]) -> int:
    """The VM generation ID's GSI: the first after the virtio devices', as Firecracker's."""
    return IRQ_BASE + len(slots)


def kernel_cmdline(base: str, slots: list[Slot]) -> str:
    """`base` plus each device's parameters, space-separated as linux-loader's Cmdline inserts."""
    from pyrite.devices.virtio.mmio import cmdline_fragment
    words = [base] if base else []
    for slot in slots:
        words += slot.kind.cmdline_words(slot.config)
        words.append(cmdline_fragment(slot.addr, slot.irq, layout.VIRTIO_MMIO_SIZE))
    return " ".join(words)


def create_devices(slots: list[Slot], closers: list) -> list[VirtioHandler]:
    """Each planned device made from its config (DeviceError names the first that cannot be);
    each one's `addr` and `irq` set from its slot."""
    handlers = []
    for slot in slots:
        handler = slot.kind.create(slot.config)
        handler.addr, handler.irq = slot.addr, slot.irq
        closers.append(handler.close)
        handlers.append(handler)
    return handlers


def attach_devices(vm, mmio_bus, memory, loop, handlers: list[VirtioHandler],
                   irq_line: Callable[[int], Callable[[], None]], closers: list) -> None:
    """Put each device's transport on the MMIO bus behind its lock, raise its interrupt
    through an irqfd on its GSI, route each queue's QueueNotify write (4 bytes, value = queue
    index) through an ioeventfd to the event loop, and let it add its own host fds."""
    from pyrite.devices.virtio.mmio import MmioTransport
    for handler in handlers:
        device = handler.device
        handler.transport = MmioTransport(device, memory, irq_line(handler.irq), log=handler.log)
        handler.attach(loop)
        mmio_bus.register(handler.addr, layout.VIRTIO_MMIO_SIZE, handler.name, handler.mmio_read,
                          handler.mmio_write)
        for index in range(len(device.queue_max_sizes)):
            fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            closers.append(lambda fd=fd: os.close(fd))
            vm.register_ioeventfd(fd, handler.addr + QUEUE_NOTIFY, 4, datamatch=index)
            handler.notify_fds.append(fd)
            loop.add(fd, lambda events, h=handler, index=index, fd=fd: h.on_queue_event(index, fd))
