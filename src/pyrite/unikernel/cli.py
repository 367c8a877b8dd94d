"""`pyrite unikernel build|cc|inspect`: build C applications into images, and describe images."""
from __future__ import annotations

import sys

USAGE = """usage: pyrite unikernel build APP.py -o IMAGE [--module PATH ...] [--files DIR] [--mem-mib N]
       pyrite unikernel build INPUT [INPUT ...] -o IMAGE [--cmdline S] [--ring0]
                              [--name NAME] [--stack-size SIZE] [--multiboot] [--no-pvh-note]
                              [-DNAME[=VALUE]] [-UNAME] [-I DIR] [-L DIR] [-lNAME] [--cflags "FLAGS"]
                              [--files DIR]
       pyrite unikernel cc GCC-ARGS...        (also installed as pyrite-cc)
       pyrite unikernel inspect IMAGE

build    compiles C (and assembly) sources with pyrite's library OS into IMAGE, one ELF64
         file that boots by PVH and by the Linux 64-bit protocol (pyrite, QEMU -kernel,
         Firecracker). INPUTs are sources (.c, .S, .s), objects (.o), archives (.a) and
         -lNAME (libNAME.a from the -L directories), linked in their order; paths are
         relative to the current directory. Run it with `pyrite run IMAGE [ARG ...]`.
           -o IMAGE       output file (default: the first source's name with .img)
           --cmdline S    default command line, used when the VMM gives none
           --ring0        run the application at CPL 0 (default: CPL 3, privileged only
                          for exceptions and interrupts)
           --name NAME    argv[0] (default: IMAGE's name without its suffix)
           --stack-size SIZE
                          the application's stack, bytes or with a K, M or G suffix
                          (default 8M, as Linux's `ulimit -s`); a guard page under it
                          turns an overflow into a "stack overflow" crash report
           --multiboot    build a Multiboot 1 image instead (GRUB, QEMU -kernel)
           --no-pvh-note  leave out the PVH note: boots by the Linux 64-bit protocol only
           --files DIR    pack DIR's files into IMAGE's initrd, IMAGE with the suffix .cpio
                          (newc cpio, as Linux's initramfs): the application finds them in its
                          root file system. Boot with `pyrite run IMAGE --initrd IMAGE.cpio`,
                          QEMU -initrd, or Firecracker's boot-source initrd_path.
cc       a C compiler driver with gcc's command line whose executables are images:
         `make CC=pyrite-cc`, `./configure CC=pyrite-cc --host=x86_64-linux-musl`
inspect  prints an image's entry points, sections, library OS version and default
         command line."""


class UsageError(Exception):
    pass


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "build":
        from pyrite.unikernel.micropython.cli import cmd_build as cmd_build_python, is_python_build
        if is_python_build(rest):
            return cmd_build_python(rest)
    commands = {"build": cmd_build, "cc": cmd_cc, "inspect": cmd_inspect}
    if command not in commands:
        print(f"pyrite unikernel: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    try:
        return commands[command](rest)
    except UsageError as e:
        print(f"pyrite unikernel {command}: {e}", file=sys.stderr)
        return 2


def parse_build(argv: list[str]) -> dict:
    opts: dict = {"sources": [], "output": None, "cmdline": None, "ring0": False, "name": None,
                  "protocol": "default", "pvh_note": True, "cflags": [], "library_dirs": [], "files": None,
                  "stack_size": None}
    valued = {"-o": "output", "--output": "output", "--cmdline": "cmdline", "--name": "name",
              "--cflags": "cflags", "--files": "files", "--stack-size": "stack_size",
              "-I": "include", "-D": "define", "-U": "undefine",
              "-L": "library_dir", "-l": "library"}
    i = 0
    while i < len(argv):
        arg = argv[i]
        option, eq, inline = arg.partition("=")
        if arg in ("-h", "--help"):
            print(USAGE)
            raise SystemExit(0)
        if option in valued and (eq or arg in valued):
            if not eq:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"{arg} needs a value")
                inline = argv[i]
            key = valued[option]
            if key == "cflags":
                import shlex
                opts["cflags"] += shlex.split(inline)
            elif key in ("include", "define", "undefine"):
                opts["cflags"].append(option + inline)
            elif key == "library_dir":
                opts["library_dirs"].append(inline)
            elif key == "library":
                opts["sources"].append("-l" + inline)
            else:
                opts[key] = inline
        elif arg.startswith("-o") and len(arg) > 2:
            opts["output"] = arg[2:]
        elif arg == "--ring0":
            opts["ring0"] = True
        elif arg == "--multiboot":
            opts["protocol"] = "multiboot"
        elif arg == "--no-pvh-note":
            opts["pvh_note"] = False
        elif arg.startswith(("-D", "-U", "-I")) and len(arg) > 2:
            opts["cflags"].append(arg)
        elif arg.startswith("-L") and len(arg) > 2:
            opts["library_dirs"].append(arg[2:])
        elif arg.startswith("-l") and len(arg) > 2:
            opts["sources"].append(arg)
        elif arg.startswith("-"):
            raise UsageError(f"unknown option {arg}")
        else:
            opts["sources"].append(arg)
        i += 1
    if not opts["sources"]:
        raise UsageError("no source files given (e.g. `pyrite unikernel build app.c -o app.img`)")
    if opts["files"] is not None:
        from pathlib import Path
        if not Path(opts["files"]).is_dir():
            raise UsageError(f"--files {opts['files']}: not a directory")
    if opts["output"] is None:
        from pathlib import Path
        first = next((s for s in opts["sources"] if not s.startswith("-l")), None)
        if first is None:
            raise UsageError("no source files given (e.g. `pyrite unikernel build app.c -o app.img`)")
        opts["output"] = Path(first).with_suffix(".img").name
    return opts


def cmd_build(argv: list[str]) -> int:
    opts = parse_build(argv)
    from pyrite.unikernel.build import DEFAULT_STACK_SIZE, BuildError, build_image, parse_stack_size
    from pyrite.unikernel.files import FilesError, initrd_path, write_archive
    try:
        stack_size = DEFAULT_STACK_SIZE if opts["stack_size"] is None else parse_stack_size(opts["stack_size"])
    except BuildError as e:
        raise UsageError(f"--stack-size: {e}") from None

    def show_warnings(text: str) -> None:
        sys.stderr.write(text if text.endswith("\n") else text + "\n")

    try:
        image = build_image(opts["sources"], opts["output"], protocol=opts["protocol"], ring0=opts["ring0"],
                            pvh_note=opts["pvh_note"], cflags=opts["cflags"], cmdline=opts["cmdline"],
                            library_dirs=opts["library_dirs"],
                            name=opts["name"], stack_size=stack_size, on_warnings=show_warnings)
    except BuildError as e:
        print(e, file=sys.stderr)           # gcc's messages as gcc gave them
        return 1
    except OSError as e:
        print(f"pyrite unikernel build: {opts['output']}: {e.strerror}", file=sys.stderr)
        return 1
    from pyrite.unikernel.image_info import read_image_info
    size, loaded = image.stat().st_size, read_image_info(image).loaded_size
    boots = "Multiboot 1" if opts["protocol"] == "multiboot" else (
        "PVH and Linux 64-bit" if opts["pvh_note"] else "Linux 64-bit")
    privilege = "ring 0" if opts["ring0"] else "CPL 3"
    print(f"{image}: {loaded} bytes loaded ({loaded / 1024:.1f} KiB; the file, {size} bytes, adds the symbol "
          f"table for crash reports), boots by {boots}, application at {privilege}")
    if opts["files"] is not None:
        try:
            archive, entries = write_archive(opts["files"], initrd_path(image))
        except FilesError as e:
            print(f"pyrite unikernel build: {e}", file=sys.stderr)
            return 1
        except OSError as e:
            print(f"pyrite unikernel build: {initrd_path(image)}: {e.strerror}", file=sys.stderr)
            return 1
        print(f"{archive}: {entries} files from {opts['files']} ({archive.stat().st_size} bytes, newc cpio): "
              f"run with `pyrite run {image} --initrd {archive}`")
    return 0


def cmd_cc(argv: list[str]) -> int:
    from pyrite.unikernel.cc import main as cc_main
    return cc_main(argv)


def cmd_inspect(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE)
        return 0
    unknown = [a for a in argv if a.startswith("-")]
    if unknown:
        raise UsageError(f"unknown option {unknown[0]}")
    if len(argv) != 1:
        raise UsageError("give one IMAGE (e.g. `pyrite unikernel inspect app.img`)")
    paths = argv
    from pyrite.unikernel.image_info import ImageError, format_image_info, read_image_info
    try:
        print(format_image_info(read_image_info(paths[0])))
    except ImageError as e:
        print(f"pyrite unikernel inspect: {e}", file=sys.stderr)
        return 1
    return 0
