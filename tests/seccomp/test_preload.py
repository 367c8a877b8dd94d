"""preload()'s explicit list names every module of the VMM's packages (a module added later
and missing from it would be imported by a filtered thread, and kill the VMM)."""
from __future__ import annotations

import importlib
import pkgutil

from pyrite.api.preload import BUILD_MODULES, MODULES, NOT_IN_A_VMM

PACKAGES = ("pyrite.kvm", "pyrite.arch", "pyrite.devices", "pyrite.config", "pyrite.vmm", "pyrite.snapshot",
            "pyrite.api", "pyrite.seccomp")


def test_the_list_names_every_module_of_the_vmm_packages():
    found = set(PACKAGES)
    for name in PACKAGES:
        package = importlib.import_module(name)
        found |= {info.name for info in pkgutil.walk_packages(package.__path__, name + ".")}
    assert found - set(MODULES) - set(BUILD_MODULES) - set(NOT_IN_A_VMM) == set()
    assert set(MODULES) - found - {"pyrite.memory", "traceback", "linecache", "tokenize", "socket", "zlib",
                                   "json"} == set()
