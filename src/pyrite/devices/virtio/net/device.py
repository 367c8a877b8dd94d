"""virtio-net (virtio 1.2 section 5.1), sans-I/O: a receive and a transmit queue over a `NetBackend`.

Offered features: VIRTIO_NET_F_MAC when a guest MAC is configured (as Firecracker), and
VIRTIO_NET_F_MTU when an MTU is, plus VERSION_1, EVENT_IDX and INDIRECT_DESC; no offloads
and no VIRTIO_NET_F_MRG_RXBUF. Every buffer therefore starts with the 12-byte
virtio_net_hdr_v1 (5.1.6), and a received frame must fit in one chain. Configuration space
(5.1.4): mac[6], status (le16, not offered: 0), max_virtqueue_pairs (le16, 1), mtu (le16).

Transmit: each chain is one frame, header first, device-readable only, from 12 + 14 (an
Ethernet header) to 12 + 65550 bytes (Firecracker's MAX_BUFFER_SIZE). The guest's header is
replaced by a zeroed one (no offload was negotiated, so none may be asked for) and the frame
goes to the backend straight from guest memory. A malformed chain is returned unused and
counted; a backend failure drops the frame (tx_fails), as Firecracker does.

Receive (`process_rx`, called when the backend is readable and when the driver adds
buffers): the next frame is read straight into the next chain's device-writable buffers; a
frame larger than them is dropped (rx_fails) and the chain is reused for the next frame. The
header is rewritten as flags 0, GSO none, num_buffers 1. A chain that is not all
device-writable or has no room for a header is returned with 0 bytes.

Rate limiters (one each way): a frame takes one ops token and as many bandwidth tokens as
its length with the header (Firecracker's rule). A refused tx chain goes back to the ring; a
received frame the limiter refuses stays in its chain, unpublished, until the owner's timer
calls `RateLimiter.timer_expired()` and processing runs again.
"""
from __future__ import annotations

from struct import pack

from ..device import KEEP, PUT_BACK, TYPE_NET, VirtioDevice
from ..queue import InvalidChain
from . import MAX_MTU, MIN_MTU, RX_QUEUE, TX_QUEUE
from .backend import VNET_HDR_SIZE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..queue import DescriptorChain
    from .backend import NetBackend
    from .persist import NetState

VIRTIO_NET_F_MTU = 3
VIRTIO_NET_F_MAC = 5

QUEUE_SIZE = 256                 # Firecracker's net queue sizes
ETH_HLEN = 14
MAX_FRAME_BYTES = 65550          # Firecracker: MAX_BUFFER_SIZE (65562) minus the header

# Received frames: no checksum or GSO information, one buffer (num_buffers = 1 with VERSION_1).
RX_HEADER = pack("<BBHHHHH", 0, 0, 0, 0, 0, 0, 1)
TX_HEADER = bytes(VNET_HDR_SIZE)
_TX_HEADER_VIEW = memoryview(TX_HEADER)


def parse_mac(text: str) -> bytes:
    """b'\\x06\\x00...' from "06:00:AC:10:00:02"; ValueError naming the text otherwise."""
    parts = text.split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ValueError(f"MAC address {text!r} is not six hex bytes separated by ':'")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError(f"MAC address {text!r} is not six hex bytes separated by ':'") from None


def format_mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def _scatter(buffers: list[memoryview], data: bytes) -> None:
    """Write `data` across the start of `buffers` (the header may span descriptors)."""
    for buf in buffers:
        n = min(len(buf), len(data))
        buf[:n] = data[:n]
        data = data[n:]
        if not data:
            return


def _skip(buffers: list[memoryview], n: int) -> list[memoryview]:
    """`buffers` without their first `n` bytes."""
    out = []
    for buf in buffers:
        if n >= len(buf):
            n -= len(buf)
            continue
        out.append(buf[n:])
        n = 0
    return out


class Net(VirtioDevice):
    device_type = TYPE_NET
    name = "net"

    def __init__(self, backend: NetBackend, guest_mac: bytes | None = None, mtu: int | None = None,
                 queue_size: int = QUEUE_SIZE, rx_rate_limiter=None, tx_rate_limiter=None):
        if guest_mac is not None and len(guest_mac) != 6:
            raise ValueError(f"net: guest MAC {guest_mac!r} is not 6 bytes")
        if mtu is not None and not MIN_MTU <= mtu <= MAX_MTU:
            raise ValueError(f"net: MTU {mtu} is not between {MIN_MTU} and {MAX_MTU}")
        features = (1 << VIRTIO_NET_F_MAC if guest_mac is not None else 0) | \
                   (1 << VIRTIO_NET_F_MTU if mtu is not None else 0)
        super().__init__((queue_size, queue_size), features)
        self.backend = backend
        self.guest_mac = guest_mac
        self.mtu = mtu
        self.rx_rate_limiter = rx_rate_limiter
        self.tx_rate_limiter = tx_rate_limiter
        self.deferred_rx: tuple[int, int] | None = None
        self.counters = dict.fromkeys(
            ("rx_bytes_count", "rx_packets_count", "rx_fails", "rx_rate_limiter_throttled",
             "tx_bytes_count", "tx_packets_count", "tx_fails", "tx_malformed_frames",
             "tx_rate_limiter_throttled"), 0)

    def config_space(self) -> bytes:
        return pack("<6sHHH", self.guest_mac or bytes(6), 0, 1, self.mtu or 0)

    def metrics(self) -> dict[str, int]:
        """Firecracker's net metric counters that pyrite keeps (cumulative)."""
        return dict(self.counters)

    @property
    def rate_limiters(self) -> tuple:
        return tuple(limiter for limiter in (self.rx_rate_limiter, self.tx_rate_limiter) if limiter is not None)

    def reset(self) -> None:
        super().reset()
        self.deferred_rx = None

    def process_queue(self, index: int) -> None:
        if index == RX_QUEUE:
            self.process_rx()
        else:
            self.process_tx()

    # -- transmit --

    def process_tx(self) -> None:
        self.serve(TX_QUEUE, self._transmit)

    def _transmit(self, chain: DescriptorChain) -> int:
        readable, writable = chain.buffers()
        length = sum(map(len, readable))
        if writable:
            raise InvalidChain(f"{chain} has a device-writable buffer")
        if not VNET_HDR_SIZE + ETH_HLEN <= length <= VNET_HDR_SIZE + MAX_FRAME_BYTES:
            raise InvalidChain(f"{chain} holds {length} bytes, not a {VNET_HDR_SIZE}-byte header "
                               f"and a {ETH_HLEN} to {MAX_FRAME_BYTES}-byte frame")
        if self.tx_rate_limiter is not None and not self.tx_rate_limiter.admit(length):
            self.counters["tx_rate_limiter_throttled"] += 1
            return PUT_BACK           # sent when the limiter's timer fires
        try:
            if len(readable[0]) == VNET_HDR_SIZE:     # the usual layout: the header alone
                frame = [_TX_HEADER_VIEW, *readable[1:]]
            else:
                frame = [_TX_HEADER_VIEW, *_skip(readable, VNET_HDR_SIZE)]
            self.backend.write_frame(frame)
            self.counters["tx_bytes_count"] += length
            self.counters["tx_packets_count"] += 1
        except OSError as e:
            self.counters["tx_fails"] += 1
            self.guest_error(f"{chain.queue_name}: frame of {length} bytes not sent: {e}")
        return 0

    def on_invalid_chain(self, index: int, error: InvalidChain) -> None:
        self.guest_error(str(error))
        if index == TX_QUEUE:
            self.counters["tx_malformed_frames"] += 1

    # -- receive --

    def process_rx(self) -> None:
        """Move waiting frames from the backend into the driver's receive buffers."""
        if not self.activated or self.mem is None or not self.queues[RX_QUEUE].ready:
            return
        limiter = self.rx_rate_limiter
        published = 0
        if self.deferred_rx is not None:
            head, length = self.deferred_rx
            if limiter is not None and not limiter.admit(length):
                self.counters["rx_rate_limiter_throttled"] += 1
                return
            self.deferred_rx = None
            self._publish(head, length)
            published = 1
        # Frames wait in the backend while the limiter is blocked or the driver has no buffers.
        self.serve(RX_QUEUE, self._receive, None if limiter is None else self._rx_unblocked, published)

    def _rx_unblocked(self) -> bool:
        return not self.rx_rate_limiter.blocked

    def _receive(self, chain: DescriptorChain) -> int:
        readable, writable = chain.buffers()
        capacity = sum(len(b) for b in writable)
        if readable or capacity < VNET_HDR_SIZE:
            raise InvalidChain(f"{chain} is not a device-writable buffer of at least {VNET_HDR_SIZE} bytes")
        length = self._read_into(writable, capacity)
        if length is None:
            return PUT_BACK           # nothing to receive: the chain stays available
        limiter = self.rx_rate_limiter
        if limiter is not None and not limiter.admit(length):
            # The frame is in the chain already: publish it (`deferred_rx`) when the timer fires.
            self.deferred_rx = (chain.head, length)
            self.counters["rx_rate_limiter_throttled"] += 1
            return KEEP
        self._count_received(length)
        return length

    def _read_into(self, writable: list[memoryview], capacity: int) -> int | None:
        """Read frames until one fits in `writable`; its length with the header, or None."""
        while True:
            try:
                length = self.backend.read_frame(writable)
            except OSError as e:
                self.counters["rx_fails"] += 1
                self.guest_error(f"receive failed: {e}")
                return None
            if length is None:
                return None
            if VNET_HDR_SIZE <= length <= capacity:
                _scatter(writable, RX_HEADER)
                return length
            self.counters["rx_fails"] += 1
            self.guest_error(f"{self.name}: received frame of {length} bytes dropped: the receive "
                             f"buffers hold {capacity} (no VIRTIO_NET_F_MRG_RXBUF)")

    def _publish(self, head: int, length: int) -> None:
        self.queues[RX_QUEUE].add_used(self.mem, head, length)
        self._count_received(length)

    def _count_received(self, length: int) -> None:
        self.counters["rx_bytes_count"] += length
        self.counters["rx_packets_count"] += 1

    # -- snapshots --

    def state(self) -> NetState:
        from .persist import NetState
        return NetState(virtio=self.virtio_state(), guest_mac=self.guest_mac, mtu=self.mtu,
                        deferred_rx=self.deferred_rx)

    @classmethod
    def from_state(cls, state: NetState, backend: NetBackend, rx_rate_limiter=None,
                   tx_rate_limiter=None) -> Net:
        from ..device import VirtioStateError
        try:
            dev = cls(backend, guest_mac=state.guest_mac, mtu=state.mtu,
                      rx_rate_limiter=rx_rate_limiter, tx_rate_limiter=tx_rate_limiter)
        except ValueError as e:
            raise VirtioStateError(str(e)) from None
        dev.load_virtio_state(state.virtio)
        if state.deferred_rx is not None:
            head, length = state.deferred_rx
            if not 0 <= head < QUEUE_SIZE or not VNET_HDR_SIZE <= length <= VNET_HDR_SIZE + 65536:
                raise VirtioStateError(f"net: saved deferred receive {state.deferred_rx!r} is out of range")
            dev.deferred_rx = (head, length)
        return dev

