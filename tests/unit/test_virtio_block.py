import os
from dataclasses import replace
import struct

import pytest
from virtio_driver import F_NEXT, F_WRITE, MmioDriver, RingDriver

from pyrite.devices.virtio import mmio
from pyrite.devices.virtio.block import request as blk
from pyrite.devices.virtio.block.backend import BlockBackendError, FileBackend
from pyrite.devices.virtio.block.device import VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, Block
from pyrite.devices.virtio.device import DEVICE_NEEDS_RESET, TYPE_BLOCK
from pyrite.memory import GuestMemory

SECTORS = 64


def pattern(n: int, seed: int) -> bytes:
    return bytes((i * 7 + seed) & 0xFF for i in range(n))


class Disk:
    """A block device over a temp image file, driven through virtio-mmio like a guest."""

    def __init__(self, path, read_only=False, size=SECTORS * 512, backend=None):
        if not path.exists():
            path.write_bytes(pattern(size, 1))
        self.path = path
        self.mem = GuestMemory([(0, 1 << 20)])
        self.log = []
        self.interrupts = 0
        self.backend = backend or FileBackend(path, read_only=read_only)
        self.device = Block(self.backend, read_only=read_only)
        self.t = mmio.MmioTransport(self.device, self.mem, self._irq, log=self.log.append)
        self.drv = MmioDriver(self.t)
        self.ring = RingDriver(self.mem, size=16)
        self.drv.initialise({0: self.ring})

    def _irq(self):
        self.interrupts += 1

    def submit(self, type_, sector, data_out=b"", in_len=0, split_header=False, indirect=False):
        """One request; returns (status, used length, bytes the device wrote for the driver)."""
        hdr = self.ring.alloc(16, struct.pack("<IIQ", type_, 0, sector))
        bufs = [(hdr, 8, False), (hdr + 8, 8, False)] if split_header else [(hdr, 16, False)]
        if data_out:
            bufs.append((self.ring.alloc(len(data_out), data_out), len(data_out), False))
        din = self.ring.alloc(in_len) if in_len else None
        if in_len:
            bufs.append((din, in_len, True))
        status = self.ring.alloc(1, b"\xff")
        bufs.append((status, 1, True))
        head = self.ring.add_indirect_chain(bufs) if indirect else self.ring.add_chain(bufs)
        self.ring.publish(head)
        self.drv.kick(0)
        [(used_head, used_len)] = self.ring.take_used()
        assert used_head == head
        return self.mem.read_u8(status), used_len, self.mem.read(din, in_len) if in_len else b""

    def close(self):
        self.backend.close()
        self.mem.close()


@pytest.fixture
def disk(tmp_path):
    d = Disk(tmp_path / "disk.img")
    yield d
    d.close()


def test_identity_features_and_capacity(disk):
    assert disk.drv.read32(mmio.DEVICE_ID) == TYPE_BLOCK == 2
    features = disk.drv.device_features()
    assert features >> VIRTIO_BLK_F_FLUSH & 1 and not features >> VIRTIO_BLK_F_RO & 1
    assert disk.t.read(mmio.CONFIG, 8) == struct.pack("<Q", SECTORS)
    assert disk.drv.read32(mmio.CONFIG) == SECTORS and disk.drv.read32(mmio.CONFIG + 4) == 0


def test_read_sectors_into_guest_memory(disk):
    status, used, data = disk.submit(blk.VIRTIO_BLK_T_IN, 2, in_len=1024)
    assert status == blk.VIRTIO_BLK_S_OK and used == 1025
    assert data == pattern(SECTORS * 512, 1)[1024:2048]


def test_write_then_flush_reaches_the_file(disk):
    payload = pattern(1536, 9)
    status, used, _ = disk.submit(blk.VIRTIO_BLK_T_OUT, 10, data_out=payload)
    assert status == blk.VIRTIO_BLK_S_OK and used == 1
    disk.ring.set_used_event(1)          # as a driver re-arming its callback (EVENT_IDX)
    assert disk.submit(blk.VIRTIO_BLK_T_FLUSH, 0)[:2] == (blk.VIRTIO_BLK_S_OK, 1)
    content = disk.path.read_bytes()
    assert content[10 * 512:10 * 512 + 1536] == payload
    assert content[:10 * 512] == pattern(SECTORS * 512, 1)[:10 * 512]
    assert disk.interrupts == 2


def test_flush_calls_fdatasync(disk, monkeypatch):
    synced = []
    monkeypatch.setattr(os, "fdatasync", lambda fd: synced.append(fd))
    disk.submit(blk.VIRTIO_BLK_T_FLUSH, 0)
    assert synced == [disk.backend.fd]


def test_read_only_drive_refuses_writes_and_keeps_the_file(tmp_path):
    d = Disk(tmp_path / "ro.img", read_only=True)
    before = d.path.read_bytes()
    assert d.drv.device_features() >> VIRTIO_BLK_F_RO & 1
    status, used, _ = d.submit(blk.VIRTIO_BLK_T_OUT, 0, data_out=b"x" * 512)
    assert (status, used) == (blk.VIRTIO_BLK_S_IOERR, 1)
    assert d.path.read_bytes() == before
    assert d.submit(blk.VIRTIO_BLK_T_IN, 0, in_len=512)[2] == before[:512]
    assert any("read-only" in m for m in d.log)
    d.close()


@pytest.mark.parametrize("sector,length", [(SECTORS - 1, 1024), (SECTORS, 512), (1 << 60, 512), ((1 << 64) - 1, 512)])
def test_sectors_past_the_end_are_io_errors(disk, sector, length):
    status, used, _ = disk.submit(blk.VIRTIO_BLK_T_IN, sector, in_len=length)
    assert (status, used) == (blk.VIRTIO_BLK_S_IOERR, 1)
    assert any("past the end of the disk" in m for m in disk.log)


def test_last_sector_is_readable(disk):
    status, _, data = disk.submit(blk.VIRTIO_BLK_T_IN, SECTORS - 1, in_len=512)
    assert status == blk.VIRTIO_BLK_S_OK and data == pattern(SECTORS * 512, 1)[-512:]


def test_partial_sector_is_an_io_error(disk):
    assert disk.submit(blk.VIRTIO_BLK_T_OUT, 0, data_out=b"x" * 100)[0] == blk.VIRTIO_BLK_S_IOERR
    assert disk.submit(blk.VIRTIO_BLK_T_IN, 0, in_len=100)[0] == blk.VIRTIO_BLK_S_IOERR


def test_get_id_is_nul_padded_device_id(disk):
    st = os.stat(disk.path)
    status, used, data = disk.submit(blk.VIRTIO_BLK_T_GET_ID, 0, in_len=20)
    assert (status, used) == (blk.VIRTIO_BLK_S_OK, 21)
    assert data == f"{st.st_dev}{st.st_rdev}{st.st_ino}".encode()[:20].ljust(20, b"\0")


def test_unsupported_request_type(disk):
    status, used, _ = disk.submit(blk.VIRTIO_BLK_T_DISCARD, 0, data_out=bytes(16))
    assert (status, used) == (blk.VIRTIO_BLK_S_UNSUPP, 1)


def test_header_split_across_descriptors_and_indirect_chains(disk):
    assert disk.submit(blk.VIRTIO_BLK_T_IN, 3, in_len=512, split_header=True)[2] == \
        pattern(SECTORS * 512, 1)[3 * 512:4 * 512]
    assert disk.submit(blk.VIRTIO_BLK_T_IN, 4, in_len=512, indirect=True)[2] == \
        pattern(SECTORS * 512, 1)[4 * 512:5 * 512]


def test_data_and_status_in_one_buffer_and_scattered_data(disk):
    # IN with 3 data buffers, the last of which also holds the status byte.
    ring = disk.ring
    hdr = ring.alloc(16, struct.pack("<IIQ", blk.VIRTIO_BLK_T_IN, 0, 1))
    a, b, c = ring.alloc(512), ring.alloc(256), ring.alloc(257)
    ring.publish(ring.add_chain([(hdr, 16, False), (a, 512, True), (b, 256, True), (c, 257, True)]))
    disk.drv.kick(0)
    assert ring.take_used() == [(0, 1025)]
    want = pattern(SECTORS * 512, 1)[512:1536]
    assert disk.mem.read(a, 512) + disk.mem.read(b, 256) + disk.mem.read(c, 256) == want
    assert disk.mem.read_u8(c + 256) == blk.VIRTIO_BLK_S_OK


def test_short_header_is_answered_with_io_error(disk):
    ring = disk.ring
    hdr, status = ring.alloc(8, bytes(8)), ring.alloc(1)
    ring.publish(ring.add_chain([(hdr, 8, False), (status, 1, True)]))
    disk.drv.kick(0)
    assert ring.take_used() == [(0, 1)] and disk.mem.read_u8(status) == blk.VIRTIO_BLK_S_IOERR
    assert not disk.drv.status() & DEVICE_NEEDS_RESET


def test_request_without_status_byte_needs_reset(disk):
    ring = disk.ring
    hdr = ring.alloc(16, struct.pack("<IIQ", blk.VIRTIO_BLK_T_FLUSH, 0, 0))
    ring.publish(ring.add_chain([(hdr, 16, False)]))
    disk.drv.kick(0)
    assert ring.take_used() == [(0, 0)]
    assert disk.drv.status() & DEVICE_NEEDS_RESET
    assert any("block queue 0: chain 0: no device-writable byte" in m for m in disk.log)


def test_descriptor_loop_needs_reset_without_hanging(disk):
    ring = disk.ring
    hdr = ring.alloc(16, struct.pack("<IIQ", blk.VIRTIO_BLK_T_IN, 0, 0))
    ring.write_desc(0, hdr, 16, F_NEXT, 1)
    ring.write_desc(1, ring.alloc(512), 512, F_NEXT | F_WRITE, 1)
    ring.publish(0)
    disk.drv.kick(0)
    assert disk.drv.status() & DEVICE_NEEDS_RESET
    assert any("more than 16 descriptors" in m for m in disk.log)


def test_backend_failure_is_an_io_error(disk):
    def broken(offset, buffers):
        raise OSError(5, "Input/output error")
    disk.backend.readinto = broken
    assert disk.submit(blk.VIRTIO_BLK_T_IN, 0, in_len=512)[:2] == (blk.VIRTIO_BLK_S_IOERR, 1)


def test_backend_receives_views_of_guest_memory(disk):
    seen = []
    real = disk.backend.readinto

    def spy(offset, buffers):
        seen.extend(buffers)
        real(offset, buffers)
    disk.backend.readinto = spy
    disk.submit(blk.VIRTIO_BLK_T_IN, 0, in_len=512)
    assert len(seen) == 1 and isinstance(seen[0], memoryview)
    assert seen[0].obj is disk.mem.regions[0].mem          # no intermediate buffer


def test_swapping_the_backend_updates_capacity_and_tells_the_driver(disk, tmp_path):
    bigger = tmp_path / "bigger.img"
    bigger.write_bytes(pattern(128 * 512, 3))
    generation = disk.drv.read32(mmio.CONFIG_GENERATION)
    new = FileBackend(bigger)
    disk.device.update_backend(new)
    assert disk.drv.read32(mmio.CONFIG) == 128
    assert disk.drv.read32(mmio.CONFIG_GENERATION) != generation
    assert disk.drv.read32(mmio.INTERRUPT_STATUS) & mmio.INT_CONFIG
    assert disk.submit(blk.VIRTIO_BLK_T_IN, 100, in_len=512)[2] == pattern(128 * 512, 3)[100 * 512:101 * 512]
    new.close()


def test_partial_last_sector_is_not_visible(tmp_path):
    d = Disk(tmp_path / "odd.img", size=10 * 512 + 100)
    assert d.device.capacity == 10
    d.close()


def test_missing_image_names_the_file(tmp_path):
    with pytest.raises(BlockBackendError, match="nope.img: cannot open read-write"):
        FileBackend(tmp_path / "nope.img")


def test_state_round_trip(disk):
    state = disk.device.state()
    restored = Block.from_state(state, disk.backend)
    # The device comes back inactive: MmioTransport.from_state re-activates it.
    assert restored.state() == replace(state, virtio=replace(state.virtio, activated=False))
    assert restored.capacity == SECTORS and restored.acked_features == disk.device.acked_features


def test_restore_refuses_a_backend_of_another_size(disk, tmp_path):
    from pyrite.devices.virtio.device import VirtioStateError
    other = tmp_path / "small.img"
    other.write_bytes(bytes(512))
    backend = FileBackend(other)
    with pytest.raises(VirtioStateError, match="saved capacity 64 sectors"):
        Block.from_state(disk.device.state(), backend)
    backend.close()
