"""pyrite.config.decode, pinned: ~2,000 malformed and edge bodies replayed against the outputs
(decoded value, or serde_json's message with its position) that the decoder gave when the
fixture was recorded. Refactors of the decoder must keep every one of them byte for byte.

The fixture holds the bodies themselves, so the replay does not depend on the generator below.
Regenerate (only when a change of output is intended and checked against Firecracker):

    .venv/bin/python tests/unit/test_decode_characterization.py --record
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pyrite.config as c
from pyrite.config import resources as r
from pyrite.config.decode import ANY, DecodeError, Seq, Struct, decode
from pyrite.config.errors import ConfigError
from pyrite.config.models import Model

FIXTURE = Path(__file__).with_name("test_decode_characterization.json")

TARGETS = {
    "BootSource": Struct(c.BootSource),
    "MachineConfig": Struct(c.MachineConfig),
    "Drive": Struct(c.Drive),
    "NetworkInterface": Struct(c.NetworkInterface),
    "Vsock": Struct(c.Vsock),
    "CpuConfig": Struct(c.CpuConfig),
    "Logger": Struct(c.Logger),
    "SnapshotLoad": Struct(c.SnapshotLoad),
    "Drives": Seq(Struct(c.Drive)),
    "ANY": ANY,
}


def _plain(value):
    """A decoded value as JSON text that keeps bool/int/float and model classes apart."""
    def walk(v):
        if isinstance(v, Model):
            return {type(v).__name__: {f.name: walk(getattr(v, f.name)) for f in v.SPEC.fields}}
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, dict):
            return {"dict": [[k, walk(x)] for k, x in v.items()]}
        if isinstance(v, bool) or v is None:
            return v
        if isinstance(v, int):
            return {"int": str(v)}
        if isinstance(v, float):
            return {"float": repr(v)}
        if isinstance(v, str):
            return v
        return {type(v).__name__: repr(v)}
    return json.dumps(walk(value), ensure_ascii=True)


def run(target: str, body: bytes) -> str:
    if target == "config":
        # the config file's decoding step (values and positions), then what
        # VmResources.from_json_bytes makes of the file: that JSON fault, or which resource refused
        try:
            decoded = "ok " + _plain(r._decode_config_file(body))
        except DecodeError as e:
            decoded = "error " + e.describe(body)
        try:
            r.VmResources.from_json_bytes(body)
            built = "ok"
        except ConfigError as e:
            built = "refused " + e.resource if e.resource != "json" else (
                "json fault" if "error " + e.detail == decoded else "json " + e.detail)
        return f"{decoded} | {built}"
    try:
        return "ok " + _plain(decode(body, TARGETS[target]))
    except DecodeError as e:
        return "error " + e.describe(body)


def test_every_recorded_body_decodes_as_recorded():
    cases = json.loads(FIXTURE.read_text())
    mismatches, count = [], 0
    for target, text, expected, *prefixes in cases:
        body = text.encode("latin-1")
        # an entry may also hold the outputs for the body cut short at every offset
        cuts = [body[:k] for k in range(len(body))] if prefixes else []
        for cut, want in [(body, expected), *zip(cuts, *prefixes)]:
            count += 1
            got = run(target, cut)
            if got != want:
                mismatches.append((target, cut, want, got))
    assert count > 2000
    assert not mismatches, "\n".join(f"{t} {b!r}\n  want {e}\n  got  {g}" for t, b, e, g in mismatches[:10])


# ----------------------------------------------------------------------------- the generator
SEEDS = {
    "BootSource": [
        b'{"kernel_image_path":"/k","boot_args":"console=ttyS0","initrd_path":null}',
        b'["/k", null, "a"]',
        b'{"kernel_image_path":"a\\u00e9\\ud83d\\ude00\\n"}',
    ],
    "MachineConfig": [
        b'{"vcpu_count":2,"mem_size_mib":256,"smt":false,"cpu_template":"T2","huge_pages":"2M"}',
        b'{"vcpu_count":1,"mem_size_mib":128,"cpu_template":{"C3":null}}',
        b'[1, 128]',
    ],
    "Drive": [
        b'{"drive_id":"root","path_on_host":"/d","is_root_device":true,"is_read_only":false,'
        b'"rate_limiter":{"bandwidth":{"size":1,"refill_time":2},"ops":null},"io_engine":"Sync"}',
    ],
    "NetworkInterface": [
        b'{"iface_id":"eth0","host_dev_name":"tap0","guest_mac":"06:00:00:00:00:01"}',
    ],
    "Vsock": [b'{"guest_cid":3,"uds_path":"/v.sock"}'],
    "CpuConfig": [
        b'{"kvm_capabilities":["!56"],"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0","flags":0,'
        b'"modifiers":[{"register":"eax","bitmap":"0bx1"}]}],"msr_modifiers":[]}',
    ],
    "Logger": [b'{"log_path":"/l","level":"Warning","show_level":true}'],
    "SnapshotLoad": [
        b'{"snapshot_path":"/s","mem_backend":{"backend_path":"/m","backend_type":"File"},'
        b'"network_overrides":[{"iface_id":"a","host_dev_name":"b"}]}',
    ],
    "Drives": [b'[{"drive_id":"a","path_on_host":"/a","is_root_device":false},[]]'],
    "ANY": [b'{"a":[1,-2,3.5e1,true,false,null,{"b":{}}],"a":"x","c":[[]]}'],
    "config": [
        b'{"boot-source":{"kernel_image_path":"/nonexistent/k"},"drives":[],"x":{"y":[1,{}]},'
        b'"machine-config":{"vcpu_count":1,"mem_size_mib":64}}',
        b'{"drives":[{"drive_id":"r","path_on_host":"/d","is_root_device":true}],"boot-source":["/k"],'
        b'"logger":null,"cpu-config":"/nonexistent/c"}',
    ],
}

EXTRA = {
    "BootSource": [
        b'', b' ', b'{', b'}', b'[', b']', b'{}', b'[]', b'{"kernel_image_path":"a"}',
        b'{"kernel_image_path":"a",}', b'{"kernel_image_path":"a",,}', b'{,}', b'{"kernel_image_path":"a"}}',
        b'{"kernel_image_path":"a","kernel_image_path":"a"}', b'{"kernel_image_path":"a","x":1,"y":2}',
        b'{"x":', b'{"kernel_image_path" :\t"a" \n}', b'\n\n {"kernel_image_path":\r\n"a"}\n',
        b'{"kernel_image_path":1e999}', b'{"kernel_image_path":-0}', b'{"kernel_image_path":"\\ud800"}',
        b'{"kernel_image_path":"\\ud800\\u0041"}', b'{"kernel_image_path":"\\udc00"}', b'{"kernel_image_path":"\\u12"}',
        b'["a",', b'["a",]', b'["a" "b"]', b'["a",null,null,null]', b'["a",null,null,]', b'["a",null,null', b'[1]',
        b'{"kernel_image_path":"a"} ', b'{"kernel_image_path":"a"},', b'[' * 200, b'{"boot_args":' * 130,
    ],
    "MachineConfig": [
        b'{"vcpu_count":256,"mem_size_mib":1}', b'{"vcpu_count":-1,"mem_size_mib":1}',
        b'{"vcpu_count":1.0,"mem_size_mib":1}', b'{"vcpu_count":1,"mem_size_mib":18446744073709551616}',
        b'{"vcpu_count":1,"mem_size_mib":18446744073709551615}', b'{"vcpu_count":1,"mem_size_mib":-9223372036854775809}',
        b'{"vcpu_count":1,"mem_size_mib":1e2}', b'{"vcpu_count":1,"mem_size_mib":1E+2}', b'{"vcpu_count":1,"mem_size_mib":1.}',
        b'{"vcpu_count":1,"mem_size_mib":1,"cpu_template":"X"}', b'{"vcpu_count":1,"mem_size_mib":1,"cpu_template":{"X":null}}',
        b'{"vcpu_count":1,"mem_size_mib":1,"cpu_template":{"C3":1}}', b'{"vcpu_count":1,"mem_size_mib":1,"cpu_template":{"C3":null,}}',
        b'{"vcpu_count":1,"mem_size_mib":1,"cpu_template":{1:null}}', b'{"vcpu_count":1,"mem_size_mib":1,"cpu_template":{}}',
        b'{"vcpu_count":1,"mem_size_mib":1,"cpu_template":{"C3"}}', b'{"vcpu_count":1,"mem_size_mib":1,"cpu_template":{"C3":nul}}',
        b'{"vcpu_count":1,"mem_size_mib":1,"cpu_template":1}', b'{"vcpu_count":1,"mem_size_mib":1,"cpu_template":[]}',
        b'{"vcpu_count":1,"mem_size_mib":1,"smt":"yes"}', b'{"vcpu_count":1,"mem_size_mib":1,"smt":tru}',
        b'{"vcpu_count":1}', b'{"mem_size_mib":1}', b'{"vcpu_count":1,"mem_size_mib":1,"huge_pages":null}',
        b'[1]', b'[1,2,false,null,false,"None"]', b'[1,2,false,null,false,"None",1]', b'[1,2,]',
    ],
    "Drive": [
        b'{"drive_id":"a","path_on_host":"/a","is_root_device":false,"rate_limiter":{"bandwidth":{"size":1}}}',
        b'{"drive_id":"a","path_on_host":"/a","is_root_device":false,"rate_limiter":{"x":1}}',
        b'{"drive_id":"a","path_on_host":"/a","is_root_device":false,"rate_limiter":[null,{"size":1,"refill_time":1}]}',
        b'{"drive_id":"a","is_root_device":false,"cache_type":"Bad"}',
    ],
    "NetworkInterface": [
        b'{"iface_id":"a","host_dev_name":"b","guest_mac":"zz"}', b'{"iface_id":"a","host_dev_name":"b","guest_mac":1}',
    ],
    "CpuConfig": [
        b'{"kvm_capabilities":["x"]}', b'{"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0","flags":0,"modifiers":[{"register":"eax","bitmap":"1"}]}]}',
        b'{"msr_modifiers":[{"addr":"0x1ffffffff","bitmap":"0b1"}]}', b'{}',
    ],
    "Logger": [b'{"level":"Loud"}', b'{"level":1}', b'{"module":null,"module":null}'],
    "Drives": [b'[]', b'[,]', b'[{}]', b'[1]', b'[null]', b'[{"drive_id":"a"} {}]', b'[[],]'],
    "ANY": [
        b'', b'1', b'-0', b'1.5', b'"x"', b'[]', b'{}', b'[1,]', b'{"a":1,}', b'{"a"}', b'{"a":}', b'{a:1}', b'[1 2]',
        b'{"a":1 "b":2}', b'nul', b'truex', b'[' * 129, b'[' * 128 + b']' * 128, b'{"a":' * 128 + b'1' + b'}' * 128,
        b'0.1e-400', b'1e309', b'18446744073709551616', b'-9223372036854775808', b'-9223372036854775809',
        b'"\\u0000\\"\\\\\\/\\b\\f\\n\\r\\t"', b'"\xe9"', b'  \n 1 \n', b'1 2', b'[]]',
    ],
    "config": [
        b'', b'[]', b'1', b'{}', b'{"boot-source":{"kernel_image_path":"/k"}}', b'{"boot-source":{}}',
        b'{"boot-source":{"kernel_image_path":"/k"},}', b'{"boot-source":{"kernel_image_path":"/k"} x',
        b'{"boot-source":{"kernel_image_path":"/k"},"boot-source":1}', b'{"x":1,"x":2}', b'{"x":[1,}',
        b'{"boot-source":{"kernel_image_path":"/k"},"drives":null}', b'{"boot-source":{"kernel_image_path":"/k"},"vsock":{}}',
        b'{"boot-source":{"kernel_image_path":"/k"},"network-interfaces":[{"iface_id":"a","host_dev_name":"t","x":1}]}',
        b'{"boot-source":{"kernel_image_path":"/k"},"machine-config":{"vcpu_count":0,"mem_size_mib":1}}',
        b'{"boot-source":{"kernel_image_path":"/k"},"balloon":{"amount_mib":1,"deflate_on_oom":false}}',
        b'{"boot-source":{"kernel_image_path":"/k"},"mmds-config":{"network_interfaces":[]},"serial":{}}',
        b'{"boot-source":{"kernel_image_path":"/k"},"cpu-config":1}', b'{"boot-source":{"kernel_image_path":"/k"}}}',
        b'{"boot-source" {"kernel_image_path":"/k"}}', b'{"boot-source":{"kernel_image_path":"/k"} "drives":[]}',
        b'{"boot-source":{"kernel_image_path":"/k"},"drives":[],"drives":[]}', b'{1:2}', b'{"x":1,',
        b'{"x":' + b'[' * 128 + b']' * 128 + b'}', b'{"x":' + b'[' * 129 + b']' * 129 + b'}',
    ],
}


def _variants(seed: bytes):
    for i, ch in enumerate(seed):
        if ch in b'}]':  # a trailing comma before each close
            yield seed[:i] + b"," + seed[i:]
        if ch in b'{[:,':  # whitespace of every kind around the structure
            yield seed[:i] + b" \n\t\r" + seed[i:i + 1] + b"\n " + seed[i + 1:]
        if ch in b'0123456789':
            yield seed[:i] + b"-" + seed[i:]
            yield seed[:i] + b"1e999" + seed[i + 1:]
        if ch == 0x22:  # a quote: strings of the wrong type and broken strings
            yield seed[:i] + b"1" + seed[i:]
            yield seed[:i] + b"\x01" + seed[i + 1:]
    yield seed + b" trailing"
    yield seed.replace(b'":', b'":["', 1)
    yield seed.replace(b'{"', b'{"unknown":{"a":[1]},"', 1)
    if seed.startswith(b"{"):
        first_member = seed[1:].split(b",", 1)[0]
        yield b"{" + first_member + b"," + seed[1:]  # a duplicate key
    yield b"[" + seed + b"]"


def generate() -> list:
    cases = []
    for target in [*TARGETS, "config"]:
        seen = set()
        for seed in SEEDS.get(target, []):  # each seed also truncated at every offset
            seen.add(seed)
            cases.append([target, seed.decode("latin-1"), run(target, seed),
                          [run(target, seed[:k]) for k in range(len(seed))]])
        for body in [b for seed in SEEDS.get(target, []) for b in _variants(seed)] + EXTRA.get(target, []):
            if body not in seen:
                seen.add(body)
                cases.append([target, body.decode("latin-1"), run(target, body)])
    return cases


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
    FIXTURE.write_text("[\n" + ",\n".join(json.dumps(case) for case in generate()) + "\n]\n")
    print(f"{FIXTURE}: recorded")
