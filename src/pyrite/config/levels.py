"""Firecracker's log levels (LevelFilter): the names the API and the command line accept.

A module of its own so that `pyrite-vmm --level` is checked before the API socket opens
without loading the resource models.
"""
from __future__ import annotations

LOG_LEVELS = ("Off", "Error", "Warning", "Info", "Debug", "Trace")
_ALIASES = {"off": "Off", "error": "Error", "warning": "Warning", "warn": "Warning",
            "info": "Info", "debug": "Debug", "trace": "Trace"}


def parse_level(text: str) -> str:
    """The level named by `text`: case-insensitive, "Warn" accepted for Warning, as
    Firecracker's LevelFilter parses it. Raises ValueError("Invalid LevelFilter")."""
    try:
        return _ALIASES[text.lower()]
    except KeyError:
        raise ValueError("Invalid LevelFilter") from None
