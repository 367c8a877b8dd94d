"""Property tests: whatever a guest writes into the rings, the queue code ends, raises only
VirtioError subclasses, and keeps the used ring consistent with what it popped."""
import struct

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from virtio_driver import RingDriver

from pyrite.devices.virtio import queue as vq
from pyrite.memory import GuestMemory  # noqa: E402

MEM_SIZE = 256 << 10
RING_BASE = 0x1000
SCRATCH = 0x10000                 # random bytes, used as indirect tables and buffers
SCRATCH_SIZE = 0x4000

_mem = None


def memory() -> GuestMemory:
    global _mem
    if _mem is None:
        _mem = GuestMemory([(0, MEM_SIZE)])
    return _mem


SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_inside = st.integers(SCRATCH, SCRATCH + SCRATCH_SIZE - 1)
addresses = st.one_of(                                     # mostly inside memory, so chains get walked
    _inside, _inside, _inside, _inside,
    st.integers(MEM_SIZE - 64, MEM_SIZE + 64),             # straddling the end
    st.integers(0, (1 << 64) - 1),                         # anywhere
)
lengths = st.one_of(st.integers(0, 64), st.integers(0, 64), st.sampled_from([16, 32, 48, 4096, 0xFFFFFFFF]),
                    st.integers(0, 0xFFFFFFFF))
flags = st.one_of(st.just(1), st.just(3), st.integers(0, 7))     # NEXT and NEXT|WRITE often


@st.composite
def garbage_queue(draw):
    size = draw(st.sampled_from([1, 2, 4, 8, 16, 32]))
    index = st.one_of(st.integers(0, size - 1), st.integers(0, size - 1), st.integers(0, size + 2))
    descs = draw(st.lists(st.tuples(addresses, lengths, flags, index), min_size=size, max_size=size))
    ring = draw(st.lists(index, min_size=size, max_size=size))
    next_avail = draw(st.integers(0, 0xFFFF))
    ahead = draw(st.one_of(st.integers(0, size), st.integers(0, size), st.integers(0, 0xFFFF)))
    scratch = draw(st.binary(min_size=256, max_size=256))
    return size, descs, ring, next_avail, ahead, scratch


def run_device(mem, q, limit_descs):
    """A device's loop: pop, walk, return every chain; stop at a queue-level error."""
    popped = []
    try:
        while (chain := q.pop(mem)) is not None:
            walked = 0
            try:
                for desc in chain:
                    walked += 1
                    assert walked <= limit_descs
                    assert desc.length == 0 or mem.contains(desc.addr, desc.length)
            except vq.InvalidChain as e:
                event(type(e).__name__)
                assert q.name in str(e)
            q.add_used(mem, chain.head, walked)
            popped.append((chain.head, walked))
            assert len(popped) <= q.size
    except vq.QueueError as e:
        event(type(e).__name__)
        assert q.name in str(e)
    return popped


@SETTINGS
@given(garbage_queue())
def test_arbitrary_rings_never_escape_or_hang(case):
    size, descs, ring, next_avail, ahead, scratch = case
    mem = memory()
    mem.write(SCRATCH, scratch * (SCRATCH_SIZE // len(scratch)))
    d = RingDriver(mem, size=size, base=RING_BASE, data=SCRATCH)
    for i, (addr, length, flags, nxt) in enumerate(descs):
        d.write_desc(i, addr, length, flags, nxt)
    for i, head in enumerate(ring):
        mem.write(d.avail + 4 + 2 * ((next_avail + i) % size), struct.pack("<H", head))
    d.set_avail_idx(next_avail + ahead)
    q = d.queue(name="fuzzed queue")
    q.next_avail = q.next_used = next_avail
    mem.write(d.used + 2, struct.pack("<H", next_avail))
    d.used_seen = next_avail

    popped = run_device(mem, q, limit_descs=size + MEM_SIZE // 16)

    ahead &= 0xFFFF
    if ahead > size:
        assert popped == []
    else:
        assert len(popped) <= ahead
    # The used ring holds exactly what was returned, in order, and used->idx counts it.
    assert d.take_used() == popped
    assert d.used_idx() == (next_avail + len(popped)) & 0xFFFF
    assert all(head < size for head, _ in popped)


@st.composite
def wellformed_chains(draw):
    size = draw(st.sampled_from([4, 8, 16, 64]))
    chains = []
    budget = size
    for _ in range(draw(st.integers(1, size))):
        indirect = draw(st.booleans())
        n_read = draw(st.integers(0, 4))
        n_write = draw(st.integers(0 if n_read else 1, 4))
        cost = 1 if indirect else n_read + n_write
        if cost > budget:
            break
        budget -= cost
        bufs = [(draw(st.integers(1, 64)), False) for _ in range(n_read)]
        bufs += [(draw(st.integers(1, 64)), True) for _ in range(n_write)]
        chains.append((indirect, bufs, draw(st.integers(0, 10_000))))
    return size, chains


@SETTINGS
@given(wellformed_chains())
def test_wellformed_chains_come_back_as_written(case):
    size, chains = case
    mem = memory()
    d = RingDriver(mem, size=size, base=RING_BASE, data=SCRATCH)
    q = d.queue()
    expected = []
    for n, (indirect, bufs, used_len) in enumerate(chains):
        laid = [(d.alloc(length, bytes([n & 0xFF]) * length), length, w) for length, w in bufs]
        head = d.add_indirect_chain(laid) if indirect else d.add_chain(laid)
        d.publish(head)
        expected.append((head, laid, used_len))

    for head, laid, used_len in expected:
        chain = q.pop(mem)
        assert chain.head == head
        readable, writable = chain.buffers()
        assert [(len(v), False) for v in readable] + [(len(v), True) for v in writable] == \
               [(length, w) for _, length, w in laid]
        assert all(bytes(v) == bytes(mem.read(a, ln)) for v, (a, ln, _) in zip(readable, laid))
        q.add_used(mem, chain.head, used_len)
    assert q.pop(mem) is None
    assert d.take_used() == [(head, used_len) for head, _, used_len in expected]


@SETTINGS
@given(size=st.sampled_from([1, 2, 8, 256]), start=st.integers(0, 0xFFFF), idx=st.integers(0, 0xFFFF))
def test_avail_index_jumps(size, start, idx):
    mem = memory()
    d = RingDriver(mem, size=size, base=RING_BASE, data=SCRATCH)
    for i in range(size):
        d.write_desc(i, SCRATCH, 1, 0)
        mem.write(d.avail + 4 + 2 * i, struct.pack("<H", i))
    d.set_avail_idx(idx)
    q = d.queue()
    q.next_avail = start
    ahead = (idx - start) & 0xFFFF
    if ahead > size:
        with pytest.raises(vq.InvalidAvailIndex):
            q.pop(mem)
        assert q.next_avail == start
    else:
        count = 0
        while q.pop(mem) is not None:
            count += 1
        assert count == ahead and q.next_avail == idx
