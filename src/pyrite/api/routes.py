"""The API's routing table, as data: every path and method of Firecracker's swagger.

A Route names its swagger operationId, the model its JSON body is decoded into (a class of
pyrite.config.models, by name: the models load with the first body, not with the API), when the
operation is allowed (before InstanceStart, after it, or both, as Firecracker's
PrebootApiController / RuntimeApiController decide), and the metric it counts under.
Tests enumerate ROUTES against the swagger, so an operation cannot be forgotten.
"""
from __future__ import annotations

PRE_BOOT, POST_BOOT, ANY_TIME = "pre-boot", "post-boot", "any time"
ANY_JSON = "any JSON"  # a body taken as it is (MMDS data), not a model


class Route:
    __slots__ = ("method", "pattern", "operation", "body", "body_required", "phase", "metric", "id_field",
                 "segments", "_body_type")

    def __init__(self, method: str, pattern: str, operation: str, body=None, *, phase: str = ANY_TIME,
                 metric: str | None = None, id_field: str | None = None, body_required: bool = True):
        self.method = method
        self.pattern = pattern
        self.operation = operation          # the swagger operationId, also the handler's name
        self.body = body                    # a model's name, ANY_JSON, or None for no body
        self.body_required = body_required
        self.phase = phase
        self.metric = metric                # "<group>.<name>": counts <name>_count and <name>_fails
        self.id_field = id_field            # body field that must equal the path's {id}
        self.segments = tuple(pattern.strip("/").split("/")) if pattern != "/" else ()
        self._body_type = None

    def body_type(self):
        """The pyrite.config.decode type the body is decoded with."""
        if self._body_type is None:
            from pyrite.config import models
            from pyrite.config.decode import ANY, Struct
            self._body_type = ANY if self.body == ANY_JSON else Struct(getattr(models, self.body))
        return self._body_type

    def match(self, segments: tuple[str, ...]) -> dict | None:
        if len(segments) != len(self.segments):
            return None
        params = {}
        for want, got in zip(self.segments, segments):
            if want.startswith("{"):
                params[want[1:-1]] = got
            elif want != got:
                return None
        return params

    def __repr__(self) -> str:
        return f"Route({self.method} {self.pattern} -> {self.operation})"


ROUTES: tuple[Route, ...] = (
    Route("GET", "/", "describeInstance", metric="get_api_requests.instance_info"),
    Route("GET", "/version", "getFirecrackerVersion", metric="get_api_requests.vmm_version"),
    Route("GET", "/machine-config", "getMachineConfiguration", metric="get_api_requests.machine_cfg"),
    Route("GET", "/vm/config", "getExportVmConfig"),
    Route("PUT", "/actions", "createSyncAction", "InstanceAction", metric="put_api_requests.actions"),
    Route("PUT", "/machine-config", "putMachineConfiguration", "MachineConfig", phase=PRE_BOOT,
          metric="put_api_requests.machine_cfg"),
    Route("PATCH", "/machine-config", "patchMachineConfiguration", "MachineConfigUpdate", phase=PRE_BOOT,
          metric="patch_api_requests.machine_cfg"),
    Route("PUT", "/boot-source", "putGuestBootSource", "BootSource", phase=PRE_BOOT,
          metric="put_api_requests.boot_source"),
    Route("PUT", "/cpu-config", "putCpuConfiguration", "CpuConfig", phase=PRE_BOOT,
          metric="put_api_requests.cpu_cfg"),
    Route("PUT", "/logger", "putLogger", "Logger", phase=PRE_BOOT, metric="put_api_requests.logger"),
    Route("PUT", "/metrics", "putMetrics", "Metrics", phase=PRE_BOOT, metric="put_api_requests.metrics"),
    Route("PUT", "/serial", "putSerialDevice", "Serial", phase=PRE_BOOT, metric="put_api_requests.serial"),
    Route("PATCH", "/vm", "patchVm", "VmState", phase=POST_BOOT),
    Route("PUT", "/drives/{drive_id}", "putGuestDriveByID", "Drive", phase=PRE_BOOT,
          metric="put_api_requests.drive", id_field="drive_id"),
    Route("PATCH", "/drives/{drive_id}", "patchGuestDriveByID", "DriveUpdate", phase=POST_BOOT,
          metric="patch_api_requests.drive", id_field="drive_id"),
    Route("PUT", "/network-interfaces/{iface_id}", "putGuestNetworkInterfaceByID", "NetworkInterface",
          phase=PRE_BOOT, metric="put_api_requests.network", id_field="iface_id"),
    Route("PATCH", "/network-interfaces/{iface_id}", "patchGuestNetworkInterfaceByID",
          "NetworkInterfaceUpdate", phase=POST_BOOT, metric="patch_api_requests.network", id_field="iface_id"),
    Route("PUT", "/pmem/{id}", "putGuestPmemByID", "Pmem", phase=PRE_BOOT, metric="put_api_requests.pmem",
          id_field="id"),
    Route("PATCH", "/pmem/{id}", "patchGuestPmemByID", "PmemUpdate", phase=POST_BOOT, id_field="id"),
    Route("PUT", "/vsock", "putGuestVsock", "Vsock", phase=PRE_BOOT, metric="put_api_requests.vsock"),
    Route("PUT", "/entropy", "putEntropyDevice", "Entropy", phase=PRE_BOOT),
    Route("GET", "/balloon", "describeBalloonConfig"),
    Route("PUT", "/balloon", "putBalloon", "Balloon", phase=PRE_BOOT),
    Route("PATCH", "/balloon", "patchBalloon", "BalloonUpdate", phase=POST_BOOT),
    Route("GET", "/balloon/statistics", "describeBalloonStats", phase=POST_BOOT),
    Route("PATCH", "/balloon/statistics", "patchBalloonStatsInterval", "BalloonStatsUpdate", phase=POST_BOOT),
    Route("PATCH", "/balloon/hinting/start", "startBalloonHinting", "BalloonStartHinting", phase=POST_BOOT,
          body_required=False),
    Route("GET", "/balloon/hinting/status", "describeBalloonHinting", phase=POST_BOOT),
    Route("PATCH", "/balloon/hinting/stop", "stopBalloonHinting", phase=POST_BOOT),
    Route("PUT", "/mmds", "putMmds", ANY_JSON, metric="put_api_requests.mmds"),
    Route("PATCH", "/mmds", "patchMmds", ANY_JSON, metric="patch_api_requests.mmds"),
    Route("GET", "/mmds", "getMmds", metric="get_api_requests.mmds"),
    Route("PUT", "/mmds/config", "putMmdsConfig", "MmdsConfig", phase=PRE_BOOT),
    Route("PUT", "/snapshot/create", "createSnapshot", "SnapshotCreate", phase=POST_BOOT),
    Route("PUT", "/snapshot/load", "loadSnapshot", "SnapshotLoad", phase=PRE_BOOT),
    Route("PUT", "/hotplug/memory", "putMemoryHotplug", "MemoryHotplug", phase=PRE_BOOT,
          metric="put_api_requests.hotplug_memory"),
    Route("PATCH", "/hotplug/memory", "patchMemoryHotplug", "MemoryHotplugSizeUpdate", phase=POST_BOOT,
          metric="patch_api_requests.hotplug_memory"),
    Route("GET", "/hotplug/memory", "getMemoryHotplug", metric="get_api_requests.hotplug_memory"),
)

# Paths whose Firecracker parser answers unknown sub-paths with its own words.
_SUBROUTERS = ("balloon", "mmds")


class RouteError(Exception):
    """A request that matches no route, or breaks a rule of the method; the text is
    Firecracker's fault message."""


def _checked_id(value: str) -> str:
    if not value:
        raise RouteError("The ID cannot be empty.")
    if not all(c == "_" or c.isalnum() for c in value):
        raise RouteError("API Resource IDs can only contain alphanumeric characters and underscores.")
    return value


def resolve(method: str, path: str, has_body: bool) -> tuple[Route, dict]:
    """The route for `method path`, with its path parameters checked as Firecracker checks them."""
    segments = tuple(path.lstrip("/").split("/")) if path.strip("/") else ()
    if segments and segments[-1] == "":
        segments = segments[:-1] or ("",)
    first = segments[0] if segments else ""
    # The method/body rules come before the path, as in Firecracker's parsed_request.rs.
    if method == "GET" and has_body:
        raise RouteError("GET request cannot have a body.")
    if method == "PUT" and not has_body:
        raise RouteError("Empty PUT request.")
    if method == "PATCH" and not has_body and first != "balloon":
        raise RouteError("Empty PATCH request.")
    for route in ROUTES:
        if route.method != method:
            continue
        params = route.match(segments)
        if params is not None:
            for value in params.values():
                _checked_id(value)
            if route.body is not None and route.body_required and not has_body:
                raise RouteError(f"Empty {method} request.")
            return route, params
    # An {id} route reached without its id: Firecracker's "The ID cannot be empty."
    for route in ROUTES:
        if route.method == method and route.id_field and route.segments[0] == first and len(segments) == 1:
            raise RouteError("The ID cannot be empty.")
    if first in _SUBROUTERS and len(segments) > 1:
        raise RouteError(f"Unrecognized {method} request path `{'/'.join(segments[1:])}`.")
    if first == "snapshot":
        raise RouteError(f"Invalid request method and/or path: {method} {path}.")
    return _invalid(method, first)


def _invalid(method: str, first: str):
    raise RouteError(f"Invalid request method and/or path: {method} {first}.")
