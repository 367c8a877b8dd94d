"""userfaultfd(2), the few calls a snapshot's Uffd memory backend needs: create, UFFDIO_API,
UFFDIO_REGISTER (missing pages), UFFDIO_COPY, UFFDIO_ZEROPAGE and reading fault events.

The numbers and layouts are <linux/userfaultfd.h>'s (x86_64); tests/unit/test_uffd_layout.py
checks them against the header as gcc compiles it.
"""
from __future__ import annotations

import ctypes
import errno
import os

# <asm-generic/ioctl.h>
_IOC_READ, _IOC_WRITE = 2, 1


def _IOC(direction: int, type_: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (type_ << 8) | nr


def _IOWR(type_: int, nr: int, struct: type) -> int:
    return _IOC(_IOC_READ | _IOC_WRITE, type_, nr, ctypes.sizeof(struct))


class uffdio_api(ctypes.Structure):
    _fields_ = [("api", ctypes.c_uint64), ("features", ctypes.c_uint64), ("ioctls", ctypes.c_uint64)]


class uffdio_range(ctypes.Structure):
    _fields_ = [("start", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class uffdio_register(ctypes.Structure):
    _fields_ = [("range", uffdio_range), ("mode", ctypes.c_uint64), ("ioctls", ctypes.c_uint64)]


class uffdio_copy(ctypes.Structure):
    _fields_ = [("dst", ctypes.c_uint64), ("src", ctypes.c_uint64), ("len", ctypes.c_uint64),
                ("mode", ctypes.c_uint64), ("copy", ctypes.c_int64)]


class uffdio_zeropage(ctypes.Structure):
    _fields_ = [("range", uffdio_range), ("mode", ctypes.c_uint64), ("zeropage", ctypes.c_int64)]


class uffd_msg(ctypes.Structure):
    """One event as read(2) returns it: `event`, then 24 bytes of arguments. Page fault:
    flags, address; remove: start, end (the union's members share these words)."""
    _pack_ = 1
    _fields_ = [("event", ctypes.c_uint8), ("reserved1", ctypes.c_uint8), ("reserved2", ctypes.c_uint16),
                ("reserved3", ctypes.c_uint32), ("arg0", ctypes.c_uint64), ("arg1", ctypes.c_uint64),
                ("arg2", ctypes.c_uint64)]


UFFD_API = 0xAA
UFFDIO = 0xAA
UFFDIO_API = _IOWR(UFFDIO, 0x3F, uffdio_api)
UFFDIO_REGISTER = _IOWR(UFFDIO, 0x00, uffdio_register)
UFFDIO_COPY = _IOWR(UFFDIO, 0x03, uffdio_copy)
UFFDIO_ZEROPAGE = _IOWR(UFFDIO, 0x04, uffdio_zeropage)
USERFAULTFD_IOC_NEW = _IOC(0, UFFDIO, 0x00, 0)     # _IO: /dev/userfaultfd's one ioctl

UFFD_FEATURE_EVENT_REMOVE = 1 << 3
UFFDIO_REGISTER_MODE_MISSING = 1 << 0
UFFD_EVENT_PAGEFAULT = 0x12
UFFD_EVENT_FORK = 0x13
UFFD_EVENT_REMAP = 0x14
UFFD_EVENT_REMOVE = 0x15
UFFD_EVENT_UNMAP = 0x16
UFFD_PAGEFAULT_FLAG_WRITE = 1 << 0
_UFFDIO_COPY_BIT = 1 << 0x03

SYS_userfaultfd = 323   # x86_64
MSG_SIZE = ctypes.sizeof(uffd_msg)

_libc = ctypes.CDLL(None, use_errno=True)
_ioctl = _libc.ioctl
_ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)
_ioctl.restype = ctypes.c_int
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


class UffdError(OSError):
    """A userfaultfd call that failed: `operation` names it, `errno` says why."""

    def __init__(self, operation: str, code: int):
        super().__init__(code, f"{operation}: {os.strerror(code)}")
        self.operation = operation


def _call(fd: int, request: int, arg, operation: str) -> None:
    if _ioctl(fd, request, ctypes.byref(arg)) < 0:
        raise UffdError(operation, ctypes.get_errno())


class PageFault:
    """A missing page touched at `address` (by a write when `write`)."""
    __slots__ = ("address", "write")

    def __init__(self, address: int, write: bool):
        self.address, self.write = address, write

    def __repr__(self) -> str:
        return f"PageFault({self.address:#x}{', write' if self.write else ''})"


class Remove:
    """Pages [start, end) dropped by madvise(MADV_DONTNEED) (a balloon): they fault in as zeroes."""
    __slots__ = ("start", "end")

    def __init__(self, start: int, end: int):
        self.start, self.end = start, end

    def __repr__(self) -> str:
        return f"Remove({self.start:#x}, {self.end:#x})"


class Userfaultfd:
    """An owned userfaultfd: `fileno()` to poll and to pass on, `close()` when done."""

    def __init__(self, fd: int):
        self.fd = fd

    @classmethod
    def create(cls, features: int = UFFD_FEATURE_EVENT_REMOVE) -> "Userfaultfd":
        """A new non-blocking, close-on-exec userfaultfd that also sees kernel-mode faults (KVM's),
        with the UFFDIO_API handshake done for `features`. The syscall first; /dev/userfaultfd
        when the syscall is not allowed (vm.unprivileged_userfaultfd=0) but the device is."""
        flags = os.O_CLOEXEC | os.O_NONBLOCK
        fd = _syscall(SYS_userfaultfd, flags)
        if fd < 0:
            code = ctypes.get_errno()
            if code not in (errno.EPERM, errno.ENOSYS):
                raise UffdError("userfaultfd", code)
            fd = cls._from_device(flags, code)
        uffd = cls(fd)
        try:
            uffd._api(features)
        except BaseException:
            uffd.close()
            raise
        return uffd

    @staticmethod
    def _from_device(flags: int, syscall_errno: int) -> int:
        try:
            device = os.open("/dev/userfaultfd", os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            raise UffdError("userfaultfd", syscall_errno) from None
        try:
            fd = _ioctl(device, USERFAULTFD_IOC_NEW, flags)
            if fd < 0:
                raise UffdError("/dev/userfaultfd USERFAULTFD_IOC_NEW", ctypes.get_errno())
            return fd
        finally:
            os.close(device)

    def _api(self, features: int) -> None:
        api = uffdio_api(api=UFFD_API, features=features)
        _call(self.fd, UFFDIO_API, api, "UFFDIO_API")

    def fileno(self) -> int:
        return self.fd

    def register(self, address: int, length: int) -> None:
        """Missing pages of [address, address+length) fault to this userfaultfd's reader."""
        arg = uffdio_register(range=uffdio_range(start=address, len=length), mode=UFFDIO_REGISTER_MODE_MISSING)
        _call(self.fd, UFFDIO_REGISTER, arg, f"UFFDIO_REGISTER [{address:#x}, +{length:#x})")
        if not arg.ioctls & _UFFDIO_COPY_BIT:
            raise UffdError(f"UFFDIO_REGISTER [{address:#x}, +{length:#x}): no UFFDIO_COPY", errno.EINVAL)

    def copy(self, dst: int, src: int, length: int) -> None:
        """Fill the missing pages at [dst, dst+length) with the bytes at `src` (an address in this
        process) and wake the threads that faulted on them. UffdError's errno: EEXIST when a page
        is there already, EAGAIN to try again (a remove event is pending), ESRCH when the process
        that registered the range has exited."""
        arg = uffdio_copy(dst=dst, src=src, len=length)
        _call(self.fd, UFFDIO_COPY, arg, "UFFDIO_COPY")

    def zeropage(self, dst: int, length: int) -> None:
        """Map zero pages at [dst, dst+length) and wake the threads that faulted on them (errno
        as copy's)."""
        arg = uffdio_zeropage(range=uffdio_range(start=dst, len=length))
        _call(self.fd, UFFDIO_ZEROPAGE, arg, "UFFDIO_ZEROPAGE")

    def read_events(self, limit: int = 64) -> list:
        """The events waiting now (PageFault, Remove), without blocking: [] when there are none.
        Other events (fork, remap, unmap) are not enabled, and raise UffdError if seen."""
        try:
            data = os.read(self.fd, MSG_SIZE * limit)
        except BlockingIOError:
            return []
        except OSError as e:
            raise UffdError("read", e.errno) from None
        events = []
        for offset in range(0, len(data) - MSG_SIZE + 1, MSG_SIZE):
            msg = uffd_msg.from_buffer_copy(data, offset)
            if msg.event == UFFD_EVENT_PAGEFAULT:
                events.append(PageFault(msg.arg1, bool(msg.arg0 & UFFD_PAGEFAULT_FLAG_WRITE)))
            elif msg.event == UFFD_EVENT_REMOVE:
                events.append(Remove(msg.arg0, msg.arg1))
            else:
                raise UffdError(f"read: unexpected event {msg.event:#x}", errno.EPROTO)
        return events

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
