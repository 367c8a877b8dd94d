"""The split virtqueue of virtio 1.2 (section 2.7), device side, modelled on rust-vmm virtio-queue.

`Queue` holds only the queue's configuration and indices; guest memory is an argument to
every call that touches the rings. `Queue.pop(mem)` takes the next available chain head and
returns a `DescriptorChain`, an iterator over its descriptors that stops a looping chain
after as many steps as the table has entries (its TTL) and follows one level of indirect
table. Every guest-provided address is checked against guest memory before it is used.

Guest mistakes raise a subclass of `VirtioError`; each message names the queue:

- `QueueError` subclasses mean the queue itself can no longer be trusted (the device must
  ask for a reset, spec 2.1.2);
- `InvalidChain` subclasses concern one descriptor chain, which can still be returned to
  the driver through the used ring (with an error status where the device has one).

Ring layout (2.7.2, 2.7.6, 2.7.8): descriptor table 16*size bytes, 16-aligned; available
ring flags, idx, ring[size] (le16), used_event, 2-aligned; used ring flags, idx,
ring[size] of {le32 id, le32 len}, avail_event, 4-aligned.
"""
from __future__ import annotations

import sys
import threading
from struct import Struct

from ...memory import GuestMemoryError

TYPE_CHECKING = False   # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Iterator

    from ...memory import GuestMemory
    from .persist import QueueState

MAX_QUEUE_SIZE = 32768          # 2.7: Queue Size is a power of 2 up to 32768

VIRTQ_DESC_F_NEXT = 1
VIRTQ_DESC_F_WRITE = 2
VIRTQ_DESC_F_INDIRECT = 4
VIRTQ_AVAIL_F_NO_INTERRUPT = 1
VIRTQ_USED_F_NO_NOTIFY = 1

DESC_SIZE = 16
DESC_TABLE_ALIGN = 16
AVAIL_RING_ALIGN = 2
USED_RING_ALIGN = 4
RING_HEADER_SIZE = 4            # flags + idx, in both rings
USED_ELEM_SIZE = 8

MAX_CHAIN_BYTES = 1 << 32       # 2.7.5.2: a chain is shorter than 2^32 bytes in total

_DESC = Struct("<QIHH")         # struct virtq_desc: addr, len, flags, next
_USED_ELEM = Struct("<II")      # struct virtq_used_elem: id, len
# Ring indices and flags are read and written while the driver runs, so they go through
# memoryview.cast("H") views: one 16-bit load or store each. (struct's pack_into zeroes its
# target before writing, so the driver could see used->idx pass through 0; "<H" reads byte by
# byte and could tear.) The rings are little-endian, as the host must be (asserted).
assert sys.byteorder == "little", "virtio rings are little-endian; native 16-bit words must be too"
_unpack_desc = _DESC.unpack_from
_pack_used_elem = _USED_ELEM.pack_into


_FENCE = threading.Lock()


def _full_barrier() -> None:
    """A full memory fence: taking a lock is a locked instruction, which x86 does not reorder."""
    _FENCE.acquire()
    _FENCE.release()


def desc_table_size(size: int) -> int:
    return DESC_SIZE * size


def avail_ring_size(size: int) -> int:
    return RING_HEADER_SIZE + 2 * size + 2          # with used_event


def used_ring_size(size: int) -> int:
    return RING_HEADER_SIZE + USED_ELEM_SIZE * size + 2   # with avail_event


class VirtioError(Exception):
    """The guest broke the virtio contract."""


class QueueError(VirtioError):
    """The queue as a whole is unusable: the device needs a reset."""


class QueueNotReady(QueueError):
    pass


class InvalidAvailIndex(QueueError):
    """avail->idx ran ahead of the device's next_avail by more than the queue size."""


class InvalidHeadIndex(QueueError):
    """An available ring entry (or a used entry the device was asked to add) names no descriptor."""


class RingOutOfMemory(QueueError):
    """A ring access fell outside guest memory (the rings were not validated, or memory changed)."""


class QueueConfigError(VirtioError):
    """The driver configured a queue against the spec (size or alignment)."""


class InvalidQueueSize(QueueConfigError):
    pass


class MisalignedRing(QueueConfigError):
    pass


class InvalidChain(VirtioError):
    """One descriptor chain is malformed; the chain can still be returned as used."""


class DescriptorIndexOutOfRange(InvalidChain):
    pass


class ChainTooLong(InvalidChain):
    """More descriptors than the table holds: a loop, or a chain longer than the queue."""


class DescriptorOutOfMemory(InvalidChain):
    pass


class ChainTooLarge(InvalidChain):
    """The chain's buffers add up to 2^32 bytes or more."""


class NestedIndirect(InvalidChain):
    pass


class IndirectWithNext(InvalidChain):
    """A descriptor with both VIRTQ_DESC_F_INDIRECT and VIRTQ_DESC_F_NEXT (2.7.5.3.1)."""


class InvalidIndirectTable(InvalidChain):
    """An indirect table whose length is zero, not a multiple of 16, or too long."""


class IndirectTableOutOfMemory(InvalidChain):
    pass


class ReadableAfterWritable(InvalidChain):
    """A device-readable descriptor after a device-writable one (2.7.4.2)."""


class Descriptor:
    """One buffer of a chain; `addr`/`length` have been checked to lie in guest memory."""
    __slots__ = ("addr", "length", "flags", "next")

    def __init__(self, addr: int, length: int, flags: int, next: int):
        self.addr = addr
        self.length = length
        self.flags = flags
        self.next = next

    def __repr__(self) -> str:
        return f"Descriptor(addr={self.addr:#x}, length={self.length}, flags={self.flags:#x}, next={self.next})"

    @property
    def is_write_only(self) -> bool:
        return bool(self.flags & VIRTQ_DESC_F_WRITE)

    @property
    def has_next(self) -> bool:
        return bool(self.flags & VIRTQ_DESC_F_NEXT)

    def view(self, mem: GuestMemory) -> memoryview:
        """Zero-copy view of the buffer (an empty view for a zero-length descriptor)."""
        if self.length == 0:
            return memoryview(bytearray())
        return mem.view(self.addr, self.length)


class DescriptorChain:
    """The descriptors of one available chain, read lazily; iterate it once.

    The TTL is the size of the table being walked (the queue, or an indirect table), so a
    looping chain raises `ChainTooLong` instead of running forever.
    """

    __slots__ = ("mem", "queue_name", "head", "_table", "_table_view", "_table_size", "_next", "_ttl",
                 "_indirect", "_bytes", "_done")

    def __init__(self, mem: GuestMemory, queue_name: str, desc_table: int, queue_size: int, head: int,
                 table_view: memoryview | None = None):
        self.mem = mem
        self.queue_name = queue_name
        self.head = head
        self._table = desc_table
        self._table_view = table_view       # the queue's table, already checked to be in memory
        self._table_size = queue_size
        self._next = head
        self._ttl = queue_size
        self._indirect = False
        self._bytes = 0
        self._done = False

    def __repr__(self) -> str:
        return f"DescriptorChain({self.queue_name}, head={self.head})"

    def __str__(self) -> str:
        """How error messages name the chain: "<queue name>: chain <head>"."""
        return f"{self.queue_name}: chain {self.head}"

    def __iter__(self) -> Iterator[Descriptor]:
        return self

    def _where(self) -> str:
        table = "indirect table" if self._indirect else "descriptor table"
        return f"{self.queue_name}: chain {self.head}, {table} entry {self._next}"

    def _read_descriptor(self) -> tuple[int, int, int, int]:
        """(addr, len, flags, next) of table entry `_next`; the table is bounds-checked here."""
        if self._next >= self._table_size:
            raise DescriptorIndexOutOfRange(
                f"{self.queue_name}: chain {self.head} names descriptor {self._next}, "
                f"{'indirect table' if self._indirect else 'queue'} has {self._table_size}")
        if self._table_view is None:
            addr = self._table + self._next * DESC_SIZE
            if not self.mem.contains(addr, DESC_SIZE):
                kind = IndirectTableOutOfMemory if self._indirect else RingOutOfMemory
                raise kind(f"{self._where()} at {addr:#x} is outside guest memory")
            return _unpack_desc(self.mem.view(addr, DESC_SIZE))
        return _unpack_desc(self._table_view, self._next * DESC_SIZE)

    def _enter_indirect(self, addr: int, length: int, flags: int) -> None:
        if self._indirect:
            raise NestedIndirect(f"{self._where()}: an indirect table inside an indirect table")
        if flags & VIRTQ_DESC_F_NEXT:
            raise IndirectWithNext(f"{self._where()}: descriptor has both INDIRECT and NEXT")
        if length == 0 or length % DESC_SIZE or length // DESC_SIZE > 0xFFFF:
            raise InvalidIndirectTable(
                f"{self._where()}: indirect table length {length} is not a non-zero "
                f"multiple of {DESC_SIZE} up to {0xFFFF * DESC_SIZE}")
        if not self.mem.contains(addr, length):
            raise IndirectTableOutOfMemory(
                f"{self._where()}: indirect table [{addr:#x}, {addr + length:#x}) "
                f"is outside guest memory")
        # 2.7.5.3.2: the indirect table replaces the rest of the chain; its entry 0 comes first.
        self._table = addr
        self._table_view = self.mem.view(addr, length)
        self._table_size = self._ttl = length // DESC_SIZE
        self._next = 0
        self._indirect = True

    def _step(self) -> tuple[int, int, int, int, memoryview | None] | None:
        """The next buffer as (addr, length, flags, next, view), None at the end of the chain.

        All checks of the chain happen here; `view` is None for a zero-length buffer.
        """
        if self._done:
            return None
        self._done = True    # an error below ends the chain for good
        while True:
            if self._ttl == 0:
                raise ChainTooLong(
                    f"{self.queue_name}: chain {self.head} has more than {self._table_size} "
                    f"descriptors (a loop?)")
            addr, length, flags, next_ = self._read_descriptor()
            if not flags & VIRTQ_DESC_F_INDIRECT:
                break
            self._enter_indirect(addr, length, flags)
        self._bytes += length
        if self._bytes >= MAX_CHAIN_BYTES:
            raise ChainTooLarge(f"{self._where()}: the chain's buffers reach {self._bytes} bytes")
        view = None
        if length:
            try:
                view = self.mem.view(addr, length)
            except GuestMemoryError:
                raise DescriptorOutOfMemory(
                    f"{self._where()}: buffer [{addr:#x}, {addr + length:#x}) "
                    f"is outside guest memory") from None
        self._ttl -= 1
        if flags & VIRTQ_DESC_F_NEXT:
            self._next = next_
            self._done = False
        return addr, length, flags, next_, view

    def __next__(self) -> Descriptor:
        step = self._step()
        if step is None:
            raise StopIteration
        return Descriptor(*step[:4])

    def buffers(self) -> tuple[list[memoryview], list[memoryview]]:
        """Walk the rest of the chain: zero-copy (device-readable, device-writable) views.

        Zero-length descriptors are skipped; a readable descriptor after a writable one is
        `ReadableAfterWritable`.
        """
        readable: list[memoryview] = []
        writable: list[memoryview] = []
        step = self._step
        while (buf := step()) is not None:
            addr, length, flags, _, view = buf
            if flags & VIRTQ_DESC_F_WRITE:
                if length:
                    writable.append(view)
            elif writable:
                raise ReadableAfterWritable(
                    f"{self.queue_name}: chain {self.head} has a device-readable buffer at "
                    f"{addr:#x} after a device-writable one")
            elif length:
                readable.append(view)
        return readable, writable


class Queue:
    """A split virtqueue's configuration and indices (2.7); see the module docstring."""
    __slots__ = ("name", "max_size", "size", "ready", "desc_table", "avail_ring", "used_ring",
                 "next_avail", "next_used", "num_added", "event_idx_enabled", "notifications_suppressed",
                 "_views_of", "_desc_view", "_avail_words", "_used_view", "_used_words")

    def __init__(self, max_size: int, name: str = "queue"):
        if not 0 < max_size <= MAX_QUEUE_SIZE or max_size & (max_size - 1):
            raise InvalidQueueSize(f"{name}: maximum size {max_size} is not a power of two up to {MAX_QUEUE_SIZE}")
        self.name = name
        self.max_size = max_size
        self.reset()

    def __repr__(self) -> str:
        return (f"Queue({self.name!r}, size={self.size}, ready={self.ready}, desc={self.desc_table:#x}, "
                f"avail={self.avail_ring:#x}, used={self.used_ring:#x}, next_avail={self.next_avail}, "
                f"next_used={self.next_used})")

    def reset(self) -> None:
        """The reset values: size = max_size, not ready, addresses and indices zero."""
        self.size = self.max_size
        self.ready = False
        self.desc_table = 0
        self.avail_ring = 0
        self.used_ring = 0
        self.next_avail = 0
        self.next_used = 0
        self.num_added = 0                  # used entries added since the last needs_notification
        self.event_idx_enabled = False
        self.notifications_suppressed = False   # the device polls the ring: no kicks wanted
        self._forget_views()

    def _forget_views(self) -> None:
        """Drop the cached ring views (a ring moved or was resized)."""
        self._views_of = None               # the GuestMemory the views below are of
        self._desc_view = self._avail_words = self._used_view = self._used_words = None

    # -- configuration (the transport's register writes) --

    def set_size(self, size: int) -> None:
        if not 0 < size <= self.max_size or size & (size - 1):
            raise InvalidQueueSize(f"{self.name}: size {size} is not a power of two up to {self.max_size}")
        self.size = size
        self._forget_views()

    def set_desc_table(self, addr: int) -> None:
        self.desc_table = self._aligned(addr, DESC_TABLE_ALIGN, "descriptor table")

    def set_avail_ring(self, addr: int) -> None:
        self.avail_ring = self._aligned(addr, AVAIL_RING_ALIGN, "available ring")

    def set_used_ring(self, addr: int) -> None:
        self.used_ring = self._aligned(addr, USED_RING_ALIGN, "used ring")

    def _aligned(self, addr: int, align: int, what: str) -> int:
        self._forget_views()
        if addr % align:
            raise MisalignedRing(f"{self.name}: {what} address {addr:#x} is not {align}-byte aligned")
        return addr

    def check_valid(self, mem: GuestMemory) -> None:
        """Raise a `VirtioError` naming the problem unless the queue can be used (2.7)."""
        if not self.ready:
            raise QueueNotReady(f"{self.name}: not ready")
        if not 0 < self.size <= self.max_size or self.size & (self.size - 1):
            raise InvalidQueueSize(f"{self.name}: size {self.size} is not a power of two up to {self.max_size}")
        for what, addr, align, length in (
                ("descriptor table", self.desc_table, DESC_TABLE_ALIGN, desc_table_size(self.size)),
                ("available ring", self.avail_ring, AVAIL_RING_ALIGN, avail_ring_size(self.size)),
                ("used ring", self.used_ring, USED_RING_ALIGN, used_ring_size(self.size))):
            self._aligned(addr, align, what)
            if not mem.contains(addr, length):
                raise RingOutOfMemory(
                    f"{self.name}: {what} [{addr:#x}, {addr + length:#x}) is outside guest memory")

    def is_valid(self, mem: GuestMemory) -> bool:
        try:
            self.check_valid(mem)
        except VirtioError:
            return False
        return True

    # -- ring access: through views of each ring, made once and checked against memory then --

    def _ring_view(self, mem: GuestMemory, addr: int, length: int, what: str, lasting: bool = False) -> memoryview:
        if not mem.contains(addr, length):
            raise RingOutOfMemory(f"{self.name}: {what} [{addr:#x}, {addr + length:#x}) is outside guest memory")
        # The used ring is written through this cached view: dirty-page logs must always count it.
        return mem.lasting_view(addr, length) if lasting else mem.view(addr, length)

    def _check_views_of(self, mem: GuestMemory) -> None:
        if self._views_of is not mem:
            self._forget_views()
            self._views_of = mem

    def _desc(self, mem: GuestMemory) -> memoryview:
        if self._views_of is not mem or self._desc_view is None:
            self._check_views_of(mem)
            self._desc_view = self._ring_view(mem, self.desc_table, desc_table_size(self.size), "descriptor table")
        return self._desc_view

    def _avail(self, mem: GuestMemory) -> memoryview:
        """The available ring as le16 words: [0] flags, [1] idx, [2 + i] ring[i], [2 + size] used_event."""
        if self._views_of is not mem or self._avail_words is None:
            self._check_views_of(mem)
            view = self._ring_view(mem, self.avail_ring, avail_ring_size(self.size), "available ring")
            self._avail_words = view.cast("H")
        return self._avail_words

    def _used(self, mem: GuestMemory) -> memoryview:
        """The used ring as bytes (for its elements)."""
        if self._views_of is not mem or self._used_view is None:
            self._check_views_of(mem)
            self._used_view = self._ring_view(mem, self.used_ring, used_ring_size(self.size), "used ring",
                                              lasting=True)
            self._used_words = self._used_view.cast("H")
        return self._used_view

    def _used16(self, mem: GuestMemory) -> memoryview:
        """The used ring as le16 words: [0] flags, [1] idx, [2 + 4 * size] avail_event."""
        self._used(mem)
        return self._used_words

    def avail_idx(self, mem: GuestMemory) -> int:
        return self._avail(mem)[1]

    def used_idx(self, mem: GuestMemory) -> int:
        return self._used16(mem)[1]

    def pending(self, mem: GuestMemory) -> int:
        """How many chains the driver has made available that the device has not popped."""
        if not self.ready:
            raise QueueNotReady(f"{self.name}: used before the driver set it ready")
        idx = self._avail(mem)[1]
        ahead = (idx - self.next_avail) & 0xFFFF
        if ahead > self.size:
            raise InvalidAvailIndex(
                f"{self.name}: avail->idx {idx} is {ahead} entries ahead of next_avail "
                f"{self.next_avail}, more than the queue size {self.size}")
        return ahead

    def pop(self, mem: GuestMemory) -> DescriptorChain | None:
        """The next available chain, or None when the driver has made none available."""
        if not self.pending(mem):
            return None
        slot = self.next_avail % self.size
        head = self._avail_words[2 + slot]
        self.next_avail = (self.next_avail + 1) & 0xFFFF
        if head >= self.size:
            raise InvalidHeadIndex(
                f"{self.name}: avail->ring[{slot}] names descriptor {head}, queue has {self.size}")
        return DescriptorChain(mem, self.name, self.desc_table, self.size, head, self._desc(mem))

    def undo_pop(self) -> None:
        """Put the last popped chain back: the device could not serve it yet (rate limited)."""
        self.next_avail = (self.next_avail - 1) & 0xFFFF

    def pop_or_enable_notification(self, mem: GuestMemory) -> DescriptorChain | None:
        """`pop`, and when the ring is empty ask the driver to kick on the next entry.

        With EVENT_IDX the device writes avail_event = next_avail, then looks again, so an
        entry the driver added in between is not missed (2.7.10).
        """
        chain = self.pop(mem)
        if chain is None and self.event_idx_enabled and not self.notifications_suppressed:
            self.set_avail_event(mem)
            chain = self.pop(mem)
        return chain

    def set_avail_event(self, mem: GuestMemory) -> None:
        """With EVENT_IDX, tell the driver to notify once it makes entry `next_avail` available."""
        if self.event_idx_enabled:
            self._used16(mem)[2 + 4 * self.size] = self.next_avail

    def suppress_notifications(self, mem: GuestMemory) -> None:
        """The device will poll the available ring: ask the driver not to kick (2.7.7, 2.7.10).

        Without EVENT_IDX that is VIRTQ_USED_F_NO_NOTIFY in used->flags; with it, avail_event
        is simply left behind next_avail, which the driver has then already passed.
        """
        self.notifications_suppressed = True
        if not self.event_idx_enabled:
            self._used16(mem)[0] = VIRTQ_USED_F_NO_NOTIFY

    def enable_notifications(self, mem: GuestMemory) -> bool:
        """Stop polling: ask the driver to kick again; whether chains are waiting already.

        The driver may have added a chain after the device last looked but before it saw the
        request, and then not kicked: the caller must serve the queue when this says True.
        """
        self.notifications_suppressed = False
        if self.event_idx_enabled:
            self.set_avail_event(mem)
        else:
            self._used16(mem)[0] = 0
        _full_barrier()      # the store above before the load below (the driver has a matching one)
        return self.pending(mem) > 0

    def add_used(self, mem: GuestMemory, head: int, length: int) -> None:
        """Return chain `head` to the driver with `length` bytes written into it (2.7.8.2)."""
        if not 0 <= head < self.size:
            raise InvalidHeadIndex(f"{self.name}: used entry for descriptor {head}, queue has {self.size}")
        if not 0 <= length < MAX_CHAIN_BYTES:
            raise ValueError(f"{self.name}: used length {length} does not fit in 32 bits")
        # The element is not the driver's until used->idx covers it: pack_into may write it
        # in any way. It is written before used->idx (x86 keeps stores in order).
        _pack_used_elem(self._used(mem), RING_HEADER_SIZE + USED_ELEM_SIZE * (self.next_used % self.size),
                        head, length)
        self.next_used = (self.next_used + 1) & 0xFFFF
        self.num_added = (self.num_added + 1) & 0xFFFF
        self._used_words[1] = self.next_used

    def needs_notification(self, mem: GuestMemory) -> bool:
        """Whether the driver wants a used-buffer notification now (2.7.7.2, 2.7.10).

        Without EVENT_IDX: unless avail->flags has VIRTQ_AVAIL_F_NO_INTERRUPT. With EVENT_IDX:
        if used->idx passed used_event since the last call (Linux's vring_need_event).
        """
        if not self.event_idx_enabled:
            self.num_added = 0
            flags = self._avail(mem)[0]
            return not flags & VIRTQ_AVAIL_F_NO_INTERRUPT
        used_event = self._avail(mem)[2 + self.size]
        new, old = self.next_used, (self.next_used - self.num_added) & 0xFFFF
        self.num_added = 0
        return (new - used_event - 1) & 0xFFFF < (new - old) & 0xFFFF

    # -- snapshots --

    def state(self) -> QueueState:
        from .persist import QueueState
        return QueueState(max_size=self.max_size, size=self.size, ready=self.ready,
                          desc_table=self.desc_table, avail_ring=self.avail_ring,
                          used_ring=self.used_ring, next_avail=self.next_avail,
                          next_used=self.next_used, num_added=self.num_added,
                          event_idx_enabled=self.event_idx_enabled)

    @classmethod
    def from_state(cls, state: QueueState, name: str = "queue") -> Queue:
        """A queue from a saved record; sizes, alignment and indices are validated."""
        q = cls(state.max_size, name)
        q.set_size(state.size)
        q.set_desc_table(state.desc_table)
        q.set_avail_ring(state.avail_ring)
        q.set_used_ring(state.used_ring)
        for field in ("next_avail", "next_used", "num_added"):
            value = getattr(state, field)
            if not 0 <= value <= 0xFFFF:
                raise QueueConfigError(f"{name}: saved {field} {value} is not a 16-bit index")
            setattr(q, field, value)
        q.ready = bool(state.ready)
        q.event_idx_enabled = bool(state.event_idx_enabled)
        return q
