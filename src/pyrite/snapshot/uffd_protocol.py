"""The one message a VMM sends its page-fault handler on PUT /snapshot/load with the Uffd
memory backend, as Firecracker v1.12.1 sends it (src/vmm/src/persist.rs, send_uffd_handshake):
a JSON array with one GuestRegionUffdMapping per guest memory region, and the userfaultfd as
SCM_RIGHTS ancillary data, in one sendmsg on a Unix stream socket. Nothing else follows; the
VMM keeps the connection open while it lives, so its end means the VMM is gone.

    [{"base_host_virt_addr":140504041783296,"size":67108864,"offset":0,"page_size":4096,"page_size_kib":4096}]

`page_size` and `page_size_kib` both hold the page size in bytes (1.12.1 sends both; older
releases sent only `page_size_kib`, newer ones only `page_size`); `offset` is where the
region's bytes start in the memory file, the regions end to end.
"""
from __future__ import annotations

import os
import sys

import _socket   # not `socket`: its enum and selectors imports cost pyrite-vmm milliseconds on a load

MAX_MESSAGE = 64 * 1024      # a few hundred bytes per region; far more than any VMM sends


class HandshakeError(Exception):
    """A mapping message that is not Firecracker's, or a connection that carried no userfaultfd."""


class GuestRegionUffdMapping:
    """One guest memory region: its host address in the VMM, its size, where its bytes start in
    the memory file, and the page size (a plain class: cheaper to import than a dataclass)."""
    __slots__ = ("base_host_virt_addr", "size", "offset", "page_size")

    def __init__(self, base_host_virt_addr: int, size: int, offset: int, page_size: int):
        self.base_host_virt_addr, self.size, self.offset, self.page_size = base_host_virt_addr, size, offset, page_size

    def __eq__(self, other) -> bool:
        return isinstance(other, GuestRegionUffdMapping) and self._key() == other._key()

    def __repr__(self) -> str:
        return "GuestRegionUffdMapping(base_host_virt_addr={:#x}, size={:#x}, offset={:#x}, page_size={})".format(
            *self._key())

    def _key(self) -> tuple[int, int, int, int]:
        return self.base_host_virt_addr, self.size, self.offset, self.page_size

    def contains(self, address: int) -> bool:
        return 0 <= address - self.base_host_virt_addr < self.size


def encode_mappings(mappings: list[GuestRegionUffdMapping]) -> bytes:
    """Firecracker 1.12.1's bytes for `mappings` (serde_json: no spaces, fields in this order)."""
    return ("[" + ",".join(
        f'{{"base_host_virt_addr":{m.base_host_virt_addr},"size":{m.size},"offset":{m.offset},'
        f'"page_size":{m.page_size},"page_size_kib":{m.page_size}}}' for m in mappings) + "]").encode()


def decode_mappings(data: bytes) -> list[GuestRegionUffdMapping]:
    """The mappings in a VMM's message (HandshakeError naming what is wrong)."""
    import json
    try:
        items = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HandshakeError(f"the mapping message is not JSON ({e}): {data[:200]!r}") from None
    if not isinstance(items, list) or not items:
        raise HandshakeError(f"the mapping message is not a non-empty JSON array: {data[:200]!r}")
    mappings = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise HandshakeError(f"mapping {index}: not a JSON object: {item!r}")
        page_size = item.get("page_size", item.get("page_size_kib"))
        values = [item.get("base_host_virt_addr"), item.get("size"), item.get("offset"), page_size]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
            raise HandshakeError(f"mapping {index}: base_host_virt_addr, size, offset and page_size "
                                 f"(or page_size_kib) must be non-negative integers: {item!r}")
        mapping = GuestRegionUffdMapping(*values)
        if mapping.page_size <= 0 or mapping.page_size & (mapping.page_size - 1):
            raise HandshakeError(f"mapping {index}: page size {mapping.page_size} is not a power of two")
        if mapping.size == 0 or (mapping.base_host_virt_addr | mapping.size | mapping.offset) % mapping.page_size:
            raise HandshakeError(f"mapping {index}: address, size and offset must be non-zero multiples "
                                 f"of the page size {mapping.page_size}: {item!r}")
        mappings.append(mapping)
    return mappings


def send_handshake(sock: _socket.socket, mappings: list[GuestRegionUffdMapping], uffd: int) -> None:
    """The VMM's side: the mapping message and the userfaultfd in one sendmsg."""
    data = encode_mappings(mappings)
    rights = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, uffd.to_bytes(4, sys.byteorder))]
    sent = sock.sendmsg([data], rights)
    if sent != len(data):   # a Unix stream socket takes a message this small whole, or fails
        raise OSError(f"sent {sent} of the mapping message's {len(data)} bytes")


def receive_handshake(sock: _socket.socket) -> tuple[list[GuestRegionUffdMapping], int]:
    """The handler's side: (mappings, the userfaultfd) from a connected VMM, in one recvmsg as
    they were sent (a message with file descriptors is not merged with later bytes)."""
    data, ancillary, _flags, _address = sock.recvmsg(MAX_MESSAGE, _socket.CMSG_SPACE(4 * 4))
    fds = []
    for level, kind, payload in ancillary:
        if (level, kind) == (_socket.SOL_SOCKET, _socket.SCM_RIGHTS):
            fds += [int.from_bytes(payload[i:i + 4], sys.byteorder) for i in range(0, len(payload) - 3, 4)]
    for fd in fds[1:]:                # Firecracker sends exactly one
        os.close(fd)
    if not fds:
        raise HandshakeError(f"the VMM sent no userfaultfd with its mapping message {data[:200]!r}")
    try:
        return decode_mappings(data), fds[0]
    except BaseException:
        os.close(fds[0])
        raise
