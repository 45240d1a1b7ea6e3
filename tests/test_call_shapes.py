"""The two cached-call closures behave alike: the plain one (no ``key=``, a constant
``version``, no ``on_event``) and the general one, used as soon as any of the three is given.

Each test runs once per shape; ``SHAPES`` names the closure each case must get,
so a case cannot silently test the other one.  Tests are bounded in real time
(``bounded``): code that lost a wake-up fails them instead of hanging the suite.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from aiocache_swr import CacheEvent, SWRCache, SWRFunction
from aiocache_swr._store import MemoryStore
from aiocache_swr.testing import FakeClock

from ._fetcher import Fetcher

pytestmark = pytest.mark.anyio


def _key(x: Any, y: Any = 0, z: Any = 0) -> Any:
    return ("k", x, y, z)


async def _async_version(*args: Any, **kwargs: Any) -> int:
    return 3


# shape id -> (decorator options, whether the cache gets an on_event listener, closure)
SHAPES: dict[str, tuple[dict[str, Any], bool, str]] = {
    "plain": ({}, False, "plain"),
    "constant-version": ({"version": 3}, False, "plain"),
    "key=": ({"key": _key}, False, "general"),
    "version=": ({"version": lambda *args, **kwargs: 3}, False, "general"),
    "async-version=": ({"version": _async_version}, False, "general"),
    "on_event": ({}, True, "general"),
}


class Shape:
    """One shape's cache (on a FakeClock), what it decorates, and its listener's events."""

    def __init__(self, shape: str, cache: SWRCache, events: list[CacheEvent]) -> None:
        self.options, self.listens, self.closure = SHAPES[shape]
        self.cache = cache
        self.events = events

    def decorate(self, fn: Callable[..., Any], **overrides: Any) -> SWRFunction[..., Any]:
        """``cache.cached(ttl=10, stale_ttl=20)`` in this shape, checking the closure it got
        (unless ``overrides`` change the version, which can change the shape)."""
        f = self.cache.cached(ttl=10, stale_ttl=20, **{**self.options, **overrides})(fn)
        if "version" not in overrides:
            assert f.__code__.co_name == self.closure  # type: ignore[attr-defined]
        return f

    def kinds(self) -> list[str]:
        return [event.kind for event in self.events]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=list(SHAPES))
async def shape(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[Shape]:
    events: list[CacheEvent] = []
    listens = SHAPES[request.param][1]
    async with SWRCache(clock=clock, on_event=events.append if listens else None) as cache:
        yield Shape(request.param, cache, events)


def bounded(test: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Wrong code fails the test within 5 s (of real time) instead of hanging the suite."""

    @functools.wraps(test)
    async def run(*args: Any, **kwargs: Any) -> None:
        with anyio.fail_after(5):
            await test(*args, **kwargs)

    return run


@bounded
async def test_a_fresh_hit_returns_the_value_without_calling(shape: Shape) -> None:
    """A second call within ttl returns the first value: one miss, then one hit (and events)."""
    fetch = Fetcher()
    f = shape.decorate(fetch)
    assert await f(1) == "1:1"
    assert await f(1) == "1:1"
    info = f.cache_info()
    assert (info.hits, info.misses, len(fetch.calls)) == (1, 1, 1)
    assert shape.kinds() == (["miss", "hit"] if shape.listens else [])


@bounded
async def test_a_stale_value_is_served_at_once_and_refreshed_once(
    shape: Shape, clock: FakeClock
) -> None:
    """Past ttl: both callers get the old value at once; one refresh replaces it."""
    fetch = Fetcher()
    f = shape.decorate(fetch)
    assert await f(1) == "1:1"
    clock.advance(15)
    # Neither call waits (a wrong inline fetch would return "1:2"); the refresh runs after.
    assert [await f(1), await f(1)] == ["1:1", "1:1"]
    await wait_all_tasks_blocked()
    assert await f(1) == "1:2"
    info = f.cache_info()
    assert (info.stale_hits, info.refreshes, info.hits) == (2, 1, 1)
    if shape.listens:
        assert shape.kinds() == ["miss", "stale_hit", "stale_hit", "refresh_ok", "hit"]


@bounded
async def test_concurrent_misses_share_one_computation(shape: Shape) -> None:
    """Callers arriving while a key is computed wait for that one computation (3 misses)."""
    fetch = Fetcher()
    f = shape.decorate(fetch)
    gate = fetch.hold()
    results: list[Any] = []

    async def call() -> None:
        results.append(await f(1))

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(call)
        await wait_all_tasks_blocked()
        gate.set()
    assert results == ["1:1"] * 3
    assert fetch.calls == [1]
    assert (f.cache_info().misses, f.cache_info().hits) == (3, 0)


@bounded
async def test_a_hit_makes_its_key_the_most_recently_used(shape: Shape) -> None:
    """With maxsize=2, f(1) f(2) f(1) f(3) evicts 2, not 1."""
    fetch = Fetcher()
    f = shape.decorate(fetch, maxsize=2)
    for k in (1, 2, 1, 3):
        await f(k)
    assert (await f(1), await f(2)) == ("1:1", "2:2")
    assert f.cache_info().evictions == 2


@bounded
async def test_a_stored_value_of_another_version_is_served_stale_and_refreshed(
    shape: Shape,
) -> None:
    """Read from the store under another version: not fresh; served at once, refreshed once."""
    fetch = Fetcher()
    store = MemoryStore()
    old = shape.decorate(fetch, store=store, namespace="ns", version="old")
    assert await old(1) == "1:1"
    f = shape.decorate(fetch, store=store, namespace="ns")
    gate = fetch.hold()
    assert await f(1) == "1:1"  # from the store (a level-1 miss); its refresh waits
    assert await f(1) == "1:1"  # kept in memory under the old version: stale, not fresh
    info = f.cache_info()
    assert (info.store_hits, info.stale_hits, info.hits, info.refreshes) == (1, 1, 0, 1)
    gate.set()
    await wait_all_tasks_blocked()
    assert await f(1) == "1:2"
    assert (f.cache_info().hits, len(fetch.calls)) == (1, 2)


@bounded
async def test_keyword_arguments_in_any_order_share_an_entry(shape: Shape) -> None:
    """f(1, y=2, z=3) and f(1, z=3, y=2) are one entry; f(1, y=2) another."""
    calls: list[tuple[Any, ...]] = []

    async def fn(x: int, y: int = 0, z: int = 0) -> tuple[int, int, int]:
        calls.append((x, y, z))
        return (x, y, z)

    f = shape.decorate(fn)
    assert await f(1, y=2, z=3) == (1, 2, 3)
    assert await f(1, z=3, y=2) == (1, 2, 3)
    assert await f(1, y=2) == (1, 2, 0)
    assert await f(1, y=2) == (1, 2, 0)
    assert calls == [(1, 2, 3), (1, 2, 0)]


@bounded
async def test_an_unhashable_argument_is_a_type_error_naming_the_function(
    shape: Shape,
) -> None:
    """A list argument cannot be (part of) a key: TypeError with the function's name."""

    async def takes_a_list(x: Any) -> int:
        return 1

    f = shape.decorate(takes_a_list)
    with pytest.raises(TypeError, match="takes_a_list"):
        await f([1, 2])


@bounded
async def test_a_cancelled_caller_leaves_the_computation_to_the_others(
    shape: Shape,
) -> None:
    """Cancelling one waiting caller neither cancels the fetch nor fails the other caller."""
    fetch = Fetcher()
    f = shape.decorate(fetch)
    gate = fetch.hold()
    results: list[Any] = []
    scopes: list[anyio.CancelScope] = []

    async def call() -> None:
        results.append(await f(1))

    async def cancelled_call() -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            results.append(await f(1))

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        tg.start_soon(cancelled_call)
        await wait_all_tasks_blocked()
        scopes[0].cancel()
        await wait_all_tasks_blocked()
        gate.set()
    assert results == ["1:1"]
    assert (fetch.calls, fetch.cancelled) == ([1], 0)


@bounded
async def test_an_exception_reaches_every_waiter_and_nothing_is_kept(
    shape: Shape,
) -> None:
    """The function's exception is raised in each waiting caller; the next call retries."""
    fetch = Fetcher()
    fetch.error = LookupError("down")
    f = shape.decorate(fetch)
    gate = fetch.hold()
    errors: list[BaseException] = []

    async def call() -> None:
        try:
            await f(1)
        except LookupError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        tg.start_soon(call)
        await wait_all_tasks_blocked()
        gate.set()
    assert [str(e) for e in errors] == ["down", "down"]
    fetch.error = None
    assert await f(1) == "1:2"
    assert f.cache_info().currsize == 1


@bounded
async def test_a_failure_after_every_caller_was_cancelled_is_logged(
    shape: Shape, caplog: pytest.LogCaptureFixture
) -> None:
    """A cancelled caller stops counting as a waiter, so the fetch's failure is logged."""
    fetch = Fetcher()
    fetch.error = LookupError("gone")
    f = shape.decorate(fetch)
    gate = fetch.hold()
    with caplog.at_level(logging.WARNING, logger="aiocache_swr"):
        async with anyio.create_task_group() as tg:
            tg.start_soon(f, 1)
            await wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
        gate.set()
        await wait_all_tasks_blocked()
    assert "failed after its callers stopped waiting" in caplog.text
    assert fetch.calls == [1]


@bounded
async def test_at_ttl_a_value_is_stale_and_at_the_window_end_expired(
    shape: Shape, clock: FakeClock
) -> None:
    """Age == ttl: stale (served, refreshed); age == ttl + stale_ttl: expired (recomputed)."""
    fetch = Fetcher()
    f = shape.decorate(fetch)
    assert await f(1) == "1:1"
    clock.advance(10)
    assert await f(1) == "1:1"
    await wait_all_tasks_blocked()  # the refresh: "1:2", computed now
    assert f.cache_info().stale_hits == 1
    clock.advance(30)
    assert await f(1) == "1:3"
    assert f.cache_info().misses == 2
