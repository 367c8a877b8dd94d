"""Whether a kernel image is a pyrite library-OS image: an ELF64 file with a `.pyrite.info`
section (see src/pyrite/unikernel/libos/README.md). Cheap (os and struct only): `pyrite run`
asks on every start, and the builder asks whether the guest reads a serial break as the end
of its input."""
from __future__ import annotations

import os
import struct

INFO_SECTION = b".pyrite.info"


def is_pyrite_image(path: str | os.PathLike) -> bool:
    """Whether `path` is an ELF64 file with a `.pyrite.info` section (a pyrite unikernel)."""
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
