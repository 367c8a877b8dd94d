"""Fixtures for tests that need a usable /dev/kvm (they skip, saying why, when there is none)."""
from __future__ import annotations

import ctypes
import errno
import mmap
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from pyrite.kvm import KvmError, System, Vcpu, Vm

GUEST_RAM = 0x10000       # 64 KiB at guest-physical 0
CODE_ADDR = 0x1000        # where real_mode_guest places its code
REPO = Path(__file__).resolve().parents[2]


# System() errors that mean "this machine has no usable /dev/kvm": the device or the module is
# missing, or we may not open it. Any other error (a wrong ioctl, a bad API version) fails.
NO_KVM_ERRNOS = {errno.ENOENT, errno.ENXIO, errno.ENODEV, errno.EACCES, errno.EPERM}


@pytest.fixture(scope="session")
def kvm():
    try:
        system = System()
    except KvmError as e:
        if e.errno not in NO_KVM_ERRNOS:
            raise
        pytest.skip(f"/dev/kvm is not usable: {e}")
    yield system
    system.close()


@dataclass
class RealModeGuest:
    vm: Vm
    vcpu: Vcpu
    ram: mmap.mmap


@pytest.fixture
def real_mode_guest(kvm):
    """Factory: a VM with 64 KiB of RAM at 0 and one vCPU (id `vcpu_id`) in real mode at CS:IP
    0:0x1000 running `code`."""
    made = []

    def make(code: bytes, memory_flags: int = 0, irqchip: bool = False, vcpu_id: int = 0) -> RealModeGuest:
        vm = kvm.create_vm()
        ram = mmap.mmap(-1, GUEST_RAM)
        host_addr = ctypes.addressof(ctypes.c_char.from_buffer(ram))
        vm.set_user_memory_region(0, 0, GUEST_RAM, host_addr, memory_flags)
        if irqchip:
            vm.create_irqchip()
        ram[CODE_ADDR:CODE_ADDR + len(code)] = code
        vcpu = vm.create_vcpu(vcpu_id)
        sregs = vcpu.get_sregs()
        sregs.cs.base, sregs.cs.selector = 0, 0
        vcpu.set_sregs(sregs)
        regs = vcpu.get_regs()
        regs.rip, regs.rflags = CODE_ADDR, 0x2
        vcpu.set_regs(regs)
        guest = RealModeGuest(vm, vcpu, ram)
        made.append(guest)
        return guest

    yield make
    for guest in made:
        guest.vcpu.close()
        guest.vm.close()
        # ram: the VM no longer maps it; dropping the mmap object unmaps it


@pytest.fixture(scope="session")
def firecracker_bin() -> Path:
    """The real Firecracker binary: $PYRITE_FIRECRACKER, or the one benchmarks/refs.py fetches."""
    override = os.environ.get("PYRITE_FIRECRACKER")
    if override:
        return Path(override)
    sys.path.insert(0, str(REPO))
    from benchmarks import refs
    try:
        return refs.firecracker_binary()
    except (refs.RefError, OSError) as e:
        pytest.skip(f"the Firecracker binary could not be fetched: {e}")
