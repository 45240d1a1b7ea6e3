"""Races between callers, background refreshes and invalidation (SPEC section 2, rules 1-9).

Time only moves through FakeClock; tasks are ordered with anyio Events and
``wait_all_tasks_blocked``.  A fetch's result is ``"<key>:<n>"``, ``n`` counting
the calls made for that key, so a value tells which computation produced it.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from aiocache_swr import SWRCache
from aiocache_swr._backoff import BACKOFF_CAP
from aiocache_swr._runner import Signal
from aiocache_swr._store import MemoryStore
from aiocache_swr.testing import FakeClock

from ._fetcher import Fetcher

pytestmark = pytest.mark.anyio


async def make_stale(f: Any, clock: FakeClock, fetcher: Fetcher, key: Any, ttl: float) -> None:
    """Compute ``key`` once, then move the clock so its entry is stale."""
    assert await f(key) == f"{key}:1"
    clock.advance(ttl + 1)


async def _append(results: list[Any], fn: Any, *args: Any) -> None:
    results.append(await fn(*args))


async def _capture(results: list[Any], fn: Any, *args: Any) -> None:
    try:
        results.append(await fn(*args))
    except Exception as exc:
        results.append(exc)


# -- checked commits (rule 7) --------------------------------------------------------


async def test_refresh_finishing_after_invalidate_is_not_written(clock, fetcher):
    """A background refresh that completes after invalidate(key) does not write its result."""
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10)
        async def f(key):
            return await fetcher(key)

        await make_stale(f, clock, fetcher, 1, 10)
        fetcher.hold()
        assert await f(1) == "1:1"  # stale; refresh 1:2 starts and blocks
        await wait_all_tasks_blocked()
        await f.invalidate(1)
        fetcher.release()
        await cache.wait_idle()
        assert f.cache_info().currsize == 0
        assert await f(1) == "1:3"  # a miss that recomputes
        assert f.cache_info().misses == 2


async def test_refresh_finishing_after_cache_clear_is_not_written(clock, fetcher):
    """A background refresh that completes after cache_clear() does not write its result."""
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10)
        async def f(key):
            return await fetcher(key)

        await make_stale(f, clock, fetcher, 1, 10)
        fetcher.hold()
        assert await f(1) == "1:1"
        await wait_all_tasks_blocked()
        await f.cache_clear()
        fetcher.release()
        await cache.wait_idle()
        assert f.cache_info().currsize == 0
        assert await f(1) == "1:3"


async def test_refresh_finishing_after_invalidate_tags_is_not_written(clock, fetcher):
    """A background refresh that completes after invalidate_tags(its tag) is not written."""
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10, tags=lambda key: [f"item:{key}"])
        async def f(key):
            return await fetcher(key)

        await make_stale(f, clock, fetcher, 1, 10)
        await make_stale(f, clock, fetcher, 2, 10)
        fetcher.hold()
        assert await f(1) == "1:1"
        await wait_all_tasks_blocked()
        await cache.invalidate_tags("item:1")
        fetcher.release()
        await cache.wait_idle()
        assert f.cache_info().currsize == 1  # key 2 (tag item:2) stays
        assert await f(1) == "1:3"


async def test_miss_after_invalidate_does_not_join_the_doomed_fetch(clock, fetcher):
    """After invalidate, a new caller starts a new computation instead of joining the old one."""
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10)
        async def f(key):
            return await fetcher(key)

        results = []
        fetcher.hold()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_append, results, f, 1)
            await wait_all_tasks_blocked()
            await f.invalidate(1)
            tg.start_soon(_append, results, f, 1)
            await wait_all_tasks_blocked()
            assert fetcher.calls == [1, 1]
            fetcher.release()
        assert sorted(results) == ["1:1", "1:2"]
        assert await f(1) == "1:2"  # only the newer computation was stored


async def test_invalidate_before_promoted_refresh_starts_still_answers_its_waiter(clock, fetcher):
    """A doomed refresh that a miss is already waiting for still answers that caller."""
    async with SWRCache(clock=clock, max_concurrent_refreshes=1) as cache:

        @cache.cached(ttl=10, stale_ttl=5)
        async def f(key):
            return await fetcher(key)

        assert await f("b") == "b:1"
        clock.advance(4)
        assert await f("a") == "a:1"
        clock.advance(10.5)  # a: age 10.5, b: age 14.5, both stale
        fetcher.hold()
        assert await f("a") == "a:1"  # refresh of a runs (blocked)
        assert await f("b") == "b:1"  # refresh of b is queued
        clock.advance(1)  # b expires: its next call is a miss that promotes the queued refresh
        results: list[Any] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_capture, results, f, "b")
            await anyio.lowlevel.checkpoint()  # the miss promoted b; its task has not run yet
            await f.invalidate("b")
            await wait_all_tasks_blocked()
            fetcher.release()
        assert results == ["b:2"]  # not an error: the cache was never closed


# -- refresh() against a background refresh (rules 4, 7) -------------------------


async def test_background_refresh_finishing_after_refresh_call_does_not_overwrite(clock, fetcher):
    """refresh() supersedes an in-flight background refresh; the older result is discarded."""
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10)
        async def f(key):
            return await fetcher(key)

        await make_stale(f, clock, fetcher, 1, 10)
        fetcher.hold()
        assert await f(1) == "1:1"  # background refresh 1:2 starts, blocks
        await wait_all_tasks_blocked()
        gate = fetcher.gate
        fetcher.gate = None  # refresh() is not blocked
        assert await f.refresh(1) == "1:3"
        assert await f(1) == "1:3"
        gate.set()  # the older background refresh now finishes
        await cache.wait_idle()
        assert await f(1) == "1:3"
        assert f.cache_info().currsize == 1


async def test_background_refresh_finishing_during_refresh_call_is_not_written(clock, fetcher):
    """An older background refresh that ends while refresh() is in flight never commits."""
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10)
        async def f(key):
            return await fetcher(key)

        await make_stale(f, clock, fetcher, 1, 10)
        background = fetcher.hold()
        assert await f(1) == "1:1"
        await wait_all_tasks_blocked()
        forced = fetcher.hold()
        results: list[Any] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_append, results, f.refresh, 1)
            await wait_all_tasks_blocked()
            background.set()  # 1:2 finishes first
            await wait_all_tasks_blocked()
            assert await f(1) == "1:1"  # 1:2 was not written: still the stale value
            forced.set()
        assert results == ["1:3"]
        assert await f(1) == "1:3"


async def test_miss_during_refresh_call_waits_for_it(clock, fetcher):
    """A miss arriving while refresh() computes joins it and gets the refresh() value."""
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10)
        async def f(key):
            return await fetcher(key)

        fetcher.hold()
        results: list[Any] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_append, results, f.refresh, 1)
            await wait_all_tasks_blocked()
            tg.start_soon(_append, results, f, 1)
            await wait_all_tasks_blocked()
            fetcher.release()
        assert results == ["1:1", "1:1"]
        assert fetcher.calls == [1]


# -- eviction ---------------------------------------------------------------------


async def test_refresh_finishing_after_eviction_commits_and_counts_eviction(clock, fetcher):
    """A refresh whose key was evicted meanwhile still commits, evicting the LRU entry."""
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10, maxsize=1)
        async def f(key):
            return await fetcher(key)

        await make_stale(f, clock, fetcher, 1, 10)
        fetcher.hold()
        assert await f(1) == "1:1"  # refresh 1:2 blocks
        await wait_all_tasks_blocked()
        gate = fetcher.gate
        fetcher.gate = None
        assert await f(2) == "2:1"  # evicts key 1
        assert f.cache_info().evictions == 1
        gate.set()
        await cache.wait_idle()
        info = f.cache_info()
        assert (info.evictions, info.currsize) == (2, 1)
        assert await f(1) == "1:2"  # a fresh hit on the refreshed value
        assert f.cache_info().hits == 1


# -- single flight across misses and refreshes (rules 1, 3, 4) ----------------------


async def test_miss_joins_in_flight_background_refresh(clock, fetcher):
    """A miss arriving while a background refresh of the key runs waits for that refresh."""
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10, stale_ttl=5)
        async def f(key):
            return await fetcher(key)

        await make_stale(f, clock, fetcher, 1, 10)
        fetcher.hold()
        assert await f(1) == "1:1"  # refresh 1:2 blocks
        await wait_all_tasks_blocked()
        clock.advance(10)  # past ttl + stale_ttl: the next call is a miss
        results: list[Any] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_append, results, f, 1)
            await wait_all_tasks_blocked()
            assert results == []
            fetcher.release()
        assert results == ["1:2"]
        assert fetcher.calls == [1, 1]


async def test_miss_promotes_refresh_queued_behind_the_limit(clock, fetcher):
    """A miss on a key whose refresh is queued starts it at once instead of waiting its turn."""
    async with SWRCache(clock=clock, max_concurrent_refreshes=1) as cache:

        @cache.cached(ttl=10, stale_ttl=5)
        async def f(key):
            return await fetcher(key)

        assert await f("b") == "b:1"
        clock.advance(4)
        assert await f("a") == "a:1"
        clock.advance(10.5)  # both stale
        gate_a = fetcher.hold()
        assert await f("a") == "a:1"  # refresh of a takes the only slot and blocks
        await wait_all_tasks_blocked()
        fetcher.gate = None  # later fetches do not block
        assert await f("b") == "b:1"  # refresh of b is queued
        await wait_all_tasks_blocked()
        assert fetcher.calls == ["b", "a", "a"]  # b's refresh has not started
        clock.advance(1)  # b expires
        with anyio.fail_after(5):
            assert await f("b") == "b:2"  # promoted: does not wait for a's refresh
        assert fetcher.calls == ["b", "a", "a", "b"]
        assert fetcher.running == 1  # a is still blocked
        gate_a.set()


async def test_max_concurrent_refreshes_bounds_running_refreshes(clock, fetcher):
    """With max_concurrent_refreshes=2, 10 stale keys never run more than 2 fetches at once."""
    async with SWRCache(clock=clock, max_concurrent_refreshes=2) as cache:

        @cache.cached(ttl=10)
        async def f(key):
            return await fetcher(key)

        for key in range(10):
            assert await f(key) == f"{key}:1"
        clock.advance(11)
        tasks_before = len(asyncio.all_tasks())
        gate = fetcher.hold()
        for key in range(10):
            assert await f(key) == f"{key}:1"  # stale served at once
        await wait_all_tasks_blocked()
        assert fetcher.running == 2
        assert len(asyncio.all_tasks()) - tasks_before == 2  # the other 8 wait, not as tasks
        for key in range(10):
            assert await f(key) == f"{key}:1"  # still served while refreshes wait
        fetcher.gate = None
        gate.set()
        await cache.wait_idle()
        assert fetcher.max_running == 2
        assert f.cache_info().refreshes == 10
        for key in range(10):
            assert await f(key) == f"{key}:2"


# -- cancellation (rule 5) ----------------------------------------------------------


@pytest.mark.parametrize("stage", ["before_fetch_starts", "while_fetch_runs"])
async def test_cancelled_waiter_does_not_disturb_other_waiters(clock, fetcher, stage):
    """A cancelled waiter stops waiting; the others get the value; the fetch runs once."""
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10)
        async def f(key):
            return await fetcher(key)

        fetcher.hold()
        results: dict[int, Any] = {}
        scopes: dict[int, anyio.CancelScope] = {}

        async def waiter(i: int) -> None:
            with anyio.CancelScope() as scopes[i]:
                results[i] = await f(1)

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter, 0)
            if stage == "before_fetch_starts":
                await anyio.lowlevel.checkpoint()  # waiter 0 spawned the fetch, not yet run
                scopes[0].cancel()
            await wait_all_tasks_blocked()
            tg.start_soon(waiter, 1)
            tg.start_soon(waiter, 2)
            await wait_all_tasks_blocked()
            scopes[0].cancel()
            await wait_all_tasks_blocked()
            fetcher.release()
        assert results == {1: "1:1", 2: "1:1"}
        assert fetcher.calls == [1]


async def test_last_waiter_cancelled_fetch_still_completes_and_is_stored(clock, fetcher):
    """When the only waiter is cancelled the fetch still finishes and its value is stored."""
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10)
        async def f(key):
            return await fetcher(key)

        fetcher.hold()
        async with anyio.create_task_group() as tg:
            tg.start_soon(f, 1)
            await wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
        fetcher.release()
        await cache.wait_idle()
        assert await f(1) == "1:1"
        info = f.cache_info()
        assert (info.hits, len(fetcher.calls)) == (1, 1)


async def test_cancelled_waiter_of_background_refresh_does_not_cancel_it(clock, fetcher):
    """A miss that joined a background refresh and is cancelled leaves the refresh to commit."""
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10, stale_ttl=5)
        async def f(key):
            return await fetcher(key)

        await make_stale(f, clock, fetcher, 1, 10)
        fetcher.hold()
        assert await f(1) == "1:1"
        clock.advance(10)  # expired: the next call is a miss joining the refresh
        async with anyio.create_task_group() as tg:
            tg.start_soon(f, 1)
            await wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
        fetcher.release()
        await cache.wait_idle()
        assert await f(1) == "1:2"
        assert fetcher.calls == [1, 1]


async def test_cancelled_refresh_call_still_commits(clock, fetcher):
    """Cancelling a refresh() caller does not cancel the recomputation; it is stored."""
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10)
        async def f(key):
            return await fetcher(key)

        assert await f(1) == "1:1"
        fetcher.hold()
        async with anyio.create_task_group() as tg:
            tg.start_soon(f.refresh, 1)
            await wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
        fetcher.release()
        await cache.wait_idle()
        assert await f(1) == "1:2"
        assert f.cache_info().hits == 1


# -- errors (rules 1, 6) -----------------------------------------------------------


async def test_miss_exception_reaches_every_waiter_and_is_not_cached(clock, fetcher):
    """A failing miss raises its exception in every concurrent waiter; nothing is cached."""
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10)
        async def f(key):
            return await fetcher(key)

        boom = ValueError("backend down")
        fetcher.error = boom
        fetcher.hold()
        results: list[Any] = []
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(_capture, results, f, 1)
            await wait_all_tasks_blocked()
            fetcher.release()
        assert results == [boom] * 5
        assert fetcher.calls == [1]
        assert f.cache_info().currsize == 0
        fetcher.error = None
        assert await f(1) == "1:2"


async def test_shared_miss_exception_traceback_does_not_grow_with_waiters(clock, fetcher):
    """Each waiter of a failed miss sees a traceback of its own size, not all waiters' frames."""
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10)
        async def f(key):
            return await fetcher(key)

        fetcher.error = ValueError("backend down")
        fetcher.hold()
        results: list[Any] = []
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(_capture, results, f, 1)
            await wait_all_tasks_blocked()
            fetcher.release()
        assert len(traceback.extract_tb(results[-1].__traceback__)) < 20


async def test_failed_refresh_keeps_stale_value_counts_and_logs(clock, fetcher, caplog):
    """A failing background refresh keeps the stale value, counts it and logs a WARNING."""
    handled: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: handled.append(context))
    try:
        async with SWRCache(clock=clock) as cache:

            @cache.cached(ttl=10)
            async def lookup(key):
                return await fetcher(key)

            await make_stale(lookup, clock, fetcher, 1, 10)
            fetcher.error = ValueError("backend down")
            with caplog.at_level(logging.WARNING, logger="aiocache_swr"):
                assert await lookup(1) == "1:1"
                await cache.wait_idle()
            assert await lookup(1) == "1:1"
            assert lookup.cache_info().refresh_errors == 1
    finally:
        loop.set_exception_handler(None)
    [record] = [r for r in caplog.records if r.name == "aiocache_swr"]
    assert record.levelno == logging.WARNING
    assert "lookup" in record.getMessage()
    assert "(1,)" in record.getMessage()
    assert isinstance(record.exc_info[1], ValueError)
    assert handled == []


async def test_failed_refresh_backs_off_exponentially(clock, fetcher, caplog):
    """After failed refreshes, stale calls start no refresh until the growing backoff ends."""
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10)
        async def f(key):
            return await fetcher(key)

        await make_stale(f, clock, fetcher, 1, 10)
        fetcher.error = ValueError("backend down")
        # failure n waits between half and all of 2**(n-1) seconds
        for failures, window in [(1, 1.0), (2, 2.0), (3, 4.0)]:
            assert await f(1) == "1:1"
            await cache.wait_idle()
            assert f.cache_info().refresh_errors == failures
            clock.advance(window / 2 - 0.01)
            for _ in range(3):
                assert await f(1) == "1:1"
            await cache.wait_idle()
            assert len(fetcher.calls) == 1 + failures  # no refresh during the window
            assert f.cache_info().refreshes == failures
            clock.advance(window / 2 + 0.02)
        assert await f(1) == "1:1"
        await cache.wait_idle()
        assert len(fetcher.calls) == 5  # the window is over: a refresh ran again


async def test_refresh_backoff_is_capped(clock, fetcher, caplog):
    """However many refreshes failed, one runs again once the capped window has passed."""
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10)
        async def f(key):
            return await fetcher(key)

        await make_stale(f, clock, fetcher, 1, 10)
        fetcher.error = ValueError("backend down")
        for failures in range(1, 13):  # 2**11 s nominal would far exceed the cap
            assert await f(1) == "1:1"
            await cache.wait_idle()
            assert f.cache_info().refresh_errors == failures
            clock.advance(BACKOFF_CAP)
        assert len(fetcher.calls) == 13


async def test_successful_refresh_resets_backoff(clock, fetcher, caplog):
    """After a successful refresh, the next failure backs off from the first step again."""
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10)
        async def f(key):
            return await fetcher(key)

        await make_stale(f, clock, fetcher, 1, 10)
        fetcher.error = ValueError("backend down")
        for _ in range(3):  # three failures: the next window would be 4..8 s
            assert await f(1) == "1:1"
            await cache.wait_idle()
            clock.advance(4.0)
        fetcher.error = None
        assert await f(1) == "1:1"
        await cache.wait_idle()
        assert await f(1) == "1:5"  # refreshed
        clock.advance(11)
        fetcher.error = ValueError("down again")
        assert await f(1) == "1:5"
        await cache.wait_idle()
        assert f.cache_info().refresh_errors == 4
        clock.advance(1.0)  # first-step window (0.5..1 s), not 8 s
        assert await f(1) == "1:5"
        await cache.wait_idle()
        assert len(fetcher.calls) == 7


async def test_backoff_survives_eviction_and_reload_from_the_store(clock, fetcher, caplog):
    """A stale entry evicted while backing off and read back from the store still backs off."""
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10, maxsize=1, store=MemoryStore())
        async def f(key):
            return await fetcher(key)

        await make_stale(f, clock, fetcher, 1, 10)
        fetcher.error = ValueError("backend down")
        assert await f(1) == "1:1"  # served stale; its refresh fails: back off 0.5..1 s
        await cache.wait_idle()
        fetcher.error = None
        assert await f(2) == "2:1"  # evicts key 1 from memory; the store still has it
        await cache.wait_idle()
        fetcher.error = ValueError("backend down")
        for _ in range(3):  # no time has passed: inside the window
            assert await f(1) == "1:1"  # read back from the store, stale
            await cache.wait_idle()
            assert await f(2) == "2:1"  # ...and evicted again
        assert fetcher.calls == [1, 1, 2]
        assert f.cache_info().refresh_errors == 1
        clock.advance(1.0)  # the window is over
        assert await f(1) == "1:1"
        await cache.wait_idle()
        assert fetcher.calls == [1, 1, 2, 1]
        assert f.cache_info().refresh_errors == 2


async def test_a_newer_stored_value_does_not_inherit_the_backoff(clock, fetcher, caplog):
    """A value another writer stored after the failure is refreshed as usual when read back."""
    store = MemoryStore()
    async with SWRCache(clock=clock) as cache, SWRCache(clock=clock) as other:

        @cache.cached(ttl=0.1, maxsize=1, store=store, namespace="shared")
        async def f(key):
            return await fetcher(key)

        @other.cached(ttl=0.1, store=store, namespace="shared")
        async def g(key):
            return f"other {key}"

        await make_stale(f, clock, fetcher, 1, 0.1)
        fetcher.error = ValueError("backend down")
        assert await f(1) == "1:1"  # its refresh fails: f backs off 0.5..1 s
        await cache.wait_idle()
        fetcher.error = None
        assert await f(2) == "2:1"  # evicts key 1
        await cache.wait_idle()
        assert await g.refresh(1) == "other 1"  # a newer value of key 1 in the store
        await other.wait_idle()
        clock.advance(0.2)  # that value is stale too, still inside f's window
        assert await f(1) == "other 1"
        await cache.wait_idle()
        assert fetcher.calls == [1, 1, 2, 1]  # refreshed at once
        assert await f(1) == "1:3"


# -- load --------------------------------------------------------------------------


async def test_10000_concurrent_callers_on_a_cold_key_share_one_call(clock, fetcher):
    """10,000 concurrent callers of one cold key cause exactly one call and all get its value."""
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10)
        async def f(key):
            return await fetcher(key)

        fetcher.hold()
        results: list[Any] = []
        async with anyio.create_task_group() as tg:
            for _ in range(10_000):
                tg.start_soon(_append, results, f, 1)
            await wait_all_tasks_blocked()
            fetcher.release()
        assert fetcher.calls == [1]
        assert results == ["1:1"] * 10_000
        assert f.cache_info().misses == 10_000


async def test_1000_concurrent_callers_on_a_stale_entry_one_refresh(clock, fetcher):
    """1,000 concurrent callers of a stale entry all get the stale value; one refresh runs."""
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10)
        async def f(key):
            return await fetcher(key)

        await make_stale(f, clock, fetcher, 1, 10)
        fetcher.hold()
        results: list[Any] = []
        async with anyio.create_task_group() as tg:
            for _ in range(1_000):
                tg.start_soon(_append, results, f, 1)
        assert results == ["1:1"] * 1_000  # all returned while the refresh is blocked
        info = f.cache_info()
        assert (info.stale_hits, info.refreshes) == (1_000, 1)
        fetcher.release()
        await cache.wait_idle()
        assert fetcher.calls == [1, 1]
        assert await f(1) == "1:2"


# -- values and lifetimes (rules 7, 8) ------------------------------------------------


@pytest.mark.parametrize("value", [None, 0, "", [], False, 0.0])
async def test_none_and_falsy_values_are_cached(clock, value):
    """None and falsy results are ordinary values: the second call is a hit."""
    calls = 0
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10)
        async def f(key):
            nonlocal calls
            calls += 1
            return value

        assert await f(1) == value
        assert await f(1) == value
        assert calls == 1
        assert f.cache_info().hits == 1


async def test_serving_stale_never_extends_an_entrys_life(clock, fetcher):
    """An entry served stale many times still expires ttl+stale_ttl after it was computed."""
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10, stale_ttl=20)
        async def f(key):
            return await fetcher(key)

        assert await f(1) == "1:1"  # computed at t=0
        fetcher.hold()  # its refresh never finishes while we watch
        for _ in range(29):
            clock.advance(1)
            assert await f(1) == "1:1"  # t = 1 .. 29
        clock.advance(0.99)
        assert await f(1) == "1:1"  # t = 29.99
        assert f.cache_info().stale_hits == 21  # t = 10 .. 29.99
        clock.advance(0.01)  # t = 30 = ttl + stale_ttl: may no longer be served
        results: list[Any] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_append, results, f, 1)
            await wait_all_tasks_blocked()
            assert results == []  # waits: a miss, not a stale hit
            fetcher.release()
        assert results == ["1:2"]
        assert f.cache_info().misses == 2


async def test_a_cancelled_waiter_of_a_signal_leaves_the_others_waiting() -> None:
    """Signal (a flight's done signal, on asyncio): cancelling one waiter neither wakes nor
    cancels the others; set() wakes every remaining waiter; wait() after set returns."""
    event = Signal(asyncio.get_running_loop())
    woke: list[int] = []

    async def waiter(n: int) -> None:
        await event.wait()
        woke.append(n)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, 1)
        doomed = asyncio.ensure_future(event.wait())
        tg.start_soon(waiter, 2)
        await wait_all_tasks_blocked()
        doomed.cancel()
        await wait_all_tasks_blocked()
        assert doomed.cancelled()
        assert woke == []
        event.set()
    assert sorted(woke) == [1, 2]
    assert event.is_set()
    await event.wait()


async def test_cancelled_waiters_of_a_signal_do_not_pile_up() -> None:
    """A Signal that 10,000 waiters gave up on (e.g. callers timing out on a hung
    computation) holds a bounded number of their futures, and still wakes the live one."""
    event = Signal(asyncio.get_running_loop())
    live = event.wait()
    for _ in range(10_000):
        event.wait().cancel()
    assert event._more is not None
    assert len(event._more) < 64
    event.set()
    await live


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_a_signal_without_a_loop_wakes_its_waiters_through_an_anyio_event() -> None:
    """Signal(None) (a flight's done signal off asyncio, e.g. on trio): set() wakes every
    waiter, is_set() says so, and wait() after set returns at once."""
    signal = Signal(None)
    woke: list[int] = []

    async def waiter(n: int) -> None:
        await signal.wait()
        woke.append(n)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, 1)
        tg.start_soon(waiter, 2)
        await wait_all_tasks_blocked()
        assert woke == []
        assert not signal.is_set()
        signal.set()
    assert sorted(woke) == [1, 2]
    assert signal.is_set()
    await signal.wait()
