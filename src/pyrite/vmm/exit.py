"""How a microVM ended: one record, shared by the CLI, the Python API and the REST API."""
from __future__ import annotations


class VmExit:
    """`reason`: exit-port | reset | halt | stopped | crash | internal-error | fail-entry | error;
    `status`: the exit status `pyrite run` gives. Immutable by convention."""
    __slots__ = ("reason", "status", "message")

    def __init__(self, reason: str, status: int, message: str = ""):
        self.reason = reason
        self.status = status
        self.message = message

    @property
    def ok(self) -> bool:
        return self.reason in ("exit-port", "reset", "halt", "stopped")

    def __eq__(self, other: object) -> bool:
        if type(other) is not VmExit:
            return NotImplemented
        return (self.reason, self.status, self.message) == (other.reason, other.status, other.message)

    def __hash__(self) -> int:
        return hash((self.reason, self.status, self.message))

    def __repr__(self) -> str:
        return f"VmExit(reason={self.reason!r}, status={self.status!r}, message={self.message!r})"
