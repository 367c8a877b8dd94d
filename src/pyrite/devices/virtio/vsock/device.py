"""virtio-vsock, the socket device (virtio 1.2 section 5.10), sans-I/O.

Three queues: rx (0, device-writable buffers the device fills with packets for the guest),
tx (1, packets from the guest) and event (2, transport events). The configuration space is
`le64 guest_cid`. The device parses and checks packets and hands them to a backend; the
backend (backend.UnixBackend, or a fake in tests) owns connections and host sockets:

    backend.send_packet(hdr, payload)      a well-formed packet from the guest
    backend.has_pending_rx() -> bool       it has a packet for the guest
    backend.recv_packet(max_payload)       that packet, (Header, bytes) or None

A tx chain that cannot be parsed (short header, `len` past the buffers, oversized) is
dropped and logged; one with the wrong source CID, a type other than STREAM, or another
destination than the host is answered with RST (Firecracker's muxer does the same), so a
guest never takes the VMM down.
"""
from __future__ import annotations

from struct import pack

from ..device import PUT_BACK, TYPE_VSOCK, VirtioDevice
from ..queue import InvalidChain
from .packet import (EVENT_TRANSPORT_RESET, HDR_SIZE, HOST_CID, MAX_PKT_PAYLOAD, OP_RST,
                     TYPE_STREAM, Header, PacketError, parse_tx, scatter)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..queue import DescriptorChain
    from .persist import VsockState

QUEUE_SIZE = 256                  # Firecracker's vsock queue size
RXQ, TXQ, EVQ = 0, 1, 2


class Vsock(VirtioDevice):
    device_type = TYPE_VSOCK
    name = "vsock"

    def __init__(self, guest_cid: int, backend, queue_size: int = QUEUE_SIZE):
        if not 3 <= guest_cid < 1 << 32:
            raise ValueError(f"vsock: guest CID {guest_cid} must be between 3 and 2^32 - 1")
        super().__init__((queue_size,) * 3)
        self.guest_cid = guest_cid
        self.backend = backend
        self.rx_packets = self.tx_packets = self.rx_bytes = self.tx_bytes = 0
        self.tx_dropped = self.rx_dropped = 0

    def config_space(self) -> bytes:
        return pack("<Q", self.guest_cid)

    def metrics(self) -> dict[str, int]:
        """Firecracker's vsock counters that pyrite keeps (cumulative), the backend's included.
        Malformed chains (tx_dropped, rx_dropped) have no Firecracker counter: attributes only."""
        counters = {"rx_packets_count": self.rx_packets, "tx_packets_count": self.tx_packets,
                    "rx_bytes_count": self.rx_bytes, "tx_bytes_count": self.tx_bytes}
        counters.update(getattr(self.backend, "counters", {}))
        return counters

    def process_queue(self, index: int) -> None:
        if index == TXQ:
            self.process_tx()
            self.process_rx()             # answers (RESPONSE, RST...) go out at once
        elif index == RXQ:
            self.process_rx()
        # the event queue only holds buffers for transport resets: nothing to do on a kick

    def process_tx(self) -> None:
        self.serve(TXQ, self._transmit)

    def _transmit(self, chain: DescriptorChain) -> int:
        readable, _ = chain.buffers()
        try:
            hdr, payload = parse_tx(readable)
        except PacketError as e:
            self.on_invalid_chain(TXQ, e)     # dropped and counted like a chain that cannot be walked
            return 0
        self.tx_packets += 1
        self.tx_bytes += len(payload)
        self._from_guest(hdr, payload)
        return 0

    def _from_guest(self, hdr: Header, payload: bytes) -> None:
        if hdr.src_cid != self.guest_cid or hdr.dst_cid != HOST_CID or hdr.type != TYPE_STREAM:
            self.guest_error(f"vsock tx packet {hdr!r}: not a stream from CID {self.guest_cid} "
                             f"to the host (CID {HOST_CID}); answered with RST")
            if hdr.op != OP_RST:
                self.backend.reply_rst(hdr)
            return
        self.backend.send_packet(hdr, payload)

    def process_rx(self) -> None:
        """Give the guest what the backend has, as far as rx buffers allow."""
        if not self.activated or not self.queues[RXQ].ready:
            return
        self.serve(RXQ, self._receive, self.backend.has_pending_rx)

    def _receive(self, chain: DescriptorChain) -> int:
        readable, writable = chain.buffers()
        room = sum(len(b) for b in writable)
        if readable or room < HDR_SIZE:
            raise InvalidChain(f"{chain} has {room} writable bytes "
                               f"{'after readable ones' if readable else ''} (need >= {HDR_SIZE})")
        packet = self.backend.recv_packet(min(room - HDR_SIZE, MAX_PKT_PAYLOAD))
        if packet is None:
            return PUT_BACK
        hdr, payload = packet
        hdr.len = len(payload)
        written = scatter(writable, hdr.pack() + payload) if payload else scatter(writable, hdr.pack())
        self.rx_packets += 1
        self.rx_bytes += len(payload)
        return written

    def on_invalid_chain(self, index: int, error: Exception) -> None:
        self.guest_error(str(error))
        if index == TXQ:
            self.tx_dropped += 1
        else:
            self.rx_dropped += 1

    def send_transport_reset(self) -> bool:
        """VIRTIO_VSOCK_EVENT_TRANSPORT_RESET on the event queue (after a snapshot restore the
        guest must drop its connections); False if the guest gave no event buffer."""
        if not self.activated:   # a guest that never set the device up has no queues to use
            return False
        queue, mem = self.queues[EVQ], self.mem
        if not queue.ready:
            return False
        chain = queue.pop(mem)
        if chain is None:
            return False
        try:
            _, writable = chain.buffers()
            written = scatter(writable, pack("<I", EVENT_TRANSPORT_RESET))
        except InvalidChain as e:
            self.guest_error(str(e))
            written = 0
        queue.add_used(mem, chain.head, written)
        self.signal_used(EVQ)
        return written == 4

    def reset(self) -> None:
        super().reset()
        reset = getattr(self.backend, "reset_connections", None)
        if reset is not None:
            reset()

    def state(self) -> VsockState:
        from .persist import VsockState
        return VsockState(virtio=self.virtio_state(), guest_cid=self.guest_cid)

    @classmethod
    def from_state(cls, state: VsockState, backend) -> Vsock:
        dev = cls(state.guest_cid, backend)
        dev.load_virtio_state(state.virtio)
        return dev
