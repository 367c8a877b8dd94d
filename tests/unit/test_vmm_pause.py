"""Vmm.pause() reports Paused only when every vCPU parked (no KVM: vCPU threads are doubles)."""
from __future__ import annotations

import threading

import pytest

from pyrite.vmm import vmm as vmm_module
from pyrite.vmm.vcpu import RunControl
from pyrite.vmm.vmm import PAUSED, RUNNING, PauseError, Vmm


class ParkingVcpu:
    """TEST DOUBLE of VcpuThread: parks when kicked while a pause is asked for, unless stuck."""

    def __init__(self, control: RunControl, stuck: bool = False):
        self.control, self.stuck = control, stuck
        self.thread = threading.current_thread()

    def kick(self) -> None:
        if self.stuck:
            return                       # a vCPU that never leaves KVM_RUN
        with self.control.cond:
            if self.control.paused:
                self.control.parked += 1
                self.control.cond.notify_all()


def running_vmm(*stuck: bool) -> Vmm:
    control = RunControl()
    vmm = Vmm(system=None, vm=None, memory=None, vcpus=[ParkingVcpu(control, s) for s in stuck], control=control,
              event_loop=None, legacy=None, closers=[])
    vmm.state = RUNNING
    return vmm


def test_pause_waits_for_every_vcpu_to_park():
    vmm = running_vmm(False, False)
    vmm.pause()
    assert vmm.state == PAUSED and vmm.control.parked == 2


def test_a_vcpu_that_never_parks_makes_pause_fail_and_the_vm_keep_running(monkeypatch):
    monkeypatch.setattr(vmm_module, "PAUSE_TIMEOUT_S", 0.05)
    vmm = running_vmm(False, True)
    with pytest.raises(PauseError, match="1 of 2 vCPUs did not stop"):
        vmm.pause()
    assert vmm.state == RUNNING and not vmm.control.paused
