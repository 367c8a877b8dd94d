"""Build bootable images: application C sources + pyrite's library OS, with the host's gcc.

The two steps of any C build, shared by `pyrite unikernel build` and the compiler driver
`pyrite-cc` (pyrite.unikernel.cc), with the flags in one place:

- compile_object(): one source (C, .S, .s) -> one relocatable object. Objects are cached
  by the content of the preprocessed source plus the code-generation flags, so an edit
  recompiles one file and a header change recompiles the files that include it.
- link_image(): objects, archives and `-l` libraries + the library OS -> one image.

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

gcc runs in the caller's working directory, so relative paths (-I include, sources,
-L lib) mean what they mean to gcc. Objects, library OS objects and images are cached
under ``$PYRITE_CACHE`` or ``~/.cache/pyrite`` (objects/, images/).
"""
from __future__ import annotations

import dataclasses
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
from pyrite.unikernel.cache import cache_root, images_dir
from pyrite.unikernel.musl import MuslError, musl_build, syscall_names

LIBOS_DIR = Path(__file__).resolve().parent / "libos"
LIBOS_VERSION = __version__
PROTOCOLS = ("default", "multiboot")
DEFAULT_STACK_SIZE = 8 << 20        # the application's stack, as Linux's default `ulimit -s`
MIN_STACK_SIZE = 16 << 10
MAX_STACK_SIZE = 1 << 30
_SIZE_SUFFIXES = {"": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30}

# Code of every guest: no PIC/PIE (linked at 1 MiB), no red zone (in ring-0 images,
# interrupts at CPL 0 share the stack; one set of objects serves both kinds of image), no
# stack protector, no unwind tables, no CET, sections per function for --gc-sections, and
# no host headers (musl's instead). Stack-clash protection probes every page of a large
# frame, so that no frame jumps over a stack's guard page.
APP_CFLAGS = (
    "-m64", "-O2", "-fno-pic", "-fno-pie", "-mno-red-zone", "-fno-stack-protector",
    "-fstack-clash-protection", "-fno-asynchronous-unwind-tables", "-fno-unwind-tables",
    "-fcf-protection=none", "-ffunction-sections", "-fdata-sections", "-fno-common", "-nostdinc",
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
SOURCE_LANGUAGES = {".c": "c", ".S": "assembler-with-cpp", ".sx": "assembler-with-cpp", ".s": "assembler",
                    ".i": "cpp-output"}
LINK_INPUT_SUFFIXES = {".o", ".a"}
# Libraries whose contents the library OS's C library has itself (as musl's libc.a, whose
# libm.a, libpthread.a, ... are empty): -lm and friends need no file.
LIBC_LIBRARIES = frozenset({"c", "m", "pthread", "dl", "rt", "util", "xnet", "resolv", "crypt"})
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
# Flags that only steer the preprocessor (their value may be the next word).
PREPROCESSOR_VALUED = ("-I", "-D", "-U", "-include", "-imacros", "-isystem", "-iquote", "-idirafter")


class BuildError(Exception):
    """The image could not be built; the message says why (gcc's own output included)."""


@dataclasses.dataclass(frozen=True)
class ImageOptions:
    """What the link step bakes into an image besides the code: argv[0], the default
    command line, the boot protocol, where the application runs and its stack's size."""
    name: str
    cmdline: str = ""
    protocol: str = "default"
    ring0: bool = False
    pvh_note: bool = True
    stack_size: int = DEFAULT_STACK_SIZE    # the application's stack, bytes (parse_stack_size)


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


def _build_info_source(options: ImageOptions) -> str:
    name, cmdline = options.name, options.cmdline
    privilege = "ring 0" if options.ring0 else "CPL 3 (exceptions and interrupts at CPL 0)"
    return (
        "/* generated by pyrite.unikernel.build */\n"
        "static const char info[] __attribute__((section(\".pyrite.info\"), used)) =\n"
        f"    \"pyrite-info\\0version=\" {_c_string(LIBOS_VERSION)}\n"
        f"    \"\\0name=\" {_c_string(name)}\n"
        f"    \"\\0cmdline=\" {_c_string(cmdline)}\n"
        f"    \"\\0privilege=\" {_c_string(privilege)}\n"
        f"    \"\\0stack={options.stack_size}\\0\";\n"
        f"const char *const pyrite_libos_version = info + {len('pyrite-info') + 1 + len('version=')};\n"
        f"const char *const pyrite_app_name = info + {len('pyrite-info') + 1 + len('version=') + len(LIBOS_VERSION.encode()) + 1 + len('name=')};\n"
        f"const char *const pyrite_default_cmdline = info + {len('pyrite-info') + 1 + len('version=') + len(LIBOS_VERSION.encode()) + 1 + len('name=') + len(name.encode()) + 1 + len('cmdline=')};\n"
    )


def _run(cmd: Sequence[str], what: str, cwd: Path | str | None) -> subprocess.CompletedProcess:
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


def _libos_key(gcc_version: str, defines: list[str], musl: Path) -> str:
    return _digest([LIBOS_VERSION.encode(), gcc_version.encode(), " ".join(defines).encode(), musl.name.encode(),
                    " ".join(LIBOS_CFLAGS + APP_CFLAGS + LIBOS_WARNINGS).encode()]
                   + [bytes(str(p.relative_to(LIBOS_DIR)), "utf-8") + b"\0" + p.read_bytes()
                      for p in _libos_files()])


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


def include_flags(musl: Path | None = None) -> list[str]:
    """-isystem flags of guest code: <pyrite/*.h>, musl's headers, then gcc's own
    (intrinsics such as <immintrin.h>); never the host's."""
    musl = musl or _musl()
    return ["-isystem", str(LIBOS_DIR / "include"), "-isystem", str(musl / "include"), "-isystem", _gcc()[2]]


def compile_flags(ring0: bool = False) -> list[str]:
    """What every application source is compiled with; the user's flags come after these,
    so theirs win (-O0, -std=c99, -fPIC, ...)."""
    return [*APP_CFLAGS, *include_flags(), *(["-DPYRITE_RING0"] if ring0 else [])]


def _key_flags(cflags: Sequence[str]) -> list[str]:
    """`cflags` less those that only steer the preprocessor: their effect is in the
    preprocessed text, which is part of an object's cache key already."""
    kept, skip = [], False
    for flag in cflags:
        if skip:
            skip = False
        elif flag in PREPROCESSOR_VALUED:
            skip = True
        elif not flag.startswith(PREPROCESSOR_VALUED):
            kept.append(flag)
    return kept


def source_language(path: Path | str) -> str | None:
    """gcc's language for a source file name (None: not a source)."""
    return SOURCE_LANGUAGES.get(Path(path).suffix)


def compile_object(
    source: Path | str,
    cflags: Sequence[str] = (),
    *,
    output: Path | str | None = None,
    ring0: bool = False,
    language: str | None = None,
    dep_flags: Sequence[str] = (),
    cwd: Path | str | None = None,
    on_warnings: Callable[[str], None] | None = None,
) -> Path:
    """Compile one source into a relocatable object through the object cache.

    Returns `output` if given (the object is copied there), else the cached object.
    `language` is gcc's -x (default: from the suffix); `dep_flags` (-MD -MF F -MT T ...)
    are given to the preprocessing run, which writes the dependency file even when the
    object comes from the cache. `on_warnings` gets gcc's messages, replayed on a hit.
    """
    src = Path(source)
    where = Path(cwd) if cwd is not None else Path.cwd()
    if not (where / src).is_file():
        raise BuildError(f"{src}: no such source file")
    language = language or source_language(src)
    if language is None:
        raise BuildError(f"{src}: not a C or assembly source (.c, .S, .s)")
    gcc, version, _ = _gcc()
    flags = [*compile_flags(ring0), *cflags, "-x", language]
    with tempfile.TemporaryDirectory(prefix="pyrite-cc-") as tmpdir:
        tmp = Path(tmpdir)
        if language == "assembler":             # not preprocessed: the file is its own text
            text = (where / src).read_bytes()
        else:
            proc = _run([gcc, *flags, "-E", str(src), "-o", str(tmp / "pre"), *dep_flags], f"preprocessing {src}", cwd)
            if proc.returncode != 0:
                raise BuildError(proc.stderr.rstrip() or f"gcc -E {src} failed with status {proc.returncode}")
            text = (tmp / "pre").read_bytes()
        # Debug information records the directory gcc ran in; other flags are in the key as given.
        directory = str(where.resolve()).encode() if any(f.startswith("-g") and f != "-g0" for f in cflags) else b""
        key = _digest([b"object", version.encode(), "\0".join(APP_CFLAGS).encode(), _musl().name.encode(),
                       str(ring0).encode(),
                       "\0".join(_key_flags(cflags)).encode(), language.encode(), directory, text])
        objects = Path(cache_root()) / "objects"
        cached, log = objects / f"{key}.o", objects / f"{key}.log"
        if cached.exists():
            warnings = log.read_text() if log.exists() else ""
        else:
            proc = _run([gcc, *flags, "-c", str(src), "-o", str(tmp / "obj.o")], f"compiling {src}", cwd)
            if proc.returncode != 0:
                raise BuildError(proc.stderr.rstrip() or f"gcc -c {src} failed with status {proc.returncode}")
            warnings = proc.stderr
            objects.mkdir(parents=True, exist_ok=True)
            if warnings:
                _write_atomically(log, warnings.encode())
            _install(tmp / "obj.o", cached)
    if warnings and on_warnings is not None:
        on_warnings(warnings)
    if output is None:
        return cached
    out = where / output
    _install(cached, out)
    return out


def link_image(
    inputs: Sequence[Path | str],
    output: Path | str | None,
    options: ImageOptions,
    *,
    library_dirs: Sequence[Path | str] = (),
    link_flags: Sequence[str] = (),
    cwd: Path | str | None = None,
    names: Sequence[str] | None = None,
    on_warnings: Callable[[str], None] | None = None,
) -> Path:
    """Link objects, archives and `-lNAME` libraries (in command-line order) with the
    library OS into an image; returns `output` (copied there) or the cached image.

    `-lNAME` is libNAME.a from `library_dirs` (static libraries only: an image has no
    loader); the C library's own names (-lc, -lm, -lpthread, ...) are part of the library
    OS and need no file. `link_flags` go to gcc as given (-Wl,..., -s). `names` are the
    inputs as the user knows them (sources rather than their cached objects), for messages.
    """
    if options.protocol not in PROTOCOLS:
        raise BuildError(f"unknown boot protocol {options.protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    options = dataclasses.replace(options, stack_size=parse_stack_size(options.stack_size))
    where = Path(cwd) if cwd is not None else Path.cwd()
    files = []
    for item in inputs:
        if str(item).startswith("-l"):
            library = _find_library(str(item)[2:], [where / d for d in library_dirs])
            if library is not None:
                files.append(library)
            continue
        path = where / item
        if not path.is_file():
            raise BuildError(f"{item}: no such file")
        files.append(path)
    gcc, version, _ = _gcc()
    musl = _musl()
    defines = _defines(options.protocol, options.ring0, options.pvh_note)
    libos_key = _libos_key(version, defines, musl)
    key = _digest([libos_key.encode(), repr(options).encode(), _build_info_source(options).encode(),
                   "\0".join([*LINK_FLAGS, *link_flags]).encode(), " ".join(sorted(FILE_FUNCTIONS)).encode()]
                  + [_file_digest(f).encode() for f in files])
    images = cache_dir()
    images.mkdir(parents=True, exist_ok=True)
    cached = images / f"{Path(options.name).name}-{key}.elf"
    if not cached.exists():
        libos = _libos_objects(gcc, musl, defines, libos_key)
        warnings = _link(gcc, musl, defines, files, libos, list(link_flags), options, cached,
                         names or [str(i) for i in inputs])
        if warnings and on_warnings is not None:
            on_warnings(warnings)
    if output is None:
        return cached
    out = where / output
    _install(cached, out)
    return out


def build_image(
    sources: Sequence[Path | str],
    output: Path | str | None = None,
    *,
    protocol: str = "default",
    ring0: bool = False,
    pvh_note: bool = True,
    cflags: Sequence[str] = (),
    library_dirs: Sequence[Path | str] = (),
    link_flags: Sequence[str] = (),
    cmdline: str | None = None,
    name: str | None = None,
    cwd: Path | str | None = None,
    stack_size: int | str = DEFAULT_STACK_SIZE,
    on_warnings: Callable[[str], None] | None = None,
) -> Path:
    """Compile `sources` with the library OS into a bootable ELF64 image.

    `sources` are C or assembly files, objects (.o), archives (.a) and `-lNAME`
    libraries, linked in that order. Returns the image path: `output` if given (the
    image is copied there), else the cached file. `cmdline` is the default command line,
    used when the VMM gives none; `name` is argv[0] (default: the output's or first
    source's stem); `stack_size` is the application's stack in bytes, or a string such
    as "8M" (see parse_stack_size). Raises BuildError with gcc's own messages when the
    sources do not compile or link; `on_warnings` receives gcc's messages when it built
    the image but had something to say.
    """
    if protocol not in PROTOCOLS:
        raise BuildError(f"unknown boot protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    if not sources:
        raise BuildError("no source files given")
    stack_size = parse_stack_size(stack_size)      # a clear error before anything compiles
    where = Path(cwd) if cwd is not None else Path.cwd()
    inputs: list[Path | str] = []
    for item in sources:
        if str(item).startswith("-l"):
            inputs.append(str(item))
            continue
        path = Path(item)
        if not (where / path).is_file():
            raise BuildError(f"{path}: no such source file")
        if path.suffix in LINK_INPUT_SUFFIXES:
            inputs.append(path)
        elif source_language(path) is None:
            raise BuildError(f"{path}: not a C or assembly source (.c, .S, .s), object (.o) or archive (.a)")
        else:
            inputs.append(compile_object(path, cflags, ring0=ring0, cwd=where, on_warnings=on_warnings))
    first = next(Path(s) for s in sources if not str(s).startswith("-l"))
    options = ImageOptions(name=name or (Path(output).stem if output else first.stem), cmdline=cmdline or "",
                           protocol=protocol, ring0=ring0, pvh_note=pvh_note, stack_size=stack_size)
    return link_image(inputs, output, options, library_dirs=library_dirs, link_flags=link_flags, cwd=where,
                      names=[str(s) for s in sources], on_warnings=on_warnings)


def _find_library(name: str, directories: Sequence[Path]) -> Path | None:
    if name in LIBC_LIBRARIES:
        return None
    for directory in directories:
        candidate = directory / f"lib{name}.a"
        if candidate.is_file():
            return candidate
    searched = ", ".join(str(d) for d in directories) or "no -L directory given"
    raise BuildError(f"cannot find -l{name}: no lib{name}.a in {searched} "
                     "(pyrite images link static libraries only)")


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _partial_name(target: Path) -> Path:
    """A name beside `target` no other process uses (created with the umask's mode, as gcc's files)."""
    return target.parent / f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}"


def _write_atomically(target: Path, data: bytes) -> None:
    partial = _partial_name(target)
    partial.write_bytes(data)
    os.replace(partial, target)


def _install(source: Path, target: Path) -> None:
    """Copy `source` to `target` whole or not at all (concurrent builds, make -j)."""
    partial = _partial_name(target)
    try:
        shutil.copyfile(source, partial)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _uses_files(image: Path, tmp: Path) -> bool:
    """Whether the linked image holds one of FILE_FUNCTIONS (from its symbol table)."""
    proc = _run(["nm", "--defined-only", str(image)], "nm", tmp)
    if proc.returncode != 0:
        return True                     # cannot tell: keep the file systems
    return any(line.rsplit(" ", 1)[-1] in FILE_FUNCTIONS for line in proc.stdout.splitlines())


def _link(gcc: str, musl: Path, defines: list[str], files: list[Path], libos: list[Path], link_flags: list[str],
          options: ImageOptions, target: Path, names: Sequence[str]) -> str:
    """Link the image into `target`; returns gcc's warnings (empty if none)."""
    with tempfile.TemporaryDirectory(prefix="pyrite-build-") as tmpdir:
        tmp = Path(tmpdir)
        info = tmp / "build_info.c"
        info.write_text(_build_info_source(options))
        script = tmp / "libos.ld"
        entry = ENTRY_SYMBOLS[options.protocol]
        proc = _run([gcc, "-E", "-P", "-x", "c", *defines, f"-DPYRITE_ENTRY={entry}",
                     f"-DPYRITE_STACK_SIZE={options.stack_size}", "-I", str(LIBOS_DIR / "include"),
                     str(LIBOS_DIR / "libos.lds.in"), "-o", str(script)], "linker script", tmp)
        if proc.returncode != 0:
            raise BuildError(f"linker script {LIBOS_DIR / 'libos.lds.in'} does not preprocess:\n{proc.stderr}")
        out = tmp / "image.elf"

        def link(objects: list[Path]) -> subprocess.CompletedProcess:
            return _run([gcc, *APP_CFLAGS, *defines, *include_flags(musl), "-x", "none", *[str(f) for f in files],
                         str(info), *[str(o) for o in objects], *LINK_FLAGS, *link_flags, f"-Wl,-e,{entry}",
                         "-T", str(script), "-Wl,--start-group", str(musl / "lib" / "libc.a"), "-lgcc",
                         "-Wl,--end-group", "-o", str(out)], "link", tmp)
        core = [o for o in libos if not o.name.startswith(FS_OBJECT_PREFIX)]
        proc = link(core)
        if proc.returncode == 0 and len(core) < len(libos) and _uses_files(out, tmp):
            proc = link(libos)
        if proc.returncode != 0:
            if "undefined reference to `main'" in proc.stderr:
                raise BuildError(
                    f"no main() in {', '.join(names)}: a pyrite image needs "
                    f"`int main(int argc, char **argv)`\n{proc.stderr}")
            raise BuildError(proc.stderr.rstrip() or f"gcc failed with status {proc.returncode}")
        _install(out, target)
        return proc.stderr
