"""Firecracker's token-bucket rate limiter (src/vmm/src/rate_limiter), as pure logic.

A `TokenBucket` holds up to `size` tokens and refills completely in `refill_time` ms,
continuously; `one_time_burst` tokens come on top, once, and are spent first. A
`RateLimiter` has a bandwidth (bytes) bucket and an ops bucket, either absent (unlimited).

Firecracker arms a timerfd when a bucket runs dry. Here the limiter only says when it
wants to be woken: `consume()` returns False and `blocked` becomes True, `timer_delay_ms`
holds the delay to arm (100 ms on a plain shortage, or the time an over-sized request
borrowed), and the owner calls `timer_expired()` when that timer fires. The clock is
injected (`clock()` returns monotonic nanoseconds), so tests need no sleeping.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from math import gcd

NS_PER_MS = 1_000_000
REFILL_TIMER_INTERVAL_MS = 100     # Firecracker's retry interval when a bucket is empty

BYTES = "bytes"
OPS = "ops"


class TokenBucket:
    """`size` tokens refilled over `refill_time` ms, plus a one-time burst (Firecracker's TokenBucket)."""

    def __init__(self, size: int, one_time_burst: int = 0, refill_time: int = 1000,
                 clock: Callable[[], int] = time.monotonic_ns):
        if size <= 0 or refill_time <= 0 or one_time_burst < 0:
            raise ValueError(f"token bucket: size {size} and refill_time {refill_time} ms must be "
                             f"positive, one_time_burst {one_time_burst} not negative")
        self.size = size
        self.initial_one_time_burst = one_time_burst
        self.one_time_burst = one_time_burst
        self.refill_time = refill_time
        self.clock = clock
        self.budget = size                   # starts full
        self.last_update = clock()
        # tokens = elapsed_ns * size / (refill_time * 1e6), kept as a reduced fraction.
        refill_ns = refill_time * NS_PER_MS
        common = gcd(size, refill_ns)
        self._capacity = size // common
        self._refill_ns = refill_ns // common

    def __repr__(self) -> str:
        return (f"TokenBucket(size={self.size}, one_time_burst={self.one_time_burst}, "
                f"refill_time={self.refill_time}, budget={self.budget})")

    def _replenish(self) -> None:
        now = self.clock()
        elapsed = now - self.last_update
        if elapsed >= self.refill_time * NS_PER_MS:
            self.budget = self.size
            self.last_update = now
            return
        tokens = elapsed * self._capacity // self._refill_ns
        # Advance last_update only by the time those whole tokens took, rounded up, so the
        # fraction of a token already earned carries over to the next call.
        self.last_update += -(-tokens * self._refill_ns // self._capacity)
        self.budget = min(self.budget + tokens, self.size)

    def reduce(self, tokens: int) -> tuple[bool, float]:
        """Take `tokens`: (succeeded, overconsumption ratio; 0.0 unless more than `size` was taken)."""
        if self.one_time_burst > 0:
            if self.one_time_burst >= tokens:
                self.one_time_burst -= tokens
                self.last_update = self.clock()
                return True, 0.0
            tokens -= self.one_time_burst
            self.one_time_burst = 0
        if tokens > self.budget:
            self._replenish()
            if tokens > self.size:
                # Larger than the whole bucket: let it through, empty the bucket and report how
                # many bucket-fulls were borrowed so the caller can pause that long.
                tokens -= self.budget
                self.budget = 0
                return True, tokens / self.size
            if tokens > self.budget:
                return False, 0.0
        self.budget -= tokens
        return True, 0.0

    def state(self) -> list[int]:
        """[budget, one_time_burst, ns since the last refill] (Firecracker's TokenBucket persist)."""
        return [self.budget, self.one_time_burst, self.clock() - self.last_update]

    def restore(self, state: list[int]) -> None:
        """Take a saved state (ValueError if it is not three non-negative integers)."""
        if len(state) != 3 or any(type(v) is not int or v < 0 for v in state):
            raise ValueError(f"token bucket: saved state {state!r} is not [budget, one_time_burst, elapsed_ns]")
        budget, burst, elapsed = state
        self.budget = min(budget, self.size)
        self.one_time_burst = min(burst, self.initial_one_time_burst)
        self.last_update = self.clock() - elapsed

    def force_replenish(self, tokens: int) -> None:
        """Give tokens back (undo a consume)."""
        if self.one_time_burst > 0:
            self.one_time_burst = min(self.one_time_burst + tokens, self.initial_one_time_burst)
            return
        self.budget = min(self.budget + tokens, self.size)


class RateLimiter:
    """Bandwidth and ops token buckets; a bucket of size 0 or refill_time 0 is no limit."""

    def __init__(self, bandwidth: TokenBucket | None = None, ops: TokenBucket | None = None):
        self.bandwidth = bandwidth
        self.ops = ops
        self.blocked = False
        self.timer_delay_ms = 0           # what the owner should arm its timer to, when blocked

    @classmethod
    def from_config(cls, config, clock: Callable[[], int] = time.monotonic_ns) -> RateLimiter:
        """From a pyrite.config RateLimiter model (Firecracker's RateLimiterConfig)."""
        return cls(bucket_from_config(config.bandwidth, clock), bucket_from_config(config.ops, clock))

    def __repr__(self) -> str:
        return f"RateLimiter(bandwidth={self.bandwidth}, ops={self.ops}, blocked={self.blocked})"

    def _bucket(self, kind: str) -> TokenBucket | None:
        if kind == BYTES:
            return self.bandwidth
        if kind == OPS:
            return self.ops
        raise ValueError(f"rate limiter: token kind {kind!r} is neither {BYTES!r} nor {OPS!r}")

    def consume(self, tokens: int, kind: str) -> bool:
        """Whether `tokens` of `kind` may go now; False while blocked (Firecracker's consume)."""
        if self.blocked:
            return False
        bucket = self._bucket(kind)
        if bucket is None:
            return True
        ok, ratio = bucket.reduce(tokens)
        if not ok:
            self._block(REFILL_TIMER_INTERVAL_MS)
            return False
        if ratio:
            # At least 1 ms: a zero-length timer would never fire and never unblock.
            self._block(max(1, int(ratio * bucket.refill_time)))
        return True

    def admit(self, nbytes: int) -> bool:
        """One OPS token and `nbytes` BYTES tokens (none for 0 bytes), or nothing taken and False.

        Firecracker's rule for one request or frame; a False leaves the limiter blocked.
        """
        if not self.consume(1, OPS):
            return False
        if nbytes and not self.consume(nbytes, BYTES):
            self.manual_replenish(1, OPS)
            return False
        return True

    def _block(self, delay_ms: int) -> None:
        self.blocked = True
        self.timer_delay_ms = delay_ms

    def manual_replenish(self, tokens: int, kind: str) -> None:
        bucket = self._bucket(kind)
        if bucket is not None:
            bucket.force_replenish(tokens)

    def state(self) -> dict:
        """Each bucket's saved state (None for an absent bucket)."""
        return {kind: bucket.state() if bucket is not None else None
                for kind, bucket in (("bandwidth", self.bandwidth), ("ops", self.ops))}

    def restore(self, state: dict) -> None:
        """Take the budgets of state() into buckets of the same configuration (ValueError if the
        saved buckets are not the ones this limiter has)."""
        if not isinstance(state, dict):
            raise ValueError(f"rate limiter: saved state {state!r:.40} is not a record")
        for kind, bucket in (("bandwidth", self.bandwidth), ("ops", self.ops)):
            saved = state.get(kind)
            if (saved is None) != (bucket is None):
                raise ValueError(f"rate limiter: saved {kind} bucket {saved!r} does not match {bucket!r}")
            if bucket is not None:
                bucket.restore(saved)

    def timer_expired(self) -> None:
        """The owner's timer fired: consuming is allowed again."""
        self.blocked = False
        self.timer_delay_ms = 0

    def update_buckets(self, bandwidth: TokenBucket | None | bool = False,
                       ops: TokenBucket | None | bool = False) -> None:
        """PATCH: a new bucket replaces the old one, None disables it, False leaves it as is."""
        if bandwidth is not False:
            self.bandwidth = bandwidth
        if ops is not False:
            self.ops = ops


def bucket_from_config(config, clock: Callable[[], int] = time.monotonic_ns) -> TokenBucket | None:
    """A TokenBucket from a pyrite.config TokenBucket model; None when it limits nothing."""
    if config is None or config.size == 0 or config.refill_time == 0:
        return None                   # Firecracker: either at zero disables the bucket
    return TokenBucket(config.size, config.one_time_burst or 0, config.refill_time, clock)
