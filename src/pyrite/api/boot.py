"""The one place where the API meets the VMM builder: `boot_microvm()`.

The API needs of a built microVM exactly this (see `MicroVmHandle`):

    start()                 start the vCPU threads (InstanceStart)
    pause() / resume()      PATCH /vm
    send_ctrl_alt_del()     the i8042 key sequence (SendCtrlAltDel)
    stop()                  end it from the host
    wait(timeout) -> int | None   the exit status once it has ended
    state                   "Not started" | "Running" | "Paused"

The builder takes a VmSpec (`VmResources.to_vm_spec()`); this module adapts the rest.
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
        self._vmm.send_ctrl_alt_del()

    def stop(self) -> None:
        self._vmm.stop()

    def wait(self, timeout: float | None = None) -> int | None:
        result = self._vmm.wait(timeout)
        if result is None:
            return None
        return result.status

    @property
    def exit(self):
        return self._vmm.exit

    def close(self) -> None:
        self._vmm.close()

    def exit_counts(self) -> dict[str, int]:
        return self._vmm.exit_counts()


# Firecracker's vcpu metric names for the exit kinds pyrite's vCPU threads count.
_EXIT_METRICS = {"IoIn": "exit_io_in", "IoOut": "exit_io_out", "MmioRead": "exit_mmio_read",
                 "MmioWrite": "exit_mmio_write"}


def boot_microvm(resources, *, serial_out=None, on_boot_timer=None, metrics=None,
                 start_ns: int | None = None) -> MicroVmHandle:
    """Build the microVM described by `resources` (validated pyrite.config.VmResources) and
    start its vCPUs. Raises StartError with the builder's message."""
    try:
        from pyrite.vmm.builder import BuildError, build_for_boot
    except ImportError as e:
        raise StartError(f"the VMM builder is not available: {e}") from None
    spec = resources.to_vm_spec()
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
        serial = vmm.devices["serial"]
        metrics.add_source("uart", lambda: {
            "flush_count": serial.flush_count, "read_count": serial.rx_bytes,
            "write_count": serial.tx_bytes, "missed_write_count": serial.tx_lost})
    handle.start()
    return handle
