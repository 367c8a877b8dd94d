"""Network backends: where a virtio-net device's frames go and come from.

`NetBackend` is what the device model uses: `read_frame(buffers)` reads one frame
(virtio_net_hdr_v1 first) into `buffers` and `write_frame(buffers)` sends one. `FdBackend`
does that with os.readv/os.writev on any fd that carries one frame per read and write (a
TAP, or a SOCK_DGRAM socket pair in tests), straight from and into guest memory views.
`TapBackend` opens a TAP by name as Firecracker does: /dev/net/tun, TUNSETIFF with
IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, TUNSETVNETHDRSZ 12, no offloads, non-blocking.
This is the only module of the network device that sees an fd.
"""
from __future__ import annotations

import os
import struct
from collections.abc import Sequence

TUN_PATH = "/dev/net/tun"
IFNAMSIZ = 16

# <linux/if_tun.h>: _IOW('T', 202, int), _IOW('T', 208, unsigned int), _IOW('T', 216, int).
TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000

VNET_HDR_SIZE = 12            # struct virtio_net_hdr_v1 (with num_buffers): VERSION_1's header
IOV_MAX = 1024
# Room after the guest's buffers so that a frame too large for them is read whole (and
# dropped) instead of truncated into the guest: a tap frame is at most 64 KiB plus header.
OVERFLOW_BYTES = 65536 + VNET_HDR_SIZE


class NetBackendError(Exception):
    """A network backend that cannot be opened; the message names it."""


class NetBackend:
    """What the network device needs from the host side. Failures raise OSError."""

    def read_frame(self, buffers: Sequence[memoryview]) -> int | None:
        """Read one frame into `buffers`; its full length (which may exceed the buffers, then
        the frame is lost), or None when no frame is waiting."""
        raise NotImplementedError

    def write_frame(self, buffers: Sequence[memoryview]) -> int:
        """Send `buffers` as one frame; the bytes sent."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class FdBackend(NetBackend):
    """Frames over `fd`, one per readv/writev; the backend owns (and closes) the fd."""

    def __init__(self, fd: int, name: str = "fd"):
        self.fd = fd
        self.name = name
        self._overflow = bytearray(OVERFLOW_BYTES)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, fd={self.fd})"

    def fileno(self) -> int:
        return self.fd

    def read_frame(self, buffers: Sequence[memoryview]) -> int | None:
        iov = [b for b in buffers if len(b)][:IOV_MAX - 1]
        try:
            return os.readv(self.fd, iov + [self._overflow])
        except BlockingIOError:
            return None

    def write_frame(self, buffers: Sequence[memoryview]) -> int:
        if len(buffers) <= IOV_MAX:
            return os.writev(self.fd, buffers)      # empty buffers are harmless to writev
        return os.writev(self.fd, [b for b in buffers if len(b)][:IOV_MAX])

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class TapBackend(FdBackend):
    """The TAP device `host_dev_name` (created beforehand by the host: `ip tuntap add`)."""

    def __init__(self, host_dev_name: str):
        name = host_dev_name.encode()
        if not name or len(name) >= IFNAMSIZ or b"\0" in name or b"/" in name:
            raise NetBackendError(f"tap {host_dev_name!r}: not a valid interface name "
                                  f"(1 to {IFNAMSIZ - 1} bytes)")
        try:
            fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise NetBackendError(f"tap {host_dev_name}: cannot open {TUN_PATH}: {e.strerror}") from None
        import fcntl
        try:
            ifreq = struct.pack("16sH22x", name, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)
            fcntl.ioctl(fd, TUNSETIFF, ifreq)
            fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_SIZE))
            fcntl.ioctl(fd, TUNSETOFFLOAD, 0)     # no offloads negotiated: whole, checksummed frames
        except OSError as e:
            os.close(fd)
            raise NetBackendError(f"tap {host_dev_name}: cannot attach ({e.strerror}); does the "
                                  f"TAP exist in this network namespace, and may we use it?") from None
        super().__init__(fd, host_dev_name)
