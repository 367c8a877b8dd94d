"""Conformance with Firecracker v1.16.1's swagger, generated from the spec itself.

For every path and method of the swagger, against a live `pyrite-vmm`:
- a valid request (built from the schema) is answered with a status the operation
  documents, and a body that fits the documented schema; pyrite must never answer
  "Invalid request method and/or path" (that would be an operation it does not serve);
- invalid requests (malformed JSON, wrong types, an unknown field, each required field
  missing) are refused with 400 and serde's "An error occurred when deserializing ...";
- a GET with a body, a PUT or PATCH without one, are refused as Firecracker refuses them.
"""
from __future__ import annotations

import pytest

from api_swagger import example, invalid_bodies, operations, validate
from pyrite.api.routes import ROUTES

DESERIALIZE = "An error occurred when deserializing the json body of a request: "
# Operations that succeed on a fresh pyrite-vmm (before InstanceStart).
OK_BEFORE_BOOT = {
    "describeInstance", "getFirecrackerVersion", "getMachineConfiguration", "getExportVmConfig",
    "putMachineConfiguration", "patchMachineConfiguration", "putGuestBootSource", "putLogger", "putMetrics",
    "putSerialDevice", "putEntropyDevice", "putGuestNetworkInterfaceByID", "putGuestVsock",
}
# Allowed only after InstanceStart: Firecracker's words before it.
AFTER_BOOT_ONLY = {r.operation for r in ROUTES if r.phase == "post-boot"}
# Schemas whose swagger "required" Firecracker does not enforce: PATCH takes a subset.
PARTIAL_BODIES = {"patchMachineConfiguration"}
# aarch64-only fields of CpuConfig; pyrite is x86_64, as Firecracker on x86_64 refuses them.
ARCH_ONLY_FIELDS = {"reg_modifiers", "vcpu_features"}


def _ops(spec):
    return operations(spec)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from api_client import start_vmm
    tmp = tmp_path_factory.mktemp("conformance")
    v = start_vmm(tmp, "--id", "conformance")
    yield v, tmp
    v.stop()


def _valid_body(swagger, op, tmp):
    """The schema's example, with values that make sense on this host where the VMM checks
    them (files that exist, ids equal to the path's)."""
    ids = {name: "pyrite0" for name in ("drive_id", "iface_id", "id")}
    body = example(swagger, op.body_schema, ids=ids)
    if op.id == "putGuestBootSource":
        kernel = tmp / "kernel.bin"
        kernel.write_bytes(b"\0" * 64)
        body["kernel_image_path"] = str(kernel)
    if op.id in ("putLogger", "putMetrics"):
        target = tmp / f"{op.id}.out"
        target.touch()
        body["log_path" if op.id == "putLogger" else "metrics_path"] = str(target)
    if op.id == "putSerialDevice":
        body["serial_out_path"] = str(tmp / "serial.out")
    if op.id == "putMachineConfiguration" or op.id == "patchMachineConfiguration":
        body.update(vcpu_count=1, mem_size_mib=128)
    if op.id == "loadSnapshot":   # the swagger makes both optional; Firecracker wants exactly one
        body.pop("mem_file_path", None)
        body["mem_backend"] = {"backend_type": "File", "backend_path": str(tmp / "snapshot.mem")}
    # Fields the swagger leaves optional but Firecracker's structs require (and so does pyrite).
    if op.id == "putMemoryHotplug":
        body["total_size_mib"] = 1024
    if op.id == "patchMemoryHotplug":
        body["requested_size_mib"] = 128
    return body


def test_every_swagger_operation_has_a_route(swagger):
    spec_ops = {(op.method, op.path): op.id for op in _ops(swagger)}
    routed = {(r.method, r.pattern): r.operation for r in ROUTES}
    assert spec_ops == routed


def test_valid_requests_get_documented_answers(swagger, live):
    vmm, tmp = live
    client = vmm.client()
    failures = []
    for op in _ops(swagger):
        if op.body_schema is not None:
            body = _valid_body(swagger, op, tmp)
            r = client.request(op.method, op.target(), body=body)
        else:
            r = client.request(op.method, op.target())
        where = f"{op} ({op.id})"
        if not op.documents(r.status):
            failures.append(f"{where}: status {r.status} is not documented")
            continue
        if r.status == 204:
            if r.body:
                failures.append(f"{where}: 204 with a body {r.body!r}")
        else:
            schema = op.response_schema(r.status)
            problems = validate(swagger, schema, r.json()) if schema else []
            failures += [f"{where}: {p}" for p in problems]
        if r.status >= 400:
            fault = r.fault
            if "Invalid request method and/or path" in fault or fault.startswith(DESERIALIZE):
                failures.append(f"{where}: a valid request was not understood: {fault}")
            elif op.id in OK_BEFORE_BOOT:
                failures.append(f"{where}: expected success, got {r.status} {fault}")
            elif op.id in AFTER_BOOT_ONLY and "before starting the microVM" not in fault:
                failures.append(f"{where}: expected Firecracker's pre-boot refusal, got {fault}")
        elif op.id not in OK_BEFORE_BOOT:
            failures.append(f"{where}: answered {r.status} but pyrite cannot do this yet")
    client.close()
    assert vmm.alive()
    assert not failures, "\n".join(failures)


def test_invalid_bodies_are_refused_with_serde_messages(swagger, live):
    vmm, tmp = live
    client = vmm.client()
    failures = []
    checked = 0
    for op in _ops(swagger):
        if op.body_schema is None:
            continue
        valid = _valid_body(swagger, op, tmp)
        for what, raw in invalid_bodies(swagger, op, valid):
            if op.id in PARTIAL_BODIES and what.startswith("missing required"):
                continue
            if what.startswith("wrong type for") and what.split()[3] in ARCH_ONLY_FIELDS:
                pass  # still refused (as an unknown field), checked like the rest
            r = client.request(op.method, op.target(), raw_body=raw)
            checked += 1
            if r.status != 400 or not r.json().get("fault_message", "").startswith(DESERIALIZE):
                failures.append(f"{op} {what}: got {r.status} {r.body[:200]!r}")
    client.close()
    assert checked > 100
    assert vmm.alive()
    assert not failures, "\n".join(failures)


def test_method_and_body_rules(swagger, live):
    vmm, _ = live
    client = vmm.client()
    for op in _ops(swagger):
        if op.method == "GET":
            r = client.request("GET", op.target(), raw_body=b"{}")
            assert (r.status, r.fault) == (400, "GET request cannot have a body."), op
        elif op.method == "PUT":
            r = client.request("PUT", op.target())
            assert (r.status, r.fault) == (400, "Empty PUT request."), op
    r = client.request("PATCH", "/vm")
    assert (r.status, r.fault) == (400, "Empty PATCH request.")
    client.close()


@pytest.mark.parametrize("method,target,fault", [
    ("GET", "/nope", "Invalid request method and/or path: GET nope."),
    ("GET", "/vm", "Invalid request method and/or path: GET vm."),
    ("PUT", "/snapshot/bogus", "Invalid request method and/or path: PUT /snapshot/bogus."),
    ("GET", "/balloon/x", "Unrecognized GET request path `x`."),
    ("PUT", "/drives", "The ID cannot be empty."),
    ("PUT", "/drives/a-b", "API Resource IDs can only contain alphanumeric characters and underscores."),
])
def test_unknown_paths_answer_as_firecracker(live, method, target, fault):
    vmm, _ = live
    r = vmm.request(method, target, body={"drive_id": "a-b", "is_root_device": True} if method == "PUT" else None)
    assert (r.status, r.fault) == (400, fault)


def test_unsupported_http_methods_get_micro_http_answer(live):
    vmm, _ = live
    for method in ("POST", "DELETE", "HEAD"):
        r = vmm.request(method, "/")
        assert r.status == 400
        assert r.body == (b'{ "error": "Invalid HTTP Method: Unsupported HTTP method.\n'
                          b'All previous unanswered requests will be dropped." }')
