"""`pyrite unikernel build --files DIR`: the newc cpio archive, checked with GNU cpio, the
reference reader of the format."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from pyrite.unikernel import cli
from pyrite.unikernel.files import FilesError, initrd_path, pack_directory, write_archive

CPIO = shutil.which("cpio")
needs_cpio = pytest.mark.skipif(CPIO is None, reason="cpio not installed (apt-get install cpio)")


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tree"
    (root / "etc" / "deep" / "er").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    (root / "etc" / "config.txt").write_text("key = value\n")
    (root / "etc" / "deep" / "er" / "blob.bin").write_bytes(os.urandom(100_003))
    (root / "empty").write_bytes(b"")
    (root / "script.sh").write_text("#!/bin/sh\n")
    (root / "script.sh").chmod(0o755)
    (root / "link").symlink_to("etc/config.txt")
    os.utime(root / "etc" / "config.txt", (1_600_000_000, 1_600_000_000))
    return root


@needs_cpio
def test_gnu_cpio_unpacks_the_same_tree(tmp_path, tree):
    archive, count = write_archive(tree, tmp_path / "files.cpio")
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run([CPIO, "-idm", "--quiet"], stdin=archive.open("rb"), cwd=out, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert count == 9
    for path in tree.rglob("*"):
        twin = out / path.relative_to(tree)
        assert twin.is_symlink() == path.is_symlink(), path
        if path.is_symlink():
            assert os.readlink(twin) == os.readlink(path)
        elif path.is_file():
            assert twin.read_bytes() == path.read_bytes(), path
            assert twin.stat().st_mode == path.stat().st_mode
    assert (out / "etc" / "config.txt").stat().st_mtime == 1_600_000_000
    assert (out / "empty-dir").is_dir()


@needs_cpio
def test_archive_lists_sorted_paths_owned_by_root(tmp_path, tree):
    archive, _ = write_archive(tree, tmp_path / "files.cpio")
    listing = subprocess.run([CPIO, "-itv", "--quiet"], stdin=archive.open("rb"), capture_output=True,
                             text=True, check=True).stdout.splitlines()
    names = [line.split()[-1] if "->" not in line else line.split()[-3] for line in listing]
    assert names == ["empty", "empty-dir", "etc", "etc/config.txt", "etc/deep", "etc/deep/er",
                     "etc/deep/er/blob.bin", "link", "script.sh"]
    assert all(line.split()[2:4] == ["root", "root"] for line in listing)


def test_archive_is_deterministic_and_newc(tree):
    first = pack_directory(tree)
    assert first == pack_directory(tree)
    assert first.startswith(b"070701") and b"TRAILER!!!\0" in first[-128:]
    assert len(first) % 4 == 0


def test_special_files_and_missing_directories_are_refused(tmp_path, tree):
    os.mkfifo(tree / "fifo")
    with pytest.raises(FilesError, match="fifo is not a regular file, directory or symbolic link"):
        pack_directory(tree)
    with pytest.raises(FilesError, match="not a directory"):
        pack_directory(tmp_path / "nowhere")


def test_initrd_sits_beside_the_image():
    assert str(initrd_path("out/app.img")) == "out/app.cpio"
    assert str(initrd_path("app")) == "app.cpio"


def test_build_refuses_a_missing_files_directory_before_compiling(tmp_path, capsys):
    source = tmp_path / "app.c"
    source.write_text("int main(void) { return 0; }\n")
    status = cli.main(["build", str(source), "-o", str(tmp_path / "app.img"), "--files", str(tmp_path / "none")])
    assert status == 2
    assert f"--files {tmp_path / 'none'}: not a directory" in capsys.readouterr().err
    assert not (tmp_path / "app.img").exists()


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")
def test_build_with_files_writes_the_archive(tmp_path, tree, capsys):
    source = tmp_path / "app.c"
    source.write_text("int main(void) { return 0; }\n")
    assert cli.main(["build", str(source), "-o", str(tmp_path / "app.img"), "--files", str(tree)]) == 0
    assert (tmp_path / "app.cpio").read_bytes() == pack_directory(tree)
    assert f"run with `pyrite run {tmp_path / 'app.img'} --initrd {tmp_path / 'app.cpio'}`" in capsys.readouterr().out
