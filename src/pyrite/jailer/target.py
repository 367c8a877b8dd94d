"""What runs in the jail.

A binary (Firecracker) is exec'd from its copy in the jail root, as Firecracker's jailer does.
pyrite's VMM is Python: its interpreter, standard library and packages live outside the jail,
so it cannot be exec'd there. When --exec-file is pyrite's VMM (its console-script launcher, or
a Python file that runs pyrite.api.cli), the jailer, itself running in the same Python, imports
everything the VMM needs before entering the jail (pyrite.api.preload) and, once jailed and with the
privileges dropped, calls the VMM's main() in this same process: no exec, and nothing of the
host's file system is visible or needed afterwards.
"""
from __future__ import annotations

import os
import sys
import time

from .errors import JailerError, io_text

_MARKER = b"pyrite.api.cli"
_SNIFF_BYTES = 4096


def is_pyrite_vmm(path: str) -> bool:
    """A launcher of pyrite's VMM: a small Python script that runs pyrite.api.cli."""
    try:
        with open(path, "rb") as f:
            head = f.read(_SNIFF_BYTES)
    except OSError:
        return False
    is_python = head.startswith(b"#!") and b"python" in head.split(b"\n", 1)[0] or path.endswith(".py")
    return is_python and _MARKER in head


def check_interpreter(path: str) -> None:
    """pyrite's VMM runs in the jailer's own interpreter: the launcher must name that one."""
    with open(path, "rb") as f:
        first = f.readline()
    if not first.startswith(b"#!"):
        return
    interpreter = os.fsdecode(first[2:].split()[0]) if first[2:].split() else ""
    if os.path.abspath(interpreter) != os.path.abspath(sys.executable):
        raise JailerError(f"{path} runs pyrite's VMM with {interpreter}, but this jailer runs in "
                          f"{sys.executable}: use the pyrite-jailer installed beside that VMM")


def vmm_arguments(instance_id: str, start_us: int, jailer_cpu_us: int, extra: list[str]) -> list[str]:
    """The arguments Firecracker's jailer passes to the VMM, then the user's."""
    return ["--id", instance_id, "--start-time-us", str(start_us),
            "--start-time-cpu-us", str(time.process_time_ns() // 1000),
            "--parent-cpu-time-us", str(jailer_cpu_us), *extra]


def exec_binary(path: str, arguments: list[str]) -> None:
    try:
        os.execve(path, [path, *arguments], {})
    except OSError as e:
        raise JailerError(f"Failed to exec into Firecracker: {io_text(e)}") from None


def run_pyrite_vmm(path: str, arguments: list[str]) -> int:
    """pyrite's VMM in this process (everything it imports was preloaded)."""
    from pyrite.api.cli import main
    sys.argv = [path, *arguments]
    return main(arguments)
