#!/usr/bin/env python3
"""Jailer benchmark: spawn the jailer -> the jailed VMM's API socket answers, inside the jail.

Three set-ups with the same jailer command line (--id, --exec-file, --uid/--gid 123,
--chroot-base-dir, --cgroup cpu.shares=100 when cgroup v1 has a cpu hierarchy):

    pyrite      pyrite-jailer around pyrite-vmm (preload, jail, the VMM in the same process)
    firecracker Firecracker's jailer v1.12.1 around Firecracker v1.12.1
    pyrite-fc   pyrite-jailer around Firecracker (the jailer's own cost, the VMM being the same)

Per run: from just before the spawn until `GET /` on <jail>/run/firecracker.socket returns 200;
the CPU time of the process at that moment (jailer and VMM are one process: exec or in-process)
and its resident memory. Runs are interleaved; medians and the ratios to Firecracker printed.

    .venv/bin/python benchmarks/jailer.py [--runs N] [--warmup N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import refs, tools  # noqa: E402
from benchmarks.api import ApiBenchError, connect_when_ready, http_exchange, process_cpu_ms  # noqa: E402

PYRITE_JAILER = tools.REPO_ROOT / ".venv" / "bin" / "pyrite-jailer"
PYRITE_VMM = tools.REPO_ROOT / ".venv" / "bin" / "pyrite-vmm"
UID = GID = 123
SOCKET_TIMEOUT_S = 20.0
CPU_CGROUP = Path("/sys/fs/cgroup/cpu")
BENCH_PARENT_CGROUP = "pyrite-jailer-bench"


@dataclass
class Run:
    ok: bool
    wall_ms: float | None = None
    cpu_ms: float | None = None
    rss_mib: float | None = None
    problem: str = ""


def setups() -> dict[str, tuple[Path, Path]]:
    """name -> (jailer, exec file)."""
    return {"pyrite": (PYRITE_JAILER, PYRITE_VMM),
            "firecracker": (refs.jailer_binary(), refs.firecracker_binary()),
            "pyrite-fc": (PYRITE_JAILER, refs.firecracker_binary())}


def run_once(jailer: Path, exec_file: Path, base: Path, index: int) -> Run:
    jail_id = f"bench-{index}"
    root = base / exec_file.name / jail_id / "root"
    command = [str(jailer), "--id", jail_id, "--exec-file", str(exec_file), "--uid", str(UID), "--gid", str(GID),
               "--chroot-base-dir", str(base)]
    if (CPU_CGROUP / "cpu.shares").exists():
        command += ["--cgroup", "cpu.shares=100", "--parent-cgroup", BENCH_PARENT_CGROUP]
    started = time.monotonic_ns()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        sock = connect_when_ready(root / "run" / "firecracker.socket", process, SOCKET_TIMEOUT_S)
        try:
            status, body = http_exchange(sock, "GET", "/")
        finally:
            sock.close()
        wall_ms = (time.monotonic_ns() - started) / 1e6
        if status != 200:
            return Run(False, problem=f"GET / answered {status}: {body[:200]!r}")
        return Run(True, wall_ms, process_cpu_ms(process.pid), _rss_mib(process.pid))
    except ApiBenchError as e:
        return Run(False, problem=f"{e}; stderr: {process.stderr.read().decode(errors='replace')[-500:]}"
                   if process.poll() is not None else str(e))
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        shutil.rmtree(root.parent, ignore_errors=True)
        _remove_cgroup(exec_file.name, jail_id)


def _rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _remove_cgroup(exec_name: str, jail_id: str) -> None:
    leaf = CPU_CGROUP / BENCH_PARENT_CGROUP / jail_id
    deadline = time.monotonic() + 5
    while leaf.exists() and time.monotonic() < deadline:
        try:
            leaf.rmdir()
        except OSError:
            time.sleep(0.01)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="measured runs per set-up (default 10)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first (default 1)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("the jailer benchmark needs root (namespaces, pivot_root, mknod, setuid)", file=sys.stderr)
        return 2
    tools.compile_pyrite_bytecode()
    try:
        chosen = setups()
    except refs.RefError as e:
        print(f"Firecracker v{refs.FIRECRACKER_VERSION} is not available: {e}", file=sys.stderr)
        return 2
    results: dict[str, list[Run]] = {name: [] for name in chosen}
    base = Path(tempfile.mkdtemp(prefix="jail-bench-", dir="/tmp"))
    try:
        for round_ in range(args.warmup + args.runs):
            for name, (jailer, exec_file) in chosen.items():
                run = run_once(jailer, exec_file, base, round_)
                if round_ >= args.warmup:
                    results[name].append(run)
    finally:
        shutil.rmtree(base, ignore_errors=True)
        try:
            (CPU_CGROUP / BENCH_PARENT_CGROUP).rmdir()
        except OSError:
            pass

    def med(name: str, metric: str) -> float | None:
        return tools.median([getattr(r, metric) for r in results[name] if r.ok and getattr(r, metric) is not None])

    metrics = ("wall_ms", "cpu_ms", "rss_mib")
    ratios = {f"{name}/firecracker": {m: tools.ratio(med(name, m), med("firecracker", m)) for m in metrics}
              for name in results if name != "firecracker"}
    if args.json:
        print(json.dumps({"runs": args.runs, "median": {n: {m: med(n, m) for m in metrics} for n in results},
                          "ratios": ratios, "all": {n: [asdict(r) for r in rs] for n, rs in results.items()}},
                         indent=2))
        return 0
    print(f"spawn jailer -> GET / 200 on <jail>/run/firecracker.socket; median of {args.runs} interleaved runs")
    print(f"{'set-up':<14} {'wall ms':>9} {'CPU ms':>8} {'RSS MiB':>8} {'runs ok':>8}")
    for name, runs in results.items():
        ok = f"{sum(r.ok for r in runs)}/{len(runs)}"
        print(f"{name:<14} {tools.cell(med(name, 'wall_ms'), 9)} {tools.cell(med(name, 'cpu_ms'), 8)} "
              f"{tools.cell(med(name, 'rss_mib'), 8)} {ok:>8}")
    print()
    print(f"{'ratio':<26} {'wall':>7} {'CPU':>7} {'RSS':>7}")
    for name, values in ratios.items():
        print(f"{name:<26} {tools.cell(values['wall_ms'], 7, 2)} {tools.cell(values['cpu_ms'], 7, 2)} "
              f"{tools.cell(values['rss_mib'], 7, 2)}")
    for name, runs in results.items():
        failed = [r for r in runs if not r.ok]
        if failed:
            print(f"\n{name}: {len(failed)}/{len(runs)} runs FAILED: {failed[0].problem}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
