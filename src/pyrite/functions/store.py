"""The state directory: each function's configuration, code and builds, kept across restarts.

    STATE/credentials                      (made on first start when none is given)
    STATE/functions/NAME/function.json     the configuration (written atomically)
    STATE/functions/NAME/code.zip          the current code as uploaded
    STATE/functions/NAME/builds/BUILD/     image, vm.state, vm.mem (the SnapStart snapshot)
    STATE/functions/NAME/log               START/END/REPORT and the handlers' output
    STATE/queue/                           asynchronous invocations (pyrite.functions.event_queue)
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

LOG_LIMIT = 8 * 1024 * 1024           # a function's log file is rotated (one old file kept) past this


@dataclass
class FunctionRecord:
    name: str
    runtime: str
    handler: str
    role: str
    description: str = ""
    timeout: int = 3                    # seconds, Lambda's default
    memory_size: int = 128              # MiB, Lambda's default
    environment: dict[str, str] = field(default_factory=dict)
    reserved_concurrency: int | None = None
    code_sha256: str = ""
    code_size: int = 0
    last_modified: str = ""
    revision_id: str = ""
    build_id: str = ""
    memory_used_mb: int = 0             # guest memory in use after init (from the snapshot)
    jail_uid: int = 0                   # the uid (and gid) its jailed clones run as; 0: not jailed


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Store:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.functions_dir = self.root / "functions"
        self.functions_dir.mkdir(parents=True, exist_ok=True)
        self._log_lock = threading.Lock()

    def function_dir(self, name: str) -> Path:
        return self.functions_dir / name

    def build_dir(self, name: str, build_id: str) -> Path:
        return self.function_dir(name) / "builds" / build_id

    def code_path(self, name: str) -> Path:
        return self.function_dir(name) / "code.zip"

    def log_path(self, name: str) -> Path:
        return self.function_dir(name) / "log"

    def load_all(self) -> list[FunctionRecord]:
        records = []
        for path in sorted(self.functions_dir.glob("*/function.json")):
            try:
                records.append(FunctionRecord(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError):
                continue                # a half-created function (no complete configuration) is skipped
        return records

    def save(self, record: FunctionRecord, code: bytes | None = None) -> None:
        directory = self.function_dir(record.name)
        directory.mkdir(parents=True, exist_ok=True)
        if code is not None:
            write_atomically(self.code_path(record.name), code)
        write_atomically(directory / "function.json", json.dumps(dataclasses.asdict(record), indent=1).encode())

    def delete(self, name: str) -> None:
        shutil.rmtree(self.function_dir(name), ignore_errors=True)

    def remove_builds_except(self, name: str, keep: str) -> None:
        builds = self.function_dir(name) / "builds"
        for build in builds.glob("*") if builds.exists() else ():
            if build.name != keep:
                shutil.rmtree(build, ignore_errors=True)   # clones keep their mapping of vm.mem

    def append_log(self, name: str, text: bytes) -> None:
        path = self.log_path(name)
        with self._log_lock:
            try:
                if path.exists() and path.stat().st_size > LOG_LIMIT:
                    os.replace(path, path.with_name("log.1"))
                with open(path, "ab") as f:
                    f.write(text)
            except OSError:
                pass                    # the function was deleted meanwhile

    def read_log(self, name: str, limit: int = 1 << 20) -> bytes:
        try:
            with open(self.log_path(name), "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - limit))
                return f.read()
        except OSError:
            return b""
