#!/usr/bin/env python3
"""API benchmark: how soon a VMM's control socket answers, and how soon InstanceStart boots a guest.

pyrite-vmm and the real Firecracker are driven over their REST API on a Unix
socket; QEMU over QMP. Runs are interleaved (pyrite, firecracker, qemu, pyrite,
...) so that the machine's drift affects all alike. Per run:

1. Socket ready: from just before the process is spawned until the socket
   accepts a connection and answers (Firecracker API: `GET /` -> 200; QMP: the
   greeting, then `qmp_capabilities` -> return). The process's CPU time at
   that moment comes from /proc/PID/task/*/schedstat (nanoseconds).
2. InstanceStart: PUT /machine-config (1 vCPU, 128 MiB), PUT /boot-source
   (the tiny PVH guest), then from sending PUT /actions InstanceStart until
   the response, the guest's serial line, and the VMM's `Guest-boot-time`
   log line (the boot timer, --boot-timer) appear on the VMM's stdout. QEMU
   has no InstanceStart: it is started with -kernel and -S, and measured from
   QMP `cont` to the serial line (its VM is already built by then, so that
   figure flatters it).

    .venv/bin/python benchmarks/api.py [--runs N] [--warmup N] [--vmms pyrite,firecracker,qemu,pyrite-no-seccomp] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import boot, refs, tools  # noqa: E402

PYRITE_VMM = tools.REPO_ROOT / ".venv" / "bin" / "pyrite-vmm"
VENV_PYTHON = tools.VENV_PYTHON
VMM_ORDER = ("pyrite", "firecracker", "qemu")
# Not run unless named in --vmms: pyrite-vmm --no-seccomp, to see what its filters cost.
OPTIONAL_VMMS = ("pyrite-no-seccomp",)
REFERENCES = ("qemu", "firecracker")

SOCKET_POLL_S = 0.0002          # between connection attempts while the socket is not up
SOCKET_TIMEOUT_S = 10.0         # a socket not ready by then fails the run
GUEST_TIMEOUT_S = 10.0          # InstanceStart to the boot timer line
EXIT_GRACE_S = 3.0              # the guest ends the VMM; kill it if it lingers

GUEST_LINE = boot.GUEST_LINE.encode()
BOOT_TIMER_LINE = re.compile(rb"Guest-boot-time =\s*(\d+) us")


class ApiBenchError(RuntimeError):
    """One run could not be completed; the message says which step and what was seen."""


# --------------------------------------------------------------------------- VMM output


class OutputWatch:
    """Reads a file descriptor (stdout pipe, log FIFO) in a thread and stamps each complete line
    with time.monotonic_ns() when its newline arrives."""

    def __init__(self, fd: int, name: str):
        self._fd = fd
        self._lines: list[tuple[int, bytes]] = []
        self._partial = b""
        self._changed = threading.Condition()
        self._eof = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name=f"watch-{name}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            # A FIFO opened read-write never reaches EOF: wake up now and then to see if we are done.
            readable, _, _ = select.select([self._fd], [], [], 0.05)
            if not readable:
                continue
            try:
                chunk = os.read(self._fd, 65536)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            stamp = time.monotonic_ns()
            with self._changed:
                if chunk:
                    *complete, self._partial = (self._partial + chunk).split(b"\n")
                    self._lines.extend((stamp, line) for line in complete)
                else:
                    self._eof = True
                self._changed.notify_all()
            if not chunk:
                return

    def wait_for(self, matches: Callable[[bytes], bool], timeout_s: float) -> tuple[int, bytes] | None:
        """The first line (stamp, text) for which `matches` holds, waiting up to `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        seen = 0
        with self._changed:
            while True:
                for stamp, line in self._lines[seen:]:
                    if matches(line):
                        return stamp, line
                seen = len(self._lines)
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    return None
                self._changed.wait(left)

    def text(self) -> str:
        with self._changed:
            return (b"\n".join(line for _, line in self._lines) + b"\n" + self._partial).decode(errors="replace")

    def close(self, drain_s: float) -> None:
        """Stop reading (after the process ended, its last lines read within `drain_s`).
        The descriptor stays open: its owner closes it."""
        self._thread.join(timeout=drain_s)
        self._stop.set()
        self._thread.join(timeout=2)


def process_cpu_ms(pid: int) -> float | None:
    """CPU time the process has used so far: summed over its threads from schedstat (ns on CPU),
    or, on a kernel without schedstat, utime + stime from /proc/PID/stat (clock ticks)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    total_ns, read = 0, 0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total_ns += int(f.read().split()[0])
            read += 1
        except (OSError, ValueError, IndexError):
            continue   # a thread that ended meanwhile, or no schedstat
    if read:
        return total_ns / 1e6
    try:
        with open(f"/proc/{pid}/stat") as f:
            # Fields after the parenthesised command name; utime and stime are fields 14 and 15.
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


# --------------------------------------------------------------------------- clients


def connect_when_ready(path: Path, process: subprocess.Popen, timeout_s: float) -> socket.socket:
    """A socket connected to `path`, retried every SOCKET_POLL_S until the VMM listens."""
    deadline = time.monotonic() + timeout_s
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
            return sock
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
        if process.poll() is not None:
            raise ApiBenchError(f"{path.name}: the VMM exited with status {process.returncode} "
                                "before its socket accepted a connection")
        if time.monotonic() > deadline:
            raise ApiBenchError(f"{path}: no connection accepted within {timeout_s:.0f} s")
        time.sleep(SOCKET_POLL_S)


def http_exchange(sock: socket.socket, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
    """Send one HTTP/1.1 request and read its response (status, body) by its Content-Length."""
    payload = json.dumps(body).encode() if body is not None else b""
    head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
    sock.sendall(head.encode() + b"\r\n" + payload)
    received = b""
    while b"\r\n\r\n" not in received:
        received += _recv(sock, f"{method} {path}")
    header_block, _, rest = received.partition(b"\r\n\r\n")
    lines = header_block.split(b"\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        raise ApiBenchError(f"{method} {path}: malformed status line {lines[0][:80]!r}") from None
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                raise ApiBenchError(f"{method} {path}: bad Content-Length {value.strip()[:40]!r}") from None
    while len(rest) < length:
        rest += _recv(sock, f"{method} {path}")
    return status, rest[:length]


def _recv(sock: socket.socket, what: str) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        raise ApiBenchError(f"{what}: the VMM closed the connection before a complete response")
    return chunk


def api_call(path: Path, method: str, resource: str, body: dict | None = None) -> None:
    """One request on a fresh connection; anything but 2xx fails the run with the VMM's answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(GUEST_TIMEOUT_S)
        sock.connect(str(path))
        status, answer = http_exchange(sock, method, resource, body)
    if not 200 <= status < 300:
        raise ApiBenchError(f"{method} {resource}: HTTP {status} {answer[:300].decode(errors='replace')}")


class QmpChannel:
    """A QMP connection: newline-delimited JSON, events skipped while awaiting a reply."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._buffer = b""

    def message(self) -> dict:
        while b"\n" not in self._buffer:
            self._buffer += _recv(self.sock, "QMP")
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            raise ApiBenchError(f"QMP: not JSON: {line[:200]!r}") from None

    def execute(self, command: str) -> dict:
        self.sock.sendall(json.dumps({"execute": command}).encode() + b"\n")
        while True:
            reply = self.message()
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise ApiBenchError(f"QMP {command}: {reply['error']}")


# --------------------------------------------------------------------------- one run


@dataclass
class Run:
    socket_wall_ms: float | None = None
    socket_cpu_ms: float | None = None
    start_response_ms: float | None = None   # InstanceStart (QEMU: cont) to its reply
    serial_ms: float | None = None           # ... to the guest's line on stdout
    boot_timer_ms: float | None = None       # ... to the VMM's Guest-boot-time line
    reported_boot_ms: float | None = None    # the figure in that line, as the VMM measured it
    problem: str | None = None
    output_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class Vmm:
    name: str
    command: Callable[[Path, Path, Path], list[str]]   # (socket path, guest image, log FIFO) -> argv
    protocol: str                                  # "firecracker-api" or "qmp"


def pyrite_vmm(name: str = "pyrite", extra: tuple[str, ...] = ()) -> Vmm:
    interpreter = boot._shebang_interpreter(PYRITE_VMM) if PYRITE_VMM.exists() else None
    if interpreter is None:
        raise refs.RefError(f"{PYRITE_VMM} does not exist; `make setup` installs pyrite into .venv")
    # A pyenv shim as interpreter would add ~50 ms of shell to every start.
    if not boot._is_elf(interpreter.resolve()):
        raise refs.RefError(f"{PYRITE_VMM} runs {interpreter}, which is not a native interpreter binary "
                            "(a shim?); recreate .venv from the real python")
    return Vmm(name, lambda sock, image, log: [str(PYRITE_VMM), "--api-sock", str(sock), "--boot-timer",
                                               "--log-path", str(log), "--level", "Info", *extra],
               "firecracker-api")


def firecracker_vmm() -> Vmm:
    binary = refs.firecracker_binary()
    return Vmm("firecracker", lambda sock, image, log: [str(binary), "--api-sock", str(sock), "--boot-timer",
                                                        "--log-path", str(log), "--level", "Info"],
               "firecracker-api")


def qemu_vmm() -> Vmm:
    binary = refs.qemu_binary()
    return Vmm("qemu", lambda sock, image, log: [
        str(binary),
        "-M", "microvm,x-option-roms=off,isa-serial=on,rtc=off",
        "-enable-kvm", "-cpu", "host,-arch-capabilities", "-m", f"{boot.MEM_MIB}M",
        "-nodefaults", "-no-user-config", "-nographic", "-S",
        "-qmp", f"unix:{sock},server=on,wait=off",
        "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-kernel", str(image),
    ], "qmp")


def run_once(vmm: Vmm, image: Path, workdir: Path, index: int) -> Run:
    sock_path = workdir / f"{vmm.name}-{index}.sock"
    # The log goes to a FIFO of its own: on stdout its lines would interleave with the guest's bytes.
    log_path = workdir / f"{vmm.name}-{index}.log"
    os.mkfifo(log_path, 0o600)
    log_fd = os.open(log_path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    log = OutputWatch(log_fd, f"{vmm.name}-log")
    run = Run()
    started_ns = time.monotonic_ns()
    process = subprocess.Popen(vmm.command(sock_path, image, log_path), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=workdir)
    serial = OutputWatch(process.stdout.fileno(), f"{vmm.name}-stdout")
    try:
        if vmm.protocol == "qmp":
            _drive_qemu(run, process, serial, sock_path, started_ns)
        else:
            _drive_firecracker_api(run, process, serial, log, sock_path, image, started_ns)
    except (ApiBenchError, OSError) as e:
        run.problem = str(e)
    finally:
        _stop(process)
        serial.close(drain_s=1.0)
        process.stdout.close()
        log.close(drain_s=0.1)
        os.close(log_fd)
        sock_path.unlink(missing_ok=True)
        log_path.unlink(missing_ok=True)
    if run.problem:
        run.output_tail = ("stdout: " + serial.text()[-1000:] + "\nlog: " + log.text()[-1000:]).strip()
    return run


def _drive_firecracker_api(run: Run, process, serial: OutputWatch, log: OutputWatch, sock_path: Path,
                           image: Path, started_ns: int) -> None:
    with connect_when_ready(sock_path, process, SOCKET_TIMEOUT_S) as sock:
        sock.settimeout(SOCKET_TIMEOUT_S)
        status, answer = http_exchange(sock, "GET", "/")
        ready_ns = time.monotonic_ns()
        run.socket_cpu_ms = process_cpu_ms(process.pid)
    if status != 200:
        raise ApiBenchError(f"GET /: HTTP {status} {answer[:200]!r}")
    run.socket_wall_ms = (ready_ns - started_ns) / 1e6

    api_call(sock_path, "PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": boot.MEM_MIB})
    api_call(sock_path, "PUT", "/boot-source", {"kernel_image_path": str(image), "boot_args": "console=ttyS0"})
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(GUEST_TIMEOUT_S)
        sock.connect(str(sock_path))
        start_ns = time.monotonic_ns()
        status, answer = http_exchange(sock, "PUT", "/actions", {"action_type": "InstanceStart"})
        run.start_response_ms = (time.monotonic_ns() - start_ns) / 1e6
    if status != 204:
        raise ApiBenchError(f"PUT /actions InstanceStart: HTTP {status} {answer[:300].decode(errors='replace')}")
    _await_serial(run, serial, start_ns)
    timer = log.wait_for(lambda line: BOOT_TIMER_LINE.search(line) is not None, GUEST_TIMEOUT_S)
    if timer is None:
        raise ApiBenchError(f"no `Guest-boot-time` line in the VMM's log within {GUEST_TIMEOUT_S:.0f} s "
                            "of InstanceStart (started with --boot-timer)")
    run.boot_timer_ms = (timer[0] - start_ns) / 1e6
    run.reported_boot_ms = int(BOOT_TIMER_LINE.search(timer[1]).group(1)) / 1000


def _drive_qemu(run: Run, process, serial: OutputWatch, sock_path: Path, started_ns: int) -> None:
    with connect_when_ready(sock_path, process, SOCKET_TIMEOUT_S) as sock:
        sock.settimeout(SOCKET_TIMEOUT_S)
        qmp = QmpChannel(sock)
        greeting = qmp.message()
        if "QMP" not in greeting:
            raise ApiBenchError(f"QMP: expected the greeting, got {greeting}")
        qmp.execute("qmp_capabilities")
        ready_ns = time.monotonic_ns()
        run.socket_cpu_ms = process_cpu_ms(process.pid)
        run.socket_wall_ms = (ready_ns - started_ns) / 1e6

        start_ns = time.monotonic_ns()
        qmp.execute("cont")
        run.start_response_ms = (time.monotonic_ns() - start_ns) / 1e6
        _await_serial(run, serial, start_ns)


def _await_serial(run: Run, serial: OutputWatch, start_ns: int) -> None:
    found = serial.wait_for(lambda line: GUEST_LINE in line, GUEST_TIMEOUT_S)
    if found is None:
        raise ApiBenchError(f"guest line {boot.GUEST_LINE!r} not on the VMM's stdout "
                            f"within {GUEST_TIMEOUT_S:.0f} s of starting it")
    run.serial_ms = (found[0] - start_ns) / 1e6


def _stop(process: subprocess.Popen) -> None:
    """Let the VMM end as the guest asked; kill it if it does not."""
    try:
        process.wait(timeout=EXIT_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --------------------------------------------------------------------------- report


SOCKET_METRICS = ("socket_wall_ms", "socket_cpu_ms")
START_METRICS = ("boot_timer_ms", "serial_ms", "start_response_ms", "reported_boot_ms")
RATIO_METRICS = ("socket_wall_ms", "socket_cpu_ms", "boot_timer_ms", "serial_ms")


def p90(values: list[float]) -> float | None:
    """90th percentile, interpolated between the closest ranks; the value itself for one run."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[8]


@dataclass
class VmmResult:
    name: str
    unavailable: str | None = None
    runs: list[Run] = field(default_factory=list)

    def good(self) -> list[Run]:
        return [run for run in self.runs if run.ok]

    def values(self, metric: str) -> list[float]:
        return [getattr(run, metric) for run in self.good() if getattr(run, metric) is not None]

    def median(self, metric: str) -> float | None:
        return tools.median(self.values(metric))

    def p90(self, metric: str) -> float | None:
        return p90(self.values(metric))

    def first_problem(self) -> str | None:
        if self.unavailable:
            return self.unavailable
        for run in self.runs:
            if not run.ok:
                tail = run.output_tail.strip()
                return run.problem + (f"; output ends:\n{tail}" if tail else "")
        return None


def ratios(results: dict[str, VmmResult]) -> dict[str, dict[str, float | None]]:
    if "pyrite" not in results:
        return {}
    pyrite = results["pyrite"]
    return {f"pyrite/{ref}": {metric: tools.ratio(pyrite.median(metric), results[ref].median(metric))
                              for metric in RATIO_METRICS}
            for ref in REFERENCES if ref in results}


SOCKET_TARGET_MS = 30.0


def socket_target(results: dict[str, VmmResult]) -> str | None:
    """The issue's target for pyrite: socket ready in <= 30 ms wall and no slower than QEMU."""
    if "pyrite" not in results:
        return None
    wall = results["pyrite"].median("socket_wall_ms")
    if wall is None:
        return "target (<= 30 ms wall, <= QEMU): not measured, pyrite failed"
    verdicts = [f"{wall:.1f} ms {'<=' if wall <= SOCKET_TARGET_MS else '>'} 30 ms"]
    qemu = results["qemu"].median("socket_wall_ms") if "qemu" in results else None
    if qemu is not None:
        verdicts.append(f"{'<=' if wall <= qemu else '>'} QEMU's {qemu:.1f} ms")
    met = wall <= SOCKET_TARGET_MS and (qemu is None or wall <= qemu)
    return f"target (<= 30 ms wall, <= QEMU): {'MET' if met else 'NOT MET'} ({', '.join(verdicts)})"


def format_report(results: dict[str, VmmResult], runs: int, image: Path) -> str:
    lines = [f"tiny PVH guest ({image.stat().st_size} bytes), {boot.MEM_MIB} MiB, 1 vCPU; "
             f"median and p90 of {runs} interleaved runs", "",
             "1. Socket ready: spawn -> socket answers (API: GET / 200; QEMU: QMP greeting + qmp_capabilities)",
             f"{'VMM':<12} {'wall ms':>9} {'p90':>8} {'CPU ms':>8} {'p90':>8} {'runs ok':>8}"]
    for result in results.values():
        ok = f"{len(result.good())}/{len(result.runs) or runs}"
        lines.append(f"{result.name:<12} {tools.cell(result.median('socket_wall_ms'), 9)} "
                     f"{tools.cell(result.p90('socket_wall_ms'), 8)} {tools.cell(result.median('socket_cpu_ms'), 8)} "
                     f"{tools.cell(result.p90('socket_cpu_ms'), 8)} {ok:>8}")
    table = ratios(results)
    if table:
        lines += ["", f"{'ratio':<20} {'wall':>7} {'CPU':>7}"]
        for name, values in table.items():
            lines.append(f"{name:<20} {tools.cell(values['socket_wall_ms'], 7, 2)} {tools.cell(values['socket_cpu_ms'], 7, 2)}")
    target = socket_target(results)
    if target:
        lines.append(target)

    lines += ["", "2. InstanceStart -> guest, client side (QEMU: QMP cont; its VM was built before the socket "
              "was ready)",
              f"{'VMM':<12} {'boot timer ms':>14} {'p90':>7} {'serial ms':>10} {'p90':>7} "
              f"{'reply ms':>9} {'own timer ms':>13}"]
    for result in results.values():
        lines.append(f"{result.name:<12} {tools.cell(result.median('boot_timer_ms'), 14)} "
                     f"{tools.cell(result.p90('boot_timer_ms'), 7)} {tools.cell(result.median('serial_ms'), 10)} "
                     f"{tools.cell(result.p90('serial_ms'), 7)} {tools.cell(result.median('start_response_ms'), 9)} "
                     f"{tools.cell(result.median('reported_boot_ms'), 13)}")
    if table:
        lines += ["", f"{'ratio':<20} {'boot timer':>11} {'serial':>7}"]
        for name, values in table.items():
            lines.append(f"{name:<20} {tools.cell(values['boot_timer_ms'], 11, 2)} {tools.cell(values['serial_ms'], 7, 2)}")
    lines.append("'own timer' is the VMM's Guest-boot-time figure; both count from InstanceStart "
                 "(Firecracker from the start of its build).")
    for result in results.values():
        problem = result.first_problem()
        if problem:
            failed = len(result.runs) - len(result.good())
            count = f"{failed}/{len(result.runs)} runs failed" if result.runs else "not run"
            lines += ["", f"{result.name}: FAILED ({count}): {problem}"]
    return "\n".join(lines)


def report_json(results: dict[str, VmmResult], runs: int, image: Path) -> dict:
    metrics = SOCKET_METRICS + START_METRICS
    return {
        "guest": str(image),
        "mem_mib": boot.MEM_MIB,
        "runs_per_vmm": runs,
        "vmms": {name: {
            "unavailable": result.unavailable,
            "runs_ok": len(result.good()),
            "median": {metric: result.median(metric) for metric in metrics},
            "p90": {metric: result.p90(metric) for metric in metrics},
            "runs": [asdict(run) for run in result.runs],
        } for name, result in results.items()},
        "ratios": ratios(results),
        "socket_target": socket_target(results),
    }


# --------------------------------------------------------------------------- main


def _prepare(names: list[str]) -> tuple[dict[str, Vmm], dict[str, VmmResult]]:
    makers = {"pyrite": pyrite_vmm, "firecracker": firecracker_vmm, "qemu": qemu_vmm,
              "pyrite-no-seccomp": lambda: pyrite_vmm("pyrite-no-seccomp", ("--no-seccomp",))}
    vmms: dict[str, Vmm] = {}
    results: dict[str, VmmResult] = {}
    for name in names:
        results[name] = VmmResult(name)
        try:
            vmms[name] = makers[name]()
        except (refs.RefError, OSError) as e:
            results[name].unavailable = str(e)
    return vmms, results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="measured runs per VMM (default 10)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first (default 1)")
    parser.add_argument("--vmms", default=",".join(VMM_ORDER),
                        help=f"comma-separated subset of {','.join(VMM_ORDER + OPTIONAL_VMMS)}")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    names = [name for name in args.vmms.split(",") if name]
    unknown = sorted(set(names) - set(VMM_ORDER) - set(OPTIONAL_VMMS))
    if unknown or not names or args.runs < 1 or args.warmup < 0:
        parser.error(f"--vmms takes names from {', '.join(VMM_ORDER + OPTIONAL_VMMS)} (got {args.vmms!r}); "
                     "--runs >= 1; --warmup >= 0")

    try:
        image = boot.build_tiny_pvh()
        if any(name.startswith("pyrite") for name in names):
            tools.compile_pyrite_bytecode()
    except (tools.BuildError, ApiBenchError) as e:
        print(f"api.py: {e}", file=sys.stderr)
        return 1

    workdir = Path(tempfile.mkdtemp(prefix="pyrite-bench-api-"))
    try:
        vmms, results = _prepare(names)
        for round_index in range(args.warmup + args.runs):
            for name, vmm in vmms.items():
                run = run_once(vmm, image, workdir, round_index)
                if round_index >= args.warmup:
                    results[name].runs.append(run)
            if not args.json:
                print(f"\rround {round_index + 1}/{args.warmup + args.runs}", end="", file=sys.stderr,
                      flush=True)
        if not args.json:
            print(file=sys.stderr)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    if args.json:
        print(json.dumps(report_json(results, args.runs, image), indent=2))
    else:
        print(format_report(results, args.runs, image))
    # Success means every reference ran; pyrite's failure is reported above, not fatal here.
    return 0 if all(results[name].good() for name in names if not name.startswith("pyrite")) else 1


if __name__ == "__main__":
    sys.exit(main())
