"""pyrite's built-in demo guest: apps/demo.c built with the library OS, once.

`pyrite run` without an image boots it, so finding the cached image must cost next to
nothing: the lookup key is the library OS version plus the size and modification time of
every source file (no hashing of contents, no gcc), and gcc is only run when that key
has no image yet.
"""
from __future__ import annotations

import os
import zlib

from pyrite.unikernel.cache import images_dir

_HERE = os.path.dirname(os.path.abspath(__file__))
DEMO_SOURCE = os.path.join(_HERE, "apps", "demo.c")
DEMO_NAME = "pyrite-demo"
_KEY_FILES = (os.path.join(_HERE, "build.py"), DEMO_SOURCE)


def _source_stamp() -> str:
    """A key that changes whenever the demo's source or the library OS changes."""
    parts = []
    for path in _KEY_FILES:
        st = os.stat(path)
        parts.append(f"{path}:{st.st_size}:{st.st_mtime_ns}")
    for directory, subdirs, files in os.walk(os.path.join(_HERE, "libos")):
        subdirs.sort()
        for name in sorted(files):
            st = os.stat(os.path.join(directory, name))
            parts.append(f"{directory}/{name}:{st.st_size}:{st.st_mtime_ns}")
    return f"{zlib.crc32(chr(10).join(parts).encode()):08x}"


def demo_image() -> str:
    """Path of the demo image, built on first use (raises pyrite.unikernel.build.BuildError
    when it cannot be built, e.g. without gcc)."""
    target = os.path.join(images_dir(), f"{DEMO_NAME}-{_source_stamp()}.elf")
    if os.path.exists(target):
        return target
    import shutil
    from pyrite.unikernel.build import build_image
    built = build_image([DEMO_SOURCE], name=DEMO_NAME)
    partial = f"{target}.{os.getpid()}.tmp"
    shutil.copyfile(built, partial)
    os.replace(partial, target)         # whole or not at all, for concurrent first runs
    return target
