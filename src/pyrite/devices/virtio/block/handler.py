"""virtio-blk in the VMM: made from a pyrite.config Drive, patched by PATCH /drives."""
from __future__ import annotations

from ..handler import DeviceError, DeviceUpdateError, VirtioHandler, rate_limiter, update_rate_limiter


class BlockHandler(VirtioHandler):
    kind, kind_name, noun = "block", "virtio-blk", "drive"
    polled_queues = (0,)          # the request queue: a driver waits for each answer

    @staticmethod
    def configs(resources) -> list:
        """The root drive first, then the others as configured (Firecracker's BlockBuilder)."""
        drives = resources.drives
        return [d for d in drives if d.is_root_device] + [d for d in drives if not d.is_root_device]

    @classmethod
    def create(cls, drive) -> BlockHandler:
        from .device import Block
        limiter = rate_limiter(drive.rate_limiter, f"drive {drive.drive_id}")
        backend = open_drive(drive.drive_id, drive.path_on_host, bool(drive.is_read_only))
        # Firecracker offers VIRTIO_BLK_F_FLUSH for cache_type "Writeback" only.
        device = Block(backend, read_only=bool(drive.is_read_only), flush=drive.cache_type == "Writeback",
                       rate_limiter=limiter)
        return cls(drive, device)

    @property
    def id(self) -> str:
        return self.config.drive_id

    @staticmethod
    def cmdline_words(drive) -> list[str]:
        if not drive.is_root_device:
            return []
        root = f"root=PARTUUID={drive.partuuid}" if drive.partuuid else "root=/dev/vda"
        return [root, "ro" if drive.is_read_only else "rw"]

    @staticmethod
    def state_types() -> tuple[type, type]:
        from ..persist import MmioTransportState
        from .persist import BlockState
        return BlockState, MmioTransportState

    def restored_device(self, state):
        from .device import Block, VIRTIO_BLK_F_FLUSH
        old = self.device
        device = Block.from_state(state, old.backend, flush=bool(old.avail_features >> VIRTIO_BLK_F_FLUSH & 1))
        device.rate_limiter = old.rate_limiter
        return device

    def update(self, update) -> None:
        """PATCH /drives (a DriveUpdate): swap the backing file (the driver gets a configuration
        change interrupt and the new capacity) and/or update the rate limiter's buckets."""
        backend = None
        if update.path_on_host is not None:
            try:
                backend = open_drive(self.id, update.path_on_host, bool(self.config.is_read_only))
            except DeviceError as e:
                raise DeviceUpdateError(str(e)) from None
        with self.lock:
            if update.rate_limiter is not None:
                try:
                    self.device.rate_limiter = update_rate_limiter(self.device.rate_limiter, update.rate_limiter,
                                                                   f"drive {self.id}")
                except DeviceUpdateError:
                    if backend is not None:
                        backend.close()
                    raise
            if backend is not None:
                old = self.device.backend
                self.device.update_backend(backend)
                old.close()


def open_drive(drive_id: str, path: str, read_only: bool):
    """The drive's backing file, checked as Firecracker checks it (DeviceError names it)."""
    from .backend import BlockBackendError, FileBackend
    try:
        backend = FileBackend(path, read_only=read_only)
    except BlockBackendError as e:
        raise DeviceError(f"drive {drive_id}: {e}") from None
    if backend.size < 512:
        backend.close()
        raise DeviceError(f"drive {drive_id}: {path} is {backend.size} bytes, smaller than one 512-byte sector")
    return backend
