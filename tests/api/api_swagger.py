"""A small request generator and response validator over Firecracker's swagger (2.0).

`operations(spec)` lists every path + method; `valid_body(spec, op)` builds a body from the
schema (required fields only); `invalid_bodies(spec, op)` derives bodies a strict server
must refuse: wrong JSON types, an unknown field, each required field missing, malformed
JSON. `validate(spec, schema, value)` checks a response body against a schema.
"""
from __future__ import annotations

import copy
import json


class Operation:
    def __init__(self, path: str, method: str, raw: dict):
        self.path, self.method, self.raw = path, method.upper(), raw
        self.id = raw["operationId"]
        self.body_param = next((p for p in raw.get("parameters", []) if p.get("in") == "body"), None)
        self.path_params = [p["name"] for p in raw.get("parameters", []) if p.get("in") == "path"]
        self.responses = raw.get("responses", {})

    @property
    def body_schema(self):
        return None if self.body_param is None else self.body_param["schema"]

    def target(self, value: str = "pyrite0") -> str:
        path = self.path
        for name in self.path_params:
            path = path.replace("{" + name + "}", value)
        return path

    def response_schema(self, status: int):
        r = self.responses.get(status) or self.responses.get(str(status)) or self.responses.get("default")
        return None if r is None else r.get("schema")

    def documents(self, status: int) -> bool:
        return status in self.responses or str(status) in self.responses or "default" in self.responses

    def __repr__(self) -> str:
        return f"{self.method} {self.path}"


def operations(spec: dict) -> list[Operation]:
    ops = []
    for path, methods in spec["paths"].items():
        for method, raw in methods.items():
            ops.append(Operation(path, method, raw))
    return ops


def resolve(spec: dict, schema: dict) -> dict:
    while "$ref" in schema:
        name = schema["$ref"].split("/")[-1]
        schema = spec["definitions"][name]
    return schema


def example(spec: dict, schema: dict, *, name: str = "", ids: dict | None = None):
    """A value of `schema`: required properties only, enums take their first value,
    integers their minimum (or 1), strings a placeholder; ids[name] fills id fields."""
    schema = resolve(spec, schema)
    ids = ids or {}
    if name in ids:
        return ids[name]
    t = schema.get("type", "object")
    if "enum" in schema:
        return schema["enum"][0]
    if t == "object":
        if schema.get("additionalProperties") is True and not schema.get("properties"):
            return {"pyrite": "metadata"}
        return {p: example(spec, schema["properties"][p], name=p, ids=ids) for p in schema.get("required", [])}
    if t == "array":
        return []
    if t == "integer":
        return schema.get("minimum", 1)
    if t == "boolean":
        return False
    if t == "string":
        return "pyrite"
    raise ValueError(f"no example for {schema}")


_WRONG = {"string": 12345, "integer": "not-a-number", "boolean": "not-a-boolean", "object": 7, "array": 7}


def invalid_bodies(spec: dict, op: Operation, valid) -> list[tuple[str, bytes]]:
    """(description, raw body) pairs a strict server refuses with a deserialization error."""
    schema = resolve(spec, op.body_schema)
    out = [("malformed JSON", b'{"unterminated": '), ("not JSON at all", b"definitely not json")]
    if schema.get("additionalProperties") is True and not schema.get("properties"):
        return out  # MMDS contents: any JSON object
    if not isinstance(valid, dict):
        return out
    out.append(("a JSON array instead of an object", b'"a string instead of an object"'))
    with_unknown = dict(valid, pyrite_unknown_field=1)
    out.append(("unknown field", json.dumps(with_unknown).encode()))
    for prop, sub in schema.get("properties", {}).items():
        sub = resolve(spec, sub)
        t = sub.get("type", "object")
        body = copy.deepcopy(valid)
        body[prop] = _WRONG[t]
        out.append((f"wrong type for {prop} ({t})", json.dumps(body).encode()))
    for prop in schema.get("required", []):
        body = {k: v for k, v in valid.items() if k != prop}
        out.append((f"missing required {prop}", json.dumps(body).encode()))
    return out


def validate(spec: dict, schema: dict, value, where: str = "body") -> list[str]:
    """Problems of `value` against `schema` (empty when it conforms). Firecracker writes
    null for absent optional objects (swagger 2.0 has no 'nullable'), so null is accepted
    for properties that are not required."""
    schema = resolve(spec, schema)
    problems: list[str] = []
    t = schema.get("type", "object" if "properties" in schema else None)
    if t == "object":
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {value!r}"]
        for req in schema.get("required", []):
            if req not in value:
                problems.append(f"{where}: missing required {req}")
        props = schema.get("properties", {})
        for k, v in value.items():
            if k not in props:
                if schema.get("additionalProperties") is True:
                    continue
                problems.append(f"{where}: property {k} is not in the schema")
                continue
            if v is None and k not in schema.get("required", []):
                continue
            problems += validate(spec, props[k], v, f"{where}.{k}")
    elif t == "array":
        if not isinstance(value, list):
            return [f"{where}: expected an array"]
        for i, item in enumerate(value):
            problems += validate(spec, schema["items"], item, f"{where}[{i}]")
    elif t == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{where}: expected an integer, got {value!r}")
        else:
            if "minimum" in schema and value < schema["minimum"]:
                problems.append(f"{where}: {value} below minimum {schema['minimum']}")
            if "maximum" in schema and value > schema["maximum"]:
                problems.append(f"{where}: {value} above maximum {schema['maximum']}")
    elif t == "boolean":
        if not isinstance(value, bool):
            problems.append(f"{where}: expected a boolean, got {value!r}")
    elif t == "string":
        if not isinstance(value, str):
            problems.append(f"{where}: expected a string, got {value!r}")
        elif "enum" in schema and value not in schema["enum"]:
            problems.append(f"{where}: {value!r} not in {schema['enum']}")
    return problems
