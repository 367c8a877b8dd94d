"""pyrite's snapshot state file: a header, a tree of plain values, and a CRC over all of it.

    magic "PYRITEVM" | version u32 | body length u64 | body | CRC-32 (zlib) of all before it

The body is one value, encoded as a tag byte and its payload (little-endian):

    N None   T True   F False   I int (u32 length + two's-complement bytes)
    B bytes (u32 length + bytes)   S str (u32 length + UTF-8)
    L list (u32 count + values)    D dict (u32 count + (str key, value) pairs)

Every length and count is checked against the bytes that remain before anything is
allocated, nesting is bounded, and the whole file is bounded by MAX_STATE_BYTES, so that a
corrupt or hostile file is refused with a SnapshotFormatError naming what is wrong.
"""
from __future__ import annotations

import os
import struct
import zlib

MAGIC = b"PYRITEVM"
VERSION = 1
MAX_STATE_BYTES = 64 << 20          # far above a 32-vCPU VM's state (~50 KiB per vCPU)
MAX_DEPTH = 32
_HEADER = struct.Struct("<8sIQ")
_U32 = struct.Struct("<I")
_CRC = struct.Struct("<I")


class SnapshotFormatError(Exception):
    """A state file that cannot be read: truncated, corrupted, another format or version."""


# -- encoding ------------------------------------------------------------------------------

def encode(value) -> bytes:
    """The whole file for `value` (None, bool, int, bytes, str, list/tuple, dict with str keys)."""
    out = bytearray()
    _encode(value, out, 0)
    data = _HEADER.pack(MAGIC, VERSION, len(out)) + out
    return bytes(data + _CRC.pack(zlib.crc32(data)))


def _encode(value, out: bytearray, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError("snapshot state nests too deeply")
    if value is None:
        out += b"N"
    elif value is True:
        out += b"T"
    elif value is False:
        out += b"F"
    elif isinstance(value, int):
        raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
        out += b"I" + _U32.pack(len(raw)) + raw
    elif isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        out += b"B" + _U32.pack(len(raw)) + raw
    elif isinstance(value, str):
        raw = value.encode()
        out += b"S" + _U32.pack(len(raw)) + raw
    elif isinstance(value, (list, tuple)):
        out += b"L" + _U32.pack(len(value))
        for item in value:
            _encode(item, out, depth + 1)
    elif isinstance(value, dict):
        out += b"D" + _U32.pack(len(value))
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"snapshot state: dict key {key!r} is not a str")
            _encode(key, out, depth + 1)
            _encode(item, out, depth + 1)
    else:
        raise TypeError(f"snapshot state cannot hold a {type(value).__name__}")


# -- decoding ------------------------------------------------------------------------------

def decode(data: bytes | memoryview):
    """The value in a whole state file; SnapshotFormatError says why the file is refused."""
    data = memoryview(data)
    if len(data) < _HEADER.size + _CRC.size:
        raise SnapshotFormatError(f"truncated: {len(data)} bytes is shorter than the header")
    magic, version, length = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise SnapshotFormatError("not a pyrite snapshot state file (bad magic)")
    if version != VERSION:
        raise SnapshotFormatError(f"state file format version {version}; this pyrite reads version {VERSION}")
    expected = _HEADER.size + length + _CRC.size
    if len(data) < expected:
        raise SnapshotFormatError(f"truncated: {len(data)} bytes, the header says {expected}")
    if len(data) > expected:
        raise SnapshotFormatError(f"{len(data) - expected} bytes of garbage after the state")
    (crc,) = _CRC.unpack_from(data, expected - _CRC.size)
    if zlib.crc32(data[:expected - _CRC.size]) != crc:
        raise SnapshotFormatError("corrupted: the CRC does not match the contents")
    reader = _Reader(data[_HEADER.size:expected - _CRC.size])
    value = reader.value(0)
    if reader.pos != len(reader.data):
        raise SnapshotFormatError("corrupted: bytes left over after the state")
    return value


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: memoryview):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> memoryview:
        if n > len(self.data) - self.pos:
            raise SnapshotFormatError(f"corrupted: a length of {n} runs past the end of the state")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def length(self) -> int:
        return _U32.unpack(self.take(4))[0]

    def value(self, depth: int):
        if depth > MAX_DEPTH:
            raise SnapshotFormatError("corrupted: the state nests too deeply")
        tag = bytes(self.take(1))
        if tag == b"N":
            return None
        if tag == b"T":
            return True
        if tag == b"F":
            return False
        if tag == b"I":
            return int.from_bytes(self.take(self.length()), "little", signed=True)
        if tag == b"B":
            return bytes(self.take(self.length()))
        if tag == b"S":
            try:
                return str(self.take(self.length()), "utf-8")
            except UnicodeDecodeError:
                raise SnapshotFormatError("corrupted: a string is not UTF-8") from None
        if tag in (b"L", b"D"):
            count = self.length()
            if count > len(self.data) - self.pos:   # every item takes at least one byte
                raise SnapshotFormatError(f"corrupted: a count of {count} runs past the end of the state")
            if tag == b"L":
                return [self.value(depth + 1) for _ in range(count)]
            result = {}
            for _ in range(count):
                key = self.value(depth + 1)
                if not isinstance(key, str):
                    raise SnapshotFormatError("corrupted: a dict key is not a string")
                result[key] = self.value(depth + 1)
            return result
        raise SnapshotFormatError(f"corrupted: unknown value tag {tag!r}")


# -- files ---------------------------------------------------------------------------------

def read_file(path: str):
    """The value in the state file at `path` (OSError if it cannot be read)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > MAX_STATE_BYTES:
            raise SnapshotFormatError(f"{size} bytes is larger than any pyrite state file "
                                      f"({MAX_STATE_BYTES} at most)")
        return decode(f.read())


def read_version(path: str) -> int:
    """The format version of the state file at `path`, once the whole file checks out (decode
    refuses any version but VERSION, naming it)."""
    read_file(path)
    return VERSION
