"""`pyrite snapshot COMMAND`: work on snapshot files. Each command is a function taking its
arguments, listed in COMMANDS and described in USAGE."""
from __future__ import annotations

import sys

USAGE = """usage: pyrite snapshot rebase BASE_MEM DIFF_MEM

rebase   writes the pages of DIFF_MEM, the memory file of a Diff snapshot, onto BASE_MEM, the
         memory file of the snapshot before it (Full, or already rebased), in place: BASE_MEM
         then holds the guest memory at the Diff snapshot's time, and loads with the Diff
         snapshot's state file. Rebase layers in the order they were created."""


class UsageError(Exception):
    pass


def cmd_rebase(argv: list[str]) -> int:
    if any(arg in ("-h", "--help") for arg in argv):
        print(USAGE)
        return 0
    if len(argv) != 2:
        raise UsageError(f"expected BASE_MEM DIFF_MEM, got {len(argv)} argument(s)")
    from .rebase import RebaseError, rebase
    try:
        copied = rebase(argv[0], argv[1])
    except RebaseError as e:
        print(f"pyrite snapshot rebase: {e}", file=sys.stderr)
        return 1
    print(f"pyrite snapshot rebase: {copied} bytes of {argv[1]} written onto {argv[0]}", file=sys.stderr)
    return 0


COMMANDS = {"rebase": cmd_rebase}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"pyrite snapshot: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[command](rest)
    except UsageError as e:
        print(f"pyrite snapshot {command}: {e}", file=sys.stderr)
        return 2
