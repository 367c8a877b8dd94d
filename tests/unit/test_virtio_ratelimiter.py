import pytest

from pyrite.config.models import RateLimiter as limits, TokenBucket as Bucket
from pyrite.devices.virtio.ratelimiter import BYTES, OPS, NS_PER_MS, RateLimiter, TokenBucket


class Clock:
    def __init__(self):
        self.now = 1_000_000_000

    def __call__(self):
        return self.now

    def advance_ms(self, ms):
        self.now += int(ms * NS_PER_MS)


@pytest.fixture
def clock():
    return Clock()


def test_bucket_starts_full_and_refills_in_proportion_to_time(clock):
    b = TokenBucket(1000, 0, 1000, clock)          # 1000 tokens per second
    assert b.reduce(1000) == (True, 0.0)
    assert b.reduce(1) == (False, 0.0)
    clock.advance_ms(250)
    assert b.reduce(251) == (False, 0.0)           # only 250 came back
    assert b.budget == 250
    assert b.reduce(250) == (True, 0.0)


def test_refill_never_exceeds_the_size(clock):
    b = TokenBucket(100, 0, 10, clock)
    b.reduce(100)
    clock.advance_ms(10_000)
    b.reduce(1)
    assert b.budget == 99


def test_fractional_tokens_carry_over(clock):
    b = TokenBucket(3, 0, 1000, clock)             # one token per 333.3 ms
    b.reduce(3)
    clock.advance_ms(500)                          # 1.5 tokens earned
    assert b.reduce(2) == (False, 0.0) and b.budget == 1
    clock.advance_ms(200)                          # 0.5 + 0.6 = 1.1 tokens: one more whole token
    assert b.reduce(2) == (True, 0.0)


def test_one_time_burst_is_spent_first_and_not_refilled(clock):
    b = TokenBucket(100, 50, 1000, clock)
    assert b.reduce(30) == (True, 0.0) and b.one_time_burst == 20 and b.budget == 100
    assert b.reduce(40) == (True, 0.0) and b.one_time_burst == 0 and b.budget == 80
    clock.advance_ms(5000)
    b.reduce(0)
    assert b.one_time_burst == 0


def test_overconsumption_reports_how_many_buckets_were_borrowed(clock):
    b = TokenBucket(100, 0, 1000, clock)
    ok, ratio = b.reduce(350)
    assert ok and ratio == pytest.approx(2.5) and b.budget == 0


def test_invalid_buckets_are_refused(clock):
    with pytest.raises(ValueError, match="size 0"):
        TokenBucket(0, 0, 100, clock)


def test_limiter_blocks_and_asks_for_a_100ms_timer(clock):
    rl = RateLimiter.from_config(limits(bandwidth=Bucket(size=1000, refill_time=1000)), clock=clock)
    assert rl.consume(1000, BYTES)
    assert not rl.consume(1, BYTES)
    assert rl.blocked and rl.timer_delay_ms == 100
    clock.advance_ms(100)
    assert not rl.consume(1, BYTES)                # still blocked until the timer fires
    rl.timer_expired()
    assert rl.consume(100, BYTES) and not rl.blocked


def test_limiter_over_consumption_blocks_for_the_borrowed_time(clock):
    rl = RateLimiter.from_config(limits(ops=Bucket(size=10, refill_time=100)), clock=clock)
    assert rl.consume(30, OPS)                     # two buckets borrowed -> 200 ms
    assert rl.blocked and rl.timer_delay_ms == 200


def test_absent_or_zero_buckets_do_not_limit(clock):
    rl = RateLimiter.from_config(limits(bandwidth=Bucket(size=0, refill_time=100),
                                        ops=Bucket(size=10, refill_time=0)), clock=clock)
    assert rl.bandwidth is None and rl.ops is None
    assert all(rl.consume(1 << 40, kind) for kind in (BYTES, OPS))


def test_manual_replenish_and_update(clock):
    rl = RateLimiter(TokenBucket(100, 0, 1000, clock), TokenBucket(5, 0, 1000, clock))
    rl.consume(100, BYTES)
    rl.manual_replenish(40, BYTES)
    assert rl.bandwidth.budget == 40
    rl.update_buckets(ops=None)
    assert rl.ops is None and rl.bandwidth is not None
    rl.update_buckets(bandwidth=TokenBucket(7, 0, 1000, clock))
    assert rl.bandwidth.size == 7
    with pytest.raises(ValueError, match="'frames'"):
        rl.consume(1, "frames")


def test_admit_takes_one_op_and_the_bytes(clock):
    rl = RateLimiter(TokenBucket(1000, 0, 1000, clock), TokenBucket(5, 0, 1000, clock))
    assert rl.admit(300)
    assert rl.ops.budget == 4 and rl.bandwidth.budget == 700
    assert rl.admit(0)                             # a request without data takes an op only
    assert rl.ops.budget == 3 and rl.bandwidth.budget == 700


def test_admit_refused_for_want_of_bytes_gives_the_op_back(clock):
    rl = RateLimiter(TokenBucket(1000, 0, 1000, clock), TokenBucket(5, 0, 1000, clock))
    assert rl.admit(900)
    assert not rl.admit(200)
    assert rl.ops.budget == 4 and rl.bandwidth.budget == 100      # nothing taken by the refusal
    assert rl.blocked and rl.timer_delay_ms == 100
    assert not rl.admit(1)                         # blocked until the owner's timer fires
    rl.timer_expired()
    assert rl.admit(100) and rl.ops.budget == 3 and rl.bandwidth.budget == 0


def test_admit_refused_for_want_of_ops_takes_no_bytes(clock):
    rl = RateLimiter(TokenBucket(1000, 0, 1000, clock), TokenBucket(1, 0, 1000, clock))
    assert rl.admit(10)
    assert not rl.admit(10)
    assert rl.ops.budget == 0 and rl.bandwidth.budget == 990 and rl.blocked


def test_admit_without_buckets_always_succeeds(clock):
    rl = RateLimiter()
    assert all(rl.admit(n) for n in (0, 1, 1 << 40)) and not rl.blocked
