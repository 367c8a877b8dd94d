"""What the seccomp tests share: the per-thread seccomp state of a live process, filter files
derived from pyrite's default one, and waiting."""
from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path

from pyrite.seccomp import DEFAULT_FILTER


# KVM's own kernel worker (NX huge page recovery) is listed among a VMM's tasks; it runs no
# user code, so no filter applies to it.
KERNEL_WORKERS = ("kvm-nx-lpage-re",)


def thread_seccomp(pid: int) -> list[tuple[str, int, int]]:
    """(thread name (comm), Seccomp mode, Seccomp_filters) for each user thread of `pid`."""
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except FileNotFoundError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        name = fields["Name"].strip()
        if name not in KERNEL_WORKERS:
            out.append((name, int(fields["Seccomp"]), int(fields["Seccomp_filters"])))
    return sorted(out)


def default_filter() -> dict:
    return json.loads(Path(DEFAULT_FILTER).read_text())


def filter_without(tmp_path: Path, category: str, syscall: str) -> Path:
    """pyrite's default filter with every rule for `syscall` dropped from `category`."""
    doc = copy.deepcopy(default_filter())
    rules = doc[category]["filter"]
    doc[category]["filter"] = [r for r in rules if r["syscall"] != syscall]
    assert len(doc[category]["filter"]) < len(rules), f"{syscall} is not in the default {category} filter"
    path = tmp_path / f"no-{syscall}.json"
    path.write_text(json.dumps(doc))
    return path


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
