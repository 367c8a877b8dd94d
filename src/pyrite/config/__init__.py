"""Typed models of the microVM's resources (Firecracker's API resources), validated once.

    resources = VmResources.from_config_file("vm.json")      # Firecracker's config file format
    resources.update_machine_config(MachineConfigUpdate(vcpu_count=2))
    resources.to_json()                                     # the GET /vm/config body

Errors are ConfigError, whose text is Firecracker's fault message for the same input.

The names below load their module on first use (PEP 562): `pyrite-vmm` imports
`pyrite.config.levels`, `.encode` and `.errors` on its way to the API socket without paying for the
models and VmResources it does not need yet.
"""
from __future__ import annotations

import sys

_EXPORTS = {
    "decode": ("DecodeError", "decode"),
    "encode": ("encode_json",),
    "errors": ("FEATURES", "SUPPORTED", "ConfigError", "NotSupportedYet", "io_error_text", "require_supported"),
    "levels": ("LOG_LEVELS", "parse_level"),
    "models": ("ACTION_TYPES", "CONSOLE_CMDLINE", "Balloon", "BalloonStartHinting", "BalloonStatsUpdate", "BalloonUpdate", "Bitmap",
               "BootSource", "CpuConfig", "CpuidLeafModifier", "CpuidRegisterModifier", "Drive", "DriveUpdate",
               "Entropy", "InstanceAction", "Logger", "MachineConfig", "MachineConfigUpdate", "MemoryBackend",
               "MemoryHotplug", "MemoryHotplugSizeUpdate", "Metrics", "MmdsConfig", "MsrModifier",
               "NetworkInterface", "NetworkInterfaceUpdate", "NetworkOverride", "Pmem", "PmemUpdate",
               "RateLimiter", "Serial", "SnapshotCreate", "SnapshotLoad", "TokenBucket", "VmState", "Vsock",
               "VsockOverride"),
    "resources": ("DEFAULT_KERNEL_CMDLINE", "VmResources"),
}
# Firecracker's name for the PUT /cpu-config body and the config file's machine section.
_ALIASES = {"CustomCpuTemplate": "CpuConfig"}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted([*_MODULE_OF, *_ALIASES])


def __getattr__(name: str):
    if name in _EXPORTS:  # a submodule: `pyrite.config.models` as an attribute
        __import__(f"{__name__}.{name}")
        return sys.modules[f"{__name__}.{name}"]
    target = _ALIASES.get(name, name)
    module = _MODULE_OF.get(target)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    __import__(f"{__name__}.{module}")
    value = getattr(sys.modules[f"{__name__}.{module}"], target)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
