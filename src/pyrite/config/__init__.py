"""Typed models of the microVM's resources (Firecracker's API resources), validated once.

    resources = VmResources.from_config_file("vm.json")      # Firecracker's config file format
    resources.update_machine_config(MachineConfigUpdate(vcpu_count=2))
    resources.to_json()                                     # the GET /vm/config body

Errors are ConfigError, whose text is Firecracker's fault message for the same input.
"""
from .decode import DecodeError, decode, encode_json
from .models import (ACTION_TYPES, Balloon, BalloonStartHinting, BalloonStatsUpdate, BalloonUpdate, Bitmap,
                     BootSource, CpuConfig, CpuidLeafModifier, CpuidRegisterModifier, Drive, DriveUpdate, Entropy,
                     InstanceAction, Logger, MachineConfig, MachineConfigUpdate, MemoryBackend, MemoryHotplug,
                     MemoryHotplugSizeUpdate, Metrics, MmdsConfig, MsrModifier, NetworkInterface,
                     NetworkInterfaceUpdate, NetworkOverride, Pmem, PmemUpdate, RateLimiter, Serial, SnapshotCreate,
                     SnapshotLoad, TokenBucket, VmState, Vsock, VsockOverride, LOG_LEVELS)
from .resources import (DEFAULT_KERNEL_CMDLINE, FEATURES, SUPPORTED, ConfigError, NotSupportedYet, VmResources,
                        io_error_text, require_supported)

# Firecracker's name for the PUT /cpu-config body and the config file's machine section.
CustomCpuTemplate = CpuConfig
