"""Build bootable images: application C sources + pyrite's library OS, with the host's gcc.

An image is one ELF64 file linked at 1 MiB and identity mapped. The default build boots
by PVH (its XEN_ELFNOTE_PHYS32_ENTRY note) and by the Linux 64-bit boot protocol (its
ELF e_entry); ``protocol="multiboot"`` builds a Multiboot 1 image instead (e_entry is
the 32-bit Multiboot entry, with a Multiboot header carrying a.out load addresses so
that QEMU loads the ELF64 file, and no PVH note). ``pvh_note=False`` leaves the note
out, so only the Linux 64-bit protocol can boot it.

Images are cached by content (sources, library OS, flags, gcc version) under
``$PYRITE_CACHE`` or ``~/.cache/pyrite/images``; the library OS objects are cached
there too, per set of build flags.
"""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Sequence

from pyrite import __version__
from pyrite.unikernel.cache import images_dir

LIBOS_DIR = Path(__file__).resolve().parent / "libos"
LIBOS_VERSION = __version__
PROTOCOLS = ("default", "multiboot")
DEFAULT_STACK_SIZE = 8 << 20        # the application's stack, as Linux's default `ulimit -s`
MIN_STACK_SIZE = 16 << 10
MAX_STACK_SIZE = 1 << 30
_SIZE_SUFFIXES = {"": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30}

# Guest code must run where CPL 0 is emulated and lacks SSE/xsave: general registers
# only, no red zone (interrupts at CPL 0 share the stack), no PIC/PIE, no stack protector;
# stack-clash protection probes every page of a large frame, so that no frame jumps over a
# stack's guard page.
GUEST_CFLAGS = (
    "-m64", "-O2", "-ffreestanding", "-fno-pic", "-fno-pie", "-mno-red-zone",
    "-fno-stack-protector", "-fstack-clash-protection", "-mgeneral-regs-only", "-fno-asynchronous-unwind-tables",
    "-fno-unwind-tables", "-fcf-protection=none", "-ffunction-sections", "-fdata-sections",
    "-fno-common", "-nostdinc",
)
LIBOS_WARNINGS = ("-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror=implicit-function-declaration")
LINK_FLAGS = (
    "-nostdlib", "-static", "-no-pie", "-Wl,--gc-sections", "-Wl,-z,max-page-size=0x1000",
    "-Wl,--no-warn-rwx-segments", "-Wl,--build-id=none", "-Wl,-z,noexecstack",
)
ENTRY_SYMBOLS = {"default": "linux64_entry", "multiboot": "multiboot_entry32"}


class BuildError(Exception):
    """The image could not be built; the message says why (gcc's own output included)."""


@functools.lru_cache(maxsize=None)
def _gcc() -> tuple[str, str, str]:
    """(path, version, builtin include directory) of the host gcc."""
    gcc = shutil.which(os.environ.get("PYRITE_GCC", "gcc"))
    if gcc is None:
        raise BuildError("gcc not found: install gcc (e.g. `apt-get install gcc`) to build pyrite images")
    try:
        version = subprocess.run([gcc, "-dumpfullversion", "-dumpversion"], capture_output=True,
                                 text=True, check=True).stdout.strip()
        include = subprocess.run([gcc, "-print-file-name=include"], capture_output=True,
                                 text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as e:
        raise BuildError(f"{gcc} does not run: {e}") from e
    return gcc, version, include


def cache_dir() -> Path:
    return Path(images_dir())


def _libos_files() -> list[Path]:
    return sorted(p for p in LIBOS_DIR.rglob("*") if p.is_file() and p.suffix in {".c", ".S", ".h", ".in"})


def _libos_objects_sources() -> list[Path]:
    return [p for p in _libos_files() if p.suffix in {".c", ".S"}]


def _local_headers(srcs: list[Path], cflags: Sequence[str]) -> list[bytes]:
    """The application's own headers (beside its sources or under -I directories), so that
    editing one rebuilds the image even though the cache key is computed without gcc."""
    dirs = {src.resolve().parent for src in srcs}
    dirs |= {Path(flag[2:]).resolve() for flag in cflags if flag.startswith("-I") and len(flag) > 2}
    found = []
    for directory in sorted(dirs):
        for header in sorted(directory.glob("*.h")):
            try:
                found.append(str(header).encode() + b"\0" + header.read_bytes())
            except OSError:
                continue
    return found


def _digest(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()[:32]


def _c_string(text: str) -> str:
    """A C string literal for `text` (any byte escaped that could end or bend it)."""
    out = []
    for byte in text.encode():
        ch = chr(byte)
        if ch in '"\\?' or not 0x20 <= byte < 0x7F:
            out.append(f"\\{byte:03o}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def parse_stack_size(text: str | int) -> int:
    """A stack size in bytes from `text`: a number with an optional K, M or G (KiB, MiB, GiB)
    suffix, rounded up to whole 4 KiB pages; BuildError names what is wrong."""
    if isinstance(text, int):
        size = text
    else:
        digits = text.strip().rstrip("BbIiGgMmKk")
        suffix = text.strip()[len(digits):].lower().rstrip("b")
        suffix = {"ki": "kib", "mi": "mib", "gi": "gib"}.get(suffix, suffix)
        if not digits.isdigit() or suffix not in _SIZE_SUFFIXES:
            raise BuildError(f"stack size {text!r}: expected a number of bytes with an optional "
                             "K, M or G suffix (e.g. 8M, 512K)")
        size = int(digits) * _SIZE_SUFFIXES[suffix]
    if not MIN_STACK_SIZE <= size <= MAX_STACK_SIZE:
        raise BuildError(f"stack size {text!r}: must be between {MIN_STACK_SIZE >> 10} KiB and "
                         f"{MAX_STACK_SIZE >> 30} GiB")
    return (size + 4095) & ~4095


def _build_info_source(name: str, cmdline: str, ring0: bool = False,
                       stack_size: int = DEFAULT_STACK_SIZE) -> str:
    privilege = "ring 0" if ring0 else "CPL 3 (exceptions and interrupts at CPL 0)"
    return (
        "/* generated by pyrite.unikernel.build */\n"
        "static const char info[] __attribute__((section(\".pyrite.info\"), used)) =\n"
        f"    \"pyrite-info\\0version=\" {_c_string(LIBOS_VERSION)}\n"
        f"    \"\\0name=\" {_c_string(name)}\n"
        f"    \"\\0cmdline=\" {_c_string(cmdline)}\n"
        f"    \"\\0privilege=\" {_c_string(privilege)}\n"
        f"    \"\\0stack={stack_size}\\0\";\n"
        f"const char *const pyrite_libos_version = info + {len('pyrite-info') + 1 + len('version=')};\n"
        f"const char *const pyrite_app_name = info + {len('pyrite-info') + 1 + len('version=') + len(LIBOS_VERSION.encode()) + 1 + len('name=')};\n"
        f"const char *const pyrite_default_cmdline = info + {len('pyrite-info') + 1 + len('version=') + len(LIBOS_VERSION.encode()) + 1 + len('name=') + len(name.encode()) + 1 + len('cmdline=')};\n"
    )


def _run(cmd: Sequence[str], what: str, cwd: Path) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, cwd=cwd)
    except OSError as e:
        raise BuildError(f"{what}: cannot run {cmd[0]}: {e}") from e
    return proc


def _defines(protocol: str, ring0: bool, pvh_note: bool) -> list[str]:
    defs = [f"-DPYRITE_LIBOS_VERSION=\"{LIBOS_VERSION}\""]
    if protocol == "multiboot":
        defs.append("-DPYRITE_MULTIBOOT")
    elif pvh_note:
        defs.append("-DPYRITE_PVH_NOTE")
    if ring0:
        defs.append("-DPYRITE_RING0")
    return defs


def _libos_objects(gcc: str, include: str, defines: list[str], key: str) -> list[Path]:
    """Compile the library OS once per flag set; returns its object files (cached)."""
    out_dir = cache_dir() / f"libos-{key}"
    sources = _libos_objects_sources()
    objects = [out_dir / (str(src.relative_to(LIBOS_DIR)).replace("/", "_") + ".o") for src in sources]
    if out_dir.is_dir() and all(o.exists() for o in objects):
        return objects
    tmp = Path(tempfile.mkdtemp(prefix="libos-", dir=cache_dir()))
    try:
        for src, obj in zip(sources, objects):
            cmd = [gcc, *GUEST_CFLAGS, *LIBOS_WARNINGS, *defines, "-isystem", str(LIBOS_DIR / "include"),
                   "-isystem", include, "-c", str(src), "-o", str(tmp / obj.name)]
            proc = _run(cmd, f"library OS {src.name}", tmp)
            if proc.returncode != 0:
                raise BuildError(f"library OS source {src} does not compile with {gcc}:\n{proc.stderr}")
        try:
            tmp.rename(out_dir)
        except OSError:
            if not out_dir.is_dir():            # lost a race with another build: theirs is as good
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return objects


def build_image(
    sources: Sequence[Path | str],
    output: Path | str | None = None,
    *,
    protocol: str = "default",
    ring0: bool = False,
    pvh_note: bool = True,
    cflags: Sequence[str] = (),
    cmdline: str | None = None,
    name: str | None = None,
    stack_size: int | str = DEFAULT_STACK_SIZE,
    on_warnings: Callable[[str], None] | None = None,
) -> Path:
    """Compile `sources` with the library OS into a bootable ELF64 image.

    Returns the image path: `output` if given (the image is copied there), else the
    cached file. `cmdline` is the default command line, used when the VMM gives none;
    `name` is argv[0] (default: the output's or first source's stem); `stack_size` is the
    application's stack in bytes, or a string such as "8M" (see parse_stack_size). Raises
    BuildError with gcc's own messages when the sources do not compile or link;
    `on_warnings` receives gcc's messages when it built the image but had something to say.
    """
    if protocol not in PROTOCOLS:
        raise BuildError(f"unknown boot protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    if not sources:
        raise BuildError("no source files given")
    stack_size = parse_stack_size(stack_size)
    srcs = [Path(s) for s in sources]
    for src in srcs:
        if not src.is_file():
            raise BuildError(f"{src}: no such source file")
        if src.suffix not in {".c", ".S", ".s"}:
            raise BuildError(f"{src}: not a C or assembly source (.c, .S, .s)")
    gcc, version, include = _gcc()
    name = name or (Path(output).stem if output else srcs[0].stem)
    cmdline = cmdline or ""
    defines = _defines(protocol, ring0, pvh_note)

    cache_dir().mkdir(parents=True, exist_ok=True)
    libos_key = _digest([LIBOS_VERSION.encode(), version.encode(), " ".join(defines).encode(),
                         " ".join(GUEST_CFLAGS + LIBOS_WARNINGS).encode()]
                        + [bytes(str(p.relative_to(LIBOS_DIR)), "utf-8") + b"\0" + p.read_bytes()
                           for p in _libos_files()] + [(LIBOS_DIR / "libos.lds.in").read_bytes()])
    info_source = _build_info_source(name, cmdline, ring0, stack_size)
    image_key = _digest([libos_key.encode(), info_source.encode(), protocol.encode(),
                         "\0".join(cflags).encode(), " ".join(LINK_FLAGS).encode()]
                        + [src.name.encode() + b"\0" + src.read_bytes() for src in srcs]
                        + _local_headers(srcs, cflags))
    cached = cache_dir() / f"{name}-{image_key}.elf"
    if not cached.exists():
        objects = _libos_objects(gcc, include, defines, libos_key)
        warnings = _link(gcc, include, defines, srcs, objects, list(cflags), info_source, protocol,
                         stack_size, cached)
        if warnings and on_warnings is not None:
            on_warnings(warnings)
    if output is None:
        return cached
    out = Path(output)
    shutil.copyfile(cached, out)
    return out


def _link(gcc: str, include: str, defines: list[str], srcs: list[Path], objects: list[Path],
          cflags: list[str], info_source: str, protocol: str, stack_size: int, target: Path) -> str:
    """Compile and link the image into `target`; returns gcc's warnings (empty if none)."""
    with tempfile.TemporaryDirectory(prefix="pyrite-build-") as tmpdir:
        tmp = Path(tmpdir)
        info = tmp / "build_info.c"
        info.write_text(info_source)
        script = tmp / "libos.ld"
        proc = _run([gcc, "-E", "-P", "-x", "c", *defines, f"-DPYRITE_ENTRY={ENTRY_SYMBOLS[protocol]}",
                     f"-DPYRITE_STACK_SIZE={stack_size}", "-I", str(LIBOS_DIR / "include"),
                     str(LIBOS_DIR / "libos.lds.in"), "-o", str(script)], "linker script", tmp)
        if proc.returncode != 0:
            raise BuildError(f"linker script {LIBOS_DIR / 'libos.lds.in'} does not preprocess:\n{proc.stderr}")
        out = tmp / "image.elf"
        cmd = [gcc, *GUEST_CFLAGS, *defines, "-isystem", str(LIBOS_DIR / "include"), "-isystem", include,
               *cflags, *[str(s.resolve()) for s in srcs], str(info), *[str(o) for o in objects],
               *LINK_FLAGS, f"-Wl,-e,{ENTRY_SYMBOLS[protocol]}", "-T", str(script), "-lgcc", "-o", str(out)]
        proc = _run(cmd, "build", tmp)
        if proc.returncode != 0:
            if "undefined reference to `main'" in proc.stderr:
                raise BuildError(
                    f"no main() in {', '.join(str(s) for s in srcs)}: a pyrite image needs "
                    f"`int main(int argc, char **argv)`\n{proc.stderr}")
            raise BuildError(proc.stderr.rstrip() or f"gcc failed with status {proc.returncode}")
        fd, partial = tempfile.mkstemp(prefix=target.name, dir=target.parent)
        os.close(fd)
        shutil.copyfile(out, partial)
        os.replace(partial, target)
        return proc.stderr
