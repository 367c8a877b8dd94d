"""Jailed clones: each invocation's VM in its own pyrite-vmm process under pyrite-jailer
(Firecracker's jailer: mount namespace and pivot_root into an empty root, device nodes, an
unprivileged uid:gid), driven over its Firecracker API socket. Used when the service runs
as root.

The function's snapshot files are hard-linked into the jail (owned by the function's own
uid, mode 0600: the jails of one function can read its snapshot, no other uid can), loaded
with `PUT /snapshot/load` (vsock_override puts the clone's vsock socket in the jail), and
the service reaches the agent through `<jail root>/v.sock`.
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from pyrite.functions.guest import Clone
from pyrite.vmm.exit import VmExit

API_SOCKET = "run/firecracker.socket"          # the jailed pyrite-vmm's default, as Firecracker's
VSOCK_SOCKET = "v.sock"
START_TIMEOUT = 60.0
SOCKET_PATH_MAX = 107                           # sun_path holds 108 bytes with the NUL


class JailError(Exception):
    """A jailed VMM did not start or refused the snapshot; the message carries its output."""


def pyrite_vmm() -> str:
    path = Path(sys.executable).parent / "pyrite-vmm"
    if not path.exists():
        raise JailError(f"{path} is not installed (pip install -e .): the jailed VMM runs it")
    return str(path)


def check_base(base: Path) -> None:
    longest = base / "pyrite-vmm" / ("x" * 24) / "root" / API_SOCKET
    if len(str(longest)) > SOCKET_PATH_MAX:
        raise JailError(f"{base}: too long for the jails' Unix sockets ({len(str(longest))} > {SOCKET_PATH_MAX} "
                        "bytes): give a shorter --state-dir")


def remove_stale_jails(base: Path) -> int:
    """Jails left by a service that ended without closing them (killed, perhaps while a jailer
    was still starting): every jailer process with this chroot base, and the warm parent of
    this base with its forks, is killed (found by their exact command-line arguments, so no
    other process matches), and the jails removed.
    Returns how many processes there were."""
    markers = (f"--chroot-base-dir\0{base}\0".encode(),            # a jailer started as a process
               f"warm-parent\0{base / 'warm.sock'}\0".encode())    # the warm parent and its forks
    killed = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
                if any(marker in cmdline for marker in markers):
                    os.kill(int(entry), 9)
                    killed += 1
        except OSError:
            continue
    shutil.rmtree(base / "pyrite-vmm", ignore_errors=True)
    for output in base.glob("*.out"):
        output.unlink(missing_ok=True)
    return killed


def give_to(uid: int, gid: int, *paths: Path) -> None:
    """The snapshot files of a function to its jail uid, readable by it alone."""
    for path in paths:
        os.chown(path, uid, gid)
        os.chmod(path, 0o600)


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


class Spawner:
    """Starts jailers: forked by a warm parent (pyrite.warm: pyrite and the VMM already
    imported, so a jail costs a fork instead of an interpreter start), or as new processes."""

    def __init__(self, base: Path, warm: bool = True):
        self.base = base
        self.socket = str(base / "warm.sock")
        self.parent = None
        if warm:
            self.parent = subprocess.Popen([sys.executable, "-m", "pyrite.cli", "warm-parent", self.socket],
                                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.PIPE, cwd="/")
            line = self.parent.stderr.readline().decode(errors="replace")
            if "ready" not in line:
                raise JailError(f"the warm parent did not start: {line}")

    def spawn(self, argv: list[str], out) -> "_Process":
        if self.parent is None:
            return _Process(subprocess.Popen([sys.executable, "-m", "pyrite.jailer", *argv[1:]], stdout=out,
                                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd="/"))
        from pyrite import warm
        with open(os.devnull, "rb") as null:
            return _Process(warm.spawn(self.socket, argv, stdin=null.fileno(), stdout=out.fileno(),
                                       stderr=out.fileno(), cwd="/", env={}))

    def close(self) -> None:
        if self.parent is not None:
            self.parent.terminate()
            self.parent.wait(30)


class _Process:
    """subprocess.Popen's poll/kill/wait/returncode over a Popen or a warm parent's child."""

    def __init__(self, child):
        self.child, self.pid = child, child.pid
        self.returncode = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.child.poll() if hasattr(self.child, "poll") else self.child.wait(0)
        return self.returncode

    def kill(self) -> None:
        try:
            os.kill(self.pid, 9)
        except ProcessLookupError:
            pass

    def wait(self) -> int:
        self.returncode = self.child.wait()
        return self.returncode


class JailedVm:
    """One pyrite-vmm in its jail, driven over its API: MicroVM's interface for Clone."""

    def __init__(self, base: Path, jail_id: str, uid: int, gid: int, spawner: Spawner):
        self.jail_dir = base / "pyrite-vmm" / jail_id
        self.root = self.jail_dir / "root"
        self.output_path = base / f"{jail_id}.out"
        self._exit: VmExit | None = None
        with open(self.output_path, "wb") as out:
            self.proc = spawner.spawn(
                ["pyrite-jailer", "--id", jail_id, "--exec-file", pyrite_vmm(),
                 "--uid", str(uid), "--gid", str(gid), "--chroot-base-dir", str(base)], out)
        try:
            self._wait_for_api()
        except BaseException:
            self.close()
            raise

    def load_snapshot(self, state_path: Path, mem_path: Path) -> None:
        """The function's snapshot, hard-linked into the jail and loaded paused."""
        for source, name in ((state_path, "vm.state"), (mem_path, "vm.mem")):
            os.link(source, self.root / name)
        self._request("PUT", "/snapshot/load", {
            "snapshot_path": "/vm.state", "mem_backend": {"backend_type": "File", "backend_path": "/vm.mem"},
            "vsock_override": {"uds_path": f"/{VSOCK_SOCKET}"}, "resume_vm": False})

    def boot(self, image: Path, uid: int, gid: int, memory_mb: int, cmdline: str) -> None:
        """Boot `image` (copied into the jail, owned by the jail's uid)."""
        shutil.copyfile(image, self.root / "image")
        os.chown(self.root / "image", uid, gid)
        self._request("PUT", "/boot-source", {"kernel_image_path": "/image", "boot_args": cmdline})
        self._request("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": memory_mb})
        self._request("PUT", "/vsock", {"guest_cid": 3, "uds_path": f"/{VSOCK_SOCKET}"})
        self._request("PUT", "/actions", {"action_type": "InstanceStart"})

    def snapshot(self, directory: Path) -> None:
        """Pause and snapshot into the jail, then move the two files to `directory`."""
        self.pause()
        self._request("PUT", "/snapshot/create", {"snapshot_path": "/vm.state", "mem_file_path": "/vm.mem"})
        for name in ("vm.state", "vm.mem"):
            os.replace(self.root / name, directory / name)

    @property
    def vsock_path(self) -> str:
        return str(self.root / VSOCK_SOCKET)

    def _wait_for_api(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        path = str(self.root / API_SOCKET)
        while True:
            if self.proc.poll() is not None:
                raise JailError(f"the jailed VMM ended (status {self.proc.returncode}): {self._output()}")
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                try:
                    probe.connect(path)
                    return
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise JailError(f"the jailed VMM did not open its API socket in {START_TIMEOUT:.0f} s: {self._output()}")
            time.sleep(0.002)

    def _request(self, method: str, path: str, body: dict) -> None:
        conn = _UnixHTTP(str(self.root / API_SOCKET), timeout=30)
        try:
            conn.request(method, path, json.dumps(body), {"Content-Type": "application/json"})
            answer = conn.getresponse()
            text = answer.read()
        finally:
            conn.close()
        if answer.status >= 300:
            raise JailError(f"{method} {path}: {answer.status} {text.decode(errors='replace')}")

    def _output(self) -> str:
        return self.console_output[-2000:].decode(errors="replace")

    # MicroVM's interface, as Clone uses it
    def resume(self) -> None:
        self._request("PATCH", "/vm", {"state": "Resumed"})

    def pause(self) -> None:
        self._request("PATCH", "/vm", {"state": "Paused"})

    @property
    def exit(self) -> VmExit | None:
        if self._exit is None and self.proc.poll() is not None:
            self._exit = VmExit("exited", self.proc.returncode & 0xFF, "the jailed VMM ended")
        return self._exit

    @property
    def console_output(self) -> bytes:
        try:
            with open(self.output_path, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - 65536))
                return f.read()
        except OSError:
            return b""

    def stop(self) -> None:
        """SIGKILL, without waiting: the reaper's close() waits."""
        if self.proc.poll() is None:
            self.proc.kill()

    def close(self) -> None:
        self.stop()
        self.proc.wait()
        shutil.rmtree(self.jail_dir, ignore_errors=True)
        try:
            os.unlink(self.output_path)
        except OSError:
            pass


def jailed_clone(state_path: Path, mem_path: Path, base: Path, jail_id: str, uid: int, gid: int,
                 spawner: Spawner) -> Clone:
    started = time.perf_counter()
    vm = JailedVm(base, jail_id, uid, gid, spawner)
    try:
        vm.load_snapshot(state_path, mem_path)
    except BaseException:
        vm.close()
        raise
    return Clone(vm, vm.vsock_path, time.perf_counter() - started)


def jailed_snapshot(image: Path, directory: Path, memory_mb: int, cmdline: str, base: Path, jail_id: str,
                    uid: int, gid: int, spawner: Spawner, wait_ready) -> None:
    """Boot the function's image in a jail, wait for its agent's ready line (`wait_ready(vm)`),
    snapshot it into `directory`: the function's own code never runs outside a jail."""
    vm = JailedVm(base, jail_id, uid, gid, spawner)
    try:
        vm.boot(image, uid, gid, memory_mb, cmdline)
        wait_ready(vm)
        vm.snapshot(directory)
    finally:
        vm.close()
