"""virtio-rng in the VMM: made from a pyrite.config Entropy."""
from __future__ import annotations

from ..handler import VirtioHandler, rate_limiter


class EntropyHandler(VirtioHandler):
    kind, kind_name, noun = "entropy", "virtio-rng", "entropy device"
    polled_queues = (0,)          # the request queue: a driver waits for each answer

    @staticmethod
    def configs(resources) -> list:
        return [resources.entropy] if resources.entropy is not None else []

    @classmethod
    def create(cls, entropy) -> EntropyHandler:
        from .backend import drbg_random
        from .device import Entropy
        return cls(entropy, Entropy(source=drbg_random,
                                    rate_limiter=rate_limiter(entropy.rate_limiter, "entropy device")))
