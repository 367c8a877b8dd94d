"""Compiled filters cached on disk, as Firecracker compiles its own when it is built: the BPF
programs libseccomp made for a filter description, and libseccomp's system call names (the
SIGSYS handler's table), in $PYRITE_CACHE/seccomp/<key>.json (~/.cache/pyrite). The key is the
SHA-256 of the description's text, libseccomp's version and FORMAT, so an edited description or
another libseccomp compiles afresh. Reading the file replaces parsing, compiling and ~500 name
look-ups (0.6 ms instead of 2.8 on an idle machine, before the VMM accepts InstanceStart); a
missing, unreadable or damaged entry is compiled again and rewritten (atomically).
"""
from __future__ import annotations

import hashlib
import json
import os

from pyrite.unikernel.cache import cache_root   # no heavy imports: the path only

from . import libseccomp
from .program import Program, compile_filters
from .spec import CATEGORIES, parse

FORMAT = 1   # bump when pyrite compiles a description differently (spec.py, program.py)
MAX_SYSCALL = 512


class Compiled:
    """A description's programs by category, and the system call names by number."""
    __slots__ = ("programs", "names")

    def __init__(self, programs: dict[str, Program], names: list[str | None]):
        self.programs, self.names = programs, names


def compiled(text: bytes, source: str) -> Compiled:
    """`text` (the description read from `source`) compiled, from the cache when it holds it.
    SeccompFilterError names a mistake in the description."""
    path = cache_path(text)
    # No home (a jailed VMM: no HOME, no /etc/passwd) gives a relative path: no cache then.
    found = _read(path) if os.path.isabs(path) else None
    if found is not None:
        return found
    result = Compiled(compile_filters(parse(text, source)),
                      [libseccomp.syscall_name(nr) for nr in range(MAX_SYSCALL)])
    if os.path.isabs(path):
        _write(path, result)
    return result


def cache_path(text: bytes) -> str:
    key = hashlib.sha256(f"{FORMAT} {libseccomp.version()}\n".encode() + text).hexdigest()
    return os.path.join(cache_root(), "seccomp", key[:32] + ".json")


def _read(path: str) -> Compiled | None:
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
        programs = {c: bytes.fromhex(doc["programs"][c]) for c in CATEGORIES}
        names = doc["names"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if any(not bpf or len(bpf) % 8 for bpf in programs.values()) or not isinstance(names, list) \
            or len(names) != MAX_SYSCALL or not all(n is None or isinstance(n, str) for n in names):
        return None
    return Compiled({c: Program(c, bpf) for c, bpf in programs.items()}, names)


def _write(path: str, result: Compiled) -> None:
    doc = {"programs": {c: p.bpf.hex() for c, p in result.programs.items()}, "names": result.names}
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(temporary, "w") as f:
            json.dump(doc, f)
        os.replace(temporary, path)
    except OSError:   # a read-only or full cache: compiled again next time
        try:
            os.unlink(temporary)
        except OSError:
            pass
