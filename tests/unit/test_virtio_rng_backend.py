"""The entropy device's byte sources: OpenSSL's DRBG (what the VMM uses) and the kernel's."""
from __future__ import annotations

from pyrite.devices.virtio.rng import backend


def test_both_sources_give_the_asked_count_of_distinct_bytes():
    for source in (backend.drbg_random, backend.host_random):
        a, b = source(4096), source(4096)
        assert len(a) == len(b) == 4096 and a != b
        assert len(set(a)) > 200          # 4096 uniform bytes cover nearly all 256 values


def test_the_vmm_gives_its_entropy_device_the_drbg(tmp_path):
    from pyrite.config import Entropy
    from pyrite.devices.virtio.rng.handler import EntropyHandler
    assert EntropyHandler.create(Entropy()).device.source is backend.drbg_random
