"""Firecracker's metrics: one JSON object per line, flushed every 60 s, on FlushMetrics and
at exit, with Firecracker's group and counter names (src/vmm/src/logger/metrics.rs).

Two kinds of counter, as in Firecracker: an incremental counter reports what happened since
the previous flush (SharedIncMetric), a stored value reports its current value
(SharedStoreMetric). Only counters pyrite really keeps are written; more groups arrive with
their devices. Counters the VMM keeps itself (vCPU exits, serial bytes) are read at flush
time from sources the VMM wiring registers with `add_source`.

    METRICS.put_api_requests.inc("machine_cfg_count")
    METRICS.add_source("vcpu", lambda: {"exit_io_out": vmm.exit_counts().get("io-out", 0)})
"""
from __future__ import annotations

import os
import threading
import time

from pyrite.config.encode import encode_json

INC, STORE = "inc", "store"
FLUSH_INTERVAL_S = 60

# The virtio device counters pyrite keeps (pyrite.vmm.Vmm.device_metrics()), all incremental.
BLOCK_COUNTERS = ("read_bytes", "write_bytes", "read_count", "write_count", "flush_count",
                  "invalid_reqs_count", "rate_limiter_throttled_events")
ENTROPY_COUNTERS = ("entropy_bytes", "entropy_event_count", "entropy_rate_limiter_throttled")
NET_COUNTERS = ("rx_bytes_count", "rx_packets_count", "rx_fails", "rx_rate_limiter_throttled", "tx_bytes_count",
                "tx_packets_count", "tx_fails", "tx_malformed_frames", "tx_rate_limiter_throttled")
VSOCK_COUNTERS = ("rx_bytes_count", "tx_bytes_count", "rx_packets_count", "tx_packets_count", "conns_added",
                  "conns_killed", "conns_removed", "tx_write_fails", "rx_read_fails")
# Device kinds with a group per device ("block_<drive_id>", "net_<iface_id>") and a sum.
PER_DEVICE = ("block", "net")

# group -> counter -> kind. Only counters pyrite maintains.
SCHEMA: dict[str, dict[str, str]] = {
    "api_server": {"process_startup_time_us": STORE, "process_startup_time_cpu_us": STORE},
    "deprecated_api": {"deprecated_http_api_calls": INC, "deprecated_cmd_line_api_calls": INC},
    "get_api_requests": {n: INC for n in (
        "instance_info_count", "machine_cfg_count", "mmds_count", "vmm_version_count", "hotplug_memory_count")},
    "latencies_us": {n: STORE for n in ("pause_vm", "resume_vm", "vmm_pause_vm", "vmm_resume_vm",
                                        "full_create_snapshot", "diff_create_snapshot", "load_snapshot")},
    "logger": {"missed_metrics_count": INC, "metrics_fails": INC, "missed_log_count": INC},
    "patch_api_requests": {f"{n}_{k}": INC for n in ("drive", "network", "machine_cfg", "mmds", "hotplug_memory")
                           for k in ("count", "fails")},
    "put_api_requests": {f"{n}_{k}": INC for n in (
        "actions", "boot_source", "drive", "logger", "machine_cfg", "cpu_cfg", "metrics", "network", "mmds",
        "vsock", "pmem", "serial", "hotplug_memory") for k in ("count", "fails")},
    "vcpu": {n: INC for n in ("exit_io_in", "exit_io_out", "exit_mmio_read", "exit_mmio_write", "failures")},
    "vmm": {"panic_count": STORE},
    "seccomp": {"num_faults": INC},
    "uart": {n: INC for n in ("error_count", "flush_count", "missed_read_count", "missed_write_count",
                              "read_count", "write_count")},
    "i8042": {n: INC for n in ("error_count", "missed_read_count", "missed_write_count", "read_count",
                               "reset_count", "write_count")},
    "boot_timer": {"guest_boot_time_us": STORE, "guest_boot_cpu_time_us": STORE},
    # Devices (Firecracker's Block, Net, Vsock and Entropy DeviceMetrics): "block" and "net" are
    # sums over the devices, each of which also has its own "block_<id>" / "net_<id>" group.
    "block": {n: INC for n in BLOCK_COUNTERS},
    "net": {n: INC for n in NET_COUNTERS},
    "vsock": {n: INC for n in VSOCK_COUNTERS},
    "entropy": {n: INC for n in ENTROPY_COUNTERS},
}


class MetricsError(Exception):
    """Firecracker's MetricsConfigError text."""


class Group:
    """One group's counters. `inc` and `store` take the group's lock: the API thread, vCPU
    threads and the flusher may touch the same group."""

    def __init__(self, name: str, kinds: dict[str, str]):
        self.name = name
        self.kinds = kinds
        self.values = dict.fromkeys(kinds, 0)
        self.flushed = dict.fromkeys(kinds, 0)
        self.lock = threading.Lock()

    def inc(self, counter: str, n: int = 1) -> None:
        with self.lock:
            self.values[counter] += n

    def store(self, counter: str, value: int) -> None:
        with self.lock:
            self.values[counter] = value

    def set_total(self, counter: str, total: int) -> None:
        """A cumulative count kept elsewhere (an INC counter reports its growth)."""
        with self.lock:
            self.values[counter] = total

    def snapshot(self) -> dict:
        with self.lock:
            out = {}
            for name, kind in self.kinds.items():
                v = self.values[name]
                if kind == INC:
                    out[name] = v - self.flushed[name]
                    self.flushed[name] = v
                else:
                    out[name] = v
            return out

    def __getitem__(self, counter: str) -> int:
        return self.values[counter]


class Metrics:
    def __init__(self):
        self.groups = {name: Group(name, kinds) for name, kinds in SCHEMA.items()}
        self.fd: int | None = None
        self._sources: list[tuple[str, object]] = []
        self._write_lock = threading.Lock()
        self._timer: threading.Thread | None = None
        self._stop = threading.Event()

    def __getattr__(self, name: str) -> Group:
        groups = self.__dict__.get("groups")
        if groups is not None and name in groups:
            return groups[name]
        raise AttributeError(name)

    @property
    def initialized(self) -> bool:
        return self.fd is not None

    def init(self, path: str) -> None:
        """Start writing to `path` (an existing file or FIFO), once per process."""
        if self.fd is not None:
            raise MetricsError("Cannot initialize the metrics system due to bad user input: "
                               "Reinitialization of metrics not allowed.")
        from .logger import open_nonblocking
        try:
            self.fd = open_nonblocking(path)
        except OSError as e:
            from pyrite.config import io_error_text
            raise MetricsError("Cannot initialize the metrics system due to bad user input: "
                               f"{io_error_text(e)}") from None

    def add_source(self, group: str, read_totals) -> None:
        """`read_totals()` returns {counter: cumulative value} for counters of `group`."""
        self._sources.append((group, read_totals))

    def add_device_source(self, read_devices) -> None:
        """Virtio device counters: `read_devices()` returns Vmm.device_metrics(), that is
        {"block_<drive_id>": {counter: total}, "net_<iface_id>": {...}, "vsock": {...},
        "entropy": {...}}. Each drive and interface gets its own group, and "block" and "net"
        report the sums over them, as in Firecracker."""
        for name in read_devices():
            kind = name.partition("_")[0]
            if kind in PER_DEVICE and name not in self.groups:
                self.groups[name] = Group(name, SCHEMA[kind])
        self._sources.append((None, lambda: with_aggregates(read_devices())))

    def count_request(self, metric: str | None, failed: bool) -> None:
        """An API request on a route whose metric is "<group>.<name>"."""
        if metric is None:
            return
        group, name = metric.split(".")
        g = self.groups[group]
        g.inc(f"{name}_count")
        if failed and f"{name}_fails" in g.kinds:
            g.inc(f"{name}_fails")

    def line(self) -> str:
        for group, read in self._sources:
            try:
                totals = read()
            except Exception:
                continue  # a VMM being torn down must not break the flush
            per_group = totals if group is None else {group: totals}
            for group_name, group_totals in per_group.items():
                g = self.groups.get(group_name)
                if g is None:
                    continue  # a device whose counters have no group (yet)
                for name, value in group_totals.items():
                    if name in g.kinds:
                        g.set_total(name, value)
        body = {"utc_timestamp_ms": time.time_ns() // 1_000_000}
        for name, g in list(self.groups.items()):
            body[name] = g.snapshot()
        return encode_json(body) + "\n"

    def flush(self, lock_timeout: float = -1) -> bool:
        """Write one line; False when metrics are not configured (not an error, as in Firecracker)
        or, with a `lock_timeout`, when another flush held the file that long."""
        if self.fd is None:
            return False
        if not self._write_lock.acquire(timeout=lock_timeout):
            return False
        try:
            data = self.line().encode()
            try:
                if os.write(self.fd, data) != len(data):
                    self.logger.inc("missed_metrics_count")
            except OSError as e:
                self.logger.inc("metrics_fails")
                raise MetricsError(f"Failed to write metrics: {e.strerror} (os error {e.errno})") from None
        finally:
            self._write_lock.release()
        return True

    def start_periodic(self, interval: float = FLUSH_INTERVAL_S, seccomp=None) -> None:
        """Flush every `interval` seconds on a thread of its own, which first installs `seccomp`
        (the "vmm" pyrite.seccomp.Program) when given."""
        if self._timer is not None:
            return

        def run():
            if seccomp is not None:
                seccomp.install()
            while not self._stop.wait(interval):
                try:
                    self.flush()
                except MetricsError:
                    pass  # counted in logger.metrics_fails

        self._timer = threading.Thread(target=run, name="fc_metrics", daemon=True)
        self._timer.start()

    def stop_periodic(self) -> None:
        self._stop.set()


def with_aggregates(devices: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """`devices` plus "block" and "net": each counter summed over that kind's devices."""
    totals = {kind: dict.fromkeys(SCHEMA[kind], 0) for kind in PER_DEVICE}
    for name, counters in devices.items():
        kind, sep, _ = name.partition("_")
        if sep and kind in totals:
            total = totals[kind]
            for counter in total:
                total[counter] += counters.get(counter, 0)
    return {**devices, **totals}


# The process's metrics (one VMM per process, as in Firecracker).
METRICS = Metrics()
