"""Build the test guests in tests/guests/ with pyrite's library OS (cached by content)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pyrite.unikernel.build import build_image

GUESTS = Path(__file__).resolve().parents[1] / "guests"

# Ring-0 images run the C library (musl, which uses SSE) at CPL 0. KVM's PVM back end
# emulates guest CPL 0 with an emulator that has no SSE arithmetic (pxor is an emulation
# failure), so there they stop at their first SSE instruction; VT-x/AMD-V run them natively.
PVM = os.path.exists("/sys/module/kvm_pvm")
needs_native_cpl0 = pytest.mark.skipif(
    PVM, reason="KVM is PVM here: guest CPL 0 is emulated without SSE, and ring-0 images run musl "
                "(SSE) at CPL 0; they need hardware virtualization (VT-x/AMD-V)")


def guest_image(name: str, **options) -> Path:
    """tests/guests/<name>.c built into an image; skips only when gcc is missing (a guest
    that does not compile is a failure)."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed (apt-get install gcc): cannot build the test guests")
    return build_image([GUESTS / f"{name}.c"], **options)


def host_musl_build(source: Path, exe: Path) -> Path:
    """`source` built for the host with the images' own musl: its system calls made by the
    `syscall` instruction (tests/guests/host/musl_start.c), everything else the same, so a
    guest's output can be compared byte for byte with the host's."""
    from pyrite.unikernel.build import APP_CFLAGS, include_flags
    from pyrite.unikernel.musl import musl_build
    musl = musl_build()
    subprocess.run(["gcc", *APP_CFLAGS, *include_flags(musl), "-static", "-nostdlib", "-no-pie", str(source),
                    str(GUESTS / "host" / "musl_start.c"), str(musl / "lib" / "libc.a"), "-lgcc", "-o", str(exe)],
                   check=True, capture_output=True)
    return exe


def parse_facts(console: bytes) -> dict:
    """The guests' `key=value` and `e820 ...` lines, as plain data."""
    facts: dict = {"e820": [], "initrd": [], "zeropage": {}, "argv": [], "env": []}
    for raw in console.decode(errors="replace").splitlines():
        line = raw.rstrip("\r")
        word, _, rest = line.partition(" ")
        if word == "e820":
            addr, size, kind = rest.split()
            facts["e820"].append((int(addr, 16), int(size, 16), int(kind)))
        elif word == "initrd":
            addr, size, digest = rest.split()
            facts["initrd"].append((int(addr, 16), int(size, 16), digest))
        elif word == "zeropage":
            key, _, value = rest.partition("=")
            facts["zeropage"][key] = int(value, 16)
        elif word == "env":
            facts["env"].append(rest)
        elif line.startswith("cpus="):
            cpus, source = line.split()
            facts["cpus"], facts["cpu_source"] = int(cpus[5:]), source.partition("=")[2]
        elif line.startswith("argv["):
            facts["argv"].append(line.partition("=")[2])
        elif "=" in line and " " not in line.partition("=")[0]:
            key, _, value = line.partition("=")
            facts.setdefault(key, value)
    return facts


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"
