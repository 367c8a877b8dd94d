#!/usr/bin/env python3
"""Unikernel benchmark: image size, time to first output and to exit, and CPL-3 speed.

1. Size of hello world (tests/guests/hello.c) built by `pyrite unikernel build`:
   the bytes loaded into the guest (target: 32 KiB or less) and the file, which adds
   the symbol table kept for crash reports.
2. The same hello image booted by `pyrite run`, by QEMU (-M microvm -kernel,
   isa-debug-exit) and, when it can be fetched, by the real Firecracker: time from
   spawning the VMM to the first byte of the guest's output on the VMM's stdout, and to
   the VMM's exit. Runs are interleaved (pyrite, qemu, firecracker, pyrite, ...); medians.
3. A CPU-bound loop of 10^8 iterations (tests/guests/spin.c) at CPL 3 under pyrite
   against the same C file compiled as a host program (target: within 10%). The loop's
   own time is read from the TSC inside each, so start-up costs do not blur it; the
   whole-process wall time is shown beside it.
4. Floating-point and string work (tests/guests/fp_bench.c: libm, printf %.17g, strtod,
   memcpy/strlen/strcmp) under pyrite against the same file on the host, built with the
   same musl (tests/guests/host/musl_start.c: what the library OS costs) and with the
   host's glibc (what the C library costs); TSC cycles of the loop, as for 3.

    .venv/bin/python benchmarks/unikernel.py [--runs N] [--iterations N] [--vmms pyrite,qemu,firecracker]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import refs, tools  # noqa: E402
from pyrite.unikernel.build import APP_CFLAGS, include_flags  # noqa: E402
from pyrite.unikernel.image_info import read_image_info  # noqa: E402
from pyrite.unikernel.musl import musl_build  # noqa: E402

REPO = tools.REPO_ROOT
GUESTS = REPO / "tests" / "guests"
PYRITE = REPO / ".venv" / "bin" / "pyrite"
HELLO_LINE = b"hello from pyrite\n"
SIZE_TARGET = 32 * 1024
SPIN_TARGET = 1.10
MEM_MIB = 128
QEMU_ARGS = ["-M", "microvm,x-option-roms=off,isa-serial=on,rtc=off", "-enable-kvm",
             "-cpu", "host,-arch-capabilities", "-m", f"{MEM_MIB}M", "-nodefaults", "-no-user-config",
             "-nographic", "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]


class BenchError(RuntimeError):
    pass


@dataclass
class Timing:
    first_byte_ms: float | None
    exit_ms: float
    status: int
    output: bytes


@dataclass
class Series:
    name: str
    command: list[str]
    expected_status: int
    runs: list[Timing] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def ok(self, t: Timing) -> bool:
        return t.status == self.expected_status and HELLO_LINE in t.output

    def good(self) -> list[Timing]:
        return [t for t in self.runs if self.ok(t)]

    def median(self, what: str) -> float | None:
        return tools.median([getattr(t, what) for t in self.good() if getattr(t, what) is not None])


def timed_run(command: list[str], timeout_s: float = 60) -> Timing:
    """Spawn `command`; time its first stdout byte and its exit, from just before the spawn."""
    start = time.perf_counter_ns()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    killer = threading.Timer(timeout_s, proc.kill)
    killer.start()
    first = None
    chunks = []
    try:
        fd = proc.stdout.fileno()
        while True:
            data = os.read(fd, 65536)
            if not data:
                break
            if first is None:
                first = time.perf_counter_ns()
            chunks.append(data)
        status = proc.wait()
        end = time.perf_counter_ns()
    finally:
        killer.cancel()
        proc.stdout.close()
    return Timing(None if first is None else (first - start) / 1e6, (end - start) / 1e6, status, b"".join(chunks))


def build_images(workdir: Path) -> dict[str, Path]:
    images = {}
    for name in ("hello", "spin"):
        image = workdir / f"{name}.img"
        done = subprocess.run([str(PYRITE), "unikernel", "build", str(GUESTS / f"{name}.c"), "-o", str(image)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise BenchError(f"pyrite unikernel build {name}.c failed:\n{done.stderr}")
        images[name] = image
    image = workdir / "fp_bench.img"
    done = subprocess.run([str(PYRITE), "unikernel", "build", str(GUESTS / "fp_bench.c"), "-o", str(image)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"pyrite unikernel build fp_bench.c failed:\n{done.stderr}")
    images["fp_bench"] = image
    musl = musl_build()
    # The guest's code generation flags that matter for these loops: -O2, no PIC, no red zone.
    host_builds = {
        "spin.host": ["gcc", "-O2", "-fno-pie", "-no-pie", "-mno-red-zone", str(GUESTS / "spin.c")],
        "fp_bench.glibc": ["gcc", "-O2", "-fno-pie", "-no-pie", "-mno-red-zone", str(GUESTS / "fp_bench.c"), "-lm"],
        "fp_bench.musl": ["gcc", *APP_CFLAGS, *include_flags(musl), "-static", "-nostdlib", "-no-pie",
                          str(GUESTS / "fp_bench.c"), str(GUESTS / "host" / "musl_start.c"),
                          str(musl / "lib" / "libc.a"), "-lgcc"],
    }
    for name, command in host_builds.items():
        done = subprocess.run([*command, "-o", str(workdir / name)], capture_output=True, text=True)
        if done.returncode != 0:
            raise BenchError(f"host build {name} failed:\n{done.stderr}")
        images[name] = workdir / name
    return images


def boot_series(names: list[str], image: Path, workdir: Path) -> tuple[dict[str, Series], dict[str, str]]:
    series: dict[str, Series] = {}
    unavailable: dict[str, str] = {}
    for name in names:
        try:
            if name == "pyrite":
                series[name] = Series(name, [str(PYRITE), "run", str(image), "--quiet"], 0)
            elif name == "qemu":
                series[name] = Series(name, [str(refs.qemu_binary()), *QEMU_ARGS, "-kernel", str(image)], 1)
            elif name == "firecracker":
                config = workdir / "firecracker.json"
                config.write_text(json.dumps({
                    "boot-source": {"kernel_image_path": str(image), "boot_args": ""},
                    "machine-config": {"vcpu_count": 1, "mem_size_mib": MEM_MIB}, "drives": []}))
                series[name] = Series(name, [str(refs.firecracker_binary()), "--no-api", "--config-file",
                                             str(config), "--level", "Error"], 0)
        except (refs.RefError, OSError) as e:
            unavailable[name] = str(e)
    return series, unavailable


def spin_cycles(output: bytes) -> int:
    for word in output.split():
        if word.startswith(b"cycles="):
            return int(word[7:])
    raise BenchError(f"spin printed no cycles=: {output[-300:]!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="measured boots per VMM (default 10)")
    parser.add_argument("--spin-runs", type=int, default=5, help="runs of the loop on each side (default 5)")
    parser.add_argument("--iterations", type=int, default=100_000_000, help="loop iterations (default 10^8)")
    parser.add_argument("--vmms", default="pyrite,qemu,firecracker", help="boot comparison: which VMMs")
    args = parser.parse_args(argv)
    if not PYRITE.exists():
        print(f"unikernel.py: {PYRITE} missing; `make setup` installs pyrite", file=sys.stderr)
        return 1
    tools.compile_pyrite_bytecode()

    with tempfile.TemporaryDirectory(prefix="pyrite-unikernel-bench-") as tmp:
        workdir = Path(tmp)
        try:
            images = build_images(workdir)
        except BenchError as e:
            print(f"unikernel.py: {e}", file=sys.stderr)
            return 1
        hello_size = images["hello"].stat().st_size
        hello_loaded = read_image_info(images["hello"]).loaded_size

        names = [n for n in args.vmms.split(",") if n]
        series, unavailable = boot_series(names, images["hello"], workdir)
        for round_index in range(1 + args.runs):             # round 0 warms the caches
            for s in series.values():
                timing = timed_run(s.command)
                if round_index:
                    s.runs.append(timing)
                    if not s.ok(timing):
                        s.problems.append(f"status {timing.status}, output {timing.output[-200:]!r}")
            print(f"\rboot round {round_index + 1}/{1 + args.runs}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)

        guest_cycles, host_cycles, guest_wall, host_wall = [], [], [], []
        pyrite_spin = [str(PYRITE), "run", str(images["spin"]), str(args.iterations), "--quiet"]
        host_spin = [str(images["spin.host"]), str(args.iterations)]
        for round_index in range(1 + args.spin_runs):
            g, h = timed_run(pyrite_spin), timed_run(host_spin)
            if round_index:
                guest_cycles.append(spin_cycles(g.output))
                host_cycles.append(spin_cycles(h.output))
                guest_wall.append(g.exit_ms)
                host_wall.append(h.exit_ms)
            print(f"\rspin round {round_index + 1}/{1 + args.spin_runs}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)

        fp_commands = {"pyrite (guest CPL 3)": [str(PYRITE), "run", str(images["fp_bench"]), "--quiet"],
                       "host, same musl": [str(images["fp_bench.musl"])],
                       "host, glibc": [str(images["fp_bench.glibc"])]}
        fp_cycles: dict[str, list[int]] = {name: [] for name in fp_commands}
        for round_index in range(1 + args.spin_runs):
            for name, command in fp_commands.items():
                t = timed_run(command)
                if round_index:
                    fp_cycles[name].append(spin_cycles(t.output))
            print(f"\rfp round {round_index + 1}/{1 + args.spin_runs}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)

    lines = [f"hello world image: {hello_loaded} bytes loaded ({hello_loaded / 1024:.1f} KiB), target <= 32 KiB: "
             f"{'met' if hello_loaded <= SIZE_TARGET else 'MISSED'}; file {hello_size} bytes with the symbol table",
             "",
             f"hello world, spawn to first output byte and to exit, median of {args.runs} interleaved runs:",
             f"{'VMM':<26} {'first byte ms':>14} {'exit ms':>9} {'runs ok':>8}"]
    for s in series.values():
        lines.append(f"{s.name:<26} {tools.cell(s.median('first_byte_ms'), 14)} {tools.cell(s.median('exit_ms'), 9)} "
                     f"{len(s.good())}/{len(s.runs):>2}")
    if "pyrite" in series:
        for ref in ("qemu", "firecracker"):
            if ref in series:
                first = tools.ratio(series["pyrite"].median("first_byte_ms"), series[ref].median("first_byte_ms"))
                end = tools.ratio(series["pyrite"].median("exit_ms"), series[ref].median("exit_ms"))
                lines.append(f"{'ratio pyrite/' + ref:<26} {tools.cell(first, 14, 2)} {tools.cell(end, 9, 2)}")
    for name, why in unavailable.items():
        lines.append(f"{name}: not run: {why}")
    for s in series.values():
        if s.problems:
            lines.append(f"{s.name}: {len(s.problems)} runs failed, first: {s.problems[0]}")

    g_cyc, h_cyc = tools.median(guest_cycles), tools.median(host_cycles)
    loop_ratio = tools.ratio(g_cyc, h_cyc)
    lines += ["",
              f"CPU-bound loop, {args.iterations:.0e} iterations, median of {args.spin_runs} interleaved runs:",
              f"{'':<22} {'loop Mcycles':>13} {'cycles/iter':>12} {'process ms':>11}",
              f"{'pyrite (guest CPL 3)':<22} {g_cyc / 1e6:13.1f} {g_cyc / args.iterations:12.3f} "
              f"{tools.cell(tools.median(guest_wall), 11)}",
              f"{'host program':<22} {h_cyc / 1e6:13.1f} {h_cyc / args.iterations:12.3f} "
              f"{tools.cell(tools.median(host_wall), 11)}",
              f"{'pyrite/host':<22} {tools.cell(loop_ratio, 13, 3)} {'':>12} "
              f"{tools.cell(tools.ratio(tools.median(guest_wall), tools.median(host_wall)), 11, 2)}",
              f"loop target within 10% of the host: {'met' if loop_ratio and loop_ratio <= SPIN_TARGET else 'MISSED'}"]
    # Best of N beside the median: on a shared, loaded machine the minimum is the run that
    # was least disturbed, and the same code on both sides should then take the same time.
    fp_best = {name: min(c) for name, c in fp_cycles.items()}
    lines += ["", f"floating point and strings (fp_bench.c), {args.spin_runs} interleaved runs:",
              f"{'':<22} {'best Mcycles':>13} {'median':>9} {'pyrite/this (best)':>19}"]
    for name, cycles in fp_cycles.items():
        lines.append(f"{name:<22} {fp_best[name] / 1e6:13.1f} {tools.median(cycles) / 1e6:9.1f} "
                     f"{tools.cell(tools.ratio(fp_best['pyrite (guest CPL 3)'], fp_best[name]), 19, 3)}")
    print("\n".join(lines))
    return 0 if all(s.good() for s in series.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
