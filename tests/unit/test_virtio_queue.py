import struct

import pytest
from virtio_driver import F_INDIRECT, F_NEXT, F_WRITE, RingDriver

from pyrite.devices.virtio import queue as vq
from pyrite.memory import GuestMemory

MEM_SIZE = 1 << 20


@pytest.fixture
def mem():
    m = GuestMemory([(0, MEM_SIZE)])
    yield m
    m.close()


def test_pop_yields_the_chain_the_driver_wrote_with_zero_copy_views(mem):
    d = RingDriver(mem)
    q = d.queue()
    out = d.alloc(8, b"request!")
    inp = d.alloc(32)
    d.publish(d.add_chain([(out, 8, False), (inp, 32, True)]))

    chain = q.pop(mem)
    assert chain.head == 0
    readable, writable = chain.buffers()
    assert [bytes(v) for v in readable] == [b"request!"]
    writable[0][:5] = b"reply"
    assert mem.read(inp, 5) == b"reply"      # written straight into guest memory
    assert q.pop(mem) is None


def test_descriptors_carry_flags_and_addresses(mem):
    d = RingDriver(mem)
    q = d.queue()
    a, b = d.alloc(16), d.alloc(4)
    d.publish(d.add_chain([(a, 16, False), (b, 4, True)]))
    descs = list(q.pop(mem))
    assert [(x.addr, x.length, x.is_write_only) for x in descs] == [(a, 16, False), (b, 4, True)]
    assert descs[0].has_next and not descs[1].has_next


def test_add_used_writes_the_element_then_the_index(mem):
    d = RingDriver(mem)
    q = d.queue()
    d.publish(d.add_chain([(d.alloc(4), 4, True)]), d.add_chain([(d.alloc(4), 4, True)]))
    first, second = q.pop(mem), q.pop(mem)
    q.add_used(mem, second.head, 3)
    q.add_used(mem, first.head, 4)
    assert d.take_used() == [(second.head, 3), (first.head, 4)]
    assert d.used_idx() == 2


def test_add_used_refuses_a_head_outside_the_queue(mem):
    d = RingDriver(mem)
    q = d.queue()
    with pytest.raises(vq.InvalidHeadIndex, match="test queue: used entry for descriptor 16"):
        q.add_used(mem, 16, 0)
    assert d.used_idx() == 0


def test_avail_index_may_run_a_full_queue_ahead_but_no_further(mem):
    d = RingDriver(mem, size=8)
    q = d.queue()
    for i in range(8):
        d.write_desc(i, d.alloc(4), 4, F_WRITE)
    d.publish(*range(8))
    assert q.pending(mem) == 8
    assert sum(1 for _ in iter(lambda: q.pop(mem), None)) == 8

    d.set_avail_idx(8 + 9)
    with pytest.raises(vq.InvalidAvailIndex, match=r"test queue: avail->idx 17 is 9 entries ahead of next_avail 8"):
        q.pop(mem)


def test_indices_wrap_at_16_bits(mem):
    d = RingDriver(mem, size=4)
    q = d.queue()
    q.next_avail = q.next_used = 0xFFFE
    d.avail_idx = d.used_seen = 0xFFFE
    mem.write(d.used + 2, struct.pack("<H", 0xFFFE))
    for i in range(4):
        d.write_desc(i, d.alloc(4), 4, F_WRITE)
    d.publish(0, 1, 2, 3)
    heads = []
    while (c := q.pop(mem)) is not None:
        heads.append(c.head)
        q.add_used(mem, c.head, 1)
    assert heads == [0, 1, 2, 3]
    assert q.next_avail == 2 and d.used_idx() == 2
    assert d.take_used() == [(0, 1), (1, 1), (2, 1), (3, 1)]


def test_head_outside_the_table_is_a_queue_error(mem):
    d = RingDriver(mem, size=8)
    q = d.queue()
    d.publish(9)
    with pytest.raises(vq.InvalidHeadIndex, match=r"test queue: avail->ring\[0\] names descriptor 9, queue has 8"):
        q.pop(mem)


def test_a_descriptor_loop_ends_after_queue_size_steps(mem):
    d = RingDriver(mem, size=8)
    q = d.queue()
    buf = d.alloc(4)
    d.write_desc(0, buf, 4, F_NEXT, 1)
    d.write_desc(1, buf, 4, F_NEXT, 0)
    d.publish(0)
    chain = q.pop(mem)
    seen = []
    with pytest.raises(vq.ChainTooLong, match="test queue: chain 0 has more than 8 descriptors"):
        for desc in chain:
            seen.append(desc)
    assert len(seen) == 8
    assert list(chain) == []                  # an ended chain stays ended


def test_a_chain_of_exactly_queue_size_descriptors_is_fine(mem):
    d = RingDriver(mem, size=8)
    q = d.queue()
    head = d.add_chain([(d.alloc(4), 4, True) for _ in range(8)])
    d.publish(head)
    assert len(list(q.pop(mem))) == 8


def test_next_index_outside_the_table(mem):
    d = RingDriver(mem, size=8)
    q = d.queue()
    d.write_desc(0, d.alloc(4), 4, F_NEXT, 8)
    d.publish(0)
    with pytest.raises(vq.DescriptorIndexOutOfRange, match="chain 0 names descriptor 8, queue has 8"):
        list(q.pop(mem))


@pytest.mark.parametrize("addr,length", [(MEM_SIZE - 2, 4), (MEM_SIZE, 1), (1 << 63, 16), (0, 0xFFFFFFFF)])
def test_buffers_outside_guest_memory_are_refused(mem, addr, length):
    d = RingDriver(mem)
    q = d.queue()
    d.write_desc(0, addr, length, 0)
    d.publish(0)
    with pytest.raises(vq.DescriptorOutOfMemory, match=f"test queue: chain 0.*{addr:#x}.*outside guest memory"):
        list(q.pop(mem))


def test_zero_length_descriptor_is_not_dereferenced(mem):
    d = RingDriver(mem)
    q = d.queue()
    d.write_desc(0, 1 << 40, 0, F_NEXT, 1)
    d.write_desc(1, d.alloc(4), 4, F_WRITE)
    d.publish(0)
    readable, writable = q.pop(mem).buffers()
    assert readable == [] and [len(v) for v in writable] == [4]


def test_indirect_table_is_followed(mem):
    d = RingDriver(mem)
    q = d.queue()
    a, b = d.alloc(16, b"x" * 16), d.alloc(8)
    d.publish(d.add_indirect_chain([(a, 16, False), (b, 8, True)]))
    readable, writable = q.pop(mem).buffers()
    assert [bytes(v) for v in readable] == [b"x" * 16]
    assert [len(v) for v in writable] == [8]


def test_direct_descriptors_then_an_indirect_table(mem):
    d = RingDriver(mem)
    q = d.queue()
    table = d.alloc(32)
    d.write_desc(0, d.alloc(4), 4, 0, table=table)
    d.write_desc(0, d.alloc(16), 16, F_NEXT, 1)
    d.write_desc(1, table, 16, F_INDIRECT)
    d.publish(0)
    assert [x.length for x in q.pop(mem)] == [16, 4]


def test_indirect_table_length_must_be_a_multiple_of_16(mem):
    d = RingDriver(mem)
    q = d.queue()
    d.write_desc(0, d.alloc(32), 24, F_INDIRECT)
    d.publish(0)
    with pytest.raises(vq.InvalidIndirectTable, match="indirect table length 24"):
        list(q.pop(mem))


def test_indirect_table_outside_memory(mem):
    d = RingDriver(mem)
    q = d.queue()
    d.write_desc(0, MEM_SIZE - 16, 32, F_INDIRECT)
    d.publish(0)
    with pytest.raises(vq.IndirectTableOutOfMemory):
        list(q.pop(mem))


def test_nested_indirect_is_refused(mem):
    d = RingDriver(mem)
    q = d.queue()
    outer, inner = d.alloc(16), d.alloc(16)
    d.write_desc(0, d.alloc(4), 4, 0, table=inner)
    d.write_desc(0, inner, 16, F_INDIRECT, table=outer)
    d.write_desc(0, outer, 16, F_INDIRECT)
    d.publish(0)
    with pytest.raises(vq.NestedIndirect, match="indirect table inside an indirect table"):
        list(q.pop(mem))


def test_indirect_with_next_is_refused(mem):
    d = RingDriver(mem)
    q = d.queue()
    table = d.alloc(16)
    d.write_desc(0, d.alloc(4), 4, 0, table=table)
    d.write_desc(0, table, 16, F_INDIRECT | F_NEXT, 1)
    d.publish(0)
    with pytest.raises(vq.IndirectWithNext):
        list(q.pop(mem))


def test_looping_indirect_table_ends_after_its_length(mem):
    d = RingDriver(mem)
    q = d.queue()
    table = d.alloc(48)
    for i in range(3):
        d.write_desc(i, d.alloc(4), 4, F_NEXT, (i + 1) % 3, table=table)
    d.write_desc(0, table, 48, F_INDIRECT)
    d.publish(0)
    with pytest.raises(vq.ChainTooLong, match="more than 3 descriptors"):
        list(q.pop(mem))


def test_readable_after_writable_is_refused(mem):
    d = RingDriver(mem)
    q = d.queue()
    d.publish(d.add_chain([(d.alloc(4), 4, True), (d.alloc(4), 4, False)]))
    with pytest.raises(vq.ReadableAfterWritable, match="device-readable buffer .* after a device-writable one"):
        q.pop(mem).buffers()


def test_chain_of_4_gib_is_refused(mem):
    # 4096 descriptors that each cover all of guest memory add up to exactly 2^32 bytes.
    d = RingDriver(mem, size=4096)
    q = d.queue()
    d.publish(d.add_chain([(0, MEM_SIZE, True)] * 4096))
    chain = q.pop(mem)
    with pytest.raises(vq.ChainTooLarge, match="reach 4294967296 bytes"):
        for _ in chain:
            pass


def test_notification_without_event_idx_follows_avail_flags(mem):
    d = RingDriver(mem)
    q = d.queue()
    assert q.needs_notification(mem)
    d.set_avail_flags(vq.VIRTQ_AVAIL_F_NO_INTERRUPT)
    assert not q.needs_notification(mem)


def test_notification_with_event_idx_fires_when_used_idx_passes_used_event(mem):
    d = RingDriver(mem)
    q = d.queue(event_idx=True)
    d.set_avail_flags(vq.VIRTQ_AVAIL_F_NO_INTERRUPT)     # ignored with EVENT_IDX (2.7.10)
    d.set_used_event(2)                                  # "tell me when entry 2 is used"
    for i in range(4):
        d.write_desc(i, d.alloc(4), 4, F_WRITE)
    d.publish(0, 1, 2, 3)
    decisions = []
    for _ in range(4):
        q.add_used(mem, q.pop(mem).head, 4)
        decisions.append(q.needs_notification(mem))
    assert decisions == [False, False, True, False]


def test_event_idx_batch_notifies_once_when_it_crosses_used_event(mem):
    d = RingDriver(mem)
    q = d.queue(event_idx=True)
    d.set_used_event(1)
    for i in range(3):
        d.write_desc(i, d.alloc(4), 4, F_WRITE)
    d.publish(0, 1, 2)
    for _ in range(3):
        q.add_used(mem, q.pop(mem).head, 4)
    assert q.needs_notification(mem)
    assert not q.needs_notification(mem)


def test_pop_or_enable_notification_publishes_avail_event(mem):
    d = RingDriver(mem)
    q = d.queue(event_idx=True)
    d.publish(d.add_chain([(d.alloc(4), 4, True)]))
    assert q.pop_or_enable_notification(mem) is not None
    assert q.pop_or_enable_notification(mem) is None
    assert d.avail_event() == 1                          # kick me when entry 1 is made available


def test_setters_enforce_power_of_two_sizes_and_alignment():
    q = vq.Queue(256, "q")
    for bad in (0, 3, 512):
        with pytest.raises(vq.InvalidQueueSize, match=f"q: size {bad}"):
            q.set_size(bad)
    with pytest.raises(vq.MisalignedRing, match="descriptor table address 0x1008 is not 16-byte aligned"):
        q.set_desc_table(0x1008)
    with pytest.raises(vq.MisalignedRing):
        q.set_avail_ring(0x1001)
    with pytest.raises(vq.MisalignedRing):
        q.set_used_ring(0x1002)
    q.set_used_ring(0x1004)
    assert q.used_ring == 0x1004
    with pytest.raises(vq.InvalidQueueSize):
        vq.Queue(100)


def test_is_valid_checks_readiness_and_that_rings_are_in_memory(mem):
    d = RingDriver(mem, size=16)
    q = d.queue()
    assert q.is_valid(mem)
    q.set_used_ring(MEM_SIZE - 8)
    with pytest.raises(vq.RingOutOfMemory, match="test queue: used ring"):
        q.check_valid(mem)
    q = d.queue()
    q.ready = False
    assert not q.is_valid(mem)


def test_rings_straddling_two_regions_are_not_valid():
    m = GuestMemory([(0, 0x1000), (0x1000 * 2, 0x1000)])
    q = vq.Queue(256, "q")
    q.set_desc_table(0x800)                 # 4 KiB table would cross into the hole
    q.set_avail_ring(0x2000)
    q.set_used_ring(0x2400)
    q.ready = True
    assert not q.is_valid(m)
    m.close()


def test_queue_not_ready_refuses_pop(mem):
    q = vq.Queue(16, "q")
    with pytest.raises(vq.QueueNotReady):
        q.pop(mem)


def test_state_round_trip_and_validation(mem):
    d = RingDriver(mem)
    q = d.queue(event_idx=True)
    d.publish(d.add_chain([(d.alloc(4), 4, True)]))
    q.add_used(mem, q.pop(mem).head, 1)
    state = q.state()
    q2 = vq.Queue.from_state(state, "restored")
    assert q2.state() == state
    state.desc_table += 8
    with pytest.raises(vq.MisalignedRing, match="restored"):
        vq.Queue.from_state(state, "restored")
