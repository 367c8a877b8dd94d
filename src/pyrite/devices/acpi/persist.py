"""Saved state of the ACPI devices: plain records (as Firecracker's VMGenIDState)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class VmGenIdState:
    """Where the generation ID lives and the GSI that announces a new one. The ID itself is
    not saved: it is in guest memory, and a restore replaces it."""
    gsi: int = 0
    addr: int = 0
