"""The library OS's file systems (libos/fs) compiled natively with the host's gcc, under
AddressSanitizer and UBSan, driven by tests/guests/fsh.c through a shim (fs_native/): the
same commands run on Linux give the reference output. ext2 images are made by mke2fs and
checked by e2fsck and debugfs (e2fsprogs), the format's own tools."""
from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pyrite.unikernel.files import write_archive

REPO = Path(__file__).resolve().parents[2]
LIBOS = REPO / "src" / "pyrite" / "unikernel" / "libos"
FS_SOURCES = ["vfs", "file", "calls", "devices", "ramfs", "cpio", "bcache", "ext2_super", "ext2_inode", "ext2_dir"]
sys.path.insert(0, str(REPO / "tests"))
from fs_script import SCRIPT, pattern  # noqa: E402

GCC = shutil.which("gcc")
MKE2FS, E2FSCK, DEBUGFS = (shutil.which(t) or shutil.which(f"/sbin/{t}") for t in ("mke2fs", "e2fsck", "debugfs"))
pytestmark = pytest.mark.skipif(GCC is None, reason="gcc not installed")
needs_e2fsprogs = pytest.mark.skipif(not (MKE2FS and E2FSCK and DEBUGFS),
                                     reason="e2fsprogs not installed (apt-get install e2fsprogs)")


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    """fsh on the library OS's file systems (root: ramfs; $FSH_EXT2 at /mnt/vda; $FSH_CPIO unpacked)."""
    out = tmp_path_factory.mktemp("native") / "fsh"
    cmd = [GCC, "-std=gnu11", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
           "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter", "-Wno-unused-function", "-DFSH_NATIVE",
           f"-I{LIBOS / 'fs'}", f"-I{REPO / 'tests' / 'unit' / 'fs_native'}", "-idirafter", str(LIBOS / "include"),
           str(REPO / "tests" / "guests" / "fsh.c"), str(REPO / "tests" / "unit" / "fs_native" / "host_root.c"),
           *[str(LIBOS / "fs" / f"{name}.c") for name in FS_SOURCES], "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def host_fsh(tmp_path_factory):
    out = tmp_path_factory.mktemp("host") / "fsh"
    subprocess.run([GCC, "-O1", str(REPO / "tests" / "guests" / "fsh.c"), "-o", str(out)], check=True)
    return out


def run(binary: Path, *args: str, ext2: str | None = None, cpio: Path | None = None, cwd: Path | None = None) -> str:
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
    env.pop("FSH_EXT2", None)
    env.pop("FSH_CPIO", None)
    if ext2:
        env["FSH_EXT2"] = ext2
    if cpio:
        env["FSH_CPIO"] = str(cpio)
    proc = subprocess.run([str(binary), *args], capture_output=True, env=env, cwd=cwd, timeout=120)
    stdout, stderr = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, f"status {proc.returncode}\n{stdout}\n{stderr}"
    return stdout


@pytest.fixture(scope="module")
def linux_output(host_fsh, tmp_path_factory):
    return run(host_fsh, *SCRIPT, cwd=tmp_path_factory.mktemp("linux"))


def mkfs(path: Path, size: str = "16M", *options: str, source: Path | None = None) -> Path:
    cmd = [MKE2FS, "-q", "-F", "-t", "ext2", *options, *(["-d", str(source)] if source else []), str(path), size]
    subprocess.run(cmd, check=True, capture_output=True)
    return path


def fsck(path: Path) -> None:
    proc = subprocess.run([E2FSCK, "-fn", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, f"e2fsck -fn {path}: {proc.returncode}\n{proc.stdout}{proc.stderr}"


def debugfs(path: Path, request: str) -> bytes:
    return subprocess.run([DEBUGFS, "-R", request, str(path)], capture_output=True, check=True).stdout


def test_ramfs_behaves_as_linux(native, linux_output):
    assert run(native, "mkdir", "/tmp/w", "cd", "/tmp/w", *SCRIPT).split("\n", 1)[1] == linux_output


@needs_e2fsprogs
@pytest.mark.parametrize("block_size", ["1024", "4096"])
def test_ext2_behaves_as_linux_and_stays_clean(native, linux_output, tmp_path, block_size):
    image = mkfs(tmp_path / "disk.img", "16M", "-b", block_size)
    out = run(native, "cd", "/mnt/vda", "mkdir", "w", "cd", "w", *SCRIPT, ext2=str(image))
    assert out.split("\n", 1)[1] == linux_output
    fsck(image)


@needs_e2fsprogs
def test_files_from_mke2fs_read_back_and_ours_read_by_debugfs(native, tmp_path):
    source = tmp_path / "src"
    (source / "d1" / "d2").mkdir(parents=True)
    blob = os.urandom(1_234_567)
    (source / "d1" / "blob.bin").write_bytes(blob)
    (source / "hello.txt").write_text("hello\n")
    (source / "link").symlink_to("hello.txt")
    for i in range(100):                # more than one directory block
        (source / "d1" / "d2" / f"entry-with-a-long-name-{i:03}").write_text(str(i))
    image = mkfs(tmp_path / "disk.img", "16M", source=source)
    out = run(native, "cd", "/mnt/vda", "chown", "hello.txt", "1234:567", "show", "hello.txt", "readlink", "link", "show", "d1/d2/entry-with-a-long-name-077",
              "cat", "d1/blob.bin", "write", "made.bin", "3000000", "9", "put", "d1/note", "guest words",
              "rename", "d1/d2/entry-with-a-long-name-050", "moved", "unlink", "d1/d2/entry-with-a-long-name-051",
              ext2=str(image))
    assert "show hello.txt: [hello\n]" in out
    assert "chown hello.txt -> 1234:567" in out
    assert "User:  1234   Group:   567" in debugfs(image, "stat /hello.txt").decode()
    assert "readlink link -> hello.txt" in out
    assert "show d1/d2/entry-with-a-long-name-077: [77]" in out
    assert re.search(r"cat d1/blob.bin size=1234567 fnv=", out)
    fsck(image)
    assert debugfs(image, "cat /made.bin") == pattern(3_000_000, 9)
    assert debugfs(image, "cat /d1/note") == b"guest words"
    assert debugfs(image, "cat /moved") == b"50"
    listing = debugfs(image, "ls /d1/d2").decode()
    assert "entry-with-a-long-name-051" not in listing and "entry-with-a-long-name-052" in listing


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


@needs_e2fsprogs
def test_triple_indirect_blocks_and_truncate_free_everything(native, tmp_path):
    """1 KiB blocks: an offset past 12 + 256 + 256^2 blocks needs the triple indirect tree."""
    image = mkfs(tmp_path / "disk.img", "16M", "-b", "1024")
    free_before = free_blocks(image)
    far = 12 + 256 + 256 * 256 + 1000
    out = run(native, "cd", "/mnt/vda", "put", "sparse", "start", "pwrite", "sparse", str(far * 1024), "far away",
              "readat", "sparse", str(far * 1024 - 2), "12", "readat", "sparse", "68000000", "4", "stat", "sparse",
              ext2=str(image))
    assert f"readat sparse {far * 1024 - 2} 12 -> 10 [..far away]" in out
    assert "readat sparse 68000000 4 -> 4 [....]" in out
    fsck(image)
    assert debugfs(image, "cat /sparse")[far * 1024:] == b"far away"
    run(native, "cd", "/mnt/vda", "truncate", "sparse", "0", "unlink", "sparse", ext2=str(image))
    fsck(image)
    assert free_blocks(image) == free_before


def free_blocks(image: Path) -> int:
    out = subprocess.run(["dumpe2fs", "-h", str(image)], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"Free blocks:\s+(\d+)", out).group(1))


@needs_e2fsprogs
def test_many_block_groups_and_a_directory_with_indirect_blocks(native, tmp_path):
    """128 MiB with 1 KiB blocks: 16 block groups (descriptors past the first), and 3000
    entries in one directory (its blocks past the 12 direct ones)."""
    image = mkfs(tmp_path / "disk.img", "128M", "-b", "1024")
    free_before = free_blocks(image)
    out = run(native, "cd", "/mnt/vda", "mkdir", "d", "mkfiles", "d", "3000", "9000", "write", "big", "60000000", "5",
              "checkfiles", "d", "3000", "9000", "expect", "big", "60000000", "5", ext2=str(image))
    assert "checkfiles d 3000 9000\n" in out and "expect big ok" in out
    fsck(image)
    assert debugfs(image, "cat /d/f2999") == pattern(9000, 2999)     # mkfiles seeds file k with k
    run(native, "cd", "/mnt/vda", "rmrf", "d", "unlink", "big", ext2=str(image))
    fsck(image)
    assert free_blocks(image) == free_before


@needs_e2fsprogs
def test_hashed_directory_changed_linearly_stays_valid(native, tmp_path):
    """`e2fsck -D` gives a large directory a hash index (dir_index); we search it linearly and
    a change drops the index flag, which leaves a valid directory."""
    source = tmp_path / "src"
    (source / "d").mkdir(parents=True)
    for i in range(2000):
        (source / "d" / f"entry-{i:04}").write_text(str(i))
    image = mkfs(tmp_path / "disk.img", "32M", source=source)
    subprocess.run([E2FSCK, "-fyD", str(image)], capture_output=True)
    assert "Flags: 0x1000" in debugfs(image, "stat /d").decode()
    out = run(native, "cd", "/mnt/vda/d", "show", "entry-1999", "unlink", "entry-0005", "put", "new", "x",
              "rename", "entry-0007", "renamed", ext2=str(image))
    assert "show entry-1999: [1999]" in out
    fsck(image)
    assert "Flags: 0x0" in debugfs(image, "stat /d").decode()
    assert debugfs(image, "cat /d/renamed") == b"7" and debugfs(image, "cat /d/new") == b"x"


@needs_e2fsprogs
def test_file_removed_while_open_is_freed_at_its_close_or_the_end(native, tmp_path):
    image = mkfs(tmp_path / "disk.img", "8M")
    free_before = free_blocks(image)
    out = run(native, "cd", "/mnt/vda", "write", "held", "500000", "1", "hold", "held", "unlink", "held",
              "ls", ".", "write", "other", "1000", "2", ext2=str(image))
    assert "hold held" in out and "ls .: lost+found/\n" in out
    fsck(image)                         # no orphan inode: the end closed it and freed it
    assert free_blocks(image) == free_before - 1    # only "other"'s block remains


@needs_e2fsprogs
@pytest.mark.parametrize("seed", range(12))
def test_damaged_images_give_errors_not_crashes(native, tmp_path, seed):
    """Random bytes over the metadata (superblock, descriptors, bitmaps, inode table, the
    first directories): every call answers, with data or an errno; nothing crashes (ASan)."""
    source = tmp_path / "src"
    (source / "d").mkdir(parents=True)
    for i in range(40):
        (source / "d" / f"f{i}").write_bytes(os.urandom(i * 997))
    (source / "link").symlink_to("d/f3")
    image = mkfs(tmp_path / "disk.img", "4M", "-b", "1024", source=source)
    data = bytearray(image.read_bytes())
    rng = random.Random(seed)
    for _ in range(200):
        data[rng.randrange(1024, 120 * 1024)] = rng.randrange(256)
    image.write_bytes(data)
    words = ["ls", "/mnt/vda", "ls", "/mnt/vda/d", "show", "/mnt/vda/link", "write", "/mnt/vda/new", "20000", "1",
             "mkdir", "/mnt/vda/d/sub", "unlink", "/mnt/vda/d/f7", "rename", "/mnt/vda/d/f8", "/mnt/vda/moved",
             "truncate", "/mnt/vda/d/f9", "10", "rmdir", "/mnt/vda/d"]
    words += [w for i in range(0, 40, 3) for w in ("readat", f"/mnt/vda/d/f{i}", "1000", "3000")]
    out = run(native, *words, ext2=str(image))
    assert "\nfsh done failures=" in out          # every command answered, the program ended


@needs_e2fsprogs
def test_full_disk_gives_enospc_and_deleting_gives_the_space_back(native, tmp_path):
    image = mkfs(tmp_path / "disk.img", "4M")
    free_before = free_blocks(image)
    out = run(native, "cd", "/mnt/vda", "mkfiles", ".", "30", "50000", "write", "huge", "8000000", "1",
              "write", "after", "10", "2", "rmrf", "huge", ext2=str(image))
    assert "write ERR ENOSPC" in out
    assert "rmrf huge" in out
    fsck(image)
    run(native, "cd", "/mnt/vda", *[w for i in range(30) for w in ("unlink", f"f{i}")], "unlink", "after",
        ext2=str(image))
    fsck(image)
    assert free_blocks(image) == free_before


@needs_e2fsprogs
def test_read_only_drive_refuses_writes_with_erofs_and_says_so(native, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "f").write_text("kept")
    image = mkfs(tmp_path / "disk.img", "4M", source=source)
    before = image.read_bytes()
    out = run(native, "cd", "/mnt/vda", "show", "f", "put", "f", "x", "put", "new", "x", "mkdir", "d", "unlink", "f",
              "rename", "f", "g", "truncate", "f", "0", "open", "f", "w", "access", "f", "w", "open", "f", "r",
              ext2=f"{image},ro")
    assert "show f: [kept]" in out
    assert "pyrite: vda is mounted read-only (a read-only drive): writes fail with EROFS" in out
    assert out.count("ERR EROFS") == 8
    assert "open f r ok" in out
    assert image.read_bytes() == before


@needs_e2fsprogs
def test_ext4_images_are_refused_with_a_message(native, tmp_path):
    image = tmp_path / "ext4.img"
    subprocess.run([MKE2FS, "-q", "-F", "-t", "ext4", str(image), "8M"], check=True, capture_output=True)
    out = run(native, "ls", "/mnt/vda", ext2=str(image))
    assert "pyrite: vda: not mounted: ext2/3/4 features not supported" in out
    assert "make it with `mke2fs -t ext2`" in out
    assert "ls ERR ENOENT" in out


def test_initrd_archive_becomes_the_root(native, tmp_path):
    source = tmp_path / "src"
    (source / "etc").mkdir(parents=True)
    blob = os.urandom(300_001)
    (source / "etc" / "blob").write_bytes(blob)
    (source / "etc" / "conf").write_text("a=1\n")
    (source / "link").symlink_to("etc/conf")
    archive, _ = write_archive(source, tmp_path / "files.cpio")
    out = run(native, "ls", "/", "ls", "/etc", "cat", "/etc/blob", "show", "/link", "append", "/etc/conf", "b=2\n",
              "show", "/etc/conf", "cat", "/etc/blob", cpio=archive)
    assert "ls /: dev/ etc/ link@ tmp/" in out
    assert "ls /etc: blob  conf " in out
    assert out.count(f"cat /etc/blob size=300001 fnv={fnv1a64(blob)}") == 2
    assert "show /link: [a=1\n]" in out
    assert "show /etc/conf: [a=1\nb=2\n]" in out


def test_initrd_names_with_empty_and_dot_components(native, tmp_path):
    """Archives from other writers: "./" prefixes, doubled slashes, "a/." and parents
    that come after their files; a duplicate file is reported and skipped."""
    from pyrite.unikernel.files import TRAILER, _entry
    archive = tmp_path / "odd.cpio"
    archive.write_bytes(b"".join([
        _entry(".", 1, 0o40755, 0, b""), _entry("./x//y/./z", 2, 0o100644, 0, b"deep"),
        _entry("x/.", 3, 0o40700, 0, b""), _entry("/abs", 4, 0o100600, 0, b"slash"),
        _entry("abs", 5, 0o100600, 0, b"again"), _entry(TRAILER, 0, 0, 0, b"")]))
    out = run(native, "ls", "/", "ls", "/x", "show", "/x/y/z", "show", "/abs", "stat", "/x", cpio=archive)
    assert "ls /: abs  dev/ tmp/ x/" in out
    assert "ls /x: y/" in out and "show /x/y/z: [deep]" in out and "show /abs: [slash]" in out
    assert "stat /x type=dir size=0 nlink=0 mode=0700" in out
    assert "pyrite: initrd: could not unpack abs" in out


def test_damaged_initrd_is_reported(native, tmp_path):
    archive = tmp_path / "bad.cpio"
    archive.write_bytes(b"\x1f\x8b" + os.urandom(100))
    out = run(native, "ls", "/", cpio=archive)
    assert "pyrite: initrd: not a cpio archive in the newc format (070701); not unpacked" in out
    assert "ls /: dev/ tmp/" in out
