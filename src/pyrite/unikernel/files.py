"""Pack a directory into a cpio archive in the "newc" format, the initrd of `--files DIR`.

newc (magic ``070701``) is what Linux's initramfs unpacks; the library OS unpacks it into its
root file system at boot. Each entry is a 110-byte ASCII header (13 fields of 8 hex digits),
the NUL-terminated name, padding to 4 bytes, the data, padding to 4 bytes; the archive ends
with an entry named ``TRAILER!!!``. The archive is deterministic: entries sorted by path,
modification times kept, owner and group 0, inode numbers counted from 1. Regular files,
directories and symbolic links are packed; a hard link becomes a copy.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

MAGIC = b"070701"
TRAILER = "TRAILER!!!"
MAX_FILE = 0xFFFFFFFF                   # the header's size field is 32 bits


class FilesError(Exception):
    """The directory cannot be packed; the message names the file and why."""


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _entry(name: str, ino: int, mode: int, mtime: int, data: bytes, nlink: int = 1) -> bytes:
    encoded = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, nlink, mtime, len(data), 0, 0, 0, 0, len(encoded), 0)
    header = MAGIC + b"".join(b"%08x" % field for field in fields)
    return header + encoded + _pad4(len(header) + len(encoded)) + data + _pad4(len(data))


def _walk(root: Path) -> list[Path]:
    """Every path below root, sorted, each directory before what it holds."""
    found = []
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        for name in dirs + files:
            found.append(Path(directory) / name)
    return sorted(found, key=lambda p: p.relative_to(root).parts)


def pack_directory(directory: Path | str) -> bytes:
    """The newc archive of everything under `directory` (not the directory itself)."""
    return b"".join(_entries(directory))


def _entries(directory: Path | str) -> list[bytes]:
    root = Path(directory)
    if not root.is_dir():
        raise FilesError(f"--files {root}: not a directory")
    out = []
    for ino, path in enumerate(_walk(root), start=1):
        name = path.relative_to(root).as_posix()
        try:
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                data = os.readlink(path).encode()
            elif stat.S_ISREG(st.st_mode):
                if st.st_size > MAX_FILE:
                    raise FilesError(f"--files: {path} is larger than 4 GiB, the newc format's limit")
                data = path.read_bytes()
            elif stat.S_ISDIR(st.st_mode):
                data = b""
            else:
                raise FilesError(f"--files: {path} is not a regular file, directory or symbolic link")
        except OSError as e:
            raise FilesError(f"--files: cannot read {path}: {e.strerror}") from e
        out.append(_entry(name, ino, st.st_mode, int(st.st_mtime), data, 2 if stat.S_ISDIR(st.st_mode) else 1))
    out.append(_entry(TRAILER, 0, 0, 0, b""))
    return out


def initrd_path(image: Path | str) -> Path:
    """Where `pyrite unikernel build --files` puts the archive: beside the image, .cpio."""
    return Path(image).with_suffix(".cpio")


def write_archive(directory: Path | str, output: Path | str) -> tuple[Path, int]:
    """Pack `directory` into `output`; returns the path and the number of entries."""
    entries = _entries(directory)
    data = b"".join(entries)
    out = Path(output)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    return out, len(entries) - 1
