"""The memory cgroup limit guest memory has to fit in, checked at InstanceStart so that a VM
whose memory cannot fit is refused with the reason instead of being OOM-killed mid-run.

The limit is the smallest of the process's memory cgroup and its ancestors (v2 `memory.max`,
or v1 `memory.limit_in_bytes`), the usage is the cgroup's (`memory.current` /
`memory.usage_in_bytes`). The files are found through /proc/self/cgroup and /proc/self/mounts
and kept open: a jailed VMM sees neither /proc nor /sys, so pyrite's jailer calls `pin()`
before pivot_root and the VMM reads the live values through the descriptors it left.
"""
from __future__ import annotations

import os

UNLIMITED = 1 << 62   # v1 reports "no limit" as a page-rounded LONG_MAX; anything above is none

_pinned: tuple[list[tuple[str, int]], tuple[str, int]] | None = None


def pin(proc: str = "/proc/self") -> bool:
    """Open this process's memory cgroup files; False when it has no memory cgroup."""
    global _pinned
    found = _find_files(proc)
    if found is None:
        return False
    limits, usage = found
    unpin()
    _pinned = ([(p, os.open(p, os.O_RDONLY | os.O_CLOEXEC)) for p in limits],
               (usage, os.open(usage, os.O_RDONLY | os.O_CLOEXEC)))
    return True


def unpin() -> None:
    global _pinned
    if _pinned is not None:
        for _, fd in [*_pinned[0], _pinned[1]]:
            os.close(fd)
        _pinned = None


def fit_problem(guest_bytes: int) -> str | None:
    """Why `guest_bytes` more of memory cannot fit in the cgroup, or None when they can (or no
    limit is known)."""
    if _pinned is None:
        try:
            if not pin():
                return None
        except OSError:
            return None
    limits, (usage_path, usage_fd) = _pinned
    try:
        path, limit = min(((p, _read(fd)) for p, fd in limits), key=lambda item: item[1])
        usage = _read(usage_fd)
    except (OSError, ValueError):
        return None
    if limit >= UNLIMITED or guest_bytes + usage <= limit:
        return None
    return (f"memory size {guest_bytes >> 20} MiB does not fit in the memory cgroup: {path} is "
            f"{limit >> 20} MiB and the VMM already uses {usage >> 20} MiB ({usage_path})")


def _read(fd: int) -> int:
    text = os.pread(fd, 64, 0).decode().strip()
    return UNLIMITED if text == "max" else int(text)


def _find_files(proc: str) -> tuple[list[str], str] | None:
    cgroups: dict[str, str] = {}
    with open(f"{proc}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for c in controllers.split(",") if controllers else ["unified"]:
                cgroups[c] = path
    mounts: dict[str, str] = {}
    with open(f"{proc}/mounts") as f:
        for line in f:
            _, target, fstype, options = line.split()[:4]
            if fstype == "cgroup2":
                mounts.setdefault("unified", target)
            elif fstype == "cgroup" and "memory" in options.split(","):
                mounts.setdefault("memory", target)
    for key, limit_name, usage_name in (("unified", "memory.max", "memory.current"),
                                        ("memory", "memory.limit_in_bytes", "memory.usage_in_bytes")):
        if key not in mounts or key not in cgroups:
            continue
        top = mounts[key]
        here = os.path.join(top, cgroups[key].lstrip("/"))
        if not os.path.exists(os.path.join(here, limit_name)):
            continue
        limits, d = [], here
        while len(d) >= len(top) and os.path.exists(os.path.join(d, limit_name)):
            limits.append(os.path.join(d, limit_name))
            if d == top:
                break
            d = os.path.dirname(d)
        return limits, os.path.join(here, usage_name)
    return None
