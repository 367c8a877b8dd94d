"""Why a snapshot could not be created or loaded: one type per cause, so that the API can give
Firecracker's text for each (pyrite.api.boot LOAD_ERRORS). Imports nothing: the API loads it
at start-up without the snapshot code itself.
"""
from __future__ import annotations


class SnapshotError(Exception):
    """A snapshot that cannot be created or loaded; the text says which file and why."""


class NotPausedError(SnapshotError):
    """create_snapshot on a microVM that is running."""


class SnapshotFileError(SnapshotError):
    """A snapshot or memory file that cannot be opened, written or read (`which`: "snapshot" or
    "memory"; `operation`: "open", "write", "read"; `error`: the OSError)."""

    def __init__(self, which: str, path: str, operation: str, error: OSError):
        super().__init__(f"{which} file {path}: cannot {operation}: {error.strerror}")
        self.which, self.path, self.operation, self.error = which, path, operation, error


class StateFileError(SnapshotError):
    """A state file that is not a valid pyrite snapshot (truncated, corrupted, wrong version)."""


class MemoryFileError(SnapshotError):
    """A memory file that does not hold the snapshot's guest memory."""


class OverrideError(SnapshotError):
    """A load-time override naming a device the snapshot does not have."""


class RestoreError(SnapshotError):
    """Saved state that this host or this build cannot take (CPU features, vCPUs, layout, records)."""


class UffdMemoryError(SnapshotError):
    """Guest memory that cannot be set up for the Uffd backend. `detail` is Firecracker's text
    for the failed step (GuestMemoryFromUffdError); the message also names the socket."""

    def __init__(self, path: str, detail: str):
        super().__init__(f"memory backend socket {path}: {detail}")
        self.path, self.detail = path, detail
