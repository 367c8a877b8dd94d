"""Fixtures for the REST API tests; the client helpers live in api_client.py."""
from __future__ import annotations

import pytest
import yaml

from api_client import SWAGGER, start_vmm


@pytest.fixture(scope="session")
def swagger() -> dict:
    if not SWAGGER.exists():
        pytest.skip(f"the swagger is not at {SWAGGER}")
    return yaml.safe_load(SWAGGER.read_text())


@pytest.fixture
def vmm(tmp_path):
    """A fresh pyrite-vmm process with an API socket, killed after the test."""
    v = start_vmm(tmp_path, "--id", "test-vm")
    yield v
    v.stop()
