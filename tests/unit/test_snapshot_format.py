"""The snapshot state file (format.py) and device records to and from its values (records.py),
with files crafted by hand: each refusal is a SnapshotFormatError that names the problem."""
import random
import struct
import zlib

import pytest

from pyrite.devices.legacy.persist import I8042State, SerialState
from pyrite.devices.virtio.block.persist import BlockState
from pyrite.devices.virtio.net.persist import NetState
from pyrite.devices.virtio.persist import MmioTransportState, QueueState, VirtioDeviceState
from pyrite.devices.virtio.rng.persist import EntropyState
from pyrite.devices.virtio.vsock.persist import VsockState
from pyrite.snapshot import format, records
from pyrite.snapshot.format import SnapshotFormatError, decode, encode

HEADER = 8 + 4 + 8   # magic, version u32, body length u64


def seal(body: bytes, version: int = format.VERSION, magic: bytes = format.MAGIC) -> bytes:
    """A state file around `body`, built by hand, with a valid CRC."""
    data = struct.pack("<8sIQ", magic, version, len(body)) + body
    return data + struct.pack("<I", zlib.crc32(data))


def u32(n: int) -> bytes:
    return struct.pack("<I", n)


SAMPLE = {"regs": [0, -1, 2**64, None, True, False], "name": "vcpu-é€😀", "raw": b"\x00\xff",
          "nested": {"a": [[], {}, [b""]], "": ""}}

# -- format: round trips -------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    None, True, False, 0, 1, -1, 127, 128, -128, -129, 255, 256, 2**63 - 1, 2**64, -2**200,
    b"", b"\x00\x01\xfe\xff", "", "ascii", "non-ASCII: é € 😀 \x00", [], {}, [None, [1, [2, [3]]]],
    {"k": {"k": {"k": [b"x", "y", -5]}}}, SAMPLE,
], ids=repr)
def test_round_trip(value):
    back = decode(encode(value))
    assert back == value
    assert type(back) is type(value)   # True stays a bool, 1 stays an int


def test_tuples_come_back_as_lists_and_buffers_as_bytes():
    assert decode(encode((1, (2, "x")))) == [1, [2, "x"]]
    assert decode(encode([bytearray(b"ab"), memoryview(b"cd")])) == [b"ab", b"cd"]


def test_layout_is_the_documented_one():
    assert format.MAGIC == b"PYRITEVM" and format.VERSION == 1
    assert encode(None) == seal(b"N")
    assert encode([True, -1, "é"]) == seal(b"L" + u32(3) + b"T" + b"I" + u32(1) + b"\xff"
                                           + b"S" + u32(2) + "é".encode())
    assert encode({"a": b"z"}) == seal(b"D" + u32(1) + b"S" + u32(1) + b"a" + b"B" + u32(1) + b"z")


def test_nesting_up_to_max_depth_is_accepted():
    value = None
    for _ in range(format.MAX_DEPTH):
        value = [value]
    assert decode(encode(value)) == value
    with pytest.raises(ValueError, match="nests too deeply"):
        encode([value])

# -- format: refusals ----------------------------------------------------------------------

def test_every_truncation_is_refused():
    data = encode(SAMPLE)
    for n in range(len(data)):
        with pytest.raises(SnapshotFormatError, match="truncated"):
            decode(data[:n])


def test_every_flipped_byte_is_refused():
    data = encode(SAMPLE)
    for i in range(len(data)):
        for bit in (0x01, 0x80):
            bad = bytearray(data)
            bad[i] ^= bit
            with pytest.raises(SnapshotFormatError,
                               match="CRC|bad magic|version|truncated|garbage") as err:
                decode(bytes(bad))
            if i >= HEADER:   # outside the header, only the CRC can tell
                assert "CRC does not match" in str(err.value)


@pytest.mark.parametrize("data, problem", [
    (seal(b"N", magic=b"FIRECRKR"), "bad magic"),
    (seal(b"N", version=2), "version 2; this pyrite reads version 1"),   # with a valid CRC
    (encode([1, 2]) + b"xyz", "3 bytes of garbage after the state"),
], ids=["magic", "version", "garbage"])
def test_bad_file(data, problem):
    with pytest.raises(SnapshotFormatError, match=problem):
        decode(data)


@pytest.mark.parametrize("body, problem", [
    (b"B" + u32(5) + b"abc", "a length of 5 runs past the end"),
    (b"S" + u32(0xFFFFFFFF), "a length of 4294967295 runs past the end"),
    (b"I" + u32(9) + b"\x01", "a length of 9 runs past the end"),
    (b"B" + u32(1), "a length of 1 runs past the end"),
    (b"S", "a length of 4 runs past the end"),   # not even room for the length field
    (b"L" + u32(1000) + b"NN", "a count of 1000 runs past the end"),
    (b"D" + u32(0xFFFFFFFF), "a count of 4294967295 runs past the end"),
    (b"L" + u32(2) + b"NB", "a length of 4 runs past the end"),   # the count fits, an item does not
    (b"", "a length of 1 runs past the end"),
    (b"X", r"unknown value tag b'X'"),
    (b"L" + u32(1) + b"\x00", r"unknown value tag b'\\x00'"),
    (b"S" + u32(2) + b"\xc3\x28", "a string is not UTF-8"),
    (b"D" + u32(1) + b"I" + u32(1) + b"\x01" + b"N", "a dict key is not a string"),
    (b"D" + u32(1) + b"B" + u32(1) + b"k" + b"N", "a dict key is not a string"),
    (b"NN", "bytes left over after the state"),
], ids=repr)
def test_malformed_body_with_a_valid_crc(body, problem):
    with pytest.raises(SnapshotFormatError, match=problem):
        decode(seal(body))


@pytest.mark.parametrize("depth", [format.MAX_DEPTH + 1, 100_000])   # and past the recursion limit
def test_nesting_deeper_than_max_depth_with_a_valid_crc(depth):
    with pytest.raises(SnapshotFormatError, match="nests too deeply"):
        decode(seal((b"L" + u32(1)) * depth + b"N"))


@pytest.mark.parametrize("value, name", [
    (1.5, "float"), ({1, 2}, "set"), ([1, [object()]], "object"), ({"a": 1j}, "complex"),
])
def test_encode_refuses_unsupported_types(value, name):
    with pytest.raises(TypeError, match=f"cannot hold a {name}"):
        encode(value)


@pytest.mark.parametrize("key", [1, b"k", None, (1,)])
def test_encode_refuses_non_str_keys(key):
    with pytest.raises(TypeError, match="is not a str"):
        encode({"ok": {key: 1}})


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(out) + 1)
        kind = rng.randrange(4)
        if kind == 0 and at < len(out):
            out[at] = rng.randrange(256)
        elif kind == 1:   # a header with a plausible or absurd length
            out[at:at] = rng.choice(b"LDSBI").to_bytes(1, "little") + u32(
                rng.choice([0, 1, 2, 255, 0xFFFFFFFF]))
        elif kind == 2:
            del out[at:at + rng.randint(1, 8)]
        else:
            out[at:at] = rng.randbytes(rng.randint(1, 4))
    return bytes(out)


def test_fuzzed_files_are_refused_or_read():
    """Random mutations of a whole file (the CRC catches them) and of a body then resealed
    with a valid CRC (the parser must catch them): a value or SnapshotFormatError, nothing else."""
    rng = random.Random(20240611)
    data = encode(SAMPLE)
    body = data[HEADER:-4]
    outcomes = {"raw": set(), "resealed": set()}
    for i in range(2000):
        kind = "resealed" if i % 2 else "raw"
        bad = seal(mutate(rng, body)) if i % 2 else mutate(rng, data)
        try:
            decode(bad)
            outcomes[kind].add("read")
        except SnapshotFormatError as e:
            outcomes[kind].add(str(e).split(":")[0])
    assert outcomes["raw"] >= {"corrupted", "truncated"}
    assert outcomes["resealed"] >= {"read", "corrupted"}


def test_read_file(tmp_path):
    (tmp_path / "state").write_bytes(encode(SAMPLE))
    assert format.read_file(str(tmp_path / "state")) == SAMPLE
    with pytest.raises(OSError):
        format.read_file(str(tmp_path / "absent"))


def test_read_file_refuses_an_oversized_file_before_reading_it(tmp_path):
    path = tmp_path / "huge"
    path.write_bytes(encode(None))
    with open(path, "r+b") as f:
        f.truncate(format.MAX_STATE_BYTES + 1)   # sparse: no 64 MiB written
    with pytest.raises(SnapshotFormatError, match=f"{format.MAX_STATE_BYTES + 1} bytes is larger"):
        format.read_file(str(path))


# -- records -------------------------------------------------------------------------------

VIRTIO = VirtioDeviceState(device_type=1, avail_features=1 << 32 | 0x30, acked_features=1 << 32,
                           activated=True)
QUEUES = [QueueState(max_size=256, size=128, ready=True, desc_table=0x1000, avail_ring=0x2000,
                     used_ring=0x3000, next_avail=65535, next_used=7, num_added=3,
                     event_idx_enabled=True),
          QueueState(size=64)]
RECORDS = [
    VIRTIO, QUEUES[0],
    MmioTransportState(device_status=0xF, device_features_sel=1, driver_features_sel=1,
                       driver_features=0x30, queue_sel=1, interrupt_status=3,
                       config_generation=2, queues=QUEUES),
    NetState(virtio=VIRTIO, guest_mac=b"\x06\x00\xac\x10\x00\x02", mtu=1500, deferred_rx=(5, 1514)),
    NetState(virtio=VIRTIO, guest_mac=None, mtu=None, deferred_rx=None),
    BlockState(virtio=VIRTIO, read_only=True, disk_id=b"rootfs\0", capacity=2**40),
    EntropyState(virtio=VIRTIO),
    VsockState(virtio=VIRTIO, guest_cid=2**32 - 1),
    SerialState(dll=1, dlm=2, ier=0x0F, lcr=0x1B, mcr=0x0B, lsr=0x61, msr=0xB0, scr=0x5A,
                thr_empty_pending=True, rx_fifo=[0x41, 0, 0xFF]),
    I8042State(status=0x1D, control=0x47, outp=0xCF, cmd=0x60, kbd_cmd=0xED, buffer=[0xFA, 0xAA]),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_record_round_trip(record):
    back = records.from_tree(type(record), decode(encode(records.to_tree(record))), "dev")
    assert back == record
    assert back != type(record)()   # the values above are not the defaults


DELETE = object()
NET, TRANSPORT = RECORDS[3], RECORDS[2]
NAMES = {NetState: "net", MmioTransportState: "net transport", BlockState: "block",
         SerialState: "serial", I8042State: "i8042"}


def edit(tree: dict, path: str, value):
    """`tree` with the field at `path` ("queues.1.ready") set to `value` or deleted."""
    if not path:
        return value
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    node = tree
    for key in keys[:-1]:
        node = node[key]
    if value is DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return tree


@pytest.mark.parametrize("record, path, value, problem", [
    (NET, "bogus", 1, r"^net: unknown fields \['bogus'\]"),
    (NET, "virtio.extra", 0, r"^net\.virtio: unknown fields \['extra'\]"),
    (NET, "mtu", DELETE, r"^net: missing fields \['mtu'\]"),
    (NET, "virtio.activated", DELETE, r"^net\.virtio: missing fields \['activated'\]"),
    (NET, "virtio.acked_features", "1", r"^net\.virtio\.acked_features: str '1' does not fit"),
    (NET, "virtio.acked_features", True, r"^net\.virtio\.acked_features: bool True does not fit"),
    (NET, "virtio.activated", 1, r"^net\.virtio\.activated: int 1 does not fit"),
    (NET, "virtio.activated", None, r"^net\.virtio\.activated: NoneType"),
    (NET, "mtu", False, r"^net\.mtu: bool False does not fit"),
    (NET, "guest_mac", "06:00:00:00:00:00", r"^net\.guest_mac: str '06:00"),
    (NET, "guest_mac", [6, 0], r"^net\.guest_mac: list"),
    (NET, "deferred_rx", [5], r"^net\.deferred_rx: list \[5\] does not fit"),
    (NET, "deferred_rx", [5, 1514, 0], r"^net\.deferred_rx: list \[5, 1514, 0\] does not fit"),
    (NET, "deferred_rx", [5, "1514"], r"^net\.deferred_rx\[1\]: str '1514' does not fit"),
    (NET, "deferred_rx", 5, r"^net\.deferred_rx: int 5 does not fit"),
    (NET, "virtio", [0, 0, 0, False], r"^net\.virtio: expected a record, found list"),
    (NET, "virtio", None, r"^net\.virtio: expected a record, found NoneType"),
    (TRANSPORT, "queues.1.ready", 1, r"^net transport\.queues\[1\]\.ready: int 1 does not fit"),
    (TRANSPORT, "queues.0.size", b"\x80", r"^net transport\.queues\[0\]\.size: bytes"),
    (TRANSPORT, "queues.0.unknown", 1, r"^net transport\.queues\[0\]: unknown fields"),
    (TRANSPORT, "queues.1", [256, 256], r"^net transport\.queues\[1\]: expected a record"),
    (TRANSPORT, "queues", {"0": {}}, r"^net transport\.queues: dict"),
    (BlockState(), "disk_id", "root", r"^block\.disk_id: str 'root' does not fit"),
    (SerialState(), "rx_fifo", [1, True], r"^serial\.rx_fifo\[1\]: bool True does not fit"),
    (I8042State(), "", [0x1C], r"^i8042: expected a record, found list"),
])
def test_record_refusals(record, path, value, problem):
    tree = edit(records.to_tree(record), path, value)
    with pytest.raises(SnapshotFormatError, match=problem):
        records.from_tree(type(record), tree, NAMES[type(record)])
