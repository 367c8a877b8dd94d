"""Everything pyrite's VMM may import, imported now: once pivot_root has hidden the host, no
module, extension or codec can be loaded from disk any more.

`preload_vmm()` imports every module of the VMM's packages, then, transitively, every module
named by an import statement anywhere in their source (including the imports that functions
make lazily), and the text codecs the VMM uses. Optional third-party modules that are not
installed (zstandard, lz4) are skipped: the VMM reports them missing as it would unjailed.
The seccomp filters can use the same list to know what the VMM loads.
"""
from __future__ import annotations

import codecs
import importlib
import importlib.util
import pkgutil
import sys
import types
from dis import opmap

VMM_PACKAGES = ("pyrite.api", "pyrite.vmm", "pyrite.kvm", "pyrite.devices", "pyrite.arch",
                "pyrite.config", "pyrite.snapshot")
VMM_MODULES = ("pyrite", "pyrite.memory")
# Modules of those packages that run in other processes (`pyrite snapshot`, `pyrite uffd-handler`).
NOT_IN_THE_VMM = ("pyrite.snapshot.cli", "pyrite.snapshot.uffd_handler")
CODECS = ("ascii", "latin-1", "utf-8", "idna")
# Imported lazily by the standard library itself when something goes wrong (tracebacks in logs).
_LOAD_CONST, _IMPORT_NAME = opmap["LOAD_CONST"], opmap["IMPORT_NAME"]
_EXTENDED_ARG, _CACHE = opmap["EXTENDED_ARG"], opmap.get("CACHE", -1)
_IMPORT_NAME_BYTE = bytes([_IMPORT_NAME])
STDLIB_EXTRAS = ("traceback", "linecache", "tokenize", "encodings.idna")


def vmm_module_names() -> list[str]:
    names = list(VMM_MODULES)
    for package in VMM_PACKAGES:
        module = importlib.import_module(package)
        names.append(package)
        names += [info.name for info in pkgutil.walk_packages(module.__path__, package + ".")]
    return [name for name in names if name not in NOT_IN_THE_VMM]


def preload_vmm() -> list[str]:
    """Import what pyrite's VMM needs; returns the names of the modules loaded, sorted."""
    queue = vmm_module_names() + list(STDLIB_EXTRAS)
    seen: set[str] = set()
    while queue:
        name = queue.pop()
        if name in seen or name in NOT_IN_THE_VMM:
            continue
        seen.add(name)
        module = _import(name)
        if module is not None and name.startswith("pyrite"):
            queue += _imports_in(module)
    for name in CODECS:
        codecs.lookup(name)
    return sorted(sys.modules)


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError:
        return None  # an attribute named in `from x import y`, or an optional module not installed


def _imports_in(module) -> list[str]:
    """The modules that `module`'s functions import when they run (its module-level imports
    have run already): IMPORT_NAME in their compiled code, with the level and from-list
    loaded just before it."""
    spec = getattr(module, "__spec__", None)
    if spec is None:
        return []
    package = spec.parent if spec.submodule_search_locations is None else spec.name
    found: list[str] = []
    stack = _function_code(module)
    while stack:
        code = stack.pop()
        stack += [c for c in code.co_consts if isinstance(c, types.CodeType)]
        ops = code.co_code
        if _IMPORT_NAME_BYTE not in ops:   # most functions import nothing: skip the walk
            continue
        consts: list = []  # the last two LOAD_CONST values: level, from-list
        for i in range(0, len(ops), 2):
            op, arg = ops[i], ops[i + 1]
            if op == _LOAD_CONST:
                consts = [consts[-1] if consts else None, code.co_consts[arg]]
            elif op == _IMPORT_NAME and len(consts) == 2 and isinstance(consts[0], int):
                level, fromlist = consts
                name = code.co_names[arg]
                base = importlib.util.resolve_name("." * level + name, package) if level else name
                found.append(base)
                found += [f"{base}.{n}" for n in (fromlist or ()) if n != "*"]
            elif op != _EXTENDED_ARG and op != _CACHE:
                consts = []
    return found


def _function_code(module) -> list[types.CodeType]:
    """The code of the functions and methods defined in `module` (nested ones are in their
    constants)."""
    codes = []
    for value in vars(module).values():
        if isinstance(value, types.FunctionType):
            if value.__module__ == module.__name__:
                codes.append(value.__code__)
        elif isinstance(value, type) and value.__module__ == module.__name__:
            for member in vars(value).values():
                if isinstance(member, (staticmethod, classmethod)):
                    member = member.__func__
                if isinstance(member, types.FunctionType):
                    codes.append(member.__code__)
                elif isinstance(member, property):
                    codes += [f.__code__ for f in (member.fget, member.fset) if isinstance(f, types.FunctionType)]
    return codes
