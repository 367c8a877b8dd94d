"""`pyrite snapshot create|load|clone|inspect|rebase`: snapshots from the command line."""
from __future__ import annotations

import os
import sys

USAGE = """usage: pyrite snapshot create --api-sock SOCK STATE MEM [--keep-paused]
       pyrite snapshot load STATE [MEM] [--paused] [--net IFACE=TAP ...] [--vsock-uds PATH]
                                       [--clock-realtime] [--quiet]
       pyrite snapshot clone STATE [MEM] -n N [--vsock-uds PATH] [--timeout S]
       pyrite snapshot inspect STATE
       pyrite snapshot rebase BASE_MEM DIFF_MEM

create   snapshots the microVM behind a Firecracker API socket (pyrite-vmm or Firecracker):
         pauses it, writes a Full snapshot (STATE and MEM), resumes it unless --keep-paused.
         A `pyrite run --snapshot-on-signal STATE,MEM` VM is snapshotted with kill -USR1.
load     starts the snapshot's microVM again in the foreground, its serial console on the
         terminal, as `pyrite run` does. MEM defaults to where the memory file was written.
         --net IFACE=TAP gives an interface another TAP; --vsock-uds another socket path.
clone    starts N microVMs from one snapshot at once; they share the memory file's pages
         until they write them. Clone i's console goes to stdout with a "[i] " prefix and
         its vsock socket (if any) is PATH.i (PATH: --vsock-uds or the snapshot's own).
inspect  checks a state file and prints what it holds.
rebase   writes the pages of DIFF_MEM, the memory file of a Diff snapshot, onto BASE_MEM, the
         memory file of the snapshot before it (Full, or already rebased), in place: BASE_MEM
         then holds the guest memory at the Diff snapshot's time, and loads with the Diff
         snapshot's state file. Rebase layers in the order they were created."""


class UsageError(Exception):
    pass


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    commands = {"create": cmd_create, "load": cmd_load, "clone": cmd_clone, "inspect": cmd_inspect,
                "rebase": cmd_rebase}
    if command not in commands:
        print(f"pyrite snapshot: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    from .errors import SnapshotError
    try:
        return commands[command](rest)
    except UsageError as e:
        print(f"pyrite snapshot {command}: {e} (see `pyrite snapshot --help`)", file=sys.stderr)
        return 2
    except SnapshotError as e:
        print(f"pyrite snapshot {command}: {e}", file=sys.stderr)
        return 2


def _parse(argv: list[str], flags: set[str], valued: set[str], repeated: set[str] = frozenset()) -> tuple[list, dict]:
    """Positional arguments and options (`--name value` or `--name=value`)."""
    positional, options = [], {name: [] for name in repeated}
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, inline = arg.partition("=")
        if arg in ("-h", "--help"):
            print(USAGE)
            raise SystemExit(0)
        if arg in flags:
            options[arg] = True
        elif name in valued or name in repeated:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"{arg} needs a value")
                inline = argv[i]
            if name in repeated:
                options[name].append(inline)
            else:
                options[name] = inline
        elif arg.startswith("-") and arg != "-":
            raise UsageError(f"unknown option {arg}")
        else:
            positional.append(arg)
        i += 1
    return positional, options


def _state_and_memory(positional: list[str]) -> tuple[str, str | None]:
    if not 1 <= len(positional) <= 2:
        raise UsageError("expected STATE [MEM]")
    return positional[0], positional[1] if len(positional) == 2 else None


def _memory_file(state: dict, given: str | None, snapshot_path: str) -> str:
    if given is not None:
        return given
    recorded = state.get("memory_file")
    if not isinstance(recorded, str):
        raise UsageError(f"{snapshot_path} does not say where its memory file is: give MEM")
    return recorded


# -- create --------------------------------------------------------------------------------

def cmd_create(argv: list[str]) -> int:
    positional, options = _parse(argv, {"--keep-paused"}, {"--api-sock"})
    if "--api-sock" not in options or len(positional) != 2:
        raise UsageError("expected --api-sock SOCK STATE MEM")
    state_path, mem_path = (os.path.abspath(p) for p in positional)
    sock = options["--api-sock"]
    _api(sock, "PATCH", "/vm", {"state": "Paused"})
    try:
        _api(sock, "PUT", "/snapshot/create", {"snapshot_type": "Full", "snapshot_path": state_path,
                                               "mem_file_path": mem_path})
    finally:
        if not options.get("--keep-paused"):
            _api(sock, "PATCH", "/vm", {"state": "Resumed"})
    print(f"pyrite snapshot create: wrote {state_path} and {mem_path}", file=sys.stderr)
    return 0


def _api(sock: str, method: str, path: str, body: dict) -> None:
    """One request to a Firecracker API socket; UsageError with its fault message on failure."""
    import http.client
    import json
    import socket

    class Connection(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(sock)
    try:
        connection = Connection("localhost", timeout=60)
        connection.request(method, path, json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        text = response.read().decode(errors="replace")
    except OSError as e:
        raise UsageError(f"API socket {sock}: {e.strerror or e}") from None
    if response.status >= 300:
        try:
            text = json.loads(text).get("fault_message", text)
        except ValueError:
            pass
        raise UsageError(f"{method} {path}: {response.status}: {text}")


# -- load and clone --------------------------------------------------------------------------

def _restored_resources(state: dict, snapshot_path: str, nets: list[str], vsock_uds: str | None):
    from pyrite.config import NetworkOverride, VsockOverride
    from .microvm import apply_overrides, saved_resources
    overrides = []
    for value in nets:
        iface, eq, tap = value.partition("=")
        if not eq or not iface or not tap:
            raise UsageError(f"--net {value!r}: expected IFACE=TAP")
        overrides.append(NetworkOverride(iface_id=iface, host_dev_name=tap))
    resources = saved_resources(state, snapshot_path)
    apply_overrides(resources, overrides, None if vsock_uds is None else VsockOverride(uds_path=vsock_uds))
    return resources


def cmd_load(argv: list[str]) -> int:
    positional, options = _parse(argv, {"--paused", "--clock-realtime", "--quiet", "-q"}, {"--vsock-uds"}, {"--net"})
    snapshot_path, mem_path = _state_and_memory(positional)
    from pyrite.vmm.builder import BuildError
    from pyrite.vmm.console import FdSink
    from pyrite.vmm.foreground import console_input, run_in_foreground
    from .microvm import load_snapshot, read_snapshot
    state = read_snapshot(snapshot_path)
    resources = _restored_resources(state, snapshot_path, options["--net"], options.get("--vsock-uds"))
    stdin_fd = console_input()
    try:
        vmm = load_snapshot(state, resources, _memory_file(state, mem_path, snapshot_path),
                            snapshot_path=snapshot_path, clock_realtime=bool(options.get("--clock-realtime")),
                            console_out=FdSink(1), console_in=stdin_fd)
    except BuildError as e:
        raise UsageError(str(e)) from None
    if options.get("--paused"):
        print("pyrite snapshot load: paused; send SIGUSR1 to resume", file=sys.stderr)
        import _signal as signal
        signal.signal(signal.SIGUSR1, lambda signum, frame: vmm.resume())
    result = run_in_foreground(vmm, stdin_fd, paused=bool(options.get("--paused")))
    if not result.ok:
        print(f"pyrite: {result.message}", file=sys.stderr)
    elif not (options.get("--quiet") or options.get("-q")):
        print(f"pyrite: {result.message}; status {result.status}", file=sys.stderr)
    return result.status


def cmd_clone(argv: list[str]) -> int:
    positional, options = _parse(argv, set(), {"-n", "--vsock-uds", "--timeout"})
    snapshot_path, mem_path = _state_and_memory(positional)
    try:
        count = int(options.get("-n", ""))
        timeout = float(options.get("--timeout", "0")) or None
    except ValueError:
        raise UsageError("-n N needs a number of clones (and --timeout seconds)") from None
    if count < 1:
        raise UsageError(f"-n {count}: at least one clone")
    import threading
    from pyrite.vmm.console import LinePrefixSink
    from .microvm import load_snapshot, read_snapshot
    state = read_snapshot(snapshot_path)
    mem_path = _memory_file(state, mem_path, snapshot_path)
    base = _restored_resources(state, snapshot_path, [], None)
    out_lock = threading.Lock()
    vmms = []
    try:
        for i in range(count):
            uds = options.get("--vsock-uds") or (base.vsock.uds_path if base.vsock else None)
            resources = _restored_resources(state, snapshot_path, [], None if uds is None else f"{uds}.{i}")
            vmms.append(load_snapshot(state, resources, mem_path, snapshot_path=snapshot_path,
                                      console_out=LinePrefixSink(1, f"[{i}] ".encode(), out_lock)))
            vmms[-1].start()          # each runs as soon as it is built
        statuses = [vmm.wait(timeout) for vmm in vmms]
    finally:
        for vmm in vmms:
            vmm.close()
    for i, result in enumerate(statuses):
        if result is None:
            print(f"pyrite snapshot clone: clone {i} still running after {timeout} s; stopped", file=sys.stderr)
        elif not result.ok:
            print(f"pyrite snapshot clone: clone {i}: {result.message}", file=sys.stderr)
    return max((1 if r is None else r.status) for r in statuses)


# -- inspect -------------------------------------------------------------------------------

def cmd_inspect(argv: list[str]) -> int:
    positional, _ = _parse(argv, set(), set())
    if len(positional) != 1:
        raise UsageError("expected STATE")
    import json
    from . import format
    from .microvm import read_snapshot
    path = positional[0]
    state = read_snapshot(path)
    config = json.loads(state["config"])
    machine = config.get("machine-config") or {}
    print(f"{path}: pyrite snapshot, format version {format.VERSION}, {os.path.getsize(path)} bytes, CRC ok")
    print(f"  written by pyrite {state.get('pyrite')}")
    print(f"  memory file: {state.get('memory_file', '(not recorded)')}")
    print(f"  vCPUs: {machine.get('vcpu_count')}, memory: {machine.get('mem_size_mib')} MiB in "
          + ", ".join(f"[{gpa:#x}, {gpa + size:#x})" for gpa, size in state["memory"]))
    print(f"  kernel: {(config.get('boot-source') or {}).get('kernel_image_path')}")
    for device in state.get("devices", []):
        status = device["transport"].get("device_status", 0)
        print(f"  device: {device['kind']} {device['id']} (virtio status {status:#x})")
    for index, vcpu in enumerate(state["vcpus"]):
        print(f"  vCPU {index}: {len(vcpu['msrs']) // 12} MSRs, {len(vcpu['cpuid']) // 28} CPUID leaves")
    return 0


# -- rebase --------------------------------------------------------------------------------

def cmd_rebase(argv: list[str]) -> int:
    positional, _ = _parse(argv, set(), set())
    if len(positional) != 2:
        raise UsageError(f"expected BASE_MEM DIFF_MEM, got {len(positional)} argument(s)")
    from .rebase import RebaseError, rebase
    try:
        copied = rebase(positional[0], positional[1])
    except RebaseError as e:
        print(f"pyrite snapshot rebase: {e}", file=sys.stderr)
        return 1
    print(f"pyrite snapshot rebase: {copied} bytes of {positional[1]} written onto {positional[0]}", file=sys.stderr)
    return 0
