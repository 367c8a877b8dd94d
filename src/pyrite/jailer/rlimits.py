"""--resource-limit fsize=N / no-file=N, installed as Firecracker's jailer does (resource_limits.rs):
soft = hard = N; RLIMIT_NOFILE is 2048 unless given."""
from __future__ import annotations

import resource
from dataclasses import dataclass

from .errors import JailerError

DEFAULT_NO_FILE = 2048
_U64_MAX = 2**64 - 1


@dataclass(frozen=True)
class ResourceLimits:
    file_size: int | None = None
    no_file: int = DEFAULT_NO_FILE

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
    """Rust's u64::from_str, with its error texts."""
    if value == "":
        reason = "cannot parse integer from empty string"
    elif not all(c in "0123456789" for c in value.removeprefix("+")) or value == "+":
        reason = "invalid digit found in string"
    elif int(value) > _U64_MAX:
        reason = "number too large to fit in target type"
    else:
        return int(value)
    raise JailerError(f"Invalid limit value for resource: {value}: {reason}")


def _set(which: int, value: int, name: str) -> None:
    value = resource.RLIM_INFINITY if value >= _U64_MAX else value
    try:
        resource.setrlimit(which, (value, value))
    except (OSError, ValueError):
        raise JailerError(f"Failed to set limit for resource: {name}") from None
