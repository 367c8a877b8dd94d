"""The jailer's failures, worded as Firecracker's JailerError variants (src/jailer/src/main.rs)."""
from __future__ import annotations

import os


class JailerError(Exception):
    """A jail could not be made; the text is Firecracker's for the same failure."""


def io_text(e: OSError) -> str:
    """An OSError as Rust's io::Error prints it: 'No such file or directory (os error 2)'."""
    if e.errno is None:
        return str(e)
    return f"{os.strerror(e.errno)} (os error {e.errno})"
