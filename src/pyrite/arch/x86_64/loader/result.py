"""The one result every kernel loader returns."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Protocol = Literal["pvh", "linux64", "multiboot"]


@dataclass(frozen=True)
class LoadResult:
    protocol: Protocol
    entry: int                      # guest-physical entry point
    kernel_start: int               # lowest guest-physical byte written
    kernel_end: int                 # first byte past the image, bss included
    setup_header: bytes | None      # raw bytes 0x1f1.. of a bzImage's setup header
    image: str                      # the image's name, for messages
