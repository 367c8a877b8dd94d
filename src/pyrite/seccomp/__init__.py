"""Seccomp filters for the VMM's threads, as Firecracker has them: one filter per thread
category ("vmm": the event loop and the main thread, "api": the API server, "vcpu": each vCPU),
described in Firecracker's seccompiler JSON format (pyrite.seccomp.spec), compiled with
libseccomp (pyrite.seccomp.libseccomp, pyrite.seccomp.program), installed by each thread for
itself before the guest runs. A refused system call traps: pyrite.seccomp.sigsys logs its
number and name and ends the process with exit code 148, as Firecracker does.

pyrite's own filters are default.json beside this file: start from it to write your own.
"""
from __future__ import annotations

import os

from .program import Program, SeccompInstallError, compile_filters, name_thread  # noqa: F401
from .spec import CATEGORIES, SeccompFilterError  # noqa: F401

DEFAULT_FILTER = os.path.join(os.path.dirname(__file__), "default.json")

_default_text: bytes | None = None


def default_description() -> bytes:
    """default.json's text, read once: pyrite.api.preload reads it before a jail hides it."""
    global _default_text
    if _default_text is None:
        with open(DEFAULT_FILTER, "rb") as f:
            _default_text = f.read()
    return _default_text


def load_filters(path: str | None = None) -> dict[str, Program]:
    """The programs of the description in `path` (pyrite's default.json when None), by
    category. SeccompFilterError names the file and what is wrong in it."""
    from .spec import parse, read
    if path is None:
        return compile_filters(parse(default_description(), DEFAULT_FILTER))
    return compile_filters(read(path))
