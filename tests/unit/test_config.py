"""pyrite.config: bodies decoded with serde_json's words and positions, resources validated
with Firecracker's messages.

The expected messages were recorded from Firecracker v1.12.1 given the same bodies.
"""
from __future__ import annotations

import json

import pytest

import pyrite.config as c
from pyrite.config.decode import DecodeError, Struct, decode, encode_json


def message(cls, body: bytes) -> str:
    with pytest.raises(DecodeError) as e:
        decode(body, Struct(cls))
    return e.value.describe(body)


@pytest.mark.parametrize("cls,body,expected", [
    (c.BootSource, b'{bad', "key must be a string at line 1 column 2"),
    (c.BootSource, b'{"kernel_image_path": 1}', "invalid type: integer `1`, expected a string at line 1 column 23"),
    (c.BootSource, b'{"x": 1}', "unknown field `x`, expected one of `kernel_image_path`, `initrd_path`, `boot_args` "
                                "at line 1 column 4"),
    (c.BootSource, b'{}', "missing field `kernel_image_path` at line 1 column 2"),
    (c.BootSource, b'[]', "invalid length 0, expected struct BootSourceConfig with 3 elements at line 1 column 2"),
    (c.BootSource, b'["a"]', "invalid length 1, expected struct BootSourceConfig with 3 elements at line 1 column 5"),
    (c.BootSource, b'1', "invalid type: integer `1`, expected struct BootSourceConfig at line 1 column 1"),
    (c.BootSource, b'null', "invalid type: null, expected struct BootSourceConfig at line 1 column 4"),
    (c.BootSource, b'{"kernel_image_path":"a","kernel_image_path":"b"}',
     "duplicate field `kernel_image_path` at line 1 column 44"),
    (c.BootSource, b'{"kernel_image_path":null}', "invalid type: null, expected a string at line 1 column 25"),
    (c.BootSource, b'{"kernel_image_path":"a","boot_args":null, "initrd_path": 1.5}',
     "invalid type: floating point `1.5`, expected a string at line 1 column 61"),
    (c.BootSource, b'{"kernel_image_path":"a"} x', "trailing characters at line 1 column 27"),
    (c.BootSource, b'{"kernel_image_path":"a"', "EOF while parsing an object at line 1 column 24"),
    (c.BootSource, b'{"kernel_image_path":"a",}', "trailing comma at line 1 column 26"),
    (c.BootSource, b'{"kernel_image_path" "a"}', "expected `:` at line 1 column 22"),
    (c.BootSource, b'  ', "EOF while parsing a value at line 1 column 2"),
    (c.BootSource, b'{"kernel_image_path":tru}', "expected ident at line 1 column 25"),
    (c.BootSource, b'{"kernel_image_path":"\x01"}',
     "control character (\\u0000-\\u001F) found while parsing a string at line 1 column 23"),
    (c.BootSource, b'{"kernel_image_path":"\\q"}', "invalid escape at line 1 column 24"),
    (c.BootSource, b'\xff', "expected value at line 1 column 1"),
    (c.BootSource, b'{"kernel_image_path":"\xff"}', "invalid unicode code point at line 1 column 24"),
    (c.BootSource, b'{"kernel_image_path":{}}', "invalid type: map, expected a string at line 1 column 21"),
    (c.BootSource, b'{"kernel_image_path":  {}}', "invalid type: map, expected a string at line 1 column 23"),
    (c.BootSource, b'{"kernel_image_path":[]}', "invalid type: sequence, expected a string at line 1 column 21"),
    (c.BootSource, b'{"kernel_image_path":true}', "invalid type: boolean `true`, expected a string at line 1 column 25"),
    (c.BootSource, b'{\n "kernel_image_path": 01}', "invalid number at line 2 column 24"),
    (c.BootSource, b'{"kernel_image_path": -}', "invalid number at line 1 column 24"),
    (c.BootSource, b'{"kernel_image_path": 1e400}', "number out of range at line 1 column 27"),
    (c.BootSource, b'{"kernel_image_path": NaN}', "expected value at line 1 column 23"),
    (c.BootSource, b'{"a" 1}', "unknown field `a`, expected one of `kernel_image_path`, `initrd_path`, `boot_args` "
                               "at line 1 column 5"),
    (c.BootSource, b'{"a":1 "b"}', "unknown field `a`, expected one of `kernel_image_path`, `initrd_path`, "
                                   "`boot_args` at line 1 column 4"),
    (c.BootSource, b'{1:2}', "key must be a string at line 1 column 2"),
    (c.BootSource, b'{"kernel_image_path":"\\ud800"}', "unexpected end of hex escape at line 1 column 29"),
    (c.BootSource, b'{"kernel_image_path":"\\u12"}', "invalid escape at line 1 column 28"),
    (c.MachineConfig, b'{"vcpu_count":-1,"mem_size_mib":1}',
     "invalid value: integer `-1`, expected u8 at line 1 column 16"),
    (c.MachineConfig, b'{"vcpu_count":300,"mem_size_mib":1}',
     "invalid value: integer `300`, expected u8 at line 1 column 17"),
    (c.MachineConfig, b'{"vcpu_count":1.0,"mem_size_mib":1}',
     "invalid type: floating point `1.0`, expected u8 at line 1 column 17"),
    (c.MachineConfig, b'{"vcpu_count":1e2,"mem_size_mib":1}',
     "invalid type: floating point `100.0`, expected u8 at line 1 column 17"),
    (c.MachineConfig, b'{"vcpu_count":-0,"mem_size_mib":1}',
     "invalid type: floating point `-0.0`, expected u8 at line 1 column 16"),
    (c.MachineConfig, b'{"vcpu_count":1,"mem_size_mib":99999999999999999999}',
     "invalid type: floating point `1e20`, expected usize at line 1 column 51"),
    (c.MachineConfig, b'{"vcpu_count":1,"mem_size_mib":18446744073709551616}',
     "invalid type: floating point `1.8446744073709552e19`, expected usize at line 1 column 51"),
    (c.MachineConfig, b'{"vcpu_count":1,"mem_size_mib":1, "smt": 1}',
     "invalid type: integer `1`, expected a boolean at line 1 column 42"),
    (c.MachineConfig, b'{"vcpu_count":1,"mem_size_mib":1, "huge_pages": "4M"}',
     "unknown variant `4M`, expected `None` or `2M` at line 1 column 52"),
    (c.MachineConfig, b'{"vcpu_count":1,"mem_size_mib":1, "huge_pages": 1}', "expected value at line 1 column 49"),
    (c.MachineConfig, b'{"vcpu_count":1,"mem_size_mib":1, "huge_pages": null}', "expected value at line 1 column 49"),
    (c.MachineConfig, b'{"vcpu_count":1,"mem_size_mib":1,"huge_pages":  {}}', "expected value at line 1 column 50"),
    (c.MachineConfig, b'{"vcpu_count":1,"mem_size_mib":1, "cpu_template": "X"}',
     "unknown variant `X`, expected one of `C3`, `T2`, `T2S`, `None`, `T2CL`, `T2A` at line 1 column 53"),
    (c.MachineConfig, b'{"vcpu_count":1,"mem_size_mib":1,"cpu_template":{"T2":1}}',
     "invalid type: integer `1`, expected unit at line 1 column 55"),
    (c.MachineConfig, b'{"vcpu_count":1,"mem_size_mib":1, "zz": 1}',
     "unknown field `zz`, expected one of `vcpu_count`, `mem_size_mib`, `smt`, `cpu_template`, `track_dirty_pages`, "
     "`huge_pages` at line 1 column 38"),
    (c.MachineConfig, b'{"vcpu_count":1,"mem_size_mib":1,"smt":true,"smt":false}',
     "duplicate field `smt` at line 1 column 49"),
    (c.MachineConfig, b'{"vcpu_count":1  }', "missing field `mem_size_mib` at line 1 column 18"),
    (c.MachineConfigUpdate, b'{"vcpu_count": "a"}', 'invalid type: string "a", expected u8 at line 1 column 18'),
    (c.InstanceAction, b'{"action_type": "Bogus"}',
     "unknown variant `Bogus`, expected one of `FlushMetrics`, `InstanceStart`, `SendCtrlAltDel` at line 1 column 23"),
    (c.InstanceAction, b'{"action_type":1}', "expected value at line 1 column 16"),
    (c.InstanceAction, b'{"action_type":"FlushMetrics","payload":1}',
     "unknown field `payload`, expected `action_type` at line 1 column 39"),
    (c.VmState, b'{"state": "X"}', "unknown variant `X`, expected `Paused` or `Resumed` at line 1 column 13"),
    (c.Drive, b'{"drive_id":"a","is_root_device":false,"rate_limiter":{"zz":1}}',
     "unknown field `zz`, expected `bandwidth` or `ops` at line 1 column 59"),
    (c.Drive, b'{"drive_id":"a","is_root_device":false,"rate_limiter":{"ops":{"size":1}}}',
     "missing field `refill_time` at line 1 column 71"),
    (c.Drive, b'{"drive_id":"a","is_root_device":false,"rate_limiter":"x"}',
     'invalid type: string "x", expected struct RateLimiterConfig at line 1 column 57'),
    (c.Drive, b'{"drive_id":"a","is_root_device":false,"cache_type":"X"}',
     "unknown variant `X`, expected `Unsafe` or `Writeback` at line 1 column 55"),
    (c.NetworkInterface, b'{"iface_id":"a","host_dev_name":"t","guest_mac":"zz"}',
     "The provided MAC address is invalid. at line 1 column 53"),
    (c.Vsock, b'{"guest_cid":-1,"uds_path":"x"}', "invalid value: integer `-1`, expected u32 at line 1 column 15"),
    (c.Logger, b'{"level": "Bogus"}', "Invalid LevelFilter at line 1 column 18"),
    (c.Logger, b'{"level":1}', "invalid type: integer `1`, expected a string at line 1 column 10"),
])
def test_decode_errors_match_firecracker(cls, body, expected):
    assert message(cls, body) == expected


def test_decode_values_and_defaults():
    mc = decode(b'{"vcpu_count": 2, "mem_size_mib": 256}', Struct(c.MachineConfig))
    assert (mc.vcpu_count, mc.mem_size_mib, mc.smt, mc.cpu_template, mc.huge_pages) == (2, 256, False, None, "None")
    # serde's positional form of a struct, and a unit variant written as a map
    mc = decode(b"  [1, 2]", Struct(c.MachineConfig))
    assert (mc.vcpu_count, mc.mem_size_mib) == (1, 2)
    assert decode(b'{"action_type":{"InstanceStart":null}}', Struct(c.InstanceAction)).action_type == "InstanceStart"
    assert decode(b'{"level": "debug"}', Struct(c.Logger)).level == "Debug"
    bs = decode('{"kernel_image_path": "k\\u00e9\\ud83d\\ude00\\n"}'.encode(), Struct(c.BootSource))
    assert bs.kernel_image_path == "k\u00e9\U0001F600\n"
    cpu = decode(b'{"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0","flags":0,"modifiers":'
                 b'[{"register":"ecx","bitmap":"0bxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx01"}]}],'
                 b'"msr_modifiers":[{"addr":"0x10a","bitmap":"0b1"}],"kvm_capabilities":["!121"]}', Struct(c.CpuConfig))
    bm = cpu.cpuid_modifiers[0].modifiers[0].bitmap
    assert (cpu.cpuid_modifiers[0].leaf, bm.filter, bm.value, bm.apply(0b1110)) == (1, 0b11, 0b01, 0b1101)
    assert cpu.msr_modifiers[0].addr == 0x10A


def test_nesting_is_limited_like_serde():
    deep = b"[" * 200 + b"]" * 200
    with pytest.raises(DecodeError) as e:
        decode(deep, c.models.MMDS_VALUE)
    assert e.value.message == "recursion limit exceeded"


def test_encode_json_is_serde_compact():
    value = {"a": [1, None, True, 1.5], "s": 'q"\\\n\x01\u00e9'}
    assert encode_json(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# ----------------------------------------------------------------------------- resources
def test_machine_config_rules():
    r = c.VmResources()
    for bad in (0, 33):
        with pytest.raises(c.ConfigError) as e:
            r.update_machine_config(c.MachineConfigUpdate(vcpu_count=bad))
        assert str(e.value) == ("Machine config error: The number of vCPUs must be greater than 0, less than 32 and "
                                "must be 1 or an even number if SMT is enabled.")
    with pytest.raises(c.ConfigError) as e:
        r.update_machine_config(c.MachineConfigUpdate(mem_size_mib=0))
    assert str(e.value) == ("Machine config error: The memory size (MiB) is either 0, or not a multiple of the "
                            "configured page size.")
    r.update_machine_config(c.MachineConfigUpdate(vcpu_count=4))
    r.set_machine_config(c.MachineConfig(vcpu_count=2, mem_size_mib=256))
    assert r.machine_config.to_json() == {"vcpu_count": 2, "mem_size_mib": 256, "smt": False,
                                          "track_dirty_pages": False, "huge_pages": "None"}


def test_failed_update_changes_nothing():
    r = c.VmResources()
    with pytest.raises(c.ConfigError):
        r.update_machine_config(c.MachineConfigUpdate(vcpu_count=2, mem_size_mib=0))
    assert (r.machine_config.vcpu_count, r.machine_config.mem_size_mib) == (1, 128)


def test_boot_source_files_must_open(tmp_path):
    r = c.VmResources()
    with pytest.raises(c.ConfigError) as e:
        r.set_boot_source(c.BootSource(kernel_image_path=str(tmp_path / "missing")))
    assert str(e.value) == "Boot source error: The kernel file cannot be opened: No such file or directory (os error 2)"
    kernel = tmp_path / "vmlinux"
    kernel.write_bytes(b"\x7fELF")
    with pytest.raises(c.ConfigError) as e:
        r.set_boot_source(c.BootSource(kernel_image_path=str(kernel), initrd_path=str(tmp_path / "nope")))
    assert str(e.value).startswith("Boot source error: The initrd file cannot be opened due to invalid path")
    with pytest.raises(c.ConfigError) as e:
        r.set_boot_source(c.BootSource(kernel_image_path=str(kernel), boot_args="x" * 4096))
    assert "The kernel command line is invalid" in str(e.value)
    r.set_boot_source(c.BootSource(kernel_image_path=str(kernel)))
    assert r.kernel_cmdline == c.DEFAULT_KERNEL_CMDLINE


def test_devices_not_built_yet_are_validated_then_refused():
    r = c.VmResources()
    with pytest.raises(c.ConfigError) as e:   # validation first: Firecracker's message
        r.add_drive("d", c.Drive(drive_id="d", is_root_device=True))
    assert str(e.value) == "Drive config error: Unable to create the virtio block device: Invalid block config."
    refusals = [
        lambda: r.add_drive("v", c.Drive(drive_id="v", is_root_device=False, socket="/tmp/vhost.sock")),
        lambda: r.set_balloon(c.Balloon(amount_mib=1, deflate_on_oom=True)),
        lambda: r.set_cpu_config(c.CpuConfig()),
        lambda: r.update_machine_config(c.MachineConfigUpdate(cpu_template="T2")),
        lambda: r.update_machine_config(c.MachineConfigUpdate(smt=True)),
        lambda: r.update_machine_config(c.MachineConfigUpdate(huge_pages="2M")),
    ]
    for refuse in refusals:
        with pytest.raises(c.NotSupportedYet) as e:
            refuse()
        assert str(e.value).startswith("The requested operation is not supported: pyrite does not support ")
    assert r.unsupported_in_use() == []
    assert r.to_json()["drives"] == [] and r.to_json()["vsock"] is None


def test_supported_kinds_are_one_list(monkeypatch):
    """Lifting a refusal is one edit of SUPPORTED."""
    monkeypatch.setattr(c.errors, "SUPPORTED", c.SUPPORTED | {"vsock"})
    r = c.VmResources()
    r.set_vsock(c.Vsock(guest_cid=3, uds_path="/tmp/v.sock", vsock_id="old"))
    assert r.to_json()["vsock"] == {"guest_cid": 3, "uds_path": "/tmp/v.sock"}


def test_config_file(tmp_path):
    kernel = tmp_path / "vmlinux"
    kernel.write_bytes(b"\x7fELF")
    cfg = tmp_path / "vm.json"
    cfg.write_text(json.dumps({
        "boot-source": {"kernel_image_path": str(kernel), "boot_args": "console=ttyS0"},
        "machine-config": {"vcpu_count": 2, "mem_size_mib": 256}, "drives": [],
        "logger": {"level": "Debug"}, "some-future-key": {"ignored": True}}))
    r = c.VmResources.from_config_file(cfg)
    assert (r.machine_config.vcpu_count, r.kernel_cmdline, r.logger.level) == (2, "console=ttyS0", "Debug")
    assert r.to_json()["boot-source"] == {"kernel_image_path": str(kernel), "initrd_path": None,
                                          "boot_args": "console=ttyS0"}
    assert c.VmResources.from_json(json.loads(cfg.read_text())).machine_config.mem_size_mib == 256
    cfg.write_text('{"machine-config": {"vcpu_count": 2}, "boot-source": {"kernel_image_path": "x"}}')
    with pytest.raises(c.ConfigError) as e:
        c.VmResources.from_config_file(cfg)
    assert e.value.file_message == "Invalid JSON: missing field `mem_size_mib` at line 1 column 36"
    with pytest.raises(c.ConfigError) as e:
        c.VmResources.from_config_file(tmp_path / "absent.json")
    assert "No such file or directory (os error 2)" in e.value.file_message
    data, root = tmp_path / "data.img", tmp_path / "root.img"
    data.write_bytes(bytes(512))
    root.write_bytes(bytes(512))
    cfg.write_text(json.dumps({"boot-source": {"kernel_image_path": str(kernel)},
                               "drives": [{"drive_id": "data", "is_root_device": False, "path_on_host": str(data),
                                           "is_read_only": False, "cache_type": "Writeback"},
                                          {"drive_id": "root", "is_root_device": True, "path_on_host": str(root),
                                           "is_read_only": True, "partuuid": "abcd-01",
                                           "rate_limiter": {"ops": {"size": 5, "refill_time": 100}}}],
                               "entropy": {}}))
    resources = c.VmResources.from_config_file(cfg)
    resources.check_buildable()
    assert [(d.drive_id, d.path_on_host, d.is_read_only, d.is_root_device, d.partuuid, d.cache_type)
            for d in resources.drives] == [("data", str(data), False, False, None, "Writeback"),
                                           ("root", str(root), True, True, "abcd-01", "Unsafe")]
    assert resources.drives[1].rate_limiter.ops.to_json() == {"size": 5, "one_time_burst": None, "refill_time": 100}
    assert resources.entropy is not None and resources.entropy.rate_limiter is None
    cfg.write_text(json.dumps({"boot-source": {"kernel_image_path": str(kernel)},
                               "drives": [{"drive_id": "gone", "is_root_device": False,
                                           "path_on_host": str(tmp_path / "gone.img"), "is_read_only": False}]}))
    with pytest.raises(c.ConfigError) as e:     # Firecracker opens the file when the drive is configured
        c.VmResources.from_config_file(cfg)
    assert e.value.file_message == ("Block device error: Unable to create the virtio block device: Virtio backend "
                                    f"error: Error manipulating the backing file: No such file or directory "
                                    f"(os error 2) {tmp_path / 'gone.img'}")
    cfg.write_text(json.dumps({"boot-source": {"kernel_image_path": str(kernel)},
                               "drives": [{"drive_id": "v", "is_root_device": False, "socket": "/tmp/v.sock"}]}))
    with pytest.raises(c.NotSupportedYet, match="vhost-user block devices"):
        c.VmResources.from_config_file(cfg)


def test_vm_config_matches_firecracker_shape():
    assert c.VmResources().to_json() == {
        "balloon": None, "drives": [], "boot-source": {"kernel_image_path": "", "initrd_path": None, "boot_args": None},
        "cpu-config": None, "logger": None,
        "machine-config": {"vcpu_count": 1, "mem_size_mib": 128, "smt": False, "track_dirty_pages": False,
                           "huge_pages": "None"},
        "metrics": None, "mmds-config": None, "network-interfaces": [], "vsock": None, "entropy": None,
        "pmem": [], "memory-hotplug": None}


def test_models_are_plain_records():
    a = c.MachineConfig(vcpu_count=2, mem_size_mib=64)
    assert a == c.MachineConfig(2, 64) and a != c.MachineConfig(vcpu_count=2, mem_size_mib=65)
    with pytest.raises(TypeError):
        c.BootSource()
    with pytest.raises(TypeError):
        c.BootSource(kernel_image_path="k", nonsense=1)
