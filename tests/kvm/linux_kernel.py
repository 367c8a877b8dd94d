"""Debian's cloud kernel as test data: fetched with `apt-get download`, unpacked, cached."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

CACHE = Path(__file__).resolve().parents[2] / ".cache" / "kernels"
PACKAGE = "linux-image-cloud-amd64"


class KernelUnavailable(RuntimeError):
    """Debian's kernel cannot be fetched here (no apt tools, no mirror): tests skip on this only."""


def _run(*cmd: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired as e:
        raise KernelUnavailable(f"{' '.join(cmd)} took more than {e.timeout} s") from None


def _image_package() -> str:
    """The versioned image package the metapackage depends on."""
    for attempt in range(2):
        out = _run("apt-cache", "depends", PACKAGE).stdout
        names = [l.split()[-1] for l in out.splitlines() if "Depends: linux-image-" in l]
        if names:
            return names[0]
        if attempt == 0:
            _run("apt-get", "update", "-qq")
    raise KernelUnavailable(f"apt cannot resolve {PACKAGE}: {out.strip()!r}")


def debian_vmlinuz() -> Path:
    """Path of the cloud kernel's vmlinuz, downloading it on first use."""
    found = sorted(glob.glob(str(CACHE / "boot" / "vmlinuz-*")))
    if found:
        return Path(found[-1])
    for tool in ("apt-get", "apt-cache", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise KernelUnavailable(f"{tool} not found: the Linux kernel test needs Debian's apt tools")
    CACHE.mkdir(parents=True, exist_ok=True)
    package = _image_package()
    result = _run("apt-get", "download", package, cwd=CACHE)
    debs = sorted(CACHE.glob(f"{package}_*.deb"))
    if not debs:
        raise KernelUnavailable(f"apt-get download {package} failed: {result.stderr.strip()}")
    unpack = _run("dpkg-deb", "-x", str(debs[-1]), str(CACHE))
    if unpack.returncode != 0:
        raise RuntimeError(f"dpkg-deb -x {debs[-1].name} failed: {unpack.stderr.strip()}")
    os.unlink(debs[-1])
    return Path(sorted(glob.glob(str(CACHE / "boot" / "vmlinuz-*")))[-1])
