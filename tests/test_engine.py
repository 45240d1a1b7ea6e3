"""The engine's semantics (SPEC section 2), one behaviour per test, driven by a FakeClock."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from aiocache_swr import SWRCache
from aiocache_swr._store import MemoryStore, Record
from aiocache_swr.testing import FakeClock

from ._fetcher import Fetcher

pytestmark = pytest.mark.anyio


class Source:
    """A data source whose calls are counted and whose answers the test sets."""

    def __init__(self) -> None:
        self.calls = 0
        self.value: Any = "v1"
        self.error: Exception | None = None
        self.gate: anyio.Event | None = None

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return self.value


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def cache(clock: FakeClock) -> AsyncIterator[SWRCache]:
    async with SWRCache(clock=clock) as c:
        yield c


async def test_miss_computes_then_hit_returns_cached(cache: SWRCache) -> None:
    """A miss awaits the function once; the next call is a hit that does not call it."""
    src = Source()

    @cache.cached(ttl=10)
    async def f(x: int) -> Any:
        return await src(x)

    assert await f(1) == "v1"
    src.value = "v2"
    assert await f(1) == "v1"
    assert src.calls == 1
    info = f.cache_info()
    assert (info.hits, info.misses, info.currsize) == (1, 1, 1)


async def test_distinct_arguments_are_distinct_entries(cache: SWRCache) -> None:
    """Each argument tuple has its own entry."""

    @cache.cached(ttl=10)
    async def double(x: int) -> int:
        return x * 2

    assert [await double(i) for i in (1, 2, 1)] == [2, 4, 2]
    assert double.cache_info().misses == 2


async def test_keyword_order_does_not_change_the_key(cache: SWRCache) -> None:
    """f(a=1, b=2) and f(b=2, a=1) share one entry."""
    src = Source()

    @cache.cached(ttl=10)
    async def f(*, a: int, b: int) -> Any:
        return await src()

    await f(a=1, b=2)
    await f(b=2, a=1)
    assert src.calls == 1


async def test_stale_entry_is_served_and_refreshed_once(cache: SWRCache, clock: FakeClock) -> None:
    """Past ttl the old value comes back at once and one background refresh stores the new one."""
    src = Source()

    @cache.cached(ttl=10, stale_ttl=100)
    async def f() -> Any:
        return await src()

    await f()
    clock.advance(10)
    src.value = "v2"
    assert await f() == "v1"
    assert await f() == "v1"
    await cache.wait_idle()
    assert src.calls == 2
    assert await f() == "v2"
    info = f.cache_info()
    assert (info.stale_hits, info.refreshes, info.hits) == (2, 1, 1)


async def test_entry_past_stale_window_is_recomputed_inline(
    cache: SWRCache, clock: FakeClock
) -> None:
    """Past ttl + stale_ttl the call waits for a new value instead of serving the old one."""
    src = Source()

    @cache.cached(ttl=10, stale_ttl=5)
    async def f() -> Any:
        return await src()

    await f()
    clock.advance(15)
    src.value = "v2"
    assert await f() == "v2"
    assert f.cache_info().misses == 2


async def test_ttl_none_entry_stays_fresh_forever(cache: SWRCache, clock: FakeClock) -> None:
    """ttl=None: no amount of time makes an entry stale."""
    src = Source()

    @cache.cached(ttl=None)
    async def f() -> Any:
        return await src()

    await f()
    clock.advance(10**9)
    await f()
    assert src.calls == 1


async def test_constant_version_change_makes_entries_stale(clock: FakeClock) -> None:
    """Entries stored under another constant version are stale (served, then refreshed)."""
    store = MemoryStore()
    async with SWRCache(clock=clock, store=store) as first:

        @first.cached(ttl=10, version=1, namespace="f")
        async def f() -> str:
            return "old"

        await f()
    async with SWRCache(clock=clock, store=store) as second:

        @second.cached(ttl=10, version=2, namespace="f")
        async def g() -> str:
            return "new"

        assert await g() == "old"
        await second.wait_idle()
        assert await g() == "new"


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_version_callable_sees_the_arguments(cache: SWRCache, kind: str) -> None:
    """version= may be a sync or async callable of the function's arguments."""
    versions = {1: "a", 2: "a"}
    src = Source()

    def sync_version(x: int) -> str:
        return versions[x]

    async def async_version(x: int) -> str:
        return versions[x]

    @cache.cached(ttl=None, version=sync_version if kind == "sync" else async_version)
    async def f(x: int) -> Any:
        return await src(x)

    await f(1)
    await f(2)
    versions[1] = "b"
    src.value = "v2"
    assert await f(1) == "v1"  # stale: served while it refreshes
    await cache.wait_idle()
    assert await f(1) == "v2"
    assert await f(2) == "v1"  # its version did not change
    assert src.calls == 3


async def test_stale_ttl_zero_recomputes_on_version_change(cache: SWRCache) -> None:
    """stale_ttl=0: an entry of another version is a miss, computed inline."""
    version = {"v": 1}
    src = Source()

    @cache.cached(ttl=None, stale_ttl=0, version=lambda: version["v"])
    async def f() -> Any:
        return await src()

    await f()
    version["v"] = 2
    src.value = "v2"
    assert await f() == "v2"
    assert f.cache_info().stale_hits == 0


async def test_refresh_recomputes_inline_and_stores(cache: SWRCache) -> None:
    """refresh() waits for a new value, returns it, and later calls get it."""
    src = Source()

    @cache.cached(ttl=10)
    async def f() -> Any:
        return await src()

    await f()
    src.value = "v2"
    assert await f.refresh() == "v2"
    assert await f() == "v2"
    assert src.calls == 2


async def test_invalidate_drops_the_entry(cache: SWRCache) -> None:
    """After invalidate(x), f(x) recomputes; other keys stay."""
    src = Source()

    @cache.cached(ttl=10)
    async def f(x: int) -> Any:
        return await src(x)

    await f(1)
    await f(2)
    await f.invalidate(1)
    await f(1)
    await f(2)
    assert src.calls == 3


async def test_cache_clear_drops_every_entry(cache: SWRCache) -> None:
    """cache_clear() empties the function's memory."""

    @cache.cached(ttl=10)
    async def f(x: int) -> int:
        return x

    await f(1)
    await f(2)
    await f.cache_clear()
    assert f.cache_info().currsize == 0


async def test_invalidate_tags_spans_functions(cache: SWRCache) -> None:
    """invalidate_tags drops the tagged entries of every function, and only those."""

    @cache.cached(ttl=10, tags=lambda album: [f"album:{album}"])
    async def photos(album: int) -> str:
        return f"photos {album}"

    @cache.cached(ttl=10, tags=lambda album: f"album:{album}")
    async def title(album: int) -> str:
        return f"title {album}"

    for album in (1, 2):
        await photos(album)
        await title(album)
    await cache.invalidate_tags("album:1")
    assert photos.cache_info().currsize == 1
    assert title.cache_info().currsize == 1


async def test_invalidate_tags_leaves_the_functions_of_another_cache(clock: FakeClock) -> None:
    """By decision, cache.invalidate_tags drops the tagged entries of that cache's
    functions only: a function of another SWRCache keeps its tagged entries in memory,
    even one whose rows lived in a store this cache also uses (the store deletes the
    tagged rows of every namespace)."""
    store = MemoryStore()
    this, other = SWRCache(clock=clock), SWRCache(clock=clock)
    src = Source()

    @this.cached(ttl=10, store=store, namespace="this", tags=lambda album: [f"album:{album}"])
    async def mine(album: int) -> Any:
        return await src()

    @other.cached(ttl=10, tags=lambda album: [f"album:{album}"])
    async def theirs(album: int) -> Any:
        return await src()

    @other.cached(ttl=10, store=store, namespace="theirs", tags=lambda album: [f"album:{album}"])
    async def stored(album: int) -> Any:
        return await src()

    async with this, other:
        for f in (mine, theirs, stored):
            assert await f(1) == "v1"
        await other.wait_idle()
        await this.wait_idle()
        assert {namespace for namespace, _ in store.rows} == {"this", "theirs"}
        src.value = "v2"
        await this.invalidate_tags("album:1")
        assert (await mine(1), await theirs(1), await stored(1)) == ("v2", "v1", "v1")
        assert (theirs.cache_info().hits, stored.cache_info().hits) == (1, 1)
        await this.wait_idle()
        assert {namespace for namespace, _ in store.rows} == {"this"}  # mine's new row only


async def test_key_callable_replaces_the_default_key(cache: SWRCache) -> None:
    """key= decides which calls share an entry."""
    src = Source()

    @cache.cached(ttl=10, key=lambda user, request_id: user)
    async def f(user: str, request_id: int) -> Any:
        return await src()

    await f("ann", 1)
    await f("ann", 2)
    assert src.calls == 1


async def test_unhashable_arguments_name_the_function_and_key(cache: SWRCache) -> None:
    """A list argument fails with a TypeError naming the function and suggesting key=."""

    @cache.cached(ttl=10)
    async def lookup(ids: list[int]) -> int:
        return len(ids)

    with pytest.raises(TypeError, match=r"lookup.*key="):
        await lookup([1, 2])


async def test_lru_evicts_least_recently_used(cache: SWRCache) -> None:
    """Beyond maxsize the least recently used entry goes, and evictions count it."""
    src = Source()

    @cache.cached(ttl=10, maxsize=2)
    async def f(x: int) -> Any:
        return await src(x)

    await f(1)
    await f(2)
    await f(1)  # 2 is now least recently used
    await f(3)
    await f(1)
    assert src.calls == 3
    await f(2)
    assert src.calls == 4
    assert f.cache_info().evictions == 2


@pytest.mark.parametrize("value", [None, 0, "", [], False])
async def test_none_and_falsy_values_are_cached(cache: SWRCache, value: Any) -> None:
    """None and falsy results are ordinary cached values."""
    src = Source()
    src.value = value

    @cache.cached(ttl=10)
    async def f() -> Any:
        return await src()

    assert await f() == value
    assert await f() == value
    assert src.calls == 1


async def test_exceptions_are_not_cached(cache: SWRCache) -> None:
    """A failing miss raises to the caller and the next call tries again."""
    src = Source()
    src.error = LookupError("down")

    @cache.cached(ttl=10)
    async def f() -> Any:
        return await src()

    with pytest.raises(LookupError):
        await f()
    src.error = None
    assert await f() == "v1"
    assert src.calls == 2


async def test_failed_refresh_keeps_serving_stale_and_logs(
    cache: SWRCache, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing background refresh keeps the stale value, logs a WARNING and counts it."""
    src = Source()

    @cache.cached(ttl=10)
    async def f(x: int) -> Any:
        return await src(x)

    await f(7)
    clock.advance(10)
    src.error = ConnectionError("backend down")
    with caplog.at_level(logging.WARNING, logger="aiocache_swr"):
        assert await f(7) == "v1"
        await cache.wait_idle()
    assert await f(7) == "v1"
    assert f.cache_info().refresh_errors == 1
    [record] = [r for r in caplog.records if r.name == "aiocache_swr"]
    assert record.levelno == logging.WARNING
    assert "test_failed_refresh_keeps_serving_stale_and_logs.<locals>.f" in record.getMessage()
    assert "(7,)" in record.getMessage()


async def test_refresh_backoff_follows_the_cache_clock(cache: SWRCache, clock: FakeClock) -> None:
    """After a failed refresh, no new refresh starts until the backoff has passed on the clock."""
    src = Source()

    @cache.cached(ttl=10)
    async def f() -> Any:
        return await src()

    await f()
    clock.advance(10)
    src.error = ConnectionError("down")
    await f()
    await cache.wait_idle()
    assert src.calls == 2
    for _ in range(5):
        await f()  # inside the backoff window: no new refresh
    await cache.wait_idle()
    assert src.calls == 2
    clock.advance(1.0)  # the first backoff is between 0.5 s and 1 s
    src.error = None
    src.value = "v2"
    await f()
    await cache.wait_idle()
    assert src.calls == 3
    assert await f() == "v2"


async def test_concurrent_misses_share_one_call(cache: SWRCache) -> None:
    """Concurrent callers of one cold key run the function once and all get its value."""
    src = Source()
    src.gate = anyio.Event()

    @cache.cached(ttl=10)
    async def f() -> Any:
        return await src()

    results: list[Any] = []

    async def call() -> None:
        results.append(await f())

    async with anyio.create_task_group() as tg:
        for _ in range(100):
            tg.start_soon(call)
        await wait_all_tasks_blocked()
        src.gate.set()
    assert results == ["v1"] * 100
    assert src.calls == 1


async def test_cache_info_reports_maxsize(cache: SWRCache) -> None:
    """cache_info() carries maxsize and starts at zero."""

    @cache.cached(ttl=10, maxsize=7)
    async def f() -> None:
        return None

    info = f.cache_info()
    assert (info.maxsize, info.currsize, info.hits, info.misses) == (7, 0, 0, 0)


# -- the level-2 seam, with the in-memory reference store ----------------------


async def test_entries_are_written_to_the_store(cache: SWRCache, clock: FakeClock) -> None:
    """A computed value is written to the store (batched, off the caller's path)."""
    store = MemoryStore()

    @cache.cached(ttl=10, store=store, namespace="ns")
    async def f(x: int) -> str:
        return f"value {x}"

    await f(1)
    await cache.wait_idle()
    [(namespace, _key)] = store.rows
    assert namespace == "ns"


async def test_a_new_cache_answers_from_the_store(clock: FakeClock) -> None:
    """A restarted process (a new cache on the same store) answers without recomputing."""
    store = MemoryStore()
    calls = []

    def define(cache: SWRCache) -> Any:
        @cache.cached(ttl=10, stale_ttl=100, store=store, namespace="user")
        async def fetch_user(user_id: int) -> dict[str, int]:
            calls.append(user_id)
            return {"id": user_id}

        return fetch_user

    async with SWRCache(clock=clock) as first:
        await define(first)(1)
    async with SWRCache(clock=clock) as second:
        fetch_user = define(second)
        assert await fetch_user(1) == {"id": 1}
        assert fetch_user.cache_info().store_hits == 1
    assert calls == [1]


async def test_a_stale_stored_entry_is_served_and_refreshed(clock: FakeClock) -> None:
    """A stale entry found in the store is served at once and refreshed in the background."""
    store = MemoryStore()
    store.put("f", "(int:1,)", Record("old", None, clock() - 20, (), None))
    await store.flush()
    async with SWRCache(clock=clock, store=store) as cache:

        @cache.cached(ttl=10, namespace="f")
        async def f(x: int) -> str:
            return "new"

        assert await f(1) == "old"
        await cache.wait_idle()
        assert await f(1) == "new"
        assert f.cache_info().refreshes == 1


async def test_a_call_the_store_answers_counts_as_a_miss_and_a_store_hit(
    clock: FakeClock,
) -> None:
    """A call not answered from memory is a miss even when the store answers it (fresh
    row or stale row): counted in misses, never in hits or stale_hits, and the store's
    answer once in store_hits, however many concurrent misses shared the read (the
    CacheInfo docstring); the stale row's background refresh is in refreshes."""
    store = MemoryStore()
    store.put("f", "(int:1,)", Record("fresh", None, clock() - 5, (), None))
    store.put("f", "(int:2,)", Record("stale", None, clock() - 20, (), None))
    await store.flush()
    async with SWRCache(clock=clock, store=store) as cache:

        @cache.cached(ttl=10, namespace="f")
        async def f(x: int) -> str:
            return "new"

        answers: list[str] = []

        async def call(x: int) -> None:
            answers.append(await f(x))

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(call, 1)
        assert (answers, await f(2)) == (["fresh"] * 3, "stale")
        await cache.wait_idle()
        info = f.cache_info()
        assert (info.misses, info.store_hits, info.hits, info.stale_hits) == (4, 2, 0, 0)
        assert info.refreshes == 1


async def test_an_expired_stored_entry_is_recomputed(clock: FakeClock) -> None:
    """A stored entry past its stale window is not served."""
    store = MemoryStore()
    store.put("f", "(int:1,)", Record("old", None, clock() - 20, (), None))
    async with SWRCache(clock=clock, store=store) as cache:

        @cache.cached(ttl=10, stale_ttl=5, namespace="f")
        async def f(x: int) -> str:
            return "new"

        assert await f(1) == "new"


async def test_invalidate_reaches_the_store(cache: SWRCache) -> None:
    """invalidate(), cache_clear() and invalidate_tags() remove stored rows too."""
    store = MemoryStore()

    @cache.cached(ttl=10, store=store, tags=lambda x: [f"t{x}"])
    async def f(x: int) -> int:
        return x

    for x in (1, 2, 3):
        await f(x)
    await f.invalidate(1)
    assert len(store.rows) == 2
    await cache.invalidate_tags("t2")
    assert len(store.rows) == 1
    await f.cache_clear()
    assert store.rows == {}


class BrokenStore(MemoryStore):
    """A store whose every operation fails."""

    async def get_many(self, namespace: str, keys: Any) -> dict[str, Record]:
        raise OSError("disk on fire")

    def put(self, namespace: str, key: str, record: Record) -> None:
        raise OSError("disk on fire")

    async def delete(self, namespace: str, keys: Any) -> None:
        raise OSError("disk on fire")


async def test_a_failing_store_never_fails_the_call(
    cache: SWRCache, caplog: pytest.LogCaptureFixture
) -> None:
    """Store failures are logged and counted; the caller still gets its value."""

    @cache.cached(ttl=10, store=BrokenStore())
    async def f(x: int) -> int:
        return x * 10

    with caplog.at_level(logging.WARNING, logger="aiocache_swr"):
        assert await f(1) == 10
        await f.invalidate(1)
    assert f.cache_info().store_errors >= 2
    assert caplog.records


async def test_an_unserializable_value_stays_in_memory(
    cache: SWRCache, caplog: pytest.LogCaptureFixture
) -> None:
    """A value the store cannot serialize is returned and kept in memory; warned once."""
    store = MemoryStore()

    @cache.cached(ttl=10, store=store)
    async def f(x: int) -> Any:
        return lambda: x  # lambdas cannot be pickled

    with caplog.at_level(logging.WARNING, logger="aiocache_swr"):
        assert (await f(1))() == 1
        assert (await f(2))() == 2
    assert store.rows == {}
    assert f.cache_info().currsize == 2
    assert len([r for r in caplog.records if "could not be stored" in r.getMessage()]) == 1


async def test_unstable_keys_stay_in_memory(
    cache: SWRCache, caplog: pytest.LogCaptureFixture
) -> None:
    """Arguments with no process-independent spelling are cached in memory only."""
    store = MemoryStore()

    class Thing:
        pass

    @cache.cached(ttl=10, store=store)
    async def f(thing: Thing) -> int:
        return 1

    with caplog.at_level(logging.WARNING, logger="aiocache_swr"):
        await f(Thing())
    assert store.rows == {}
    assert "key=" in caplog.text


async def test_a_failure_nobody_waits_for_is_logged(
    cache: SWRCache, caplog: pytest.LogCaptureFixture
) -> None:
    """When every caller of a miss was cancelled, its exception is logged, not lost."""
    src = Source()
    src.gate = anyio.Event()
    src.error = LookupError("gone")

    @cache.cached(ttl=10)
    async def f() -> Any:
        return await src()

    with caplog.at_level(logging.WARNING, logger="aiocache_swr"):
        async with anyio.create_task_group() as tg:
            tg.start_soon(f)
            await wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
        src.gate.set()
        await cache.wait_idle()
    assert "failed after its callers stopped waiting" in caplog.text
    assert src.calls == 1


async def test_more_failing_keys_than_maxsize_keep_backing_off(
    clock: FakeClock, fetcher: Fetcher
) -> None:
    """With a store, three stale keys over maxsize=2 and a failing backend, the clock
    standing still: each key is refreshed once, not once per call (rule 6), though
    the keys keep being evicted and read back from the store."""
    async with SWRCache(clock=clock, store=MemoryStore()) as cache:

        @cache.cached(ttl=10, maxsize=2)
        async def f(key: str) -> str:
            return await fetcher(key)

        for k in "abc":
            assert await f(k) == f"{k}:1"
        clock.advance(11)
        fetcher.error = RuntimeError("backend down")
        for _ in range(5):
            for k in "abc":
                assert await f(k) == f"{k}:1"  # stale-if-error
                await cache.wait_idle()
        assert f.cache_info().refresh_errors == 3
