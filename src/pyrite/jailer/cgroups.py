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

from .errors import JailerError, io_text, parse_uint

PROC_MOUNTS = "/proc/mounts"


class Cgroup:
    """One microVM cgroup: its directory in one hierarchy and the files to write there."""
    __slots__ = ("mount", "location", "version", "properties", "parent_depth")

    def __init__(self, mount: str, location: str, version: int, parent_depth: int):
        self.mount, self.location, self.version, self.parent_depth = mount, location, version, parent_depth
        self.properties: list[tuple[str, str]] = []


class CgroupPlan:
    def __init__(self, version: int, cgroups: list[Cgroup], move_to: str | None = None):
        self.version, self.cgroups = version, cgroups
        self.move_to = move_to           # v2 with no --cgroup: join <unified>/<parent> if it exists
        self.created: list[str] = []
        self.attached: list[Cgroup] = []

    def setup(self) -> None:
        if self.move_to is not None:
            if os.path.exists(self.move_to):
                try:
                    with open(os.path.join(self.move_to, "cgroup.procs"), "w") as f:
                        f.write(str(os.getpid()))
                except OSError as e:
                    raise JailerError(f"Failed to write to cgroups file: {io_text(e)}") from None
            return
        for cgroup in self.cgroups:     # every value first: cpuset needs cpus and mems before a task
            self._write_values(cgroup)
        for cgroup in self.cgroups:
            _writeln(os.path.join(cgroup.location, "tasks" if self.version == 1 else "cgroup.procs"), os.getpid())
            self.attached.append(cgroup)

    def undo(self) -> None:
        """Back to each hierarchy's root cgroup, then remove the directories made here."""
        for cgroup in self.attached:
            try:
                _writeln(os.path.join(cgroup.mount, "cgroup.procs"), os.getpid())
            except JailerError:
                pass
        for path in reversed(self.created):
            try:
                os.rmdir(path)
            except OSError:
                pass

    def _write_values(self, cgroup: Cgroup) -> None:
        missing = []
        probe = cgroup.location
        while not os.path.exists(probe):
            missing.append(probe)
            probe = os.path.dirname(probe)
        try:
            os.makedirs(cgroup.location, exist_ok=True)
        except OSError as e:
            raise JailerError(f"Failed to create directory {cgroup.location}: {io_text(e)}") from None
        finally:
            self.created.extend(p for p in reversed(missing) if os.path.exists(p))
        enabled: set[str] = set()
        for file, value in cgroup.properties:
            if cgroup.version == 1:
                _inherit_from_parent(cgroup.location, file, cgroup.parent_depth)
            else:
                controller = file.split(".")[0]
                if controller not in enabled:
                    _enable_in_subtree(os.path.dirname(cgroup.location), controller)
                    enabled.add(controller)
            _writeln(os.path.join(cgroup.location, file), value)


def plan(version_text: str, files: list[str], instance_id: str, parent: str,
         proc_mounts: str = PROC_MOUNTS) -> CgroupPlan | None:
    """Validated --cgroup arguments (Firecracker's Env::new checks and texts, in its order)."""
    try:
        version = parse_uint(version_text, 8)
    except ValueError:
        raise JailerError(f"{version_text} is an invalid cgroup version specifier") from None
    if not files:
        if version != 2:
            return None
        unified = _hierarchies(version, proc_mounts).get("unified")
        if unified is None:
            raise JailerError("Hierarchy not found: cgroupsv2 hierarchy missing")
        return CgroupPlan(2, [], move_to=os.path.join(unified, parent))
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
        if key not in by_key:
            by_key[key] = Cgroup(mount, os.path.join(mount, parent, instance_id), version,
                                 len([p for p in parent.split("/") if p]))
        cgroup = by_key[key]
        cgroup.properties.append((file, value))
    return CgroupPlan(version, list(by_key.values()))


def check_parent(parent: str) -> None:
    if _has_special_component(parent):
        raise JailerError("Parent cgroup path is invalid. Path should not be absolute or contain '..' or '.'")


def _has_special_component(path: str) -> bool:
    """Rust's Path::components() test for RootDir, ParentDir or a leading CurDir."""
    parts = path.split("/")
    return path.startswith("/") or ".." in parts or parts[0] == "."


def _hierarchies(version: int, proc_mounts: str) -> dict[str, str]:
    """{controller: v1 mount} or {"unified": v2 mount}, from the cgroup and cgroup2 lines of
    /proc/mounts (what Firecracker's regex over them picks)."""
    try:
        with open(proc_mounts) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise JailerError(f"Failed to open file {proc_mounts}: {io_text(e)}") from None
    found: dict[str, str] = {}
    for line in lines:
        fields = line.split()
        if len(fields) != 6 or fields[2] not in ("cgroup", "cgroup2"):
            continue
        target, fstype, options = fields[1], fields[2], fields[3]
        if version == 2 and fstype == "cgroup2":
            return {"unified": target}
        if version == 1 and fstype == "cgroup":
            for option in options.split(","):
                found.setdefault(option, target)
    if not found:
        raise JailerError("Hierarchy not found: No hierarchy found for this cgroup version.")
    return found


def _available_controllers(mount: str) -> set[str]:
    try:
        with open(os.path.join(mount, "cgroup.controllers")) as f:
            return set(f.read().split())
    except OSError:
        return set()


def _enable_in_subtree(path: str, controller: str) -> None:
    """+controller in cgroup.subtree_control from the top of the hierarchy down to `path`."""
    control = os.path.join(path, "cgroup.subtree_control")
    if not os.path.exists(control):
        return
    if os.path.dirname(path) != path:
        _enable_in_subtree(os.path.dirname(path), controller)
    _writeln(control, f"+{controller}")


def _inherit_from_parent(path: str, file: str, depth: int) -> None:
    """Copy the parent's value of `file` into `path` (an empty parent inherits from its own)."""
    parent_file = os.path.join(os.path.dirname(path), file)
    line = _readln(parent_file)
    if not line and depth > 0:
        try:
            _inherit_from_parent(os.path.dirname(path), file, depth - 1)
        except JailerError:
            pass
        line = _readln(parent_file)
    if not line:
        raise JailerError(f"Failed to inherit cgroups configurations from file {file} in path {path}")
    _writeln(os.path.join(path, file), line)


def _readln(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()[:-1]
    except OSError as e:
        raise JailerError(f"Failed to read file {path} into a string: {io_text(e)}") from None


def _writeln(path: str, value) -> None:
    try:
        with open(path, "w") as f:
            f.write(f"{value}\n")
    except OSError as e:
        raise JailerError(f"Failed to write to {path}: {io_text(e)}") from None
