"""Fixtures of the function service tests (helpers in lambda_service.py)."""
from __future__ import annotations

import shutil

import pytest

from lambda_service import Running, short_state_dir


@pytest.fixture(scope="module")
def running():
    """The service as a user gets it: clones jailed when the tests run as root."""
    state = short_state_dir()
    service = Running(state, pool_size=1, max_concurrency=8)
    yield service
    service.close()
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def lam(running):
    return running.client()
