"""`pyrite-vmm`: Firecracker's command line, one microVM per process.

    pyrite-vmm --api-sock /tmp/fc.sock [--id ID] [--config-file vm.json] [--boot-timer] ...
    pyrite-vmm --no-api --config-file vm.json

Flags, defaults, refusals, log lines and exit codes follow Firecracker's (main.rs,
utils/arg_parser.rs): an unknown flag or a missing value ends the process with exit code
153 and Firecracker's words.
"""
from __future__ import annotations

import time

PROCESS_START_NS = time.monotonic_ns()
PROCESS_START_CPU_NS = time.process_time_ns()

import os  # noqa: E402
import sys  # noqa: E402

from pyrite import __version__ as PYRITE_VERSION  # noqa: E402

from . import API_VERSION  # noqa: E402
from .logger import LOGGER, LEVELS, LoggerError  # noqa: E402

DEFAULT_API_SOCK = "/run/firecracker.socket"
DEFAULT_PAYLOAD_LIMIT = 51200

# Firecracker's exit codes (FcExitCode); a refused system call ends the process with 148
# (pyrite.seccomp.sigsys.EXIT_BAD_SYSCALL).
EXIT_OK, EXIT_GENERIC, EXIT_BAD_CONFIGURATION, EXIT_ARG_PARSING = 0, 1, 152, 153


class Arg:
    __slots__ = ("name", "takes_value", "default", "help", "requires")

    def __init__(self, name, takes_value, help, default=None, requires=None):
        self.name, self.takes_value, self.help = name, takes_value, help
        self.default, self.requires = default, requires


# Firecracker's arguments, in its help order. Flags pyrite cannot honour yet are accepted
# and refused after parsing (see _refuse_unsupported), so the words stay Firecracker's.
ARGS = (
    Arg("api-sock", True, "Path to unix domain socket used by the API.", DEFAULT_API_SOCK),
    Arg("boot-timer", False, "Whether or not to load boot timer device for logging elapsed time since "
                             "InstanceStart command."),
    Arg("config-file", True, "Path to a file that contains the microVM configuration in JSON format."),
    Arg("describe-snapshot", True, "Print the data format version of the provided snapshot state file."),
    Arg("help", False, "Show the help message."),
    Arg("http-api-max-payload-size", True, "Http API request payload max size, in bytes.", str(DEFAULT_PAYLOAD_LIMIT)),
    Arg("id", True, "MicroVM unique identifier.", "anonymous-instance"),
    Arg("level", True, "Set the logger level."),
    Arg("log-path", True, "Path to a fifo or a file used for configuring the logger on startup."),
    Arg("metadata", True, "Path to a file that contains metadata in JSON format to add to the mmds."),
    Arg("metrics-path", True, "Path to a fifo or a file used for configuring the metrics on startup."),
    Arg("mmds-size-limit", True, "Mmds data store limit, in bytes."),
    Arg("module", True, "Set the logger module filter."),
    Arg("no-api", False, "Optional parameter which allows starting and using a microVM without an active API "
                         "socket.", requires="config-file"),
    Arg("no-seccomp", False, "Optional parameter which allows starting and using a microVM without seccomp "
                             "filtering. Not recommended."),
    Arg("parent-cpu-time-us", True, "Parent process CPU time (wall clock, microseconds). This parameter is optional."),
    Arg("seccomp-filter", True, "Optional parameter which allows specifying the path to a custom seccomp filter. "
                                "For advanced users."),
    Arg("show-level", False, "Whether or not to output the level in the logs."),
    Arg("show-log-origin", False, "Whether or not to include the file path and line number of the log's origin."),
    Arg("snapshot-version", False, "Print the supported data format version."),
    Arg("start-time-cpu-us", True, "Process start CPU time (wall clock, microseconds). This parameter is optional."),
    Arg("start-time-us", True, "Process start time (wall clock, microseconds). This parameter is optional."),
    Arg("version", False, "Print the binary version number."),
)
_BY_NAME = {a.name: a for a in ARGS}


class ArgError(Exception):
    """Firecracker's arg_parser error text (without the "Arguments parsing error: " lead)."""


def parse_args(argv: list[str]) -> dict:
    """{name: value} with defaults filled in; flags are True when given."""
    given: dict = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--"):
            raise ArgError(f"Found argument '{token}' which wasn't expected, or isn't valid in this context.")
        name = token[2:]
        arg = _BY_NAME.get(name)
        if arg is None:
            raise ArgError(f"Found argument '{name}' which wasn't expected, or isn't valid in this context.")
        if name in given:
            raise ArgError(f"The argument '{name}' was provided more than once.")
        if arg.takes_value:
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise ArgError(f"The argument '{name}' requires a value, but none was supplied.")
            given[name] = argv[i + 1]
            i += 2
        else:
            given[name] = True
            i += 1
    if "help" in given or "version" in given:
        return given
    for name, value in list(given.items()):
        requires = _BY_NAME[name].requires
        if requires and requires not in given:
            raise ArgError(f"Argument '{requires}' required, but not found.")
    for arg in ARGS:
        if arg.name not in given and arg.default is not None:
            given[arg.name] = arg.default
    return given


def help_text() -> str:
    lines = [f"Firecracker v{API_VERSION} (pyrite {PYRITE_VERSION})", "", "optional arguments:"]
    for a in ARGS:
        left = f"  --{a.name}" + (f" <{a.name}>" if a.takes_value else "")
        default = f' [default: "{a.default}"]' if a.default is not None else ""
        lines.append(f"{left:<60}{a.help}{default}")
    return "\n".join(lines) + "\n"


def _usize(args: dict, name: str) -> int | None:
    raw = args.get(name)
    if raw is None:
        return None
    if not (raw.isdigit() and raw.isascii()) or int(raw) >= 2**64:
        raise ArgError(f"'{name}' parameter expected to be of 'usize' type.")
    return int(raw)


def _check_instance_id(value: str) -> None:
    """Firecracker's validate_instance_id: 1 to 64 characters, alphanumeric or '-'."""
    if not 1 <= len(value) <= 64:
        raise ArgError(f"Invalid instance ID: InvalidLen({len(value)}, 1, 64)")
    for i, c in enumerate(value):
        if not (c == "-" or (c.isascii() and c.isalnum())):
            raise ArgError(f"Invalid instance ID: InvalidChar({c!r}, {i})")


def _fail(message: str, code: int) -> int:
    LOGGER.error(message)
    LOGGER.error(f"Firecracker exiting with error. exit_code={code}")
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse_args(argv)
    except ArgError as e:
        # Firecracker writes a literal "\n\n" here (an escaped string in its log line).
        return _fail(f"Arguments parsing error: {e} \\n\\nFor more information try --help.", EXIT_ARG_PARSING)
    if "help" in args:
        sys.stdout.write(help_text())
        return EXIT_OK
    if "version" in args:
        sys.stdout.write(f"Firecracker v{API_VERSION} (pyrite {PYRITE_VERSION})\n\n")
        return EXIT_OK
    if "snapshot-version" in args or "describe-snapshot" in args:
        return _snapshot_version(args.get("describe-snapshot"))
    try:
        _check_instance_id(args["id"])
        payload_limit = _usize(args, "http-api-max-payload-size")
        _usize(args, "mmds-size-limit")
        for name in ("start-time-us", "start-time-cpu-us", "parent-cpu-time-us"):
            _usize(args, name)
    except ArgError as e:
        return _fail(str(e), EXIT_ARG_PARSING)

    LOGGER.instance_id = args["id"]
    from .preload import one_malloc_arena
    one_malloc_arena()      # before any thread: see there (seccomp filters and glibc's free)
    level = args.get("level")
    if level is not None:
        from pyrite.config.levels import parse_level
        try:
            level = parse_level(level)
        except ValueError:
            return _fail(f"Invalid value for logger level: Failed to parse string to level filter: {level}."
                         "Possible values: [Error, Warning, Info, Debug]", EXIT_BAD_CONFIGURATION)
    try:
        LOGGER.configure(log_path=args.get("log-path"), level=level,
                         show_level=True if "show-level" in args else None,
                         show_log_origin=True if "show-log-origin" in args else None, module=args.get("module"))
    except LoggerError as e:
        return _fail(f"Could not initialize logger: {e}", EXIT_GENERIC)
    LOGGER.info(f"Running Firecracker v{API_VERSION} (pyrite {PYRITE_VERSION})")

    from .metrics import METRICS, MetricsError
    if "metrics-path" in args:
        try:
            METRICS.init(args["metrics-path"])
        except MetricsError as e:
            return _fail(f"Could not initialize metrics: {e}", EXIT_GENERIC)
    unsupported = _refuse_unsupported(args)
    if unsupported:
        return _fail(unsupported, EXIT_GENERIC)
    seccomp = None if "no-seccomp" in args else DEFAULT_SECCOMP
    if "seccomp-filter" in args and seccomp is not None:
        try:    # a user's file is checked before the API socket opens; pyrite's own after (start-up time)
            seccomp = _seccomp_filters(args["seccomp-filter"], METRICS)
        except Exception as e:   # SeccompFilterError, LibseccompError: the text names the problem
            return _fail(f"Seccomp error: {e}", EXIT_GENERIC)

    try:
        return _run(args, payload_limit, METRICS, seccomp)
    except KeyboardInterrupt:  # before the VMM is up (later ones are handled in _run)
        try:
            METRICS.flush()
        except MetricsError:
            pass
        return _fail("Interrupted.", EXIT_GENERIC)
    finally:
        METRICS.stop_periodic()


def _snapshot_version(path: str | None) -> int:
    """--snapshot-version: the state-file format this VMM writes; --describe-snapshot FILE: the
    format of FILE (checked whole), as Firecracker prints them ("v<major>.0.0")."""
    from pyrite.config.errors import io_error_text
    from pyrite.snapshot import format
    version = format.VERSION
    if path is not None:
        try:
            version = format.read_version(path)
        except OSError as e:
            return _fail(f"When printing Snapshot Data format: Unable to open snapshot state file: "
                         f"{io_error_text(e)}", EXIT_GENERIC)
        except format.SnapshotFormatError as e:
            return _fail(f"When printing Snapshot Data format: Invalid data format version of snapshot "
                         f"file: {e}", EXIT_GENERIC)
    sys.stdout.write(f"v{version}.0.0\n")
    LOGGER.info("Firecracker exiting successfully. exit_code=0")
    return EXIT_OK


def _refuse_unsupported(args: dict) -> str | None:
    if "metadata" in args:
        from pyrite.config import FEATURES
        return f"The requested operation is not supported: pyrite does not support {FEATURES['mmds']} yet."
    return None


DEFAULT_SECCOMP = "default"   # pyrite's filters, compiled once the API socket is up


def _seccomp_filters(path: str | None, metrics) -> dict:
    """The compiled filters of `path` (pyrite's default ones when None), by thread category,
    with the SIGSYS handler that reports a refused system call installed."""
    from pyrite.seccomp import load_compiled
    from pyrite.seccomp.sigsys import install_handler

    def report(line: str) -> None:
        LOGGER.emergency(line)
        metrics.seccomp.inc("num_faults")
        try:
            metrics.flush(lock_timeout=0.1)
        except Exception:
            pass
    filters = load_compiled(path)
    install_handler(report, filters.names)
    return filters.programs


def _filter_host_threads(seccomp: dict, server, vmm) -> None:
    """After a boot or a snapshot load: the main thread installs the "vmm" filter, the API
    thread the "api" one, and then the vCPUs, held since the start, enter the guest (the event
    loop's and vCPUs' threads have installed theirs, see Vmm.start)."""
    if server is not None and not server.run_in_thread(seccomp["api"].install):
        raise RuntimeError("the API thread did not install its seccomp filter")
    seccomp["vmm"].install()
    vmm.release()


def _run(args: dict, payload_limit: int, metrics, seccomp: dict | str | None = None) -> int:
    from pyrite.config.errors import ConfigError
    from .boot import boot_microvm
    from .controller import ApiController, Fault

    resources = None  # without a config file, the controller makes the default ones when first needed
    if "config-file" in args:
        from pyrite.config.resources import VmResources
        try:
            resources = VmResources.from_config_file(args["config-file"])
            if resources.logger is not None:
                lg = resources.logger
                LOGGER.configure(log_path=lg.log_path, level=lg.level, show_level=lg.show_level,
                                 show_log_origin=lg.show_log_origin, module=lg.module)
            if resources.metrics is not None:
                metrics.init(resources.metrics.metrics_path)
        except (ConfigError, LoggerError) as e:
            text = e.file_message if isinstance(e, ConfigError) else f"Logger error: {e}"
            mode = "RunWithoutApiError" if "no-api" in args else "RunWithApiError"
            return _fail(f"{mode} error: Failed to build MicroVM from Json: Configuration for VMM from one "
                         f"single json failed: {text}", EXIT_GENERIC)
        except Exception as e:  # metrics init
            return _fail(f"Could not initialize metrics: {e}", EXIT_GENERIC)

    controller = ApiController(resources, instance_id=args["id"], boot=boot_microvm, metrics=metrics,
                               boot_timer="boot-timer" in args)
    controller.boot_ready.clear()  # until prepare_main_thread() below
    server = None
    if "no-api" not in args:
        from .server import ApiServer, ApiSocketError
        server = ApiServer(args["api-sock"], controller, max_payload=payload_limit)
        try:
            server.bind()
        except ApiSocketError as e:
            return _fail(f"RunWithApiError error: {e}", EXIT_GENERIC)
        LOGGER.info(f'Listening on API socket ("{args["api-sock"]}").')
        server.start()
    metrics.api_server.store("process_startup_time_us", (time.monotonic_ns() - PROCESS_START_NS) // 1000)
    metrics.api_server.store("process_startup_time_cpu_us", (time.process_time_ns() - PROCESS_START_CPU_NS) // 1000)

    try:
        from .boot import prepare_main_thread
        # After the socket is up: the KVM VM and the builder's imports cost tens of ms.
        controller.machine = prepare_main_thread()
        if seccomp == DEFAULT_SECCOMP:
            try:
                seccomp = _seccomp_filters(None, metrics)
            except Exception as e:   # libseccomp missing: say so, as for a user's file
                return _fail(f"Seccomp error: {e}", EXIT_GENERIC)
        controller.seccomp = seccomp
        if seccomp is not None:
            # preload() below imports beside the API thread's build; a dataclass made while
            # another thread is half-way through importing typing fails (dataclasses reads the
            # partial module from sys.modules), so typing is imported whole first.
            import typing  # noqa: F401
        controller.boot_ready.set()
        if seccomp is not None:
            # Filtered threads cannot import. This overlaps a build that has begun: the vCPUs
            # enter the guest only after the main thread, done with it, has filtered itself.
            from .preload import preload_for_filters
            preload_for_filters()
        if metrics.initialized:   # after preload: the flusher installs its filter first
            metrics.start_periodic(seccomp=seccomp["vmm"] if seccomp is not None else None)
        if "config-file" not in args:
            import pyrite.snapshot.microvm  # noqa: F401  (ready before a PUT /snapshot/load comes)
        if "config-file" in args:
            try:
                controller.start_microvm()
            except (Fault, ConfigError) as e:
                mode = "RunWithoutApiError" if server is None else "RunWithApiError"
                return _fail(f"{mode} error: Failed to build MicroVM from Json: Could not Start MicroVM from one "
                             f"single json: {e}", EXIT_GENERIC)
        while not controller.started.wait(3600):
            pass
        if seccomp is not None:
            _filter_host_threads(seccomp, server, controller.vmm)
        status = controller.vmm.wait()
        while status is None:
            status = controller.vmm.wait(3600)
    except KeyboardInterrupt:
        status = EXIT_GENERIC
        if controller.vmm is not None:
            controller.vmm.stop()
    finally:
        try:
            metrics.flush()
        except Exception:
            pass
        if server is not None:
            server.stop()
        if controller.machine is not None:  # made ahead, never booted
            from pyrite.vmm.machine import release_machine
            release_machine(controller.machine)
            controller.machine = None
        if controller.vmm is not None and controller.vmm.wait(0) is not None:
            controller.vmm.close()  # joins the vCPU threads, releases KVM and guest memory
    vmm_exit = controller.vmm.exit if controller.vmm is not None else None
    if vmm_exit is not None and vmm_exit.message:
        LOGGER.info(f"Vmm is stopping: {vmm_exit.message}")
    if status == EXIT_OK:
        LOGGER.info("Firecracker exiting successfully. exit_code=0")
    else:
        LOGGER.error(f"Firecracker exiting with error. exit_code={status}")
    return status


if __name__ == "__main__":
    sys.exit(main())
