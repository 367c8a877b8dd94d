"""VmResources: everything a microVM is built from, validated once, as Firecracker's
`VmResources` is (src/vmm/src/resources.rs), with Firecracker's error messages.

Devices that pyrite does not build yet are parsed and validated in full, then refused by
`require_supported()`; `SUPPORTED` (in errors.py) is the one list to extend as devices arrive.
"""
from __future__ import annotations

import os

from pyrite.arch.x86_64.layout import CMDLINE_MAX_SIZE, MAX_VCPUS
from .decode import STR, DecodeError, Opt, Seq, Struct, decode, decode_object
from . import errors
from .errors import ConfigError, NotSupportedYet, io_error_text, require_supported
from .models import (Balloon, BootSource, CpuConfig, Drive, Entropy, Logger, MachineConfig,
                     MachineConfigUpdate, MemoryHotplug, Metrics, MmdsConfig, NetworkInterface, Pmem,
                     Serial, Vsock)

# Firecracker's default guest command line (used when boot-source has no boot_args).
DEFAULT_KERNEL_CMDLINE = ("reboot=k panic=1 nomodule 8250.nr_uarts=0 i8042.noaux i8042.nomux "
                          "i8042.dumbkbd swiotlb=noforce")

# ----------------------------------------------------------------------------- config file
_CONFIG_FILE_KEYS: dict = {
    "balloon": Opt(Struct(Balloon)),
    "drives": Seq(Struct(Drive)),
    "boot-source": Struct(BootSource),
    "cpu-config": Opt(STR),  # a path to a custom CPU template file
    "logger": Opt(Struct(Logger)),
    "machine-config": Opt(Struct(MachineConfig)),
    "metrics": Opt(Struct(Metrics)),
    "mmds-config": Opt(Struct(MmdsConfig)),
    "network-interfaces": Seq(Struct(NetworkInterface)),
    "vsock": Opt(Struct(Vsock)),
    "entropy": Opt(Struct(Entropy)),
    "pmem": Seq(Struct(Pmem)),
    "memory-hotplug": Opt(Struct(MemoryHotplug)),
    "serial": Opt(Struct(Serial)),
}


def _decode_config_file(data: bytes) -> dict:
    """The top level of a --config-file (Firecracker's VmmConfig): each known key decoded with
    its type, unknown keys ignored as Firecracker ignores them; positions stay those of the file."""
    return decode_object(data, "VmmConfig", _CONFIG_FILE_KEYS, required=("boot-source",))


# ----------------------------------------------------------------------------- resources
class VmResources:
    """Everything the builder needs. Fields may be read freely; change them through the
    set_/add_/update_ methods, which validate first and change nothing on error."""

    def __init__(self):
        self.machine_config = MachineConfig()
        self.boot_source: BootSource | None = None
        self.cpu_config: CpuConfig | None = None
        self.drives: list[Drive] = []
        self.network_interfaces: list[NetworkInterface] = []
        self.vsock: Vsock | None = None
        self.entropy: Entropy | None = None
        self.balloon: Balloon | None = None
        self.mmds_config: MmdsConfig | None = None
        self.mmds_data = None
        self.pmem: list[Pmem] = []
        self.memory_hotplug: MemoryHotplug | None = None
        self.serial: Serial | None = None
        self.logger: Logger | None = None
        self.metrics: Metrics | None = None

    def __repr__(self) -> str:
        return f"VmResources({self.to_json()!r})"

    # --- construction from Firecracker's JSON config file
    @classmethod
    def from_config_file(cls, path: str | os.PathLike) -> "VmResources":
        return cls.from_json_bytes(_read_file(path, "configuration file"))

    @classmethod
    def from_json(cls, obj: dict) -> "VmResources":
        """From an already parsed config file object (positions refer to its JSON dump)."""
        from .decode import encode_json
        return cls.from_json_bytes(encode_json(obj).encode())

    @classmethod
    def from_json_bytes(cls, data: bytes, *, kernel_needed: bool = True) -> "VmResources":
        """`kernel_needed=False` for a snapshot's configuration: the restored VM does not load
        its kernel, so the boot source is kept as recorded without opening the files."""
        try:
            values = _decode_config_file(data)
        except DecodeError as e:
            raise ConfigError("json", e.describe(data)) from None
        res = cls()
        # Firecracker's order (VmResources::from_json): logger and metrics are the caller's
        # to apply; then machine config, CPU template, boot source, devices.
        res.logger = values.get("logger")
        res.metrics = values.get("metrics")
        if values.get("machine-config") is not None:
            res.set_machine_config(values["machine-config"])
        if values.get("cpu-config") is not None:
            res.set_cpu_config(_load_cpu_template(values["cpu-config"]))
        if kernel_needed:
            res.set_boot_source(values["boot-source"])
        else:
            res.boot_source = values["boot-source"]
        for drive in values.get("drives") or []:
            res.add_drive(drive.drive_id, drive)
        for pmem in values.get("pmem") or []:
            res.add_pmem(pmem.id, pmem)
        for iface in values.get("network-interfaces") or []:
            res.add_network_interface(iface.iface_id, iface)
        if values.get("vsock") is not None:
            res.set_vsock(values["vsock"])
        if values.get("entropy") is not None:
            res.set_entropy(values["entropy"])
        if values.get("mmds-config") is not None:
            res.set_mmds_config(values["mmds-config"])
        if values.get("balloon") is not None:
            res.set_balloon(values["balloon"])
        if values.get("memory-hotplug") is not None:
            res.set_memory_hotplug(values["memory-hotplug"])
        if values.get("serial") is not None:
            res.set_serial(values["serial"])
        return res

    @classmethod
    def for_kernel(cls, kernel: str | os.PathLike, *, cmdline: str, initrd: str | os.PathLike | None = None,
                   mem_mib: int = 128, vcpus: int = 1, drives=(), network_interfaces=(),
                   vsock: Vsock | None = None, entropy: Entropy | None = None,
                   track_dirty_pages: bool = False) -> "VmResources":
        """A microVM described in code or on a command line (pyrite.MicroVM, `pyrite run`),
        validated by the same rules, in the same order, as the API's requests."""
        res = cls()
        res.set_machine_config(MachineConfig(vcpu_count=vcpus, mem_size_mib=mem_mib,
                                             track_dirty_pages=track_dirty_pages))
        res.set_boot_source(BootSource(kernel_image_path=os.fspath(kernel), boot_args=cmdline,
                                       initrd_path=None if initrd is None else os.fspath(initrd)))
        # The API replaces a device PUT twice under one id; given twice here it is a mistake.
        _refuse_repeated_ids("drives", "drive", [d.drive_id for d in drives])
        _refuse_repeated_ids("network-interfaces", "interface", [n.iface_id for n in network_interfaces])
        for drive in drives:
            res.add_drive(drive.drive_id, drive)
        for iface in network_interfaces:
            res.add_network_interface(iface.iface_id, iface)
        if vsock is not None:
            res.set_vsock(vsock)
        if entropy is not None:
            res.set_entropy(entropy)
        return res

    # --- machine
    def set_machine_config(self, mc: MachineConfig) -> None:
        """PUT /machine-config: as Firecracker, a PUT is an update with every field given
        (an absent cpu_template keeps the current one)."""
        self.update_machine_config(MachineConfigUpdate(
            vcpu_count=mc.vcpu_count, mem_size_mib=mc.mem_size_mib, smt=mc.smt, cpu_template=mc.cpu_template,
            track_dirty_pages=mc.track_dirty_pages, huge_pages=mc.huge_pages))

    def update_machine_config(self, update: MachineConfigUpdate) -> None:
        cur = self.machine_config
        vcpus = cur.vcpu_count if update.vcpu_count is None else update.vcpu_count
        smt = cur.smt if update.smt is None else update.smt
        if vcpus <= 0 or vcpus > MAX_VCPUS or (smt and vcpus > 1 and vcpus % 2 == 1):
            raise ConfigError("machine-config", "The number of vCPUs must be greater than 0, less than "
                              f"{MAX_VCPUS} and must be 1 or an even number if SMT is enabled.")
        mem = cur.mem_size_mib if update.mem_size_mib is None else update.mem_size_mib
        huge = cur.huge_pages if update.huge_pages is None else update.huge_pages
        if mem <= 0 or (huge == "2M" and mem % 2):
            raise ConfigError("machine-config",
                              "The memory size (MiB) is either 0, or not a multiple of the configured page size.")
        if self.balloon is not None and mem < self.balloon.amount_mib:
            raise ConfigError("machine-config", "The memory size (MiB) is smaller than the previously set "
                                                "balloon device target size.")
        if huge != "None" and self.balloon is not None:
            raise ConfigError("machine-config", "Firecracker's huge pages support is incompatible with memory "
                                                "ballooning.")
        if huge != "None" and self.boot_source is not None and self.boot_source.initrd_path is not None:
            raise ConfigError("machine-config", "Firecracker's huge pages support is incompatible with initrds.")
        template = cur.cpu_template
        if update.cpu_template is not None:
            template = None if update.cpu_template == "None" else update.cpu_template
        if template is not None:
            require_supported("cpu-template")
        if smt:
            require_supported("smt")
        if huge != "None":
            require_supported("huge-pages")
        self.machine_config = MachineConfig(
            vcpu_count=vcpus, mem_size_mib=mem, smt=smt, cpu_template=template,
            track_dirty_pages=cur.track_dirty_pages if update.track_dirty_pages is None else update.track_dirty_pages,
            huge_pages=huge)

    def set_cpu_config(self, cpu: CpuConfig) -> None:
        require_supported("cpu-config")
        self.cpu_config = cpu

    # --- boot source
    def set_boot_source(self, bs: BootSource) -> None:
        for path, detail in ((bs.kernel_image_path, "The kernel file cannot be opened: {}"),
                             (bs.initrd_path, "The initrd file cannot be opened due to invalid path or "
                                              "invalid permissions. {}")):
            if path is None:
                continue
            if "\0" in path:
                raise ConfigError("boot-source", detail.format("file name contained an unexpected NUL byte"))
            try:
                os.close(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
            except OSError as e:
                raise ConfigError("boot-source", detail.format(io_error_text(e))) from None
        cmdline = DEFAULT_KERNEL_CMDLINE if bs.boot_args is None else bs.boot_args
        if "\0" in cmdline or not cmdline.isascii():
            raise ConfigError("boot-source", "The kernel command line is invalid: String contains a "
                                             "non-printable ASCII character.")
        if len(cmdline) + 1 > CMDLINE_MAX_SIZE:
            raise ConfigError("boot-source", "The kernel command line is invalid: Inserting string would "
                                             "make command line too long.")
        if bs.initrd_path is not None and self.machine_config.huge_pages != "None":
            raise ConfigError("machine-config", "Firecracker's huge pages support is incompatible with initrds.")
        self.boot_source = bs

    @property
    def kernel_cmdline(self) -> str:
        """The command line the guest gets: boot_args, or Firecracker's default."""
        if self.boot_source is None or self.boot_source.boot_args is None:
            return DEFAULT_KERNEL_CMDLINE
        return self.boot_source.boot_args

    # --- devices (validated as Firecracker validates them, then refused until built)
    def add_drive(self, drive_id: str, drive: Drive) -> None:
        is_virtio = drive.path_on_host is not None and drive.is_read_only is not None and drive.socket is None
        is_vhost_user = drive.socket is not None and drive.path_on_host is None and drive.is_read_only is None
        if not (is_virtio or is_vhost_user):
            raise ConfigError("drives", "Unable to create the virtio block device: Invalid block config.")
        if drive.is_root_device and any(d.is_root_device and d.drive_id != drive_id for d in self.drives):
            raise ConfigError("drives", "A root block device already exists!")
        if drive.partuuid is not None and (not drive.partuuid or any(c.isspace() or c == "\0" for c in drive.partuuid)):
            # It becomes root=PARTUUID=<partuuid> on the kernel command line: one word.
            raise ConfigError("drives", f"Unable to create the virtio block device: partuuid {drive.partuuid!r} "
                                        "is not a single word.")
        require_supported("drives")
        if is_vhost_user:
            require_supported("vhost-user-drives")
        _check_backing_file(drive.path_on_host, drive.is_read_only)
        self._replace(self.drives, "drive_id", drive)

    def update_drive_path(self, drive_id: str, path: str) -> None:
        """After a PATCH /drives swapped the backing file: GET /vm/config shows the new path."""
        for i, drive in enumerate(self.drives):
            if drive.drive_id == drive_id:
                self.drives[i] = Drive(**{**drive.__dict__, "path_on_host": path})

    def add_network_interface(self, iface_id: str, iface: NetworkInterface) -> None:
        for other in self.network_interfaces:
            if other.iface_id == iface_id:
                continue
            if other.host_dev_name == iface.host_dev_name:
                raise ConfigError("network-interfaces",
                                  f"The host device name {iface.host_dev_name} is already in use.")
            if iface.guest_mac is not None and other.guest_mac == iface.guest_mac:
                raise ConfigError("network-interfaces", f"The guest MAC address {iface.guest_mac} is already in use.")
        if iface.mtu is not None:
            from pyrite.devices.virtio.net import MAX_MTU, MIN_MTU
            if not MIN_MTU <= iface.mtu <= MAX_MTU:
                raise ConfigError("network-interfaces",
                                  f"Invalid MTU {iface.mtu}: must be between {MIN_MTU} and {MAX_MTU}.")
        require_supported("network-interfaces")
        self._replace(self.network_interfaces, "iface_id", iface)

    def set_vsock(self, vsock: Vsock) -> None:
        if vsock.guest_cid < 3:
            raise ConfigError("vsock", f"Invalid guest CID {vsock.guest_cid}: must be 3 or more.")
        require_supported("vsock")
        # sun_path holds 107 bytes and a NUL; "_<port>" is appended for guest connections.
        size = len(os.fsencode(vsock.uds_path))
        if size > 107:
            raise ConfigError("vsock", "Cannot create backend for vsock device: Error binding to the host-side "
                                       "Unix socket: path must be shorter than SUN_LEN")
        if size + len("_4294967295") > 107:
            raise ConfigError("vsock", f"Cannot create backend for vsock device: uds_path {vsock.uds_path} leaves "
                                       "no room in a Unix socket address for the _<port> suffix of guest connections")
        if os.path.lexists(vsock.uds_path) and (self.vsock is None or self.vsock.uds_path != vsock.uds_path):
            # Firecracker binds uds_path here; pyrite binds at boot but refuses the same paths now.
            raise ConfigError("vsock", "Cannot create backend for vsock device: Error binding to the "
                                       "host-side Unix socket: Address already in use (os error 98)")
        self.vsock = vsock

    def set_entropy(self, entropy: Entropy) -> None:
        require_supported("entropy")
        self.entropy = entropy

    def set_balloon(self, balloon: Balloon) -> None:
        if balloon.amount_mib > self.machine_config.mem_size_mib:
            raise ConfigError("balloon", "Amount of pages requested is too large.")
        if self.machine_config.huge_pages != "None":
            raise ConfigError("balloon", "Firecracker's huge pages support is incompatible with memory ballooning.")
        require_supported("balloon")
        self.balloon = balloon

    def set_mmds_config(self, cfg: MmdsConfig) -> None:
        if not cfg.network_interfaces:
            raise ConfigError("mmds-config", "The list of network interface IDs that allow forwarding MMDS "
                                             "requests is empty.")
        known = {i.iface_id for i in self.network_interfaces}
        if any(i not in known for i in cfg.network_interfaces):
            raise ConfigError("mmds-config", "The list of network interface IDs provided contains at least one "
                                             "ID that does not correspond to any existing network interface.")
        if cfg.ipv4_address is not None:
            a, b, c, d = (int(x) for x in cfg.ipv4_address.split("."))
            if not (a == 169 and b == 254 and 1 <= c <= 254):
                raise ConfigError("mmds-config", f"The MMDS IPv4 address is not link local.")
        require_supported("mmds-config")
        self.mmds_config = cfg

    def set_mmds_data(self, value) -> None:
        require_supported("mmds")
        self.mmds_data = value

    def add_pmem(self, pmem_id: str, pmem: Pmem) -> None:
        if pmem.root_device and any(p.root_device and p.id != pmem_id for p in self.pmem):
            raise ConfigError("pmem", "A root pmem device already exist")
        require_supported("pmem")
        self._replace(self.pmem, "id", pmem)

    def set_memory_hotplug(self, cfg: MemoryHotplug) -> None:
        if cfg.block_size_mib < 2:
            raise ConfigError("memory-hotplug", "Block size must not be lower than 2 MiB")
        if cfg.block_size_mib & (cfg.block_size_mib - 1):
            raise ConfigError("memory-hotplug", "Block size must be a power of 2")
        if cfg.slot_size_mib < 128:
            raise ConfigError("memory-hotplug", "Slot size must not be lower than 128 MiB")
        if cfg.slot_size_mib % cfg.block_size_mib:
            raise ConfigError("memory-hotplug",
                              f"Slot size must be a multiple of block size ({cfg.block_size_mib} MiB)")
        if cfg.total_size_mib < cfg.slot_size_mib:
            raise ConfigError("memory-hotplug", f"Total size must not be lower than slot size ({cfg.slot_size_mib} MiB)")
        if cfg.total_size_mib % cfg.slot_size_mib:
            raise ConfigError("memory-hotplug",
                              f"Total size must be a multiple of slot size ({cfg.slot_size_mib} MiB)")
        require_supported("memory-hotplug")
        self.memory_hotplug = cfg

    def set_serial(self, serial: Serial) -> None:
        if serial.rate_limiter is not None:
            require_supported("serial-rate-limiter")
        self.serial = serial

    @staticmethod
    def _replace(items: list, key: str, new) -> None:
        for i, old in enumerate(items):
            if getattr(old, key) == getattr(new, key):
                items[i] = new
                return
        items.append(new)

    # --- checks before InstanceStart
    def unsupported_in_use(self) -> list[str]:
        """Kinds configured here that pyrite cannot build yet (normally refused earlier)."""
        used = {
            "drives": bool(self.drives), "network-interfaces": bool(self.network_interfaces),
            "vsock": self.vsock is not None, "entropy": self.entropy is not None,
            "balloon": self.balloon is not None, "mmds-config": self.mmds_config is not None,
            "mmds": self.mmds_data is not None, "pmem": bool(self.pmem),
            "memory-hotplug": self.memory_hotplug is not None, "cpu-config": self.cpu_config is not None,
            "cpu-template": self.machine_config.cpu_template is not None, "smt": self.machine_config.smt,
            "huge-pages": self.machine_config.huge_pages != "None",
            "serial-rate-limiter": self.serial is not None and self.serial.rate_limiter is not None,
        }
        return [k for k, on in used.items() if on and k not in errors.SUPPORTED]

    def check_buildable(self) -> None:
        """What InstanceStart checks first: a kernel, and nothing pyrite cannot build yet."""
        if self.boot_source is None:
            raise ConfigError("start", "Cannot start microvm without kernel configuration.")
        unsupported = self.unsupported_in_use()
        if unsupported:
            raise NotSupportedYet(unsupported[0])

    # --- GET /vm/config
    def to_json(self) -> dict:
        bs = self.boot_source or BootSource(kernel_image_path="")
        return {
            "balloon": self.balloon.to_json() if self.balloon else None,
            "drives": [d.to_json() for d in self.drives],
            "boot-source": bs.to_json(),
            "cpu-config": self.cpu_config.to_json() if self.cpu_config else None,
            "logger": None,   # Firecracker reports neither logger nor metrics here
            "machine-config": self.machine_config.to_json(),
            "metrics": None,
            "mmds-config": self.mmds_config.to_json() if self.mmds_config else None,
            "network-interfaces": [n.to_json() for n in self.network_interfaces],
            "vsock": self.vsock.to_json() if self.vsock else None,
            "entropy": self.entropy.to_json() if self.entropy else None,
            "pmem": [p.to_json() for p in self.pmem],
            "memory-hotplug": self.memory_hotplug.to_json() if self.memory_hotplug else None,
        }


def _refuse_repeated_ids(resource: str, noun: str, ids: list[str]) -> None:
    for i, ident in enumerate(ids):
        if ident in ids[:i]:
            raise ConfigError(resource, f"The {noun} id {ident} is configured twice.")


def _check_backing_file(path: str | None, read_only: bool | None) -> None:
    """A drive's file opens as the device will open it (Firecracker opens it at PUT)."""
    if path is None:
        return
    try:
        os.close(os.open(path, (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC))
    except (OSError, ValueError) as e:
        text = io_error_text(e) if isinstance(e, OSError) else str(e)
        raise ConfigError("drives", "Unable to create the virtio block device: Virtio backend error: Error "
                                    f"manipulating the backing file: {text} {path}") from None


def _read_file(path, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ConfigError("file", f"Unable to open or read from the {what} {path}: {io_error_text(e)}") from None


def _load_cpu_template(path: str) -> CpuConfig:
    data = _read_file(path, "CPU template file")
    try:
        return decode(data, Struct(CpuConfig))
    except DecodeError as e:
        raise ConfigError("json", f"{path}: {e.describe(data)}") from None



