"""virtio-blk requests (virtio 1.2 section 5.2.6): framing-independent parsing.

    struct virtio_blk_req { le32 type; le32 reserved; le64 sector; u8 data[]; u8 status; };

The header and any data for the device are the chain's device-readable bytes; data for
the driver and the status byte are its device-writable bytes, the status being the very
last one. The spec forbids the device to assume how these are cut into descriptors (2.6.4),
so the parser works on byte streams made of memoryview slices: no data is copied.
"""
from __future__ import annotations

from struct import Struct

from ..queue import InvalidChain

VIRTIO_BLK_T_IN = 0
VIRTIO_BLK_T_OUT = 1
VIRTIO_BLK_T_FLUSH = 4
VIRTIO_BLK_T_GET_ID = 8
VIRTIO_BLK_T_GET_LIFETIME = 10
VIRTIO_BLK_T_DISCARD = 11
VIRTIO_BLK_T_WRITE_ZEROES = 13
VIRTIO_BLK_T_SECURE_ERASE = 14

VIRTIO_BLK_S_OK = 0
VIRTIO_BLK_S_IOERR = 1
VIRTIO_BLK_S_UNSUPP = 2

SECTOR_SIZE = 512
VIRTIO_BLK_ID_BYTES = 20

OUTHDR = Struct("<IIQ")          # struct virtio_blk_outhdr: type, reserved, sector


class InvalidRequest(InvalidChain):
    """A chain that is well-formed as a chain but not as a block request."""


class NoStatusByte(InvalidRequest):
    """No device-writable byte to put the status in: the request cannot be answered."""


def total_length(views: list[memoryview]) -> int:
    return sum(map(len, views))


def split_at(views: list[memoryview], n: int) -> tuple[list[memoryview], list[memoryview]]:
    """The first `n` bytes of a view list and the rest, as slices (n <= total length)."""
    head: list[memoryview] = []
    for i, v in enumerate(views):
        if n >= len(v):
            head.append(v)
            n -= len(v)
        else:
            if n:
                head.append(v[:n])
            return head, [v[n:]] + views[i + 1:]
    return head, []


class Request:
    """One parsed request. `data_out` is what the driver sends, `data_in` what it receives."""
    __slots__ = ("type", "sector", "data_out", "data_in")

    def __init__(self, type: int, sector: int, data_out: list[memoryview], data_in: list[memoryview]):
        self.type = type
        self.sector = sector
        self.data_out = data_out
        self.data_in = data_in

    def __repr__(self) -> str:
        return (f"Request(type={self.type}, sector={self.sector}, out={total_length(self.data_out)}, "
                f"in={total_length(self.data_in)})")


def take_status(writable: list[memoryview], where: object) -> tuple[list[memoryview], memoryview]:
    """Split the device-writable bytes into the data for the driver and the status byte.

    `where` names the chain in error messages (anything whose str() does: a `DescriptorChain`
    is only formatted when there is an error).
    """
    if writable and len(writable[-1]) == 1:     # the usual layout: the status in its own buffer
        return writable[:-1], writable[-1]
    total = total_length(writable)
    if total == 0:
        raise NoStatusByte(f"{where}: no device-writable byte for the status")
    data_in, status = split_at(writable, total - 1)
    return data_in, status[0]


def parse(readable: list[memoryview], data_in: list[memoryview], where: object) -> Request:
    """The request in the device-readable bytes; `where` names the queue and chain for errors."""
    if readable and len(readable[0]) == OUTHDR.size:    # the usual layout: the header alone
        type_, _reserved, sector = OUTHDR.unpack_from(readable[0])
        return Request(type_, sector, readable[1:], data_in)
    if total_length(readable) < OUTHDR.size:
        raise InvalidRequest(f"{where}: {total_length(readable)} device-readable bytes, "
                             f"the request header needs {OUTHDR.size}")
    header, data_out = split_at(readable, OUTHDR.size)
    type_, _reserved, sector = OUTHDR.unpack(b"".join(header))
    return Request(type_, sector, data_out, data_in)
