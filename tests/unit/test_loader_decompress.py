import os
import shutil
import struct
import subprocess

import pytest

from loader_images import compress, size_append
from pyrite.arch.x86_64.loader.decompress import MAGICS, decompress, detect_format
from pyrite.arch.x86_64.loader.errors import (DecompressError, DecompressorMissingError,
                                              UnknownCompressionError)


@pytest.mark.parametrize("fmt", ["gzip", "xz", "lzma", "bzip2", "zstd", "lz4"])
def test_detects_and_round_trips_every_format_with_the_kernels_size_trailer(fmt):
    if fmt == "lz4" and not shutil.which("lz4"):
        pytest.skip("the lz4 command is not installed")
    raw = os.urandom(3000) + bytes(50000)
    packed = compress(fmt, raw)
    assert detect_format(packed) == fmt
    assert bytes(decompress(memoryview(packed), "vmlinuz")) == raw


def test_magic_table_has_distinct_prefixes():
    magics = [m for _, m in MAGICS]
    assert all(not a.startswith(b) for a in magics for b in magics if a is not b)


@pytest.mark.skipif(not shutil.which("lz4"), reason="the lz4 command is not installed")
def test_lz4_legacy_frame_with_several_8mib_blocks():
    raw = (os.urandom(64) * 4096) * 36                     # 9 MiB: two legacy blocks
    packed = subprocess.run(["lz4", "-l", "-1", "-c"], input=raw, stdout=subprocess.PIPE,
                            check=True).stdout
    assert struct.unpack_from("<I", packed, 4)[0] < len(packed)   # a first block header
    assert bytes(decompress(size_append(packed, len(raw)), "k")) == raw
    assert bytes(decompress(packed, "k")) == raw            # without the trailer too


@pytest.mark.skipif(not shutil.which("lz4"), reason="the lz4 command is not installed")
def test_lz4_trailer_that_is_not_the_size_is_a_truncated_block():
    packed = compress("lz4", b"hello world" * 100)[:-4] + struct.pack("<I", 12345)
    with pytest.raises(DecompressError, match=r"^k: lz4 payload is truncated: block at 0x[0-9a-f]+ "
                                              r"needs 0x3039"):
        decompress(packed, "k")


def test_lz4_block_larger_than_a_legacy_block_can_hold():
    bad = bytes.fromhex("02214c18") + struct.pack("<I", 0x900000) + bytes(16)
    with pytest.raises(DecompressError, match="lz4 payload is corrupt: block at 0x4 claims 0x900000 bytes"):
        decompress(bad, "k")


def test_unknown_format_names_the_first_bytes():
    with pytest.raises(UnknownCompressionError, match=r"^k: unknown compression format "
                                                      r"\(first bytes de ad be ef 00 01\)"):
        decompress(bytes.fromhex("deadbeef000102"), "k")


def test_lzo_is_known_but_has_no_decompressor():
    with pytest.raises(DecompressorMissingError, match="^k: lzo payloads are not supported"):
        decompress(b"\x89LZO\0\r\n\x1a\n", "k")


def test_bad_lzma_header_is_corrupt():
    with pytest.raises(DecompressError, match="^k: lzma payload is (corrupt|truncated)"):
        decompress(b"\x5d\x00\x00" + b"\xff" * 64, "k")
