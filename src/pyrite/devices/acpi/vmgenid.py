"""Virtual Machine Generation ID, as Firecracker's VMGenID device (devices/acpi/vmgenid.rs).

A 128-bit random value in guest memory that changes whenever the VM starts running from a
state it may share with another VM: a new ID on every boot and on every snapshot restore
(Firecracker does both), so that a guest can tell it was cloned and reseed its random
number generators. The DSDT names the ID's address (pyrite.arch.x86_64.acpi.vmgenid_aml);
a new ID is announced by an edge on `gsi`, which the DSDT's Generic Event Device turns into
``Notify(\\_SB_.VGEN, 0x80)`` for Linux's vmgenid driver. Specification: Microsoft's
"Virtual Machine Generation ID" (https://go.microsoft.com/fwlink/?LinkId=260709).

The device has no registers: it writes 16 bytes and raises an interrupt. Guest memory is
passed to each call that writes it; the interrupt is a callable (an irqfd in pyrite.vmm).
"""
from __future__ import annotations

import os
from collections.abc import Callable

from pyrite.arch.x86_64.acpi import VMGENID_SIZE

TYPE_CHECKING = False   # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from .persist import VmGenIdState


class VmGenIdError(ValueError):
    """A generation ID that cannot be placed or restored; the text says why."""


class VmGenId:
    def __init__(self, addr: int, gsi: int, irq: Callable[[], None],
                 random: Callable[[int], bytes] = os.urandom):
        if addr % 8:
            raise VmGenIdError(f"vmgenid: address {addr:#x} is not 8-byte aligned")
        self.addr = addr
        self.gsi = gsi
        self._irq = irq
        self._random = random
        self.generation = bytes(VMGENID_SIZE)   # the ID last written; zeros before the first

    def generate(self, mem) -> bytes:
        """Write a fresh random ID into guest memory (a boot does this once); returns it."""
        generation = self._random(VMGENID_SIZE)
        if len(generation) != VMGENID_SIZE:
            raise VmGenIdError(f"vmgenid: the random source gave {len(generation)} bytes, "
                               f"not {VMGENID_SIZE}")
        mem.write(self.addr, generation)
        self.generation = generation
        return generation

    def regenerate(self, mem) -> bytes:
        """A new ID, then the interrupt that tells the guest to look at it; returns the ID."""
        generation = self.generate(mem)
        self._irq()
        return generation

    def state(self) -> VmGenIdState:
        from .persist import VmGenIdState
        return VmGenIdState(gsi=self.gsi, addr=self.addr)

    def restore(self, state: VmGenIdState, mem) -> bytes:
        """Take a snapshot's record: the same place and GSI as this VM's tables say (they are in
        the restored memory), then a new ID and its notification, as Firecracker does on every
        snapshot load. Call it after the interrupt controller's state is restored, so that the
        edge is not overwritten. Returns the new ID."""
        if (state.addr, state.gsi) != (self.addr, self.gsi):
            raise VmGenIdError(f"vmgenid: the snapshot has the ID at {state.addr:#x} on GSI "
                               f"{state.gsi}, this VM at {self.addr:#x} on GSI {self.gsi}")
        return self.regenerate(mem)
