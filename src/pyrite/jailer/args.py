"""The jailer's command line: Firecracker's arguments, help and parse errors (utils/arg_parser.rs).

A parse error is printed as Firecracker's jailer prints it ("Failed to parse arguments: ..."
then its Debug form "Error: ArgumentParsing(...)") and ends the process with status 1.
"""
from __future__ import annotations

from pyrite import __version__ as PYRITE_VERSION
from pyrite.api import API_VERSION

VERSION_LINE = f"Jailer v{API_VERSION} (pyrite {PYRITE_VERSION})"
DEFAULT_CHROOT_BASE = "/srv/jailer"


class Arg:
    __slots__ = ("name", "takes_value", "required", "multiple", "default", "help")

    def __init__(self, name, help, *, takes_value=True, required=False, multiple=False, default=None):
        self.name, self.help, self.takes_value = name, help, takes_value
        self.required, self.multiple, self.default = required, multiple, default


# Firecracker's build_arg_parser(), same names, flags and help texts.
ARGS = (
    Arg("id", "Jail ID.", required=True),
    Arg("exec-file", "File path to exec into.", required=True),
    Arg("uid", "The user identifier the jailer switches to after exec.", required=True),
    Arg("gid", "The group identifier the jailer switches to after exec.", required=True),
    Arg("chroot-base-dir", "The base folder where chroot jails are located.", default=DEFAULT_CHROOT_BASE),
    Arg("netns", "Path to the network namespace this microVM should join."),
    Arg("daemonize", "Daemonize the jailer before exec, by invoking setsid(), and redirecting the standard I/O "
                     "file descriptors to /dev/null.", takes_value=False),
    Arg("new-pid-ns", "Exec into a new PID namespace.", takes_value=False),
    Arg("cgroup", "Cgroup and value to be set by the jailer. It must follow this format: <cgroup_file>=<value> "
                  "(e.g cpu.shares=10). This argument can be used multiple times to add multiple cgroups.",
        multiple=True),
    Arg("resource-limit", "Resource limit values to be set by the jailer. It must follow this format: "
                          "<resource>=<value> (e.g no-file=1024). This argument can be used multiple times to add "
                          "multiple resource limits. Current available resource values are:\n\t\tfsize: The "
                          "maximum size in bytes for files created by the process.\n\t\tno-file: Specifies a "
                          "value one greater than the maximum file descriptor number that can be opened by this "
                          "process.", multiple=True),
    Arg("cgroup-version", "Select the cgroup version used by the jailer.", default="1"),
    Arg("parent-cgroup", "Parent cgroup in which the cgroup of this microvm will be placed."),
    Arg("help", "Show the help message.", takes_value=False),
    Arg("version", "Print the binary version number.", takes_value=False),
)
_BY_NAME = {a.name: a for a in ARGS}


class ArgError(Exception):
    """Firecracker's UtilsArgParserError: str() is its Display text, `debug` its Debug form."""

    def __init__(self, text: str, debug: str):
        super().__init__(text)
        self.debug = debug


def parse(argv: list[str]) -> tuple[dict, list[str]]:
    """({name: value, list of values for --cgroup/--resource-limit, True for flags}, the
    arguments after `--`), defaults filled in."""
    given: dict = {}
    extra: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            extra = argv[i + 1:]
            break
        name = token[2:] if token.startswith("--") else token
        arg = _BY_NAME.get(name) if token.startswith("--") else None
        if arg is None:
            raise ArgError(f"Found argument '{name}' which wasn't expected, or isn't valid in this context.",
                           f'UnexpectedArgument("{name}")')
        if name in given and not arg.multiple:
            raise ArgError(f"The argument '{name}' was provided more than once.", f'DuplicateArgument("{name}")')
        if not arg.takes_value:
            given[name] = True
            i += 1
            continue
        if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
            raise ArgError(f"The argument '{name}' requires a value, but none was supplied.",
                           f'MissingValue("{name}")')
        if arg.multiple:
            given.setdefault(name, []).append(argv[i + 1])
        else:
            given[name] = argv[i + 1]
        i += 2
    if "help" in given or "version" in given:
        return given, extra
    for arg in sorted(ARGS, key=lambda a: a.name):  # Firecracker checks them in name order
        if arg.required and arg.name not in given:
            raise ArgError(f"Argument '{arg.name}' required, but not found.", f'MissingArgument("{arg.name}")')
    for arg in ARGS:
        if arg.default is not None:
            given.setdefault(arg.name, arg.default)
    return given, extra


def help_text() -> str:
    """--help, laid out as Firecracker's jailer prints it."""
    def column(args):
        width = max(len(_left(a)) for a in args) + 3
        return [f"  {_left(a):<{width}}{a.help}" + (f' [default: "{a.default}"]' if a.default else "")
                for a in sorted(args, key=lambda a: a.name)]
    required = [a for a in ARGS if a.required]
    optional = [a for a in ARGS if not a.required]
    return "\n".join([VERSION_LINE, "", "required arguments:", *column(required), "", "optional arguments:",
                      *column(optional), "", "Any arguments after the -- separator will be supplied to the "
                      "jailed binary.", "", ""])


def _left(arg: Arg) -> str:
    return f"--{arg.name}" + (f" <{arg.name}>" if arg.takes_value else "")
