"""Place an initrd page-aligned at the top of low RAM, above the kernel."""
from __future__ import annotations

from pyrite.memory import GuestMemory

from ..layout import ram_regions
from .errors import InitrdError
from .placement import describe_size
from .result import LoadResult
from .source import ImageSource, image_name, open_image

PAGE_SIZE = 4096


def initrd_limit(kernel: LoadResult, mem_size: int) -> tuple[int, str]:
    """First address the initrd may not reach, and what sets it."""
    low_gpa, low_size = ram_regions(mem_size)[0]
    limit, why = low_gpa + low_size, "the end of low RAM"
    if kernel.setup_header is not None:
        from .bzimage import SetupHeader
        max_addr = SetupHeader(kernel.setup_header).initrd_addr_max
        if max_addr and max_addr + 1 < limit:
            limit, why = max_addr + 1, f"the kernel's initrd_addr_max {max_addr:#x}"
    return limit, why


def load_initrd(mem: GuestMemory, source: ImageSource, kernel: LoadResult, mem_size: int,
                name: str | None = None) -> tuple[int, int]:
    """Write the initrd into guest memory; return (gpa, size)."""
    name = image_name(source, name, "initrd")
    with open_image(source, name, InitrdError) as data:
        size = len(data)
        limit, why = initrd_limit(kernel, mem_size)
        gpa = (limit - size) & ~(PAGE_SIZE - 1)
        if limit < size or gpa < kernel.kernel_end:
            raise InitrdError(f"{name}: {describe_size(size)} initrd does not fit between the "
                              f"kernel's end {kernel.kernel_end:#x} and {why} ({limit:#x})")
        if not mem.contains(gpa, size):
            raise InitrdError(f"{name}: [{gpa:#x}, {gpa + size:#x}) is not in the "
                              f"{describe_size(mem.size)} of guest memory")
        mem.write(gpa, data)
    return gpa, size
