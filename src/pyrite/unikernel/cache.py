"""Where built images and library OS objects are cached (no heavy imports: `pyrite run`
looks up the demo image here on every start)."""
from __future__ import annotations

import os


def cache_root() -> str:
    """$PYRITE_CACHE, else ~/.cache/pyrite."""
    return os.environ.get("PYRITE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "pyrite")


def images_dir() -> str:
    return os.path.join(cache_root(), "images")
