"""Seccomp filters for the VMM's threads, as Firecracker has them: one filter per thread
category ("vmm": the event loop and the main thread, "api": the API server, "vcpu": each vCPU),
described in Firecracker's seccompiler JSON format (pyrite.seccomp.spec), compiled with
libseccomp (pyrite.seccomp.libseccomp, pyrite.seccomp.program) once per description and
libseccomp version (pyrite.seccomp.cache), installed by each thread for
itself before the guest runs. A refused system call traps: pyrite.seccomp.sigsys logs its
number and name and ends the process with exit code 148, as Firecracker does.

pyrite's own filters are default.json beside this file: start from it to write your own.
"""
from __future__ import annotations

import os

from .cache import Compiled, compiled
from .program import Program, SeccompInstallError, compile_filters, name_thread  # noqa: F401
from .spec import CATEGORIES, SeccompFilterError, read_text  # noqa: F401

DEFAULT_FILTER = os.path.join(os.path.dirname(__file__), "default.json")

_default: Compiled | None = None


def default_compiled() -> Compiled:
    """pyrite's default.json compiled, kept for the process: pyrite.api.preload calls this
    before a jail hides the file and the cache."""
    global _default
    if _default is None:
        _default = compiled(read_text(DEFAULT_FILTER), DEFAULT_FILTER)
    return _default


def load_compiled(path: str | None = None) -> Compiled:
    """The description in `path` (pyrite's default.json when None) compiled (pyrite.seccomp.cache).
    SeccompFilterError names the file and what is wrong in it."""
    return default_compiled() if path is None else compiled(read_text(path), path)


def load_filters(path: str | None = None) -> dict[str, Program]:
    """The programs of the description in `path` (pyrite's default.json when None), by category."""
    return load_compiled(path).programs
