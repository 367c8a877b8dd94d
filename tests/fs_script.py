"""The file system script the fs tests share: tests/guests/fsh.c commands whose output must
be the same on Linux (the host's own file system), on the library OS's ramfs and ext2 (natively
and in guests). Paths are relative: each run starts in its own empty directory."""
from __future__ import annotations

LONG_NAME = "n" * 256

SCRIPT = (
    "mkdir a mkdir a put a/f hello append a/f +world show a/f stat a/f readat a/f 3 10 readat a/f 100 5 "
    "readat a/f 11 4 mkdir a/sub rename a/f a/sub/g ls a ls a/sub stat a/sub rmdir a/sub unlink a/sub/g "
    "rmdir a/sub symlink x a/l put a/x data show a/l lstat a/l stat a/l readlink a/l readlink a/x "
    "symlink loop2 loop1 symlink loop1 loop2 show loop1 open loop1 rn unlink loop1 unlink loop2 "
    "seekcheck sk dupcheck dd "
    "write big 300000 7 expect big 300000 7 truncate big 1000 expect big 1000 7 truncate big 5000 cat big "
    "unlink a rmdir a/x rmdir . rmdir .. open nonexist r open a/x d open a w open a/x cx open a/x/ r "
    "open a/new cx open a/new cx open a/new ct mkdir a/x/y mkdir nonexist/y "
    "link a/x a/hard stat a/x unlink a/hard stat a/x link a a/dirlink "
    "rename a a/inside mkdir b put b/file 1 rename a b rmdir b rename big a rename a big "
    "rename a/x a/x rename a/x a/y rename a/y a/x stat a/x rename nonexist zz unlink a/x/ "
    "chmod a/x 600 stat a/x access a/x x access a/x r access nonexist r "
    f"mkdir {LONG_NAME} put {LONG_NAME} x stat {LONG_NAME} "
    "mkfiles b 60 700 checkfiles b 60 700 rmrf b "
    "write a/sub2 0 1 ls a write m 10000 3 mmapcheck m unlink m rmrf a unlink big ls ."
).split()


def pattern(size: int, seed: int) -> bytes:
    """The bytes `fsh write PATH SIZE SEED` writes: byte i is byte i % 8 of the 64-bit LCG
    step of seed + i // 8."""
    out = bytearray()
    for word in range((size + 7) // 8):
        x = ((seed + word) * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        out += x.to_bytes(8, "little")
    return bytes(out[:size])
