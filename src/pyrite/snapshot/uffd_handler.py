"""`pyrite uffd-handler SOCKET MEM_FILE`: the page-fault handler process of the Uffd memory
backend, for pyrite's VMM and Firecracker's alike (Firecracker's
docs/snapshotting/handling-page-faults-on-snapshot-resume.md).

It listens on SOCKET (the path appears once it accepts connections), accepts one VMM, takes
its mapping message and userfaultfd (uffd_protocol), maps MEM_FILE, and answers each page
fault with UFFDIO_COPY of that page from the file. Pages a balloon removed
(UFFD_EVENT_REMOVE) fault back in as zeroes. It ends when the VMM closes the connection
(it holds it for as long as its memory is mapped) or its memory is gone (ESRCH).

PageServer does the serving and never touches the socket; `serve()` owns the sockets. Run it
as a process of its own, never as a thread of the VMM's: a VMM thread that faults while holding
the GIL would wait for a handler thread that waits for the GIL.
"""
from __future__ import annotations

import ctypes
import errno
import mmap
import os
import select
import socket
import sys

from .uffd import PageFault, Remove, UffdError, Userfaultfd
from .uffd_protocol import GuestRegionUffdMapping, HandshakeError, receive_handshake

USAGE = """usage: pyrite uffd-handler SOCKET MEM_FILE

Serves the guest memory of a snapshot loaded with the Uffd memory backend (PUT /snapshot/load
with "mem_backend": {"backend_type": "Uffd", "backend_path": SOCKET}) from MEM_FILE, the
snapshot's memory file, one page at a time as the guest touches it. Start it before the load;
it serves one VMM and exits when that VMM goes away."""


class HandlerError(Exception):
    """A failure of the handler's own (its files, its socket, a VMM it cannot serve)."""


class PageServer:
    """One VMM's page faults served from `source` (the memory file, mapped here)."""

    def __init__(self, uffd: Userfaultfd, mappings: list[GuestRegionUffdMapping], source: mmap.mmap):
        for m in mappings:
            if m.offset + m.size > len(source):
                raise HandlerError(f"the VMM's region at {m.base_host_virt_addr:#x} needs file bytes "
                                   f"[{m.offset:#x}, {m.offset + m.size:#x}); the memory file has {len(source):#x}")
        self.uffd, self.mappings, self.source = uffd, mappings, source
        self.source_addr = ctypes.addressof(ctypes.c_char.from_buffer(source))
        self.page_size = mappings[0].page_size
        self.removed: set[int] = set()      # page addresses a balloon gave back: zeroes from now on
        self.deferred: list[PageFault] = []
        self.copied = self.zeroed = 0

    def serve_ready(self) -> bool:
        """Answer every event waiting now; False once the VMM's memory is gone. While a remove
        event is unread every UFFDIO_COPY fails with EAGAIN, so reading goes on until all
        faults are answered (Firecracker's example handlers do the same)."""
        while True:
            events, self.deferred = self.deferred, []
            while batch := self.uffd.read_events():
                events += batch
            for event in events:
                if isinstance(event, Remove):
                    self.removed.update(range(event.start, event.end, self.page_size))
                elif not self._serve(event):
                    return False
            if not self.deferred:
                return True

    def _serve(self, fault: PageFault) -> bool:
        page = fault.address & ~(self.page_size - 1)
        try:
            if page in self.removed:
                self.uffd.zeropage(page, self.page_size)
                self.zeroed += 1
            else:
                self.uffd.copy(page, self.source_addr + self._file_offset(page), self.page_size)
                self.copied += 1
        except UffdError as e:
            if e.errno == errno.EAGAIN:
                self.deferred.append(fault)
            elif e.errno == errno.ESRCH:
                return False
            elif e.errno != errno.EEXIST:    # EEXIST: another fault on the page was answered first
                raise
        return True

    def _file_offset(self, page: int) -> int:
        for m in self.mappings:
            if m.contains(page):
                return m.offset + page - m.base_host_virt_addr
        raise HandlerError(f"page fault at {page:#x}, outside every region the VMM sent")


def map_file(path: str) -> mmap.mmap:
    """MEM_FILE mapped private: its pages stay the page cache's, read in as faults need them.
    (Writable only so that ctypes can take its address; nothing writes to it.)"""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise HandlerError(f"memory file {path}: {e.strerror}") from None
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            raise HandlerError(f"memory file {path}: it is empty")
        return mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    except OSError as e:
        raise HandlerError(f"memory file {path}: cannot be mapped: {e.strerror}") from None
    finally:
        os.close(fd)


def listen(path: str) -> socket.socket:
    """A socket listening at `path`, bound under a temporary name and renamed into place, so
    that the path exists only once connections to it are accepted."""
    if os.path.lexists(path):
        raise HandlerError(f"socket {path}: the path exists already")
    temporary = f"{path}.{os.getpid()}.tmp"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        listener.bind(temporary)
        listener.listen(1)
        os.rename(temporary, path)
    except OSError as e:
        listener.close()
        _unlink(temporary)
        raise HandlerError(f"socket {path}: cannot listen: {e.strerror}") from None
    return listener


def serve(socket_path: str, mem_file: str) -> PageServer:
    """Serve one VMM until it goes away; the PageServer tells how many pages it served."""
    source = map_file(mem_file)
    listener = listen(socket_path)
    try:
        connection, _ = listener.accept()
    finally:
        listener.close()
        _unlink(socket_path)
    with connection:
        try:
            mappings, fd = receive_handshake(connection)
        except HandshakeError as e:
            raise HandlerError(f"socket {socket_path}: {e}") from None
        uffd = Userfaultfd(fd)
        try:
            server = PageServer(uffd, mappings, source)
            _serve_until_gone(server, connection)
        finally:
            uffd.close()
    return server


def _serve_until_gone(server: PageServer, connection: socket.socket) -> None:
    poller = select.poll()
    poller.register(server.uffd.fileno(), select.POLLIN)
    poller.register(connection.fileno(), select.POLLIN | select.POLLRDHUP)
    while True:
        for fd, events in poller.poll():
            if fd == server.uffd.fileno():
                if not server.serve_ready():
                    return
            elif events & (select.POLLHUP | select.POLLRDHUP | select.POLLERR) or not connection.recv(4096):
                return                       # the VMM closed the connection: it is gone


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if len(argv) != 2 or any(a.startswith("-") for a in argv):
        print(f"pyrite uffd-handler: expected SOCKET MEM_FILE\n\n{USAGE}", file=sys.stderr)
        return 2
    try:
        server = serve(*argv)
    except (HandlerError, UffdError) as e:
        print(f"pyrite uffd-handler: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(f"pyrite uffd-handler: the VMM went away; {server.copied} pages copied in, "
          f"{server.zeroed} zeroed", file=sys.stderr)
    return 0
