"""The on_event hook: every kind of event reaches the listener; a broken one is harmless."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import anyio
import pytest

from aiocache_swr import CacheEvent, SWRCache
from aiocache_swr._store import MemoryStore, Record
from aiocache_swr.testing import FakeClock

pytestmark = pytest.mark.anyio


async def test_events_feed_counters() -> None:
    """Hits, stale hits, misses, refresh outcomes and evictions arrive as CacheEvents."""
    clock = FakeClock()
    counts: Counter[str] = Counter()
    fail = False

    def count(event: CacheEvent) -> None:
        counts[event.kind] += 1

    async with SWRCache(clock=clock, on_event=count) as cache:

        @cache.cached(ttl=10, maxsize=2, namespace="demo")
        async def f(x: int) -> int:
            if fail:
                raise ConnectionError("down")
            return x

        await f(1)  # miss
        await f(1)  # hit
        clock.advance(10)
        await f(1)  # stale hit -> refresh_ok
        await cache.wait_idle()
        clock.advance(10)
        fail = True
        await f(1)  # stale hit -> refresh_error
        await cache.wait_idle()
        fail = False
        await f(2)  # miss
        await f(3)  # miss, evicts 1
    assert counts == Counter(miss=3, hit=1, stale_hit=2, refresh_ok=1, refresh_error=1, eviction=1)


async def test_store_events_name_the_function() -> None:
    """A store hit and a store error carry the function's namespace (and the error)."""
    events: list[CacheEvent] = []
    store = MemoryStore()
    store.put("ns", "(int:1,)", Record("from disk", None, 1_000_000.0))

    class Broken(MemoryStore):
        async def get_many(self, namespace: str, keys: Any) -> dict[str, Record]:
            raise OSError("disk gone")

    async with SWRCache(clock=FakeClock(), on_event=events.append) as cache:

        @cache.cached(ttl=10, namespace="ns", store=store)
        async def f(x: int) -> str:
            return "computed"

        @cache.cached(ttl=10, namespace="broken", store=Broken())
        async def g(x: int) -> str:
            return "computed"

        assert await f(1) == "from disk"
        assert await g(1) == "computed"
    kinds = [(e.kind, e.function) for e in events if e.kind in ("store_hit", "store_error")]
    assert kinds == [("store_hit", "ns"), ("store_error", "broken")]
    [error] = [e.error for e in events if e.kind == "store_error"]
    assert isinstance(error, OSError)


async def test_a_failing_listener_never_breaks_a_call(caplog: pytest.LogCaptureFixture) -> None:
    """A listener that raises is logged; the call still returns its value."""

    def broken(event: CacheEvent) -> None:
        raise RuntimeError("metrics down")

    async with SWRCache(clock=FakeClock(), on_event=broken) as cache:

        @cache.cached(ttl=10)
        async def f() -> int:
            return 5

        with caplog.at_level(logging.ERROR, logger="aiocache_swr"):
            assert await f() == 5
            assert await f() == 5
    assert "on_event listener failed" in caplog.text


def test_on_event_must_be_callable() -> None:
    """SWRCache(on_event=) refuses a non-callable at construction."""
    with pytest.raises(TypeError, match="on_event="):
        SWRCache(on_event="metrics")  # type: ignore[arg-type]


async def test_no_listener_means_no_events_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without on_event, no CacheEvent is ever constructed (zero cost when unused)."""
    import aiocache_swr._function as function_module

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("an event was built without a listener")

    monkeypatch.setattr(function_module, "CacheEvent", forbidden)
    async with SWRCache(clock=FakeClock()) as cache:

        @cache.cached(ttl=10, maxsize=1)
        async def f(x: int) -> int:
            await anyio.lowlevel.checkpoint()
            return x

        for x in (1, 1, 2):
            await f(x)


async def test_a_refresh_overtaken_by_an_invalidation_still_reports_refresh_ok() -> None:
    """refresh() that succeeds after invalidate() overtook it returns its value, keeps
    nothing, and still reports its outcome: refresh_ok, as every finished refresh does."""
    events: list[CacheEvent] = []
    cache = SWRCache(clock=FakeClock(), on_event=events.append)
    started, release = anyio.Event(), anyio.Event()
    got: list[int] = []

    @cache.cached(ttl=60, namespace="demo")
    async def f(x: int) -> int:
        started.set()
        await release.wait()
        return x

    async def editor() -> None:
        got.append(await f.refresh(1))

    async with cache, anyio.create_task_group() as tg:
        tg.start_soon(editor)
        await started.wait()
        await f.invalidate(1)
        release.set()
    assert got == [1]
    assert f.cache_info().currsize == 0
    assert [(e.kind, e.key) for e in events] == [("refresh_ok", (1,))]
