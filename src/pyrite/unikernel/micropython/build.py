"""Build Python unikernels: a program (plus its modules) frozen as MicroPython bytecode and
linked with MicroPython's core, pyrite's port of it and the library OS into one image.

Three things are built once and cached under the pyrite cache (``micropython/``):
``mpy-cross`` (the bytecode compiler, for the host), the core library
(``libmicropython.a``: py/, extmod/, shared/ and ``port/``, by ``port/Makefile`` and
MicroPython's own make rules) per toolchain, and the host unix port with the same options
(the reference for tests and benchmarks). Per image, MicroPython's ``tools/makemanifest.py``
freezes the program into ``frozen_content.c`` (bytecode and the program's own qstrs, a qstr
pool chained to the core's), which is compiled and linked against the cached library.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from pyrite.unikernel.micropython import source
from pyrite.unikernel.micropython.imports import builtin_modules, check_imports, files_modules, imported_names

PORT_DIR = Path(__file__).resolve().parent / "port"
UNIX_VARIANT_DIR = PORT_DIR / "unix-variant"
PORT_MODULES_DIR = PORT_DIR / "modules"
MAIN_NAME = "main"


class BuildError(Exception):
    """The Python image could not be built; the message names the input and the cause."""


@dataclass(frozen=True)
class Toolchain:
    """How the core is compiled and an image linked: `guest` (the library OS) or `host`."""
    name: str
    cc: str
    cflags: tuple[str, ...]


def guest_toolchain() -> Toolchain:
    """The library OS's: musl's headers, the application flags of every image (without their
    -O2: MicroPython's own -Os and -O3 choices apply, as in the unix build it is compared with)."""
    from pyrite.unikernel import build as libos_build
    try:
        gcc = libos_build._gcc()[0]
        flags = [f for f in libos_build.APP_CFLAGS if not f.startswith("-O")] + libos_build.include_flags()
    except libos_build.BuildError as e:
        raise BuildError(str(e)) from e
    return Toolchain("guest", gcc, (*flags, "-DPYRITE_UNIKERNEL"))


def host_toolchain() -> Toolchain:
    """The port built as a host program: for developing the port and comparing with unix."""
    return Toolchain("host", shutil.which("gcc") or "gcc", ())


def _run(cmd: Sequence[str], what: str, cwd: Path | None = None, env: dict | None = None) -> str:
    try:
        proc = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, cwd=cwd, env=env)
    except OSError as e:
        raise BuildError(f"{what}: cannot run {cmd[0]}: {e}") from e
    if proc.returncode != 0:
        raise BuildError(f"{what} failed:\n{proc.stdout}{proc.stderr}".rstrip())
    return proc.stdout


def _port_digest(extra: Sequence[str] = ()) -> str:
    h = hashlib.sha256(source.TREE_KEY.encode())
    for path in sorted(PORT_DIR.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(PORT_DIR)).encode() + b"\0" + path.read_bytes())
    for item in extra:
        h.update(item.encode() + b"\0")
    return h.hexdigest()[:16]


def _make_env() -> dict:
    env = dict(os.environ)
    env.pop("MAKEFLAGS", None)
    env.pop("MFLAGS", None)
    return env


def _jobs() -> str:
    return f"-j{min(os.cpu_count() or 1, 4)}"


def _once(target: Path, build) -> Path:
    """`build(tmp_dir)` into a fresh directory renamed to `target` when done (atomic)."""
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        build(tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not target.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _headers_digest(toolchain: Toolchain) -> list[str]:
    """Digests of the headers in the toolchain's -isystem directories of our own (the library
    OS's <pyrite/*.h>; musl's directory is named by its own digest already)."""
    from pyrite.unikernel.build import LIBOS_DIR
    include = LIBOS_DIR / "include"
    if str(include) not in toolchain.cflags:
        return []
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(include.rglob("*.h"))]


def mpy_cross() -> Path:
    """MicroPython's bytecode compiler for the host, built from the same tree."""
    tree = source.source_tree()
    target = source.micropython_dir() / f"mpy-cross-{source.VERSION}"

    def build(tmp: Path) -> None:
        _run(["make", _jobs(), "-C", tree / "mpy-cross", f"BUILD={tmp}/build", f"PYTHON={sys.executable}"],
             "building mpy-cross", env=_make_env())
        shutil.copy2(tmp / "build" / "mpy-cross", tmp / "mpy-cross")
        shutil.rmtree(tmp / "build")
    return _once(target, build) / "mpy-cross"


def core_library(toolchain: Toolchain) -> Path:
    """The build directory holding libmicropython.a, genhdr/ and cflags for `toolchain`."""
    tree = source.source_tree()
    key = _port_digest([toolchain.name, toolchain.cc, *toolchain.cflags, *_headers_digest(toolchain)])
    target = source.micropython_dir() / f"core-{toolchain.name}-{key}"

    def build(tmp: Path) -> None:
        make = ["make", _jobs(), "-f", PORT_DIR / "Makefile", f"MPY_TOP={tree}", f"BUILD={tmp}",
                f"CC={toolchain.cc}", f"CFLAGS_EXTRA={' '.join(toolchain.cflags)}",
                f"PYTHON={sys.executable}"]
        _run([*make, "lib"], f"building MicroPython {source.VERSION} for {toolchain.name}", cwd=PORT_DIR,
             env=_make_env())
        _run([*make, "cflags"], "reading the core's flags", cwd=PORT_DIR, env=_make_env())
        flags = (tmp / "cflags").read_text()
        (tmp / "cflags").write_text(flags.replace(str(tmp), str(target)))  # -I of its final place
    return _once(target, build)


def unix_reference() -> Path:
    """The host unix port (ports/unix) built with the same language and module options."""
    tree = source.source_tree()
    key = _port_digest(["unix"])
    target = source.micropython_dir() / f"unix-{key}"

    def build(tmp: Path) -> None:
        _run(["make", _jobs(), "-C", tree / "ports" / "unix", f"VARIANT_DIR={UNIX_VARIANT_DIR}",
              f"BUILD={tmp}/build", f"PYTHON={sys.executable}"], "building the unix port", env=_make_env())
        shutil.copy2(tmp / "build" / "micropython", tmp / "micropython")
        shutil.rmtree(tmp / "build")
    return _once(target, build) / "micropython"


def check_syntax(path: Path, cross: Path) -> None:
    """Compile one file with mpy-cross; a syntax error is reported with the file and line."""
    with tempfile.TemporaryDirectory(prefix="pyrite-mpy-") as tmp:
        proc = subprocess.run([str(cross), "-o", f"{tmp}/out.mpy", "-s", str(path), str(path)],
                              capture_output=True, text=True)
    if proc.returncode != 0:
        message = (proc.stderr or proc.stdout).strip()
        raise BuildError(f"{path}: does not compile:\n{message}")


@dataclass(frozen=True)
class Program:
    """What goes into an image: the program, its modules and packages."""
    main: Path | None                 # None: the REPL image
    modules: tuple[Path, ...] = ()    # .py files or package directories
    files_dir: Path | None = None     # the --files tree (its modules are importable at run time)


# MicroPython's own Python packages, frozen when the program imports them.
LIBRARY_PACKAGES = {"asyncio": "extmod"}


def _frozen_name(path: Path) -> str:
    return path.name


def _manifest(program: Program, library: set[str]) -> str:
    tree = source.source_tree()
    lines = [f"module({'os.py'!r}, base_path={str(PORT_MODULES_DIR)!r})"]
    # makemanifest resolves relative base paths against the manifest's own directory.
    for name in sorted(library):
        lines.append(f"package({name!r}, base_path={str(tree / LIBRARY_PACKAGES[name])!r})")
    if program.main is not None:
        main = program.main.resolve()
        lines.append(f"module({_frozen_name(main)!r}, base_path={str(main.parent)!r})")
    for mod in (m.resolve() for m in program.modules):
        kind = "package" if mod.is_dir() else "module"
        lines.append(f"{kind}({mod.name!r}, base_path={str(mod.parent)!r})")
    return "\n".join(lines) + "\n"


def _check_program(program: Program, cross: Path, core: Path) -> set[str]:
    """Syntax and imports of every file; returns the library packages the program needs."""
    names: dict[str, Path] = {}
    files = [program.main] if program.main is not None else []
    for mod in program.modules:
        if mod.is_dir():
            if not (mod / "__init__.py").is_file() and not any(mod.rglob("*.py")):
                raise BuildError(f"{mod}: a --module directory must be a package of .py files")
            files += sorted(mod.rglob("*.py"))
        elif mod.suffix == ".py" and mod.is_file():
            files.append(mod)
        else:
            raise BuildError(f"{mod}: no such Python module (a .py file or a package directory)")
        stem = mod.name if mod.is_dir() else mod.stem
        if stem in names:
            raise BuildError(f"{mod}: module {stem!r} is given twice (also {names[stem]})")
        names[stem] = mod
    for path in files:
        check_syntax(path, cross)
    available = (builtin_modules(core / "genhdr" / "moduledefs.h") | set(names) | set(LIBRARY_PACKAGES)
                 | files_modules(program.files_dir))
    problems = check_imports(files, available)
    if problems:
        raise BuildError("\n".join(problems))
    if program.main is None:
        return set(LIBRARY_PACKAGES)            # the REPL: what a user might import
    return {name for path in files for name, _ in imported_names(path) if name in LIBRARY_PACKAGES}


def freeze(program: Program, library: set[str], core: Path, out_dir: Path, min_mem_mib: int = 0) -> Path:
    """frozen_content.c of `program` (bytecode and qstrs, by makemanifest.py), plus what the
    port's main.c asks of the image: the program's frozen name and the memory it needs."""
    tree = source.source_tree()
    work = out_dir / "freeze"
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "genhdr").exists():
        (work / "genhdr").symlink_to(core / "genhdr")
    manifest = out_dir / "manifest.py"
    manifest.write_text(_manifest(program, library))
    frozen_c = out_dir / "frozen_content.c"
    env = _make_env()
    env["MICROPY_MPYCROSS"] = str(mpy_cross())
    _run([sys.executable, tree / "tools" / "makemanifest.py", "-o", frozen_c, "-b", work,
          "-v", f"MPY_DIR={tree}", "-v", f"PORT_DIR={PORT_DIR}", "-v", "MPY_LIB_DIR=",
          "--mpy-tool-flags=-mlongint-impl=mpz -mmpz-dig-size=32", manifest], "freezing the program", env=env)
    main = _frozen_name(program.main) if program.main is not None else ""
    with open(frozen_c, "a") as f:
        f.write(f"\n// pyrite: what the port's main.c runs\n"
                f"const char pyrite_mp_main_module[] = {_c_string(main)};\n"
                f"const unsigned pyrite_mp_min_mem_mib = {int(min_mem_mib)};\n")
    return frozen_c


def _c_string(text: str) -> str:
    return '"' + "".join(c if c.isalnum() or c in "._-/ " else f"\\{ord(c):03o}"
                         for c in text) + '"'


def build_host_program(program: Program, output: Path, min_mem_mib: int = 0) -> Path:
    """The port as a host executable (for developing the port and its tests)."""
    toolchain = host_toolchain()
    core = core_library(toolchain)
    library = _check_program(program, mpy_cross(), core)
    with tempfile.TemporaryDirectory(prefix="pyrite-mp-") as tmp:
        frozen_c = freeze(program, library, core, Path(tmp), min_mem_mib)
        _run([toolchain.cc, *(core / "cflags").read_text().split(), "-o", output, frozen_c,
              core / "libmicropython.a", "-lm", "-Wl,--gc-sections"], "linking the host program")
    return output


def build_python_image(program: Program, output: Path | str | None, *, min_mem_mib: int = 0,
                       name: str | None = None) -> Path:
    """A bootable image running `program` (or the REPL when program.main is None), written
    to `output` (None: the cached image's path is returned)."""
    from pyrite.unikernel import build as libos_build
    toolchain = guest_toolchain()
    core = core_library(toolchain)
    library = _check_program(program, mpy_cross(), core)
    name = name or (program.main.stem if program.main is not None else "micropython")
    with tempfile.TemporaryDirectory(prefix="pyrite-mp-") as tmp:
        frozen_c = freeze(program, library, core, Path(tmp) / name, min_mem_mib)
        # The whole core goes in and --gc-sections keeps what is reachable from main().
        cflags = (core / "cflags").read_text().split()
        link_flags = ["-Wl,--whole-archive", str(core / "libmicropython.a"), "-Wl,--no-whole-archive"]
        try:
            return libos_build.build_image([frozen_c], output, cflags=cflags, link_flags=link_flags, name=name)
        except libos_build.BuildError as e:
            raise BuildError(f"linking the image failed:\n{e}") from e


def repl_image() -> Path:
    """The REPL image (no program), built once per core and port."""
    core = core_library(guest_toolchain())
    target = source.micropython_dir() / f"repl-{core.name.removeprefix('core-guest-')}.img"
    if not target.exists():
        built = build_python_image(Program(None), None, name="micropython")
        partial = target.with_suffix(".partial")
        shutil.copyfile(built, partial)
        os.replace(partial, target)
    return target
