#!/usr/bin/env python3
"""Python unikernel benchmark: image size, spawn to first output, and MicroPython's perf_bench.

1. Size of a hello world Python image (`pyrite unikernel build hello.py`) with every module
   of the port built in (target: 512 KiB or less), beside the C hello world's.
2. Spawn of `pyrite run` to the first byte of output: the Python hello world against the C
   hello world (tests/guests/hello.c), interleaved runs, medians (target: ratio <= 1.1).
3. MicroPython's own benchmarks (tests/perf_bench, run by its tests/run-perfbench.py) in the
   REPL image at CPL 3 against the host unix port built with the same options
   (pyrite.unikernel.micropython.build.unix_reference); each benchmark times itself inside
   the interpreter, so start-up and the serial console do not count; host and guest runs
   alternate and the fastest of each side counts. Ratio = host time /
   guest time (target: >= 0.95).

    .venv/bin/python benchmarks/micropython.py [--runs N] [--perf-n N] [--perf-m M] [--rounds R]
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import tools  # noqa: E402
from benchmarks.unikernel import HELLO_LINE, timed_run  # noqa: E402

REPO = tools.REPO_ROOT
PYRITE = REPO / ".venv" / "bin" / "pyrite"
SIZE_TARGET = 512 * 1024
SPAWN_TARGET = 1.10
PERF_TARGET = 0.95
HELLO_PY = 'print("hello from pyrite")\n'


class BenchError(RuntimeError):
    pass


def build(workdir: Path) -> dict[str, Path]:
    (workdir / "hello.py").write_text(HELLO_PY)
    images = {}
    for name, src in (("python", workdir / "hello.py"), ("c", REPO / "tests" / "guests" / "hello.c")):
        image = workdir / f"hello-{name}.img"
        done = subprocess.run([str(PYRITE), "unikernel", "build", str(src), "-o", str(image)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise BenchError(f"pyrite unikernel build {src.name} failed:\n{done.stderr}")
        images[name] = image
    return images


def spawn_to_first_output(images: dict[str, Path], runs: int) -> dict[str, list[float]]:
    firsts: dict[str, list[float]] = {name: [] for name in images}
    for round_index in range(1 + runs):                  # round 0 warms the caches
        for name, image in images.items():
            t = timed_run([str(PYRITE), "run", str(image), "--quiet"])
            if t.status != 0 or HELLO_LINE not in t.output:
                raise BenchError(f"{name} hello: status {t.status}, output {t.output[-200:]!r}")
            if round_index:
                firsts[name].append(t.first_byte_ms)
        print(f"\rspawn round {round_index + 1}/{1 + runs}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return firsts


def perfbench(target_args: list[str], env: dict, n: int, m: int, bench: str, tree: Path) -> float | None:
    """Microseconds of one run of perf_bench/<bench> (None: skipped or failed), by MicroPython's
    run-perfbench.py (the benchmark times itself inside the interpreter)."""
    done = subprocess.run([sys.executable, "run-perfbench.py", "-a", "1", *target_args, str(n), str(m),
                           f"perf_bench/{bench}"], cwd=tree / "tests", capture_output=True, text=True, env=env,
                          timeout=600)
    for line in done.stdout.splitlines():
        name, sep, rest = line.partition(": ")
        words = rest.split()
        if sep and name == f"perf_bench/{bench}" and words:
            try:
                return float(words[0])
            except ValueError:
                return None
    raise BenchError(f"run-perfbench.py {' '.join(target_args)} {bench}: no result:\n"
                     f"{done.stdout[-2000:]}{done.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="spawn measurements per image (default 10)")
    parser.add_argument("--perf-n", type=int, default=1000, help="run-perfbench.py N (default 1000, as for a PC)")
    parser.add_argument("--perf-m", type=int, default=1000, help="run-perfbench.py M (default 1000)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved runs of each benchmark per side; the fastest counts (default 3)")
    parser.add_argument("--skip-perf", action="store_true", help="leave out perf_bench")
    args = parser.parse_args(argv)
    if not PYRITE.exists():
        print(f"micropython.py: {PYRITE} missing; `make setup` installs pyrite", file=sys.stderr)
        return 1
    tools.compile_pyrite_bytecode()
    from pyrite.unikernel.micropython import build as mpbuild, source

    with tempfile.TemporaryDirectory(prefix="pyrite-micropython-bench-") as tmp:
        try:
            images = build(Path(tmp))
            firsts = spawn_to_first_output(images, args.runs)
        except BenchError as e:
            print(f"micropython.py: {e}", file=sys.stderr)
            return 1
        from pyrite.unikernel.image_info import read_image_info
        sizes = {name: image.stat().st_size for name, image in images.items()}
        loaded = {name: read_image_info(image).loaded_size for name, image in images.items()}

    py_first, c_first = tools.median(firsts["python"]), tools.median(firsts["c"])
    spawn_ratio = py_first / c_first
    lines = [f"Python hello world image: {sizes['python']} bytes ({sizes['python'] / 1024:.1f} KiB; "
             f"{loaded['python'] / 1024:.1f} KiB loaded); target <= 512 KiB: "
             f"{'met' if sizes['python'] <= SIZE_TARGET else 'MISSED'} "
             f"(C hello world: {sizes['c'] / 1024:.1f} KiB, {loaded['c'] / 1024:.1f} KiB loaded)",
             f"spawn to first output, median of {args.runs}: Python {py_first:.1f} ms, C {c_first:.1f} ms, "
             f"ratio {spawn_ratio:.2f}; target <= {SPAWN_TARGET}: {'met' if spawn_ratio <= SPAWN_TARGET else 'MISSED'}"]

    if not args.skip_perf:
        tree = source.source_tree()
        env = dict(os.environ, MICROPY_MICROPYTHON=str(mpbuild.unix_reference()))
        repl = mpbuild.repl_image()
        benches = sorted(p.name for p in (tree / "tests" / "perf_bench").glob("*.py") if p.name != "benchrun.py")
        targets = {"host": [], "pyrite": ["-p", "-d", f"exec:{PYRITE} run --quiet {repl}"]}
        host: dict[str, float] = {}
        guest: dict[str, float] = {}
        # Host and guest alternate, benchmark by benchmark: a busy machine slows both alike, and
        # the fastest of the rounds is the one least disturbed.
        for i, bench in enumerate(benches):
            for _ in range(args.rounds):
                for side, times in (("host", host), ("pyrite", guest)):
                    t = perfbench(targets[side], env, args.perf_n, args.perf_m, bench, tree)
                    if t is not None:
                        times[bench] = min(t, times.get(bench, t))
            print(f"\rperf_bench {i + 1}/{len(benches)}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        lines += ["", f"MicroPython perf_bench (N={args.perf_n} M={args.perf_m}, fastest of {args.rounds} "
                  "interleaved runs), ratio = host unix time / pyrite time:",
                  f"{'benchmark':<28} {'host us':>12} {'pyrite us':>12} {'ratio':>7}"]
        ratios = []
        for name in sorted(host):
            if name in guest:
                ratio = host[name] / guest[name]
                ratios.append(ratio)
                lines.append(f"{name:<28} {host[name]:>12.0f} {guest[name]:>12.0f} {ratio:>7.3f}")
            else:
                lines.append(f"{name:<28} {host[name]:>12.0f} {'failed':>12}")
        if ratios:
            geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
            lines.append(f"geometric mean ratio {geo:.3f} over {len(ratios)} benchmarks; target >= {PERF_TARGET}: "
                         f"{'met' if geo >= PERF_TARGET else 'MISSED'}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
