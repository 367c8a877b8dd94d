"""virtio-blk (virtio 1.2 section 5.2), sans-I/O: one request queue served from a `BlockBackend`.

Offered features: VIRTIO_BLK_F_RO for a read-only drive, VIRTIO_BLK_F_FLUSH when asked to
honour flushes, plus VERSION_1, EVENT_IDX and INDIRECT_DESC. The configuration space is
`capacity` (le64, in 512-byte sectors), as in Firecracker.

Requests: IN, OUT, FLUSH and GET_ID; any other type is answered VIRTIO_BLK_S_UNSUPP.
Answered with VIRTIO_BLK_S_IOERR (5.2.6.1 and Firecracker): a write to a read-only drive
(no data written), data that is not a whole number of sectors, sectors past the end of the
disk, a header shorter than 16 bytes, buffers in the wrong direction, and backend failures.
A chain that cannot be walked, or has no device-writable byte for the status, cannot be
answered: it is returned with 0 bytes and the device asks for a reset.

With a `rate_limiter` (pyrite.devices.virtio.ratelimiter), each request takes one ops token
and, for IN and OUT, as many bandwidth tokens as it has data bytes (Firecracker's rule); a
request the limiter refuses goes back to the ring (`Queue.undo_pop`) and processing stops
until the owner's timer calls `RateLimiter.timer_expired()` and kicks the queue again.
Counters for metrics (Firecracker's names) are plain attributes: `read_bytes`, ...
"""
from __future__ import annotations

from struct import pack

from ..device import PUT_BACK, TYPE_BLOCK, VirtioDevice
from .request import (SECTOR_SIZE, VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK,
                      VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN,
                      VIRTIO_BLK_T_OUT, InvalidRequest, Request, parse, take_status, total_length)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..queue import DescriptorChain, InvalidChain
    from .backend import BlockBackend
    from .persist import BlockState

VIRTIO_BLK_F_RO = 5
VIRTIO_BLK_F_FLUSH = 9

QUEUE_SIZE = 256                 # Firecracker's block queue size


class Block(VirtioDevice):
    device_type = TYPE_BLOCK
    name = "block"

    def __init__(self, backend: BlockBackend, read_only: bool = False, flush: bool = True,
                 disk_id: bytes | None = None, queue_size: int = QUEUE_SIZE, rate_limiter=None):
        features = (1 << VIRTIO_BLK_F_RO if read_only else 0) | (1 << VIRTIO_BLK_F_FLUSH if flush else 0)
        super().__init__((queue_size,), features)
        self.backend = backend
        self.read_only = read_only
        self.disk_id = (backend.disk_id() if disk_id is None else disk_id)[:VIRTIO_BLK_ID_BYTES]
        self.capacity = backend.size // SECTOR_SIZE    # a partial last sector is not visible
        self.rate_limiter = rate_limiter
        self.read_bytes = self.write_bytes = self.read_count = self.write_count = 0
        self.flush_count = self.invalid_reqs_count = self.rate_limiter_throttled_events = 0

    def config_space(self) -> bytes:
        return pack("<Q", self.capacity)

    def metrics(self) -> dict[str, int]:
        """Firecracker's block metric counters that pyrite keeps (cumulative)."""
        return {"read_bytes": self.read_bytes, "write_bytes": self.write_bytes, "read_count": self.read_count,
                "write_count": self.write_count, "flush_count": self.flush_count,
                "invalid_reqs_count": self.invalid_reqs_count,
                "rate_limiter_throttled_events": self.rate_limiter_throttled_events}

    def update_backend(self, backend: BlockBackend) -> None:
        """Swap the backing file (PATCH /drives): new capacity, and the driver is told."""
        self.backend = backend
        self.capacity = backend.size // SECTOR_SIZE
        if self.activated:
            self.interrupt.signal_config_change()

    # -- request processing --

    def process_queue(self, index: int) -> None:
        self.serve(index, self._serve_request)

    def _serve_request(self, chain: DescriptorChain) -> int:
        where = chain           # str(chain) names it, formatted only for an error message
        # A chain that cannot be walked or has no status byte raises InvalidChain: see on_invalid_chain.
        readable, writable = chain.buffers()
        data_in, status = take_status(writable, where)
        try:
            req = parse(readable, data_in, where)
        except InvalidRequest as e:
            self.guest_error(str(e))
            req = None
        if req is not None and self.rate_limiter is not None and not self.rate_limiter.admit(_data_bytes(req)):
            self.rate_limiter_throttled_events += 1
            return PUT_BACK           # served again when the limiter's timer fires
        if req is None:
            self.invalid_reqs_count += 1
            code, written = VIRTIO_BLK_S_IOERR, 0
        else:
            try:
                code, written = self._execute(req, where)
            except InvalidRequest as e:
                self.guest_error(str(e))
                self.invalid_reqs_count += 1
                code, written = VIRTIO_BLK_S_IOERR, 0
        status[0] = code
        return written + 1

    def on_invalid_chain(self, index: int, error: InvalidChain) -> None:
        raise error                   # no status byte to answer in: the chain went back empty, ask for a reset

    def _execute(self, req: Request, where: object) -> tuple[int, int]:
        """Carry out `req`: (status, bytes written into the driver's buffers)."""
        if req.type == VIRTIO_BLK_T_IN:
            if req.data_out:
                raise InvalidRequest(f"{where}: read request with {total_length(req.data_out)} "
                                     f"device-readable data bytes")
            code, length = self._transfer(req, req.data_in, where, self.backend.readinto)
            if code == VIRTIO_BLK_S_OK:
                self.read_count += 1
                self.read_bytes += length
            return code, length
        if req.type == VIRTIO_BLK_T_OUT:
            if req.data_in:
                raise InvalidRequest(f"{where}: write request with {total_length(req.data_in)} "
                                     f"device-writable data bytes")
            if self.read_only:
                self.guest_error(f"{where}: write to read-only drive at sector {req.sector}")
                return VIRTIO_BLK_S_IOERR, 0
            code, length = self._transfer(req, req.data_out, where, self.backend.write)
            if code == VIRTIO_BLK_S_OK:
                self.write_count += 1
                self.write_bytes += length
            return code, 0
        if req.type == VIRTIO_BLK_T_FLUSH:
            try:
                self.backend.flush()
            except OSError as e:
                self.guest_error(f"{where}: flush failed: {e}")
                return VIRTIO_BLK_S_IOERR, 0
            self.flush_count += 1
            return VIRTIO_BLK_S_OK, 0
        if req.type == VIRTIO_BLK_T_GET_ID:
            if total_length(req.data_in) < VIRTIO_BLK_ID_BYTES:
                raise InvalidRequest(f"{where}: GET_ID with {total_length(req.data_in)} bytes, "
                                     f"needs {VIRTIO_BLK_ID_BYTES}")
            ident = self.disk_id.ljust(VIRTIO_BLK_ID_BYTES, b"\0")   # NUL-padded (5.2.6)
            for buf in req.data_in:
                n = min(len(buf), len(ident))
                buf[:n] = ident[:n]
                ident = ident[n:]
                if not ident:
                    break
            return VIRTIO_BLK_S_OK, VIRTIO_BLK_ID_BYTES
        return VIRTIO_BLK_S_UNSUPP, 0

    def _transfer(self, req: Request, buffers: list[memoryview], where: object, io) -> tuple[int, int]:
        length = total_length(buffers)
        if length % SECTOR_SIZE:
            raise InvalidRequest(f"{where}: {length} data bytes is not a whole number of sectors")
        if req.sector + length // SECTOR_SIZE > self.capacity:
            raise InvalidRequest(f"{where}: sectors [{req.sector}, {req.sector + length // SECTOR_SIZE}) "
                                 f"run past the end of the disk ({self.capacity} sectors)")
        try:
            io(req.sector * SECTOR_SIZE, buffers)
        except OSError as e:
            self.guest_error(f"{where}: I/O at sector {req.sector} failed: {e}")
            return VIRTIO_BLK_S_IOERR, 0
        return VIRTIO_BLK_S_OK, length

    # -- snapshots --

    def state(self) -> BlockState:
        from .persist import BlockState
        return BlockState(virtio=self.virtio_state(), read_only=self.read_only,
                          disk_id=self.disk_id, capacity=self.capacity)

    @classmethod
    def from_state(cls, state: BlockState, backend: BlockBackend, flush: bool = True) -> Block:
        from ..device import VirtioStateError
        dev = cls(backend, read_only=state.read_only, flush=flush, disk_id=state.disk_id)
        if dev.capacity != state.capacity:
            raise VirtioStateError(f"block: saved capacity {state.capacity} sectors, backend "
                                   f"{backend!r} has {dev.capacity}")
        dev.load_virtio_state(state.virtio)
        return dev


def _data_bytes(req: Request) -> int:
    """The bandwidth tokens a request takes: its data bytes for IN and OUT, none otherwise."""
    if req.type == VIRTIO_BLK_T_IN:
        return total_length(req.data_in)
    if req.type == VIRTIO_BLK_T_OUT:
        return total_length(req.data_out)
    return 0
