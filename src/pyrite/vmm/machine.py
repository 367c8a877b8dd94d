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


class MachinePool:
    """Machines made ahead on a background thread, for restores and clones that must not wait
    for the kernel's work behind KVM_CREATE_IRQCHIP (a machine used at once pays 5-10 ms in
    its first KVM_SET_USER_MEMORY_REGION here). `take()` hands out a ready one, or makes one
    when none is (KvmError then comes from there), and has the thread make another."""

    def __init__(self, spare: int = 2, kvm_path: str = "/dev/kvm"):
        import threading
        from collections import deque
        self.spare = spare
        self.kvm_path = kvm_path
        self._ready: deque = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._failed = False

    def take(self) -> tuple[kvm.System, kvm.Vm]:
        with self._cond:
            machine = self._ready.popleft() if self._ready else None
            self._cond.notify()
            if self._thread is None and not self._failed:
                import threading
                self._thread = threading.Thread(target=self._fill, name="machine pool", daemon=True)
                self._thread.start()
        return machine if machine is not None else create_machine(self.kvm_path)

    def _fill(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: len(self._ready) < self.spare)
            try:
                machine = create_machine(self.kvm_path)
            except (kvm.KvmError, OSError):
                with self._cond:
                    self._failed, self._thread = True, None   # take() makes them itself, and says why
                return
            with self._cond:
                self._ready.append(machine)


POOL = MachinePool()
