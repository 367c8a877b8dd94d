"""The KVM VM: the first step of a build, and the interrupt controllers after guest memory.

Order matters on our hosts: KVM_CREATE_IRQCHIP leaves kernel work running (an SRCU grace
period), and a KVM_SET_USER_MEMORY_REGION issued after it waits for that work, 5-10 ms. Memory
slots registered first and the irqchip created after them cost nothing of the sort (measured:
VM, 128 MiB slot, irqchip, PIT and one vCPU in ~0.5 ms instead of ~8 ms). So a build makes the
VM (create_machine), registers guest memory, then calls add_interrupt_controllers. This module
imports only pyrite.kvm and the layout constants, so that callers may make the VM early.
"""
from __future__ import annotations

from pyrite import kvm
from pyrite.arch.x86_64 import layout


def create_machine(kvm_path: str = "/dev/kvm") -> tuple[kvm.System, kvm.Vm]:
    """Open `kvm_path` and make a VM with its TSS address; guest memory, then the interrupt
    controllers (add_interrupt_controllers), then vCPUs are added by the builder. Raises KvmError."""
    system = kvm.System(kvm_path)
    try:
        vm = system.create_vm()
        try:
            vm.set_tss_addr(layout.KVM_TSS_ADDRESS)
        except BaseException:
            vm.close()
            raise
    except BaseException:
        system.close()
        raise
    return system, vm


def add_interrupt_controllers(vm: kvm.Vm) -> None:
    """The in-kernel PIC pair, IOAPIC and LAPICs, and the PIT (Firecracker's set-up); after the
    memory slots, before any vCPU. Raises KvmError."""
    vm.create_irqchip()
    vm.create_pit2()


def release_machine(machine: tuple[kvm.System, kvm.Vm]) -> None:
    """Close a (System, Vm) pair from create_machine() that was never handed to a build."""
    system, vm = machine
    vm.close()
    system.close()
