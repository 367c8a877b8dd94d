"""The one place where the API meets the VMM builder: `boot_microvm()`.

The API needs of a built microVM exactly this (see `MicroVmHandle`):

    start()                 start the vCPU threads (InstanceStart)
    pause() / resume()      PATCH /vm
    send_ctrl_alt_del()     the i8042 key sequence (SendCtrlAltDel)
    stop()                  end it from the host
    wait(timeout) -> int | None   the exit status once it has ended
    exit                    its VmExit once it has ended (for the final log line)
    close()                 release KVM and guest memory once it has ended
    update_device(kind, id, update)  PATCH /drives, PATCH /network-interfaces after boot
    state                   "Not started" | "Running" | "Paused"

The builder takes the VmResources itself; `start_error_message` turns its typed failures
into Firecracker's StartMicrovmError texts (START_ERRORS).
"""
from __future__ import annotations

import time

from pyrite.snapshot import errors as snap
from pyrite.vmm import errors as build

# Firecracker's StartMicrovmError text for each build step's failure (src/vmm/src/builder.rs).
START_ERRORS: dict[type, str] = {
    build.KvmSetupError: "Internal error while starting microVM: {}",
    build.MemorySetupError: "Invalid Memory Configuration: {}",
    build.KernelLoadError: "Cannot load kernel due to invalid memory configuration or invalid kernel image: {}",
    build.InitrdLoadError: "Cannot load initrd due to an invalid image: {}",
    build.BootSetupError: "Cannot load command line string: {}",
    build.DeviceSetupError: "Cannot initialize a MMIO Device or add a device to the MMIO Bus or cmdline: {}",
    build.VcpuSetupError: "Internal error while starting microVM: {}",
}


def start_error_message(error: build.BuildError) -> str:
    """What follows "Start microvm error: " for a failed build."""
    for kind in type(error).__mro__:
        if kind in START_ERRORS:
            return START_ERRORS[kind].format(error)
    return str(error)


def prepare_main_thread():
    """Call from the main thread, after the API socket is up: installs the vCPU kick signal
    handler (signal.signal works only there), creates the KVM VM and imports the builder, all
    ahead of InstanceStart or a snapshot load.

    Returns the (System, Vm) pair for `boot_microvm(machine=...)` / `load_microvm`, or None when
    KVM cannot be opened here (InstanceStart then reports why). Whoever holds the pair and does
    not use it closes it with `pyrite.vmm.machine.release_machine`."""
    from pyrite.kvm import KvmError, kick_signal
    from pyrite.vmm.machine import create_machine
    kick_signal()
    try:
        machine = create_machine()
    except (KvmError, OSError):
        machine = None
    import pyrite.vmm.builder  # noqa: F401
    return machine


class MicroVmHandle:
    """Adapts pyrite.vmm.vmm.Vmm to the interface the API controller uses."""

    def __init__(self, vmm):
        self._vmm = vmm

    @property
    def state(self) -> str:
        return self._vmm.state

    def start(self, seccomp: dict | None = None) -> None:
        self._vmm.start(seccomp=seccomp)

    def release(self) -> None:
        """The vCPUs of a start with seccomp filters enter the guest (Vmm.release)."""
        self._vmm.release()

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

    def update_device(self, kind: str, device_id: str, update) -> None:
        """PATCH /drives, /network-interfaces: the update model (DeviceUpdateError)."""
        self._vmm.update_device(kind, device_id, update)


# Firecracker's vcpu metric names for the exit kinds pyrite's vCPU threads count.
_EXIT_METRICS = {"IoIn": "exit_io_in", "IoOut": "exit_io_out", "MmioRead": "exit_mmio_read",
                 "MmioWrite": "exit_mmio_write"}


def boot_microvm(resources, *, serial_out=None, on_boot_timer=None, metrics=None,
                 start_ns: int | None = None, machine=None, seccomp: dict | None = None) -> MicroVmHandle:
    """Build the microVM described by `resources` (validated pyrite.config.VmResources) and
    start its vCPUs. `on_boot_timer` None means no boot timer device (Firecracker attaches it
    only with --boot-timer). `machine` is prepare_main_thread()'s pair or None; the build owns
    it from here, failed or not. With `seccomp` (pyrite.seccomp Programs by category) the
    vCPUs wait for handle.release(). Raises pyrite.vmm.errors.BuildError (see START_ERRORS)."""
    from pyrite.vmm.builder import build_for_boot
    start_ns = start_ns if start_ns is not None else time.monotonic_ns()
    vmm = build_for_boot(resources, console_out=serial_out, on_boot_timer=on_boot_timer, start_ns=start_ns,
                         machine=machine)
    handle = _handle(vmm, metrics)
    handle.start(seccomp)
    return handle


def load_microvm(params, *, serial_out=None, metrics=None, machine=None, seccomp: dict | None = None):
    """PUT /snapshot/load: the microVM in `params` (a pyrite.config.SnapshotLoad) built from its
    snapshot and started, Paused unless `resume_vm`. Returns (handle, the restored VmResources).
    Raises pyrite.snapshot.microvm.SnapshotError or BuildError (see load_error_message)."""
    from pyrite.snapshot.microvm import apply_overrides, load_snapshot, read_snapshot, saved_resources
    try:
        state = read_snapshot(params.snapshot_path)
        resources = saved_resources(state, params.snapshot_path)
        apply_overrides(resources, params.network_overrides, params.vsock_override)
    except BaseException:
        if machine is not None:
            from pyrite.vmm.machine import release_machine
            release_machine(machine)
        raise
    backend = params.mem_backend
    mem_path, mem_backend = (params.mem_file_path, "File") if backend is None else \
        (backend.backend_path, backend.backend_type)
    resources.machine_config.track_dirty_pages = params.track_dirty_pages or params.enable_diff_snapshots
    vmm = load_snapshot(state, resources, mem_path, snapshot_path=params.snapshot_path,
                        clock_realtime=params.clock_realtime, console_out=serial_out, machine=machine,
                        mem_backend=mem_backend)
    handle = _handle(vmm, metrics)
    vmm.start(paused=not params.resume_vm, seccomp=seccomp)
    return handle, resources


def create_snapshot(handle, resources, params) -> None:
    """PUT /snapshot/create (a pyrite.config.SnapshotCreate) on a paused microVM."""
    from pyrite.snapshot.microvm import create_snapshot as create
    create(handle._vmm, resources, params.snapshot_path, params.mem_file_path, params.snapshot_type)


def _handle(vmm, metrics) -> MicroVmHandle:
    handle = MicroVmHandle(vmm)
    if metrics is not None:
        def vcpu_totals():
            counts = handle.exit_counts()
            totals = {name: counts.get(kind, 0) for kind, name in _EXIT_METRICS.items()}
            totals["failures"] = sum(n for k, n in counts.items() if k in ("InternalError", "FailEntry"))
            return totals
        metrics.add_source("vcpu", vcpu_totals)
        serial = vmm.legacy.serial
        metrics.add_source("uart", lambda: {
            "flush_count": serial.flush_count, "read_count": serial.rx_bytes,
            "write_count": serial.tx_bytes, "missed_write_count": serial.tx_lost})
        metrics.add_device_source(vmm.device_metrics)   # block_<id>, net_<id>, vsock, entropy
    return handle


# Firecracker's texts for a failed PUT /snapshot/load, by error type (pyrite.snapshot.errors;
# BuildError: a step of the restore build), after "Load snapshot error: ".
_RESTORE = "Failed to restore from snapshot: "
_STATE_FILE = _RESTORE + "Failed to get snapshot state from file: "
LOAD_ERRORS: dict[type, str] = {
    snap.StateFileError: _STATE_FILE + "Failed to load snapshot state from file: {}",
    snap.OverrideError: _STATE_FILE + "{}",
    snap.MemoryFileError: _RESTORE + "Failed to load guest memory: Error creating guest memory from file: {}",
    snap.UffdMemoryError: _RESTORE + "Failed to load guest memory: Error creating guest memory from uffd: {}",
    snap.RestoreError: _RESTORE + "Failed to build microVM from snapshot: {}",
    build.BuildError: _RESTORE + "Failed to build microVM from snapshot: {}",
}


def load_error_message(error: Exception) -> str:
    """What follows "Load snapshot error: " for a failed load."""
    from pyrite.config.errors import io_error_text
    if isinstance(error, snap.SnapshotFileError):
        if error.which == "snapshot":
            return _STATE_FILE + f"Failed to open snapshot file: {io_error_text(error.error)}"
        detail = f"{error.path}: {io_error_text(error.error)}"
        return LOAD_ERRORS[snap.MemoryFileError].format(detail)
    if isinstance(error, build.BuildError):
        detail = start_error_message(error)
    elif isinstance(error, snap.UffdMemoryError):
        detail = error.detail            # Firecracker's words only: its text does not name the socket
    else:
        detail = str(error)
    text = next((LOAD_ERRORS[kind] for kind in type(error).__mro__ if kind in LOAD_ERRORS), "{}")
    return text.format(detail)


def create_error_message(error: Exception) -> str:
    """What follows "Create snapshot error: " for a failed create."""
    from pyrite.config.errors import io_error_text
    if isinstance(error, snap.NotPausedError):
        return "Cannot save the microVM state: Operation not allowed: save/restore unavailable while running"
    if isinstance(error, snap.SnapshotFileError):
        return f"Cannot perform {error.operation} on the {error.which} backing file: {io_error_text(error.error)}"
    return str(error)
