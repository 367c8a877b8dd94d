"""virtio-rng, the entropy device (virtio 1.2 section 5.4), sans-I/O.

One request queue; no configuration space and no device-specific features. The driver
places device-writable buffers in the queue; the device fills each with bytes from
`source(n)` (the kernel's getrandom by default; the VMM gives it OpenSSL's DRBG, see
backend.py) and returns it with the count written.

A chain with a device-readable buffer breaks 5.4.6.1 ("The driver MUST NOT place
driver-readable buffers into the queue"): it is returned with 0 bytes written, and so is a
chain that cannot be walked (a loop, an address outside memory...); both are logged.
Only queue-level errors (a bad avail index or head) make the device ask for a reset.

With a `rate_limiter`, each request takes one ops token and as many bandwidth tokens as its
buffers hold (Firecracker's rule); a refused request goes back to the ring until the owner's
timer calls `RateLimiter.timer_expired()` and kicks the queue again.
"""
from __future__ import annotations

from collections.abc import Callable

from ..device import PUT_BACK, TYPE_RNG, VirtioDevice
from ..queue import InvalidChain
from .backend import host_random

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..queue import DescriptorChain
    from .persist import EntropyState

QUEUE_SIZE = 256                 # Firecracker's entropy queue size


class Entropy(VirtioDevice):
    device_type = TYPE_RNG
    name = "entropy"

    def __init__(self, source: Callable[[int], bytes] = host_random, queue_size: int = QUEUE_SIZE,
                 rate_limiter=None):
        super().__init__((queue_size,))
        self.source = source
        self.rate_limiter = rate_limiter
        self.entropy_bytes = self.entropy_event_count = self.entropy_rate_limiter_throttled = 0

    def metrics(self) -> dict[str, int]:
        """Firecracker's entropy metric counters that pyrite keeps (cumulative)."""
        return {"entropy_bytes": self.entropy_bytes, "entropy_event_count": self.entropy_event_count,
                "entropy_rate_limiter_throttled": self.entropy_rate_limiter_throttled}

    def process_queue(self, index: int) -> None:
        self.serve(index, self._serve_request)

    def _serve_request(self, chain: DescriptorChain) -> int:
        readable, writable = chain.buffers()
        if readable:
            # Returned with 0 bytes like any broken chain: a complete answer for this device.
            raise InvalidChain(f"{chain} has a device-readable buffer")
        wanted = sum(len(b) for b in writable)
        if self.rate_limiter is not None and wanted and not self.rate_limiter.admit(wanted):
            self.entropy_rate_limiter_throttled += 1
            return PUT_BACK           # served again when the limiter's timer fires
        written = self._fill(writable)
        self.entropy_bytes += written
        self.entropy_event_count += 1
        return written

    def _fill(self, buffers: list[memoryview]) -> int:
        written = 0
        for buf in buffers:
            data = self.source(len(buf))[:len(buf)]
            buf[:len(data)] = data
            written += len(data)
            if len(data) < len(buf):
                break            # 5.4.6.1: the device MAY use less than the whole buffer
        return written

    def state(self) -> EntropyState:
        from .persist import EntropyState
        return EntropyState(virtio=self.virtio_state())

    @classmethod
    def from_state(cls, state: EntropyState, source: Callable[[int], bytes] = host_random) -> Entropy:
        dev = cls(source)
        dev.load_virtio_state(state.virtio)
        return dev
