"""The jailer's process steps (Firecracker's env.rs): join a network namespace, daemonize (double
fork, setsid, stdio to /dev/null), a new pid namespace (the child is pid 1 there; the parent
writes its host pid and exits), the `<exec file>.pid` file, and the drop to uid:gid."""
from __future__ import annotations

import ctypes
import os

from . import _libc
from .errors import JailerError, io_text


def clear_environment() -> None:
    """Firecracker's clean_env_vars, and more: an exec gives Firecracker an empty environment,
    but pyrite's VMM runs on in this process, whose stack still holds the environment it was
    started with (what /proc/<pid>/environ shows). Both are emptied."""
    os.environ.clear()
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        start, end = int(fields[47]), int(fields[48])   # env_start, env_end: proc(5) fields 50, 51
    except (OSError, IndexError, ValueError):
        return
    if 0 < start < end:
        ctypes.memset(start, 0, end - start)


def join_netns(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise JailerError(f"Failed to open file {path}: {io_text(e)}") from None
    try:
        _libc.setns(fd, _libc.CLONE_NEWNET)
    except OSError as e:
        raise JailerError(f"Failed to join network namespace: netns: {io_text(e)}") from None
    finally:
        os.close(fd)


def open_dev_null() -> int:
    try:
        return os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise JailerError(f"Failed to open /dev/null: {io_text(e)}") from None


def daemonize(dev_null: int) -> None:
    """Firecracker's double fork: only the grandchild returns, in a new session, without a
    controlling terminal, its stdio on /dev/null."""
    _fork_and_leave_parent()
    try:
        os.setsid()
    except OSError as e:
        raise JailerError(f"Failed to daemonize: setsid: {io_text(e)}") from None
    _fork_and_leave_parent()
    for fd in (0, 1, 2):
        try:
            os.dup2(dev_null, fd)
        except OSError as e:
            raise JailerError(f"Failed to duplicate fd: {io_text(e)}") from None


def enter_new_pid_ns(pid_file: str, daemonized: bool) -> None:
    """Returns in the child, pid 1 of a new pid namespace; the parent writes the child's pid
    to `pid_file` and exits 0. A session leader's child takes a session of its own, so the
    jailer's exit sends it no SIGHUP (Firecracker's reasoning)."""
    session_leader = not daemonized and os.getsid(0) == os.getpid()
    try:
        _libc.unshare(_libc.CLONE_NEWPID)
        pid = os.fork()
    except OSError as e:
        raise JailerError(f"Failed cloning into a new child process: {io_text(e)}") from None
    if pid == 0:
        if session_leader:
            try:
                os.setsid()
            except OSError as e:
                raise JailerError(f"Failed to daemonize: setsid: {io_text(e)}") from None
        return
    write_pid_file(pid_file, pid)
    os._exit(0)


def write_pid_file(path: str, pid: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError as e:
        raise JailerError(f"Failed to open file {path}: {io_text(e)}") from None
    try:
        os.write(fd, str(pid).encode())
    except OSError as e:
        raise JailerError(f"Failed to write to {path}: {io_text(e)}") from None
    finally:
        os.close(fd)


def drop_privileges(uid: int, gid: int) -> None:
    """No supplementary groups, then gid, then uid (what Rust's Command does before exec).
    Leaving uid 0 clears every capability."""
    try:
        os.setgroups([])
    except PermissionError:
        pass
    os.setgid(gid)
    os.setuid(uid)


def _fork_and_leave_parent() -> None:
    try:
        pid = os.fork()
    except OSError as e:
        raise JailerError(f"Failed to daemonize: {io_text(e)}") from None
    if pid != 0:
        os._exit(0)
