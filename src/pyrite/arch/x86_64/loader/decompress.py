"""Decompress a bzImage payload, picking the format by its magic bytes.

gzip, xz, lzma and bzip2 use the standard library; zstd and lz4 need the optional
`zstandard` and `lz4` packages (pip install pyrite[compression]), imported only when used.
The kernel's build appends the uncompressed size as 4 bytes after the stream: trailing
bytes after a complete stream are therefore accepted.
"""
from __future__ import annotations

from collections.abc import Callable

from .errors import DecompressError, DecompressorMissingError, UnknownCompressionError

Buffer = bytes | bytearray | memoryview

# (format, magic) in the order they are tried; protocol tables are data.
MAGICS: tuple[tuple[str, bytes], ...] = (
    ("gzip", b"\x1f\x8b"),
    ("xz", b"\xfd7zXZ\x00"),
    ("lzma", b"\x5d\x00\x00"),
    ("bzip2", b"BZh"),
    ("zstd", b"\x28\xb5\x2f\xfd"),
    ("lz4", b"\x02\x21\x4c\x18"),    # LZ4 legacy frame, as the kernel's `lz4 -l` writes it
    ("lzo", b"\x89LZO"),             # known, but pyrite has no decompressor for it
)

LZ4_LEGACY_MAGIC = 0x184C2102
LZ4_LEGACY_BLOCK = 8 << 20           # uncompressed size of every block but the last
LZ4_LEGACY_BOUND = LZ4_LEGACY_BLOCK + LZ4_LEGACY_BLOCK // 255 + 16   # LZ4_COMPRESSBOUND


def detect_format(data: Buffer) -> str | None:
    head = bytes(data[:6])
    for fmt, magic in MAGICS:
        if head.startswith(magic):
            return fmt
    return None


def decompress(data: Buffer, name: str) -> bytes | bytearray:
    """The whole decompressed payload; errors name `name` and the format."""
    fmt = detect_format(data)
    if fmt is None:
        first = " ".join(f"{b:02x}" for b in bytes(data[:6]))
        raise UnknownCompressionError(f"{name}: unknown compression format (first bytes {first})")
    decoder = _DECODERS.get(fmt)
    if decoder is None:
        raise DecompressorMissingError(f"{name}: {fmt} payloads are not supported")
    return decoder(data, name)


def _stream(fmt: str, name: str, decoder, errors: tuple[type[Exception], ...],
            data: Buffer) -> bytes:
    """Run a one-stream decompressor object (zlib/lzma/bz2 style) over all of `data`."""
    try:
        out = decoder.decompress(data)
    except errors as e:
        raise DecompressError(f"{name}: {fmt} payload is corrupt: {e}") from e
    if not decoder.eof:
        raise DecompressError(f"{name}: {fmt} payload is truncated: the stream ends early "
                              f"after {len(data):#x} input bytes")
    return out


def _gzip(data: Buffer, name: str) -> bytes:
    import zlib
    return _stream("gzip", name, zlib.decompressobj(16 + zlib.MAX_WBITS), (zlib.error,), data)


def _xz(data: Buffer, name: str) -> bytes:
    import lzma
    return _stream("xz", name, lzma.LZMADecompressor(lzma.FORMAT_XZ), (lzma.LZMAError,), data)


def _lzma(data: Buffer, name: str) -> bytes:
    import lzma
    return _stream("lzma", name, lzma.LZMADecompressor(lzma.FORMAT_ALONE),
                   (lzma.LZMAError,), data)


def _bzip2(data: Buffer, name: str) -> bytes:
    import bz2
    return _stream("bzip2", name, bz2.BZ2Decompressor(), (OSError, ValueError), data)


def _zstd(data: Buffer, name: str) -> bytes:
    try:
        import zstandard
    except ImportError as e:
        raise DecompressorMissingError(f"{name}: zstd payload needs the zstandard module: "
                                       "install pyrite[compression]") from e
    return _stream("zstd", name, zstandard.ZstdDecompressor().decompressobj(),
                   (zstandard.ZstdError,), data)


def _lz4_legacy(data: Buffer, name: str) -> bytearray:
    """LZ4 legacy frame: magic, then blocks of (4-byte compressed length, data); a repeated
    magic starts a new frame; 4 trailing bytes equal to the output size are the kernel's."""
    try:
        import lz4.block
    except ImportError as e:
        raise DecompressorMissingError(f"{name}: lz4 payload needs the lz4 module: "
                                       "install pyrite[compression]") from e
    view = memoryview(data)
    out = bytearray()
    pos, size = 4, len(view)
    while pos < size:
        if size - pos < 4:
            raise DecompressError(f"{name}: lz4 payload is truncated: {size - pos} stray bytes "
                                  f"at {pos:#x}")
        length = int.from_bytes(view[pos:pos + 4], "little")
        if size - pos == 4 and length == len(out) & 0xFFFFFFFF:
            break  # the uncompressed size the kernel's build appends
        pos += 4
        if length == LZ4_LEGACY_MAGIC:
            continue
        if length > LZ4_LEGACY_BOUND:
            raise DecompressError(f"{name}: lz4 payload is corrupt: block at {pos - 4:#x} claims "
                                  f"{length:#x} bytes, more than a legacy block can hold")
        if pos + length > size:
            raise DecompressError(f"{name}: lz4 payload is truncated: block at {pos - 4:#x} "
                                  f"needs {length:#x} bytes, {size - pos:#x} remain")
        try:
            out += lz4.block.decompress(view[pos:pos + length],
                                        uncompressed_size=LZ4_LEGACY_BLOCK)
        except lz4.block.LZ4BlockError as e:
            raise DecompressError(f"{name}: lz4 payload is corrupt: block at {pos - 4:#x}: "
                                  f"{e}") from e
        pos += length
    return out


_DECODERS: dict[str, Callable[[Buffer, str], bytes | bytearray]] = {
    "gzip": _gzip, "xz": _xz, "lzma": _lzma, "bzip2": _bzip2, "zstd": _zstd, "lz4": _lz4_legacy,
}
