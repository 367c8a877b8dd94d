"""MicroPython's source tree: Debian's source package, fetched once, checked against its pinned
size and sha256 (from Debian's .dsc), unpacked and patched under the pyrite cache. Nothing of
it is in the repository.

Debian's "+ds" repack leaves out bundled third-party code that pyrite does not use (lib/
berkeley-db-1.xx, mbedtls, libffi, lwip, micropython-lib, the vendor SDKs); py/, extmod/,
shared/, tools/, tests/, mpy-cross/, ports/unix/ and lib/{re1.5,uzlib,crypto-algorithms,
libm_dbl} are all there.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from pyrite.unikernel.cache import cache_root

VERSION = "1.25.0"
TARBALL = f"micropython_{VERSION}+ds.orig.tar.xz"
URL = f"http://deb.debian.org/debian/pool/main/m/micropython/{TARBALL}"
SIZE = 5_983_992
SHA256 = "7b25be99a502f070b2de81dafc08da7051d992325d6e67daa9045a918fffdbea"

# Our changes to the fetched tree, each an exact text that must occur once.
PATCHES = (
    # random draws first ask the port whether the VM generation ID changed (a snapshot
    # restore, maybe one of many clones) and reseed from the entropy source if so; a seed
    # (explicit, or at import) records the generation it was made in, so it stands.
    ("extmod/modrandom.c",
     "    yasmarang_pad = (uint32_t)seed;\n",
     "    #ifdef MICROPY_PY_RANDOM_GENERATION_CHANGED\n"
     "    (void)MICROPY_PY_RANDOM_GENERATION_CHANGED();\n"
     "    #endif\n"
     "    yasmarang_pad = (uint32_t)seed;\n"),
    ("extmod/modrandom.c",
     "static uint32_t yasmarang(void) {\n",
     "static uint32_t yasmarang(void) {\n"
     "    #ifdef MICROPY_PY_RANDOM_GENERATION_CHANGED\n"
     "    if (MICROPY_PY_RANDOM_GENERATION_CHANGED()) {\n"
     "        yasmarang_pad = (uint32_t)MICROPY_PY_RANDOM_SEED_INIT_FUNC;\n"
     "        yasmarang_n = 69;\n"
     "        yasmarang_d = 233;\n"
     "        yasmarang_dat = 0;\n"
     "    }\n"
     "    #endif\n"),
    # gc_init need not clear the allocation and finaliser tables of a heap the port knows
    # to be zero (fresh from calloc): at boot, that is megabytes not written (and no host
    # page faults for them).
    ("py/gc.c",
     "    memset(area->gc_alloc_table_start, 0, gc_finaliser_table_byte_len + "
     "area->gc_alloc_table_byte_len + ALLOC_TABLE_GAP_BYTE);\n",
     "    #ifdef MICROPY_GC_AREA_IS_ZERO\n"
     "    if (!MICROPY_GC_AREA_IS_ZERO)\n"
     "    #endif\n"
     "    memset(area->gc_alloc_table_start, 0, gc_finaliser_table_byte_len + "
     "area->gc_alloc_table_byte_len + ALLOC_TABLE_GAP_BYTE);\n"),
    # Frozen float constants as exact C hex literals (mpy-tool's %.16g can be off by one
    # bit, and prints inf/nan as C cannot read them), and no crash on doubles beyond the
    # float32 range in the (unused here) 30-bit float representation.
    ("tools/mpy-tool.py",
     '"static const mp_obj_float_t %s = {{&mp_type_float}, (mp_float_t)%.16g};"\n'
     '                % (obj_name, obj)',
     '"static const mp_obj_float_t %s = {{&mp_type_float}, (mp_float_t)%s};"\n'
     '                % (obj_name, c_float_literal(obj))'),
    ("tools/mpy-tool.py",
     'n = struct.unpack("<I", struct.pack("<f", obj))[0]',
     'n = struct.unpack("<I", struct.pack("<f", obj if abs(obj) <= 3.4e38 or obj != obj '
     'else obj * float("inf")))[0]'),
    ("tools/mpy-tool.py",
     '"static const mp_obj_complex_t %s = {{&mp_type_complex}, (mp_float_t)%.16g, (mp_float_t)%.16g};"\n'
     '                % (obj_name, obj.real, obj.imag)',
     '"static const mp_obj_complex_t %s = {{&mp_type_complex}, (mp_float_t)%s, (mp_float_t)%s};"\n'
     '                % (obj_name, c_float_literal(obj.real), c_float_literal(obj.imag))'),
    ("tools/mpy-tool.py",
     "\nclass FreezeError(Exception):",
     "\ndef c_float_literal(x):\n"
     "    if x != x:\n"
     "        return \"__builtin_nan(\\\"\\\")\"\n"
     "    if x in (float(\"inf\"), -float(\"inf\")):\n"
     "        return \"__builtin_inf()\" if x > 0 else \"-__builtin_inf()\"\n"
     "    return x.hex()\n"
     "\n\nclass FreezeError(Exception):"),
)

# Names the patched tree: a change of PATCHES unpacks a new one (and rebuilds what uses it).
TREE_KEY = hashlib.sha256(repr((SHA256, PATCHES)).encode()).hexdigest()[:12]


class SourceError(Exception):
    """The MicroPython source could not be fetched, checked or unpacked; says which and why."""


def micropython_dir() -> Path:
    return Path(cache_root()) / "micropython"


def source_tree() -> Path:
    """The unpacked, patched tree (fetched and unpacked on first use)."""
    tree = micropython_dir() / f"micropython-{VERSION}-{TREE_KEY}"
    if (tree / ".pyrite-ready").exists():
        return tree
    tarball = fetch_tarball()
    micropython_dir().mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="unpack-", dir=micropython_dir()))
    try:
        with tarfile.open(tarball) as tar:
            tar.extractall(tmp, filter="data")
        unpacked = tmp / f"micropython-{VERSION}"
        if not (unpacked / "py" / "mpconfig.h").exists():
            raise SourceError(f"{tarball}: no micropython-{VERSION}/py/mpconfig.h inside")
        _apply_patches(unpacked)
        (unpacked / ".pyrite-ready").write_text(f"{SHA256}\n")
        try:
            unpacked.rename(tree)
        except OSError:
            if not (tree / ".pyrite-ready").exists():   # lost a race: the other unpack is as good
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return tree


def fetch_tarball() -> Path:
    """Debian's orig tarball in the cache, verified (downloaded if missing or wrong)."""
    path = micropython_dir() / TARBALL
    if path.exists() and _sha256(path) == SHA256:
        return path
    micropython_dir().mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=TARBALL, dir=micropython_dir())
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(URL, timeout=120) as response:
            shutil.copyfileobj(response, out)
        size = os.path.getsize(partial)
        digest = _sha256(Path(partial))
        if size != SIZE or digest != SHA256:
            raise SourceError(f"{URL}: got {size} bytes with sha256 {digest}, "
                              f"expected {SIZE} bytes with sha256 {SHA256}")
        os.replace(partial, path)
    except OSError as e:
        raise SourceError(f"cannot fetch MicroPython's source {URL}: {e}") from e
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return path


def _apply_patches(tree: Path) -> None:
    for name, old, new in PATCHES:
        path = tree / name
        text = path.read_text()
        if text.count(old) != 1:
            raise SourceError(f"{path}: the text to patch occurs {text.count(old)} times, expected once")
        path.write_text(text.replace(old, new))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
