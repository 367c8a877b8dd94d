#!/usr/bin/env python3
"""Snapshot benchmark: create, load and clone one counting guest under pyrite, Firecracker and QEMU.

The guest is tests/guests/counter.c built with pyrite's library OS (what tests/kvm/guests.py's
guest_image("counter") builds), an ELF64 with a PVH note that all three VMMs boot, with 1 vCPU
and the same memory size (--mem-mib: 128 and 1024 by default, each size its own table). Its
command line is "console=ttyS0 -- 100000000": it prints "count=N" lines on the serial port for
a long time. Each VMM boots it, lets it print count=5 and snapshots it once (untimed); those
snapshot files are what every load below reads. pyrite is pyrite-vmm (its Firecracker API over a
Unix socket) and, where it has one, its own interface; Firecracker is the real v1.12.1 binary
(benchmarks/refs.py), driven with the same requests; QEMU is qemu-system-x86_64 -M microvm,
driven over QMP, its snapshot being a migration stream in a file. All three log to files of
their own (QEMU's stderr too), so their stdout carries the guest's serial output only.

Every VMM keeps its default seccomp filters (none for QEMU). Runs are interleaved: for each
measurement, each VMM once, in an order that rotates every round; one unmeasured round first
(--warmup); medians of --runs rounds; pyrite's median over the reference's.

1. create: from the guest paused to the snapshot files written. pyrite-vmm and Firecracker:
   PATCH /vm Paused (untimed), then the PUT /snapshot/create Full request, timed from sending
   it to its answer. QEMU: QMP `stop` (untimed), then `migrate` to "file:PATH" (QEMU >= 8.2)
   or "exec:cat > PATH", timed from sending it to the MIGRATION event "completed" and QEMU's
   `cat` child gone. "+ fsync" adds an fsync of each file by the benchmark afterwards:
   Firecracker 1.12.1 fsyncs its memory and state files itself (strace shows it), pyrite and
   QEMU do not, so that column compares the same durability. QEMU skips pages that are zero
   (its file holds only the pages the guest wrote); pyrite and Firecracker write all of RAM.
   A run counts if the request succeeded and the files are complete (the memory file is the
   guest's RAM size; QEMU's stream ends with its own device description).
2. load -> guest running. Every load is checked: the first serial line after it, appended to
   the unfinished line the guest had printed before the snapshot, must be "count=L+1", where
   count=L was the last line before the snapshot, and "count=L+2" must follow (the guest
   continued, no line lost or repeated); a run that fails the check does not count.
   (a) in-process: pyrite.MicroVM.restore(state, mem) in this benchmark's own process (its
       background MachinePool warm from the round before), timed until it returns (vCPUs
       started), and until the first new serial line (MicroVM.wait_for_output(b"\\n")).
       pyrite only: Firecracker and QEMU have no in-process interface.
   (b) load request: a freshly spawned pyrite-vmm and Firecracker, each given --settle-ms after
       its socket answered GET /, then PUT /snapshot/load (File backend, resume_vm true) on a
       connection opened beforehand: the request's duration, and from sending it to the first
       serial line. QEMU: started with `-incoming defer`, then QMP migrate-incoming; that
       answer comes before the state is loaded, so only "to the first line" is shown.
   (c) spawn -> running: from just before the VMM process is spawned to the first serial line:
       pyrite-vmm or Firecracker spawned, its socket polled every 0.2 ms, PUT /snapshot/load as
       soon as it answers; QEMU spawned with `-incoming file:PATH` (or "exec:cat PATH").
       QEMU's source was started with `-global migration.store-global-state=off`, so that the
       destination runs as soon as the stream is read (as resume_vm does) instead of staying
       paused as the source was.
3. clones per second: --clones N VMs from the one snapshot, from just before the first spawn
   until every clone has printed its first serial line; N / that time. pyrite: one process,
   `pyrite snapshot clone STATE MEM -n N` (each clone's lines prefixed "[i] "). Firecracker:
   N processes spawned at once, each loading the snapshot (the same files: its memory file is
   mapped privately, as pyrite's is) through its own socket: one loop polls the sockets and
   hands each that accepts a connection to a thread of its own, which sends PUT /snapshot/load.
   QEMU: N processes with `-incoming`. Each clone is checked as in 2. Every clone runs the
   counting guest at full speed, so N clones share this host's cores as they would in use.
4. memory per clone: once all N clones run, they are left running for --clone-run-ms, then
   /proc/PID/smaps of each VMM process is read: PSS/clone is the processes' summed Pss over
   N; dirtied/clone is the summed "Anonymous" of the mappings of the snapshot's memory file
   (the guest pages the clones have written, private copies of the file's pages) over N;
   "beyond dirtied" is the difference: the VMM's own memory (interpreter or binary, heap,
   thread stacks, KVM structures mapped in) plus each clone's share of the shared pages
   (the memory file's page cache, program text). QEMU's guest RAM is anonymous memory filled
   from the stream, so its written pages cannot be told from restored ones: only its
   PSS/clone is shown.

Targets (pyrite): in-process restore returns in <= 1 ms at 128 MiB; PUT /snapshot/load takes
<= 0.25x Firecracker's; >= 200 clones/s; <= 1 MiB per clone beyond the pages it dirtied.

    .venv/bin/python benchmarks/snapshot.py [--runs N] [--mem-mib 128,1024] [--clones N]
                                            [--vmms pyrite,firecracker,qemu] [--warmup N]
                                            [--settle-ms MS] [--clone-run-ms MS] [--timeout S] [--json]

To measure another way of starting pyrite (a warm parent that forks clones, say), add a Target
subclass with its own spawn_and_load() and clones() and list it in TARGETS: it gets a column.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import api, boot, refs, tools, virtio  # noqa: E402

REPO = tools.REPO_ROOT
GUEST_SOURCE = REPO / "tests" / "guests" / "counter.c"
GUEST_LIMIT = 100_000_000                 # counts for hours: never ends during a run
BOOT_ARGS = f"console=ttyS0 -- {GUEST_LIMIT}"
SNAPSHOT_AFTER = 5                        # snapshot once the guest printed count=5 (it runs at CPL 3)
PYRITE = REPO / ".venv" / "bin" / "pyrite"
PYRITE_VMM = api.PYRITE_VMM
MIB = 1 << 20

VMMS = ("pyrite", "firecracker", "qemu")
REFERENCES = ("firecracker", "qemu")
MEM_SIZES = (128, 1024)
QEMU_MACHINE = ["-M", "microvm,x-option-roms=off,isa-serial=on,rtc=off", "-enable-kvm",
                "-cpu", "host,-arch-capabilities", "-nodefaults", "-no-user-config", "-nographic",
                "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-no-reboot"]

RESTORE_TARGET_MS = 1.0
RESTORE_TARGET_MEM_MIB = 128
LOAD_RATIO_TARGET = 0.25
CLONES_TARGET_PER_S = 200.0
CLONE_MEMORY_TARGET_MIB = 1.0

_COUNT = re.compile(rb"count=(\d+)")


class BenchError(RuntimeError):
    """One run could not be completed or its result is not valid; the text says which step."""


# --------------------------------------------------------------------------- processes


@dataclass
class Proc:
    """A spawned VMM: its stdout (the guest's serial port) watched line by line."""
    name: str
    process: subprocess.Popen
    watch: api.OutputWatch
    stderr_path: Path
    sock: Path | None = None

    def stderr_tail(self) -> str:
        """The end of the VMM's stderr as "; stderr: ...", or "" when it printed nothing."""
        try:
            tail = self.stderr_path.read_text(errors="replace")[-600:].strip()
        except OSError:
            return ""
        return f"; stderr: {tail}" if tail else ""


class Session:
    """The working directory and every process spawned in it; end() kills what still runs.

    Each VMM gets a process group of its own (QEMU's exec: migrations start `sh` and `cat`), so
    that killing it kills its helpers too."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self._procs: list[Proc] = []
        self._serial = 0
        self._lock = threading.Lock()

    def path(self, stem: str, suffix: str) -> Path:
        with self._lock:
            self._serial += 1
            return self.workdir / f"{stem}-{self._serial}{suffix}"

    def spawn(self, name: str, argv: list[str], sock: Path | None = None) -> Proc:
        stderr_path = self.path(name, ".stderr")
        with open(stderr_path, "wb") as stderr:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
                                       cwd=self.workdir, start_new_session=True)
        proc = Proc(name, process, api.OutputWatch(process.stdout.fileno(), name), stderr_path, sock)
        with self._lock:
            self._procs.append(proc)
        return proc

    def kill(self, procs: list[Proc]) -> None:
        for proc in procs:
            if proc.process.poll() is None:
                try:
                    os.killpg(proc.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for proc in procs:
            proc.process.wait()
            proc.watch.close(drain_s=1.0)
            proc.process.stdout.close()
            if proc.sock is not None:
                proc.sock.unlink(missing_ok=True)
            with self._lock:
                if proc in self._procs:
                    self._procs.remove(proc)

    def end(self) -> None:
        self.kill(list(self._procs))


# --------------------------------------------------------------------------- the guest's count


@dataclass(frozen=True)
class Snapshot:
    """One VMM's snapshot of the counting guest, and where its count stood."""
    vmm: str
    mem_mib: int
    state: Path | None      # None for QEMU: one migration stream
    memory: Path
    last_count: int         # the last complete line before the snapshot was count=last_count
    partial: bytes          # the unfinished line after it (b"" when the guest stopped at a newline)


def count_position(output: bytes, vmm: str) -> tuple[int, bytes]:
    """(L, partial) from a guest's serial output up to its snapshot: its last complete line is
    count=L, and `partial` is what followed without a newline yet."""
    *complete, partial = output.replace(b"\r", b"").split(b"\n")
    if not complete:
        raise BenchError(f"{vmm}: no complete line from the guest before the snapshot: {output[-200:]!r}")
    found = _COUNT.fullmatch(complete[-1])
    if found is None:
        raise BenchError(f"{vmm}: the guest's last line before the snapshot is {complete[-1][:80]!r}, not count=N")
    return int(found.group(1)), partial


def continuation_problem(snapshot: Snapshot, first_line: bytes) -> str | None:
    """Why `first_line` (the first serial line after a load) does not continue the count."""
    expected = f"count={snapshot.last_count + 1}".encode()
    got = snapshot.partial + first_line.replace(b"\r", b"")
    if got != expected:
        return (f"first line after the load is {first_line[:80]!r} (completing {got[:80]!r}), expected the "
                f"count to go on with {expected.decode()}")
    return None


def await_running(watch: api.OutputWatch, snapshot: Snapshot, timeout_s: float, prefix: bytes = b"") -> int:
    """Stamp (monotonic ns) of the first serial line after a load, once it is checked: it continues
    the count and the line after it follows. `prefix`: the clone's "[i] " in a shared output."""
    first = watch.wait_for(lambda line: line.startswith(prefix), timeout_s)
    if first is None:
        raise BenchError(f"no serial line{' ' + prefix.decode().strip() if prefix else ''} within "
                         f"{timeout_s:.0f} s of the load")
    problem = continuation_problem(snapshot, first[1][len(prefix):])
    if problem:
        raise BenchError(problem)
    following = prefix + f"count={snapshot.last_count + 2}".encode()
    if watch.wait_for(lambda line: line.rstrip(b"\r") == following, timeout_s) is None:
        raise BenchError(f"{following.decode()} did not follow within {timeout_s:.0f} s")
    return first[0]


def fsync_files(paths: list[Path]) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------- memory


@dataclass(frozen=True)
class MemoryUse:
    pss_kib: int
    guest_dirtied_kib: int | None     # Anonymous pages in mappings of the snapshot's memory file
    guest_mappings: int


def memory_use(pid: int, guest_file: Path | None) -> MemoryUse:
    """Pss of the whole process and the written (anonymous) pages of its guest-memory mappings,
    from /proc/PID/smaps. A mapping is guest memory when it maps `guest_file`."""
    wanted = str(guest_file.resolve()) if guest_file is not None else None
    pss = dirtied = mappings = 0
    in_guest = False
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                head, _, rest = line.partition(" ")
                if "-" in head and not head.endswith(":"):
                    fields = line.split(None, 5)
                    in_guest = wanted is not None and len(fields) == 6 and fields[5].strip() == wanted
                    mappings += in_guest
                elif head == "Pss:":
                    pss += int(rest.split()[0])
                elif head == "Anonymous:" and in_guest:
                    dirtied += int(rest.split()[0])
    except OSError as e:
        raise BenchError(f"/proc/{pid}/smaps: {e.strerror}") from None
    return MemoryUse(pss, dirtied if wanted is not None else None, mappings)


# --------------------------------------------------------------------------- the VMMs


def ns_to_ms(ns: int) -> float:
    return ns / 1e6


class Target:
    """One way of running the guest from a snapshot; each method is one measured run and returns
    its metrics (BenchError: the run does not count)."""
    name = ""

    def __init__(self, session: Session, image: Path, args):
        self.session, self.image, self.args = session, image, args
        self.timeout_s = args.timeout

    def create(self, mem_mib: int, keep: bool) -> tuple[dict[str, float | None], Snapshot | None]:
        raise NotImplementedError

    def load_request(self, snapshot: Snapshot) -> dict[str, float | None]:
        raise NotImplementedError

    def spawn_and_load(self, snapshot: Snapshot) -> dict[str, float | None]:
        raise NotImplementedError

    def clones(self, snapshot: Snapshot, count: int) -> dict[str, float | None]:
        raise NotImplementedError

    # shared by the subclasses
    def _snapshot_paths(self, mem_mib: int, keep: bool) -> tuple[Path, Path]:
        stem = f"{self.name}-{mem_mib}" + ("" if keep else "-scratch")
        return self.session.path(stem, ".state"), self.session.path(stem, ".mem")

    def _clone_metrics(self, procs: list[Proc], firsts: list[int], started_ns: int, count: int,
                       guest_file: Path | None) -> dict[str, float | None]:
        """clones/s from the first clone spawned to the last clone's first line; memory once they ran."""
        last = max(firsts)
        time.sleep(self.args.clone_run_ms / 1000)
        for proc in procs:
            if proc.process.poll() is not None:
                raise BenchError(f"{proc.name} exited with status {proc.process.returncode} while its "
                                 f"clones ran{proc.stderr_tail()}")
        uses = [memory_use(proc.process.pid, guest_file) for proc in procs]
        if guest_file is not None:
            mapped = sum(use.guest_mappings for use in uses)
            if mapped < count:   # one per clone at least (the kernel may split a mapping in parts)
                raise BenchError(f"{mapped} mappings of {guest_file} in /proc/PID/smaps for {count} clones")
        pss = sum(use.pss_kib for use in uses) / 1024 / count
        dirtied = (sum(use.guest_dirtied_kib for use in uses) / 1024 / count) if guest_file is not None else None
        return {"clones_per_s": count / ((last - started_ns) / 1e9),
                "first_clone_ms": ns_to_ms(min(firsts) - started_ns),
                "all_clones_ms": ns_to_ms(last - started_ns),
                "pss_mib": pss, "dirtied_mib": dirtied,
                "beyond_mib": None if dirtied is None else pss - dirtied}


class ApiTarget(Target):
    """A VMM with Firecracker's API: pyrite-vmm or Firecracker itself."""

    def argv(self, sock: Path, log: Path) -> list[str]:
        raise NotImplementedError

    def spawn(self, stem: str) -> Proc:
        sock, log = self.session.path(stem, ".sock"), self.session.path(stem, ".log")
        log.touch()
        return self.session.spawn(self.name, self.argv(sock, log), sock)

    def _connect(self, proc: Proc) -> socket.socket:
        try:
            sock = api.connect_when_ready(proc.sock, proc.process, self.timeout_s)
        except api.ApiBenchError as e:
            raise BenchError(f"{e}{proc.stderr_tail()}") from None
        sock.settimeout(self.timeout_s)
        return sock

    def _request(self, proc: Proc, method: str, resource: str, body: dict | None = None) -> float:
        """One request on a connection opened before the clock starts; its duration in ms."""
        with self._connect(proc) as sock:
            started = time.monotonic_ns()
            status, answer = api.http_exchange(sock, method, resource, body)
            took = time.monotonic_ns() - started
        if not 200 <= status < 300:
            raise BenchError(f"{self.name}: {method} {resource}: HTTP {status} "
                             f"{answer[:300].decode(errors='replace')}")
        return ns_to_ms(took)

    def _load_body(self, snapshot: Snapshot) -> dict:
        return {"snapshot_path": str(snapshot.state),
                "mem_backend": {"backend_type": "File", "backend_path": str(snapshot.memory)},
                "enable_diff_snapshots": False, "resume_vm": True}

    def create(self, mem_mib: int, keep: bool) -> tuple[dict[str, float | None], Snapshot | None]:
        state, memory = self._snapshot_paths(mem_mib, keep)
        proc = self.spawn(f"{self.name}-create")
        try:
            self._request(proc, "PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": mem_mib})
            self._request(proc, "PUT", "/boot-source", {"kernel_image_path": str(self.image), "boot_args": BOOT_ARGS})
            self._request(proc, "PUT", "/actions", {"action_type": "InstanceStart"})
            if proc.watch.wait_for(lambda line: line.startswith(f"count={SNAPSHOT_AFTER}".encode()),
                                   self.timeout_s) is None:
                raise BenchError(f"{self.name}: the guest did not print count={SNAPSHOT_AFTER} within "
                                 f"{self.timeout_s:.0f} s of InstanceStart: {proc.watch.text()[-300:]!r}")
            self._request(proc, "PATCH", "/vm", {"state": "Paused"})
            create_ms = self._request(proc, "PUT", "/snapshot/create", {
                "snapshot_type": "Full", "snapshot_path": str(state), "mem_file_path": str(memory)})
            fsync_started = time.monotonic_ns()
            fsync_files([state, memory])
            fsync_ms = ns_to_ms(time.monotonic_ns() - fsync_started)
            size = memory.stat().st_size
            if size != mem_mib * MIB or state.stat().st_size == 0:
                raise BenchError(f"{self.name}: memory file of {size} bytes for {mem_mib} MiB, state file of "
                                 f"{state.stat().st_size} bytes")
            files_mib = (size + state.stat().st_size) / MIB
            time.sleep(0.05)   # the reader has the guest's last bytes before the pause
            output = proc.watch.text().encode()
        finally:
            self.session.kill([proc])
        snapshot = None
        if keep:
            last, partial = count_position(output, self.name)
            snapshot = Snapshot(self.name, mem_mib, state, memory, last, partial)
        else:
            state.unlink(missing_ok=True)
            memory.unlink(missing_ok=True)
        return {"create_ms": create_ms, "create_fsync_ms": create_ms + fsync_ms, "files_mib": files_mib}, snapshot

    def load_request(self, snapshot: Snapshot) -> dict[str, float | None]:
        proc = self.spawn(f"{self.name}-load")
        try:
            with self._connect(proc) as sock:
                status, answer = api.http_exchange(sock, "GET", "/")
            if status != 200:
                raise BenchError(f"{self.name}: GET /: HTTP {status} {answer[:200]!r}")
            time.sleep(self.args.settle_ms / 1000)
            with self._connect(proc) as sock:
                started = time.monotonic_ns()
                status, answer = api.http_exchange(sock, "PUT", "/snapshot/load", self._load_body(snapshot))
                answered = time.monotonic_ns()
            if status != 204:
                raise BenchError(f"{self.name}: PUT /snapshot/load: HTTP {status} "
                                 f"{answer[:300].decode(errors='replace')}")
            running = await_running(proc.watch, snapshot, self.timeout_s)
        finally:
            self.session.kill([proc])
        return {"request_ms": ns_to_ms(answered - started), "request_line_ms": ns_to_ms(running - started)}

    def spawn_and_load(self, snapshot: Snapshot) -> dict[str, float | None]:
        started = time.monotonic_ns()
        proc = self.spawn(f"{self.name}-spawn")
        try:
            request_ms = self._request(proc, "PUT", "/snapshot/load", self._load_body(snapshot))
            running = await_running(proc.watch, snapshot, self.timeout_s)
        finally:
            self.session.kill([proc])
        return {"spawn_line_ms": ns_to_ms(running - started), "spawn_request_ms": request_ms}

    def clones(self, snapshot: Snapshot, count: int) -> dict[str, float | None]:
        """`count` VMM processes spawned at once, each loading the snapshot through its own socket:
        one loop polls the sockets that are not up yet (every 0.2 ms when none came up) and hands
        each one that accepts to a thread that sends the load request."""
        started = time.monotonic_ns()
        procs: list[Proc] = []
        try:
            for i in range(count):
                procs.append(self.spawn(f"{self.name}-clone{i}"))
            body = self._load_body(snapshot)
            with ThreadPoolExecutor(max_workers=count) as pool:
                requests = [pool.submit(self._load_on, sock, body)
                            for sock in self._connect_all(procs)]
                for request in requests:
                    request.result()
            firsts = [await_running(proc.watch, snapshot, self.timeout_s) for proc in procs]
            return self._clone_metrics(procs, firsts, started, count, snapshot.memory)
        finally:
            self.session.kill(procs)

    def _connect_all(self, procs: list[Proc]):
        """Yield a connected socket for each process, in the order their sockets come up."""
        pending = list(procs)
        deadline = time.monotonic() + self.timeout_s
        while pending:
            for proc in list(pending):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.connect(str(proc.sock))
                except (FileNotFoundError, ConnectionRefusedError):
                    sock.close()
                    if proc.process.poll() is not None:
                        raise BenchError(f"{self.name} exited with status {proc.process.returncode} before its "
                                         f"socket accepted a connection{proc.stderr_tail()}")
                    continue
                sock.settimeout(self.timeout_s)
                pending.remove(proc)
                yield sock
            if pending:
                if time.monotonic() > deadline:
                    raise BenchError(f"{len(pending)} {self.name} sockets not up within {self.timeout_s:.0f} s")
                time.sleep(api.SOCKET_POLL_S)

    def _load_on(self, sock: socket.socket, body: dict) -> None:
        with sock:
            status, answer = api.http_exchange(sock, "PUT", "/snapshot/load", body)
        if status != 204:
            raise BenchError(f"{self.name}: PUT /snapshot/load: HTTP {status} {answer[:300].decode(errors='replace')}")


class PyriteTarget(ApiTarget):
    name = "pyrite"

    def argv(self, sock: Path, log: Path) -> list[str]:
        return [str(PYRITE_VMM), "--api-sock", str(sock), "--log-path", str(log), "--level", "Warning"]

    def clones(self, snapshot: Snapshot, count: int) -> dict[str, float | None]:
        """One `pyrite snapshot clone -n N` process: its clones' lines come prefixed "[i] "."""
        started = time.monotonic_ns()
        proc = self.session.spawn("pyrite-clone", [
            str(PYRITE), "snapshot", "clone", str(snapshot.state), str(snapshot.memory), "-n", str(count),
            "--timeout", str(int(self.timeout_s + self.args.clone_run_ms / 1000 + 30))])
        try:
            try:
                firsts = [await_running(proc.watch, snapshot, self.timeout_s, f"[{i}] ".encode())
                          for i in range(count)]
            except BenchError as e:
                raise BenchError(f"{e}{proc.stderr_tail()}") from None
            return self._clone_metrics([proc], firsts, started, count, snapshot.memory)
        finally:
            self.session.kill([proc])


class FirecrackerTarget(ApiTarget):
    name = "firecracker"

    def __init__(self, session: Session, image: Path, args):
        super().__init__(session, image, args)
        self.binary = refs.firecracker_binary()

    def argv(self, sock: Path, log: Path) -> list[str]:
        return [str(self.binary), "--api-sock", str(sock), "--log-path", str(log), "--level", "Warning"]


class Qmp(api.QmpChannel):
    """QMP with arguments, keeping the events that arrive meanwhile."""

    def __init__(self, sock: socket.socket):
        super().__init__(sock)
        self.events: list[dict] = []

    def __enter__(self) -> Qmp:
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()

    def call(self, command: str, arguments: dict | None = None) -> dict:
        message = {"execute": command, **({"arguments": arguments} if arguments else {})}
        self.sock.sendall(json.dumps(message).encode() + b"\n")
        while True:
            reply = self.message()
            if "event" in reply:
                self.events.append(reply)
            elif "return" in reply:
                return reply["return"]
            elif "error" in reply:
                raise QmpError(command, reply["error"].get("desc", str(reply["error"])))

    def wait_event(self, name: str, matches, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            for event in self.events:
                if event["event"] == name and matches(event.get("data", {})):
                    return event
            self.events.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"QMP: no {name} event within {timeout_s:.0f} s")
            self.sock.settimeout(left)
            try:
                self.events.append(self.message())
            except socket.timeout:
                raise BenchError(f"QMP: no {name} event within {timeout_s:.0f} s") from None
            finally:
                self.sock.settimeout(timeout_s)


class QmpError(BenchError):
    def __init__(self, command: str, text: str):
        super().__init__(f"QMP {command}: {text}")
        self.text = text


def qemu_children(pid: int) -> list[int]:
    children: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    children += [int(c) for c in f.read().split()]
            except OSError:
                continue
    except OSError:
        pass
    return children


def qemu_stream_complete(path: Path) -> bool:
    """Whether a migration stream ends as QEMU ends one: QEMU_VM_VMDESCRIPTION (6), its length
    (big-endian u32) and that much JSON, to the end of the file."""
    data = path.read_bytes()
    start = data.rfind(b'{"page_size"')
    return (start >= 5 and data[start - 5] == 6
            and int.from_bytes(data[start - 4:start], "big") == len(data) - start and data.endswith(b"}"))


class QemuTarget(Target):
    name = "qemu"

    def __init__(self, session: Session, image: Path, args):
        super().__init__(session, image, args)
        self.binary = refs.qemu_binary()
        self.file_uri: bool | None = None    # QEMU >= 8.2 migrates to "file:"; found out on the first create

    def argv(self, mem_mib: int, *extra: str) -> list[str]:
        return [str(self.binary), *QEMU_MACHINE, "-m", f"{mem_mib}M", "-kernel", str(self.image),
                "-append", BOOT_ARGS, *extra]

    def transport(self) -> str:
        return {True: "file:", False: "exec:cat (this QEMU has no file: migration)", None: "?"}[self.file_uri]

    def incoming_uri(self, snapshot: Snapshot) -> str:
        return f"file:{snapshot.memory}" if self.file_uri else f"exec:cat {shlex.quote(str(snapshot.memory))}"

    def _qmp(self, proc: Proc) -> Qmp:
        try:
            sock = api.connect_when_ready(proc.sock, proc.process, self.timeout_s)
        except api.ApiBenchError as e:
            raise BenchError(f"{e}{proc.stderr_tail()}") from None
        sock.settimeout(self.timeout_s)
        qmp = Qmp(sock)
        if "QMP" not in qmp.message():
            raise BenchError("QMP: no greeting")
        qmp.call("qmp_capabilities")
        return qmp

    def spawn_qmp(self, stem: str, mem_mib: int, *extra: str) -> Proc:
        sock = self.session.path(stem, ".qmp")
        return self.session.spawn(self.name, self.argv(mem_mib, "-qmp", f"unix:{sock},server=on,wait=off", *extra),
                                  sock)

    def create(self, mem_mib: int, keep: bool) -> tuple[dict[str, float | None], Snapshot | None]:
        _, stream = self._snapshot_paths(mem_mib, keep)
        # Without the runstate in the stream, `-incoming` runs the guest once loaded (else it stays paused).
        proc = self.spawn_qmp("qemu-create", mem_mib, "-global", "migration.store-global-state=off")
        try:
            with self._qmp(proc) as qmp:
                qmp.call("migrate-set-capabilities", {"capabilities": [{"capability": "events", "state": True}]})
                if proc.watch.wait_for(lambda line: line.startswith(f"count={SNAPSHOT_AFTER}".encode()),
                                       self.timeout_s) is None:
                    raise BenchError(f"qemu: the guest did not print count={SNAPSHOT_AFTER} within "
                                     f"{self.timeout_s:.0f} s: {proc.watch.text()[-300:]!r}{proc.stderr_tail()}")
                qmp.call("stop")
                started = time.monotonic_ns()
                self._migrate(qmp, stream)
                qmp.wait_event("MIGRATION", lambda data: data.get("status") in ("completed", "failed"),
                               self.timeout_s)
                status = qmp.call("query-migrate").get("status")
                if status != "completed":
                    raise BenchError(f"qemu: migration {status}{proc.stderr_tail()}")
                deadline = time.monotonic() + self.timeout_s
                while qemu_children(proc.process.pid):       # exec:cat's `sh` and `cat` still writing
                    if time.monotonic() > deadline:
                        raise BenchError("qemu: its migration helper did not exit")
                    time.sleep(0.0001)
                written = time.monotonic_ns()
                fsync_files([stream])
                fsynced = time.monotonic_ns()
            if not qemu_stream_complete(stream):
                raise BenchError(f"qemu: {stream.name} ({stream.stat().st_size} bytes) does not end with QEMU's "
                                 "device description: the stream was cut")
            files_mib = stream.stat().st_size / MIB
            time.sleep(0.05)
            output = proc.watch.text().encode()
        finally:
            self.session.kill([proc])
        snapshot = None
        if keep:
            last, partial = count_position(output, self.name)
            snapshot = Snapshot(self.name, mem_mib, None, stream, last, partial)
        else:
            stream.unlink(missing_ok=True)
        return {"create_ms": ns_to_ms(written - started), "create_fsync_ms": ns_to_ms(fsynced - started),
                "files_mib": files_mib}, snapshot

    def _migrate(self, qmp: Qmp, stream: Path) -> None:
        if self.file_uri is not False:
            try:
                qmp.call("migrate", {"uri": f"file:{stream}"})
                self.file_uri = True
                return
            except QmpError as e:
                if self.file_uri or "protocol" not in e.text:
                    raise
                self.file_uri = False
                qmp.events.clear()     # the refused attempt's MIGRATION events ("failed")
        qmp.call("migrate", {"uri": f"exec:cat > {shlex.quote(str(stream))}"})

    def load_request(self, snapshot: Snapshot) -> dict[str, float | None]:
        proc = self.spawn_qmp("qemu-load", snapshot.mem_mib, "-incoming", "defer")
        try:
            with self._qmp(proc) as qmp:
                time.sleep(self.args.settle_ms / 1000)
                started = time.monotonic_ns()
                qmp.call("migrate-incoming", {"uri": self.incoming_uri(snapshot)})
                running = await_running(proc.watch, snapshot, self.timeout_s)
        finally:
            self.session.kill([proc])
        return {"request_ms": None, "request_line_ms": ns_to_ms(running - started)}

    def spawn_and_load(self, snapshot: Snapshot) -> dict[str, float | None]:
        started = time.monotonic_ns()
        proc = self.session.spawn(self.name, self.argv(snapshot.mem_mib, "-incoming", self.incoming_uri(snapshot)))
        try:
            try:
                running = await_running(proc.watch, snapshot, self.timeout_s)
            except BenchError as e:
                raise BenchError(f"{e}{proc.stderr_tail()}") from None
        finally:
            self.session.kill([proc])
        return {"spawn_line_ms": ns_to_ms(running - started), "spawn_request_ms": None}

    def clones(self, snapshot: Snapshot, count: int) -> dict[str, float | None]:
        started = time.monotonic_ns()
        procs: list[Proc] = []
        try:
            for _ in range(count):
                procs.append(self.session.spawn(self.name, self.argv(snapshot.mem_mib, "-incoming",
                                                                     self.incoming_uri(snapshot))))
            firsts = [await_running(proc.watch, snapshot, self.timeout_s) for proc in procs]
            # Its guest RAM is anonymous: written and restored pages look alike (no "dirtied").
            return self._clone_metrics(procs, firsts, started, count, None)
        finally:
            self.session.kill(procs)


def restore_in_process(snapshot: Snapshot, timeout_s: float) -> dict[str, float | None]:
    """pyrite.MicroVM.restore in this process: until it returns, and until the first new line."""
    import pyrite
    started = time.perf_counter_ns()
    vm = pyrite.MicroVM.restore(snapshot.state, snapshot.memory)
    try:
        returned = time.perf_counter_ns()
        if not vm.wait_for_output(b"\n", timeout_s):
            raise BenchError(f"no serial line within {timeout_s:.0f} s of MicroVM.restore (exit: {vm.exit})")
        first_line = time.perf_counter_ns()
        problem = continuation_problem(snapshot, vm.console_output.partition(b"\n")[0])
        if problem:
            raise BenchError(problem)
        following = f"\ncount={snapshot.last_count + 2}\n".encode()
        if not vm.wait_for_output(following, timeout_s):
            raise BenchError(f"count={snapshot.last_count + 2} did not follow within {timeout_s:.0f} s")
    finally:
        vm.stop()
        vm.close()
    return {"restore_ms": (returned - started) / 1e6, "restore_line_ms": (first_line - started) / 1e6}


# --------------------------------------------------------------------------- rounds and report


TARGETS: dict[str, type[Target]] = {"pyrite": PyriteTarget, "firecracker": FirecrackerTarget, "qemu": QemuTarget}
KINDS = ("create", "inproc", "load", "spawn", "clones")


@dataclass
class Series:
    runs: list[dict[str, float | None]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def median(self, metric: str) -> float | None:
        return tools.median([run[metric] for run in self.runs if run.get(metric) is not None])


@dataclass
class SizeResult:
    mem_mib: int
    unavailable: dict[str, str] = field(default_factory=dict)      # VMM -> why it could not run at all
    series: dict[tuple[str, str], Series] = field(default_factory=dict)

    def of(self, vmm: str, kind: str) -> Series:
        return self.series.setdefault((vmm, kind), Series())


def run_one(target: Target, kind: str, snapshot: Snapshot, args) -> dict[str, float | None]:
    if kind == "create":
        return target.create(snapshot.mem_mib, keep=False)[0]
    if kind == "inproc":
        return restore_in_process(snapshot, args.timeout)
    if kind == "load":
        return target.load_request(snapshot)
    if kind == "spawn":
        return target.spawn_and_load(snapshot)
    return target.clones(snapshot, args.clones)


def measure_size(mem_mib: int, targets: dict[str, Target], args) -> SizeResult:
    """Every measurement at one memory size; each VMM's snapshot is deleted at the end."""
    snapshots: dict[str, Snapshot] = {}
    try:
        return _measure_size(mem_mib, targets, args, snapshots)
    finally:
        for snapshot in snapshots.values():
            for path in (snapshot.state, snapshot.memory):
                if path is not None:
                    path.unlink(missing_ok=True)


def _measure_size(mem_mib: int, targets: dict[str, Target], args, snapshots: dict[str, Snapshot]) -> SizeResult:
    result = SizeResult(mem_mib)
    for name, target in targets.items():
        try:
            snapshot = target.create(mem_mib, keep=True)[1]
        except (BenchError, api.ApiBenchError, OSError) as e:
            result.unavailable[name] = f"its snapshot could not be taken: {e}"
            continue
        if snapshot is not None:
            snapshots[name] = snapshot
    names = tuple(snapshots)
    total = args.warmup + args.runs
    for round_index in range(total):
        for kind in KINDS:
            for name in virtio.interleaved_order(names, round_index):
                if kind == "inproc" and name != "pyrite":
                    continue
                try:
                    metrics = run_one(targets[name], kind, snapshots[name], args)
                except (BenchError, api.ApiBenchError, OSError) as e:
                    result.of(name, kind).problems.append(str(e))
                    continue
                except Exception as e:   # pyrite's own errors (SnapshotError, BuildError...) in-process
                    result.of(name, kind).problems.append(f"{type(e).__name__}: {e}")
                    continue
                finally:
                    time.sleep(0.05)     # deferred KVM teardown of the last run, off the next one
                if round_index >= args.warmup:
                    result.of(name, kind).runs.append(metrics)
        if not args.json:
            print(f"\r{mem_mib} MiB: round {round_index + 1}/{total}", end="", file=sys.stderr, flush=True)
    if not args.json:
        print(file=sys.stderr)
    return result


# (title, kind, metric, decimals); "higher" marks the rows where a higher value is better.
ROWS = (
    ("create ms", "create", "create_ms", 1),
    ("create + fsync ms", "create", "create_fsync_ms", 1),
    ("  snapshot files MiB", "create", "files_mib", 1),
    ("restore in-process ms", "inproc", "restore_ms", 2),
    ("  -> first line ms", "inproc", "restore_line_ms", 2),
    ("load request ms", "load", "request_ms", 2),
    ("  -> first line ms", "load", "request_line_ms", 2),
    ("spawn -> first line ms", "spawn", "spawn_line_ms", 1),
    ("  its load request ms", "spawn", "spawn_request_ms", 1),
    ("clones/s (higher better)", "clones", "clones_per_s", 0),
    ("  first clone line ms", "clones", "first_clone_ms", 1),
    ("  all clones' lines ms", "clones", "all_clones_ms", 1),
    ("PSS/clone MiB", "clones", "pss_mib", 2),
    ("  dirtied/clone MiB", "clones", "dirtied_mib", 3),
    ("  beyond dirtied MiB", "clones", "beyond_mib", 2),
)

# (VMMs, row, why): printed when one of the VMMs is measured.
NOT_MEASURED = (
    (("firecracker", "qemu"), "restore in-process", "they have no in-process interface"),
    (("qemu",), "load request", "QEMU's migrate-incoming answers before the state is loaded "
                                "(its -> first line is shown)"),
    (("qemu",), "dirtied/clone, beyond dirtied", "QEMU's guest RAM is anonymous memory filled from the "
                                                 "stream: written pages cannot be told from restored ones"),
)


def format_report(result: SizeResult, vmms: tuple[str, ...], args, image: Path, qemu: QemuTarget | None) -> str:
    references = [ref for ref in REFERENCES if ref in vmms]
    ratio_header = "".join(f" {'/' + ref:>12}" for ref in references) if "pyrite" in vmms else ""
    lines = [f"counter guest ({image.stat().st_size} bytes, PVH), {result.mem_mib} MiB, 1 vCPU; median of "
             f"{args.runs} interleaved runs; {args.clones} clones"
             + (f"; QEMU migrates by {qemu.transport()}" if qemu is not None else ""),
             f"{'':<26}" + "".join(f" {vmm:>11}" for vmm in vmms) + ratio_header]
    for title, kind, metric, decimals in ROWS:
        values = {vmm: result.of(vmm, kind).median(metric) for vmm in vmms}
        line = f"{title:<26}" + "".join(f" {tools.cell(values[vmm], 11, decimals)}" for vmm in vmms)
        if "pyrite" in vmms:
            line += "".join(f" {tools.cell(tools.ratio(values['pyrite'], values[ref]), 12, 2)}" for ref in references)
        lines.append(line)
    for who, title, why in NOT_MEASURED:
        measured = [vmm for vmm in who if vmm in vmms]
        if measured:
            lines.append(f"{title}, {', '.join(measured)}: not measured: {why}")
    if ratio_header:
        lines.append(f"({', '.join('/' + ref for ref in references)}: pyrite's median over the reference's; "
                     "lower is better except clones/s)")
    lines += targets_report(result, vmms)
    for vmm, why in result.unavailable.items():
        lines.append(f"{vmm}: not measured: {why}")
    for (vmm, kind), series in result.series.items():
        if series.problems:
            lines.append(f"{vmm} {kind}: {len(series.problems)} runs failed, first: {series.problems[0]}")
    return "\n".join(lines)


def _verdict(met: bool | None) -> str:
    return "not measured" if met is None else ("met" if met else "not met")


def targets_report(result: SizeResult, vmms: tuple[str, ...]) -> list[str]:
    if "pyrite" not in vmms:
        return []
    pyrite = {kind: result.of("pyrite", kind) for kind in KINDS}
    lines = []
    restore, first = pyrite["inproc"].median("restore_ms"), pyrite["inproc"].median("restore_line_ms")
    if result.mem_mib == RESTORE_TARGET_MEM_MIB:
        met = None if restore is None else restore <= RESTORE_TARGET_MS
        detail = "" if restore is None else f" ({restore:.2f} ms to return, {first:.2f} ms to the first line)"
        lines.append(f"target in-process restore <= {RESTORE_TARGET_MS:g} ms at {RESTORE_TARGET_MEM_MIB} MiB: "
                     f"{_verdict(met)}{detail}")
    load = pyrite["load"].median("request_ms")
    fc = result.of("firecracker", "load").median("request_ms") if "firecracker" in vmms else None
    share = tools.ratio(load, fc)
    lines.append(f"target PUT /snapshot/load <= {LOAD_RATIO_TARGET:g}x Firecracker's: "
                 f"{_verdict(None if share is None else share <= LOAD_RATIO_TARGET)}"
                 + ("" if share is None else f" ({load:.2f} ms / {fc:.2f} ms = {share:.2f}x)"))
    rate = pyrite["clones"].median("clones_per_s")
    lines.append(f"target clones/s >= {CLONES_TARGET_PER_S:g}: "
                 f"{_verdict(None if rate is None else rate >= CLONES_TARGET_PER_S)}"
                 + ("" if rate is None else f" ({rate:.0f}/s)"))
    beyond = pyrite["clones"].median("beyond_mib")
    lines.append(f"target memory per clone beyond dirtied pages <= {CLONE_MEMORY_TARGET_MIB:g} MiB: "
                 f"{_verdict(None if beyond is None else beyond <= CLONE_MEMORY_TARGET_MIB)}"
                 + ("" if beyond is None else f" ({beyond:.2f} MiB)"))
    return lines


def report_json(results: list[SizeResult], args, image: Path) -> dict:
    return {
        "guest": str(image), "boot_args": BOOT_ARGS, "runs": args.runs, "clones": args.clones,
        "sizes": {str(result.mem_mib): {
            "unavailable": result.unavailable,
            "median": {f"{vmm}.{metric}": result.of(vmm, kind).median(metric)
                       for (vmm, kind) in list(result.series) for _, k, metric, _ in ROWS if k == kind},
            "runs": {f"{vmm}.{kind}": series.runs for (vmm, kind), series in result.series.items()},
            "problems": {f"{vmm}.{kind}": series.problems for (vmm, kind), series in result.series.items()
                         if series.problems},
        } for result in results},
    }


def _mem_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: MiB, comma-separated (e.g. 128,1024)") from None
    if not sizes or any(size < 16 for size in sizes):
        raise argparse.ArgumentTypeError(f"{text!r}: at least one size, each >= 16 MiB")
    return sizes


def check_pyrite_scripts() -> None:
    """pyrite and pyrite-vmm exist and run a real interpreter (a shim would add ~50 ms per start)."""
    for script in (PYRITE, PYRITE_VMM):
        if not script.exists():
            raise refs.RefError(f"{script} does not exist; `make setup` installs pyrite into .venv")
        interpreter = boot._shebang_interpreter(script)
        if interpreter is None or not boot._is_elf(interpreter.resolve()):
            raise refs.RefError(f"{script} runs {interpreter}, which is not a native interpreter binary "
                                "(a shim?); recreate .venv from the real python")


def _interrupted(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="measured rounds (default 10)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first (default 1)")
    parser.add_argument("--mem-mib", type=_mem_sizes, default=MEM_SIZES,
                        help="guest memory sizes, comma-separated (default 128,1024)")
    parser.add_argument("--clones", type=int, default=32, help="clones per clone run (default 32)")
    parser.add_argument("--vmms", default=",".join(VMMS), help=f"comma-separated subset of {','.join(VMMS)}")
    parser.add_argument("--settle-ms", type=float, default=500,
                        help="a fresh VMM's time to start before the timed load request (default 500)")
    parser.add_argument("--clone-run-ms", type=float, default=500,
                        help="how long the clones run before their memory is read (default 500)")
    parser.add_argument("--timeout", type=float, default=30, help="seconds any one step may take (default 30)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    vmms = tuple(name for name in VMMS if name in args.vmms.split(","))
    unknown = sorted(set(filter(None, args.vmms.split(","))) - set(VMMS))
    if unknown or not vmms or args.runs < 1 or args.warmup < 0 or args.clones < 1:
        parser.error(f"--vmms takes names from {', '.join(VMMS)} (got {args.vmms!r}); --runs >= 1; "
                     "--warmup >= 0; --clones >= 1")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        print("snapshot.py: /dev/kvm missing or not accessible", file=sys.stderr)
        return 1
    try:
        if "pyrite" in vmms:
            check_pyrite_scripts()
            tools.compile_pyrite_bytecode()
        from pyrite.unikernel.build import build_image
        image = build_image([GUEST_SOURCE])
    except Exception as e:   # RefError, BuildError: say why and stop
        print(f"snapshot.py: {e}", file=sys.stderr)
        return 1

    # A SIGTERM (or SIGINT, also when a shell started us in the background) unwinds through the
    # `finally` blocks below, which kill every VMM this run spawned and remove its files.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _interrupted)
    results: list[SizeResult] = []
    interrupted = None
    with tempfile.TemporaryDirectory(prefix="pyrite-bench-snapshot-") as tmp:
        session = Session(Path(tmp))
        try:
            targets: dict[str, Target] = {}
            unavailable: dict[str, str] = {}
            for name in vmms:
                try:
                    targets[name] = TARGETS[name](session, image, args)
                except (refs.RefError, OSError) as e:
                    unavailable[name] = str(e)
            for mem_mib in args.mem_mib:
                result = measure_size(mem_mib, targets, args)
                result.unavailable.update(unavailable)
                results.append(result)
                if not args.json:
                    qemu = targets.get("qemu")
                    print(format_report(result, vmms, args, image, qemu if isinstance(qemu, QemuTarget) else None))
                    print()
        except KeyboardInterrupt as e:
            interrupted = str(e) or "SIGINT"
        finally:
            session.end()
    if interrupted:
        print(f"snapshot.py: stopped by {interrupted}; every VMM it started was killed", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(report_json(results, args, image), indent=2))
    # Success means every reference ran; pyrite's failures are reported above, not fatal here.
    return 0 if all(result.of(vmm, kind).runs for result in results for vmm in vmms if vmm != "pyrite"
                    for kind in KINDS if kind != "inproc") else 1


if __name__ == "__main__":
    sys.exit(main())
