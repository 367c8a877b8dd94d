"""Build bootable images: application C sources + pyrite's library OS, with the host's gcc.

An image is one ELF64 file linked at 1 MiB and identity mapped. The default build boots
by PVH (its XEN_ELFNOTE_PHYS32_ENTRY note) and by the Linux 64-bit boot protocol (its
ELF e_entry); ``protocol="multiboot"`` builds a Multiboot 1 image instead (e_entry is
the 32-bit Multiboot entry, with a Multiboot header carrying a.out load addresses so
that QEMU loads the ELF64 file, and no PVH note). ``pvh_note=False`` leaves the note
out, so only the Linux 64-bit protocol can boot it.

The C library is musl (pyrite.unikernel.musl: fetched, checked and built once on first
use). Applications and musl are compiled with SSE (APP_CFLAGS); the library OS keeps to
general registers (LIBOS_CFLAGS), because its CPL-0 parts (boot, exceptions, interrupts)
must not touch floating-point state that belongs to the application.

Images are cached by content (sources, library OS, musl, flags, gcc version) under
``$PYRITE_CACHE`` or ``~/.cache/pyrite/images``; the library OS objects are cached
there too, per set of build flags.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Sequence

from pyrite import __version__
from pyrite.unikernel.cache import images_dir
from pyrite.unikernel.musl import MuslError, musl_build, syscall_names

LIBOS_DIR = Path(__file__).resolve().parent / "libos"
LIBOS_VERSION = __version__
PROTOCOLS = ("default", "multiboot")

# Code of every guest: no PIC/PIE (linked at 1 MiB), no red zone (in ring-0 images,
# interrupts at CPL 0 share the stack; one set of objects serves both kinds of image), no
# stack protector, no unwind tables, no CET, sections per function for --gc-sections, and
# no host headers (musl's instead).
APP_CFLAGS = (
    "-m64", "-O2", "-fno-pic", "-fno-pie", "-mno-red-zone", "-fno-stack-protector",
    "-fno-asynchronous-unwind-tables", "-fno-unwind-tables", "-fcf-protection=none",
    "-ffunction-sections", "-fdata-sections", "-fno-common", "-nostdinc",
)
# The library OS: freestanding, general registers only (its CPL-0 code must leave the
# application's x87/SSE state alone, and guest CPL 0 may be an emulator without SSE), for
# size (every image carries it; its costs are device round trips, not instructions).
LIBOS_CFLAGS = APP_CFLAGS + ("-ffreestanding", "-mgeneral-regs-only", "-D_GNU_SOURCE", "-Os")
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


def _musl() -> Path:
    gcc, version, _ = _gcc()
    try:
        return musl_build(gcc, version)
    except MuslError as e:
        raise BuildError(str(e)) from e


def include_flags(musl: Path | None = None) -> list[str]:
    """-isystem flags of guest code: <pyrite/*.h>, musl's headers, then gcc's own
    (intrinsics such as <immintrin.h>)."""
    musl = musl or _musl()
    return ["-isystem", str(LIBOS_DIR / "include"), "-isystem", str(musl / "include"), "-isystem", _gcc()[2]]


def compile_flags(*, protocol: str = "default", ring0: bool = False, pvh_note: bool = True) -> list[str]:
    """gcc flags that compile application code for a pyrite image (as build_image does):
    APP_CFLAGS, the image's defines and the include directories (musl built if needed)."""
    return [*APP_CFLAGS, *_defines(protocol, ring0, pvh_note), *include_flags()]


def _syscall_names_source(musl: Path) -> str:
    """C source of the table of names that libos/sys/syscall.c prints for an unsupported
    system call: musl's names, except those the dispatcher handles (`case SYS_name:`, and
    its tables of missing and privileged calls)."""
    source = (LIBOS_DIR / "sys" / "syscall.c").read_text()
    handled = set(re.findall(r"case SYS_(\w+):", source))
    handled |= set(re.findall(r"\bSYS_(\w+),", source[source.index("missing[]"):]))
    names = {n: name for n, name in syscall_names(musl).items() if name not in handled}
    count = max(names) + 1 if names else 0
    body = "".join(f"    {_c_string(names.get(n, ''))} \"\\0\"\n" for n in range(count))
    return ("/* generated by pyrite.unikernel.build from musl's bits/syscall.h.in */\n"
            f"const unsigned pyrite_syscall_names_count = {count};\n"
            f"const char pyrite_syscall_names[] =\n{body}    \"\";\n")


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


def _build_info_source(name: str, cmdline: str, ring0: bool = False) -> str:
    privilege = "ring 0" if ring0 else "CPL 3 (exceptions and interrupts at CPL 0)"
    return (
        "/* generated by pyrite.unikernel.build */\n"
        "static const char info[] __attribute__((section(\".pyrite.info\"), used)) =\n"
        f"    \"pyrite-info\\0version=\" {_c_string(LIBOS_VERSION)}\n"
        f"    \"\\0name=\" {_c_string(name)}\n"
        f"    \"\\0cmdline=\" {_c_string(cmdline)}\n"
        f"    \"\\0privilege=\" {_c_string(privilege)} \"\\0\";\n"
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


def _libos_objects(gcc: str, musl: Path, defines: list[str], key: str) -> list[Path]:
    """Compile the library OS once per flag set; returns its object files (cached)."""
    out_dir = cache_dir() / f"libos-{key}"
    sources = _libos_objects_sources()
    objects = [out_dir / (str(src.relative_to(LIBOS_DIR)).replace("/", "_") + ".o") for src in sources]
    objects.append(out_dir / "syscall_names.o")
    if out_dir.is_dir() and all(o.exists() for o in objects):
        return objects
    tmp = Path(tempfile.mkdtemp(prefix="libos-", dir=cache_dir()))
    try:
        names = tmp / "syscall_names.c"
        names.write_text(_syscall_names_source(musl))
        for src, obj in zip([*sources, names], objects):
            cmd = [gcc, *LIBOS_CFLAGS, *LIBOS_WARNINGS, *defines, *include_flags(musl),
                   "-c", str(src), "-o", str(tmp / obj.name)]
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
    on_warnings: Callable[[str], None] | None = None,
) -> Path:
    """Compile `sources` with the library OS into a bootable ELF64 image.

    Returns the image path: `output` if given (the image is copied there), else the
    cached file. `cmdline` is the default command line, used when the VMM gives none;
    `name` is argv[0] (default: the output's or first source's stem). Raises
    BuildError with gcc's own messages when the sources do not compile or link;
    `on_warnings` receives gcc's messages when it built the image but had something to say.
    """
    if protocol not in PROTOCOLS:
        raise BuildError(f"unknown boot protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    if not sources:
        raise BuildError("no source files given")
    srcs = [Path(s) for s in sources]
    for src in srcs:
        if not src.is_file():
            raise BuildError(f"{src}: no such source file")
        if src.suffix not in {".c", ".S", ".s"}:
            raise BuildError(f"{src}: not a C or assembly source (.c, .S, .s)")
    gcc, version, include = _gcc()
    musl = _musl()
    name = name or (Path(output).stem if output else srcs[0].stem)
    cmdline = cmdline or ""
    defines = _defines(protocol, ring0, pvh_note)

    cache_dir().mkdir(parents=True, exist_ok=True)
    libos_key = _digest([LIBOS_VERSION.encode(), version.encode(), " ".join(defines).encode(), musl.name.encode(),
                         " ".join(LIBOS_CFLAGS + APP_CFLAGS + LIBOS_WARNINGS).encode()]
                        + [bytes(str(p.relative_to(LIBOS_DIR)), "utf-8") + b"\0" + p.read_bytes()
                           for p in _libos_files()] + [(LIBOS_DIR / "libos.lds.in").read_bytes()])
    image_key = _digest([libos_key.encode(), _build_info_source(name, cmdline, ring0).encode(), protocol.encode(),
                         "\0".join(cflags).encode(), " ".join(LINK_FLAGS).encode(),
                         " ".join(sorted(FILE_FUNCTIONS)).encode()]
                        + [src.name.encode() + b"\0" + src.read_bytes() for src in srcs]
                        + _local_headers(srcs, cflags))
    cached = cache_dir() / f"{name}-{image_key}.elf"
    if not cached.exists():
        objects = _libos_objects(gcc, musl, defines, libos_key)
        warnings = _link(gcc, musl, defines, srcs, objects, list(cflags), name, cmdline, protocol, ring0,
                         cached)
        if warnings and on_warnings is not None:
            on_warnings(warnings)
    if output is None:
        return cached
    out = Path(output)
    shutil.copyfile(cached, out)
    return out


# The file systems (libos/fs) go into an image only when the program calls a C library
# function that reaches files by name or descriptor: else the console-only calls of
# libos/sys/files.c serve stdin/stdout/stderr and hello world stays small.
FS_OBJECT_PREFIX = "fs_"
FILE_FUNCTIONS = frozenset("""
    open open64 openat openat64 creat creat64 fopen fopen64 freopen freopen64 opendir fdopendir
    stat stat64 lstat lstat64 fstatat fstatat64 statx mkdir mkdirat rmdir unlink unlinkat remove
    rename renameat renameat2 link linkat symlink symlinkat readlink readlinkat access faccessat
    euidaccess eaccess chdir fchdir getcwd truncate truncate64 ftruncate ftruncate64 chmod fchmod
    fchmodat utime utimes utimensat futimens futimesat statvfs statfs fstatvfs fstatfs realpath
    mkstemp mkostemp mkstemps mkdtemp tmpfile tmpfile64 tmpnam tempnam dup dup2 dup3 nftw ftw glob
    scandir fsync fdatasync sync syncfs flock lockf
""".split())


def _uses_files(image: Path, tmp: Path) -> bool:
    """Whether the linked image holds one of FILE_FUNCTIONS (from its symbol table)."""
    proc = _run(["nm", "--defined-only", str(image)], "nm", tmp)
    if proc.returncode != 0:
        return True                     # cannot tell: keep the file systems
    return any(line.rsplit(" ", 1)[-1] in FILE_FUNCTIONS for line in proc.stdout.splitlines())


def _link_once(gcc: str, musl: Path, defines: list[str], srcs: list[Path], info: Path, objects: list[Path],
               cflags: list[str], protocol: str, script: Path, out: Path, tmp: Path) -> subprocess.CompletedProcess:
    cmd = [gcc, *APP_CFLAGS, *defines, *include_flags(musl),
           *cflags, *[str(s.resolve()) for s in srcs], str(info), *[str(o) for o in objects],
           *LINK_FLAGS, f"-Wl,-e,{ENTRY_SYMBOLS[protocol]}", "-T", str(script),
           "-Wl,--start-group", str(musl / "lib" / "libc.a"), "-lgcc", "-Wl,--end-group", "-o", str(out)]
    return _run(cmd, "build", tmp)


def _link(gcc: str, musl: Path, defines: list[str], srcs: list[Path], objects: list[Path],
          cflags: list[str], name: str, cmdline: str, protocol: str, ring0: bool, target: Path) -> str:
    """Compile and link the image into `target`; returns gcc's warnings (empty if none)."""
    with tempfile.TemporaryDirectory(prefix="pyrite-build-") as tmpdir:
        tmp = Path(tmpdir)
        info = tmp / "build_info.c"
        info.write_text(_build_info_source(name, cmdline, ring0))
        script = tmp / "libos.ld"
        proc = _run([gcc, "-E", "-P", "-x", "c", *defines, f"-DPYRITE_ENTRY={ENTRY_SYMBOLS[protocol]}",
                     str(LIBOS_DIR / "libos.lds.in"), "-o", str(script)], "linker script", tmp)
        if proc.returncode != 0:
            raise BuildError(f"linker script {LIBOS_DIR / 'libos.lds.in'} does not preprocess:\n{proc.stderr}")
        out = tmp / "image.elf"
        core = [o for o in objects if not o.name.startswith(FS_OBJECT_PREFIX)]
        proc = _link_once(gcc, musl, defines, srcs, info, core, cflags, protocol, script, out, tmp)
        if proc.returncode == 0 and len(core) < len(objects) and _uses_files(out, tmp):
            proc = _link_once(gcc, musl, defines, srcs, info, objects, cflags, protocol, script, out, tmp)
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
