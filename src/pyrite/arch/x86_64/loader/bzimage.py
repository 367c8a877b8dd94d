"""bzImage: the setup header, then either the VMM-decompressed vmlinux (preferred) or the
protected-mode code at 1 MiB entered at its 64-bit entry (+0x200) to decompress itself.

Offsets per the kernel's Documentation/arch/x86/boot.rst.
"""
from __future__ import annotations

from dataclasses import dataclass

from pyrite.memory import GuestMemory

from ..layout import HIMEM_START
from . import elf, pvh
from .decompress import decompress
from .errors import BzImageError, DecompressorMissingError, UnknownCompressionError
from .placement import check_placement
from .result import LoadResult

SETUP_HEADER_START = 0x1F1
SETUP_HEADER_LIMIT = 0x290           # boot_params.hdr must end before edd_mbr_sig_buffer
HDRS_MAGIC = b"HdrS"
BOOT_FLAG = 0xAA55
MIN_VERSION = 0x0206                 # cmdline_size and a 64-bit-capable header
LOADED_HIGH = 0x01
CAN_USE_HEAP = 0x80
XLF_KERNEL_64 = 0x01
XLF_CAN_BE_LOADED_ABOVE_4G = 0x02
ENTRY_64_OFFSET = 0x200              # 64-bit entry: start of protected-mode code + 0x200
DEFAULT_INITRD_ADDR_MAX = 0x37FFFFFF # boot.rst: for protocol < 2.03
DEFAULT_LOAD_PHYSICAL_ADDR = 0x1000000


def _field(raw: bytes, offset: int, size: int) -> int:
    """A little-endian header field by its boot_params offset; 0 past the header's end."""
    at = offset - SETUP_HEADER_START
    if at + size > len(raw):
        return 0
    return int.from_bytes(raw[at:at + size], "little")


def _header_field(offset: int, size: int) -> property:
    return property(lambda self: _field(self.raw, offset, size))


@dataclass(frozen=True)
class SetupHeader:
    """The fields of struct setup_header pyrite reads; `raw` is what goes into the zero page."""
    raw: bytes

    setup_sects = _header_field(0x1F1, 1)
    boot_flag = _header_field(0x1FE, 2)
    version = _header_field(0x206, 2)
    loadflags = _header_field(0x211, 1)
    kernel_alignment = _header_field(0x230, 4)
    relocatable_kernel = _header_field(0x234, 1)

    @property
    def initrd_addr_max(self) -> int:
        return _field(self.raw, 0x22C, 4) if self.version >= 0x0203 else DEFAULT_INITRD_ADDR_MAX

    @property
    def cmdline_size(self) -> int:
        """Longest command line the kernel accepts, without the NUL (255 before 2.06)."""
        return _field(self.raw, 0x238, 4) if self.version >= 0x0206 else 255

    @property
    def xloadflags(self) -> int:
        return _field(self.raw, 0x236, 2) if self.version >= 0x020C else 0

    @property
    def payload_offset(self) -> int:
        return _field(self.raw, 0x248, 4) if self.version >= 0x0208 else 0

    @property
    def payload_length(self) -> int:
        return _field(self.raw, 0x24C, 4) if self.version >= 0x0208 else 0

    @property
    def pref_address(self) -> int:
        return _field(self.raw, 0x258, 8) if self.version >= 0x020A else DEFAULT_LOAD_PHYSICAL_ADDR

    @property
    def init_size(self) -> int:
        return _field(self.raw, 0x260, 4) if self.version >= 0x020A else 0

    @property
    def setup_code_size(self) -> int:
        """Bytes before the protected-mode code: boot sector plus setup sectors (0 means 4)."""
        return ((self.setup_sects or 4) + 1) * 512


def is_bzimage(data: memoryview) -> bool:
    return bytes(data[0x202:0x206]) == HDRS_MAGIC


def parse_header(data: memoryview, name: str) -> SetupHeader:
    if len(data) < 0x206:
        raise BzImageError(f"{name}: truncated: {len(data):#x} bytes is too short for a setup "
                           "header (HdrS at 0x202)")
    if bytes(data[0x202:0x206]) != HDRS_MAGIC:
        raise BzImageError(f"{name}: no HdrS magic at 0x202")
    # The header ends at 0x202 + the byte at 0x201 (the jump over it into setup code).
    end = min(0x202 + data[0x201], SETUP_HEADER_LIMIT)
    if end > len(data):
        raise BzImageError(f"{name}: truncated: setup header ends at {end:#x} past end of file "
                           f"({len(data):#x} bytes)")
    hdr = SetupHeader(bytes(data[SETUP_HEADER_START:max(end, 0x206)]))
    if hdr.boot_flag != BOOT_FLAG:
        raise BzImageError(f"{name}: boot flag at 0x1fe is {hdr.boot_flag:#06x}, not 0xaa55")
    if hdr.version < MIN_VERSION:
        raise BzImageError(f"{name}: boot protocol {hdr.version >> 8}.{hdr.version & 0xff:02d} "
                           f"at 0x206 is too old (pyrite needs 2.06 or later)")
    if not hdr.loadflags & LOADED_HIGH:
        raise BzImageError(f"{name}: loadflags bit 0 (LOADED_HIGH) is clear: a zImage, "
                           "only bzImages are supported")
    if hdr.setup_code_size >= len(data):
        raise BzImageError(f"{name}: truncated: {hdr.setup_sects} setup sectors end at "
                           f"{hdr.setup_code_size:#x}, file has {len(data):#x} bytes")
    return hdr


def load(mem: GuestMemory, data: memoryview, name: str) -> LoadResult:
    hdr = parse_header(data, name)
    kernel = data[hdr.setup_code_size:]
    reason = "the header has no payload fields (protocol < 2.08)"
    if hdr.payload_length:
        start, end = hdr.payload_offset, hdr.payload_offset + hdr.payload_length
        if end > len(kernel):
            raise BzImageError(f"{name}: truncated: payload [{start:#x}, {end:#x}) (payload_offset, "
                               f"payload_length at 0x248) ends past the protected-mode code "
                               f"({len(kernel):#x} bytes)")
        try:
            vmlinux = decompress(kernel[start:end], name)
        except (UnknownCompressionError, DecompressorMissingError) as e:
            reason = str(e)
        else:
            return _load_vmlinux(mem, vmlinux, name, hdr)
    return _load_protected_mode(mem, kernel, name, hdr, reason)


def _load_vmlinux(mem: GuestMemory, vmlinux: bytes | bytearray, name: str,
                  hdr: SetupHeader) -> LoadResult:
    view = memoryview(vmlinux)
    if not elf.is_elf(view):
        raise BzImageError(f"{name}: the decompressed payload is not an ELF vmlinux "
                           f"(first bytes {bytes(view[:4]).hex(' ')})")
    image = elf.parse(view, f"{name} (decompressed vmlinux)")
    if image.pvh_entry is not None:
        result = pvh.load(mem, view, image, hdr.raw)
    else:
        result = elf.load_linux64(mem, view, image, hdr.raw)
    return LoadResult(result.protocol, result.entry, result.kernel_start, result.kernel_end,
                      hdr.raw, name)


def _load_protected_mode(mem: GuestMemory, kernel: memoryview, name: str, hdr: SetupHeader,
                         reason: str) -> LoadResult:
    """The kernel decompresses itself: it must have a 64-bit entry, and RAM for init_size."""
    if not hdr.xloadflags & XLF_KERNEL_64:
        raise BzImageError(f"{name}: cannot decompress the payload here ({reason}) and the "
                           "kernel has no 64-bit entry point (xloadflags bit 0 XLF_KERNEL_64 "
                           "is clear)")
    load_addr = HIMEM_START
    load_end = load_addr + len(kernel)
    check_placement(mem, load_addr, load_end, name, "protected-mode code", BzImageError)
    # Where the kernel will decompress itself (arch/x86/boot/compressed/head_64.S).
    output = hdr.pref_address
    if hdr.relocatable_kernel and hdr.kernel_alignment:
        aligned = -(-load_addr // hdr.kernel_alignment) * hdr.kernel_alignment
        output = max(aligned, hdr.pref_address)
    kernel_end = max(load_end, output + hdr.init_size)
    if hdr.init_size:
        check_placement(mem, output, output + hdr.init_size, name,
                        "decompression area (pref_address + init_size)", BzImageError)
    mem.write(load_addr, kernel)
    return LoadResult("linux64", load_addr + ENTRY_64_OFFSET, load_addr, kernel_end, hdr.raw, name)
