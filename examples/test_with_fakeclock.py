"""Testing code that uses aiocache-swr, without sleeping: a FakeClock moves time by hand.

    pytest examples/test_with_fakeclock.py

The code under test is ``PriceService``: it owns an ``SWRCache`` and a cached
lookup in front of a slow backend.  Each test builds its own service with its
own ``FakeClock``, so tests do not share cached values, and moves the clock
past ``ttl`` (or ``ttl + stale_ttl``) instead of waiting.  ``cache.wait_idle()``
returns once background refreshes have finished, so a test can check what a
refresh did.  Async tests run with anyio's pytest plugin (installed with anyio,
a dependency of aiocache-swr).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from aiocache_swr import SWRCache
from aiocache_swr.testing import FakeClock

pytestmark = pytest.mark.anyio

TTL = 60.0
STALE_TTL = 600.0


# --------------------------------------------------------- the code under test


class Backend:
    """A stand-in for the slow price API: records calls, can be made to fail."""

    def __init__(self) -> None:
        self.prices = {"apple": 100}
        self.calls: list[str] = []
        self.down = False

    async def fetch_price(self, sku: str) -> int:
        self.calls.append(sku)
        if self.down:
            raise ConnectionError("backend down")
        return self.prices[sku]


class PriceService:
    def __init__(self, backend: Backend, clock: FakeClock | None = None) -> None:
        self.cache = SWRCache(clock=clock)
        self.backend = backend

        @self.cache.cached(ttl=TTL, stale_ttl=STALE_TTL)
        async def price(sku: str) -> int:
            return await backend.fetch_price(sku)

        self.price = price


# ------------------------------------------------------------------- fixtures


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def backend() -> Backend:
    return Backend()


@pytest.fixture
async def service(backend: Backend, clock: FakeClock) -> AsyncIterator[PriceService]:
    svc = PriceService(backend, clock)
    async with svc.cache:  # background refreshes run, and are closed, inside the test
        yield svc


# ---------------------------------------------------------------------- tests


async def test_within_ttl_the_backend_is_called_once(
    service: PriceService, backend: Backend, clock: FakeClock
) -> None:
    assert await service.price("apple") == 100
    clock.advance(TTL - 1)
    assert await service.price("apple") == 100
    assert backend.calls == ["apple"]


async def test_a_stale_price_is_served_then_refreshed_in_the_background(
    service: PriceService, backend: Backend, clock: FakeClock
) -> None:
    await service.price("apple")
    backend.prices["apple"] = 120
    clock.advance(TTL)  # now stale
    assert await service.price("apple") == 100  # the old price, at once
    await service.cache.wait_idle()  # the background refresh has finished
    assert await service.price("apple") == 120
    assert backend.calls == ["apple", "apple"]


async def test_past_the_stale_window_the_price_is_recomputed_inline(
    service: PriceService, backend: Backend, clock: FakeClock
) -> None:
    await service.price("apple")
    backend.prices["apple"] = 130
    clock.advance(TTL + STALE_TTL)
    assert await service.price("apple") == 130


async def test_a_failing_backend_keeps_serving_the_stale_price(
    service: PriceService, backend: Backend, clock: FakeClock
) -> None:
    await service.price("apple")
    backend.down = True
    clock.advance(TTL)
    assert await service.price("apple") == 100
    await service.cache.wait_idle()
    assert await service.price("apple") == 100  # still served; no retry before the backoff
    info = service.price.cache_info()
    assert info.refresh_errors == 1
    assert backend.calls == ["apple", "apple"]


async def test_refresh_returns_the_latest_price_at_once(
    service: PriceService, backend: Backend
) -> None:
    await service.price("apple")
    backend.prices["apple"] = 90
    assert await service.price.refresh("apple") == 90
    assert await service.price("apple") == 90
