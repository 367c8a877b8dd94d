#!/usr/bin/env python3
"""seccomp benchmark: the cost of pyrite-vmm's seccomp filters on its hot paths.

The same guests boot under `pyrite-vmm --no-api --config-file` with the default filters and
with `--no-seccomp`, interleaved (filtered first in even rounds, unfiltered first in odd ones),
and time their work with the TSC inside the guest:

  pio exits        port writes to the serial scratch register, each a VM exit served by the
                   vCPU thread (KVM_RUN through the vcpu filter: one ioctl per exit)
                   (benchmarks/guests/pio_exits.c)
  block seqread    128 KiB virtio-block reads served by the event loop (preadv through the
                   vmm filter) (benchmarks/guests/virtio_bench.c)
  block randread   4 KiB reads at queue depth 1: one request, one eventfd, one irqfd each
  entropy          virtio-rng reads (getrandom through the vmm filter)

Prints the median rate of each mode and the ratio filtered / unfiltered (1.00: no cost).
Whole-guest rates on a shared machine vary by more than the filters can cost, so the script
also measures that cost directly: the same system call a vCPU makes per exit (an ioctl with
KVM_RUN's request number, on fd -1 so that the kernel answers EBADF after the filter has let it
through) in a thread under the vcpu filter and in one without, interleaved, best of each.

    .venv/bin/python benchmarks/seccomp.py [--runs N] [--pio-exits N] [--seq-mib N] [--rand-ops N] [--rng-mib N]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.tools import VENV_PYTHON, cell, ratio  # noqa: E402

GUESTS = Path(__file__).resolve().parent / "guests"
MODES = {"filtered": [], "unfiltered": ["--no-seccomp"]}


def build(name: str) -> Path:
    from pyrite.unikernel.build import build_image
    return build_image([GUESTS / f"{name}.c"])


def run(image: Path, args: str, mode: str, disk: Path | None, workdir: Path) -> dict[str, tuple[int, int]]:
    """{workload: (units, cycles)} from the guest's result lines, and its TSC Hz as "tsc"."""
    config = {"boot-source": {"kernel_image_path": str(image), "boot_args": args},
              "machine-config": {"vcpu_count": 1, "mem_size_mib": 128},
              "drives": [] if disk is None else [{"drive_id": "d0", "path_on_host": str(disk),
                                                   "is_root_device": False, "is_read_only": False}],
              "entropy": {}}
    path = workdir / "vm.json"
    path.write_text(json.dumps(config))
    python = str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable
    done = subprocess.run([python, "-m", "pyrite.api.cli", "--no-api", "--config-file", str(path), *MODES[mode]],
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    if done.returncode != 0 or "bad syscall" in done.stdout:
        raise SystemExit(f"{mode} run of {image.name} {args!r} failed (exit {done.returncode}):\n"
                         f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    out = {"tsc": (int(re.search(r"tsc_hz=(\d+)", done.stdout).group(1)), 0)}
    for name, units, cycles in re.findall(r"result (\w+) (?:bytes|exits)=(\d+)(?: ops=\d+)? cycles=(\d+)",
                                          done.stdout):
        out[name] = (int(units), int(cycles))
    return out


def syscall_cost(calls: int = 200_000, rounds: int = 7) -> dict[str, float]:
    """CPU nanoseconds per KVM_RUN-shaped ioctl (Python loop included), under the vcpu filter and
    without one, each the best of `rounds` (threads of this process; only the thread that
    installs the filter is filtered)."""
    import ctypes
    import threading
    import time
    from pyrite.kvm.ioctls import KVM_RUN
    from pyrite.seccomp import load_filters
    program = load_filters()["vcpu"]
    ioctl = ctypes.CDLL(None, use_errno=True).ioctl
    ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)
    best = {"filtered": float("inf"), "unfiltered": float("inf")}

    def measure(mode: str) -> None:
        if mode == "filtered":
            program.install()
        start = time.thread_time_ns()      # the thread's CPU time: preemption by others is not counted
        for _ in range(calls):
            ioctl(-1, KVM_RUN, None)
        best[mode] = min(best[mode], (time.thread_time_ns() - start) / calls)

    for r in range(rounds):
        for mode in (("filtered", "unfiltered") if r % 2 == 0 else ("unfiltered", "filtered")):
            t = threading.Thread(target=measure, args=(mode,), name=f"bench {mode}")
            t.start()
            t.join()
    return best


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--pio-exits", type=int, default=200_000)
    p.add_argument("--seq-mib", type=int, default=256)
    p.add_argument("--rand-ops", type=int, default=20_000)
    p.add_argument("--rng-mib", type=int, default=16)
    a = p.parse_args()
    pio, bench = build("pio_exits"), build("virtio_bench")
    # (label, image, guest arguments, result name, unit divisor, unit)
    workloads = [("pio exits", pio, str(a.pio_exits), "pio", 1, "exits/s"),
                 ("block seqread", bench, f"seqread {a.seq_mib}", "seqread", 1 << 20, "MiB/s"),
                 ("block randread", bench, f"randread {a.rand_ops}", "randread", 4096, "ops/s"),
                 ("entropy", bench, f"rng {a.rng_mib}", "rng", 1 << 20, "MiB/s")]
    rates: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        disk = workdir / "disk.img"
        with open(disk, "wb") as f:
            f.write(os.urandom(1 << 20) * 128)       # 128 MiB, in the page cache from here on
        for r in range(a.runs):
            modes = list(MODES) if r % 2 == 0 else list(reversed(MODES))
            for label, image, args, result, divisor, _ in workloads:
                for mode in modes:
                    got = run(image, args, mode, disk if image is bench else None, workdir)
                    units, cycles = got[result]
                    rate = units / divisor / (cycles / got["tsc"][0])
                    rates.setdefault((label, mode), []).append(rate)
                    print(f"  run {r + 1} {label:15} {mode:10} {rate:12.1f}", file=sys.stderr)
    print(f"\nseccomp cost on hot paths: median of {a.runs} runs each, interleaved "
          "(filtered: pyrite's default filters; unfiltered: --no-seccomp)\n")
    print(f"{'workload':16} {'unit':8} {'filtered':>12} {'unfiltered':>12} {'filtered/unfiltered':>20}")
    for label, _, _, _, _, unit in workloads:
        f, u = (statistics.median(rates[(label, m)]) for m in MODES)
        print(f"{label:16} {unit:8} {cell(f, 12)} {cell(u, 12)} {cell(ratio(f, u), 20, 3)}")
    cost = syscall_cost()
    extra = cost["filtered"] - cost["unfiltered"]
    exit_ns = 1e9 / statistics.median(rates[("pio exits", "unfiltered")])
    print(f"\nper exit: ioctl(KVM_RUN) {cost['filtered']:.0f} ns filtered, {cost['unfiltered']:.0f} ns unfiltered "
          f"(thread CPU time, best of 7 x 200000, Python loop included): the filter adds {extra:.0f} ns, "
          f"{100 * extra / exit_ns:.2f}% of a {exit_ns / 1000:.1f} us port I/O exit measured above")
    return 0


if __name__ == "__main__":
    sys.exit(main())
