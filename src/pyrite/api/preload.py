"""preload(): import now every module the VMM may import later.

Python imports modules when first used, and pyrite-vmm defers many imports to keep its start
fast. An import opens and stats files, which the seccomp filters refuse once the guest runs
(and which a jail may hide), so a filtered (or jailed) VMM imports them all first.
"""
from __future__ import annotations

import importlib
import pkgutil

# pyrite's packages a VMM process runs code from (the unikernel toolchain and the function
# service are other programs).
PACKAGES = ("pyrite.kvm", "pyrite.arch", "pyrite.devices", "pyrite.config", "pyrite.vmm", "pyrite.snapshot",
            "pyrite.api", "pyrite.seccomp")
MODULES = ("pyrite.memory",
           # The standard library's, imported lazily by pyrite or by the standard library itself:
           "traceback", "linecache", "tokenize", "enum", "json", "socket", "zlib", "struct", "select",
           "encodings.idna", "encodings.ascii", "encodings.latin_1")


def preload() -> None:
    # glibc's pthread_exit (a daemon thread ended at interpreter exit) dlopens libgcc_s for
    # unwinding on first use; loaded now, that needs no openat later.
    import ctypes
    ctypes.CDLL("libgcc_s.so.1")
    for name in MODULES:
        importlib.import_module(name)
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.walk_packages(package.__path__, package_name + "."):
            importlib.import_module(info.name)
    # The entropy device's DRBG: its first use imports _ssl and reads OpenSSL's configuration.
    from pyrite.devices.virtio.rng.backend import drbg_random
    drbg_random(1)
