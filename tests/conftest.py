"""Fixtures shared by the test modules."""

import pytest

from aiocache_swr.testing import FakeClock

from ._fetcher import Fetcher


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    """A fresh FakeClock (test modules may define their own)."""
    return FakeClock()


@pytest.fixture
def fetcher() -> Fetcher:
    """A controllable data source (see tests/_fetcher.py)."""
    return Fetcher()
