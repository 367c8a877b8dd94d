"""--resource-limit fsize=N / no-file=N, installed as Firecracker's jailer does (resource_limits.rs):
soft = hard = N; RLIMIT_NOFILE is 2048 unless given."""
from __future__ import annotations

import resource

from .errors import JailerError, parse_uint

DEFAULT_NO_FILE = 2048
_U64_MAX = 2**64 - 1


class ResourceLimits:
    __slots__ = ("file_size", "no_file")

    def __init__(self, file_size: int | None = None, no_file: int = DEFAULT_NO_FILE):
        self.file_size, self.no_file = file_size, no_file

    def install(self) -> None:
        if self.file_size is not None:
            _set(resource.RLIMIT_FSIZE, self.file_size, "size of file")
        _set(resource.RLIMIT_NOFILE, self.no_file, "number of file descriptors")


def parse(values: list[str]) -> ResourceLimits:
    limits: dict = {}
    for arg in values:
        name, sep, value = arg.partition("=")
        if not sep:
            raise JailerError(f"Invalid format for resources limits: {arg}")
        number = _parse_u64(value)
        if name == "fsize":
            limits["file_size"] = number
        elif name == "no-file":
            limits["no_file"] = number
        else:
            raise JailerError(f"Invalid resource argument: {name}")
    return ResourceLimits(**limits)


def _parse_u64(value: str) -> int:
    try:
        return parse_uint(value, 64)
    except ValueError as e:
        raise JailerError(f"Invalid limit value for resource: {value}: {e}") from None


def _set(which: int, value: int, name: str) -> None:
    value = resource.RLIM_INFINITY if value >= _U64_MAX else value
    try:
        resource.setrlimit(which, (value, value))
    except (OSError, ValueError):
        raise JailerError(f"Failed to set limit for resource: {name}") from None
