"""`pyrite unikernel build APP.py ...` (a Python program as an image) and `pyrite micropython`
(the REPL in a microVM)."""
from __future__ import annotations

import sys
from pathlib import Path

BUILD_USAGE = """usage: pyrite unikernel build APP.py -o IMAGE [--module PATH ...] [--files DIR] [--mem-mib N]
                              [--name NAME]

Freezes APP.py (and each --module: a .py file or a package directory) as MicroPython bytecode
into IMAGE, which boots on pyrite, QEMU and Firecracker. `pyrite run IMAGE ARG ...` runs it:
sys.argv = ["APP.py", ARG, ...], NAME=VALUE words before `--` go to os.environ, sys.exit(n)
is the exit status, an uncaught exception prints its traceback and gives status 1.
  --module PATH  a module (x.py) or package (a directory) the program imports
  --files DIR    files the program reads at run time (and modules it imports from them):
                 packed into IMAGE.cpio, the initrd (`pyrite run IMAGE --initrd IMAGE.cpio`)
  --mem-mib N    the memory the image needs: it refuses to run in a smaller VM
  --name NAME    the image's name (default: APP)"""

REPL_USAGE = """usage: pyrite micropython [--mem-mib N] [pyrite run options]

MicroPython's REPL in a microVM on this terminal: line editing and history (arrows, Ctrl-A/E,
Ctrl-R... as MicroPython's readline), Ctrl-D on an empty line exits, Ctrl-C ends the VM."""


class UsageError(Exception):
    pass


def is_python_build(argv: list[str]) -> bool:
    """A `pyrite unikernel build` whose program is Python."""
    return any(a.endswith(".py") and not a.startswith("-") for a in argv)


def parse_build(argv: list[str]) -> dict:
    opts: dict = {"main": None, "output": None, "modules": [], "files": None, "mem_mib": 0, "name": None}
    valued = {"-o": "output", "--output": "output", "--module": "modules", "--files": "files",
              "--mem-mib": "mem_mib", "--name": "name"}
    i = 0
    while i < len(argv):
        arg = argv[i]
        option, eq, inline = arg.partition("=")
        if arg in ("-h", "--help"):
            print(BUILD_USAGE)
            raise SystemExit(0)
        if option in valued:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"{arg} needs a value")
                inline = argv[i]
            key = valued[option]
            if key == "modules":
                opts["modules"].append(Path(inline))
            elif key == "mem_mib":
                if not inline.isdigit() or int(inline) < 1:
                    raise UsageError(f"--mem-mib {inline}: expected a whole number of MiB (1 or more)")
                opts["mem_mib"] = int(inline)
            else:
                opts[key] = inline
        elif arg.startswith("-"):
            raise UsageError(f"unknown option {arg} for a Python image (see `pyrite unikernel build --help`)")
        elif opts["main"] is not None:
            raise UsageError(f"{arg}: give one program (APP.py); other modules go with --module")
        elif not arg.endswith(".py"):
            raise UsageError(f"{arg}: a Python image is built from one APP.py (C sources build C images)")
        else:
            opts["main"] = Path(arg)
        i += 1
    if opts["main"] is None:
        raise UsageError("no program given (e.g. `pyrite unikernel build app.py -o app.img`)")
    if opts["output"] is None:
        opts["output"] = opts["main"].with_suffix(".img").name
    if opts["files"] is not None and not Path(opts["files"]).is_dir():
        raise UsageError(f"--files {opts['files']}: not a directory")
    return opts


def cmd_build(argv: list[str]) -> int:
    try:
        opts = parse_build(argv)
    except UsageError as e:
        print(f"pyrite unikernel build: {e}", file=sys.stderr)
        return 2
    from pyrite.unikernel.micropython.build import BuildError, Program, build_python_image
    from pyrite.unikernel.micropython.source import SourceError
    main = opts["main"]
    if not main.is_file():
        print(f"pyrite unikernel build: {main}: no such file", file=sys.stderr)
        return 2
    program = Program(main, tuple(opts["modules"]), Path(opts["files"]) if opts["files"] else None)
    try:
        image = build_python_image(program, opts["output"], min_mem_mib=opts["mem_mib"], name=opts["name"])
    except (BuildError, SourceError) as e:
        print(e, file=sys.stderr)
        return 1
    except OSError as e:
        print(f"pyrite unikernel build: {opts['output']}: {e.strerror}", file=sys.stderr)
        return 1
    from pyrite.unikernel.image_info import read_image_info
    size, loaded = Path(image).stat().st_size, read_image_info(image).loaded_size
    print(f"{image}: {loaded} bytes loaded ({loaded / 1024:.1f} KiB; the file, {size} bytes, adds the symbol "
          f"table), MicroPython program {main.name}")
    if opts["files"] is not None:
        from pyrite.unikernel.files import FilesError, initrd_path, write_archive
        try:
            archive, entries = write_archive(opts["files"], initrd_path(Path(image)))
        except FilesError as e:
            print(f"pyrite unikernel build: {e}", file=sys.stderr)
            return 1
        except OSError as e:
            print(f"pyrite unikernel build: {initrd_path(Path(image))}: {e.strerror}", file=sys.stderr)
            return 1
        print(f"{archive}: {entries} files from {opts['files']}: run with `pyrite run {image} --initrd {archive}`")
    return 0


def cmd_repl(argv: list[str]) -> int:
    """`pyrite micropython`: build (once, cached) the REPL image and run it in the foreground."""
    if any(a in ("-h", "--help") for a in argv):
        print(REPL_USAGE)
        return 0
    from pyrite.unikernel.micropython.build import BuildError, repl_image
    from pyrite.unikernel.micropython.source import SourceError
    try:
        image = repl_image()
    except (BuildError, SourceError) as e:
        print(f"pyrite micropython: {e}", file=sys.stderr)
        return 1
    from pyrite.cli import cmd_run
    return cmd_run([str(image), "--quiet", *argv])
