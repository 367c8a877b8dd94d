"""A warm parent: one long-lived process with pyrite imported (and the vCPU kick signal handler
installed) that forks a VMM on request, so that starting `pyrite-vmm` or `pyrite` costs a
fork instead of an interpreter start and its imports.

    pyrite warm-parent SOCKET                      serve (until SIGTERM/SIGINT)
    pyrite warm-run SOCKET pyrite-vmm --api-sock S ...    a VMM forked by it, as a command
    pyrite.warm.spawn(SOCKET, ["pyrite-vmm", ...])         the same from Python, no new process

Protocol, over a Unix stream socket (mode 0600): the client sends one JSON object
{"argv": [program, arg, ...], "cwd": dir, "env": {...}} with its stdin, stdout and stderr
attached as SCM_RIGHTS; the parent forks, the child takes those as fds 0-2, the directory and
environment, and runs the program's main(); the parent answers {"pid": N} at once and
{"status": S} when the child has ended (S as a shell reports it: the exit code, or 128 + the
signal). Programs: "pyrite-vmm" (Firecracker's command line), "pyrite" and "pyrite-jailer"
(which then finds the VMM it jails already loaded).

The parent stays single-threaded (fork and threads do not mix) and watches its children
through pidfds. Each child creates its own KVM VM: a VM belongs to the process that made it.
"""
from __future__ import annotations

import array
import json
import os
import select
import socket
import sys
import time

PROGRAMS = {"pyrite-vmm": "pyrite.api.cli", "pyrite": "pyrite.cli", "pyrite-jailer": "pyrite.jailer.cli"}
MAX_REQUEST = 1 << 20


class WarmError(Exception):
    """A request the warm parent refused, or no warm parent at the socket."""


# -- the parent ------------------------------------------------------------------------------

def serve(path: str) -> int:
    """Listen at `path` and fork what is asked, until SIGTERM or SIGINT."""
    import signal
    from pyrite import kvm
    for module in PROGRAMS.values():
        __import__(module)
    for module in ("pyrite.api.boot", "pyrite.api.controller", "pyrite.api.server", "pyrite.vmm.builder",
                   "pyrite.snapshot.microvm", "pyrite.snapshot.cli", "pyrite.config.resources"):
        __import__(module)
    from pyrite.api.preload import preload
    preload()                                       # what a jailed VMM loads before its chroot
    kvm.install_kick_handler()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    old_umask = os.umask(0o177)
    try:
        listener.bind(path)
    finally:
        os.umask(old_umask)
    listener.listen(64)
    signal.signal(signal.SIGTERM, signal.default_int_handler)     # SIGTERM ends it as Ctrl-C does
    print(f"pyrite warm-parent: ready on {path} (pid {os.getpid()})", file=sys.stderr, flush=True)
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    children: dict[int, tuple[int, socket.socket]] = {}     # pidfd -> (pid, the client's connection)
    try:
        while True:
            for fd, _ in poller.poll():
                if fd == listener.fileno():
                    child = _accept(listener, poller, children)
                    if child is not None:
                        children[child[0]] = child[1:]
                else:
                    pid, connection = children.pop(fd)
                    poller.unregister(fd)
                    os.close(fd)
                    _, wait_status = os.waitpid(pid, 0)
                    _send(connection, {"status": _shell_status(wait_status)})
                    connection.close()
    except KeyboardInterrupt:
        return 0
    finally:
        listener.close()
        try:
            os.unlink(path)
        except OSError:
            pass


def _accept(listener, poller, children) -> tuple[int, int, socket.socket] | None:
    connection, _ = listener.accept()
    try:
        request, fds = _receive(connection)
        argv = request.get("argv")
        if not isinstance(argv, list) or not argv or argv[0] not in PROGRAMS or \
                not all(isinstance(a, str) for a in argv):
            raise WarmError(f"argv must start with one of {sorted(PROGRAMS)}: {argv!r:.200}")
        if len(fds) != 3:
            raise WarmError(f"expected stdin, stdout and stderr as SCM_RIGHTS, got {len(fds)} fds")
    except (WarmError, OSError, ValueError) as e:
        _send(connection, {"error": str(e)})
        connection.close()
        return None
    pid = os.fork()
    if pid == 0:
        listener.close()
        _run_child(argv, request, fds)        # never returns
    for fd in fds:
        os.close(fd)
    pidfd = os.pidfd_open(pid)
    poller.register(pidfd, select.POLLIN)
    _send(connection, {"pid": pid})
    return pidfd, pid, connection


def _run_child(argv: list[str], request: dict, fds: list[int]) -> None:
    status = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.setsid()
        if isinstance(request.get("cwd"), str):
            os.chdir(request["cwd"])
        if isinstance(request.get("env"), dict):
            os.environ.clear()
            os.environ.update({str(k): str(v) for k, v in request["env"].items()})
        sys.stdin = open(0, "r", closefd=False)
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", closefd=False)
        module = sys.modules[PROGRAMS[argv[0]]]
        module.PROCESS_START_NS = time.monotonic_ns()     # a forked process starts now
        if hasattr(module, "PROCESS_START_CPU_NS"):
            module.PROCESS_START_CPU_NS = time.process_time_ns()
        sys.argv = argv
        status = module.main(argv[1:])
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else 1
    except BaseException:
        import traceback
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(status if isinstance(status, int) else 1)


def _shell_status(wait_status: int) -> int:
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    return os.WEXITSTATUS(wait_status)


# -- the wire ------------------------------------------------------------------------------

def _send(connection: socket.socket, message: dict, fds: list[int] = ()) -> None:
    data = json.dumps(message).encode() + b"\n"
    try:
        if fds:
            connection.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        else:
            connection.sendall(data)
    except OSError:
        pass      # the client went away: nothing to tell


def _receive(connection: socket.socket) -> tuple[dict, list[int]]:
    data, ancillary, _, _ = connection.recvmsg(MAX_REQUEST, socket.CMSG_SPACE(3 * array.array("i").itemsize))
    fds = array.array("i")
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
    if not data.endswith(b"\n"):
        for fd in fds:
            os.close(fd)
        raise WarmError("the request must be one JSON line")
    return json.loads(data), list(fds)


# -- clients -------------------------------------------------------------------------------

class WarmChild:
    """A process the warm parent forked for us: its pid, and wait() for its status."""

    def __init__(self, connection: socket.socket, pid: int):
        self._connection = connection
        self._reader = connection.makefile("rb")
        self.pid = pid
        self.status: int | None = None

    def wait(self, timeout: float | None = None) -> int | None:
        """The child's status once it has ended (None if still running after `timeout`)."""
        if self.status is None:
            ready, _, _ = select.select([self._connection], [], [], timeout)
            if not ready:
                return None
            line = self._reader.readline()
            message = json.loads(line) if line else {"status": 1}
            self.status = message.get("status", 1)
            self._connection.close()
        return self.status


def spawn(path: str, argv: list[str], *, stdin: int = 0, stdout: int = 1, stderr: int = 2,
          cwd: str | None = None, env: dict | None = None) -> WarmChild:
    """`argv` (["pyrite-vmm", ...] or ["pyrite", ...]) forked by the warm parent at `path`."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(path)
    except OSError as e:
        connection.close()
        raise WarmError(f"no warm parent at {path}: {e.strerror} (start one with "
                        f"`pyrite warm-parent {path}`)") from None
    request = {"argv": argv, "cwd": cwd or os.getcwd(), "env": dict(os.environ) if env is None else env}
    _send(connection, request, [stdin, stdout, stderr])
    line = connection.makefile("rb").readline()
    message = json.loads(line) if line else {"error": "the warm parent closed the connection"}
    if "pid" not in message:
        connection.close()
        raise WarmError(message.get("error", "no pid in the answer"))
    return WarmChild(connection, message["pid"])


def run(path: str, argv: list[str]) -> int:
    """`pyrite warm-run`: the forked program with this process's stdio; its status; Ctrl-C and
    SIGTERM are passed on to it."""
    import signal
    child = spawn(path, argv)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda s, frame: os.kill(child.pid, s))
    return child.wait()
