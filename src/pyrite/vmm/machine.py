"""The KVM VM with its in-kernel interrupt controllers and PIT: the first step of a build.

KVM_CREATE_IRQCHIP leaves work running in the kernel (an SRCU grace period, 15-20 ms on our
machines) that destroying the VM has to wait for. `pyrite run` therefore creates the VM before
it imports the rest of pyrite: the wait then overlaps the imports instead of delaying the end
of a short-lived microVM. This module imports only pyrite.kvm and the layout constants.
"""
from __future__ import annotations

from pyrite import kvm
from pyrite.arch.x86_64 import layout


def create_machine(kvm_path: str = "/dev/kvm") -> tuple[kvm.System, kvm.Vm]:
    """Open `kvm_path` and make a VM with its TSS, irqchip and PIT (Firecracker's order);
    guest memory and vCPUs are added by the builder. Raises KvmError."""
    system = kvm.System(kvm_path)
    try:
        vm = system.create_vm()
        try:
            vm.set_tss_addr(layout.KVM_TSS_ADDRESS)
            vm.create_irqchip()
            vm.create_pit2()
        except BaseException:
            vm.close()
            raise
    except BaseException:
        system.close()
        raise
    return system, vm


def release_machine(machine: tuple[kvm.System, kvm.Vm]) -> None:
    """Close a (System, Vm) pair from create_machine() that was never handed to a build."""
    system, vm = machine
    vm.close()
    system.close()
