"""The guest protocol: frames between the service and the function agent in the guest
(libos/agent/agent.c, <pyrite/function.h>), over a hybrid vsock connection.

Sans-I/O: `encode_invoke` makes bytes, `FrameReader` turns received bytes into frames.
A frame is u32 type, u32 payload length (little-endian), payload.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

AGENT_PORT = 9000
READY_LINE = b"pyrite-agent: ready"

INVOKE, LOG, RESULT, ERROR = 1, 2, 3, 4
HEADER = struct.Struct("<II")
MAX_EVENT = 6 * 1024 * 1024 + 4096          # the agent's own limit (libos FN_MAX_EVENT)


class ProtocolError(Exception):
    """The guest sent something that is not a frame of the agent protocol."""


class FrameTooLarge(ProtocolError):
    """A frame announced more bytes than the reader takes (`kind`: its type)."""

    def __init__(self, kind: int, length: int, limit: int):
        super().__init__(f"agent frame of {length} bytes, over the limit of {limit}")
        self.kind, self.length = kind, length


@dataclass(frozen=True)
class InvokeContext:
    request_id: str
    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_mb: int
    timeout_us: int


def encode_invoke(ctx: InvokeContext, event: bytes) -> bytes:
    strings = b"".join(s.encode() + b"\0" for s in (ctx.request_id, ctx.function_name,
                                                     ctx.function_version, ctx.invoked_function_arn))
    payload = struct.pack("<QI", ctx.timeout_us, ctx.memory_mb) + strings + event
    return HEADER.pack(INVOKE, len(payload)) + payload


class FrameReader:
    """Buffers received bytes; `next_frame()` gives (type, payload) or None for more data.
    A payload over `max_payload` is refused (ProtocolError) before it is buffered."""

    def __init__(self, max_payload: int):
        self.max_payload = max_payload
        self._buf = bytearray()

    def receive(self, data: bytes) -> None:
        self._buf += data

    def next_frame(self) -> tuple[int, bytes] | None:
        if len(self._buf) < HEADER.size:
            return None
        kind, length = HEADER.unpack_from(self._buf)
        if kind not in (LOG, RESULT, ERROR):
            raise ProtocolError(f"agent frame of unknown type {kind}")
        if length > self.max_payload:
            raise FrameTooLarge(kind, length, self.max_payload)
        if len(self._buf) < HEADER.size + length:
            return None
        payload = bytes(self._buf[HEADER.size:HEADER.size + length])
        del self._buf[:HEADER.size + length]
        return kind, payload

    @property
    def pending(self) -> int:
        """Bytes of a frame still incomplete (how far a large frame has come)."""
        return len(self._buf)
