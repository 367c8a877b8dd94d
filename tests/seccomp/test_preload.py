"""preload()'s explicit list names every module of the VMM's packages (a module added later
and missing from it would be imported by a filtered thread, and kill the VMM), and every module
their functions import lazily (a jailed VMM could not open it)."""
from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

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


# Run in a fresh interpreter: preload() (the jailer's, the complete one), then every
# module that the functions of pyrite's preloaded modules import when they run (IMPORT_NAME in
# their code, with the level and from-list loaded just before it), followed into the pyrite
# modules they name; prints those that preload() left unimported but that exist (an attribute named in `from x import y`, or an
# optional module not installed, such as zstandard, is not one).
_LAZY_IMPORTS_LEFT = r'''
import importlib, importlib.util, sys, types
from dis import opmap
from pyrite.api.preload import MODULES, NOT_IN_A_VMM, preload

LOAD_CONST, IMPORT_NAME = opmap["LOAD_CONST"], opmap["IMPORT_NAME"]
SKIP = (opmap["EXTENDED_ARG"], opmap.get("CACHE", -1))

def function_code(module):
    codes = []
    for value in vars(module).values():
        if isinstance(value, types.FunctionType) and value.__module__ == module.__name__:
            codes.append(value.__code__)
        elif isinstance(value, type) and value.__module__ == module.__name__:
            for member in vars(value).values():
                member = getattr(member, "__func__", member)
                if isinstance(member, property):
                    codes += [f.__code__ for f in (member.fget, member.fset) if f is not None]
                elif isinstance(member, types.FunctionType):
                    codes.append(member.__code__)
    return codes

def imports_in(module):
    spec = module.__spec__
    package = spec.parent if spec.submodule_search_locations is None else spec.name
    found, stack = [], function_code(module)
    while stack:
        code = stack.pop()
        stack += [c for c in code.co_consts if isinstance(c, types.CodeType)]
        ops, consts = code.co_code, []
        for i in range(0, len(ops), 2):
            op, arg = ops[i], ops[i + 1]
            if op == LOAD_CONST:
                consts = [consts[-1] if consts else None, code.co_consts[arg]]
            elif op == IMPORT_NAME and len(consts) == 2 and isinstance(consts[0], int):
                level, fromlist = consts
                name = code.co_names[arg]
                base = importlib.util.resolve_name("." * level + name, package) if level else name
                found += [base] + [f"{base}.{n}" for n in (fromlist or ()) if n != "*"]
            elif op not in SKIP:
                consts = []
    return found

preload()
loaded = set(sys.modules)
queue = [name for name in MODULES if name.startswith("pyrite")]
seen, lazy = set(), set()
while queue:
    name = queue.pop()
    if name in seen or name in NOT_IN_A_VMM or name not in sys.modules:
        continue
    seen.add(name)
    for found in imports_in(sys.modules[name]):
        lazy.add(found)
        if found.startswith("pyrite"):
            queue.append(found)
left = []
for name in sorted(lazy - loaded - set(NOT_IN_A_VMM)):
    try:
        importlib.import_module(name)
    except ImportError:
        continue
    left.append(name)
print(" ".join(left))
'''


def test_preload_imports_what_the_vmm_functions_import_lazily():
    out = subprocess.run([sys.executable, "-c", _LAZY_IMPORTS_LEFT], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [], "not preloaded: " + out.stdout
