"""Shared pieces of the benchmarks: cached builds with the host's gcc, whole-process
measurement (wall time, CPU time, peak RSS) of a command, and a CPU load on every core."""

from __future__ import annotations

import hashlib
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_CACHE = REPO_ROOT / ".cache" / "bench"
SPAWN_RUSAGE_SOURCE = Path(__file__).resolve().parent / "spawn_rusage.c"


class BuildError(RuntimeError):
    """A benchmark artefact (guest image, helper) did not build."""


VENV_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"


def compile_pyrite_bytecode() -> None:
    """Start-up time is boot time: with PYTHONDONTWRITEBYTECODE=1 (set on our machines) stale or
    missing .pyc files would make every pyrite start compile from source. compileall writes them
    regardless of that variable."""
    done = subprocess.run([str(VENV_PYTHON), "-m", "compileall", "-q", str(REPO_ROOT / "src")],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildError(f"{VENV_PYTHON} -m compileall src failed (exit {done.returncode}): "
                         f"{(done.stdout + done.stderr).strip()[-800:]}")


class MeasurementError(RuntimeError):
    """A command could not be measured."""


@dataclass(frozen=True)
class Measurement:
    """One whole-process run of a command, as wait4() reports it."""
    wall_ms: float
    user_ms: float
    sys_ms: float
    peak_rss_mib: float
    exit_status: int | None   # None when the process ended by a signal
    signal: int               # 0 when it exited
    timed_out: bool

    @property
    def cpu_ms(self) -> float:
        return self.user_ms + self.sys_ms


_MEASUREMENT_FIELDS = ("wall_ns", "user_us", "sys_us", "maxrss_kib", "exit", "signal", "timed_out")


def parse_measurement(line: str) -> Measurement:
    """Parse the `key=value ...` line that spawn_rusage prints."""
    fields: dict[str, int] = {}
    for item in line.split():
        key, sep, value = item.partition("=")
        if not sep:
            raise MeasurementError(f"spawn_rusage output {line!r}: {item!r} is not key=value")
        try:
            fields[key] = int(value)
        except ValueError:
            raise MeasurementError(f"spawn_rusage output {line!r}: {key} is not an integer") from None
    missing = [key for key in _MEASUREMENT_FIELDS if key not in fields]
    if missing:
        raise MeasurementError(f"spawn_rusage output {line!r}: missing {', '.join(missing)}")
    return Measurement(
        wall_ms=fields["wall_ns"] / 1e6,
        user_ms=fields["user_us"] / 1e3,
        sys_ms=fields["sys_us"] / 1e3,
        peak_rss_mib=fields["maxrss_kib"] / 1024,
        exit_status=None if fields["exit"] < 0 else fields["exit"],
        signal=fields["signal"],
        timed_out=bool(fields["timed_out"]),
    )


def median(values: Sequence[float]) -> float | None:
    """The median, or None for no values (a VMM whose every run failed)."""
    return statistics.median(values) if values else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def cell(value: float | None, width: int, decimals: int = 1) -> str:
    """A report table's cell: the number right-aligned in `width`, or "n/a" for None."""
    return f"{'n/a':>{width}}" if value is None else f"{value:{width}.{decimals}f}"


def cached_build(name: str, suffix: str, sources: Sequence[Path],
                 build: Callable[[Path], list[list[str]]], cache: Path = BENCH_CACHE) -> Path:
    """Build `name` once per content of its sources and build commands.

    `build(output)` returns the commands that write `output`; they run in a
    scratch directory and the result is renamed into the cache when all succeed.
    """
    scratch_output = Path("OUTPUT")
    commands = build(scratch_output)
    key = hashlib.sha256()
    for source in sources:
        key.update(source.read_bytes())
    key.update(repr(commands).encode())
    target = cache / f"{name}-{key.hexdigest()[:16]}{suffix}"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    workdir = cache / f".build-{name}-{os.getpid()}"
    workdir.mkdir(exist_ok=True)
    try:
        for command in commands:
            try:
                done = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
            except FileNotFoundError:
                raise BuildError(f"building {name}: {command[0]} not found "
                                 "(the Debian packages gcc and binutils provide it)") from None
            if done.returncode != 0:
                raise BuildError(f"building {name}: `{' '.join(command)}` failed "
                                 f"(exit {done.returncode}):\n{done.stderr.strip()}")
        (workdir / scratch_output).rename(target)
    finally:
        for leftover in workdir.iterdir():
            leftover.unlink()
        workdir.rmdir()
    return target


def spawn_rusage_binary(cache: Path = BENCH_CACHE) -> Path:
    """The measuring helper, compiled from spawn_rusage.c."""
    return cached_build(
        "spawn_rusage", "", [SPAWN_RUSAGE_SOURCE],
        lambda out: [["gcc", "-O2", "-Wall", "-o", str(out), str(SPAWN_RUSAGE_SOURCE)]],
        cache)


def measure(command: Sequence[str], output: Path, timeout_s: int, helper: Path) -> Measurement:
    """Run `command` to its end (stdout and stderr into `output`) and measure it."""
    done = subprocess.run([str(helper), str(timeout_s), str(output), *command],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise MeasurementError(f"cannot run {command[0]}: {done.stderr.strip()}")
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise MeasurementError(f"{helper} printed nothing for {command[0]}")
    return parse_measurement(lines[-1])


# The busy loop of one load process: bounded by its own deadline, so that a benchmark killed
# before it could stop its load leaves nothing spinning for long.
_BUSY_LOOP = ("import sys, time\n"
              "end = time.monotonic() + float(sys.argv[1])\n"
              "while time.monotonic() < end:\n"
              "    for _ in range(10000): pass\n")


class CpuLoad:
    """Every host core busy: one busy-loop process per core (os.cpu_count() by default), at
    the VMMs' own priority, as a compile job beside them would be. A context manager: the
    processes start on entry and are always stopped on exit; each also ends by itself after
    `max_seconds`."""

    def __init__(self, processes: int | None = None, max_seconds: float = 3600.0,
                 python: str | os.PathLike | None = None):
        self.processes = processes if processes is not None else (os.cpu_count() or 1)
        self.max_seconds = max_seconds
        self.python = os.fspath(python) if python is not None else sys.executable
        self.children: list[subprocess.Popen] = []

    def __enter__(self) -> CpuLoad:
        try:
            for _ in range(self.processes):
                self.children.append(subprocess.Popen(
                    [self.python, "-c", _BUSY_LOOP, str(self.max_seconds)],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True))
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def running(self) -> int:
        return sum(child.poll() is None for child in self.children)

    def stop(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.kill()
        for child in self.children:
            child.wait()
        self.children.clear()
