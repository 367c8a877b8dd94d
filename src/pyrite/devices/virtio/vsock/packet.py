"""The virtio-vsock packet header (virtio 1.2 section 5.10.6), sans-I/O.

    struct virtio_vsock_hdr {            // 44 bytes, little-endian, packed
        le64 src_cid; le64 dst_cid; le32 src_port; le32 dst_port;
        le32 len; le16 type; le16 op; le32 flags; le32 buf_alloc; le32 fwd_cnt;
    };

A packet is the header followed by `len` payload bytes; on the tx queue both come from the
chain's device-readable buffers, on the rx queue the device writes both into the chain's
device-writable buffers.
"""
from __future__ import annotations

from struct import Struct

HDR = Struct("<QQIIIHHIII")
HDR_SIZE = HDR.size                # 44

HOST_CID = 2                       # VMADDR_CID_HOST: where the guest reaches the host

TYPE_STREAM = 1

OP_INVALID = 0
OP_REQUEST = 1
OP_RESPONSE = 2
OP_RST = 3
OP_SHUTDOWN = 4
OP_RW = 5
OP_CREDIT_UPDATE = 6
OP_CREDIT_REQUEST = 7
OP_NAMES = {OP_INVALID: "INVALID", OP_REQUEST: "REQUEST", OP_RESPONSE: "RESPONSE", OP_RST: "RST",
            OP_SHUTDOWN: "SHUTDOWN", OP_RW: "RW", OP_CREDIT_UPDATE: "CREDIT_UPDATE",
            OP_CREDIT_REQUEST: "CREDIT_REQUEST"}

# SHUTDOWN flags: the sender will receive / send no more.
SHUTDOWN_RCV = 1
SHUTDOWN_SEND = 2

EVENT_TRANSPORT_RESET = 0          # struct virtio_vsock_event { le32 id; }

MAX_PKT_PAYLOAD = 64 * 1024        # Firecracker's cap on one packet's payload


class PacketError(ValueError):
    """A tx packet that cannot be parsed; the message names the field."""


class Header:
    """One virtio_vsock_hdr as plain fields."""
    __slots__ = ("src_cid", "dst_cid", "src_port", "dst_port", "len", "type", "op", "flags",
                 "buf_alloc", "fwd_cnt")

    def __init__(self, src_cid: int = 0, dst_cid: int = 0, src_port: int = 0, dst_port: int = 0,
                 len: int = 0, type: int = TYPE_STREAM, op: int = OP_INVALID, flags: int = 0,
                 buf_alloc: int = 0, fwd_cnt: int = 0):
        self.src_cid, self.dst_cid, self.src_port, self.dst_port = src_cid, dst_cid, src_port, dst_port
        self.len, self.type, self.op, self.flags = len, type, op, flags
        self.buf_alloc, self.fwd_cnt = buf_alloc, fwd_cnt

    def __repr__(self) -> str:
        return (f"Header({OP_NAMES.get(self.op, self.op)} {self.src_cid}:{self.src_port} -> "
                f"{self.dst_cid}:{self.dst_port} len={self.len} flags={self.flags} "
                f"buf_alloc={self.buf_alloc} fwd_cnt={self.fwd_cnt})")

    def __eq__(self, other) -> bool:
        return isinstance(other, Header) and all(getattr(self, f) == getattr(other, f) for f in self.__slots__)

    def pack(self) -> bytes:
        return HDR.pack(self.src_cid, self.dst_cid, self.src_port, self.dst_port, self.len,
                        self.type, self.op, self.flags, self.buf_alloc, self.fwd_cnt)

    def pack_into(self, buf, offset: int = 0) -> None:
        HDR.pack_into(buf, offset, self.src_cid, self.dst_cid, self.src_port, self.dst_port, self.len,
                      self.type, self.op, self.flags, self.buf_alloc, self.fwd_cnt)

    @classmethod
    def unpack(cls, data) -> Header:
        if len(data) < HDR_SIZE:
            raise PacketError(f"vsock header: {len(data)} bytes, need {HDR_SIZE}")
        return cls(*HDR.unpack_from(data, 0))


def gather(buffers: list[memoryview], limit: int) -> bytes:
    """Up to `limit` bytes from the front of a chain's buffers (one copy)."""
    out = bytearray()
    for buf in buffers:
        take = min(len(buf), limit - len(out))
        out += buf[:take]
        if len(out) >= limit:
            break
    return bytes(out)


def parse_tx(buffers: list[memoryview]) -> tuple[Header, bytes]:
    """A tx chain's device-readable buffers as (header, payload).

    The header may be split across descriptors; `len` must not exceed what follows it, nor
    MAX_PKT_PAYLOAD."""
    total = sum(len(b) for b in buffers)
    if total < HDR_SIZE:
        raise PacketError(f"vsock tx packet: {total} readable bytes, header needs {HDR_SIZE}")
    hdr = Header.unpack(gather(buffers, HDR_SIZE))
    if hdr.len > MAX_PKT_PAYLOAD:
        raise PacketError(f"vsock tx packet: header len {hdr.len} is over the {MAX_PKT_PAYLOAD}-byte maximum")
    if hdr.len > total - HDR_SIZE:
        raise PacketError(f"vsock tx packet: header len {hdr.len}, but only {total - HDR_SIZE} "
                          f"payload bytes follow the header")
    payload = gather(buffers, HDR_SIZE + hdr.len)[HDR_SIZE:] if hdr.len else b""
    return hdr, payload


def scatter(buffers: list[memoryview], data) -> int:
    """Write `data` across a chain's device-writable buffers; the number of bytes written."""
    view = memoryview(data)
    done = 0
    for buf in buffers:
        if done >= len(view):
            break
        n = min(len(buf), len(view) - done)
        buf[:n] = view[done:done + n]
        done += n
    return done
