"""The importable face of pyrite: boot a microVM from Python without a subprocess.

    with pyrite.MicroVM(kernel="app.img", cmdline="hello", mem_mib=64) as vm:
        vm.start()
        result = vm.wait(timeout=10)
        print(vm.console_output.decode(), result.status)
"""
from __future__ import annotations

import os

from pyrite.config import CONSOLE_CMDLINE, ConfigError, Drive, Entropy, NetworkInterface, RateLimiter, VmResources, Vsock
from pyrite.vmm.builder import build_for_boot
from pyrite.vmm.console import BufferSink
from pyrite.vmm.errors import BuildError, InvalidConfigError
from pyrite.vmm.exit import VmExit

__all__ = ["MicroVM", "VmExit", "BuildError"]


class MicroVM:
    """One microVM. Console output is kept in `console_output` (and copied to `console`, a
    binary file object, when given); `send_console_input()` types into the guest's serial port.

    Devices are pyrite.config models (Firecracker's API resources) or shorthands for them:
    `drives` are virtio-blk disks: paths (drive ids "drive0", ...), Drive, or dicts with
    Firecracker's fields (drive_id, path_on_host, is_read_only, is_root_device, rate_limiter,
    ...; "path" and "read_only" are accepted too); `entropy=True` adds a virtio-rng device (or
    an Entropy, or a dict {"rate_limiter": {...}}); `net` are virtio-net interfaces over
    existing TAP devices: TAP names (iface ids "eth0", ...), NetworkInterface, or dicts of its
    fields; `vsock=(guest_cid, uds_path)` (or a Vsock, or a dict) adds a virtio-vsock device
    with Firecracker's Unix-socket backend. A configuration that Firecracker's API would refuse
    raises InvalidConfigError with the API's message. `track_dirty_pages` (Firecracker's
    machine-config field) lets `snapshot()` write Diff snapshots."""

    def __init__(self, kernel, *, cmdline: str = CONSOLE_CMDLINE, initrd=None, mem_mib: int = 128,
                 vcpus: int = 1, console=None, boot_timer=None, drives=(), entropy=None, net=(), vsock=None,
                 track_dirty_pages: bool = False):
        try:
            self.resources = VmResources.for_kernel(
                kernel, cmdline=cmdline, initrd=initrd, mem_mib=mem_mib, vcpus=vcpus,
                drives=[_drive(d, i) for i, d in enumerate(drives)],
                network_interfaces=[_interface(n, i) for i, n in enumerate(net)],
                vsock=_vsock(vsock), entropy=_entropy(entropy), track_dirty_pages=track_dirty_pages)
        except (ConfigError, TypeError) as e:
            raise InvalidConfigError(str(e)) from e
        self._build(console, lambda out, in_fd: build_for_boot(self.resources, console_out=out, console_in=in_fd,
                                                                on_boot_timer=boot_timer))

    def _build(self, console, build) -> None:
        self._sink = BufferSink(tee=console)
        self._input_r, self._input_w = os.pipe()
        os.set_blocking(self._input_r, False)
        try:
            self._vmm = build(self._sink, self._input_r)
        except BaseException:
            os.close(self._input_r)
            os.close(self._input_w)
            raise

    @classmethod
    def restore(cls, snapshot_path, mem_file_path, *, resume: bool = True, console=None,
                network_overrides: dict[str, str] | None = None, vsock_uds_path=None,
                clock_realtime: bool = False, track_dirty_pages: bool = False,
                mem_backend: str = "File") -> "MicroVM":
        """A microVM started from a snapshot (Firecracker's PUT /snapshot/load): running, or
        paused with `resume=False`. With `mem_backend="Uffd"`, `mem_file_path` is the Unix socket
        of a page-fault handler (`pyrite uffd-handler SOCKET MEM_FILE`, or Firecracker's
        examples) that fills guest memory page by page. `network_overrides` maps an interface
        id to the TAP it gets here; `vsock_uds_path` gives the vsock device its own socket;
        `track_dirty_pages` (not saved in a snapshot, as in Firecracker) allows Diff snapshots.
        Raises pyrite.snapshot.microvm.SnapshotError naming the file and the check that failed."""
        from pyrite.config import NetworkOverride, VsockOverride
        from pyrite.snapshot.microvm import apply_overrides, load_snapshot, read_snapshot, saved_resources
        snapshot_path, mem_file_path = os.fspath(snapshot_path), os.fspath(mem_file_path)
        state = read_snapshot(snapshot_path)
        resources = saved_resources(state, snapshot_path)
        apply_overrides(resources, [NetworkOverride(iface_id=k, host_dev_name=v)
                                    for k, v in (network_overrides or {}).items()],
                        None if vsock_uds_path is None else VsockOverride(uds_path=os.fspath(vsock_uds_path)))
        resources.machine_config.track_dirty_pages = track_dirty_pages
        vm = cls.__new__(cls)
        vm.resources = resources
        vm._build(console, lambda out, in_fd: load_snapshot(state, resources, mem_file_path, snapshot_path=snapshot_path,
                                                            clock_realtime=clock_realtime, console_out=out,
                                                            console_in=in_fd, mem_backend=mem_backend))
        vm._vmm.start(paused=not resume)
        return vm

    def clone(self, n: int, *, vsock_uds_paths=None, network_overrides=None, console=None) -> list["MicroVM"]:
        """`n` running microVMs started from a snapshot of this one, taken now (this one is
        paused for it and resumed after, if it was running). They share the snapshot's memory
        pages until they write them; the snapshot's files are removed once all are mapped.
        Clone i's vsock socket is `vsock_uds_paths[i]` (default: this VM's path + ".i");
        `network_overrides[i]` maps its interface ids to its own TAPs (needed with interfaces)."""
        import shutil
        import tempfile
        if n < 1:
            raise ValueError(f"clone({n}): at least one clone")
        if self.resources.network_interfaces and network_overrides is None:
            raise InvalidConfigError("each clone needs its own TAP devices: give network_overrides")
        uds = self.resources.vsock.uds_path if self.resources.vsock is not None else None
        if uds is not None and vsock_uds_paths is None:
            vsock_uds_paths = [f"{uds}.{i}" for i in range(n)]
        directory = tempfile.mkdtemp(prefix="pyrite-clone-")
        state, mem = os.path.join(directory, "vm.state"), os.path.join(directory, "vm.mem")
        running = self.state == "Running"
        try:
            if running:
                self.pause()
            try:
                self.snapshot(state, mem)
            finally:
                if running:
                    self.resume()
            clones: list[MicroVM] = []
            try:
                for i in range(n):
                    clones.append(MicroVM.restore(
                        state, mem, console=console,
                        network_overrides=network_overrides[i] if network_overrides is not None else None,
                        vsock_uds_path=vsock_uds_paths[i] if vsock_uds_paths is not None else None))
            except BaseException:
                for clone in clones:
                    clone.close()
                raise
            return clones
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def snapshot(self, snapshot_path, mem_file_path, snapshot_type: str = "Full") -> None:
        """Write a snapshot of this paused microVM (Firecracker's PUT /snapshot/create):
        "Full", or "Diff" (only the pages dirtied since the last snapshot, boot or restore, in
        a sparse memory file; needs track_dirty_pages; `pyrite snapshot rebase` merges it)."""
        from pyrite.snapshot.microvm import create_snapshot
        create_snapshot(self._vmm, self.resources, os.fspath(snapshot_path), os.fspath(mem_file_path),
                        snapshot_type)

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
        """Swap a running drive's backing file and/or rate limiter (Firecracker's PATCH /drives;
        `rate_limiter` as its JSON: {"bandwidth": {"size", "refill_time", ...}, "ops": {...}})."""
        from pyrite.config import DriveUpdate
        update = DriveUpdate(drive_id=drive_id, path_on_host=None if path is None else os.fspath(path),
                             rate_limiter=_rate_limiter(rate_limiter))
        self._vmm.update_device("block", drive_id, update)
        if path is not None:
            self.resources.update_drive_path(drive_id, os.fspath(path))

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


# ----------------------------------------------------------------------------- shorthands
def _rate_limiter(value) -> RateLimiter | None:
    """A RateLimiter model from itself or its JSON form."""
    if value is None or isinstance(value, RateLimiter):
        return value
    from pyrite.config.decode import DecodeError, Struct, decode
    from pyrite.config.encode import encode_json
    try:
        return decode(encode_json(value).encode(), Struct(RateLimiter))
    except DecodeError as e:
        raise ConfigError("rate-limiter", f"rate limiter {value!r}: {e}") from None


def _drive(value, index: int) -> Drive:
    if isinstance(value, Drive):
        return value
    if isinstance(value, (str, os.PathLike)):
        return Drive.from_path(f"drive{index}", os.fspath(value))
    if isinstance(value, dict):
        d = dict(value)
        path = d.pop("path", None) or d.pop("path_on_host", None)
        if path is None:
            raise ConfigError("drives", f"drive {d.get('drive_id', index)!r}: no path (or path_on_host)")
        read_only = d.pop("read_only", d.pop("is_read_only", False))
        drive = Drive.from_path(d.pop("drive_id", f"drive{index}"), os.fspath(path), read_only=bool(read_only),
                                root=bool(d.pop("is_root_device", False)))
        if "rate_limiter" in d:
            d["rate_limiter"] = _rate_limiter(d["rate_limiter"])
        for name, v in d.items():
            if name not in drive.__dict__:
                raise ConfigError("drives", f"drive {drive.drive_id}: unknown field {name!r}")
            setattr(drive, name, v)
        return drive
    raise TypeError(f"drive {index}: {value!r} is not a Drive, a path or a dict")


def _interface(value, index: int) -> NetworkInterface:
    if isinstance(value, NetworkInterface):
        return value
    if isinstance(value, str):
        return NetworkInterface(iface_id=f"eth{index}", host_dev_name=value)
    if isinstance(value, dict):
        d = {"iface_id": f"eth{index}", **value}
        for key in ("rx_rate_limiter", "tx_rate_limiter"):
            if key in d:
                d[key] = _rate_limiter(d[key])
        if "host_dev_name" not in d:
            raise ConfigError("network-interfaces", f"network interface {d['iface_id']!r}: no host_dev_name")
        if d.get("guest_mac") is not None:
            from pyrite.config.models import mac_address
            try:
                d["guest_mac"] = mac_address(d["guest_mac"])
            except ValueError as e:
                raise ConfigError("network-interfaces", f"network interface {d['iface_id']}: {e}") from None
        return NetworkInterface(**d)
    raise TypeError(f"network interface {index}: {value!r} is not a NetworkInterface, a TAP name or a dict")


def _vsock(value) -> Vsock | None:
    if value is None or isinstance(value, Vsock):
        return value
    if isinstance(value, dict):
        return Vsock(**value)
    guest_cid, uds_path = value
    return Vsock(guest_cid=guest_cid, uds_path=os.fspath(uds_path))


def _entropy(value) -> Entropy | None:
    if value is None or value is False:
        return None
    if value is True:
        return Entropy()
    if isinstance(value, Entropy):
        return value
    if isinstance(value, dict):
        return Entropy(rate_limiter=_rate_limiter(value.get("rate_limiter")))
    raise TypeError(f"entropy device: {value!r} is not True, a dict or an Entropy")
