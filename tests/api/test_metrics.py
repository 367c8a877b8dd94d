"""Firecracker's virtio device metric groups, without a VMM: the counters come from a fake
Vmm.device_metrics(). (tests/api/test_lifecycle.py checks them on a booted guest.)"""
from __future__ import annotations

import json

from pyrite.api.metrics import BLOCK_COUNTERS, ENTROPY_COUNTERS, NET_COUNTERS, VSOCK_COUNTERS, Metrics


class FakeDevices:
    """Cumulative counters as pyrite.vmm.Vmm.device_metrics() returns them."""

    def __init__(self):
        self.counters = {"block_rootfs": dict.fromkeys(BLOCK_COUNTERS, 0),
                         "block_scratch": dict.fromkeys(BLOCK_COUNTERS, 0),
                         "entropy": dict.fromkeys(ENTROPY_COUNTERS, 0)}
        self.torn_down = False

    def __call__(self) -> dict[str, dict[str, int]]:
        if self.torn_down:
            raise RuntimeError("the VMM is gone")
        return {group: dict(values) for group, values in self.counters.items()}


def flushed(metrics: Metrics) -> dict:
    return json.loads(metrics.line())


def test_each_drive_has_a_group_and_block_is_their_sum():
    devices, metrics = FakeDevices(), Metrics()
    metrics.add_device_source(devices)
    devices.counters["block_rootfs"].update(read_bytes=4096, read_count=1, flush_count=2)
    devices.counters["block_scratch"].update(read_bytes=512, read_count=1, write_bytes=1024, write_count=2)
    devices.counters["entropy"].update(entropy_bytes=64, entropy_event_count=1)
    line = flushed(metrics)
    assert line["block_rootfs"]["read_bytes"] == 4096 and line["block_rootfs"]["flush_count"] == 2
    assert line["block_scratch"]["write_count"] == 2
    assert line["block"] == {"read_bytes": 4608, "write_bytes": 1024, "read_count": 2, "write_count": 2,
                             "flush_count": 2, "invalid_reqs_count": 0, "rate_limiter_throttled_events": 0}
    assert line["entropy"] == {"entropy_bytes": 64, "entropy_event_count": 1, "entropy_rate_limiter_throttled": 0}


def test_device_counters_are_incremental_between_flushes():
    devices, metrics = FakeDevices(), Metrics()
    metrics.add_device_source(devices)
    devices.counters["block_rootfs"]["write_bytes"] = 1000
    assert flushed(metrics)["block_rootfs"]["write_bytes"] == 1000
    devices.counters["block_rootfs"]["write_bytes"] = 1500
    devices.counters["block_scratch"]["write_bytes"] = 10
    line = flushed(metrics)
    assert (line["block_rootfs"]["write_bytes"], line["block_scratch"]["write_bytes"]) == (500, 10)
    assert line["block"]["write_bytes"] == 510
    assert flushed(metrics)["block"]["write_bytes"] == 0


def test_without_devices_block_and_entropy_are_zero_and_no_drive_group_exists():
    """Firecracker writes the "block" and "entropy" groups even with no device."""
    line = flushed(Metrics())
    assert set(line["block"]) == set(BLOCK_COUNTERS) and not any(line["block"].values())
    assert set(line["entropy"]) == set(ENTROPY_COUNTERS) and not any(line["entropy"].values())
    assert not [group for group in line if group.startswith("block_")]


def test_counters_of_devices_without_a_group_are_ignored():
    """A device kind with no metric group here yet (or a counter Firecracker does not name)."""
    devices, metrics = FakeDevices(), Metrics()
    metrics.add_device_source(devices)
    devices.counters["balloon"] = {"inflate_count": 5}
    devices.counters["block_rootfs"]["not_a_firecracker_counter"] = 7
    line = flushed(metrics)
    assert "balloon" not in line and "not_a_firecracker_counter" not in line["block_rootfs"]


def test_each_interface_has_a_group_net_is_their_sum_and_vsock_has_its_group():
    devices, metrics = FakeDevices(), Metrics()
    devices.counters.update({"net_eth0": dict.fromkeys(NET_COUNTERS, 0), "net_eth1": dict.fromkeys(NET_COUNTERS, 0),
                             "vsock": dict.fromkeys(VSOCK_COUNTERS, 0)})
    metrics.add_device_source(devices)
    devices.counters["net_eth0"].update(tx_packets_count=3, tx_bytes_count=300)
    devices.counters["net_eth1"].update(tx_packets_count=1, rx_fails=2)
    devices.counters["vsock"].update(conns_added=2, rx_bytes_count=40)
    line = flushed(metrics)
    assert line["net_eth0"]["tx_bytes_count"] == 300 and line["net_eth1"]["rx_fails"] == 2
    assert (line["net"]["tx_packets_count"], line["net"]["rx_fails"]) == (4, 2)
    assert set(line["net"]) == set(NET_COUNTERS)
    assert line["vsock"]["conns_added"] == 2 and line["vsock"]["rx_bytes_count"] == 40


def test_a_failing_device_source_does_not_break_the_flush():
    devices, metrics = FakeDevices(), Metrics()
    metrics.add_device_source(devices)
    devices.counters["block_rootfs"]["read_bytes"] = 512
    assert flushed(metrics)["block_rootfs"]["read_bytes"] == 512
    devices.torn_down = True
    line = flushed(metrics)
    assert line["block_rootfs"]["read_bytes"] == 0 and line["uart"] is not None
