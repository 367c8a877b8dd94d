"""Importing ahead what a VMM may import later.

Python imports modules when first used, and pyrite-vmm defers many imports to keep its start
fast. An import opens and stats files, which a jail hides and seccomp filters may refuse:

- preload() imports every module a VMM process may run and reads now the files it
  would read later; pyrite-jailer calls it before pivot_root (then runs the VMM in the same
  process). The list is explicit (scanning the packages' folders would cost more than the
  imports); tests/seccomp/test_preload.py checks that it names every module of the VMM's
  packages but those of other programs (NOT_IN_A_VMM), and every module their functions
  import lazily.
- preload_for_filters() is what a built VMM needs before its threads without openat (vCPUs,
  event loop, main, metrics) are filtered; the API thread's filter lets it import.
"""
from __future__ import annotations

import importlib

# Every module of the VMM's packages (pyrite.kvm, .arch, .devices, .config, .vmm, .snapshot,
# .api, .seccomp) that a VMM process may run, whether the build already imported it or not.
MODULES = (
    "pyrite.memory",
    "pyrite.kvm", "pyrite.kvm._libc", "pyrite.kvm.errors", "pyrite.kvm.exits", "pyrite.kvm.ioctls",
    "pyrite.kvm.kick", "pyrite.kvm.structs", "pyrite.kvm.system", "pyrite.kvm.types", "pyrite.kvm.vcpu",
    "pyrite.kvm.vm",
    "pyrite.arch", "pyrite.arch.x86_64", "pyrite.arch.x86_64.acpi", "pyrite.arch.x86_64.boot_cpu",
    "pyrite.arch.x86_64.bootparams", "pyrite.arch.x86_64.cpuid", "pyrite.arch.x86_64.layout",
    "pyrite.arch.x86_64.mptable", "pyrite.arch.x86_64.msr", "pyrite.arch.x86_64.pagewalk",
    "pyrite.arch.x86_64.loader",
    "pyrite.arch.x86_64.loader.elf", "pyrite.arch.x86_64.loader.errors", "pyrite.arch.x86_64.loader.initrd",
    "pyrite.arch.x86_64.loader.placement", "pyrite.arch.x86_64.loader.pvh",
    "pyrite.arch.x86_64.loader.result", "pyrite.arch.x86_64.loader.source", "pyrite.arch.x86_64.loader.symbols",
    "pyrite.devices", "pyrite.devices.acpi", "pyrite.devices.acpi.persist", "pyrite.devices.acpi.vmgenid",
    "pyrite.devices.legacy", "pyrite.devices.legacy.boot_timer", "pyrite.devices.legacy.exit_port",
    "pyrite.devices.legacy.i8042", "pyrite.devices.legacy.persist", "pyrite.devices.legacy.serial",
    "pyrite.devices.virtio", "pyrite.devices.virtio.device", "pyrite.devices.virtio.handler",
    "pyrite.devices.virtio.mmio", "pyrite.devices.virtio.persist", "pyrite.devices.virtio.queue",
    "pyrite.devices.virtio.ratelimiter",
    "pyrite.devices.virtio.block", "pyrite.devices.virtio.block.backend", "pyrite.devices.virtio.block.device",
    "pyrite.devices.virtio.block.handler", "pyrite.devices.virtio.block.persist", "pyrite.devices.virtio.block.request",
    "pyrite.devices.virtio.net", "pyrite.devices.virtio.net.backend", "pyrite.devices.virtio.net.device",
    "pyrite.devices.virtio.net.handler", "pyrite.devices.virtio.net.persist",
    "pyrite.devices.virtio.rng", "pyrite.devices.virtio.rng.backend", "pyrite.devices.virtio.rng.device",
    "pyrite.devices.virtio.rng.handler", "pyrite.devices.virtio.rng.persist",
    "pyrite.devices.virtio.vsock", "pyrite.devices.virtio.vsock.backend", "pyrite.devices.virtio.vsock.connection",
    "pyrite.devices.virtio.vsock.device", "pyrite.devices.virtio.vsock.handler",
    "pyrite.devices.virtio.vsock.packet", "pyrite.devices.virtio.vsock.persist",
    "pyrite.config", "pyrite.config.decode", "pyrite.config.encode", "pyrite.config.errors", "pyrite.config.levels",
    "pyrite.config.models", "pyrite.config.resources",
    "pyrite.vmm", "pyrite.vmm.builder", "pyrite.vmm.bus", "pyrite.vmm.console", "pyrite.vmm.crash",
    "pyrite.vmm.devices", "pyrite.vmm.errors", "pyrite.vmm.event_loop", "pyrite.vmm.exit", "pyrite.vmm.machine",
    "pyrite.vmm.memory_cgroup", "pyrite.vmm.vcpu", "pyrite.vmm.vmm",
    "pyrite.snapshot", "pyrite.snapshot.dirty", "pyrite.snapshot.errors", "pyrite.snapshot.format",
    "pyrite.snapshot.kvm_state", "pyrite.snapshot.microvm", "pyrite.snapshot.records", "pyrite.snapshot.uffd",
    "pyrite.snapshot.uffd_backend", "pyrite.snapshot.uffd_protocol",
    "pyrite.api", "pyrite.api.boot", "pyrite.api.cli", "pyrite.api.controller", "pyrite.api.http",
    "pyrite.api.logger", "pyrite.api.metrics", "pyrite.api.preload", "pyrite.api.routes", "pyrite.api.server",
    "pyrite.seccomp", "pyrite.seccomp.cache", "pyrite.seccomp.libseccomp", "pyrite.seccomp.program", "pyrite.seccomp.sigsys",
    "pyrite.seccomp.spec",
    # The standard library's, imported lazily by pyrite (an unexpected failure's traceback in
    # the API thread) or by the standard library itself:
    "traceback", "linecache", "tokenize", "socket", "zlib", "json",
)
# Imported lazily by a build or a snapshot load only (a compressed kernel's or a Multiboot
# image's loader, whether the image is pyrite's, a TAP's set-up), which run before any thread
# is filtered: an unjailed VMM imports them then, when it needs them (~20 ms); a jailed one
# could not open them any more.
BUILD_MODULES = ("pyrite.arch.x86_64.loader.bzimage", "pyrite.arch.x86_64.loader.decompress",
                 "pyrite.arch.x86_64.loader.multiboot", "pyrite.arch.x86_64.loader.pyrite_image",
                 "fcntl", "lzma", "bz2")
# Optional packages among those (pyrite[compression]): when not installed, the VMM reports
# them missing as it would unjailed.
OPTIONAL_BUILD_MODULES = ("zstandard", "lz4.block")

# Modules of those packages that run in other processes (CLIs, the Uffd page server, `pyrite run`).
NOT_IN_A_VMM = ("pyrite.snapshot.cli", "pyrite.snapshot.rebase", "pyrite.snapshot.uffd_handler",
                "pyrite.vmm.foreground")


def one_malloc_arena() -> None:
    """Every thread allocates from glibc's main malloc arena (grown and trimmed with brk). A
    thread's own arena, shrunk by free() for the first time, makes glibc open
    /proc/sys/vm/overcommit_memory: an openat that a filtered thread's filter refuses, inside
    free() with the arena locked, where the SIGSYS handler's own allocation then waits forever.
    Call before any thread starts; Python's small objects come from its own allocator."""
    import ctypes
    m_arena_max = -8                    # glibc's M_ARENA_MAX
    ctypes.CDLL(None).mallopt(m_arena_max, 1)


# What the threads whose filters refuse openat (vCPUs, event loop, main, metrics) may still
# import once the guest runs: the crash report's modules. (The API thread's filter allows the
# calls an import makes.)
CRASH_REPORT_MODULES = ("pyrite.vmm.crash", "pyrite.arch.x86_64.pagewalk", "pyrite.arch.x86_64.loader.symbols")


def preload_for_filters() -> None:
    """What a VMM built, and about to filter its threads, must import and load first: the
    crash report, libgcc_s, the entropy DRBG (preload() is everything, for a jail)."""
    _load_libraries()
    for name in CRASH_REPORT_MODULES:
        importlib.import_module(name)


def _load_libraries() -> None:
    # glibc's pthread_exit (a daemon thread ended at interpreter exit) dlopens libgcc_s for
    # unwinding on first use; loaded now, that needs no openat later.
    import ctypes
    ctypes.CDLL("libgcc_s.so.1")
    # pyrite's own filters compiled (or read from the cache), which a jailed VMM cannot open
    # (Firecracker compiles its default filters into its binary), and libseccomp loaded.
    from pyrite.seccomp import default_compiled
    default_compiled()
    # The entropy device's DRBG: its first use imports _ssl and reads OpenSSL's configuration.
    from pyrite.devices.virtio.rng.backend import drbg_random
    drbg_random(1)


def preload() -> None:
    """Everything a VMM may import or load later, a build's modules included (for a jail)."""
    _load_libraries()
    for name in MODULES + BUILD_MODULES:
        importlib.import_module(name)
    for name in OPTIONAL_BUILD_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
