"""Seccomp filter descriptions in Firecracker's seccompiler JSON format, read and checked.

    {"vmm":  {"default_action": "trap", "filter_action": "allow",
              "filter": [{"syscall": "read"},
                         {"syscall": "ioctl", "args": [{"index": 1, "type": "dword", "op": "eq",
                                                        "val": "KVM_GET_CLOCK", "comment": "..."}]}]},
     "api":  {...}, "vcpu": {...}}

One filter per thread category (VMM / event loop, API, vCPU), all three required. Actions:
"allow", "trap", "log", "kill_thread", "kill_process", {"errno": N}, {"trace": N}. Argument
ops: "eq", "ne", "lt", "le", "gt", "ge", {"masked_eq": MASK}; "dword" compares the low 32 bits
(for eq and masked_eq; the other ops compare the whole register). "comment" may appear on a
filter's rules and arguments. pyrite's one extension: "val" may name one of pyrite's KVM ioctls
("KVM_RUN"), whose number pyrite.kvm.ioctls computes.

parse() gives the checked description; a mistake raises SeccompFilterError naming the file and
the place in it ("vcpu.filter[3].args[0].op: ...").
"""
from __future__ import annotations

import json

CATEGORIES = ("vmm", "api", "vcpu")
ACTION_NAMES = ("allow", "trap", "log", "kill_thread", "kill_process")
ACTIONS_WITH_VALUE = ("errno", "trace")
OPS = ("eq", "ne", "lt", "le", "gt", "ge")
ARG_TYPES = ("dword", "qword")
_ARG_INDEXES = range(6)
_U64 = 1 << 64


class SeccompFilterError(Exception):
    """A filter description that cannot be used; the text says where and why."""


class Condition:
    __slots__ = ("index", "type", "op", "mask", "val")

    def __init__(self, index: int, type: str, op: str, val: int, mask: int | None = None):
        self.index, self.type, self.op, self.val, self.mask = index, type, op, val, mask


class Rule:
    __slots__ = ("syscall", "conditions")

    def __init__(self, syscall: str, conditions: tuple[Condition, ...]):
        self.syscall, self.conditions = syscall, conditions


class ThreadFilter:
    """`default_action` / `filter_action`: "allow", ..., or ("errno", N) / ("trace", N)."""
    __slots__ = ("default_action", "filter_action", "rules")

    def __init__(self, default_action, filter_action, rules: list[Rule]):
        self.default_action, self.filter_action, self.rules = default_action, filter_action, rules


def read(path: str) -> dict[str, ThreadFilter]:
    """The description in file `path`."""
    return parse(read_text(path), path)


def read_text(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise SeccompFilterError(f"cannot read the seccomp filter file {path}: {e.strerror}") from None


def parse(text: bytes | str, source: str = "<filter>") -> dict[str, ThreadFilter]:
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise SeccompFilterError(f"seccomp filter {source}: not valid JSON: {e}") from None
    try:
        return _filters(doc)
    except _Invalid as e:
        raise SeccompFilterError(f"seccomp filter {source}: {e}") from None


class _Invalid(Exception):
    def __init__(self, where: str, what: str):
        super().__init__(f"{where}: {what}" if where else what)


def _object(value, where: str, required: tuple, optional: tuple = ()) -> dict:
    if not isinstance(value, dict):
        raise _Invalid(where, f"expected an object, found {_kind(value)}")
    for key in value:
        if key not in required and key not in optional:
            raise _Invalid(where, f"unknown field {key!r} (expected {', '.join(required + optional)})")
    for key in required:
        if key not in value:
            raise _Invalid(where, f"missing field {key!r}")
    return value


def _kind(value) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _filters(doc) -> dict[str, ThreadFilter]:
    if not isinstance(doc, dict):
        raise _Invalid("", f"expected an object of thread categories ({', '.join(CATEGORIES)}), found {_kind(doc)}")
    for name in doc:
        if name not in CATEGORIES:
            raise _Invalid("", f"unknown thread category {name!r} (pyrite's threads are {', '.join(CATEGORIES)})")
    for name in CATEGORIES:
        if name not in doc:
            raise _Invalid("", f"missing thread category {name!r} (all of {', '.join(CATEGORIES)} are required)")
    return {name: _thread_filter(doc[name], name) for name in CATEGORIES}


def _thread_filter(value, where: str) -> ThreadFilter:
    obj = _object(value, where, ("default_action", "filter_action", "filter"))
    default = _action(obj["default_action"], f"{where}.default_action")
    action = _action(obj["filter_action"], f"{where}.filter_action")
    if default == action:
        raise _Invalid(where, f"default_action and filter_action are both {json.dumps(obj['filter_action'])}: "
                              "the filter would do nothing")
    rules = obj["filter"]
    if not isinstance(rules, list):
        raise _Invalid(f"{where}.filter", f"expected an array of rules, found {_kind(rules)}")
    return ThreadFilter(default, action, [_rule(r, f"{where}.filter[{i}]") for i, r in enumerate(rules)])


def _action(value, where: str):
    if isinstance(value, str):
        if value in ACTION_NAMES:
            return value
    elif isinstance(value, dict) and len(value) == 1:
        (name, number), = value.items()
        if name in ACTIONS_WITH_VALUE:
            if type(number) is not int or not 0 <= number <= 0xFFFF:
                raise _Invalid(where, f"{name} needs a number from 0 to 65535, found {json.dumps(number)}")
            return (name, number)
    raise _Invalid(where, f"unknown action {json.dumps(value)} (expected one of "
                          f"{', '.join(ACTION_NAMES)}, {{\"errno\": N}}, {{\"trace\": N}})")


def _rule(value, where: str) -> Rule:
    obj = _object(value, where, ("syscall",), ("args", "comment"))
    name = obj["syscall"]
    if not isinstance(name, str) or not name:
        raise _Invalid(f"{where}.syscall", f"expected a system call name, found {json.dumps(name)}")
    from .libseccomp import syscall_number
    if syscall_number(name) is None:
        raise _Invalid(f"{where}.syscall", f"unknown system call {name!r} on this architecture")
    args = obj.get("args", [])
    if not isinstance(args, list):
        raise _Invalid(f"{where}.args", f"expected an array of conditions, found {_kind(args)}")
    conditions = tuple(_condition(a, f"{where}.args[{i}]") for i, a in enumerate(args))
    seen = set()
    for i, c in enumerate(conditions):
        if c.index in seen:   # libseccomp (and BPF without a second pass) compare an argument once per rule
            raise _Invalid(f"{where}.args[{i}]", f"argument {c.index} is compared twice in one rule; "
                                                 "use a masked_eq, or two rules")
        seen.add(c.index)
    return Rule(name, conditions)


def _condition(value, where: str) -> Condition:
    obj = _object(value, where, ("index", "type", "op", "val"), ("comment",))
    index = obj["index"]
    if type(index) is not int or index not in _ARG_INDEXES:
        raise _Invalid(f"{where}.index", f"expected an argument index from 0 to 5, found {json.dumps(index)}")
    kind = obj["type"]
    if kind not in ARG_TYPES:
        raise _Invalid(f"{where}.type", f"expected \"dword\" or \"qword\", found {json.dumps(kind)}")
    op, mask = obj["op"], None
    if isinstance(op, dict) and len(op) == 1 and "masked_eq" in op:
        mask = op["masked_eq"]
        if type(mask) is not int or not 0 <= mask < _U64:
            raise _Invalid(f"{where}.op", f"masked_eq needs a 64-bit unsigned mask, found {json.dumps(mask)}")
        op = "masked_eq"
    elif op not in OPS:
        raise _Invalid(f"{where}.op", f"unknown op {json.dumps(op)} (expected one of {', '.join(OPS)}, "
                                      "{\"masked_eq\": MASK})")
    val = _value(obj["val"], f"{where}.val")
    limit = 1 << 32 if kind == "dword" else _U64
    if val >= limit or (mask is not None and mask >= limit):
        raise _Invalid(f"{where}.val", f"{val:#x} does not fit the {kind} it is compared with")
    return Condition(index, kind, op, val, mask)


def _value(val, where: str) -> int:
    if type(val) is int:
        if not 0 <= val < _U64:
            raise _Invalid(where, f"expected a 64-bit unsigned number, found {val}")
        return val
    if isinstance(val, str):
        from pyrite.kvm import ioctls
        number = getattr(ioctls, val, None) if val.startswith("KVM_") else None
        if not isinstance(number, int) or number not in ioctls.IOCTL_NAMES:
            raise _Invalid(where, f"{val!r} is not one of pyrite's KVM ioctls (pyrite.kvm.ioctls); "
                                  "other values must be numbers")
        return number
    raise _Invalid(where, f"expected a number or a KVM ioctl name, found {_kind(val)}")
