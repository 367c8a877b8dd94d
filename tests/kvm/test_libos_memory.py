"""The library OS's anonymous memory reads as zero, whether its pages are fresh (handed out
without being written: the VMM's RAM is zero at boot) or reused."""
from __future__ import annotations

import os

import pytest

from pyrite import MicroVM
from guests import guest_image

pytestmark = pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK), reason="/dev/kvm missing or not accessible")


def test_fresh_and_reused_memory_reads_as_zero():
    with MicroVM(kernel=str(guest_image("mem_zero")), mem_mib=64) as vm:
        vm.start()
        result = vm.wait(timeout=60)
        out = vm.console_output.decode()
    assert result.status == 0, out
    for case in ("fresh", "reused", "mremap_tail", "mremap_kept", "brk_regrown"):
        assert f"{case}=ok" in out, out
