"""A filtered pyrite-vmm booted from a config file (the main thread builds the VM, then every
thread installs its filter) with a TAP, a drive and an entropy device: the guest pings the host
and answers the host's pings through the event loop's filter, and exits 0."""
from __future__ import annotations

import json
import subprocess
import sys

from guests import guest_image
from helpers import thread_seccomp, wait_for
from test_virtio_net_tap import GUEST_IP, GUEST_MAC, HOST_IP, PINGER, PINGS, TAP, TIMEOUT, Lines, netns  # noqa: F401
from test_virtio_net_tap import pytestmark  # noqa: F401  (the same reasons to skip)


def test_tap_guest_pings_under_filters_booted_from_a_config_file(netns, tmp_path):  # noqa: F811
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\0" * (1 << 20))
    config = {"boot-source": {"kernel_image_path": str(guest_image("virtio_net")),
                              "boot_args": f"{GUEST_IP} {HOST_IP} {PINGS}"},
              "machine-config": {"vcpu_count": 1, "mem_size_mib": 64},
              "drives": [{"drive_id": "rootfs", "path_on_host": str(disk), "is_root_device": False,
                          "is_read_only": False}],
              "network-interfaces": [{"iface_id": "eth0", "host_dev_name": TAP, "guest_mac": GUEST_MAC}],
              "entropy": {}}
    path = tmp_path / "vm.json"
    path.write_text(json.dumps(config))
    proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-m", "pyrite.api.cli", "--no-api",
                             "--config-file", str(path)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    out = Lines(proc.stdout)
    try:
        assert out.wait_for("ready", TIMEOUT), f"guest never got ready:\n{out.text}"
        assert out.starting("ping_reply ") == ["seq=1 ttl=64 bytes=56 payload_ok=1"], out.text
        # `ip netns exec` execs the VMM: proc.pid is the VMM's process.
        threads = wait_for(lambda: (t := thread_seccomp(proc.pid)) and all(m == 2 and n == 1 for _, m, n in t) and t,
                           10, "every thread to be filtered")
        assert {"MainThread", "fc_event_loop", "fc_vcpu 0"} <= {name for name, _, _ in threads}, threads
        ping = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", PINGER, GUEST_IP, str(PINGS)],
                              capture_output=True, text=True, timeout=TIMEOUT)
        assert ping.returncode == 0, ping.stdout + ping.stderr + out.text
        assert proc.wait(TIMEOUT) == 0, out.text
        assert "bad syscall" not in out.text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
