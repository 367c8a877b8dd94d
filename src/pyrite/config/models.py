"""Typed models of Firecracker's API resources, one dataclass per request body.

Each class lists its fields in the order of Firecracker's Rust struct (`SPEC`), which fixes
how bodies are read (see `decode`) and how `GET /vm/config` writes them back (`to_json`).
Checks that need more than one field, or the host, live in `VmResources`; checks of a
single value (a MAC address, a bitmap) happen while decoding, as serde does them.
"""
from __future__ import annotations

from .decode import (ANY, BOOL, PATH, REQUIRED, STR, U8, U16, U32, U64, USIZE, Custom, Enum, F, Opt,
                     Seq, Struct, StructSpec)
from .levels import LOG_LEVELS, parse_level  # noqa: F401  (LOG_LEVELS: part of this module's names)


class Model:
    """A plain typed record whose fields are its SPEC's, in Rust order.

    Built from keywords (or positionally, in SPEC order); a field not given takes its serde
    default, else the class attribute of that name (Python-side defaults such as
    MachineConfig's 1 vCPU / 128 MiB), else it is missing. Not a dataclass only because
    `dataclasses` costs ~10 ms of import time on the way to the API's first answer.

    Serialization: fields in SPEC order; None fields named in OMIT_IF_NONE are left out,
    HIDDEN fields never appear (as serde's skip_serializing)."""
    SPEC: StructSpec
    OMIT_IF_NONE: frozenset = frozenset()
    HIDDEN: frozenset = frozenset()

    def __init__(self, *args, **kwargs):
        fields = self.SPEC.fields
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__} takes at most {len(fields)} positional arguments")
        for f, v in zip(fields, args):
            if f.name in kwargs:
                raise TypeError(f"{type(self).__name__}: {f.name} given twice")
            kwargs[f.name] = v
        for f in fields:
            if f.name in kwargs:
                value = kwargs.pop(f.name)
            else:
                value = f.missing_value()
                if value is REQUIRED:
                    value = getattr(type(self), f.name, REQUIRED)
                if value is REQUIRED:
                    raise TypeError(f"{type(self).__name__}: missing field {f.name!r}")
            setattr(self, f.name, value)
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unknown field(s) {', '.join(sorted(kwargs))}")

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and all(
            getattr(self, f.name) == getattr(other, f.name) for f in self.SPEC.fields)

    __hash__ = None

    def __repr__(self) -> str:
        inner = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in self.SPEC.fields)
        return f"{type(self).__name__}({inner})"

    def to_json(self) -> dict:
        out: dict = {}
        for f in self.SPEC.fields:
            if f.name in self.HIDDEN:
                continue
            value = getattr(self, f.name)
            if value is None and f.name in self.OMIT_IF_NONE:
                continue
            out[f.name] = _to_json(value)
        return out


def _to_json(value):
    if isinstance(value, Model):
        return value.to_json()
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    if isinstance(value, MacAddr):
        return str(value)
    return value


# ----------------------------------------------------------------------------- value parsers
class MacAddr(str):
    """A MAC address "aa:bb:cc:dd:ee:ff" (Firecracker's MacAddr)."""


def mac_address(text: str) -> MacAddr:
    """A MacAddr from "aa:bb:cc:dd:ee:ff"; ValueError with Firecracker's message otherwise."""
    parts = text.split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p) for p in parts):
        raise ValueError("The provided MAC address is invalid.")
    return MacAddr(text)


def _ipv4(text: str) -> str:
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isdigit() and p.isascii() and len(p) <= 3 and int(p) <= 255
                                  and (p == "0" or not p.startswith("0")) for p in parts):
        raise ValueError("invalid IPv4 address syntax")
    return text




def parse_number_string(text: str, what: str) -> int:
    """A CPU template number: "0x1f", "0b101" or decimal "31" (the swagger allows all three)."""
    t = text.replace("_", "")
    try:
        if t[:2] in ("0x", "0X"):
            return int(t[2:], 16)
        if t[:2] in ("0b", "0B"):
            return int(t[2:], 2)
        return int(t, 10)
    except ValueError:
        raise ValueError(f"Failed to parse string [{text}] as a number for {what}.") from None



class Bitmap:
    """A CPU template bitmap "0b" + one char per bit from the top: '1' set, '0' clear, 'x' keep."""
    __slots__ = ("filter", "value", "width")

    def __init__(self, filter: int, value: int, width: int):
        self.filter = filter   # bits to change
        self.value = value     # their new values
        self.width = width

    def __eq__(self, other) -> bool:
        return isinstance(other, Bitmap) and (self.filter, self.value, self.width) == (other.filter, other.value, other.width)

    def __repr__(self) -> str:
        return f"Bitmap(filter={self.filter:#x}, value={self.value:#x}, width={self.width})"

    def apply(self, original: int) -> int:
        return (original & ~self.filter) | (self.value & self.filter)


def _bitmap(width: int):
    def parse(text: str) -> Bitmap:
        body = text.replace("_", "")
        if not body.startswith("0b"):
            raise ValueError(f"Invalid bitmap [{text}]: it must start with '0b'.")
        bits = body[2:]
        if not bits or len(bits) > width or any(c not in "01x" for c in bits):
            raise ValueError(f"Invalid bitmap [{text}]: expected up to {width} characters of '0', '1' or 'x' "
                             "after '0b'.")
        filt = value = 0
        for c in bits:
            filt, value = filt << 1, value << 1
            if c != "x":
                filt |= 1
                value |= c == "1"
        return Bitmap(filt, value, width)
    return parse


def _u32_string(what: str):
    def parse(text: str) -> int:
        v = parse_number_string(text, what)
        if not 0 <= v <= 0xFFFF_FFFF:
            raise ValueError(f"Value [{text}] of {what} does not fit in 32 bits.")
        return v
    return parse


def _kvm_capability(text: str) -> str:
    number = text[1:] if text.startswith("!") else text
    if not number.isdigit() or not number.isascii():
        raise ValueError(f"Invalid KVM capability [{text}]: expected a decimal number, optionally prefixed with '!'.")
    return text


# ----------------------------------------------------------------------------- shared parts
class TokenBucket(Model):
    size: int
    refill_time: int
    one_time_burst: int | None = None
    SPEC = StructSpec("TokenBucketConfig", (F("size", U64), F("one_time_burst", Opt(U64)), F("refill_time", U64)))


class RateLimiter(Model):
    bandwidth: TokenBucket | None = None
    ops: TokenBucket | None = None
    SPEC = StructSpec("RateLimiterConfig", (F("bandwidth", Opt(Struct(TokenBucket))),
                                            F("ops", Opt(Struct(TokenBucket)))))


_RATE_LIMITER = Opt(Struct(RateLimiter))


# ----------------------------------------------------------------------------- machine
CPU_TEMPLATES = ("C3", "T2", "T2S", "None", "T2CL", "T2A")
HUGE_PAGES = ("None", "2M")


class MachineConfig(Model):
    vcpu_count: int = 1
    mem_size_mib: int = 128
    smt: bool = False
    cpu_template: str | None = None
    track_dirty_pages: bool = False
    huge_pages: str = "None"
    SPEC = StructSpec("MachineConfig", (
        F("vcpu_count", U8), F("mem_size_mib", USIZE), F("smt", BOOL, False),
        F("cpu_template", Opt(Enum("StaticCpuTemplate", CPU_TEMPLATES)), None),
        F("track_dirty_pages", BOOL, False), F("huge_pages", Enum("HugePageConfig", HUGE_PAGES), "None")))
    OMIT_IF_NONE = frozenset({"cpu_template"})


class MachineConfigUpdate(Model):
    """PATCH /machine-config: every field optional, at least one present."""
    vcpu_count: int | None = None
    mem_size_mib: int | None = None
    smt: bool | None = None
    cpu_template: str | None = None
    track_dirty_pages: bool | None = None
    huge_pages: str | None = None
    SPEC = StructSpec("MachineConfigUpdate", (
        F("vcpu_count", Opt(U8)), F("mem_size_mib", Opt(USIZE)), F("smt", Opt(BOOL)),
        F("cpu_template", Opt(Enum("StaticCpuTemplate", CPU_TEMPLATES))),
        F("track_dirty_pages", Opt(BOOL)), F("huge_pages", Opt(Enum("HugePageConfig", HUGE_PAGES)))))

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in self.SPEC.fields)


# The command line `pyrite run` and pyrite.MicroVM give a kernel by default: the serial
# console is the terminal (Firecracker's API default is DEFAULT_KERNEL_CMDLINE in resources).
CONSOLE_CMDLINE = "console=ttyS0 reboot=k panic=1 pci=off"


class BootSource(Model):
    kernel_image_path: str
    initrd_path: str | None = None
    boot_args: str | None = None
    SPEC = StructSpec("BootSourceConfig", (F("kernel_image_path", STR), F("initrd_path", Opt(STR)),
                                           F("boot_args", Opt(STR))))


# --- custom CPU templates (x86_64 form of Firecracker's CustomCpuTemplate)
class CpuidRegisterModifier(Model):
    register: str
    bitmap: Bitmap
    SPEC = StructSpec("CpuidRegisterModifier", (
        F("register", Enum("CpuidRegister", ("eax", "ebx", "ecx", "edx"))),
        F("bitmap", Custom(STR, _bitmap(32)))))

    def to_json(self) -> dict:
        return {"register": self.register, "bitmap": _bitmap_text(self.bitmap)}


class CpuidLeafModifier(Model):
    leaf: int
    subleaf: int
    flags: int
    modifiers: list[CpuidRegisterModifier]
    SPEC = StructSpec("CpuidLeafModifier", (
        F("leaf", Custom(STR, _u32_string("leaf"))), F("subleaf", Custom(STR, _u32_string("subleaf"))),
        F("flags", U32), F("modifiers", Seq(Struct(CpuidRegisterModifier)))))

    def to_json(self) -> dict:
        return {"leaf": hex(self.leaf), "subleaf": hex(self.subleaf), "flags": self.flags,
                "modifiers": [m.to_json() for m in self.modifiers]}


class MsrModifier(Model):
    addr: int
    bitmap: Bitmap
    SPEC = StructSpec("RegisterModifier", (F("addr", Custom(STR, _u32_string("addr"))),
                                           F("bitmap", Custom(STR, _bitmap(64)))))

    def to_json(self) -> dict:
        return {"addr": hex(self.addr), "bitmap": _bitmap_text(self.bitmap)}


def _bitmap_text(b: Bitmap) -> str:
    return "0b" + "".join(("1" if b.value >> i & 1 else "0") if b.filter >> i & 1 else "x"
                          for i in reversed(range(b.width)))


class CpuConfig(Model):
    kvm_capabilities: list[str]
    cpuid_modifiers: list[CpuidLeafModifier]
    msr_modifiers: list[MsrModifier]
    SPEC = StructSpec("CustomCpuTemplate", (
        F("kvm_capabilities", Seq(Custom(STR, _kvm_capability)), default_factory=list),
        F("cpuid_modifiers", Seq(Struct(CpuidLeafModifier)), default_factory=list),
        F("msr_modifiers", Seq(Struct(MsrModifier)), default_factory=list)))


# ----------------------------------------------------------------------------- devices
class Drive(Model):
    drive_id: str
    is_root_device: bool
    partuuid: str | None = None
    cache_type: str = "Unsafe"
    is_read_only: bool | None = None
    path_on_host: str | None = None
    rate_limiter: RateLimiter | None = None
    io_engine: str | None = None
    socket: str | None = None
    SPEC = StructSpec("BlockDeviceConfig", (
        F("drive_id", STR), F("partuuid", Opt(STR)), F("is_root_device", BOOL),
        F("cache_type", Enum("CacheType", ("Unsafe", "Writeback")), "Unsafe"),
        F("is_read_only", Opt(BOOL)), F("path_on_host", Opt(STR)), F("rate_limiter", _RATE_LIMITER),
        F("io_engine", Opt(Enum("FileEngineType", ("Async", "Sync")))), F("socket", Opt(STR))))


    @classmethod
    def from_path(cls, drive_id: str, path: str, read_only: bool = False, root: bool = False) -> "Drive":
        """A drive over a raw image file as `pyrite run --drive` and pyrite.MicroVM make it:
        cache_type Writeback, so the guest's flushes reach the disk."""
        return cls(drive_id=drive_id, path_on_host=path, is_read_only=read_only, is_root_device=root,
                   cache_type="Writeback")


class DriveUpdate(Model):
    drive_id: str
    path_on_host: str | None = None
    rate_limiter: RateLimiter | None = None
    SPEC = StructSpec("BlockDeviceUpdateConfig", (F("drive_id", STR), F("path_on_host", Opt(STR)),
                                                  F("rate_limiter", _RATE_LIMITER)))


class NetworkInterface(Model):
    iface_id: str
    host_dev_name: str
    guest_mac: MacAddr | None = None
    rx_rate_limiter: RateLimiter | None = None
    tx_rate_limiter: RateLimiter | None = None
    mtu: int | None = None
    SPEC = StructSpec("NetworkInterfaceConfig", (
        F("iface_id", STR), F("host_dev_name", STR), F("guest_mac", Opt(Custom(STR, mac_address))),
        F("rx_rate_limiter", _RATE_LIMITER), F("tx_rate_limiter", _RATE_LIMITER), F("mtu", Opt(U16))))
    OMIT_IF_NONE = frozenset({"mtu"})


class NetworkInterfaceUpdate(Model):
    iface_id: str
    rx_rate_limiter: RateLimiter | None = None
    tx_rate_limiter: RateLimiter | None = None
    SPEC = StructSpec("NetworkInterfaceUpdateConfig", (F("iface_id", STR), F("rx_rate_limiter", _RATE_LIMITER),
                                                       F("tx_rate_limiter", _RATE_LIMITER)))


class Vsock(Model):
    guest_cid: int
    uds_path: str
    vsock_id: str | None = None
    SPEC = StructSpec("VsockDeviceConfig", (F("vsock_id", Opt(STR)), F("guest_cid", U32), F("uds_path", STR)))
    HIDDEN = frozenset({"vsock_id"})


class Entropy(Model):
    rate_limiter: RateLimiter | None = None
    SPEC = StructSpec("EntropyDeviceConfig", (F("rate_limiter", _RATE_LIMITER),))


class Balloon(Model):
    amount_mib: int
    deflate_on_oom: bool
    stats_polling_interval_s: int = 0
    free_page_hinting: bool = False
    free_page_reporting: bool = False
    SPEC = StructSpec("BalloonDeviceConfig", (
        F("amount_mib", U32), F("deflate_on_oom", BOOL), F("stats_polling_interval_s", U16, 0),
        F("free_page_hinting", BOOL, False), F("free_page_reporting", BOOL, False)))


class BalloonUpdate(Model):
    amount_mib: int
    SPEC = StructSpec("BalloonUpdateConfig", (F("amount_mib", U32),))


class BalloonStatsUpdate(Model):
    stats_polling_interval_s: int
    SPEC = StructSpec("BalloonUpdateStatsConfig", (F("stats_polling_interval_s", U16),))


class BalloonStartHinting(Model):
    acknowledge_on_stop: bool = False
    SPEC = StructSpec("StartHintingCmd", (F("acknowledge_on_stop", BOOL, False),))


class Pmem(Model):
    id: str
    path_on_host: str
    root_device: bool = False
    read_only: bool = False
    rate_limiter: RateLimiter | None = None
    SPEC = StructSpec("PmemConfig", (F("id", STR), F("path_on_host", STR), F("root_device", BOOL, False),
                                     F("read_only", BOOL, False), F("rate_limiter", _RATE_LIMITER)))
    OMIT_IF_NONE = frozenset({"rate_limiter"})


class PmemUpdate(Model):
    id: str
    rate_limiter: RateLimiter | None = None
    SPEC = StructSpec("PmemUpdateConfig", (F("id", STR), F("rate_limiter", _RATE_LIMITER)))


class MemoryHotplug(Model):
    total_size_mib: int
    block_size_mib: int = 2
    slot_size_mib: int = 128
    SPEC = StructSpec("MemoryHotplugConfig", (F("total_size_mib", USIZE), F("block_size_mib", USIZE, 2),
                                              F("slot_size_mib", USIZE, 128)))


class MemoryHotplugSizeUpdate(Model):
    requested_size_mib: int
    SPEC = StructSpec("MemoryHotplugSizeUpdate", (F("requested_size_mib", USIZE),))


class Serial(Model):
    serial_out_path: str | None = None
    rate_limiter: TokenBucket | None = None
    SPEC = StructSpec("SerialConfig", (F("serial_out_path", Opt(PATH)), F("rate_limiter", Opt(Struct(TokenBucket)))))


# ----------------------------------------------------------------------------- observability
class Logger(Model):
    log_path: str | None = None
    level: str | None = None
    show_level: bool | None = None
    show_log_origin: bool | None = None
    module: str | None = None
    SPEC = StructSpec("LoggerConfig", (
        F("log_path", Opt(PATH)), F("level", Opt(Custom(STR, parse_level))), F("show_level", Opt(BOOL)),
        F("show_log_origin", Opt(BOOL)), F("module", Opt(STR))))


class Metrics(Model):
    metrics_path: str
    SPEC = StructSpec("MetricsConfig", (F("metrics_path", PATH),))


class MmdsConfig(Model):
    network_interfaces: list[str]
    version: str = "V1"
    ipv4_address: str | None = None
    imds_compat: bool = False
    SPEC = StructSpec("MmdsConfig", (
        F("version", Enum("MmdsVersion", ("V1", "V2")), "V1"), F("network_interfaces", Seq(STR)),
        F("ipv4_address", Opt(Custom(STR, _ipv4))), F("imds_compat", BOOL, False)))


# ----------------------------------------------------------------------------- actions, snapshots
ACTION_TYPES = ("FlushMetrics", "InstanceStart", "SendCtrlAltDel")


class InstanceAction(Model):
    action_type: str
    SPEC = StructSpec("ActionBody", (F("action_type", Enum("ActionType", ACTION_TYPES)),))


class VmState(Model):
    state: str
    SPEC = StructSpec("Vm", (F("state", Enum("VmState", ("Paused", "Resumed"))),))


class SnapshotCreate(Model):
    snapshot_path: str
    mem_file_path: str
    snapshot_type: str = "Full"
    SPEC = StructSpec("CreateSnapshotParams", (
        F("snapshot_type", Enum("SnapshotType", ("Full", "Diff")), "Full"), F("snapshot_path", PATH),
        F("mem_file_path", PATH)))


class MemoryBackend(Model):
    backend_type: str
    backend_path: str
    SPEC = StructSpec("MemBackendConfig", (F("backend_path", PATH),
                                           F("backend_type", Enum("MemBackendType", ("File", "Uffd")))))


class NetworkOverride(Model):
    iface_id: str
    host_dev_name: str
    SPEC = StructSpec("NetworkOverride", (F("iface_id", STR), F("host_dev_name", STR)))


class VsockOverride(Model):
    uds_path: str
    SPEC = StructSpec("VsockOverride", (F("uds_path", STR),))


class SnapshotLoad(Model):
    snapshot_path: str
    mem_file_path: str | None = None
    mem_backend: MemoryBackend | None = None
    enable_diff_snapshots: bool = False
    track_dirty_pages: bool = False
    resume_vm: bool = False
    network_overrides: list[NetworkOverride]
    vsock_override: VsockOverride | None = None
    clock_realtime: bool = False
    SPEC = StructSpec("LoadSnapshotConfig", (
        F("snapshot_path", PATH), F("mem_file_path", Opt(PATH)), F("mem_backend", Opt(Struct(MemoryBackend))),
        F("enable_diff_snapshots", BOOL, False), F("track_dirty_pages", BOOL, False), F("resume_vm", BOOL, False),
        F("network_overrides", Seq(Struct(NetworkOverride)), default_factory=list),
        F("vsock_override", Opt(Struct(VsockOverride))), F("clock_realtime", BOOL, False)))


MMDS_VALUE = ANY
