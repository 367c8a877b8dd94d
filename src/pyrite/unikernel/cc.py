"""`pyrite-cc` (also `pyrite unikernel cc`): a C compiler driver whose executables are
pyrite images, so that existing build files work with `make CC=pyrite-cc` and
`./configure CC=pyrite-cc --host=x86_64-linux-musl`.

It takes gcc's command line. Compiling (`-c`) goes through pyrite.unikernel.build's
object cache; the final link (no -c/-S/-E) produces a bootable image named by -o
(default a.out) whose argv[0] is that file's name. Preprocessing (-E, -M, -MM), -S and
the questions a build system asks (--version, -v, -dumpversion, -print-*) go to the
host's gcc with the library OS's headers in place of the host's. Flags it does not know
are given to gcc as they are. Options of its own, for the link: --ring0, --multiboot,
--no-pvh-note, --cmdline=S (the image's default command line), --name=N (argv[0]),
--stack-size=SIZE (the application's stack, as `pyrite unikernel build --stack-size`).
"""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

# The target triplet it answers to -dumpmachine: what `./configure --host=` should be given.
TARGET = "x86_64-linux-musl"

# gcc options whose value may be the next word, by where they go.
_CFLAGS_VALUED = ("-I", "-D", "-U", "-include", "-imacros", "-isystem", "-iquote", "-idirafter", "-iprefix",
                  "-iwithprefix", "-iwithprefixbefore", "-isysroot", "--param", "-Xpreprocessor",
                  "-Xassembler", "-aux-info")
_DEP_VALUED = ("-MF", "-MT", "-MQ")
_DEP_FLAGS = ("-MD", "-MMD", "-MP", "-MG")
# Link options that a static image already has, or that mean nothing for it.
_LINK_IGNORED = ("-static", "-no-pie", "-rdynamic", "-static-libgcc", "-pthread", "-pipe", "-nostartfiles")
_INFO = ("--version", "-dumpversion", "-dumpfullversion", "-dumpmachine", "-dumpspecs", "--help")


class UsageError(Exception):
    """A command line pyrite-cc cannot carry out; the message names the option."""


@dataclass
class Command:
    mode: str = "link"                  # link, compile (-c), assemble (-S), preprocess (-E), depend (-M, -MM)
    inputs: list[tuple[str, str | None]] = field(default_factory=list)     # (file or -lNAME, -x language)
    output: str | None = None
    cflags: list[str] = field(default_factory=list)
    dep_flags: list[str] = field(default_factory=list)
    library_dirs: list[str] = field(default_factory=list)
    link_flags: list[str] = field(default_factory=list)
    info: list[str] = field(default_factory=list)       # questions for gcc (-print-*, --version, ...)
    verbose: bool = False
    ring0: bool = False
    protocol: str = "default"
    pvh_note: bool = True
    cmdline: str | None = None
    name: str | None = None
    stack_size: str | None = None


def parse(argv: list[str]) -> Command:
    cmd = Command()
    language: str | None = None
    args = iter(argv)

    def value(option: str, attached: str) -> str:
        if attached:
            return attached
        try:
            return next(args)
        except StopIteration:
            raise UsageError(f"missing argument to '{option}'") from None

    for arg in args:
        if not arg.startswith("-") or arg == "-":
            cmd.inputs.append((arg, language))
        elif arg.startswith("-o"):
            cmd.output = value("-o", arg[2:])
        elif arg in ("-c", "-S", "-E"):
            cmd.mode = {"-c": "compile", "-S": "assemble", "-E": "preprocess"}[arg]
        elif arg in ("-M", "-MM"):
            cmd.mode = "depend"
            cmd.dep_flags.append(arg)
        elif arg in _DEP_FLAGS:
            cmd.dep_flags.append(arg)
        elif arg.startswith(_DEP_VALUED):
            cmd.dep_flags += [arg[:3], value(arg[:3], arg[3:])]
        elif arg.startswith("-x"):
            language = value("-x", arg[2:])
            language = None if language == "none" else language
        elif arg.startswith("-L"):
            cmd.library_dirs.append(value("-L", arg[2:]))
        elif arg.startswith("-l"):
            cmd.inputs.append(("-l" + value("-l", arg[2:]), None))
        elif arg.startswith("-Wl,") or arg in ("-s", "-z", "-u", "-Xlinker"):
            cmd.link_flags += [arg] if arg.startswith("-Wl,") or arg == "-s" else [arg, value(arg, "")]
        elif arg == "-shared":
            raise UsageError("-shared: a pyrite image is one static executable; build a static library "
                             "(ar rcs libNAME.a ...) and link it with -lNAME")
        elif arg in ("-T", "-e") or arg.startswith(("-T", "-e", "--entry")):
            raise UsageError(f"{arg}: a pyrite image has the library OS's own linker script and entry point")
        elif arg in _LINK_IGNORED:
            if arg == "-pthread":
                cmd.cflags.append(arg)          # defines _REENTRANT when compiling; nothing to link
        elif arg == "-v":
            cmd.verbose = True
        elif arg in _INFO or arg.startswith("-print-"):
            cmd.info.append(arg)
        elif arg == "--ring0":
            cmd.ring0 = True
        elif arg == "--multiboot":
            cmd.protocol = "multiboot"
        elif arg == "--no-pvh-note":
            cmd.pvh_note = False
        elif arg.startswith(("--cmdline", "--name", "--stack-size")):
            option, eq, attached = arg.partition("=")
            if option not in ("--cmdline", "--name", "--stack-size"):
                cmd.cflags.append(arg)
            else:
                setattr(cmd, option[2:].replace("-", "_"), attached if eq else value(option, ""))
        else:
            for prefix in _CFLAGS_VALUED:
                if arg == prefix:
                    cmd.cflags += [arg, value(arg, "")]
                    break
            else:
                cmd.cflags.append(arg)      # -O2, -g, -Wall, -std=c99, -DX, -Iinc, and whatever gcc knows
    return cmd


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from pyrite.unikernel.build import BuildError
    try:
        return run(parse(argv))
    except UsageError as e:
        print(f"pyrite-cc: error: {e}", file=sys.stderr)
        return 1
    except BuildError as e:
        print(str(e).rstrip(), file=sys.stderr)
        return 1


def run(cmd: Command) -> int:
    from pyrite.unikernel import build
    if cmd.info or (cmd.verbose and not cmd.inputs):
        return _answer(cmd, build)
    if not cmd.inputs:
        raise UsageError("no input files")
    if cmd.mode in ("preprocess", "depend", "assemble"):
        return _gcc_as_is(cmd, build)
    if any(name == "-" for name, _ in cmd.inputs):
        return _with_stdin_source(cmd)
    sources = [(name, lang) for name, lang in cmd.inputs if not name.startswith("-l")
               and (lang is not None or build.source_language(name) is not None)]
    if cmd.mode == "compile":
        if cmd.output and len(sources) > 1:
            raise UsageError("cannot specify '-o' with '-c' with multiple files")
        for name, lang in sources:
            output = cmd.output or Path(name).with_suffix(".o").name
            build.compile_object(name, cmd.cflags, output=output, ring0=cmd.ring0, language=lang,
                                 dep_flags=_dependency_flags(cmd.dep_flags, output), on_warnings=_warn)
        return 0
    inputs: list[str | Path] = []
    for name, lang in cmd.inputs:
        if (name, lang) in sources:
            deps = _dependency_flags(cmd.dep_flags, Path(name).with_suffix(".o").name)
            inputs.append(build.compile_object(name, cmd.cflags, ring0=cmd.ring0, language=lang,
                                               dep_flags=deps, on_warnings=_warn))
        else:
            inputs.append(name)                 # objects, archives, -lNAME: in their order
    output = cmd.output or "a.out"
    options = build.ImageOptions(name=cmd.name or Path(output).stem, cmdline=cmd.cmdline or "",
                                 protocol=cmd.protocol, ring0=cmd.ring0, pvh_note=cmd.pvh_note,
                                 stack_size=build.parse_stack_size(cmd.stack_size or build.DEFAULT_STACK_SIZE))
    image = build.link_image(inputs, output, options, library_dirs=cmd.library_dirs, link_flags=cmd.link_flags,
                             names=[name for name, _ in cmd.inputs], on_warnings=_warn)
    image.chmod(0o755)                          # an executable, as a linker's output is
    return 0


def _with_stdin_source(cmd: Command) -> int:
    """`-x LANG -` (a source on standard input, as some configure scripts give it): the
    source is written to a file first, as gcc does."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix="pyrite-cc-stdin-") as tmp:
        inputs = []
        for name, lang in cmd.inputs:
            if name == "-":
                if lang is None:
                    raise UsageError("-x LANGUAGE is needed when the input is standard input")
                name = str(Path(tmp) / "stdin")
                Path(name).write_bytes(sys.stdin.buffer.read())
                if cmd.mode == "compile" and cmd.output is None:
                    cmd.output = "-.o"                  # gcc's name for it
            inputs.append((name, lang))
        cmd.inputs = inputs
        return run(cmd)


def _dependency_flags(flags: list[str], obj: str) -> list[str]:
    """-MD/-MMD as gcc means them while compiling to `obj`: the file `obj` less its suffix
    plus .d, target `obj`, unless -MF / -MT / -MQ say otherwise."""
    if not any(f in ("-MD", "-MMD") for f in flags):
        return flags
    extra = []
    if "-MF" not in flags:
        extra += ["-MF", str(Path(obj).with_suffix(".d"))]
    if "-MT" not in flags and "-MQ" not in flags:
        extra += ["-MT", obj]
    return [*flags, *extra]


def _gcc_as_is(cmd: Command, build) -> int:
    """-E, -M, -MM and -S: gcc's own output, with the image's compile flags and headers."""
    gcc = build._gcc()[0]
    flags = {"preprocess": ["-E"], "depend": [], "assemble": ["-S"]}[cmd.mode]
    words = []
    for name, lang in cmd.inputs:
        words += ["-x", lang or "none", name]
    argv = [gcc, *build.compile_flags(cmd.ring0), *cmd.cflags, *cmd.dep_flags, *flags, *words,
            *(["-o", cmd.output] if cmd.output else []), *(["-v"] if cmd.verbose else [])]
    return subprocess.run(argv).returncode


def _answer(cmd: Command, build) -> int:
    """--version, -v, -dumpversion, -dumpmachine, -print-*: what build systems ask."""
    gcc = build._gcc()[0]
    from pyrite import __version__
    for question in cmd.info or ["-v"]:
        if question == "-dumpmachine":
            print(TARGET)
        elif question == "--version":
            done = subprocess.run([gcc, "--version"], capture_output=True, text=True)
            first, _, rest = done.stdout.partition("\n")
            print(f"{first}\npyrite-cc {__version__}: builds pyrite unikernel images with this gcc\n{rest}", end="")
        else:
            code = subprocess.run([gcc, question]).returncode
            if code:
                return code
    return 0


def _warn(text: str) -> None:
    sys.stderr.write(text if text.endswith("\n") else text + "\n")


if __name__ == "__main__":
    sys.exit(main())
