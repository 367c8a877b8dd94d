#!/usr/bin/env python3
"""File benchmark: file writes and reads per second inside a pyrite guest against the host.

tests/guests/fsh.c's `bench DIR N SIZE` creates N files of SIZE bytes (open O_CREAT|O_TRUNC,
one write, close), reads each back (open, one read, close), then unlinks them, timing each
phase with CLOCK_MONOTONIC inside the program. It runs:

- in a pyrite guest (musl + the library OS) on the ramfs root (/tmp) and on an ext2 file
  system on a virtio-blk drive (/mnt/vda; its cache is written back to the drive at each close);
- on the host (the same C file built with the host's gcc) in a directory of the host's file
  system (through the kernel's page cache).

A second table does the same with 32 files of 1 MiB (files per second = MiB per second).
Each measurement runs twice in the same process and the second is kept: the first touches
fresh memory (guest RAM the host has not faulted in yet). Medians over --runs processes.

    .venv/bin/python benchmarks/files.py [--runs N] [--files N] [--size BYTES]
"""
from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import tools  # noqa: E402

REPO = tools.REPO_ROOT
PYRITE = REPO / ".venv" / "bin" / "pyrite"
FSH = REPO / "tests" / "guests" / "fsh.c"
BENCH_LINE = re.compile(rb"bench (\S+) files=\d+ size=(\d+) write_per_s=(\d+) read_per_s=(\d+)")
BIG_FILES, BIG_SIZE = 32, 1 << 20        # the second table: throughput on 1 MiB files


def bench_words(directory: str, files: int, size: int) -> list[str]:
    words = ["bench", directory, str(files), str(size)]
    return words + words                    # the second run is the one kept


def parse(output: bytes, directory: str, size: int) -> tuple[float, float]:
    found = [(float(w), float(r)) for d, z, w, r in BENCH_LINE.findall(output)
             if d.decode() == directory and int(z) == size]
    if len(found) != 2:
        raise RuntimeError(f"fsh printed {len(found)} bench lines for {directory}: {output[-400:]!r}")
    return found[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="processes per side (default 3)")
    parser.add_argument("--files", type=int, default=1000, help="files per phase (default 1000)")
    parser.add_argument("--size", type=int, default=4096, help="bytes per file (default 4096, at most 1 MiB)")
    args = parser.parse_args(argv)
    for tool in ("gcc", "mke2fs"):
        if shutil.which(tool) is None and shutil.which(f"/sbin/{tool}") is None:
            print(f"files.py: {tool} not found (apt-get install gcc e2fsprogs)", file=sys.stderr)
            return 1
    if not PYRITE.exists():
        print(f"files.py: {PYRITE} missing; `make setup` installs pyrite", file=sys.stderr)
        return 1

    sizes = [(args.files, args.size), (BIG_FILES, BIG_SIZE)]
    results: dict[tuple[str, int], list[tuple[float, float]]] = {
        (name, size): [] for _, size in sizes for name in ("guest ramfs", "guest ext2", "host")}
    with tempfile.TemporaryDirectory(prefix="pyrite-files-bench-") as tmp:
        work = Path(tmp)
        image, host_fsh, disk = work / "fsh.img", work / "fsh-host", work / "disk.img"
        subprocess.run([str(PYRITE), "unikernel", "build", str(FSH), "-o", str(image)], check=True,
                       capture_output=True)
        subprocess.run(["gcc", "-O2", str(FSH), "-o", str(host_fsh)], check=True)
        disk_mib = max(128, 4 * args.files * max(args.size, 4096) // (1 << 20))
        subprocess.run(["mke2fs", "-q", "-F", "-t", "ext2", "-b", "4096", str(disk), f"{disk_mib}M"], check=True)
        host_dir = work / "host"
        host_dir.mkdir()
        words = [w for n, size in sizes for d in ("/tmp", "/mnt/vda") for w in bench_words(d, n, size)]
        host_words = [w for n, size in sizes for w in bench_words(str(host_dir), n, size)]
        for run in range(args.runs):
            guest = subprocess.run([str(PYRITE), "run", str(image), "--quiet", "--mem-mib", "512", "--drive",
                                    str(disk), "--", *words], capture_output=True, timeout=600)
            host = subprocess.run([str(host_fsh), *host_words], capture_output=True, timeout=600)
            for _, size in sizes:
                results["guest ramfs", size].append(parse(guest.stdout, "/tmp", size))
                results["guest ext2", size].append(parse(guest.stdout, "/mnt/vda", size))
                results["host", size].append(parse(host.stdout, str(host_dir), size))
            print(f"\rround {run + 1}/{args.runs}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)

    medians = {key: (statistics.median(w for w, _ in rs), statistics.median(r for _, r in rs))
               for key, rs in results.items()}
    lines = []
    for n, size in sizes:
        host_w, host_r = medians["host", size]
        lines += [f"{n} files of {size} bytes: create+write+close, then open+read+close; "
                  f"median of {args.runs} runs (second pass in each)",
                  f"{'':<26} {'writes/s':>10} {'reads/s':>10} {'write ratio':>12} {'read ratio':>11}"]
        for name in ("guest ramfs", "guest ext2", "host"):
            w, r = medians[name, size]
            lines.append(f"{name:<26} {w:10.0f} {r:10.0f} {tools.cell(tools.ratio(w, host_w), 12, 2)} "
                         f"{tools.cell(tools.ratio(r, host_r), 11, 2)}")
        lines.append("")
    lines.append("ratios are guest/host files per second: above 1 the guest is faster")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
