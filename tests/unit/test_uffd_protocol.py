"""The Uffd backend's handshake message: Firecracker 1.12.1's bytes out, every release's in."""
from __future__ import annotations

import json
import os
import socket

import pytest

from pyrite.snapshot.uffd_protocol import (GuestRegionUffdMapping, HandshakeError, decode_mappings,
                                           encode_mappings, receive_handshake, send_handshake)

# What Firecracker v1.12.1 sent for a 64 MiB microVM (captured from the real binary).
FIRECRACKER_1_12_1 = (b'[{"base_host_virt_addr":140504041783296,"size":67108864,"offset":0,'
                      b'"page_size":4096,"page_size_kib":4096}]')


def test_encoding_is_firecracker_1_12_1s_byte_for_byte():
    mapping = GuestRegionUffdMapping(140504041783296, 64 << 20, 0, 4096)
    assert encode_mappings([mapping]) == FIRECRACKER_1_12_1
    assert decode_mappings(FIRECRACKER_1_12_1) == [mapping]


@pytest.mark.parametrize("page_field", ["page_size", "page_size_kib"])
def test_older_and_newer_releases_name_the_page_size_differently(page_field):
    message = json.dumps([{"base_host_virt_addr": 0x7f0000000000, "size": 0xC0000000, "offset": 0, page_field: 4096},
                          {"base_host_virt_addr": 0x7f1000000000, "size": 0x40000000, "offset": 0xC0000000,
                           page_field: 4096}]).encode()
    regions = decode_mappings(message)
    assert [(m.offset, m.size, m.page_size) for m in regions] == [(0, 0xC0000000, 4096), (0xC0000000, 0x40000000, 4096)]
    assert regions[1].contains(0x7f1000000000) and not regions[0].contains(0x7f0000000000 + 0xC0000000)


@pytest.mark.parametrize("message,complaint", [
    (b"not json", "not JSON"),
    (b"[]", "non-empty JSON array"),
    (b'{"size": 4096}', "non-empty JSON array"),
    (b'[{"base_host_virt_addr": 4096, "size": 4096, "offset": 0}]', "page_size"),
    (b'[{"base_host_virt_addr": 4096, "size": -4096, "offset": 0, "page_size": 4096}]', "non-negative"),
    (b'[{"base_host_virt_addr": 4096, "size": 4096, "offset": 0, "page_size": 3000}]', "power of two"),
    (b'[{"base_host_virt_addr": 4097, "size": 4096, "offset": 0, "page_size": 4096}]', "multiples"),
    (b'[{"base_host_virt_addr": 4096, "size": 0, "offset": 0, "page_size": 4096}]', "multiples"),
])
def test_refused_messages_say_why(message, complaint):
    with pytest.raises(HandshakeError, match=complaint):
        decode_mappings(message)


def test_the_descriptor_travels_with_the_message():
    vmm, handler = socket.socketpair()
    r, w = os.pipe()
    try:
        mapping = GuestRegionUffdMapping(0x7f0000000000, 0x10000, 0, 4096)
        send_handshake(vmm, [mapping], r)
        mappings, fd = receive_handshake(handler)
        assert mappings == [mapping]
        os.write(w, b"x")
        assert os.read(fd, 1) == b"x"       # the very pipe, received as a new descriptor
        os.close(fd)
    finally:
        for s in (vmm, handler):
            s.close()
        os.close(r)
        os.close(w)


def test_a_message_without_a_descriptor_is_refused():
    vmm, handler = socket.socketpair()
    with vmm, handler:
        vmm.sendall(FIRECRACKER_1_12_1)
        with pytest.raises(HandshakeError, match="no userfaultfd"):
            receive_handshake(handler)
