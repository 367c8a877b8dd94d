"""Vm: a KVM virtual machine fd (memory slots, irqchip, PIT, eventfds, clock, vCPUs)."""
from __future__ import annotations

import ctypes
import os

from . import ioctls as io
from . import structs as s
from ._libc import call
from .errors import KvmError
from .vcpu import Vcpu


class Vm:
    """Made by System.create_vm(); owns its fd."""

    def __init__(self, fd: int, vcpu_mmap_size: int):
        self.fd = fd
        self.vcpu_mmap_size = vcpu_mmap_size

    def __enter__(self) -> Vm:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def check_extension(self, cap: int) -> int:
        """Per-VM answer to KVM_CHECK_EXTENSION (needs Cap.CHECK_EXTENSION_VM)."""
        return call(self.fd, io.KVM_CHECK_EXTENSION, int(cap))

    # --- memory ---------------------------------------------------------------------------
    def set_user_memory_region(self, slot: int, guest_phys_addr: int, memory_size: int,
                               userspace_addr: int, flags: int = 0) -> None:
        """Map host [userspace_addr, +memory_size) at guest_phys_addr; size 0 deletes the slot.

        flags: KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY.
        """
        region = s.kvm_userspace_memory_region(slot, flags, guest_phys_addr, memory_size, userspace_addr)
        try:
            call(self.fd, io.KVM_SET_USER_MEMORY_REGION, region)
        except KvmError as e:
            raise KvmError(e.ioctl, e.errno,
                           f"slot {slot} gpa {guest_phys_addr:#x} size {memory_size:#x}: "
                           f"{os.strerror(e.errno)}") from None

    def get_dirty_log(self, slot: int, npages: int) -> bytes:
        """Bitmap (bit n = page n of the slot written since the last call); needs LOG_DIRTY_PAGES."""
        bitmap = (ctypes.c_uint64 * ((npages + 63) // 64))()
        log = s.kvm_dirty_log(slot=slot, dirty_bitmap=ctypes.addressof(bitmap))
        call(self.fd, io.KVM_GET_DIRTY_LOG, log)
        return bytes(bitmap)

    # --- x86 set-up ------------------------------------------------------------------------
    def set_tss_addr(self, addr: int) -> None:
        """Three pages at `addr` (guest-physical, unused by the guest) that VMX needs for real mode."""
        call(self.fd, io.KVM_SET_TSS_ADDR, addr)

    def set_identity_map_addr(self, addr: int) -> None:
        call(self.fd, io.KVM_SET_IDENTITY_MAP_ADDR, ctypes.c_uint64(addr))

    # --- interrupt controllers and PIT ---------------------------------------------------
    def create_irqchip(self) -> None:
        """In-kernel PIC pair, IOAPIC and per-vCPU local APICs (call before create_vcpu)."""
        call(self.fd, io.KVM_CREATE_IRQCHIP)

    def create_pit2(self, flags: int = io.KVM_PIT_SPEAKER_DUMMY) -> None:
        call(self.fd, io.KVM_CREATE_PIT2, s.kvm_pit_config(flags=flags))

    def set_irq_line(self, irq: int, level: bool | int) -> None:
        call(self.fd, io.KVM_IRQ_LINE, s.kvm_irq_level(irq=irq, level=int(bool(level))))

    def get_irqchip(self, chip_id: int) -> s.kvm_irqchip:
        """chip_id: KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE or KVM_IRQCHIP_IOAPIC."""
        chip = s.kvm_irqchip(chip_id=chip_id)
        call(self.fd, io.KVM_GET_IRQCHIP, chip)
        return chip

    def set_irqchip(self, chip: s.kvm_irqchip) -> None:
        call(self.fd, io.KVM_SET_IRQCHIP, chip)

    def get_pit2(self) -> s.kvm_pit_state2:
        state = s.kvm_pit_state2()
        call(self.fd, io.KVM_GET_PIT2, state)
        return state

    def set_pit2(self, state: s.kvm_pit_state2) -> None:
        call(self.fd, io.KVM_SET_PIT2, state)

    def get_clock(self) -> s.kvm_clock_data:
        clock = s.kvm_clock_data()
        call(self.fd, io.KVM_GET_CLOCK, clock)
        return clock

    def set_clock(self, clock: s.kvm_clock_data) -> None:
        call(self.fd, io.KVM_SET_CLOCK, clock)

    # --- eventfds ------------------------------------------------------------------------
    def register_irqfd(self, eventfd: int, gsi: int) -> None:
        """Writing to `eventfd` raises interrupt line `gsi` (edge) without a trip through Python."""
        call(self.fd, io.KVM_IRQFD, s.kvm_irqfd(fd=eventfd, gsi=gsi))

    def unregister_irqfd(self, eventfd: int, gsi: int) -> None:
        call(self.fd, io.KVM_IRQFD, s.kvm_irqfd(fd=eventfd, gsi=gsi, flags=io.KVM_IRQFD_FLAG_DEASSIGN))

    def register_ioeventfd(self, eventfd: int, addr: int, length: int,
                           datamatch: int | None = None, pio: bool = False) -> None:
        """A guest write of `length` bytes to `addr` (MMIO, or port if `pio`) signals `eventfd`.

        With `datamatch`, only writes of that value do; length 0 matches any length (MMIO).
        """
        call(self.fd, io.KVM_IOEVENTFD, self._ioeventfd(eventfd, addr, length, datamatch, pio, 0))

    def unregister_ioeventfd(self, eventfd: int, addr: int, length: int,
                             datamatch: int | None = None, pio: bool = False) -> None:
        call(self.fd, io.KVM_IOEVENTFD,
             self._ioeventfd(eventfd, addr, length, datamatch, pio, io.KVM_IOEVENTFD_FLAG_DEASSIGN))

    @staticmethod
    def _ioeventfd(eventfd: int, addr: int, length: int, datamatch: int | None,
                   pio: bool, flags: int) -> s.kvm_ioeventfd:
        if datamatch is not None:
            flags |= io.KVM_IOEVENTFD_FLAG_DATAMATCH
        if pio:
            flags |= io.KVM_IOEVENTFD_FLAG_PIO
        return s.kvm_ioeventfd(datamatch=datamatch or 0, addr=addr, len=length, fd=eventfd, flags=flags)

    # --- vCPUs ---------------------------------------------------------------------------
    def create_vcpu(self, index: int) -> Vcpu:
        """vCPU number `index` (its APIC ID), with its kvm_run page mapped."""
        fd = call(self.fd, io.KVM_CREATE_VCPU, index)
        return Vcpu(fd, index, self.vcpu_mmap_size)
