"""Asynchronous invocations (InvocationType Event), queued on disk: one file per event,
written and fsynced before the 202 answer, removed only once the event has run, so an event
accepted survives a restart of the service and runs at least once.

    STATE/queue/SEQUENCE-REQUESTID.json   {"function", "request_id", "payload" (base64), "attempts"}
"""
from __future__ import annotations

import base64
import json
import os
import threading
import time
from pathlib import Path

from pyrite.functions.store import write_atomically

RETRIES = 2                          # Lambda retries a failed asynchronous invocation twice


class EventQueue:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._cond = threading.Condition()
        self._taken: set[str] = set()

    def put(self, function: str, request_id: str, payload: bytes) -> None:
        entry = {"function": function, "request_id": request_id,
                 "payload": base64.b64encode(payload).decode(), "attempts": 0}
        name = f"{time.time_ns():020d}-{request_id}.json"
        write_atomically(self.directory / name, json.dumps(entry).encode())
        with self._cond:
            self._cond.notify()

    def take(self, timeout: float | None = None) -> tuple[str, dict] | None:
        """The oldest event no worker holds: (file name, entry), or None after `timeout`."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                for name in sorted(os.listdir(self.directory)):
                    if name.endswith(".json") and name not in self._taken:
                        try:
                            entry = json.loads((self.directory / name).read_text())
                        except (OSError, ValueError):
                            continue
                        self._taken.add(name)
                        return name, entry
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)

    def done(self, name: str) -> None:
        """The event ran: remove it for good."""
        try:
            os.unlink(self.directory / name)
        except FileNotFoundError:
            pass
        with self._cond:
            self._taken.discard(name)

    def retry(self, name: str, entry: dict) -> bool:
        """Count a failed attempt; False (and the event dropped) once its retries are spent."""
        entry["attempts"] += 1
        if entry["attempts"] > RETRIES:
            self.done(name)
            return False
        write_atomically(self.directory / name, json.dumps(entry).encode())
        with self._cond:
            self._taken.discard(name)
            self._cond.notify()
        return True

    def pending(self) -> int:
        return sum(1 for name in os.listdir(self.directory) if name.endswith(".json"))

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()
