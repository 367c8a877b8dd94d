"""The API's request handling, sans-I/O: an HTTP request in, (status, JSON body) out.

It plays the part of Firecracker's ParsedRequest + Preboot/Runtime ApiController: decode the
body into its pyrite.config model (serde's messages), check the phase (before or after
InstanceStart, Firecracker's words), apply the request to VmResources or to the running
microVM. No socket in sight: tests drive it request by request.
"""
from __future__ import annotations

import threading
import time

# Not the models, VmResources or the JSON reader: GET / is answered without them (they load
# with the first request body, or the first use of `resources`).
from pyrite.config.encode import encode_json
from pyrite.config.errors import ConfigError, require_supported

from . import API_VERSION
from .logger import LOGGER, LoggerError
from .metrics import METRICS, MetricsError
from .routes import POST_BOOT, PRE_BOOT, Route, RouteError, resolve

APP_NAME = "Firecracker"  # what GET / reports: clients check it

NOT_SUPPORTED_PRE_BOOT = "The requested operation is not supported before starting the microVM."
NOT_SUPPORTED_POST_BOOT = "The requested operation is not supported after starting the microVM."


class Response:
    __slots__ = ("status", "body", "deprecation")

    def __init__(self, status: int, body=None, deprecation: bool = False):
        self.status = status
        self.body = body              # a JSON-able object, or None (204)
        self.deprecation = deprecation

    def body_bytes(self) -> bytes | None:
        return None if self.body is None else encode_json(self.body).encode()

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.body!r})"


class Fault(Exception):
    """A request refused with `{"fault_message": ...}`: 400, or `status` when given."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def fault(message: str, status: int = 400) -> Response:
    return Response(status, {"fault_message": message})


def _deprecated(operation: str, payload) -> bool:
    """Requests using deprecated fields get `Deprecation: true`, whatever their outcome, as
    Firecracker marks them while parsing."""
    if operation in ("putMachineConfiguration", "patchMachineConfiguration"):
        return payload.cpu_template is not None
    if operation == "putGuestVsock":
        return payload.vsock_id is not None
    if operation == "putMmdsConfig":
        return payload.version == "V1"
    if operation == "loadSnapshot":
        return payload.mem_file_path is not None or payload.enable_diff_snapshots
    return False


class ApiController:
    """Owns the VmResources before boot and the microVM after. `boot` is
    pyrite.api.boot.boot_microvm (or a test double with the same signature)."""

    def __init__(self, resources=None, *, instance_id: str = "anonymous-instance",
                 boot=None, logger=LOGGER, metrics=METRICS, serial_out=None, boot_timer: bool = False,
                 seccomp: dict | None = None):
        self._resources = resources   # pyrite.config.VmResources; a default one is made on first use
        self.instance_id = instance_id
        self.boot_timer = boot_timer  # --boot-timer: attach the boot timer device and log the guest's signal
        self.seccomp = seccomp        # pyrite.seccomp Programs by category, for the microVM's threads
        self._boot = boot
        self.logger = logger
        self.metrics = metrics
        self.serial_out = serial_out
        self.vmm = None
        self.started = threading.Event()   # set once InstanceStart succeeded
        self.boot_ready = threading.Event()  # the main thread has prepared for vCPU threads
        self.boot_ready.set()
        self.boot_path = False             # a boot-specific resource was configured (no snapshot load then)
        self.machine = None                # a KVM VM made ahead of InstanceStart (boot.prepare_main_thread)
        self._lock = threading.Lock()

    @property
    def resources(self):
        if self._resources is None:
            from pyrite.config.resources import VmResources
            self._resources = VmResources()
        return self._resources

    @resources.setter
    def resources(self, resources) -> None:
        self._resources = resources

    # ------------------------------------------------------------------ entry point
    def handle(self, method: str, path: str, body: bytes | None) -> Response:
        """One request; never raises for anything a client can send."""
        if body is not None and not body:
            body = None
        route = None
        try:
            route, params = resolve(method, path, body is not None)
            payload = None
            if route.body is not None and body is not None:
                from pyrite.config.decode import DecodeError, decode
                try:
                    payload = decode(body, route.body_type())
                except DecodeError as e:
                    raise Fault("An error occurred when deserializing the json body of a request: "
                                f"{e.describe(body)}.") from None
            with self._lock:
                response = self._dispatch(route, params, payload)
        except (RouteError, ConfigError) as e:
            response = fault(str(e))
        except Fault as e:
            response = fault(str(e), e.status)
        except Exception as e:  # a bug here must cost one request, not the VMM
            self.logger.error(f"API request {method} {path} failed: {type(e).__name__}: {e}")
            response = fault(f"Internal error while handling the request: {type(e).__name__}: {e}", 500)
        if route is not None:
            self.metrics.count_request(route.metric, response.status >= 400)
            if response.deprecation:
                self.metrics.deprecated_api.inc("deprecated_http_api_calls")
        self._log(method, path, response)
        return response

    def _log(self, method: str, path: str, response: Response) -> None:
        if response.status < 300:
            text = "200 OK" if response.status == 200 else "204 No Content"
            self.logger.debug(f"The request {method} {path} was executed successfully. Status code: {text}.")
        else:
            self.logger.error(f"Received Error. Status code: {response.status} Bad Request. "
                              f"Message: {response.body.get('fault_message') if response.body else ''}")

    @property
    def state(self) -> str:
        return "Not started" if self.vmm is None else self.vmm.state

    def _dispatch(self, route: Route, params: dict, payload) -> Response:
        if route.id_field is not None and payload is not None:
            path_id = next(iter(params.values()))
            if getattr(payload, route.id_field) != path_id:
                raise Fault("The id from the path does not match the id from the body!")
        started = self.vmm is not None
        if route.phase == PRE_BOOT and started:
            raise Fault(NOT_SUPPORTED_POST_BOOT)
        if route.phase == POST_BOOT and not started:
            raise Fault(NOT_SUPPORTED_PRE_BOOT)
        handler = getattr(self, "op_" + route.operation)
        deprecated = _deprecated(route.operation, payload)
        try:
            result = handler(payload, **params)
        except Fault as e:
            return Response(e.status, {"fault_message": str(e)}, deprecation=deprecated)
        except ConfigError as e:
            return Response(400, {"fault_message": str(e)}, deprecation=deprecated)
        if not isinstance(result, Response):
            result = Response(204)
        result.deprecation = result.deprecation or deprecated
        return result

    # ------------------------------------------------------------------ information
    def op_describeInstance(self, _):
        return Response(200, {"id": self.instance_id, "state": self.state, "vmm_version": API_VERSION,
                              "app_name": APP_NAME})

    def op_getFirecrackerVersion(self, _):
        return Response(200, {"firecracker_version": API_VERSION})

    def op_getMachineConfiguration(self, _):
        return Response(200, self.resources.machine_config.to_json())

    def op_getExportVmConfig(self, _):
        return Response(200, self.resources.to_json())

    # ------------------------------------------------------------------ machine and boot
    def op_putMachineConfiguration(self, mc):
        self.resources.set_machine_config(mc)

    def op_patchMachineConfiguration(self, update):
        if update.is_empty():
            raise Fault("Empty PATCH request.")
        self.resources.update_machine_config(update)

    def op_putGuestBootSource(self, bs):
        self.boot_path = True
        self.resources.set_boot_source(bs)

    def op_putCpuConfiguration(self, cpu):
        self.boot_path = True
        self.resources.set_cpu_config(cpu)

    def op_putSerialDevice(self, serial):
        self.resources.set_serial(serial)

    def op_putLogger(self, cfg):
        try:
            self.logger.configure(log_path=cfg.log_path, level=cfg.level, show_level=cfg.show_level,
                                  show_log_origin=cfg.show_log_origin, module=cfg.module)
        except LoggerError as e:
            raise Fault(f"Logger error: {e}") from None

    def op_putMetrics(self, cfg):
        try:
            self.metrics.init(cfg.metrics_path)
        except MetricsError as e:
            raise Fault(f"Metrics error: {e}") from None

    # ------------------------------------------------------------------ actions and state
    def op_createSyncAction(self, action):
        kind = action.action_type
        if kind == "InstanceStart":
            if self.vmm is not None:
                raise Fault(NOT_SUPPORTED_POST_BOOT)
            self.start_microvm()
            return None
        if self.vmm is None:
            raise Fault(NOT_SUPPORTED_PRE_BOOT)
        if kind == "FlushMetrics":
            try:
                self.metrics.flush()
            except MetricsError as e:
                raise Fault(f"Metrics error: {e}") from None
        elif kind == "SendCtrlAltDel":
            try:
                self.vmm.send_ctrl_alt_del()
            except Exception as e:
                raise Fault(f"Internal VMM error: {e}") from None
        return None

    def start_microvm(self) -> None:
        """InstanceStart: build and start the microVM from the resources."""
        start_ns = time.monotonic_ns()  # Firecracker's boot timer counts from InstanceStart
        self.resources.check_buildable()
        if self._boot is None:
            raise Fault("Start microvm error: no VMM builder is wired to this API server.")
        from pyrite.vmm.errors import BuildError
        from .boot import start_error_message
        if not self.boot_ready.wait(30):
            raise Fault("Start microvm error: the VMM's main thread is not ready for vCPU threads.")
        try:
            serial_out = self._serial_sink()
            machine, self.machine = self.machine, None  # the build owns it from here, failed or not
            vmm = self._boot(self.resources, serial_out=serial_out,
                             on_boot_timer=self._on_boot_timer if self.boot_timer else None,
                             metrics=self.metrics, start_ns=start_ns, machine=machine, seccomp=self.seccomp)
        except BuildError as e:
            raise Fault(f"Start microvm error: {start_error_message(e)}") from None
        except Exception as e:   # a bug, not the user's input: say so, with the traceback in the log
            import traceback
            self.logger.error(f"InstanceStart failed unexpectedly:\n{traceback.format_exc().rstrip()}")
            raise Fault(f"Start microvm error: Internal error while starting microVM: "
                        f"{type(e).__name__}: {e}", 500) from None
        self.vmm = vmm
        self.started.set()

    def _serial_sink(self):
        serial = self.resources.serial
        if serial is not None and serial.serial_out_path is not None:
            import os
            from .logger import open_nonblocking
            try:
                fd = open_nonblocking(serial.serial_out_path)
            except OSError:
                fd = os.open(serial.serial_out_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            from pyrite.vmm.console import FdSink
            return FdSink(fd)
        return self.serial_out

    def _on_boot_timer(self, boot_time) -> None:
        """`boot_time` is a pyrite.devices.legacy.boot_timer.BootTime."""
        self.logger.info(str(boot_time))
        self.metrics.boot_timer.store("guest_boot_time_us", boot_time.wall_us)
        self.metrics.boot_timer.store("guest_boot_cpu_time_us", boot_time.cpu_us)

    def op_patchVm(self, vm_state):
        started = time.monotonic_ns()
        try:
            if vm_state.state == "Paused":
                self.vmm.pause()
                metric = "pause_vm"
            else:
                self.vmm.resume()
                metric = "resume_vm"
        except Exception as e:
            raise Fault(f"Internal VMM error: {e}") from None
        self.metrics.latencies_us.store(metric, (time.monotonic_ns() - started) // 1000)

    # ------------------------------------------------------------------ devices (those not yet in
    # config.errors.SUPPORTED are validated, then refused by VmResources)
    def op_putGuestDriveByID(self, drive, drive_id):
        self.boot_path = True
        self.resources.add_drive(drive_id, drive)

    def op_patchGuestDriveByID(self, update, drive_id):
        require_supported("drives")
        from pyrite.devices.virtio.handler import DeviceUpdateError
        try:
            self.vmm.update_device("block", drive_id, update)
        except DeviceUpdateError as e:   # no such drive, a file that cannot be opened, a bad bucket
            raise ConfigError("drives", f"Unable to patch the block device: {e} Please verify the "
                                        f"request arguments.") from None
        if update.path_on_host is not None:
            self.resources.update_drive_path(drive_id, update.path_on_host)

    def op_putGuestNetworkInterfaceByID(self, iface, iface_id):
        self.boot_path = True
        self.resources.add_network_interface(iface_id, iface)

    def op_patchGuestNetworkInterfaceByID(self, update, iface_id):
        require_supported("network-interfaces")
        from pyrite.devices.virtio.handler import DeviceUpdateError
        try:
            self.vmm.update_device("net", iface_id, update)
        except DeviceUpdateError as e:   # no such interface, a bad bucket
            raise ConfigError("network-interfaces", f"Unable to update the net device: {e}") from None

    def op_putGuestPmemByID(self, pmem, id):
        self.boot_path = True
        self.resources.add_pmem(id, pmem)

    def op_patchGuestPmemByID(self, update, id):
        require_supported("pmem")

    def op_putGuestVsock(self, vsock):
        self.boot_path = True
        self.resources.set_vsock(vsock)

    def op_putEntropyDevice(self, entropy):
        self.boot_path = True
        self.resources.set_entropy(entropy)

    def op_describeBalloonConfig(self, _):
        if self.resources.balloon is None:
            raise Fault("Balloon config error: No balloon device found.")
        return Response(200, self.resources.balloon.to_json())

    def op_putBalloon(self, balloon):
        self.boot_path = True
        self.resources.set_balloon(balloon)

    def _balloon_after_boot(self, *_ , **__):
        require_supported("balloon")

    op_patchBalloon = op_describeBalloonStats = op_patchBalloonStatsInterval = _balloon_after_boot
    op_startBalloonHinting = op_describeBalloonHinting = op_stopBalloonHinting = _balloon_after_boot

    def op_putMmds(self, value):
        self.resources.set_mmds_data(value)

    def op_patchMmds(self, value):
        require_supported("mmds")

    def op_getMmds(self, _):
        require_supported("mmds")

    def op_putMmdsConfig(self, cfg):
        self.resources.set_mmds_config(cfg)

    def op_putMemoryHotplug(self, cfg):
        self.boot_path = True
        self.resources.set_memory_hotplug(cfg)

    def op_patchMemoryHotplug(self, update):
        require_supported("memory-hotplug")

    def op_getMemoryHotplug(self, _):
        require_supported("memory-hotplug")

    # ------------------------------------------------------------------ snapshots
    def op_createSnapshot(self, params):
        if params.snapshot_type == "Diff" and not self.resources.machine_config.track_dirty_pages:
            raise Fault("The requested operation is not supported: Diff snapshots are not allowed on uVMs "
                        "with dirty page tracking disabled.")
        from pyrite.snapshot.errors import SnapshotError
        from .boot import create_error_message, create_snapshot
        started = time.monotonic_ns()
        try:
            create_snapshot(self.vmm, self.resources, params)
        except SnapshotError as e:
            raise Fault(f"Create snapshot error: {create_error_message(e)}") from None
        metric = "diff_create_snapshot" if params.snapshot_type == "Diff" else "full_create_snapshot"
        self.metrics.latencies_us.store(metric, (time.monotonic_ns() - started) // 1000)

    def op_loadSnapshot(self, params):
        if (params.mem_backend is None) == (params.mem_file_path is None):
            raise Fault("An error occurred when deserializing the json body of a request: " + (
                "missing field: either `mem_backend` or `mem_file_path` is required." if params.mem_backend is None
                else "too many fields: either `mem_backend` or `mem_file_path` exclusively is required."))
        if self.boot_path:
            raise Fault("Load snapshot error: Loading a microVM snapshot not allowed after configuring "
                        "boot-specific resources.")
        from pyrite.snapshot.errors import SnapshotError
        from pyrite.vmm.errors import BuildError
        from .boot import load_error_message, load_microvm
        started = time.monotonic_ns()
        if not self.boot_ready.wait(30):
            raise Fault("Load snapshot error: the VMM's main thread is not ready for vCPU threads.")
        try:
            machine, self.machine = self.machine, None  # the load owns it from here, failed or not
            vmm, resources = load_microvm(params, serial_out=self._serial_sink(), metrics=self.metrics,
                                          machine=machine, seccomp=self.seccomp)
        except (SnapshotError, BuildError) as e:    # the VMM stays usable: another load may follow
            raise Fault(f"Load snapshot error: {load_error_message(e)}") from None
        except Exception as e:
            import traceback
            self.logger.error(f"snapshot load failed unexpectedly:\n{traceback.format_exc().rstrip()}")
            raise Fault(f"Load snapshot error: Internal error while loading the snapshot: "
                        f"{type(e).__name__}: {e}", 500) from None
        self.vmm, self.resources = vmm, resources
        self.started.set()
        self.metrics.latencies_us.store("load_snapshot", (time.monotonic_ns() - started) // 1000)
