"""musl, the C library of pyrite images: fetched from Debian's pool, checked, built once, cached.

musl's own sources are never in this repository. `musl_build()` downloads the pinned
tarball (version and sha256 below), unpacks it into a temporary directory, applies the
overlay in ``musl_overlay/`` (files of ours that replace or add to musl's), removes the
x86-64 assembly files that contain a ``syscall`` instruction (so musl's generic C versions
are used), runs musl's own ``configure`` and ``make`` with pyrite's flags, and keeps
``include/`` and ``lib/libc.a`` under ``$PYRITE_CACHE/musl/<key>`` (``~/.cache/pyrite``).
The key covers the version, the flags, the compiler and the overlay files, so a change to
any of them builds a new library beside the old one.

System calls: the overlay's ``arch/x86_64/syscall_arch.h`` turns every ``__syscallN`` into
a plain call of ``__pyrite_syscall(n, a, b, c, d, e, f)`` (the library OS's dispatcher,
libos/sys/syscall.c), so the C library runs at CPL 3 without a mode switch.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from pyrite.unikernel.cache import cache_root

MUSL_VERSION = "1.2.3"
MUSL_URL = f"http://deb.debian.org/debian/pool/main/m/musl/musl_{MUSL_VERSION}.orig.tar.gz"
MUSL_SHA256 = "7d5b0b6062521e4627e099e4c9dc8248d32a30285e959b7eecaa780cf8cfd4a4"
MUSL_SIZE = 1_058_642
OVERLAY_DIR = Path(__file__).resolve().parent / "musl_overlay"

# musl's x86-64 assembly with a `syscall` instruction: removed so that the generic C
# version (or the overlay's replacement) is built instead.
REMOVED_SOURCES = (
    "src/thread/x86_64/__set_thread_area.s",   # overlay: arch_prctl(ARCH_SET_FS) in C
    "src/thread/x86_64/syscall_cp.s",          # overlay: calls __pyrite_syscall
    "src/thread/x86_64/clone.s",               # generic: -ENOSYS (single-threaded)
    "src/thread/x86_64/__unmapself.s",
    "src/signal/x86_64/restore.s",
    "src/process/x86_64/vfork.s",
)

# Textual edits of musl's files (file, old, new); each `old` must occur exactly once.
# a_crash() (musl's "cannot go on": heap corruption, failed TLS set-up) executes `hlt`,
# which at CPL 3 the library OS emulates as "wait for an interrupt": make it `ud2`, an
# invalid-opcode crash report with the address.
PATCHES = (
    ("arch/x86_64/atomic_arch.h", '__asm__ __volatile__( "hlt" : : : "memory" );',
     '__asm__ __volatile__( "ud2" : : : "memory" );'),
)

# Flags added to musl's own: no red zone (in ring-0 images, interrupts at CPL 0 share the
# stack), position-dependent code (images are linked at 1 MiB), no CET notes or endbr64,
# stack-clash protection (no large frame jumps over a stack's guard page).
# SSE stays on: musl's printf, strtod and libm need floating point.
MUSL_CFLAGS = ("-mno-red-zone", "-fno-pic", "-fno-pie", "-fcf-protection=none", "-fno-stack-protector",
               "-fstack-clash-protection")
# Components compiled at -O3 (the rest at musl's -Os): musl's configure's default
# (internal, malloc, string) plus the maths library, stdio (printf) and stdlib.
MUSL_OPTIMIZE = "internal,malloc,string,math,stdio,stdlib"


class MuslError(Exception):
    """musl could not be fetched or built; the message says why."""


def _gcc() -> str:
    gcc = shutil.which(os.environ.get("PYRITE_GCC", "gcc"))
    if gcc is None:
        raise MuslError("gcc not found: install gcc (e.g. `apt-get install gcc`) to build pyrite images")
    return gcc


def _overlay_files() -> list[Path]:
    return sorted(p for p in OVERLAY_DIR.rglob("*") if p.is_file())


def build_key(gcc: str, gcc_version: str) -> str:
    h = hashlib.sha256()
    for part in [MUSL_VERSION, MUSL_SHA256, " ".join(MUSL_CFLAGS), MUSL_OPTIMIZE, gcc, gcc_version,
                 " ".join(REMOVED_SOURCES), repr(PATCHES)]:
        h.update(part.encode() + b"\0")
    for path in _overlay_files():
        h.update(str(path.relative_to(OVERLAY_DIR)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:24]


def fetch_source(downloads: Path) -> Path:
    """The pinned musl tarball in `downloads`, fetched if missing; its sha256 is checked every time."""
    downloads.mkdir(parents=True, exist_ok=True)
    tarball = downloads / f"musl_{MUSL_VERSION}.orig.tar.gz"
    if not tarball.exists():
        fd, partial = tempfile.mkstemp(prefix=tarball.name, dir=downloads)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(MUSL_URL, timeout=120) as response:
                shutil.copyfileobj(response, out)
            os.replace(partial, tarball)
        except OSError as e:
            raise MuslError(f"cannot fetch musl {MUSL_VERSION} from {MUSL_URL}: {e}") from e
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    if digest != MUSL_SHA256:
        tarball.unlink()
        raise MuslError(f"{tarball}: sha256 {digest}, expected {MUSL_SHA256} (musl {MUSL_VERSION} from "
                        f"{MUSL_URL}); the file was removed, the next build fetches it again")
    return tarball


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise MuslError(f"musl {MUSL_VERSION}: {what} failed ({' '.join(cmd)}):\n{tail}")


def _prepare_tree(tarball: Path, work: Path) -> Path:
    with tarfile.open(tarball) as tar:
        tar.extractall(work, filter="data")
    tree = work / f"musl-{MUSL_VERSION}"
    for rel in REMOVED_SOURCES:
        (tree / rel).unlink()
    for rel, old, new in PATCHES:
        text = (tree / rel).read_text()
        if text.count(old) != 1:
            raise MuslError(f"musl {MUSL_VERSION}: {rel} does not contain {old!r} exactly once")
        (tree / rel).write_text(text.replace(old, new))
    for path in _overlay_files():
        target = tree / path.relative_to(OVERLAY_DIR)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return tree


def _build(tarball: Path, out: Path, gcc: str) -> None:
    with tempfile.TemporaryDirectory(prefix="musl-build-", dir=out.parent) as tmp:
        tree = _prepare_tree(tarball, Path(tmp))
        prefix = Path(tmp) / "install"
        env_cc = f"CC={gcc}"
        _run(["./configure", f"--prefix={prefix}", "--disable-shared", f"--enable-optimize={MUSL_OPTIMIZE}",
              env_cc, f"CFLAGS={' '.join(MUSL_CFLAGS)}"], tree, "configure")
        jobs = str(max(1, min(4, os.cpu_count() or 1)))
        _run(["make", f"-j{jobs}", "lib/libc.a"], tree, "make")
        _run(["make", "install-headers"], tree, "make install-headers")
        (prefix / "lib").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tree / "lib" / "libc.a", prefix / "lib" / "libc.a")
        shutil.copyfile(tree / "COPYRIGHT", prefix / "COPYRIGHT")
        shutil.copyfile(tree / "arch" / "x86_64" / "bits" / "syscall.h.in", prefix / "syscall.h.in")
        os.rename(prefix, out)


@contextlib.contextmanager
def _locked(path: Path):
    with open(path, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _roots() -> list[Path]:
    """Where built musls are: under the cache in use, then (read only: a build is named by
    its key, so any copy is as good) under the default cache, so that a private
    $PYRITE_CACHE (tests use one per test) does not build musl again."""
    default = Path(os.path.expanduser("~")) / ".cache" / "pyrite" / "musl"
    roots = [Path(cache_root()) / "musl"]
    return roots if roots[0] == default else roots + [default]


def musl_build(gcc: str | None = None, gcc_version: str | None = None) -> Path:
    """Directory holding musl's include/ and lib/libc.a, built on first use (a minute or two)."""
    gcc = gcc or _gcc()
    if gcc_version is None:
        gcc_version = subprocess.run([gcc, "-dumpfullversion", "-dumpversion"], capture_output=True,
                                     text=True).stdout.strip()
    name = f"musl-{MUSL_VERSION}-{build_key(gcc, gcc_version)}"
    for root in _roots():
        if (root / name / "lib" / "libc.a").exists():
            return root / name
    root = _roots()[0]
    out = root / name
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / ".lock"):
        if not (out / "lib" / "libc.a").exists():        # another process may have built it meanwhile
            _build(fetch_source(Path(cache_root()) / "downloads"), out, gcc)
    return out


def syscall_names(musl_dir: Path) -> dict[int, str]:
    """Linux x86-64 system call numbers -> names, from musl's own table (bits/syscall.h.in)."""
    names = {}
    for m in re.finditer(r"^#define __NR_(\w+)\s+(\d+)\s*$", (musl_dir / "syscall.h.in").read_text(), re.M):
        names.setdefault(int(m.group(2)), m.group(1))
    return names
