"""What `pyrite run IMAGE ARGS...` needs to know about pyrite images, cheaply (os and
struct only: it runs on every start).

The library OS splits the kernel command line at blanks, with double quotes grouping
(libos/boot/args.c), so ARGS travel as one command line that QEMU's `-append` or
Firecracker's `boot_args` would carry just the same.
"""
from __future__ import annotations

import os
import struct

INFO_SECTION = b".pyrite.info"


class ArgumentError(ValueError):
    """An argument cannot travel on a kernel command line; the message names it."""


def quote_args(args: list[str]) -> str:
    """One command line giving `main` exactly `args` as argv[1:] (before any `--` word,
    NAME=VALUE words become environment variables, as documented for the library OS)."""
    words = []
    for arg in args:
        if '"' in arg:
            raise ArgumentError(f"argument {arg!r}: a double quote cannot be passed on the kernel command line")
        if any(c in arg for c in "\r\n\0"):
            raise ArgumentError(f"argument {arg!r}: line breaks and NUL cannot be passed on the kernel command line")
        words.append(f'"{arg}"' if not arg or any(c in arg for c in " \t") else arg)
    return " ".join(words)


def is_pyrite_image(path: str | os.PathLike) -> bool:
    """Whether `path` is an ELF64 file with a `.pyrite.info` section (a pyrite unikernel,
    whose own default command line applies when the VMM gives none)."""
    try:
        with open(path, "rb") as f:
            header = f.read(64)
            if len(header) < 64 or header[:5] != b"\x7fELF\x02":
                return False
            shoff, = struct.unpack_from("<Q", header, 0x28)
            shentsize, shnum, shstrndx = struct.unpack_from("<HHH", header, 0x3A)
            if shentsize != 64 or not 0 < shnum <= 256 or shstrndx >= shnum:
                return False
            f.seek(shoff)
            table = f.read(shnum * 64)
            if len(table) < shnum * 64:
                return False
            names_offset, names_size = struct.unpack_from("<QQ", table, shstrndx * 64 + 0x18)
            f.seek(names_offset)
            names = f.read(min(names_size, 1 << 16))
    except OSError:
        return False
    for i in range(shnum):
        name_index, = struct.unpack_from("<I", table, i * 64)
        if names[name_index:name_index + len(INFO_SECTION) + 1] == INFO_SECTION + b"\0":
            return True
    return False
