import shutil
import sys

import pytest

from loader_images import MiB, BzImage, Elf, Seg, compress, pvh_note
from pyrite.arch.x86_64.loader import BzImageError, DecompressError, ElfError, load_kernel
from pyrite.memory import GuestMemory

KERNEL_VA = 0xFFFFFFFF81000000
FORMATS = ["gzip", "xz", "lzma", "bzip2", "zstd", "lz4"]


@pytest.fixture
def mem():
    m = GuestMemory([(0, 64 * MiB)])
    yield m
    m.close()


def vmlinux(pvh: bool = False) -> bytes:
    text = b"\x48\x31\xc0" * 0x2000
    return Elf([Seg(0x1000000, text, vaddr=KERNEL_VA),
                Seg(0x1400000, b"rodata!" * 100, memsz=0x10000, vaddr=KERNEL_VA + 0x400000)],
               entry=0x1000000, notes=pvh_note(0x1000100) if pvh else None).build()


def needs_tool(fmt):
    if fmt == "lz4" and not shutil.which("lz4"):
        pytest.skip("the lz4 command (for legacy-frame fixtures) is not installed")


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_compression_is_decompressed_and_loaded_as_elf(mem, fmt):
    needs_tool(fmt)
    bz = BzImage(compress(fmt, vmlinux()))
    image = bz.build()
    result = load_kernel(mem, image, name="vmlinuz")
    assert result.protocol == "linux64"
    assert result.entry == 0x1000000
    assert (result.kernel_start, result.kernel_end) == (0x1000000, 0x1410000)
    assert mem.read(0x1000000, 0x6000) == b"\x48\x31\xc0" * 0x2000
    assert mem.read(0x1400000, 7) == b"rodata!"
    # the zero page gets the setup header: bytes 0x1f1 up to 0x202 + the jump byte at 0x201
    assert result.setup_header == image[0x1F1:0x26C]
    assert result.image == "vmlinuz"


def test_pvh_note_in_the_payload_selects_pvh_and_keeps_the_header(mem):
    image = BzImage(compress("gzip", vmlinux(pvh=True))).build()
    result = load_kernel(mem, image)
    assert (result.protocol, result.entry) == ("pvh", 0x1000100)
    assert result.setup_header == image[0x1F1:0x26C]


def test_setup_sects_zero_means_four(mem):
    image = BzImage(compress("gzip", vmlinux()), setup_sects=0).build()
    assert load_kernel(mem, image).protocol == "linux64"


def test_bzimage_from_a_file(mem, tmp_path):
    path = tmp_path / "vmlinuz-6.1"
    path.write_bytes(BzImage(compress("xz", vmlinux())).build())
    assert load_kernel(mem, path).image == "vmlinuz-6.1"


def test_unknown_payload_falls_back_to_the_64bit_entry_of_the_protected_mode_code(mem):
    bz = BzImage(b"\x01\x02\x03\x04" + bytes(60), init_size=0x800000)
    image = bz.build()
    result = load_kernel(mem, image)
    pm_code = image[5 * 512:]
    assert result.protocol == "linux64"
    assert result.entry == 0x100000 + 0x200
    assert result.kernel_start == 0x100000
    # the kernel decompresses itself to pref_address (aligned load address < 16 MiB) + init_size
    assert result.kernel_end == 0x1000000 + 0x800000
    assert mem.read(0x100000, len(pm_code)) == pm_code
    assert result.setup_header == image[0x1F1:0x26C]


def test_fallback_for_a_non_relocatable_kernel_uses_pref_address(mem):
    bz = BzImage(b"\x01" * 64, relocatable=0, pref_address=0x2000000, init_size=0x100000)
    assert load_kernel(mem, bz.build()).kernel_end == 0x2100000


def test_fallback_needs_room_for_init_size(mem):
    bz = BzImage(b"\x01" * 64, init_size=0x4000000)
    with pytest.raises(BzImageError, match=r"decompression area \(pref_address \+ init_size\) "
                                           r"\[0x1000000, 0x5000000\) does not fit in 64 MiB"):
        load_kernel(mem, bz.build())


def test_fallback_needs_a_64bit_entry(mem):
    bz = BzImage(b"\x01\x02\x03\x04" + bytes(60), xloadflags=0)
    with pytest.raises(BzImageError, match=r"^vmlinuz: cannot decompress the payload here \(vmlinuz: unknown "
                                           r"compression format \(first bytes 01 02 03 04 00 00\)\) and the "
                                           r"kernel has no 64-bit entry point \(xloadflags bit 0"):
        load_kernel(mem, bz.build(), name="vmlinuz")


def test_lzo_payload_falls_back(mem):
    bz = BzImage(b"\x89LZO\x00\r\n\x1a\n" + bytes(60))
    assert load_kernel(mem, bz.build()).entry == 0x100200
    with pytest.raises(BzImageError, match=r"lzo payloads are not supported\) and the kernel has no 64-bit"):
        load_kernel(mem, BzImage(bz.payload, xloadflags=0).build())


@pytest.mark.parametrize("fmt, module", [("zstd", "zstandard"), ("lz4", "lz4.block")])
def test_missing_decompressor_module_falls_back_or_says_what_to_install(mem, monkeypatch, fmt, module):
    needs_tool(fmt)
    payload = compress(fmt, vmlinux())
    monkeypatch.setitem(sys.modules, module, None)     # import now raises ImportError
    assert load_kernel(mem, BzImage(payload).build()).entry == 0x100200
    with pytest.raises(BzImageError, match=r"needs the .* module: install pyrite\[compression\]"):
        load_kernel(mem, BzImage(payload, xloadflags=0).build())


def test_protocol_before_2_08_has_no_payload_fields_nor_a_64bit_entry(mem):
    # xloadflags (and so XLF_KERNEL_64) only exists from protocol 2.12 on
    bz = BzImage(compress("gzip", vmlinux()), version=0x0207)
    with pytest.raises(BzImageError, match=r"\(the header has no payload fields \(protocol < 2.08\)\) "
                                           r"and the kernel has no 64-bit entry point"):
        load_kernel(mem, bz.build())


def test_corrupt_gzip_payload_names_format_and_file(mem):
    payload = bytearray(compress("gzip", vmlinux()))
    payload[-12] ^= 0xFF                                  # inside the gzip CRC32 trailer
    with pytest.raises(DecompressError, match=r"^vmlinuz: gzip payload is corrupt: .*incorrect data check"):
        load_kernel(mem, BzImage(bytes(payload)).build(), name="vmlinuz")


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_payload_is_a_clear_error(mem, fmt):
    needs_tool(fmt)
    payload = compress(fmt, vmlinux())[:-4]
    cut = payload[:len(payload) // 2]
    with pytest.raises(DecompressError, match=rf"^vmlinuz: {fmt} payload is (truncated|corrupt)"):
        load_kernel(mem, BzImage(cut).build(), name="vmlinuz")


# (lz4's legacy frame has no checksum: garbage there decompresses to garbage)
@pytest.mark.parametrize("fmt", ["xz", "bzip2", "zstd"])
def test_garbage_inside_payload_is_corrupt(mem, fmt):
    needs_tool(fmt)
    payload = bytearray(compress(fmt, vmlinux()))
    middle = len(payload) // 2
    payload[middle:middle + 16] = b"\xff" * 16
    with pytest.raises(DecompressError, match=rf"^vmlinuz: {fmt} payload is (corrupt|truncated)"):
        load_kernel(mem, BzImage(bytes(payload)).build(), name="vmlinuz")


def test_decompressed_payload_that_is_not_elf(mem):
    with pytest.raises(BzImageError, match=r"decompressed payload is not an ELF vmlinux "
                                           r"\(first bytes 6e 6f 74 20\)"):
        load_kernel(mem, BzImage(compress("gzip", b"not an elf at all")).build())


def test_errors_in_the_decompressed_elf_name_it(mem):
    bad = bytearray(vmlinux())
    bad[18] = 40                                          # e_machine
    with pytest.raises(ElfError, match=r"^vmlinuz \(decompressed vmlinux\): ELF machine 40"):
        load_kernel(mem, BzImage(compress("gzip", bytes(bad))).build(), name="vmlinuz")


def test_mz_file_without_hdrs(mem):
    image = bytearray(BzImage(b"\x01" * 64).build())
    image[0x202:0x206] = b"\0\0\0\0"
    with pytest.raises(BzImageError, match=r"^vmlinuz: no HdrS magic at 0x202$"):
        load_kernel(mem, bytes(image), name="vmlinuz")


@pytest.mark.parametrize("kw, message", [
    (dict(boot_flag=0x1234), r"boot flag at 0x1fe is 0x1234, not 0xaa55"),
    (dict(version=0x0204), r"boot protocol 2.04 at 0x206 is too old \(pyrite needs 2.06 or later\)"),
    (dict(loadflags=0), r"loadflags bit 0 \(LOADED_HIGH\) is clear: a zImage"),
    (dict(payload_length=0x100000), r"truncated: payload \[0x400, 0x100400\) .* ends past the "
                                    r"protected-mode code"),
])
def test_bad_setup_headers(mem, kw, message):
    with pytest.raises(BzImageError, match=r"^vmlinuz: " + message):
        load_kernel(mem, BzImage(b"\x1f\x8b" + bytes(62), **kw).build(), name="vmlinuz")


def test_truncated_setup_sectors(mem):
    image = BzImage(b"\x01" * 64, setup_sects=30).build()[:0x1000]
    with pytest.raises(BzImageError, match=r"truncated: 30 setup sectors end at 0x3e00, "
                                           r"file has 0x1000 bytes"):
        load_kernel(mem, image)


def test_truncated_setup_header(mem):
    image = BzImage(b"\x01" * 64).build()[:0x240]
    with pytest.raises(BzImageError, match=r"truncated: setup header ends at 0x26c past end of file \(0x240"):
        load_kernel(mem, image)
