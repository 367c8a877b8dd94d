"""The jailer's failures, worded as Firecracker's JailerError variants (src/jailer/src/main.rs)."""
from __future__ import annotations

from pyrite.config.errors import io_error_text as io_text  # noqa: F401  (Rust's io::Error wording)


class JailerError(Exception):
    """A jail could not be made; the text is Firecracker's for the same failure."""


def parse_uint(text: str, bits: int) -> int:
    """Rust's `u<bits>::from_str`: an optional '+' and ASCII digits; ValueError with Rust's reason."""
    digits = text[1:] if text.startswith("+") else text
    if not digits:
        raise ValueError("cannot parse integer from empty string")
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError("invalid digit found in string")
    if int(digits) >= 1 << bits:
        raise ValueError("number too large to fit in target type")
    return int(digits)
