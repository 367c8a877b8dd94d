import struct

import pytest

from loader_images import MiB, Elf, Seg, multiboot_header, note, pvh_note
from pyrite.arch.x86_64.loader import ElfError, LoaderError, load_kernel
from pyrite.memory import GuestMemory

KERNEL_VA = 0xFFFFFFFF81000000


@pytest.fixture
def mem():
    m = GuestMemory([(0, 32 * MiB)])
    m.write(0, b"\xaa" * (32 * MiB))   # stale contents a bss must not keep
    yield m
    m.close()


def vmlinux(**kw) -> Elf:
    text, data = b"\x0f\x01\xc1" * 100, b"DATA" * 64
    args = dict(segments=[Seg(0x200000, text, vaddr=KERNEL_VA),
                          Seg(0x300000, data, memsz=0x3000, vaddr=KERNEL_VA + 0x100000)],
                entry=0x200000)
    args.update(kw)
    return Elf(**args)


def test_elf64_segments_land_at_their_physical_addresses_with_bss_zeroed(mem):
    result = load_kernel(mem, vmlinux().build(), name="vmlinux")
    assert result.protocol == "linux64"
    assert mem.read(0x200000, 300) == b"\x0f\x01\xc1" * 100
    assert mem.read(0x300000, 256) == b"DATA" * 64
    assert mem.read(0x300100, 0x3000 - 0x100) == bytes(0x3000 - 0x100)   # bss
    assert mem.read(0x303000, 16) == b"\xaa" * 16                         # past memsz: untouched
    assert (result.kernel_start, result.kernel_end) == (0x200000, 0x303000)
    assert result.setup_header is None and result.image == "vmlinux"


def test_physical_e_entry_is_used_as_is(mem):
    # vmlinux's linker script makes e_entry physical (ENTRY(phys_startup_64))
    assert load_kernel(mem, vmlinux(entry=0x200010).build()).entry == 0x200010


def test_virtual_e_entry_is_converted_through_its_segment(mem):
    result = load_kernel(mem, vmlinux(entry=KERNEL_VA + 0x100008).build())
    assert result.entry == 0x300008


def test_entry_outside_every_segment_is_refused(mem):
    with pytest.raises(ElfError, match=r"^vmlinux: entry point 0x5000000 \(e_entry\) is outside"):
        load_kernel(mem, vmlinux(entry=0x5000000).build(), name="vmlinux")


def test_pvh_note_selects_pvh_with_its_32bit_entry(mem):
    result = load_kernel(mem, vmlinux(notes=note(b"GNU\0", 3, b"x" * 20) + pvh_note(0x200040)).build())
    assert (result.protocol, result.entry) == ("pvh", 0x200040)


def test_pvh_note_with_8_byte_value_and_8_aligned_notes(mem):
    notes = note(b"Xen\0", 18, (0x200080).to_bytes(8, "little"), align=8)
    result = load_kernel(mem, vmlinux(notes=notes, note_align=8).build())
    assert (result.protocol, result.entry) == ("pvh", 0x200080)


def test_pvh_entry_outside_the_image_is_refused(mem):
    with pytest.raises(ElfError, match="PVH entry 0x900000 is outside every PT_LOAD segment"):
        load_kernel(mem, vmlinux(notes=pvh_note(0x900000)).build())


def test_pvh_entry_above_4gib_is_refused(mem):
    with pytest.raises(ElfError, match="PVH entry 0x100000000 .* not a 32-bit address"):
        load_kernel(mem, vmlinux(notes=pvh_note(1 << 32, 8)).build())


def test_truncated_note_is_reported(mem):
    bad = struct.pack("<III", 4, 64, 18) + b"Xen\0" + b"\0" * 4   # desc claims 64 bytes
    with pytest.raises(ElfError, match=r"truncated: note at 0x[0-9a-f]+ runs past the end of PT_NOTE"):
        load_kernel(mem, vmlinux(notes=bad).build())


def test_path_input_uses_the_file_name(mem, tmp_path):
    path = tmp_path / "my-vmlinux"
    path.write_bytes(vmlinux().build())
    result = load_kernel(mem, path)
    assert result.image == "my-vmlinux" and mem.read(0x300000, 4) == b"DATA"


def test_empty_and_missing_files(mem, tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(LoaderError, match="^empty: empty file$"):
        load_kernel(mem, tmp_path / "empty")
    with pytest.raises(LoaderError, match="^nothere: cannot read .*nothere"):
        load_kernel(mem, tmp_path / "nothere")


def test_unknown_format_shows_first_bytes(mem):
    with pytest.raises(LoaderError, match=r"^kernel: unknown image format \(first bytes 00 11 22 33"):
        load_kernel(mem, bytes([0, 0x11, 0x22, 0x33]) + bytes(100))


@pytest.mark.parametrize("patch, message", [
    ((4, 3), r"unknown ELF class 3 at 0x4"),
    ((5, 2), r"ELF data encoding 2 at 0x5 is not little-endian"),
    ((6, 0), r"ELF version 0 at 0x6 is not 1"),
])
def test_bad_ident_bytes(mem, patch, message):
    image = bytearray(vmlinux().build())
    image[patch[0]] = patch[1]
    with pytest.raises(ElfError, match=f"^vmlinux: {message}"):
        load_kernel(mem, bytes(image), name="vmlinux")


@pytest.mark.parametrize("kw, message", [
    (dict(machine=40), r"ELF machine 40 \(e_machine\) is not x86_64 \(62\)"),
    (dict(e_type=3), r"ELF type 3 \(e_type\) is not ET_EXEC \(2\)"),
    (dict(phentsize=48), r"program header size 48 \(e_phentsize\) is not 56"),
])
def test_bad_header_fields(mem, kw, message):
    with pytest.raises(ElfError, match=f"^vmlinux: {message}"):
        load_kernel(mem, vmlinux(**kw).build(), name="vmlinux")


def test_truncated_header_and_program_headers(mem):
    image = vmlinux().build()
    with pytest.raises(ElfError, match=r"^vmlinux: truncated: the 64-bit ELF header needs 0x40 "
                                       r"bytes, file has 0x30"):
        load_kernel(mem, image[:0x30], name="vmlinux")
    # two phdrs at 0x40: the second ends at 0x40 + 2 * 56 = 0xb0
    with pytest.raises(ElfError, match=r"^vmlinux: truncated: program header 1 ends at 0xb0 past end of "
                                       r"file \(0xa0 bytes\)$"):
        load_kernel(mem, image[:0xA0], name="vmlinux")


def test_segment_data_past_end_of_file(mem):
    image = vmlinux().build()
    with pytest.raises(ElfError, match=r"truncated: program header 1 file data \[0x2000, 0x2100\) ends "
                                       r"past end of file \(0x2080 bytes\)"):
        load_kernel(mem, image[:0x2080])


def test_filesz_larger_than_memsz(mem):
    with pytest.raises(ElfError, match="segment 0 has p_filesz 0x10 larger than p_memsz 0x8"):
        load_kernel(mem, vmlinux(segments=[Seg(0x200000, b"x" * 16, memsz=8)]).build())


def test_no_loadable_segment(mem):
    with pytest.raises(ElfError, match="no PT_LOAD segment"):
        load_kernel(mem, vmlinux(segments=[Seg(0x200000, b"x", p_type=6)]).build())


def test_segment_below_1mib_is_refused(mem):
    with pytest.raises(ElfError, match=r"^kernel: segment 0 \[0x9000, 0x9010\) starts below 0x100000"):
        load_kernel(mem, vmlinux(segments=[Seg(0x9000, b"x" * 16)], entry=0x9000).build())


def test_segment_past_ram_names_the_memory_size(mem):
    big = Seg(0x100000, b"x" * 16, memsz=0x4000000)
    with pytest.raises(ElfError, match=r"^kernel: segment 0 \[0x100000, 0x4100000\) does not fit in "
                                       r"32 MiB of guest memory$"):
        load_kernel(mem, vmlinux(segments=[big], entry=0x100000).build())


def test_segment_in_the_mmio_gap_is_refused():
    mem = GuestMemory([(0, 2 * MiB), (4 << 30, 2 * MiB)])
    seg = Seg(0xBFFFF000, b"x" * 0x2000)
    with pytest.raises(ElfError, match=r"\[0xbffff000, 0xc0001000\) overlaps the MMIO gap "
                                       r"\[0xc0000000, 0x100000000\)"):
        load_kernel(mem, vmlinux(segments=[seg], entry=0xBFFFF000).build())


def test_segment_wrapping_the_address_space(mem):
    seg = Seg(0xFFFFFFFFFFFFF000, b"x", memsz=0x2000)
    with pytest.raises(ElfError, match="segment 0 .* wraps around the 64-bit address space"):
        load_kernel(mem, vmlinux(segments=[seg]).build())


def test_nothing_is_written_when_a_later_segment_does_not_fit(mem):
    segs = [Seg(0x200000, b"first"), Seg(0x8000000, b"second")]
    with pytest.raises(ElfError, match="segment 1"):
        load_kernel(mem, vmlinux(segments=segs).build())
    assert mem.read(0x200000, 5) == b"\xaa" * 5


def test_elf32_without_multiboot_header_is_not_supported(mem):
    image = Elf([Seg(0x100000, b"x" * 32)], entry=0x100000, bits=32).build()
    with pytest.raises(ElfError, match="^kernel: 32-bit ELF images are not supported"):
        load_kernel(mem, image)


def test_elf32_with_wrong_machine(mem):
    image = Elf([Seg(0x100000, b"x")], entry=0x100000, bits=32, machine=62).build()
    with pytest.raises(ElfError, match=r"ELF machine 62 \(e_machine\) is not i386 \(3\)"):
        load_kernel(mem, image)


def test_pvh_note_wins_over_a_multiboot_header(mem):
    image = vmlinux(notes=pvh_note(0x200000), head_extra=multiboot_header(0)).build()
    assert load_kernel(mem, image).protocol == "pvh"
