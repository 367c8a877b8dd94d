#!/usr/bin/env python3
"""Boot benchmark: the same tiny PVH guest run to its end by pyrite, Firecracker and QEMU.

Runs are interleaved (pyrite, firecracker, qemu, pyrite, ...) so that the
machine's drift affects all three alike. Each run is one whole VMM process,
measured from spawn to exit: wall time, CPU time (user + sys) and peak RSS, as
wait4() reports them (see spawn_rusage.c for why a small C helper spawns it).
A run counts only if the guest's line is in the VMM's output and the VMM exited
as the guest asked; failed runs are reported and left out of the medians.

    .venv/bin/python benchmarks/boot.py [--runs N] [--vmms pyrite,firecracker,qemu] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import refs, tools  # noqa: E402

GUEST_DIR = Path(__file__).resolve().parent / "guests"
GUEST_SOURCE = GUEST_DIR / "tiny_pvh.S"
GUEST_LINKER_SCRIPT = GUEST_DIR / "tiny_pvh.ld"
GUEST_LINE = "tiny_pvh: hello"   # what tiny_pvh.S prints
GUEST_EXIT_STATUS = 0            # what tiny_pvh.S writes to the exit port
MEM_MIB = 128

PYRITE = tools.REPO_ROOT / ".venv" / "bin" / "pyrite"
VMM_ORDER = ("pyrite", "firecracker", "qemu")
REFERENCES = ("qemu", "firecracker")

# Firecracker's boot timer (--boot-timer) logs the time from start to the guest's write of 123.
_FIRECRACKER_BOOT_TIME = re.compile(r"Guest-boot-time =\s*(\d+) us")


def build_tiny_pvh() -> Path:
    """tiny_pvh.S as an ELF64 with one segment at 1 MiB and a PVH note (cached by content)."""
    def commands(out: Path) -> list[list[str]]:
        return [
            ["gcc", "-c", "-o", "tiny_pvh.o", str(GUEST_SOURCE)],
            # -n: no page alignment of the segment in the file, so the image stays a few hundred bytes.
            ["ld", "-n", "-s", "--build-id=none", "-z", "noexecstack",
             "-T", str(GUEST_LINKER_SCRIPT), "-o", str(out), "tiny_pvh.o"],
        ]
    return tools.cached_build("tiny_pvh", ".elf", [GUEST_SOURCE, GUEST_LINKER_SCRIPT], commands)


@dataclass(frozen=True)
class Vmm:
    """How to run the guest under one VMM and what a successful run looks like."""
    name: str
    command: list[str]
    expected_exit: int
    boot_time_in: Callable[[str], float | None] = lambda output: None


def firecracker_guest_boot_ms(output: str) -> float | None:
    """Firecracker's own boot-timer figure (ms from its start to the guest's signal), if logged."""
    found = _FIRECRACKER_BOOT_TIME.search(output)
    return int(found.group(1)) / 1000 if found else None


def pyrite_vmm(image: Path) -> Vmm:
    if not PYRITE.exists():
        raise refs.RefError(f"{PYRITE} does not exist; `make setup` installs pyrite into .venv")
    # A pyenv shim as interpreter would add ~50 ms of shell to every run.
    interpreter = _shebang_interpreter(PYRITE)
    if interpreter is None or not _is_elf(interpreter):
        raise refs.RefError(f"{PYRITE} runs {interpreter}, which is not a native interpreter binary "
                            "(a shim?); recreate .venv from the real python")
    return Vmm("pyrite", [str(PYRITE), "run", str(image), "--mem-mib", str(MEM_MIB)],
               expected_exit=GUEST_EXIT_STATUS)


_ELF_MAGIC = b"\x7fELF"


def _is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == _ELF_MAGIC
    except OSError:
        return False


def _shebang_interpreter(script: Path) -> Path | None:
    with script.open("rb") as f:
        first = f.readline()
    if not first.startswith(b"#!"):
        return None
    words = first[2:].split()
    return Path(words[0].decode()) if words else None


def firecracker_vmm(image: Path, workdir: Path) -> Vmm:
    config = workdir / "firecracker.json"
    config.write_text(json.dumps({
        "boot-source": {"kernel_image_path": str(image), "boot_args": "console=ttyS0"},
        "drives": [],   # Firecracker refuses a config file without it
        "machine-config": {"vcpu_count": 1, "mem_size_mib": MEM_MIB},
    }))
    # --no-api: no socket to create or clean up; the guest ends Firecracker with an i8042 reset,
    # after which Firecracker exits 0. Its default seccomp filters stay on, as in production.
    return Vmm("firecracker",
               [str(refs.firecracker_binary()), "--no-api", "--boot-timer", "--config-file", str(config)],
               expected_exit=0, boot_time_in=firecracker_guest_boot_ms)


def qemu_vmm(image: Path) -> Vmm:
    return Vmm("qemu", [
        str(refs.qemu_binary()),
        "-M", "microvm,x-option-roms=off,isa-serial=on,rtc=off",
        "-enable-kvm", "-cpu", "host,-arch-capabilities", "-m", f"{MEM_MIB}M",
        "-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio",
        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-kernel", str(image),
    ], expected_exit=(GUEST_EXIT_STATUS << 1) | 1)   # isa-debug-exit exits with (value << 1) | 1


def run_problem(measurement: tools.Measurement, output: str, expected_exit: int) -> str | None:
    """Why a run does not count, or None when the guest ran to its end."""
    if measurement.timed_out:
        return "timed out"
    if measurement.signal:
        return f"killed by signal {measurement.signal}"
    if GUEST_LINE not in output:
        return f"guest line {GUEST_LINE!r} missing from the output (exit status {measurement.exit_status})"
    if measurement.exit_status != expected_exit:
        return f"exit status {measurement.exit_status}, expected {expected_exit}"
    return None


@dataclass
class Run:
    measurement: tools.Measurement | None
    problem: str | None = None
    output_tail: str = ""
    guest_boot_ms: float | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass
class VmmResult:
    name: str
    unavailable: str | None = None   # why the VMM could not be run at all
    runs: list[Run] = field(default_factory=list)

    def good(self) -> list[tools.Measurement]:
        return [run.measurement for run in self.runs if run.ok]

    def medians(self) -> dict[str, float | None]:
        good = self.good()
        return {
            "wall_ms": tools.median([m.wall_ms for m in good]),
            "cpu_ms": tools.median([m.cpu_ms for m in good]),
            "peak_rss_mib": tools.median([m.peak_rss_mib for m in good]),
            "guest_boot_ms": tools.median([r.guest_boot_ms for r in self.runs
                                           if r.ok and r.guest_boot_ms is not None]),
        }

    def first_problem(self) -> str | None:
        if self.unavailable:
            return self.unavailable
        for run in self.runs:
            if not run.ok:
                tail = run.output_tail.strip()
                return f"{run.problem}" + (f"; output ends:\n{tail}" if tail else "")
        return None


METRICS = ("wall_ms", "cpu_ms", "peak_rss_mib")


def ratios(results: dict[str, VmmResult]) -> dict[str, dict[str, float | None]]:
    """pyrite / reference for each metric, from the medians."""
    if "pyrite" not in results:
        return {}
    pyrite = results["pyrite"].medians()
    return {f"pyrite/{ref}": {metric: tools.ratio(pyrite[metric], results[ref].medians()[metric])
                              for metric in METRICS}
            for ref in REFERENCES if ref in results}


def format_report(results: dict[str, VmmResult], runs: int, image: Path) -> str:
    lines = [f"tiny PVH guest ({image.stat().st_size} bytes), {MEM_MIB} MiB, whole VMM process, "
             f"median of {runs} interleaved runs",
             "",
             f"{'VMM':<12} {'wall ms':>9} {'CPU ms':>9} {'peak RSS MiB':>13} {'runs ok':>8}"]
    for result in results.values():
        med = result.medians()
        ok = f"{len(result.good())}/{len(result.runs) or runs}"
        lines.append(f"{result.name:<12} {tools.cell(med['wall_ms'], 9, 1)} {tools.cell(med['cpu_ms'], 9, 1)} "
                     f"{tools.cell(med['peak_rss_mib'], 13, 1)} {ok:>8}")
    table = ratios(results)
    if table:
        lines += ["", f"{'ratio':<20} {'wall':>7} {'CPU':>7} {'RSS':>7}"]
        for name, values in table.items():
            lines.append(f"{name:<20} " + " ".join(tools.cell(values[m], 7, 2) for m in METRICS))
    for result in results.values():
        boot = result.medians()["guest_boot_ms"]
        if boot is not None:
            lines.append(f"\n{result.name}'s own boot timer: guest signalled after {boot:.1f} ms (median)")
    for result in results.values():
        problem = result.first_problem()
        if problem:
            failed = len(result.runs) - len(result.good())
            count = f"{failed}/{len(result.runs)} runs failed" if result.runs else "not run"
            lines += ["", f"{result.name}: FAILED ({count}): {problem}"]
    return "\n".join(lines)


def report_json(results: dict[str, VmmResult], runs: int, image: Path) -> dict:
    return {
        "guest": str(image),
        "mem_mib": MEM_MIB,
        "runs_per_vmm": runs,
        "vmms": {name: {
            "unavailable": result.unavailable,
            "runs_ok": len(result.good()),
            "median": result.medians(),
            "runs": [{**(asdict(run.measurement) if run.measurement else {}),
                      "cpu_ms": run.measurement.cpu_ms if run.measurement else None,
                      "guest_boot_ms": run.guest_boot_ms, "problem": run.problem}
                     for run in result.runs],
        } for name, result in results.items()},
        "ratios": ratios(results),
    }


def _prepare(names: list[str], image: Path, workdir: Path) -> tuple[dict[str, Vmm], dict[str, VmmResult]]:
    makers = {"pyrite": lambda: pyrite_vmm(image),
              "firecracker": lambda: firecracker_vmm(image, workdir),
              "qemu": lambda: qemu_vmm(image)}
    vmms: dict[str, Vmm] = {}
    results: dict[str, VmmResult] = {}
    for name in names:
        results[name] = VmmResult(name)
        try:
            vmms[name] = makers[name]()
        except (refs.RefError, OSError) as e:
            results[name].unavailable = str(e)
    return vmms, results


def _run_once(vmm: Vmm, helper: Path, output_path: Path, timeout_s: int) -> Run:
    try:
        measurement = tools.measure(vmm.command, output_path, timeout_s, helper)
    except tools.MeasurementError as e:
        return Run(None, problem=str(e))
    output = output_path.read_text(errors="replace")
    problem = run_problem(measurement, output, vmm.expected_exit)
    if problem is not None:
        problem += f" after {measurement.wall_ms:.0f} ms"
    return Run(measurement, problem, output_tail=output[-1500:] if problem else "",
               guest_boot_ms=vmm.boot_time_in(output))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="measured runs per VMM (default 10)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first (default 1)")
    parser.add_argument("--timeout", type=int, default=60, help="seconds before a run is killed")
    parser.add_argument("--vmms", default=",".join(VMM_ORDER),
                        help=f"comma-separated subset of {','.join(VMM_ORDER)}")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    names = [name for name in args.vmms.split(",") if name]
    unknown = sorted(set(names) - set(VMM_ORDER))
    if unknown or not names or args.runs < 1:
        parser.error(f"--vmms takes names from {', '.join(VMM_ORDER)} (got {args.vmms!r}); --runs >= 1")

    try:
        image = build_tiny_pvh()
        helper = tools.spawn_rusage_binary()
        if "pyrite" in names:
            tools.compile_pyrite_bytecode()
    except tools.BuildError as e:
        print(f"boot.py: {e}", file=sys.stderr)
        return 1

    workdir = Path(tempfile.mkdtemp(prefix="pyrite-bench-"))
    try:
        vmms, results = _prepare(names, image, workdir)
        for round_index in range(args.warmup + args.runs):
            for name, vmm in vmms.items():
                # Runs that already failed in warm-up are still measured: a flaky VMM shows as such.
                run = _run_once(vmm, helper, workdir / f"{name}.out", args.timeout)
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
    return 0 if all(results[name].good() for name in names if name != "pyrite") else 1


if __name__ == "__main__":
    sys.exit(main())
