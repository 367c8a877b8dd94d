"""The jailer's arguments validated into a JailConfig, as Firecracker's Env::new checks them and
in its order, with its texts. Nothing is changed on the host here: a refused command line
leaves nothing behind. One check is pyrite's own: a jail that already holds what the jailer
would make is refused here, with the text Firecracker gives when it trips over it later."""
from __future__ import annotations

import os

from . import cgroups, devices, rlimits, target
from .errors import JailerError, io_text, parse_uint

MAX_ID_LEN = 64


class JailConfig:
    """A validated jailer command line."""
    FIELDS = ("id", "exec_file", "exec_name", "pyrite_vmm", "chroot_dir", "uid", "gid", "netns", "daemonize",
              "new_pid_ns", "cgroups", "resource_limits", "uffd_minor", "extra_args")
    __slots__ = FIELDS
    # exec_file: canonical host path; pyrite_vmm: run pyrite's VMM in this process instead of
    # exec'ing; chroot_dir: <base>/<exec name>/<id>/root; cgroups: a CgroupPlan or None.

    def __init__(self, **values):
        for name in self.FIELDS:
            setattr(self, name, values[name])

    @property
    def jailed_exec_file(self) -> str:
        return "/" + self.exec_name

    @property
    def pid_file(self) -> str:
        return self.jailed_exec_file + ".pid"


def validate(given: dict, extra: list[str], proc_mounts: str = cgroups.PROC_MOUNTS) -> JailConfig:
    instance_id = given["id"]
    _check_id(instance_id)
    exec_file, exec_name, pyrite_vmm = _check_exec_file(given["exec-file"])
    base = _canonical(given["chroot-base-dir"])
    if not os.path.isdir(base):
        raise JailerError(f"{base} is not a directory")
    chroot_dir = os.path.join(base, exec_name, instance_id, "root")
    uid = _u32(given["uid"], "uid")
    gid = _u32(given["gid"], "gid")
    parent = given.get("parent-cgroup", exec_name)
    cgroups.check_parent(parent)
    plan = cgroups.plan(given["cgroup-version"], given.get("cgroup", []), instance_id, parent, proc_mounts)
    limits = rlimits.parse(given.get("resource-limit", []))
    uffd_minor = devices.userfaultfd_minor()
    config = JailConfig(id=instance_id, exec_file=exec_file, exec_name=exec_name, pyrite_vmm=pyrite_vmm,
                        chroot_dir=chroot_dir, uid=uid, gid=gid, netns=given.get("netns"),
                        daemonize="daemonize" in given, new_pid_ns="new-pid-ns" in given, cgroups=plan,
                        resource_limits=limits, uffd_minor=uffd_minor, extra_args=tuple(extra))
    _check_jail_is_new(config)
    return config


def _check_id(value: str) -> None:
    """Firecracker's validate_instance_id (1.12 texts): 1 to 64 characters, alphanumeric or '-'."""
    if not 1 <= len(value) <= MAX_ID_LEN:
        raise JailerError(f"Invalid instance ID: Invalid len ({len(value)});  the length must be between 1 and "
                          f"{MAX_ID_LEN}")
    for i, c in enumerate(value):
        if not (c == "-" or (c.isascii() and c.isalnum())):
            raise JailerError(f"Invalid instance ID: Invalid char ({c}) at position {i}")


def _check_exec_file(path: str) -> tuple[str, str, bool]:
    canonical = _canonical(path)
    if not os.path.isfile(canonical):
        raise JailerError(f"{canonical} is not a file")
    name = os.path.basename(canonical)
    pyrite_vmm = target.is_pyrite_vmm(canonical)
    if pyrite_vmm:
        target.check_interpreter(canonical)
    elif "firecracker" not in name:
        raise JailerError(f'Invalid filename. The filename of `--exec-file` option must contain "firecracker": '
                          f"{name}")
    return canonical, name, pyrite_vmm


def _canonical(path: str) -> str:
    try:
        return os.path.realpath(path, strict=True)
    except OSError as e:
        raise JailerError(f"Failed to canonicalize path {path}: {io_text(e)}") from None


def _u32(text: str, what: str) -> int:
    try:
        return parse_uint(text, 32)
    except ValueError:
        raise JailerError(f"Invalid {what}: {text}") from None


def _check_jail_is_new(config: JailConfig) -> None:
    """The first thing Firecracker's jailer would fail to make in a jail left from an earlier run."""
    inside = (lambda p: os.path.join(config.chroot_dir, p.lstrip("/")))
    for path, _, _ in devices.jail_nodes(config.uffd_minor):
        if path != devices.URANDOM and os.path.lexists(inside(path)):
            raise JailerError(f"Failed to create {path} via mknod inside the jail: File exists (os error 17)")
    if os.path.lexists(inside(config.pid_file)):
        raise JailerError(f"Failed to open file {config.pid_file}: File exists (os error 17)")
