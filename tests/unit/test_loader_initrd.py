import pytest

from loader_images import MiB, BzImage
from pyrite.arch.x86_64.loader import InitrdError, LoadResult, load_initrd, load_kernel
from pyrite.memory import GuestMemory


@pytest.fixture
def mem():
    m = GuestMemory([(0, 32 * MiB)])
    yield m
    m.close()


def elf_kernel(end: int = 0x400000) -> LoadResult:
    return LoadResult("pvh", 0x100000, 0x100000, end, None, "vmlinux")


def test_initrd_sits_page_aligned_at_the_top_of_low_ram(mem):
    data = b"initrd!" * 1000                               # 7000 bytes
    gpa, size = load_initrd(mem, data, elf_kernel(), 32 * MiB)
    assert size == 7000
    assert gpa % 4096 == 0 and gpa + size <= 32 * MiB and gpa + 4096 + size > 32 * MiB
    assert mem.read(gpa, size) == data


def test_initrd_stays_below_the_mmio_gap_for_big_guests():
    mem = GuestMemory([(0, 3 << 30), (4 << 30, 1 << 20)])   # sparse mappings: cheap
    gpa, size = load_initrd(mem, b"x" * 5000, elf_kernel(), (3 << 30) + (1 << 20))
    assert gpa == (3 << 30) - 8192
    mem.close()


def test_initrd_respects_the_bzimage_initrd_addr_max(mem):
    image = BzImage(b"\x01" * 64, initrd_addr_max=0x17FFFFF, init_size=0x100000).build()
    kernel = load_kernel(mem, image)
    gpa, size = load_initrd(mem, b"y" * 100, kernel, 32 * MiB)
    assert gpa == 0x1800000 - 4096


def test_initrd_that_would_overlap_the_kernel_is_refused(mem):
    with pytest.raises(InitrdError, match=r"^initrd: 30 MiB initrd does not fit between the kernel's end "
                                          r"0x400000 and the end of low RAM \(0x2000000\)$"):
        load_initrd(mem, bytes(30 * MiB), elf_kernel(), 32 * MiB)


def test_initrd_larger_than_ram_is_refused(mem):
    with pytest.raises(InitrdError, match="33 MiB initrd does not fit"):
        load_initrd(mem, bytes(33 * MiB), elf_kernel(), 32 * MiB)


def test_initrd_limit_message_names_initrd_addr_max(mem):
    kernel = LoadResult("linux64", 0x100200, 0x100000, 0x200000,
                        BzImage(b"", initrd_addr_max=0x2FFFFF).build()[0x1F1:0x26C], "vmlinuz")
    with pytest.raises(InitrdError, match=r"the kernel's initrd_addr_max 0x2fffff \(0x300000\)"):
        load_initrd(mem, bytes(2 * MiB), kernel, 32 * MiB)


def test_empty_initrd_from_a_file(mem, tmp_path):
    (tmp_path / "initrd.img").write_bytes(b"")
    with pytest.raises(InitrdError, match="^initrd.img: empty file$"):
        load_initrd(mem, tmp_path / "initrd.img", elf_kernel(), 32 * MiB)


def test_missing_initrd_file(mem, tmp_path):
    with pytest.raises(InitrdError, match="^initrd.img: cannot read"):
        load_initrd(mem, tmp_path / "initrd.img", elf_kernel(), 32 * MiB)


def test_initrd_from_a_file(mem, tmp_path):
    (tmp_path / "rootfs.cpio").write_bytes(b"070701" + bytes(500))
    gpa, size = load_initrd(mem, tmp_path / "rootfs.cpio", elf_kernel(), 32 * MiB)
    assert mem.read(gpa, 6) == b"070701" and size == 506
