import pytest

from loader_images import MiB, Elf, Seg, aout_kludge, multiboot_header
from pyrite.arch.x86_64.loader import LoaderError, MultibootError, load_kernel
from pyrite.memory import GuestMemory

MB_FLAGS = 0b11          # page-align modules, memory info: both supported


@pytest.fixture
def mem():
    m = GuestMemory([(0, 16 * MiB)])
    m.write(0, b"\xaa" * (16 * MiB))
    yield m
    m.close()


def code(n: int) -> bytes:
    return bytes(i & 0xFF for i in range(n))


def test_elf32_multiboot_kernel_loads_its_segments(mem):
    image = Elf([Seg(0x100000, code(0x300), memsz=0x1000)], entry=0x100010, bits=32,
                head_extra=multiboot_header(MB_FLAGS)).build()
    result = load_kernel(mem, image, name="mb.elf")
    assert (result.protocol, result.entry, result.kernel_start, result.kernel_end) == \
        ("multiboot", 0x100010, 0x100000, 0x101000)
    assert mem.read(0x100000, 0x300) == code(0x300)
    assert mem.read(0x100300, 0xD00) == bytes(0xD00)
    assert result.setup_header is None


def test_elf64_multiboot_kernel_with_virtual_entry(mem):
    seg = Seg(0x200000, code(0x100), vaddr=0xFFFFFFFF80200000)
    image = Elf([seg], entry=0xFFFFFFFF80200020, head_extra=multiboot_header(MB_FLAGS)).build()
    result = load_kernel(mem, image)
    assert (result.protocol, result.entry) == ("multiboot", 0x200020)


def test_elf64_multiboot_entry_must_be_32bit():
    mem = GuestMemory([(0, 2 * MiB), (4 << 30, 2 * MiB)])
    image = Elf([Seg(0x100000000, code(0x100))], entry=0x100000000,
                head_extra=multiboot_header(MB_FLAGS)).build()
    with pytest.raises(MultibootError, match=r"Multiboot entry 0x100000000 \(e_entry\) is not a 32-bit"):
        load_kernel(mem, image)


def test_header_with_bad_checksum_is_not_a_header(mem):
    image = Elf([Seg(0x100000, code(16))], entry=0x100000, bits=32,
                head_extra=multiboot_header(MB_FLAGS, checksum=0)).build()
    with pytest.raises(LoaderError, match="32-bit ELF images are not supported"):
        load_kernel(mem, image)


def test_aout_kludge_loads_flat_binary_with_bss(mem):
    image = aout_kludge(0x100000, code(0x400), bss=0x800, entry_offset=0x60)
    result = load_kernel(mem, image, name="kernel.bin")
    assert (result.protocol, result.entry, result.kernel_start, result.kernel_end) == \
        ("multiboot", 0x100060, 0x100000, 0x100C00)
    assert mem.read(0x100000, 0x400) == image
    assert mem.read(0x100400, 0x800) == bytes(0x800)
    assert mem.read(0x100C00, 4) == b"\xaa" * 4


def test_aout_kludge_load_end_limits_what_is_copied(mem):
    image = aout_kludge(0x100000, code(0x400), load_end=0x100200)
    result = load_kernel(mem, image)
    assert result.kernel_end == 0x100200
    assert mem.read(0x100000, 0x200) == image[:0x200]
    assert mem.read(0x100200, 4) == b"\xaa" * 4


def test_aout_kludge_header_addr_offsets_into_the_file(mem):
    # A 0x100-byte file prefix that is not loaded: the header at file offset 0x120 is
    # header_addr 0x100020, so loading starts at file offset 0x100.
    body = aout_kludge(0x100000, code(0x300), header_offset=0x20)
    image = b"\xff" * 0x100 + body
    result = load_kernel(mem, image)
    assert result.entry == 0x100040
    assert mem.read(0x100000, 0x300) == body


def test_aout_kludge_in_an_elf_file_wins_over_elf_segments(mem):
    # GRUB and QEMU load by the address fields when flags bit 16 is set.
    hdr = multiboot_header(1 << 16, (0x300000 + 0x40, 0x300000, 0, 0, 0x300100))
    image = Elf([Seg(0x100000, code(0x20))], entry=0x100000, bits=32, head_extra=hdr).build()
    result = load_kernel(mem, image)
    assert (result.entry, result.kernel_start) == (0x300100, 0x300000)
    header_at = image.index(hdr)            # file offset of header_addr, 0x300040
    assert mem.read(0x300000, 0x40 + len(hdr)) == image[header_at - 0x40:header_at + len(hdr)]


def test_video_mode_requirement_is_refused(mem):
    with pytest.raises(MultibootError, match=r"^kernel: Multiboot header at 0x20 requires video mode "
                                             r"information \(flags bit 2\)"):
        load_kernel(mem, aout_kludge(0x100000, code(0x100), flags=1 << 16 | 1 << 2))


def test_unknown_required_flag_is_refused_and_named(mem):
    with pytest.raises(MultibootError, match=r"requires unsupported features \(flags bits 5, 9; "):
        load_kernel(mem, aout_kludge(0x100000, code(0x100), flags=1 << 16 | 1 << 5 | 1 << 9))


def test_unknown_optional_flag_is_ignored(mem):
    assert load_kernel(mem, aout_kludge(0x100000, code(0x100), flags=1 << 16 | 1 << 20)).entry == 0x100040


@pytest.mark.parametrize("kw, message", [
    (dict(header_addr=0xFFFF0), r"header_addr 0xffff0 is below load_addr 0x100000"),
    (dict(header_addr=0x101000), r"load_addr 0x100000 lies 0x1000 bytes before header_addr, "
                                 r"before the start"),
    (dict(load_end=0x100400), r"truncated: Multiboot header at 0x20 loads \[0x100000, 0x100400\) from file "
                              r"offset 0x0, past end of file \(0x100 bytes\)"),
    (dict(load_end=0x100010), r"load_end_addr 0x100010 ends before the header itself"),
    (dict(bss_end=0x100080), r"bss_end_addr 0x100080 is below load_end_addr 0x100100"),
    (dict(entry_offset=0x200), r"entry_addr 0x100200 is outside the loaded image \[0x100000, 0x100100\)"),
])
def test_inconsistent_address_fields(mem, kw, message):
    where = "" if "truncated" in message else r"Multiboot header at 0x20: "
    with pytest.raises(MultibootError, match=r"^img: " + where + message):
        load_kernel(mem, aout_kludge(0x100000, code(0x100), **kw), name="img")


def test_aout_kludge_below_1mib_is_refused(mem):
    with pytest.raises(MultibootError, match=r"image \[0x10000, 0x10100\) starts below 0x100000"):
        load_kernel(mem, aout_kludge(0x10000, code(0x100)))


def test_aout_kludge_past_ram_is_refused(mem):
    with pytest.raises(MultibootError, match=r"does not fit in 16 MiB of guest memory"):
        load_kernel(mem, aout_kludge(0xFF0000, code(0x100), bss=0x100000))


def test_header_beyond_8kib_is_not_found(mem):
    image = bytes(8192) + aout_kludge(0x100000, code(0x100), header_offset=0)
    with pytest.raises(LoaderError, match="unknown image format"):
        load_kernel(mem, image)


def test_header_cut_by_the_8kib_limit(mem):
    image = bytearray(8192 + 0x100)
    image[8180:8192] = multiboot_header(1 << 16)       # address fields would end past 8 KiB
    with pytest.raises(MultibootError, match=r"truncated: Multiboot header at 0x1ff4 with address fields "
                                             r"\(flags bit 16\) ends at 0x2014, past the first 8 KiB"):
        load_kernel(mem, bytes(image))


def test_non_elf_without_address_fields(mem):
    image = bytes(0x20) + multiboot_header(MB_FLAGS) + bytes(0x100)
    with pytest.raises(MultibootError, match=r"has no address fields \(flags bit 16\) and the "
                                             r"image is not ELF"):
        load_kernel(mem, image)
