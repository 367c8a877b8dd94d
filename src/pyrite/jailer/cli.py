"""`pyrite-jailer`: Firecracker's jailer (docs/jailer.md) for pyrite's VMM and for Firecracker.

    pyrite-jailer --id ID --exec-file PATH --uid UID --gid GID [--chroot-base-dir DIR]
                  [--netns PATH] [--daemonize] [--new-pid-ns] [--cgroup-version 1|2]
                  [--cgroup FILE=VALUE ...] [--parent-cgroup PATH]
                  [--resource-limit fsize=N|no-file=N ...] [-- VMM ARGS...]

Steps in Firecracker's order: close inherited fds, clear the environment, parse and validate,
create <base>/<exec name>/<id>/root, copy the exec file there, join the netns, resource limits,
cgroups, (pyrite's VMM: preload), mount namespace + pivot_root, folders and device nodes,
daemonize, new pid namespace and pid file, uid:gid, run the VMM.

Exit status as Firecracker's jailer: 1 with "Failed to parse arguments: ..." for a bad command
line; a failed step prints "Jailer error: ..." and aborts (SIGABRT, shell status 134), which is
what Firecracker's panic does. pyrite's jailer removes what it made before a failure that
happens ahead of pivot_root (Firecracker leaves it).
"""
from __future__ import annotations

import os
import resource
import sys
import time

from . import args, process, target
from .errors import JailerError, io_text


def main(argv: list[str] | None = None) -> int:
    start_us = time.monotonic_ns() // 1000
    start_cpu_us = time.process_time_ns() // 1000
    argv = sys.argv[1:] if argv is None else argv
    os.closerange(3, 0x7FFFFFFF)  # close_range(2) underneath
    process.clear_environment()
    try:
        given, extra = args.parse(argv)
    except args.ArgError as e:
        sys.stderr.write(f"Failed to parse arguments: {e}\nError: ArgumentParsing({e.debug})\n")
        return 1
    if "help" in given:
        sys.stdout.write(args.help_text())
        return 0
    if "version" in given:
        sys.stdout.write(f"{args.VERSION_LINE}\n\n")
        return 0
    try:
        from .config import validate
        return run(validate(given, extra), start_us, start_cpu_us)
    except JailerError as e:
        _abort(str(e))


def run(config, start_us: int, start_cpu_us: int) -> int:
    """The jail, then the VMM. Returns only for pyrite's VMM (its exit status)."""
    made = _Made()
    try:
        made.dirs(config.chroot_dir)
        made.copy(config.exec_file, os.path.join(config.chroot_dir, config.exec_name))
        if config.netns is not None:
            process.join_netns(config.netns)
        config.resource_limits.install()
        if config.cgroups is not None:
            made.cgroups = config.cgroups
            config.cgroups.setup()
        dev_null = process.open_dev_null() if config.daemonize else None
        if config.pyrite_vmm:
            _prepare_pyrite_vmm()
        from .chroot import chroot
        chroot(config.chroot_dir)
    except BaseException:
        made.undo()
        raise
    from . import devices
    devices.make_folders(config.uid, config.gid)
    devices.make_devices(config.uid, config.gid, config.uffd_minor)
    jailer_cpu_us = time.process_time_ns() // 1000 - start_cpu_us
    if dev_null is not None:
        process.daemonize(dev_null)
        os.close(dev_null)
    if config.new_pid_ns:
        process.enter_new_pid_ns(config.pid_file, config.daemonize)
    else:
        process.write_pid_file(config.pid_file, os.getpid())
    arguments = target.vmm_arguments(config.id, start_us, jailer_cpu_us, list(config.extra_args))
    process.drop_privileges(config.uid, config.gid)
    if not config.pyrite_vmm:
        target.exec_binary(config.jailed_exec_file, arguments)
    return target.run_pyrite_vmm(config.jailed_exec_file, arguments)


def _prepare_pyrite_vmm() -> None:
    """Everything the VMM will load, loaded now; the memory cgroup's files kept open for the
    InstanceStart check (pyrite.vmm.memory_cgroup)."""
    from pyrite.api.preload import preload
    from pyrite.vmm import memory_cgroup
    preload()
    try:
        memory_cgroup.pin()
    except OSError:
        pass


class _Made:
    """What this jailer made on the host, so that a failure before pivot_root can undo it."""

    def __init__(self):
        self.created_dirs: list[str] = []
        self.files: list[str] = []
        self.cgroups = None

    def dirs(self, path: str) -> None:
        missing = []
        probe = path
        while not os.path.lexists(probe):
            missing.append(probe)
            probe = os.path.dirname(probe)
        for d in reversed(missing):
            try:
                os.mkdir(d)
            except FileExistsError:
                continue
            except OSError as e:
                raise JailerError(f"Failed to create directory {path}: {io_text(e)}") from None
            self.created_dirs.append(d)

    def copy(self, source: str, dest: str) -> None:
        """A copy, not a hard link, as Firecracker (its threat model: no page shared between VMMs)."""
        existed = os.path.lexists(dest)
        try:
            _copy_file(source, dest)
        except OSError as e:
            raise JailerError(f"Failed to copy {source} to {dest}: {io_text(e)}") from None
        finally:
            if not existed and os.path.lexists(dest):
                self.files.append(dest)

    def undo(self) -> None:
        if self.cgroups is not None:
            self.cgroups.undo()
        for path in self.files:
            try:
                os.unlink(path)
            except OSError:
                pass
        for d in reversed(self.created_dirs):
            try:
                os.rmdir(d)
            except OSError:
                pass


def _copy_file(source: str, dest: str) -> None:
    """Contents and mode, as Rust's fs::copy."""
    with open(source, "rb") as src:
        mode = os.fstat(src.fileno()).st_mode & 0o7777
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            while os.sendfile(fd, src.fileno(), None, 1 << 30):
                pass
            os.fchmod(fd, mode)
        finally:
            os.close(fd)


def _abort(message: str) -> None:
    """Firecracker's jailer panics (panic=abort): its message on stderr, then SIGABRT."""
    sys.stderr.write(f"Jailer error: {message}\n")
    sys.stderr.flush()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file for a refused command line
    os.abort()


if __name__ == "__main__":
    sys.exit(main())
