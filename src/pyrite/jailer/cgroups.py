"""--cgroup FILE=VALUE for cgroup v1 and v2, as Firecracker's jailer sets them up (cgroup.rs).

Hierarchies are found in /proc/mounts: v1 mounts per controller (the controller named in the
mount options), the v2 unified mount. The microVM's cgroup is <mount>/<parent-cgroup>/<id>;
v1 first copies each file's value down from the parent (inherit_from_parent), v2 enables the
controller in cgroup.subtree_control along the path. Values are written, then the jailer's
pid is attached (v1 `tasks`, v2 `cgroup.procs`). `undo()` takes the process back to the
hierarchy's root and removes the directories this jailer made (Firecracker leaves them).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import JailerError, io_text

PROC_MOUNTS = "/proc/mounts"
# Firecracker's regex over /proc/mounts lines (dir, "2" for cgroup2, mount options).
_MOUNT_LINE = re.compile(r"^([a-z2]*)\s(?P<dir>.*)\scgroup(?P<ver>2?)\s(?P<options>.*)\s0\s0$")


@dataclass
class Cgroup:
    """One microVM cgroup: its directory in one hierarchy and the files to write there."""
    mount: Path
    location: Path
    version: int
    properties: list[tuple[str, str]] = field(default_factory=list)
    parent_depth: int = 0


@dataclass
class CgroupPlan:
    version: int
    cgroups: list[Cgroup]
    move_to: Path | None = None          # v2 with no --cgroup: join <unified>/<parent> if it exists
    created: list[Path] = field(default_factory=list)
    attached: list[Cgroup] = field(default_factory=list)

    def setup(self) -> None:
        if self.move_to is not None:
            if self.move_to.exists():
                try:
                    (self.move_to / "cgroup.procs").write_text(str(os.getpid()))
                except OSError as e:
                    raise JailerError(f"Failed to write to cgroups file: {io_text(e)}") from None
            return
        for cgroup in self.cgroups:     # every value first: cpuset needs cpus and mems before a task
            self._write_values(cgroup)
        for cgroup in self.cgroups:
            _writeln(cgroup.location / ("tasks" if self.version == 1 else "cgroup.procs"), os.getpid())
            self.attached.append(cgroup)

    def undo(self) -> None:
        """Back to each hierarchy's root cgroup, then remove the directories made here."""
        for cgroup in self.attached:
            try:
                _writeln(cgroup.mount / "cgroup.procs", os.getpid())
            except JailerError:
                pass
        for path in reversed(self.created):
            try:
                path.rmdir()
            except OSError:
                pass

    def _write_values(self, cgroup: Cgroup) -> None:
        missing = []
        probe = cgroup.location
        while not probe.exists():
            missing.append(probe)
            probe = probe.parent
        try:
            cgroup.location.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise JailerError(f"Failed to create directory {cgroup.location}: {io_text(e)}") from None
        finally:
            self.created.extend(p for p in reversed(missing) if p.exists())
        enabled: set[str] = set()
        for file, value in cgroup.properties:
            if cgroup.version == 1:
                _inherit_from_parent(cgroup.location, file, cgroup.parent_depth)
            else:
                controller = file.split(".")[0]
                if controller not in enabled:
                    _enable_in_subtree(cgroup.location.parent, controller)
                    enabled.add(controller)
            _writeln(cgroup.location / file, value)


def plan(version_text: str, files: list[str], instance_id: str, parent: str,
         proc_mounts: str = PROC_MOUNTS) -> CgroupPlan | None:
    """Validated --cgroup arguments (Firecracker's Env::new checks and texts, in its order)."""
    try:
        version = int(version_text) if version_text.isdigit() else -1
    except ValueError:
        version = -1
    if not 0 <= version <= 255:
        raise JailerError(f"{version_text} is an invalid cgroup version specifier")
    if not files:
        if version != 2:
            return None
        unified = _hierarchies(version, proc_mounts).get("unified")
        if unified is None:
            raise JailerError("Hierarchy not found: cgroupsv2 hierarchy missing")
        return CgroupPlan(2, [], move_to=unified / parent)
    mounts = _hierarchies(version, proc_mounts)
    if version not in (1, 2):
        raise JailerError(f"{version} is an invalid cgroup version specifier")
    by_key: dict[str, Cgroup] = {}
    for arg in files:
        parts = arg.split("=")
        if len(parts) != 2 or not parts[1]:
            raise JailerError(f"Invalid format for cgroups: {arg}")
        file, value = parts
        if _has_special_component(file):
            raise JailerError(f"Cgroup invalid file: {arg}")
        if len(file.split(".")) < 2:
            raise JailerError(f"Cgroup invalid file: {file}")
        controller = file.split(".")[0]
        if version == 1:
            mount = mounts.get(controller)
            if mount is None:
                raise JailerError(f"Controller {controller} is unavailable")
            key = controller
        else:
            mount = mounts.get("unified")
            if mount is None:
                raise JailerError("Hierarchy not found: cgroupsv2 hierarchy missing")
            if controller not in _available_controllers(mount):
                raise JailerError(f"Controller {controller} is unavailable")
            key = "unified"
        cgroup = by_key.setdefault(key, Cgroup(mount, mount / parent / instance_id, version,
                                               parent_depth=len(Path(parent).parts)))
        cgroup.properties.append((file, value))
    return CgroupPlan(version, list(by_key.values()))


def check_parent(parent: str) -> None:
    if _has_special_component(parent):
        raise JailerError("Parent cgroup path is invalid. Path should not be absolute or contain '..' or '.'")


def _has_special_component(path: str) -> bool:
    """Rust's Path::components() test for RootDir, ParentDir or a leading CurDir."""
    parts = path.split("/")
    return path.startswith("/") or ".." in parts or parts[0] == "."


def _hierarchies(version: int, proc_mounts: str) -> dict[str, Path]:
    """{controller: v1 mount} or {"unified": v2 mount}, from /proc/mounts."""
    try:
        lines = Path(proc_mounts).read_text().splitlines()
    except OSError as e:
        raise JailerError(f"Failed to open file {proc_mounts}: {io_text(e)}") from None
    found: dict[str, Path] = {}
    for line in lines:
        m = _MOUNT_LINE.match(line)
        if m is None:
            continue
        if version == 2 and m["ver"] == "2":
            return {"unified": Path(m["dir"])}
        if version == 1 and m["ver"] == "":
            for option in m["options"].split(","):
                found.setdefault(option, Path(m["dir"]))
    if not found:
        raise JailerError("Hierarchy not found: No hierarchy found for this cgroup version.")
    return found


def _available_controllers(mount: Path) -> set[str]:
    try:
        return set((mount / "cgroup.controllers").read_text().split())
    except OSError:
        return set()


def _enable_in_subtree(path: Path, controller: str) -> None:
    """+controller in cgroup.subtree_control from the top of the hierarchy down to `path`."""
    control = path / "cgroup.subtree_control"
    if not control.exists():
        return
    if path.parent != path:
        _enable_in_subtree(path.parent, controller)
    _writeln(control, f"+{controller}")


def _inherit_from_parent(path: Path, file: str, depth: int) -> None:
    """Copy the parent's value of `file` into `path` (an empty parent inherits from its own)."""
    parent_file = path.parent / file
    line = _readln(parent_file)
    if not line and depth > 0:
        try:
            _inherit_from_parent(path.parent, file, depth - 1)
        except JailerError:
            pass
        line = _readln(parent_file)
    if not line:
        raise JailerError(f"Failed to inherit cgroups configurations from file {file} in path {path}")
    _writeln(path / file, line)


def _readln(path: Path) -> str:
    try:
        return path.read_text()[:-1]
    except OSError as e:
        raise JailerError(f"Failed to read file {path} into a string: {io_text(e)}") from None


def _writeln(path: Path, value) -> None:
    try:
        path.write_text(f"{value}\n")
    except OSError as e:
        raise JailerError(f"Failed to write to {path}: {io_text(e)}") from None
