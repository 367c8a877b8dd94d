r"""What `pyrite run IMAGE ARGS...` needs to know about pyrite images, cheaply (os and
struct only: it runs on every start).

ARGS travel as one kernel command line, the one QEMU's `-append` or Firecracker's
`boot_args` would carry just the same, which the library OS splits back (libos/boot/args.c):
words at blanks outside double quotes; inside quotes `\"` is `"`, `\\` is `\` and `\xHH`
the byte HH; an unquoted NAME=VALUE word before `--` is an environment variable.
quote_args() writes any argument so that it comes back exactly, and environment variables,
in printable ASCII (Firecracker accepts nothing else).
"""
from __future__ import annotations

import os

from pyrite.arch.x86_64.loader.pyrite_image import is_pyrite_image  # noqa: F401  (re-exported)

VMM_WORD_PREFIX = "virtio_mmio.device="
_NAME_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_NAME_REST = _NAME_START | frozenset("0123456789.")


def _is_env_word(word: str) -> bool:
    """NAME=VALUE with NAME a C identifier (dots allowed, as in Linux's parameters)."""
    name, eq, _ = word.partition("=")
    return bool(eq) and bool(name) and name[0] in _NAME_START and all(c in _NAME_REST for c in name)


class ArgumentError(ValueError):
    """An argument cannot travel on a kernel command line; the message names it."""


def quote_word(text: str) -> str:
    """`text` as one command-line word that the library OS reads back as exactly `text`,
    never as an environment variable, a `--` or a VMM device word."""
    if "\0" in text:
        raise ArgumentError(f"argument {text!r}: a NUL byte cannot be passed on the kernel command line")
    plain = text and all("!" <= c <= "~" and c not in '"\\' for c in text)     # printable, no blank
    if plain and text != "--" and not _is_env_word(text) and not text.startswith(VMM_WORD_PREFIX):
        return text
    out = []
    for byte in os.fsencode(text):
        if byte in (0x22, 0x5C):                # " and \
            out.append("\\" + chr(byte))
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\x{byte:02x}")
    return '"' + "".join(out) + '"'


def quote_args(args: list[str], env: dict[str, str] | None = None) -> str:
    """One command line giving `main` exactly `args` as argv[1:] (blanks, quotes,
    backslashes, `=`, `--`, empty strings, any byte) and `env` as its environment."""
    words = []
    for name, value in (env or {}).items():
        if not _is_env_word(f"{name}="):
            raise ArgumentError(f"environment variable {name!r}: the name must be a C identifier")
        words.append(f"{name}={quote_word(value) if value else ''}")
    return " ".join(words + [quote_word(arg) for arg in args])


