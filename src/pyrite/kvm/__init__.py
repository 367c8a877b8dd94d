"""KVM bindings: System (/dev/kvm), Vm and Vcpu handles, one ioctl per method.

    with System() as kvm, kvm.create_vm() as vm:
        vm.set_user_memory_region(0, 0, len(ram), host_addr)
        vcpu = vm.create_vcpu(0)
        exit = vcpu.run()          # an exits.VcpuExit
"""
from . import exits
from .errors import KvmError
from .ioctls import KVM_MEM_LOG_DIRTY_PAGES
from .kick import install_kick_handler, kick, kick_signal, kick_thread
from .system import System
from .types import CpuidEntry
from .vcpu import Vcpu
from .vm import Vm

__all__ = ["System", "Vm", "Vcpu", "KvmError", "exits", "CpuidEntry", "Cap", "ExitReason",
           "kick", "kick_signal", "kick_thread", "install_kick_handler", "KVM_MEM_LOG_DIRTY_PAGES"]


def __getattr__(name: str):
    if name in ("Cap", "ExitReason"):   # IntEnums, built on first use (see ioctls)
        from . import ioctls
        return getattr(ioctls, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
