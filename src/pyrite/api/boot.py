"""The one place where the API meets the VMM builder: `boot_microvm()`.

The API needs of a built microVM exactly this (see `MicroVmHandle`):

    start()                 start the vCPU threads (InstanceStart)
    pause() / resume()      PATCH /vm
    send_ctrl_alt_del()     the i8042 key sequence (SendCtrlAltDel)
    stop()                  end it from the host
    wait(timeout) -> int | None   the exit status once it has ended
    state                   "Not started" | "Running" | "Paused"

TODO(lead): pyrite.vmm.builder.build_for_boot takes a VmSpec today; when it takes
VmResources directly (with serial_out / on_boot_timer / metrics), replace the body of
`boot_microvm` with that call and drop the adapter.
"""
from __future__ import annotations

import time


def prepare_main_thread() -> None:
    """Call from the main thread, after the API socket is up: installs the vCPU kick signal
    handler (signal.signal works only there) and imports the builder ahead of InstanceStart."""
    try:
        from pyrite.kvm import kick_signal
        import pyrite.vmm.builder  # noqa: F401
    except ImportError:
        return  # InstanceStart will report what is missing
    kick_signal()


class StartError(Exception):
    """The builder refused or failed; the text follows "Start microvm error: "."""


class MicroVmHandle:
    """Adapts pyrite.vmm.vmm.Vmm to the interface the API controller uses."""

    def __init__(self, vmm):
        self._vmm = vmm

    @property
    def state(self) -> str:
        return self._vmm.state

    def start(self) -> None:
        self._vmm.start()

    def pause(self) -> None:
        self._vmm.pause()

    def resume(self) -> None:
        self._vmm.resume()

    def send_ctrl_alt_del(self) -> None:
        send = getattr(self._vmm, "send_ctrl_alt_del", None)
        if send is not None:
            send()
        else:
            self._vmm.devices["i8042"].trigger_ctrl_alt_del()

    def stop(self) -> None:
        self._vmm.stop()

    def wait(self, timeout: float | None = None) -> int | None:
        result = self._vmm.wait(timeout)
        if result is None:
            return None
        return getattr(result, "status", result)

    @property
    def exit(self):
        return getattr(self._vmm, "exit", None)

    def close(self) -> None:
        close = getattr(self._vmm, "close", None)
        if close is not None:
            close()

    def exit_counts(self) -> dict[str, int]:
        counts = getattr(self._vmm, "exit_counts", None)
        return counts() if counts is not None else {}


# Firecracker's vcpu metric names for the exit kinds pyrite's vCPU threads count.
_EXIT_METRICS = {"IoIn": "exit_io_in", "IoOut": "exit_io_out", "MmioRead": "exit_mmio_read",
                 "MmioWrite": "exit_mmio_write"}


def boot_microvm(resources, *, serial_out=None, on_boot_timer=None, metrics=None,
                 start_ns: int | None = None) -> MicroVmHandle:
    """Build the microVM described by `resources` (validated pyrite.config.VmResources) and
    start its vCPUs. Raises StartError with the builder's message."""
    try:
        from pyrite.vmm.builder import BuildError, VmSpec, build_for_boot
    except ImportError as e:
        raise StartError(f"the VMM builder is not available: {e}") from None
    bs = resources.boot_source
    spec = VmSpec(kernel=bs.kernel_image_path, cmdline=resources.kernel_cmdline, initrd=bs.initrd_path,
                  mem_mib=resources.machine_config.mem_size_mib, vcpus=resources.machine_config.vcpu_count)
    kwargs = {"console_out": serial_out, "start_ns": start_ns if start_ns is not None else time.monotonic_ns()}
    # Firecracker attaches the boot timer device only with --boot-timer.
    kwargs["on_boot_timer"] = on_boot_timer if resources.boot_timer else None
    try:
        vmm = build_for_boot(spec, **kwargs)
    except BuildError as e:
        raise StartError(str(e)) from None
    handle = MicroVmHandle(vmm)
    if metrics is not None:
        def vcpu_totals():
            counts = handle.exit_counts()
            totals = {name: counts.get(kind, 0) for kind, name in _EXIT_METRICS.items()}
            totals["failures"] = sum(n for k, n in counts.items() if k in ("InternalError", "FailEntry"))
            return totals
        metrics.add_source("vcpu", vcpu_totals)
        serial = getattr(vmm, "devices", {}).get("serial")
        if serial is not None:
            metrics.add_source("uart", lambda: {
                "flush_count": getattr(serial, "flush_count", 0),
                "read_count": getattr(serial, "rx_bytes", 0),
                "write_count": getattr(serial, "tx_bytes", 0),
                "missed_write_count": getattr(serial, "tx_lost", 0)})
    handle.start()
    return handle
