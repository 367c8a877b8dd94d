"""How a microVM ended: one record, shared by the CLI, the Python API and the REST API."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VmExit:
    reason: str       # exit-port | reset | halt | stopped | crash | internal-error | fail-entry | error
    status: int       # the exit status `pyrite run` gives
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.reason in ("exit-port", "reset", "halt", "stopped")
