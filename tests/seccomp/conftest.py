"""Seccomp tests use the guest builder of tests/kvm and the API client of tests/api."""
from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
for helpers in (TESTS / "kvm", TESTS / "api"):
    if str(helpers) not in sys.path:
        sys.path.append(str(helpers))
