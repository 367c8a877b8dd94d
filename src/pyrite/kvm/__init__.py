"""KVM bindings: System (/dev/kvm), Vm and Vcpu handles, one ioctl per method.

    with System() as kvm, kvm.create_vm() as vm:
        vm.set_user_memory_region(0, 0, len(ram), host_addr)
        vcpu = vm.create_vcpu(0)
        exit = vcpu.run()          # an exits.* dataclass
"""
from . import exits
from .errors import KvmError
from .ioctls import Cap, ExitReason
from .kick import install_kick_handler, kick, kick_signal, kick_thread
from .system import System
from .types import CpuidEntry
from .vcpu import Vcpu
from .vm import Vm

__all__ = ["System", "Vm", "Vcpu", "KvmError", "exits", "CpuidEntry", "Cap", "ExitReason",
           "kick", "kick_signal", "kick_thread", "install_kick_handler"]
