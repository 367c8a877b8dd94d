"""The importable face of pyrite: boot a microVM from Python without a subprocess.

    with pyrite.MicroVM(kernel="app.img", cmdline="hello", mem_mib=64) as vm:
        vm.start()
        result = vm.wait(timeout=10)
        print(vm.console_output.decode(), result.status)
"""
from __future__ import annotations

import os

from pyrite.vmm.builder import DEFAULT_CMDLINE, BuildError, VmSpec, build_for_boot
from pyrite.vmm.console import BufferSink
from pyrite.vmm.exit import VmExit

__all__ = ["MicroVM", "VmExit", "BuildError"]


class MicroVM:
    """One microVM. Console output is kept in `console_output` (and copied to `console`, a
    binary file object, when given); `send_console_input()` types into the guest's serial port.

    `drives` are virtio-blk disks: paths, pyrite.vmm.devices.DriveSpec, or dicts such as
    {"drive_id": "rootfs", "path": "disk.img", "read_only": False, "is_root_device": True}
    (Firecracker's path_on_host / is_read_only are accepted too); `entropy=True` adds a
    virtio-rng device (or a dict {"rate_limiter": {...}}); `net` are virtio-net interfaces over
    existing TAP devices: TAP names, NetSpec, or dicts {"iface_id", "host_dev_name", "guest_mac",
    "rx_rate_limiter", "tx_rate_limiter"}; `vsock=(guest_cid, uds_path)` adds a virtio-vsock device
    with Firecracker's Unix-socket backend (see pyrite.vmm.devices.VsockSpec)."""

    def __init__(self, kernel, *, cmdline: str = DEFAULT_CMDLINE, initrd=None, mem_mib: int = 128,
                 vcpus: int = 1, console=None, boot_timer=None, drives=(), entropy=None, net=(), vsock=None):
        self._sink = BufferSink(tee=console)
        self._input_r, self._input_w = os.pipe()
        os.set_blocking(self._input_r, False)
        try:
            self._vmm = build_for_boot(VmSpec(kernel=kernel, cmdline=cmdline, initrd=initrd,
                                              mem_mib=mem_mib, vcpus=vcpus, drives=drives,
                                              entropy=entropy, net=net, vsock=vsock),
                                       console_out=self._sink, console_in=self._input_r,
                                       on_boot_timer=boot_timer)
        except BaseException:
            os.close(self._input_r)
            os.close(self._input_w)
            raise

    # life cycle
    def start(self) -> "MicroVM":
        self._vmm.start()
        return self

    def wait(self, timeout: float | None = None) -> VmExit | None:
        return self._vmm.wait(timeout)

    def pause(self) -> None:
        self._vmm.pause()

    def resume(self) -> None:
        self._vmm.resume()

    def stop(self) -> None:
        self._vmm.stop()

    @property
    def state(self) -> str:
        return self._vmm.state

    @property
    def exit(self) -> VmExit | None:
        return self._vmm.exit

    # console
    @property
    def console_output(self) -> bytes:
        with self._sink.lock:
            return bytes(self._sink.data)

    def wait_for_output(self, needle: bytes, timeout: float = 10.0) -> bool:
        """True once `needle` appeared on the console (or False after `timeout` / VM end)."""
        with self._sink.changed:
            return self._sink.changed.wait_for(
                lambda: needle in self._sink.data or self._vmm.exit is not None, timeout) \
                and needle in self._sink.data

    def send_console_input(self, data: bytes) -> None:
        os.write(self._input_w, data)

    def update_drive(self, drive_id: str, path: str | None = None, rate_limiter: dict | None = None) -> None:
        """Swap a running drive's backing file and/or rate limiter (Firecracker's PATCH /drives)."""
        self._vmm.update_drive(drive_id, path, rate_limiter)

    def device_metrics(self) -> dict[str, dict[str, int]]:
        return self._vmm.device_metrics()

    @property
    def vmm(self):
        """The underlying pyrite.vmm.Vmm (memory, devices, vCPUs) for advanced use."""
        return self._vmm

    def close(self) -> None:
        self._vmm.close()
        for fd in (self._input_r, self._input_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> "MicroVM":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
