"""Filter descriptions in Firecracker's seccompiler JSON format: pyrite's default file
compiles, and every kind of mistake is refused with a message naming the file and the place;
pyrite-vmm refuses a bad file before it opens its API socket."""
from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest

from helpers import default_filter
from pyrite.seccomp import CATEGORIES, SeccompFilterError, compile_filters, load_filters
from pyrite.seccomp.spec import parse


def test_default_filters_compile_to_one_program_per_category():
    programs = load_filters()
    assert sorted(programs) == sorted(CATEGORIES)
    for category, program in programs.items():
        assert program.category == category
        assert len(program.bpf) == 8 * program.instructions > 8


def test_no_default_filter_allows_open_or_openat_after_boot_except_the_api_thread():
    doc = default_filter()
    for category in ("vmm", "vcpu"):
        names = {rule["syscall"] for rule in doc[category]["filter"]}
        assert not names & {"open", "openat", "openat2", "creat", "execve", "execveat", "fork", "clone", "clone3"}, \
            category
    assert all(doc[c]["default_action"] == "trap" for c in CATEGORIES)


def test_vcpu_ioctls_are_kvm_run_and_the_crash_report_only():
    rules = [r for r in default_filter()["vcpu"]["filter"] if r["syscall"] == "ioctl"]
    assert sorted(r["args"][0]["val"] for r in rules) == ["KVM_GET_REGS", "KVM_GET_SREGS", "KVM_RUN"]
    assert all(r["args"][0]["index"] == 1 for r in rules)


def with_change(change) -> bytes:
    doc = copy.deepcopy(default_filter())
    change(doc)
    return json.dumps(doc).encode()


BAD = [
    (b"{", "seccomp filter f.json: not valid JSON"),
    (b"[]", "seccomp filter f.json: expected an object of thread categories (vmm, api, vcpu), found an array"),
    (with_change(lambda d: d.pop("vcpu")), "missing thread category 'vcpu'"),
    (with_change(lambda d: d.update(jailer=d["vmm"])), "unknown thread category 'jailer'"),
    (with_change(lambda d: d["api"].update(default_action="explode")),
     'api.default_action: unknown action "explode"'),
    (with_change(lambda d: d["api"].update(default_action="allow")),
     'api: default_action and filter_action are both "allow"'),
    (with_change(lambda d: d["vmm"].update(default_action={"errno": 70000})),
     "vmm.default_action: errno needs a number from 0 to 65535"),
    (with_change(lambda d: d["vmm"]["filter"].append({"syscall": "opne"})),
     "unknown system call 'opne' on this architecture"),
    (with_change(lambda d: d["vmm"]["filter"].append({"syscall": "read", "when": 1})),
     "unknown field 'when'"),
    (with_change(lambda d: d["vcpu"]["filter"].append(
        {"syscall": "ioctl", "args": [{"index": 6, "type": "dword", "op": "eq", "val": 1}]})),
     "args[0].index: expected an argument index from 0 to 5, found 6"),
    (with_change(lambda d: d["vcpu"]["filter"].append(
        {"syscall": "ioctl", "args": [{"index": 1, "type": "word", "op": "eq", "val": 1}]})),
     'args[0].type: expected "dword" or "qword", found "word"'),
    (with_change(lambda d: d["vcpu"]["filter"].append(
        {"syscall": "ioctl", "args": [{"index": 1, "type": "dword", "op": "equals", "val": 1}]})),
     'args[0].op: unknown op "equals"'),
    (with_change(lambda d: d["vcpu"]["filter"].append(
        {"syscall": "ioctl", "args": [{"index": 1, "type": "dword", "op": "eq", "val": "KVM_EXPLODE"}]})),
     "args[0].val: 'KVM_EXPLODE' is not one of pyrite's KVM ioctls"),
    (with_change(lambda d: d["vcpu"]["filter"].append(
        {"syscall": "ioctl", "args": [{"index": 1, "type": "dword", "op": "eq", "val": 1 << 40}]})),
     "does not fit the dword it is compared with"),
    (with_change(lambda d: d["vcpu"]["filter"].append(
        {"syscall": "ioctl", "args": [{"index": 1, "type": "dword", "op": "eq", "val": 1},
                                      {"index": 1, "type": "dword", "op": "eq", "val": 2}]})),
     "argument 1 is compared twice in one rule"),
    (with_change(lambda d: d["vcpu"].pop("filter")), "vcpu: missing field 'filter'"),
]


@pytest.mark.parametrize("text,message", BAD, ids=[m[:40] for _, m in BAD])
def test_bad_descriptions_are_refused_with_where_and_why(text, message):
    with pytest.raises(SeccompFilterError) as e:
        parse(text, "f.json")
    assert message in str(e.value)
    assert str(e.value).startswith("seccomp filter f.json: ")


def test_symbolic_and_numeric_ioctls_compile_to_the_same_program():
    from pyrite.kvm import ioctls
    symbolic = default_filter()
    numeric = copy.deepcopy(symbolic)
    for thread in numeric.values():
        for rule in thread["filter"]:
            for arg in rule.get("args", []):
                if isinstance(arg["val"], str):
                    arg["val"] = getattr(ioctls, arg["val"])
    a = compile_filters(parse(json.dumps(symbolic)))
    b = compile_filters(parse(json.dumps(numeric)))
    assert all(a[c].bpf == b[c].bpf for c in CATEGORIES)


@pytest.mark.parametrize("content,message", [
    (None, "cannot read the seccomp filter file"),
    (b'{"vmm": {}}', "missing thread category 'api'"),
])
def test_pyrite_vmm_refuses_a_bad_filter_file_before_its_socket(tmp_path, content, message):
    path = tmp_path / "filter.json"
    if content is not None:
        path.write_bytes(content)
    sock = tmp_path / "api.sock"
    r = subprocess.run([sys.executable, "-m", "pyrite.api.cli", "--api-sock", str(sock), "--seccomp-filter",
                        str(path)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, r
    assert "Seccomp error: " in r.stdout and message in r.stdout and str(path) in r.stdout, r.stdout
    assert "Firecracker exiting with error. exit_code=1" in r.stdout
    assert not sock.exists()
