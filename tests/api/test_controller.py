"""The request handling (ApiController) without sockets or KVM.

`FakeMicroVm` below is a TEST DOUBLE of the microVM interface the API uses
(pyrite.api.boot.MicroVmHandle): it records calls and keeps a state string, nothing more.
The real VMM is exercised by test_lifecycle.py.
"""
from __future__ import annotations

import json

import pytest

from pyrite.api.controller import ApiController
from pyrite.api.logger import Logger
from pyrite.api.metrics import Metrics


class FakeMicroVm:
    """TEST DOUBLE: the MicroVmHandle interface, recording what the API asked of it."""

    def __init__(self):
        self.state = "Not started"
        self.calls: list[str] = []

    def start(self):
        self.calls.append("start")
        self.state = "Running"

    def pause(self):
        self.calls.append("pause")
        self.state = "Paused"

    def resume(self):
        self.calls.append("resume")
        self.state = "Running"

    def send_ctrl_alt_del(self):
        self.calls.append("ctrl-alt-del")

    def stop(self):
        self.calls.append("stop")

    def wait(self, timeout=None):
        return None


@pytest.fixture
def api(tmp_path):
    booted: list = []

    def fake_boot(resources, **kwargs):  # TEST DOUBLE of pyrite.api.boot.boot_microvm
        vm = FakeMicroVm()
        vm.resources, vm.kwargs = resources, kwargs
        vm.start()
        booted.append(vm)
        return vm

    logger = Logger("unit-vm", level="Off")
    controller = ApiController(instance_id="unit-vm", boot=fake_boot, logger=logger, metrics=Metrics())
    controller.booted = booted
    kernel = tmp_path / "vmlinux"
    kernel.write_bytes(b"\x7fELF")
    controller.kernel = str(kernel)
    return controller


def call(api, method, path, body=None):
    raw = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    return api.handle(method, path, raw)


def test_instance_start_needs_a_kernel(api):
    r = call(api, "PUT", "/actions", {"action_type": "InstanceStart"})
    assert r.body == {"fault_message": "Start microvm error: Cannot start microvm without kernel configuration."}
    assert not api.booted


def test_life_cycle_through_the_api(api):
    assert call(api, "PUT", "/actions", {"action_type": "FlushMetrics"}).body == {
        "fault_message": "The requested operation is not supported before starting the microVM."}
    assert call(api, "PATCH", "/vm", {"state": "Paused"}).status == 400
    assert call(api, "PUT", "/boot-source", {"kernel_image_path": api.kernel, "boot_args": "quiet"}).status == 204
    assert call(api, "PATCH", "/machine-config", {"vcpu_count": 2}).status == 204
    assert call(api, "PUT", "/actions", {"action_type": "InstanceStart"}).status == 204
    vm = api.booted[0]
    assert vm.resources.machine_config.vcpu_count == 2 and vm.resources.kernel_cmdline == "quiet"
    assert call(api, "GET", "/").body["state"] == "Running"
    assert call(api, "PATCH", "/vm", {"state": "Paused"}).status == 204
    assert call(api, "GET", "/").body["state"] == "Paused"
    assert call(api, "PATCH", "/vm", {"state": "Resumed"}).status == 204
    assert call(api, "PUT", "/actions", {"action_type": "SendCtrlAltDel"}).status == 204
    assert call(api, "PUT", "/actions", {"action_type": "FlushMetrics"}).status == 204
    assert vm.calls == ["start", "pause", "resume", "ctrl-alt-del"]
    after = "The requested operation is not supported after starting the microVM."
    for method, path, body in [("PUT", "/actions", {"action_type": "InstanceStart"}),
                               ("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 128}),
                               ("PATCH", "/machine-config", {"vcpu_count": 1}),
                               ("PUT", "/boot-source", {"kernel_image_path": api.kernel}),
                               ("PUT", "/logger", {"level": "Info"}),
                               ("PUT", "/metrics", {"metrics_path": "/x"})]:
        assert call(api, method, path, body).body == {"fault_message": after}, path
    # reads still work after boot
    assert call(api, "GET", "/machine-config").body["vcpu_count"] == 2
    assert call(api, "GET", "/vm/config").body["boot-source"]["boot_args"] == "quiet"


def test_deserialization_errors_win_over_the_phase(api):
    r = call(api, "PATCH", "/vm", b'{"state": "X"}')
    assert r.body["fault_message"] == ("An error occurred when deserializing the json body of a request: unknown "
                                       "variant `X`, expected `Paused` or `Resumed` at line 1 column 13.")


def test_deprecated_fields_are_flagged_even_on_failure(api):
    r = call(api, "PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 256, "cpu_template": "T2"})
    assert r.status == 400 and r.deprecation
    r = call(api, "PUT", "/mmds/config", {"network_interfaces": []})
    assert r.deprecation and r.body["fault_message"].startswith("MMMDS config error:")
    assert not call(api, "PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 256}).deprecation


def test_id_in_path_and_body_must_match(api):
    r = call(api, "PUT", "/drives/a", {"drive_id": "b", "is_root_device": True})
    assert r.body == {"fault_message": "The id from the path does not match the id from the body!"}


def test_unsupported_devices_are_refused_before_boot(api):
    r = call(api, "PUT", "/balloon", {"amount_mib": 1, "deflate_on_oom": True})
    assert r.status == 400
    assert r.body["fault_message"] == ("The requested operation is not supported: pyrite does not support balloon "
                                       "devices yet.")
    assert call(api, "GET", "/vm/config").body["balloon"] is None


def test_a_bug_in_a_handler_costs_one_request(api, monkeypatch):
    monkeypatch.setattr(api, "op_getMachineConfiguration", lambda _: 1 / 0)
    r = call(api, "GET", "/machine-config")
    assert r.status == 500 and "ZeroDivisionError" in r.body["fault_message"]
    assert call(api, "GET", "/").status == 200


def test_request_metrics(api):
    call(api, "PUT", "/machine-config", {"vcpu_count": 0, "mem_size_mib": 1})
    call(api, "PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 1})
    call(api, "GET", "/")
    line = json.loads(api.metrics.line())
    assert line["put_api_requests"]["machine_cfg_count"] == 2
    assert line["put_api_requests"]["machine_cfg_fails"] == 1
    assert line["get_api_requests"]["instance_info_count"] == 1
    # incremental counters restart after each flush, as Firecracker's SharedIncMetric
    assert json.loads(api.metrics.line())["put_api_requests"]["machine_cfg_count"] == 0


def test_instance_start_hands_over_the_machine_made_ahead(api):
    """The KVM VM made by the main thread before InstanceStart goes to the build, once."""
    made_ahead = object()  # stands for the (System, Vm) pair of boot.prepare_main_thread()
    api.machine = made_ahead
    call(api, "PUT", "/boot-source", {"kernel_image_path": api.kernel})
    assert call(api, "PUT", "/actions", {"action_type": "InstanceStart"}).status == 204
    assert api.booted[0].kwargs["machine"] is made_ahead
    assert api.machine is None


def test_boot_timer_device_only_with_the_flag(tmp_path):
    """Firecracker attaches the boot timer only with --boot-timer."""
    for flag in (False, True):
        booted = []

        def fake_boot(resources, **kwargs):  # TEST DOUBLE of pyrite.api.boot.boot_microvm
            vm = FakeMicroVm()
            vm.kwargs = kwargs
            booted.append(vm)
            return vm

        controller = ApiController(boot=fake_boot, logger=Logger(level="Off"), metrics=Metrics(), boot_timer=flag)
        kernel = tmp_path / "vmlinux"
        kernel.write_bytes(b"\x7fELF")
        call(controller, "PUT", "/boot-source", {"kernel_image_path": str(kernel)})
        assert call(controller, "PUT", "/actions", {"action_type": "InstanceStart"}).status == 204
        assert (booted[0].kwargs["on_boot_timer"] is not None) is flag


def test_every_route_body_names_a_model():
    """Routes name their body models (loaded on first use): each name must resolve."""
    from pyrite.api.routes import ANY_JSON, ROUTES
    from pyrite.config.decode import ANY
    for route in ROUTES:
        if route.body == ANY_JSON:
            assert route.body_type() is ANY, route
        elif route.body is not None:
            assert route.body_type().cls.__name__ == route.body, route


def _start_with(tmp_path, boot, logger=None):
    controller = ApiController(boot=boot, logger=logger or Logger(level="Off"), metrics=Metrics())
    kernel = tmp_path / "vmlinux"
    kernel.write_bytes(b"\x7fELF")
    call(controller, "PUT", "/boot-source", {"kernel_image_path": str(kernel)})
    return controller, call(controller, "PUT", "/actions", {"action_type": "InstanceStart"})


def test_each_build_step_failure_gets_firecrackers_text(tmp_path):
    from pyrite.vmm import errors
    expected = {
        errors.KernelLoadError: "Cannot load kernel due to invalid memory configuration or invalid kernel image: ",
        errors.InitrdLoadError: "Cannot load initrd due to an invalid image: ",
        errors.MemorySetupError: "Invalid Memory Configuration: ",
        errors.DeviceSetupError: "Cannot initialize a MMIO Device or add a device to the MMIO Bus or cmdline: ",
        errors.VcpuSetupError: "Internal error while starting microVM: ",
        errors.KvmSetupError: "Internal error while starting microVM: ",
        errors.BootSetupError: "Cannot load command line string: ",
    }
    for kind, text in expected.items():
        def failing_boot(resources, **kwargs):
            raise kind("what failed")
        controller, r = _start_with(tmp_path, failing_boot)
        assert (r.status, r.body) == (400, {"fault_message": f"Start microvm error: {text}what failed"}), kind
        assert controller.state == "Not started"


def test_a_bug_in_the_build_is_an_internal_error_with_its_traceback_logged(tmp_path):
    log = tmp_path / "vmm.log"
    log.write_text("")                 # Firecracker's logger opens an existing file (or FIFO)
    logger = Logger("unit-vm", level="Error")
    logger.configure(log_path=str(log))

    def buggy_boot(resources, **kwargs):
        raise ZeroDivisionError("a device model divided by zero")
    _, r = _start_with(tmp_path, buggy_boot, logger)
    assert r.status == 500
    assert r.body == {"fault_message": "Start microvm error: Internal error while starting microVM: "
                                       "ZeroDivisionError: a device model divided by zero"}
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "buggy_boot" in text
