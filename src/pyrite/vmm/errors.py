"""Why a microVM could not be built: one exception type per build step, each naming the input
at fault (Firecracker's StartMicrovmError variants). Only what a step expects becomes one
of these; anything else is a bug and propagates as itself."""
from __future__ import annotations


class BuildError(Exception):
    """The microVM could not be built; the message names the input at fault."""


class KvmSetupError(BuildError):
    """KVM could not make the VM, its irqchip or clock (no /dev/kvm, no permission)."""


class MemorySetupError(BuildError):
    """Guest memory could not be made or registered (size, host memory, mmap)."""


class KernelLoadError(BuildError):
    """The kernel image is missing, unreadable, malformed or does not fit in memory."""


class InitrdLoadError(BuildError):
    """The initrd is missing, unreadable, empty or does not fit in memory."""


class BootSetupError(BuildError):
    """Boot parameters (command line, e820, MP/ACPI tables) could not be written."""


class DeviceSetupError(BuildError):
    """A device could not be made or wired (its file, TAP or socket, or the MMIO slots)."""


class VcpuSetupError(BuildError):
    """A vCPU could not be created or configured."""


class InvalidConfigError(BuildError):
    """The configuration was refused before anything was built (the API's message for it)."""
