"""MicroPython's own test suite (its tests/ directory) in a pyrite unikernel, beside the host
unix port built with the same options.

MicroPython's tests/run-tests.py drives both. The unix port runs each test as a process; the
unikernel is a board to it: one VM boots the REPL image and run-tests.py talks to its serial
console through pyboard.py (`-t exec:"pyrite run <repl image>"`), soft-resetting the
interpreter (raw REPL, Ctrl-D) before each test, as it does with a real board.

    python -m pyrite.unikernel.micropython.suite [-d basics float ...] [--only pyrite|unix]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from pyrite.unikernel.micropython import build, source

TEST_DIRS = ("basics", "float", "extmod", "misc", "micropython", "unicode", "stress")


@dataclass
class SuiteResult:
    """One run of run-tests.py: test names (dir/name.py) by outcome."""
    target: str
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    log: str = ""


def _pyrite_command() -> str:
    exe = Path(sys.executable).with_name("pyrite")
    return str(exe) if exe.exists() else f"{sys.executable} -m pyrite.cli"


def _test_files(tests: Path, work: Path) -> Path:
    """The initrd of the test VM: the data files tests open relative to their directory
    (unicode/data as /data: the board's working directory is /)."""
    from pyrite.unikernel.files import write_archive
    root = work / "root"
    shutil.copytree(tests / "unicode" / "data", root / "data")
    archive, _ = write_archive(root, work / "tests.cpio")
    return archive


def run_suite(target: str, dirs: tuple[str, ...] = TEST_DIRS, tests: tuple[str, ...] = (),
              timeout: float = 3600) -> SuiteResult:
    """Run MicroPython's run-tests.py against `target` ("pyrite" or "unix")."""
    tree = source.source_tree()
    env = dict(os.environ)
    cmd = [sys.executable, "run-tests.py"]
    result_dir = Path(tempfile.mkdtemp(prefix=f"pyrite-mp-tests-{target}-"))
    if target == "pyrite":
        initrd = _test_files(tree / "tests", result_dir)
        cmd += ["-t", f"exec:{_pyrite_command()} run --quiet {build.repl_image()} --initrd {initrd}"]
    elif target == "unix":
        env["MICROPY_MICROPYTHON"] = str(build.unix_reference())
    else:
        raise ValueError(f"unknown target {target!r}: pyrite or unix")
    env.setdefault("MICROPY_CPYTHON3", shutil.which("python3") or sys.executable)
    try:
        cmd += ["-r", str(result_dir)]
        cmd += list(tests) if tests else ["-d", *dirs]
        start = time.monotonic()
        proc = subprocess.run(cmd, cwd=tree / "tests", env=env, capture_output=True, text=True, timeout=timeout)
    finally:
        shutil.rmtree(result_dir, ignore_errors=True)
    result = SuiteResult(target, seconds=time.monotonic() - start, log=proc.stdout + proc.stderr)
    # run-tests.py prints one line per test: "pass  dir/name.py", "FAIL  ...", "skip  ...".
    outcomes = {"pass": result.passed, "FAIL": result.failed, "skip": result.skipped}
    for line in proc.stdout.splitlines():
        verdict, _, name = line.partition("  ")
        if verdict in outcomes and name.strip().endswith(".py"):
            outcomes[verdict].append(name.strip())
    if not (result.passed or result.failed or result.skipped):
        raise RuntimeError(f"run-tests.py against {target} ran no test:\n{result.log[-3000:]}")
    return result


def compare(pyrite: SuiteResult, unix: SuiteResult) -> list[str]:
    """Lines of the side-by-side report."""
    lines = [f"{'':<8} {'passed':>7} {'failed':>7} {'skipped':>8} {'seconds':>8}"]
    for r in (pyrite, unix):
        lines.append(f"{r.target:<8} {len(r.passed):>7} {len(r.failed):>7} {len(r.skipped):>8} {r.seconds:>8.1f}")
    only_pyrite = sorted(set(pyrite.failed) - set(unix.failed))
    if only_pyrite:
        lines.append("failed in pyrite only: " + " ".join(only_pyrite))
    only_unix = sorted(set(unix.failed) - set(pyrite.failed))
    if only_unix:
        lines.append("failed on unix only: " + " ".join(only_unix))
    skipped_pyrite = sorted(set(pyrite.skipped) - set(unix.skipped))
    if skipped_pyrite:
        lines.append("skipped in pyrite only: " + " ".join(skipped_pyrite))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-d", "--dirs", nargs="*", default=list(TEST_DIRS), help="test directories")
    parser.add_argument("tests", nargs="*", help="test files (relative to MicroPython's tests/)")
    args = parser.parse_args(argv)
    results = {t: run_suite(t, tuple(args.dirs), tuple(args.tests)) for t in ("pyrite", "unix")}
    print("\n".join(compare(results["pyrite"], results["unix"])))
    return 0 if not set(results["pyrite"].failed) - set(results["unix"].failed) else 1


if __name__ == "__main__":
    sys.exit(main())
