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

    @staticmethod
    def state_types() -> tuple[type, type]:
        from ..persist import MmioTransportState
        from .persist import EntropyState
        return EntropyState, MmioTransportState

    def restored_device(self, state):
        from .device import Entropy
        device = Entropy.from_state(state, source=self.device.source)
        device.rate_limiter = self.device.rate_limiter
        return device
