"""The VMM's side of the Uffd memory backend (Firecracker's guest_memory_from_uffd): guest RAM
mapped anonymously, every region registered with a userfaultfd for missing pages, and the
regions and the userfaultfd handed to the page-fault handler listening at `backend_path`
(uffd_protocol). From then on each first touch of a page, by a vCPU through KVM or by the VMM
itself, waits until the handler has copied the page in.

The VMM keeps the connection and its copy of the userfaultfd for as long as the memory is
mapped, as Firecracker does: the handler takes the connection's end as the VMM being gone.
"""
from __future__ import annotations

import mmap

import _socket   # not `socket`: see uffd_protocol

from pyrite.config.errors import io_error_text
from pyrite.memory import GuestMemory, GuestMemoryError
from .errors import UffdMemoryError
from .uffd import Userfaultfd, UffdError
from .uffd_protocol import GuestRegionUffdMapping, send_handshake


class UffdGuestMemory(GuestMemory):
    """Anonymous guest RAM whose missing pages the handler at `backend_path` fills in. Raises
    UffdMemoryError naming the step that failed, in Firecracker's words."""

    def __init__(self, layout: list[tuple[int, int]], backend_path: str):
        self.uffd: Userfaultfd | None = None
        self.connection: _socket.socket | None = None
        try:
            super().__init__(layout)
        except (GuestMemoryError, OSError) as e:
            raise UffdMemoryError(backend_path, f"Failed to restore guest memory: {e}") from None
        try:
            self._hand_over(backend_path)
        except BaseException:
            self.close()
            raise

    def _hand_over(self, path: str) -> None:
        try:
            self.uffd = Userfaultfd.create()
        except UffdError as e:
            raise UffdMemoryError(path, f"Failed to UFFD object: {io_error_text(e)}") from None
        mappings, offset = [], 0
        for region in self.regions:
            try:
                self.uffd.register(region.host_addr, region.size)
            except UffdError as e:
                raise UffdMemoryError(path, "Failed to register memory address range with the "
                                            f"userfaultfd object: {io_error_text(e)}") from None
            mappings.append(GuestRegionUffdMapping(region.host_addr, region.size, offset, mmap.PAGESIZE))
            offset += region.size
        self.connection = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        try:
            self.connection.connect(path)
        except OSError as e:
            raise UffdMemoryError(path, f"Failed to connect to UDS Unix stream: {io_error_text(e)}") from None
        try:
            send_handshake(self.connection, mappings, self.uffd.fileno())
        except OSError as e:
            raise UffdMemoryError(path, f"Failed to sends file descriptor: {io_error_text(e)}") from None

    def close(self) -> None:
        super().close()
        if self.uffd is not None:
            self.uffd.close()
        if self.connection is not None:
            self.connection.close()
