"""`pyrite` command line: a thin layer over pyrite.vmm / pyrite.microvm."""
from __future__ import annotations

import os
import sys
import time

import _signal as signal   # `signal` without its IntEnum wrappers (importing enum costs ms)

PROCESS_START_NS = time.monotonic_ns()
USAGE = """usage: pyrite run [IMAGE [ARG ...]] [--env NAME=VALUE ...] [--initrd F] [--cmdline S]
                  [--mem-mib N] [--vcpus N] [--serial-out F] [--drive PATH[,ro][,root] ...] [--entropy]
                  [--net TAP[,mac=XX:XX:XX:XX:XX:XX] ...] [--vsock CID,UDS_PATH]
                  [--config-file vm.json] [--snapshot-on-signal STATE,MEM] [--quiet]
       pyrite snapshot create|load|clone|inspect|rebase ...   (pyrite snapshot --help)
       pyrite warm-parent SOCKET     a process with pyrite imported that forks VMMs on request
       pyrite warm-run SOCKET pyrite-vmm|pyrite [ARG ...]   a VMM forked by it
       pyrite unikernel build APP.c [MORE.c ...] -o APP.img [--cmdline S] [--ring0]
       pyrite unikernel build APP.py -o APP.img [--module M ...] [--files DIR] [--mem-mib N]
       pyrite unikernel cc GCC-ARGS...     a C compiler driver whose executables are images (pyrite-cc)
       pyrite unikernel inspect APP.img
       pyrite micropython [--mem-mib N]   MicroPython's REPL in a microVM
       pyrite functions serve|deploy|invoke|ls|logs|rm ...   (pyrite functions --help)
       pyrite uffd-handler SOCKET MEM_FILE

Boots IMAGE (ELF vmlinux, PVH, bzImage or Multiboot) in a microVM with the serial console on
the terminal. Without IMAGE it boots pyrite's built-in demo guest. ARGs are appended to the
kernel command line: a pyrite unikernel's main() receives each exactly as given (quotes,
blanks, backslashes, `=` included; `--` ends pyrite's own options); each --env NAME=VALUE
sets one of its environment variables. Each --drive adds a
virtio-blk disk over a raw image file (drive0, drive1, ... ; ",ro" read-only, ",root" the
root device: root=/dev/vda on the command line); --entropy adds a virtio-rng device; each
--net adds a virtio-net interface (eth0, eth1, ...) over an existing TAP device; --vsock adds
a virtio-vsock device with guest CID (3 or more) and Firecracker's Unix-socket backend at
UDS_PATH (host clients send "CONNECT <port>"; guest connections to port P reach UDS_PATH_P).
With --snapshot-on-signal, `kill -USR1 <pid>` pauses the VM, writes a Full snapshot (state
and memory file) and resumes it; `pyrite snapshot load STATE` starts it again.
`uffd-handler` serves a snapshot's memory file to a VMM that loads it with the Uffd backend."""


class UsageError(Exception):
    pass


def _parse_run(argv: list[str]) -> dict:
    opts = {"image": None, "args": [], "env": {}, "initrd": None, "cmdline": None, "mem_mib": 128, "vcpus": 1,
            "serial_out": None, "config_file": None, "quiet": False, "drives": [], "entropy": False, "net": [],
            "vsock": None, "snapshot_on_signal": None}
    valued = {"--initrd": "initrd", "--cmdline": "cmdline", "--mem-mib": "mem_mib",
              "--vcpus": "vcpus", "--serial-out": "serial_out", "--config-file": "config_file",
              "--drive": "drive", "--net": "net", "--env": "env", "--vsock": "vsock", "--snapshot-on-signal": "snapshot_on_signal"}
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, inline = arg.partition("=")
        if opts["image"] is not None and not arg.startswith("--"):
            opts["args"].append(arg)
        elif arg == "--":
            rest = argv[i + 1:]
            if opts["image"] is None and rest:
                opts["image"], rest = rest[0], rest[1:]
            opts["args"].extend(rest)
            break
        elif name in valued:
            if eq:
                value = inline
            else:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"{arg} needs a value")
                value = argv[i]
            key = valued[name]
            if key == "env":
                env_name, eq, env_value = value.partition("=")
                if not eq or not env_name:
                    raise UsageError(f"--env {value!r}: expected NAME=VALUE")
                opts["env"][env_name] = env_value
            elif key == "drive":
                opts["drives"].append(_parse_drive(value, len(opts["drives"])))
            elif key == "net":
                opts["net"].append(_parse_net(value, len(opts["net"])))
            elif key == "vsock":
                opts["vsock"] = _parse_vsock(value)
            elif key == "snapshot_on_signal":
                state, comma, mem = value.partition(",")
                if not comma or not state or not mem:
                    raise UsageError(f"--snapshot-on-signal {value!r}: expected STATE_PATH,MEM_PATH")
                opts["snapshot_on_signal"] = (state, mem)
            elif key in ("mem_mib", "vcpus"):
                try:
                    opts[key] = int(value, 0)
                except ValueError:
                    raise UsageError(f"{name} {value!r}: not a number") from None
            else:
                opts[key] = value
        elif arg == "--entropy":
            opts["entropy"] = True
        elif arg in ("-q", "--quiet"):
            opts["quiet"] = True
        elif arg in ("-h", "--help"):
            print(USAGE)
            raise SystemExit(0)
        elif arg.startswith("-"):
            raise UsageError(f"unknown option {arg}")
        else:
            opts["image"] = arg
        i += 1
    return opts


def _parse_drive(value: str, index: int):
    """--drive PATH[,ro][,root] -> a pyrite.config Drive (drive id "drive<index>")."""
    path, *flags = value.split(",")
    if not path:
        raise UsageError(f"--drive {value!r}: no image path")
    unknown = [f for f in flags if f not in ("ro", "root")]
    if unknown:
        raise UsageError(f"--drive {value!r}: unknown flag {unknown[0]!r} (expected ro or root)")
    from pyrite.config.models import Drive
    return Drive.from_path(f"drive{index}", path, read_only="ro" in flags, root="root" in flags)


def _parse_net(value: str, index: int):
    """--net TAP[,mac=MAC] -> a pyrite.config NetworkInterface (iface id "eth<index>")."""
    tap, *options = value.split(",")
    if not tap:
        raise UsageError(f"--net {value!r}: no TAP device name")
    from pyrite.config.models import NetworkInterface, mac_address
    iface = NetworkInterface(iface_id=f"eth{index}", host_dev_name=tap)
    for option in options:
        key, eq, arg = option.partition("=")
        if key != "mac" or not eq:
            raise UsageError(f"--net {value!r}: unknown option {option!r} (expected mac=XX:XX:XX:XX:XX:XX)")
        try:
            iface.guest_mac = mac_address(arg)
        except ValueError as e:
            raise UsageError(f"--net {value!r}: {e}") from None
    return iface


def _parse_vsock(value: str):
    """--vsock CID,UDS_PATH -> a pyrite.config Vsock."""
    cid, comma, path = value.partition(",")
    try:
        guest_cid = int(cid, 0)
    except ValueError:
        raise UsageError(f"--vsock {value!r}: expected CID,UDS_PATH with a numeric CID") from None
    if not comma or not path:
        raise UsageError(f"--vsock {value!r}: expected CID,UDS_PATH")
    from pyrite.config.models import Vsock
    return Vsock(guest_cid=guest_cid, uds_path=path)


# Which options a configuration error is about, by pyrite.config resource.
_OPTION_OF = {"machine-config": "--vcpus/--mem-mib", "boot-source": "kernel", "drives": "--drive",
              "network-interfaces": "--net", "vsock": "--vsock", "entropy": "--entropy"}


def _resources_from(opts: dict):
    """The microVM the options describe, as pyrite.config.VmResources."""
    from pyrite.config import CONSOLE_CMDLINE, ConfigError, Entropy, VmResources
    if opts["config_file"]:
        if opts["image"] or opts["drives"] or opts["entropy"] or opts["net"] or opts["vsock"]:
            raise UsageError("give either IMAGE (with --drive/--entropy/--net/--vsock) or --config-file, not both")
        try:
            resources = VmResources.from_config_file(opts["config_file"])
            resources.check_buildable()
        except ConfigError as e:
            raise UsageError(f"{opts['config_file']}: {e}") from None
        return resources
    image = opts["image"]
    if image is None:
        from pyrite.unikernel.demo import demo_image
        try:
            image = demo_image()
        except Exception as e:
            # build.py (subprocess, pathlib, typing) is imported only when the image had to be built.
            from pyrite.unikernel.build import BuildError
            if not isinstance(e, BuildError):
                raise
            raise UsageError(f"cannot build the demo guest: {e}") from None
    cmdline = opts["cmdline"]
    if cmdline is None:
        # A pyrite unikernel has its own default command line (used when it is given none).
        from pyrite.unikernel.cmdline import is_pyrite_image
        cmdline = "" if opts["image"] is None or is_pyrite_image(image) else CONSOLE_CMDLINE
    if opts["args"] or opts["env"]:
        from pyrite.unikernel.cmdline import ArgumentError, quote_args
        try:
            cmdline = " ".join(filter(None, [cmdline, quote_args(opts["args"], opts["env"])]))
        except ArgumentError as e:
            raise UsageError(str(e)) from None
    try:
        return VmResources.for_kernel(image, cmdline=cmdline, initrd=opts["initrd"], mem_mib=opts["mem_mib"],
                                      vcpus=opts["vcpus"], drives=opts["drives"], network_interfaces=opts["net"],
                                      vsock=opts["vsock"], entropy=Entropy() if opts["entropy"] else None)
    except ConfigError as e:
        what = _OPTION_OF.get(e.resource, e.resource)
        if e.resource == "boot-source":
            what = f"kernel {image}" if "kernel" in e.detail else f"initrd {opts['initrd']}"
        elif e.resource == "machine-config":
            what = f"--vcpus {opts['vcpus']} --mem-mib {opts['mem_mib']}"
        raise UsageError(f"{what}: {e.detail}") from None


def cmd_run(argv: list[str]) -> int:
    opts = _parse_run(argv)
    machine = _early_machine()
    try:
        from pyrite.vmm.builder import BuildError, build_for_boot, log_boot_time
        from pyrite.vmm.console import FdSink
        from pyrite.vmm.foreground import console_input, run_in_foreground
        resources = _resources_from(opts)
        out_fd = 1
        if opts["serial_out"]:
            try:
                out_fd = os.open(opts["serial_out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            except OSError as e:
                raise UsageError(f"--serial-out {opts['serial_out']}: {e.strerror}") from None
    except BaseException:
        if machine is not None:
            from pyrite.vmm.machine import release_machine
            release_machine(machine)
        raise
    quiet = opts["quiet"]
    stdin_fd = console_input()
    try:
        vmm = build_for_boot(resources, console_out=FdSink(out_fd), console_in=stdin_fd,
                             on_boot_timer=None if quiet else log_boot_time, start_ns=PROCESS_START_NS,
                             machine=machine)
    except BuildError as e:
        raise UsageError(str(e)) from None
    if opts["snapshot_on_signal"]:
        _snapshot_on_signal(vmm, resources, *opts["snapshot_on_signal"])
    result = run_in_foreground(vmm, stdin_fd)
    elapsed_ms = (time.monotonic_ns() - PROCESS_START_NS) / 1e6
    if not result.ok:
        os.write(2, f"pyrite: {result.message}\n".encode())
    elif not quiet:
        os.write(2, f"pyrite: {result.message}; status {result.status} after {elapsed_ms:.1f} ms\n".encode())
    return result.status


def _early_machine():
    """The KVM VM, made before the heavy imports (VM creation's kernel work then overlaps
    them). None when KVM is unusable: the build then says why, after checking the user's input."""
    from pyrite.kvm import KvmError
    from pyrite.vmm.machine import create_machine
    try:
        return create_machine()
    except KvmError:
        return None


def _snapshot_on_signal(vmm, resources, state_path: str, mem_path: str) -> None:
    """SIGUSR1: pause, write a Full snapshot to the two paths, resume (a snapshot of a running
    `pyrite run`, as `kill -USR1 PID` asks for it)."""
    import threading

    def take() -> None:
        from pyrite.snapshot.microvm import SnapshotError, create_snapshot
        try:
            vmm.pause()
            create_snapshot(vmm, resources, state_path, mem_path)
            message = f"snapshot written to {state_path} and {mem_path}"
        except (SnapshotError, OSError, RuntimeError) as e:
            message = f"snapshot failed: {e}"
        finally:
            vmm.resume()
        os.write(2, f"pyrite: {message}\n".encode())

    # The handler runs on the main thread inside vmm.wait(): hand the work to a thread.
    signal.signal(signal.SIGUSR1, lambda signum, frame: threading.Thread(target=take, daemon=True).start())


def _warm(command: str, argv: list[str]) -> int:
    from pyrite import warm
    if command == "warm-parent":
        if len(argv) != 1:
            print("usage: pyrite warm-parent SOCKET", file=sys.stderr)
            return 2
        return warm.serve(argv[0])
    if len(argv) < 2:
        print("usage: pyrite warm-run SOCKET pyrite-vmm|pyrite [ARG ...]", file=sys.stderr)
        return 2
    try:
        return warm.run(argv[0], argv[1:])
    except warm.WarmError as e:
        print(f"pyrite warm-run: {e}", file=sys.stderr)
        return 2


def cmd_micropython(argv: list[str]) -> int:
    from pyrite.unikernel.micropython.cli import cmd_repl
    return cmd_repl(argv)


COMMANDS = {"run": cmd_run, "micropython": cmd_micropython}


def main(argv: list[str] | None = None) -> int:
    """Without `argv` this is the `pyrite` program, and a finished `run` ends the process."""
    as_program = argv is None
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        if not argv:
            argv = ["run"]
        else:
            print(USAGE)
            return 0
    command, rest = argv[0], argv[1:]
    if command == "unikernel":
        from pyrite.unikernel.cli import main as unikernel_main
        return unikernel_main(rest)
    if command == "functions":
        from pyrite.functions.cli import main as functions_main
        return functions_main(rest)
    if command == "snapshot":
        from pyrite.snapshot.cli import main as snapshot_main
        return snapshot_main(rest)
    if command in ("warm-parent", "warm-run"):
        return _warm(command, rest)
    if command == "uffd-handler":
        from pyrite.snapshot.uffd_handler import main as uffd_handler_main
        return uffd_handler_main(rest)
    if command not in COMMANDS:
        print(f"pyrite: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        status = COMMANDS[command](rest)
    except UsageError as e:
        print(f"pyrite: {e}", file=sys.stderr)
        return 2
    if as_program:
        _end_process(status)
    return status


def _end_process(status: int) -> None:
    """Exit now, skipping the interpreter's teardown: freeing every module and object costs
    about 6 ms that the kernel does anyway. The microVM is closed; pyrite registers no atexit work."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


if __name__ == "__main__":
    sys.exit(main())
