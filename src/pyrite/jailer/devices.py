"""The jail's folders and device nodes, made after pivot_root as Firecracker's env.rs makes them:
/, /dev, /dev/net and /run at mode 0700 owned by uid:gid; character devices at mode 0600 owned
by uid:gid: /dev/net/tun (10,200), /dev/kvm (10,232), /dev/urandom (1,9; only a warning if
refused) and /dev/userfaultfd (10, its minor from /proc/misc) when the host has it."""
from __future__ import annotations

import os
import stat

from .errors import JailerError, io_text

FOLDERS = ("/", "/dev", "/dev/net", "/run")
FOLDER_MODE = 0o700
DEVICE_MODE = stat.S_IFCHR | stat.S_IRUSR | stat.S_IWUSR
NET_TUN, KVM, URANDOM, USERFAULTFD = "/dev/net/tun", "/dev/kvm", "/dev/urandom", "/dev/userfaultfd"
# The nodes in the order Firecracker makes them, (path, major, minor); userfaultfd's minor is dynamic.
FIXED_DEVICES = ((NET_TUN, 10, 200), (KVM, 10, 232), (URANDOM, 1, 9))
MISC_MAJOR = 10


def userfaultfd_minor(proc_misc: str = "/proc/misc") -> int | None:
    """The misc minor of the host's userfaultfd device, or None when it has none."""
    try:
        with open(proc_misc) as f:
            for line in f:
                minor, _, name = line.strip().partition(" ")
                if name == "userfaultfd" and minor.isdigit():
                    return int(minor)
    except OSError:
        pass
    return None


def jail_nodes(uffd_minor: int | None) -> list[tuple[str, int, int]]:
    nodes = list(FIXED_DEVICES)
    if uffd_minor is not None:
        nodes.append((USERFAULTFD, MISC_MAJOR, uffd_minor))
    return nodes


def make_folders(uid: int, gid: int) -> None:
    for folder in FOLDERS:
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise JailerError(f"Failed to create directory {folder}: {io_text(e)}") from None
        try:
            os.chmod(folder, FOLDER_MODE)
        except OSError as e:
            raise JailerError(f"Failed to change permissions on {folder}: {io_text(e)}") from None
        _chown(folder, uid, gid)


def make_devices(uid: int, gid: int, uffd_minor: int | None) -> None:
    for path, major, minor in jail_nodes(uffd_minor):
        try:
            os.mknod(path, DEVICE_MODE, os.makedev(major, minor))
            _chown(path, uid, gid)
        except (OSError, JailerError) as e:
            text = e if isinstance(e, JailerError) else f"Failed to create {path} via mknod inside the jail: " \
                                                         f"{io_text(e)}"
            if path != URANDOM:
                raise JailerError(str(text)) from None
            print(f"Warning! Could not create /dev/urandom device inside jailer: {text}.")
            print("MMDS version 2 will not be available to use.")


def _chown(path: str, uid: int, gid: int) -> None:
    try:
        os.chown(path, uid, gid)
    except OSError as e:
        raise JailerError(f"Failed to change owner for {path}: {io_text(e)}") from None
