"""`pyrite snapshot rebase` without KVM: a diff's data (found with SEEK_DATA / SEEK_HOLE)
written onto its base in place, and the refusals."""
from __future__ import annotations

import os

import pytest

from pyrite.cli import main
from pyrite.memory import PAGE_SIZE
from pyrite.snapshot.rebase import RebaseError, data_extents, rebase


def sparse_file(path, size: int, pages: dict[int, bytes]) -> None:
    """`size` bytes of holes with `pages` (page index -> one page of data) written in."""
    with open(path, "wb") as f:
        f.truncate(size)
        for index, data in pages.items():
            f.seek(index * PAGE_SIZE)
            f.write(data)


def page(fill: int) -> bytes:
    return bytes([fill]) * PAGE_SIZE


@pytest.fixture
def files(tmp_path):
    base, diff = tmp_path / "base.mem", tmp_path / "diff.mem"
    base.write_bytes(b"".join(page(0xB0 + i) for i in range(16)))
    # Page 3 holds zeros written as data: the guest zeroed it, so it must reach the base.
    sparse_file(diff, 16 * PAGE_SIZE, {0: page(0xD0), 3: bytes(PAGE_SIZE), 4: page(0xD4), 15: page(0xDF)})
    return base, diff


def test_data_extents_are_the_written_pages(files):
    _, diff = files
    fd = os.open(diff, os.O_RDONLY)
    try:
        assert data_extents(fd, 16 * PAGE_SIZE) == [(0, PAGE_SIZE), (3 * PAGE_SIZE, 5 * PAGE_SIZE),
                                                    (15 * PAGE_SIZE, 16 * PAGE_SIZE)]
    finally:
        os.close(fd)


def test_rebase_writes_the_diffs_pages_and_keeps_the_rest(files):
    base, diff = files
    assert rebase(str(base), str(diff)) == 4 * PAGE_SIZE
    expected = [page(0xB0 + i) for i in range(16)]
    expected[0], expected[3], expected[4], expected[15] = page(0xD0), bytes(PAGE_SIZE), page(0xD4), page(0xDF)
    assert base.read_bytes() == b"".join(expected)


def test_an_empty_diff_changes_nothing(tmp_path):
    base, diff = tmp_path / "base.mem", tmp_path / "diff.mem"
    base.write_bytes(page(1) * 4)
    sparse_file(diff, 4 * PAGE_SIZE, {})
    assert rebase(str(base), str(diff)) == 0
    assert base.read_bytes() == page(1) * 4


def test_sizes_that_differ_are_refused_and_the_base_is_untouched(files):
    base, diff = files
    with open(diff, "r+b") as f:
        f.truncate(17 * PAGE_SIZE)
    before = base.read_bytes()
    with pytest.raises(RebaseError, match=f"diff memory file {diff} is {17 * PAGE_SIZE} bytes, the base "
                                          f"memory file {base} {16 * PAGE_SIZE}"):
        rebase(str(base), str(diff))
    assert base.read_bytes() == before


def test_missing_files_are_named(files, tmp_path):
    base, diff = files
    with pytest.raises(RebaseError, match=f"base memory file {tmp_path}/nope: no such file"):
        rebase(str(tmp_path / "nope"), str(diff))
    with pytest.raises(RebaseError, match=f"diff memory file {tmp_path}/nope: no such file"):
        rebase(str(base), str(tmp_path / "nope"))


def test_a_file_onto_itself_and_a_directory_are_refused(files, tmp_path):
    base, _ = files
    with pytest.raises(RebaseError, match="is the base memory file"):
        rebase(str(base), str(base))
    with pytest.raises(RebaseError, match="is a directory|not a regular file"):
        rebase(str(base), str(tmp_path))


def test_cli_rebase(files, capsys):
    base, diff = files
    assert main(["snapshot", "rebase", str(base), str(diff)]) == 0
    assert base.read_bytes()[:PAGE_SIZE] == page(0xD0)
    assert f"{4 * PAGE_SIZE} bytes of {diff} written onto {base}" in capsys.readouterr().err


def test_cli_rebase_errors(files, tmp_path, capsys):
    base, diff = files
    with open(base, "r+b") as f:
        f.truncate(PAGE_SIZE)
    assert main(["snapshot", "rebase", str(base), str(diff)]) == 1
    assert "pyrite snapshot rebase: diff memory file" in capsys.readouterr().err
    assert main(["snapshot", "rebase", str(base)]) == 2
    assert "expected BASE_MEM DIFF_MEM" in capsys.readouterr().err
    assert main(["snapshot", "frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
    assert main(["snapshot"]) == 2
