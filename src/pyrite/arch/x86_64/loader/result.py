"""The one result every kernel loader returns."""
from __future__ import annotations

TYPE_CHECKING = False   # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import Literal

    Protocol = Literal["pvh", "linux64", "multiboot"]


class LoadResult:
    """Where a kernel landed and how to enter it. Read-only by convention."""
    __slots__ = ("protocol", "entry", "kernel_start", "kernel_end", "setup_header", "image")

    def __init__(self, protocol: Protocol, entry: int, kernel_start: int, kernel_end: int,
                 setup_header: bytes | None, image: str):
        self.protocol = protocol           # "pvh", "linux64" or "multiboot"
        self.entry = entry                 # guest-physical entry point
        self.kernel_start = kernel_start   # lowest guest-physical byte written
        self.kernel_end = kernel_end       # first byte past the image, bss included
        self.setup_header = setup_header   # raw bytes 0x1f1.. of a bzImage's setup header
        self.image = image                 # the image's name, for messages

    def __repr__(self) -> str:
        header = "None" if self.setup_header is None else f"<{len(self.setup_header)} bytes>"
        return (f"LoadResult(protocol={self.protocol!r}, entry={self.entry:#x}, "
                f"kernel_start={self.kernel_start:#x}, kernel_end={self.kernel_end:#x}, "
                f"setup_header={header}, image={self.image!r})")
