"""/network-interfaces through the ApiController (no sockets, no KVM): PUT before boot reaches
the builder as a NetworkInterface in VmResources; PATCH after boot updates the rate limiters
as Firecracker's."""
from __future__ import annotations

import pytest
from test_controller import FakeMicroVm, call

from pyrite.api.controller import ApiController
from pyrite.api.logger import Logger
from pyrite.api.metrics import Metrics
from pyrite.devices.virtio.handler import DeviceUpdateError

BUCKET = {"size": 1000, "one_time_burst": 0, "refill_time": 100}


class NetVm(FakeMicroVm):
    """TEST DOUBLE: records update_device calls; an unknown iface id fails as the real Vmm does."""

    def update_device(self, kind, iface_id, update):
        if (kind, iface_id) != ("net", "eth0"):
            raise DeviceUpdateError(f"{kind} device {iface_id}: no such device")
        self.calls.append(("update_device", iface_id, update.rx_rate_limiter, update.tx_rate_limiter))


@pytest.fixture
def api(tmp_path):
    booted = []

    def fake_boot(resources, **kwargs):    # TEST DOUBLE of pyrite.api.boot.boot_microvm
        booted.append((resources, NetVm()))
        booted[-1][1].start()
        return booted[-1][1]

    controller = ApiController(instance_id="net-vm", boot=fake_boot, logger=Logger("net-vm", level="Off"),
                               metrics=Metrics())
    controller.booted = booted
    kernel = tmp_path / "vmlinux"
    kernel.write_bytes(b"\x7fELF")
    controller.kernel = str(kernel)
    return controller


def test_put_then_start_gives_the_builder_the_interface(api):
    assert call(api, "PUT", "/boot-source", {"kernel_image_path": api.kernel}).status == 204
    r = call(api, "PUT", "/network-interfaces/eth0", {
        "iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "06:00:AC:10:00:02",
        "rx_rate_limiter": {"bandwidth": BUCKET}})
    assert r.status == 204, r.body
    assert call(api, "PUT", "/actions", {"action_type": "InstanceStart"}).status == 204
    resources, _ = api.booted[0]
    [net] = resources.network_interfaces
    assert (net.iface_id, net.host_dev_name, net.guest_mac) == ("eth0", "tap0", "06:00:AC:10:00:02")
    assert net.rx_rate_limiter.bandwidth.size == 1000 and net.tx_rate_limiter is None


def test_patch_after_boot_updates_the_limiters(api):
    call(api, "PUT", "/boot-source", {"kernel_image_path": api.kernel})
    call(api, "PUT", "/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "tap0"})
    assert call(api, "PATCH", "/network-interfaces/eth0", {"iface_id": "eth0"}).body == {
        "fault_message": "The requested operation is not supported before starting the microVM."}
    call(api, "PUT", "/actions", {"action_type": "InstanceStart"})
    r = call(api, "PATCH", "/network-interfaces/eth0", {"iface_id": "eth0", "tx_rate_limiter": {"ops": BUCKET}})
    assert r.status == 204, r.body
    _, vm = api.booted[0]
    [(_, iface, rx, tx)] = [c for c in vm.calls if isinstance(c, tuple)]
    assert iface == "eth0" and rx is None and tx.ops.size == 1000
    r = call(api, "PATCH", "/network-interfaces/eth9", {"iface_id": "eth9"})
    assert r.status == 400 and "eth9" in r.body["fault_message"]
