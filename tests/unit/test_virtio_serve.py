"""`VirtioDevice.serve`, the one loop every device serves its queues with: what each answer of
the per-chain callback does to the rings, and when the driver is signalled."""
import pytest
from virtio_driver import RingDriver

from pyrite.devices.virtio.device import KEEP, PUT_BACK, VirtioDevice
from pyrite.devices.virtio.queue import InvalidChain
from pyrite.memory import GuestMemory


class Interrupt:
    def __init__(self):
        self.signals = []
        self.errors = []

    def signal_used_queue(self, index):
        self.signals.append(index)

    def guest_error(self, message):
        self.errors.append(message)


class Scripted(VirtioDevice):
    """Answers each chain with the next item of `answers`: a byte count, a sentinel, or an
    exception to raise."""
    name = "scripted"

    def __init__(self, answers):
        super().__init__((16,))
        self.answers = list(answers)
        self.seen = []

    def handle(self, chain):
        self.seen.append(chain.head)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def mem():
    m = GuestMemory([(0, 1 << 20)])
    yield m
    m.close()


def rig(mem, answers, chains=3, device_class=Scripted):
    """A device whose queue 0 holds `chains` one-buffer chains; (device, ring, heads, interrupt)."""
    ring = RingDriver(mem)
    heads = [ring.add_chain([(ring.alloc(64), 64, True)]) for _ in range(chains)]
    ring.publish(*heads)
    dev, irq = device_class(answers), Interrupt()
    dev.activate(mem, [ring.queue()], irq)
    return dev, ring, heads, irq


def test_every_chain_goes_back_with_its_byte_count_and_one_signal(mem):
    dev, ring, heads, irq = rig(mem, [10, 0, 64])
    dev.serve(0, dev.handle)
    assert ring.take_used() == [(heads[0], 10), (heads[1], 0), (heads[2], 64)]
    assert irq.signals == [0]


def test_put_back_leaves_the_chain_available_and_stops(mem):
    dev, ring, heads, irq = rig(mem, [5, PUT_BACK, 7, 8])
    dev.serve(0, dev.handle)
    assert ring.take_used() == [(heads[0], 5)]
    assert irq.signals == [0]                          # for the chain that was returned
    dev.serve(0, dev.handle)                           # e.g. when the limiter's timer fires
    assert dev.seen == [heads[0], heads[1], heads[1], heads[2]]
    assert ring.take_used() == [(heads[1], 7), (heads[2], 8)]


def test_keep_consumes_the_chain_without_returning_it(mem):
    dev, ring, heads, irq = rig(mem, [KEEP, 9, 9])
    dev.serve(0, dev.handle)
    assert ring.take_used() == [] and irq.signals == []
    dev.serve(0, dev.handle)
    assert dev.seen == [heads[0], heads[1], heads[2]]  # the kept chain is not popped again
    assert ring.take_used() == [(heads[1], 9), (heads[2], 9)]


def test_an_invalid_chain_goes_back_empty_is_logged_and_serving_goes_on(mem):
    dev, ring, heads, irq = rig(mem, [InvalidChain("scripted queue 0: chain 0 is broken"), 4, 4])
    dev.serve(0, dev.handle)
    assert ring.take_used() == [(heads[0], 0), (heads[1], 4), (heads[2], 4)]
    assert irq.errors == ["scripted queue 0: chain 0 is broken"] and irq.signals == [0]


class NeedsReset(Scripted):
    def on_invalid_chain(self, index, error):
        raise error


def test_an_invalid_chain_re_raised_by_the_device_is_returned_and_signalled_first(mem):
    error = InvalidChain("no status byte")
    dev, ring, heads, irq = rig(mem, [3, error, 4], device_class=NeedsReset)
    with pytest.raises(InvalidChain) as raised:
        dev.serve(0, dev.handle)
    assert raised.value is error
    assert ring.take_used() == [(heads[0], 3), (heads[1], 0)]
    assert irq.signals == [0] and irq.errors == []
    assert dev.seen == heads[:2]                       # nothing served after the error


def test_other_exceptions_propagate_with_the_chains_before_them_signalled(mem):
    dev, ring, heads, irq = rig(mem, [3, OSError("backend gone")])
    with pytest.raises(OSError):
        dev.serve(0, dev.handle)
    assert ring.take_used() == [(heads[0], 3)] and irq.signals == [0]


def test_more_is_asked_before_each_pop(mem):
    dev, ring, heads, irq = rig(mem, [1, 2, 3])
    budget = iter([True, True, False])
    dev.serve(0, dev.handle, more=lambda: next(budget))
    assert ring.take_used() == [(heads[0], 1), (heads[1], 2)]
    dev.serve(0, dev.handle, more=lambda: False)
    assert ring.take_used() == [] and dev.seen == heads[:2]


def test_chains_the_caller_returned_are_signalled_even_if_none_is_served(mem):
    dev, ring, heads, irq = rig(mem, [], chains=0)
    dev.serve(0, dev.handle)
    assert irq.signals == []
    dev.serve(0, dev.handle, returned=1)
    assert irq.signals == [0]
