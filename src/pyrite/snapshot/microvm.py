"""Snapshot a paused microVM to a state file and a memory file, and build one back from them.

The state file (format.py) holds the configuration (Firecracker's config-file JSON, as GET
/vm/config shows it), the memory layout, each vCPU's and the VM's KVM state (kvm_state.py)
and every device's record (records.py). The memory file holds guest RAM raw, the regions end
to end; a load maps it MAP_PRIVATE, so nothing is copied up front and clones of one snapshot
share its page cache. With the Uffd backend (uffd_backend.py) guest RAM is anonymous and a
page-fault handler process (uffd_handler.py) copies each page in from the memory file when
it is first touched.

A load is a build from the saved configuration (pyrite.vmm.builder.build_for_restore) and
then each piece taking its saved record: the VM's irqchip, PIT and clock, each vCPU, the
serial port and i8042, each virtio device and its transport.
"""
from __future__ import annotations

import contextlib
import os

import pyrite
from pyrite import kvm
from pyrite.arch.x86_64 import layout
from pyrite.devices.legacy.i8042 import I8042Error
from pyrite.devices.legacy.persist import I8042State, SerialState
from pyrite.devices.legacy.serial import SerialError
from pyrite.devices.virtio.device import VirtioStateError
from pyrite.devices.virtio.queue import VirtioError
from pyrite.memory import GuestMemory, GuestMemoryError
from pyrite.vmm.builder import build_for_restore
from pyrite.vmm.machine import release_machine
from pyrite.vmm.vmm import PAUSED
from . import dirty, format, kvm_state, records
from .errors import (MemoryFileError, NotPausedError, OverrideError, RestoreError, SnapshotError,  # noqa: F401
                     SnapshotFileError, StateFileError)
from .format import SnapshotFormatError
from .kvm_state import StateMismatchError

KIND = "pyrite microVM"


# -- create --------------------------------------------------------------------------------

SNAPSHOT_TYPES = ("Full", "Diff")


def create_snapshot(vmm, resources, snapshot_path: str, mem_file_path: str, snapshot_type: str = "Full") -> None:
    """Write the paused `vmm` (built from `resources`) to `snapshot_path` and `mem_file_path`.
    A Full memory file holds all of guest memory; a Diff one only the pages dirtied since the
    previous snapshot (or boot, or restore), at their offsets in a sparse file of the full size
    (dirty.py; it needs dirty page tracking). With tracking on, either type starts the dirty
    log again. Each file is written under a temporary name and renamed, so a failure (a full
    disk) leaves an older snapshot at those paths intact, and the dirty log as it was.
    OSError and SnapshotError name what failed."""
    if vmm.state != PAUSED:
        raise NotPausedError("the microVM must be paused to create a snapshot")
    if snapshot_type not in SNAPSHOT_TYPES:
        raise SnapshotError(f"snapshot_type {snapshot_type!r}: expected one of {', '.join(SNAPSHOT_TYPES)}")
    memory = vmm.memory
    if snapshot_type == "Diff" and not memory.tracks_dirty_pages:
        raise SnapshotError("Diff snapshots need dirty page tracking (machine-config track_dirty_pages, "
                            "or track_dirty_pages / enable_diff_snapshots on load)")
    # Every virtio device's lock is held from its record to the end of the memory file: the
    # event loop runs on while the vCPUs are paused, and a device must not write guest memory
    # (a used ring, a received frame) between the two.
    with contextlib.ExitStack() as held:
        for handler in vmm.virtio:
            held.enter_context(handler.lock)
        state = capture(vmm, resources)
        state["memory_file"] = os.path.abspath(mem_file_path)   # where `pyrite snapshot load` looks by default
        state = format.encode(state)
        pages = _take_dirty_pages(vmm) if memory.tracks_dirty_pages else None
        try:
            if snapshot_type == "Diff":
                _write("memory", mem_file_path, lambda fd: dirty.write_diff(fd, memory, pages))
            else:
                _write("memory", mem_file_path,
                       lambda fd: _write_chunks(fd, [memoryview(r.mem) for r in memory.regions]))
            held.close()                    # the devices may go on; the state is in hand
            _write("snapshot", snapshot_path, lambda fd: _write_chunks(fd, [memoryview(state)]))
        except BaseException:
            if pages is not None:
                dirty.give_back(memory, pages)
            raise


def _take_dirty_pages(vmm) -> list[bytes]:
    try:
        return dirty.take_dirty_pages(vmm.vm, vmm.memory)
    except kvm.KvmError as e:
        raise SnapshotError(f"cannot read KVM's dirty page log: {e}") from None


def capture(vmm, resources) -> dict:
    """The paused VM's state as the plain values of a state file."""
    from pyrite.config.encode import encode_json
    msrs = kvm_state.readable_msrs(vmm.system, vmm.vcpus[0].vcpu)
    return {
        "kind": KIND,
        "pyrite": pyrite.__version__,
        "config": encode_json(resources.to_json()),
        "memory": [[r.gpa, r.size] for r in vmm.memory.regions],
        "vm": kvm_state.save_vm(vmm.vm),
        "vcpus": [kvm_state.save_vcpu(v.vcpu, msrs) for v in vmm.vcpus],
        "serial": records.to_tree(vmm.legacy.serial.state()),
        "i8042": records.to_tree(vmm.legacy.i8042.state()),
        "devices": [_device_tree(handler) for handler in vmm.virtio],
        "vmgenid": records.to_tree(vmm.vmgenid.state()),
    }


def _device_tree(handler) -> dict:
    device_state, transport_state = handler.state()
    return {"kind": handler.kind, "id": handler.id, "device": records.to_tree(device_state),
            "transport": records.to_tree(transport_state),
            "limiters": [limiter.state() for limiter in handler.limiters()]}


def _write(which: str, path: str, fill) -> None:
    """`fill(fd)` writes the file `path` through a temporary name in the same directory and a
    rename: a failed write (a full disk) leaves an older file at `path` as it was."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise SnapshotFileError(which, path, "open", e) from None
    try:
        fill(fd)
        os.fsync(fd)              # on disk before the answer, as Firecracker's create is
        os.close(fd)
        fd = -1
        os.rename(tmp, path)
    except BaseException as e:
        if fd >= 0:
            os.close(fd)
        _unlink(tmp)
        if isinstance(e, OSError):
            raise SnapshotFileError(which, path, "write", e) from None
        raise


def _write_chunks(fd: int, chunks: list[memoryview]) -> None:
    for view in chunks:
        while view:
            view = view[os.write(fd, view):]


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# -- load ----------------------------------------------------------------------------------

def read_snapshot(snapshot_path: str) -> dict:
    """The state file's contents, checked to be a pyrite microVM snapshot (SnapshotError)."""
    try:
        state = format.read_file(snapshot_path)
    except OSError as e:
        raise SnapshotFileError("snapshot", snapshot_path, "read", e) from None
    except SnapshotFormatError as e:
        raise StateFileError(f"snapshot {snapshot_path}: {e}") from None
    if not isinstance(state, dict) or state.get("kind") != KIND:
        raise StateFileError(f"snapshot {snapshot_path}: not a pyrite microVM snapshot")
    return state


def saved_resources(state: dict, snapshot_path: str):
    """The VmResources the snapshot was taken with (its kernel need not exist any more). Dirty
    page tracking is off: as in Firecracker, the load asks for it (track_dirty_pages)."""
    from pyrite.config import ConfigError, VmResources
    config = state.get("config")
    if not isinstance(config, str):
        raise StateFileError(f"snapshot {snapshot_path}: it holds no configuration")
    try:
        resources = VmResources.from_json_bytes(config.encode(), kernel_needed=False)
    except ConfigError as e:
        raise RestoreError(f"snapshot {snapshot_path}: its configuration cannot be rebuilt here: {e}") from None
    resources.machine_config.track_dirty_pages = False
    return resources


def apply_overrides(resources, network_overrides=(), vsock_override=None) -> None:
    """Firecracker's load-time overrides: a TAP per network interface, the vsock's socket path."""
    from pyrite.config import NetworkInterface, Vsock
    for override in network_overrides:
        for i, iface in enumerate(resources.network_interfaces):
            if iface.iface_id == override.iface_id:
                resources.network_interfaces[i] = NetworkInterface(
                    **{**iface.__dict__, "host_dev_name": override.host_dev_name})
                break
        else:
            raise OverrideError(f"Unknown Network Device. (network_overrides: the snapshot has no network "
                                f"interface {override.iface_id})")
    if vsock_override is not None:
        if resources.vsock is None:
            raise OverrideError("Unknown Vsock Device. (vsock_override: the snapshot has no vsock device)")
        resources.vsock = Vsock(**{**resources.vsock.__dict__, "uds_path": vsock_override.uds_path})


def load_snapshot(state: dict, resources, mem_file_path: str, *, snapshot_path: str = "snapshot",
                  clock_realtime: bool = False,
                  console_out=None, console_in: int | None = None, machine=None, mem_backend: str = "File"):
    """A stopped Vmm rebuilt from `state` (read_snapshot) and `resources` (saved_resources,
    overrides applied) with guest RAM mapped from `mem_file_path`; or, with `mem_backend`
    "Uffd", filled page by page by the page-fault handler listening at the Unix socket
    `mem_file_path` (uffd_backend, as Firecracker's backend_path); dirty pages tracked when
    resources.machine_config.track_dirty_pages says so. SnapshotError says which
    check failed (file, layout, vCPUs, CPU features, device records); BuildError a build step.
    `machine` (machine.create_machine's pair) is owned by the load from here, failed or not."""
    where = f"snapshot {snapshot_path}"
    try:
        regions = _saved_layout(state, resources, where)
        vcpus = state.get("vcpus")
        count = resources.machine_config.vcpu_count
        if not isinstance(vcpus, list) or len(vcpus) != count:
            raise RestoreError(f"{where}: it holds {len(vcpus) if isinstance(vcpus, list) else 'no'} vCPU "
                               f"states for a machine of {count} vCPUs")
        memory = _memory(mem_backend, mem_file_path, regions)
    except BaseException:
        if machine is not None:
            release_machine(machine)
        raise
    # The build owns `memory` and `machine` from here: it closes them if it fails.
    vmm = build_for_restore(resources, memory, console_out=console_out, console_in=console_in,
                            machine=machine, track_dirty_pages=resources.machine_config.track_dirty_pages)
    try:
        _restore_pieces(vmm, state, where, clock_realtime)
    except BaseException:
        vmm.close()
        raise
    return vmm


def _saved_layout(state: dict, resources, where: str) -> list[tuple[int, int]]:
    saved = state.get("memory")
    expected = [list(r) for r in layout.ram_regions(resources.machine_config.mem_size_mib << 20)]
    if saved != expected:
        raise RestoreError(f"{where}: its memory layout {saved!r:.80} cannot be rebuilt for "
                            f"{resources.machine_config.mem_size_mib} MiB ({expected})")
    return [tuple(r) for r in expected]


def _memory(backend: str, path: str, regions: list[tuple[int, int]]) -> GuestMemory:
    if backend == "File":
        return map_memory(path, regions)
    if backend == "Uffd":
        from .uffd_backend import UffdGuestMemory
        return UffdGuestMemory(regions, path)
    raise SnapshotError(f"memory backend {backend!r}: expected File or Uffd")


def map_memory(path: str, regions: list[tuple[int, int]]) -> GuestMemory:
    """The memory file mapped copy-on-write; SnapshotError if it does not hold the layout."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise SnapshotFileError("memory", path, "open", e) from None
    try:
        size, needed = os.fstat(fd).st_size, sum(size for _, size in regions)
        if size != needed:
            raise MemoryFileError(f"memory file {path}: {size} bytes, the snapshot's guest memory is {needed}")
        try:
            return GuestMemory(regions, file_fd=fd)
        except (GuestMemoryError, OSError) as e:
            raise MemoryFileError(f"memory file {path}: cannot be mapped: {e}") from None
    finally:
        os.close(fd)


def _restore_pieces(vmm, state: dict, where: str, clock_realtime: bool) -> None:
    try:
        _check_cpu_features(vmm.system, state["vcpus"][0]["cpuid"], len(vmm.vcpus))
        kvm_state.restore_vm(vmm.vm, state["vm"], clock_realtime)
        for index, (thread, vcpu_state) in enumerate(zip(vmm.vcpus, state["vcpus"])):
            kvm_state.restore_vcpu(thread.vcpu, vcpu_state, f"vCPU {index}")
        vmm.legacy.serial.restore(records.from_tree(SerialState, state["serial"], "serial"))
        vmm.legacy.i8042.restore(records.from_tree(I8042State, state["i8042"], "i8042"))
        _restore_devices(vmm, state["devices"])
        _restore_vmgenid(vmm, state.get("vmgenid"))
    except (KeyError, TypeError, ValueError) as e:
        raise RestoreError(f"{where}: a saved record is malformed ({type(e).__name__}: {e})") from None
    except (StateMismatchError, SnapshotFormatError, SerialError, I8042Error, VirtioStateError,
            VirtioError) as e:
        raise RestoreError(f"{where}: {e}") from None
    except kvm.KvmError as e:
        raise RestoreError(f"{where}: KVM refused the saved state: {e}") from None


_FEATURES_CHECKED: set[tuple[bytes, int]] = set()   # (packed CPUID, vCPU count) this host can run


def _check_cpu_features(system, packed_cpuid: bytes, vcpu_count: int) -> None:
    """kvm_state.check_cpu_features, once per process for each CPUID (clones share one)."""
    key = (packed_cpuid, vcpu_count)
    if key not in _FEATURES_CHECKED:
        kvm_state.check_cpu_features(kvm_state.cpuid_entries(packed_cpuid, "vCPU 0"),
                                     system.get_supported_cpuid(), vcpu_count)
        _FEATURES_CHECKED.add(key)


def _restore_devices(vmm, saved: list) -> None:
    handlers = vmm.virtio
    described = [(d.get("kind"), d.get("id")) for d in saved]
    configured = [(h.kind, h.id) for h in handlers]
    if described != configured:
        raise StateMismatchError(f"its devices {described} are not the configured ones {configured}")
    for handler, record in zip(handlers, saved):
        device_type, transport_type = handler.state_types()
        name = f"{handler.kind} {handler.id}"
        limiters, saved_limiters = handler.limiters(), record["limiters"]
        if len(limiters) != len(saved_limiters):
            raise StateMismatchError(f"{name}: {len(saved_limiters)} rate limiters saved, {len(limiters)} configured")
        for limiter, saved in zip(limiters, saved_limiters):
            limiter.restore(saved)
        handler.restore(records.from_tree(device_type, record["device"], name),
                        records.from_tree(transport_type, record["transport"], f"{name} transport"),
                        vmm.memory)


def _restore_vmgenid(vmm, saved) -> None:
    """A new VM generation ID and its notification, as Firecracker gives on every load (after
    the irqchip's state, which would drop the edge). A snapshot from before pyrite had the
    device has no record and no VGEN in its DSDT: nothing to tell its guest."""
    from pyrite.devices.acpi.persist import VmGenIdState
    from pyrite.devices.acpi.vmgenid import VmGenIdError
    if saved is None:
        return
    try:
        vmm.vmgenid.restore(records.from_tree(VmGenIdState, saved, "vmgenid"), vmm.memory)
    except VmGenIdError as e:
        raise StateMismatchError(str(e)) from None
