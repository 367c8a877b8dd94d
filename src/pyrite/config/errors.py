"""Configuration errors with Firecracker's words, and the list of what pyrite builds today.

Kept apart from the models and VmResources so that the API can refuse a request, and
`pyrite-vmm` can answer its first one, without loading them.
"""
from __future__ import annotations

import os

# ----------------------------------------------------------------------------- what pyrite builds
# Resource kinds and features pyrite's VMM builds today. Everything else in FEATURES is
# parsed and validated, then refused with 400 until its device arrives: add it here then.
SUPPORTED: frozenset[str] = frozenset({"machine-config", "boot-source", "logger", "metrics", "serial",
                                       "drives", "entropy", "network-interfaces", "vsock", "snapshot"})

FEATURES: dict[str, str] = {
    "machine-config": "machine configuration",
    "boot-source": "boot sources",
    "logger": "the logger",
    "metrics": "metrics",
    "serial": "serial console configuration",
    "drives": "block devices (drives)",
    "vhost-user-drives": "vhost-user block devices (drives with a socket)",
    "network-interfaces": "network interfaces",
    "vsock": "vsock devices",
    "entropy": "entropy devices",
    "balloon": "balloon devices",
    "mmds": "the microVM metadata service (MMDS)",
    "mmds-config": "the microVM metadata service (MMDS)",
    "cpu-config": "custom CPU templates (cpu-config)",
    "cpu-template": "static CPU templates (cpu_template)",
    "smt": "simultaneous multithreading (smt)",
    "huge-pages": "huge pages (huge_pages)",
    "pmem": "virtio-pmem devices",
    "memory-hotplug": "memory hotplug",
    "snapshot": "snapshots",
    "serial-rate-limiter": "serial output rate limiting",
}

# Prefixes Firecracker puts before a resource's error: over the API (VmmActionError) and in
# a config file (ResourcesError).
_API_PREFIX = {
    "machine-config": "Machine config error: ", "boot-source": "Boot source error: ",
    "drives": "Drive config error: ", "network-interfaces": "Network config error: ",
    "vsock": "Vsock config error: ", "balloon": "Balloon config error: ",
    "entropy": "Entropy device error: ", "mmds-config": "MMMDS config error: ",  # sic, as Firecracker
    "logger": "Logger error: ", "metrics": "Metrics error: ", "start": "Start microvm error: ",
    "pmem": "Pmem config error: ", "memory-hotplug": "Memory hotplug config error: ",
}
_FILE_PREFIX = {
    "machine-config": "VM config error: ", "boot-source": "Boot source error: ",
    "drives": "Block device error: ", "network-interfaces": "Network device error: ",
    "vsock": "Vsock device error: ", "balloon": "Balloon device error: ",
    "entropy": "Entropy device error: ", "mmds-config": "MMDS config error: ",
    "logger": "Logger error: ", "metrics": "Metrics error: ", "json": "Invalid JSON: ",
    "file": "File operation error: ", "pmem": "Pmem device error: ",
}


class ConfigError(Exception):
    """A resource that cannot be configured. `str()` is Firecracker's API fault message;
    `file_message` is what Firecracker says about the same fault in a config file."""

    def __init__(self, resource: str, detail: str):
        super().__init__(_API_PREFIX.get(resource, "") + detail)
        self.resource = resource
        self.detail = detail

    @property
    def file_message(self) -> str:
        return _FILE_PREFIX.get(self.resource, "") + self.detail


class NotSupportedYet(ConfigError):
    def __init__(self, kind: str):
        super().__init__("unsupported", f"The requested operation is not supported: "
                                        f"pyrite does not support {FEATURES[kind]} yet.")
        self.kind = kind


def require_supported(kind: str) -> None:
    if kind not in SUPPORTED:
        raise NotSupportedYet(kind)


def io_error_text(e: OSError) -> str:
    """An OSError as Rust's io::Error prints it: 'No such file or directory (os error 2)'."""
    if e.errno is None:
        return str(e)
    return f"{os.strerror(e.errno)} (os error {e.errno})"
