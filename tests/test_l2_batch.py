"""Misses that start together read level 2 together: one ``get_many`` per batch.

SPEC section 4 asks for batched level-2 reads; SPEC section 2 still holds for
every key in a batch: single flight, cancelled callers only stop waiting, and a
store failure never fails a call.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Collection, Hashable
from typing import Any

import anyio
import pytest

from aiocache_swr import CacheEvent, CacheInfo, SWRCache
from aiocache_swr._function import _Reads
from aiocache_swr._keys import stable_key
from aiocache_swr._runner import Runner
from aiocache_swr._store import MemoryStore, Record
from aiocache_swr.testing import FakeClock

pytestmark = pytest.mark.anyio

NS = "batch"


class CountingStore(MemoryStore):
    """A MemoryStore that records each ``get_many`` and can hold reads until released."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[list[str]] = []
        self.gate: anyio.Event | None = None
        self.reading = anyio.Event()
        self.answer: Any = None  # when set, returned instead of the records

    async def get_many(self, namespace: str, keys: Collection[str]) -> Any:
        self.reads.append(list(keys))
        self.reading.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.answer is not None:
            return self.answer
        return await super().get_many(namespace, keys)


def row(value: Any, created: float) -> Record:
    return Record(value=value, version=None, created=created, tags=(), expires=None)


def seed(store: MemoryStore, keys: range, created: float) -> None:
    for k in keys:
        store.put(NS, stable_key((k,)), row(f"stored-{k}", created))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=time.time())


def source(calls: list[int]) -> Callable[[int], Awaitable[str]]:
    """The function to decorate: records each key it computes."""

    async def f(k: int) -> str:
        calls.append(k)
        return f"computed-{k}"

    return f


async def call_concurrently(f: Callable[[int], Awaitable[str]], keys: list[int]) -> list[str]:
    """Call ``f`` for every key at once (one task each); the results, in key order."""
    results: dict[int, str] = {}

    async def call(i: int) -> None:
        results[i] = await f(keys[i])

    async with anyio.create_task_group() as tg:
        for i in range(len(keys)):
            tg.start_soon(call, i)
    return [results[i] for i in range(len(keys))]


async def read_through(
    store: MemoryStore, keys: list[int], clock: FakeClock
) -> tuple[list[str], list[int], CacheInfo]:
    """Call a function cached over ``store`` for every key at once: the results,
    the keys it computed, and its ``cache_info()``."""
    calls: list[int] = []
    async with SWRCache(clock=clock) as cache:
        f = cache.cached(ttl=60, store=store, namespace=NS)(source(calls))
        results = await call_concurrently(f, keys)
    return results, calls, f.cache_info()


async def test_concurrent_misses_read_the_store_in_one_call(clock: FakeClock) -> None:
    """50 concurrent misses of distinct keys make one get_many; nothing is recomputed."""
    store = CountingStore()
    seed(store, range(50), clock())
    results, calls, info = await read_through(store, list(range(50)), clock)
    assert results == [f"stored-{k}" for k in range(50)]
    assert calls == []
    assert len(store.reads) == 1
    assert sorted(store.reads[0]) == sorted(stable_key((k,)) for k in range(50))
    assert info.store_hits == 50


async def test_a_store_that_reorders_the_keys_it_is_given_answers_each_miss_rightly(
    clock: FakeClock,
) -> None:
    """Each miss of a batch gets its own record, even if the store sorts ``keys`` in place."""

    class SortingStore(MemoryStore):
        async def get_many(self, namespace: str, keys: Collection[str]) -> dict[str, Record]:
            if isinstance(keys, list):
                keys.sort(reverse=True)
            return await super().get_many(namespace, keys)

    store = SortingStore()
    seed(store, range(5), clock())
    results, calls, _ = await read_through(store, list(range(5)), clock)
    assert results == [f"stored-{k}" for k in range(5)]
    assert calls == []


async def test_keys_the_store_lacks_are_computed_once_each(clock: FakeClock) -> None:
    """In one batch, stored keys are served and the others computed, each exactly once."""
    store = CountingStore()
    seed(store, range(0, 10, 2), clock())  # the even keys
    keys = [k for k in range(10) for _ in range(3)]  # three callers per key share one flight
    results, calls, _ = await read_through(store, keys, clock)
    assert sorted(calls) == [1, 3, 5, 7, 9]
    assert len(store.reads) == 1
    assert len(store.reads[0]) == 10
    assert results == [f"stored-{k}" if k % 2 == 0 else f"computed-{k}" for k in keys]


async def test_a_cancelled_caller_does_not_cancel_the_batch(clock: FakeClock) -> None:
    """A caller cancelled while its key waits in a read batch stops waiting; the read
    completes, the other caller of that key gets the value, and it lands in memory."""
    store = CountingStore()
    seed(store, range(2), clock())
    store.gate = anyio.Event()
    got: list[str] = []
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=60, store=store, namespace=NS)
        async def f(k: int) -> str:
            return f"computed-{k}"

        async def waiter() -> None:
            got.append(await f(0))

        doomed = anyio.CancelScope()

        async def cancelled_caller() -> None:
            with doomed:
                await f(0)

        async with anyio.create_task_group() as tg:
            tg.start_soon(cancelled_caller)  # the first caller: it starts the batch
            await store.reading.wait()
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            doomed.cancel()
            await anyio.wait_all_tasks_blocked()
            store.gate.set()
        assert got == ["stored-0"]
        assert f.cache_info().currsize == 1
        assert f.cache_info().store_hits == 1


async def test_closing_the_cache_releases_callers_of_a_hung_read(clock: FakeClock) -> None:
    """A read batch that hangs past aclose's grace period is cancelled; its callers get a
    RuntimeError saying the cache closed, not a hang."""
    store = CountingStore()
    store.gate = anyio.Event()  # never set
    cache = SWRCache(clock=clock, close_timeout=0.0, store_timeout=None)

    @cache.cached(ttl=60, store=store, namespace=NS)
    async def f(k: int) -> str:
        return f"computed-{k}"

    errors: list[BaseException] = []

    async def call(k: int) -> None:
        try:
            await f(k)
        except RuntimeError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for k in range(3):
            tg.start_soon(call, k)
        await store.reading.wait()
        await cache.aclose()
    assert len(errors) == 3
    assert all("closed" in str(exc) for exc in errors)


async def test_a_malformed_batch_answer_is_one_store_error(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A store answering garbage for a batch of five keys: each key is computed, and the
    failed read is counted and logged once."""
    store = CountingStore()
    store.answer = {stable_key((k,)): b"not a record" for k in range(5)}
    with caplog.at_level(logging.WARNING, logger="aiocache_swr"):
        async with SWRCache(clock=clock) as cache:
            f = cache.cached(ttl=60, store=store, namespace=NS)(source([]))
            results = await call_concurrently(f, list(range(5)))
    assert results == [f"computed-{k}" for k in range(5)]
    assert len(store.reads) == 1
    assert f.cache_info().store_errors == 1
    assert len([r for r in caplog.records if "malformed record" in r.getMessage()]) == 1


async def test_a_read_batch_of_stale_rows_serves_them_and_refreshes_each(
    clock: FakeClock,
) -> None:
    """Stale rows read in one batch are served at once, and one refresh runs per key."""
    store = CountingStore()
    seed(store, range(4), clock() - 120)  # older than ttl=60, within stale_ttl
    calls: list[int] = []
    async with SWRCache(clock=clock) as cache:
        f = cache.cached(ttl=60, stale_ttl=600, store=store, namespace=NS)(source(calls))
        results = await call_concurrently(f, list(range(4)))
        await cache.wait_idle()
        assert results == [f"stored-{k}" for k in range(4)]
        assert sorted(calls) == [0, 1, 2, 3]
        assert [await f(k) for k in range(4)] == [f"computed-{k}" for k in range(4)]
    assert len(store.reads) == 1


tenant: contextvars.ContextVar[str | None] = contextvars.ContextVar("tenant", default=None)


async def test_a_batched_miss_is_computed_in_its_own_callers_context(clock: FakeClock) -> None:
    """Two callers with different contextvars miss in one read batch: each key is computed
    in its own caller's context (as without a store), not the first caller's."""
    store = CountingStore()
    seen: dict[int, str | None] = {}
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=60, store=store, namespace=NS)
        async def f(k: int) -> int:
            seen[k] = tenant.get()
            return k

        async def call(k: int, who: str) -> None:
            tenant.set(who)
            await f(k)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, 1, "A")
            tg.start_soon(call, 2, "B")
    assert len(store.reads) == 1
    assert seen == {1: "A", 2: "B"}


async def test_a_stale_row_of_a_batch_is_refreshed_and_reported_in_its_own_callers_context(
    clock: FakeClock,
) -> None:
    """Two callers with different contextvars read stale rows in one batch: each key's
    background refresh, and its store_hit event, run in its own caller's context."""
    store = CountingStore()
    seed(store, range(1, 3), clock() - 120)  # older than ttl=60, within stale_ttl
    seen: dict[int, str | None] = {}
    events: dict[Hashable, str | None] = {}

    def listener(event: CacheEvent) -> None:
        if event.kind == "store_hit":
            events[event.key] = tenant.get()

    async with SWRCache(clock=clock, on_event=listener) as cache:

        @cache.cached(ttl=60, stale_ttl=600, store=store, namespace=NS)
        async def f(k: int) -> str:
            seen[k] = tenant.get()
            return f"computed-{k}"

        async def call(k: int, who: str) -> None:
            tenant.set(who)
            assert await f(k) == f"stored-{k}"

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, 1, "A")
            tg.start_soon(call, 2, "B")
        await cache.wait_idle()
        assert f.cache_info().store_hits == 2
    assert len(store.reads) == 1
    assert events == {(1,): "A", (2,): "B"}
    assert seen == {1: "A", 2: "B"}


async def test_a_key_without_a_stable_spelling_is_computed_every_time(clock: FakeClock) -> None:
    """An int too long for str() (ValueError, not UnstableKeyError) stays in memory only:
    the call returns its value, and a second call is a hit, not a hang."""
    calls: list[int] = []
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=60, store=CountingStore(), namespace=NS)
        async def f(k: int) -> int:
            calls.append(k)
            return k.bit_length()

        big = 10**5000
        with anyio.fail_after(5):
            assert await f(big) == big.bit_length()
            assert await f(big) == big.bit_length()
    assert calls == [big]


async def test_a_read_batch_that_cannot_start_strands_nobody(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Starting a read batch's task raises (e.g. an interrupt landing there): that caller
    gets the exception, and later misses start a new batch, not join the dead one."""
    armed = True
    fetch = Runner._fetch

    def failing_once(runner: Runner, job: Any) -> Any:
        nonlocal armed
        if armed and isinstance(job, _Reads):
            armed = False
            raise RuntimeError("no task for you")
        return fetch(runner, job)

    monkeypatch.setattr(Runner, "_fetch", failing_once)
    async with SWRCache(clock=clock) as cache:
        f = cache.cached(ttl=60, store=CountingStore(), namespace=NS)(source([]))
        with pytest.raises(RuntimeError, match="no task for you"):
            await f(1)
        with anyio.fail_after(5):
            assert await f(2) == "computed-2"
            assert await f(1) == "computed-1"


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_a_miss_while_a_trio_cache_closes_fails_instead_of_hanging(
    anyio_backend: str,
) -> None:
    """Under trio, a miss arriving while a zero-ceremony cache closes its stores (nothing
    can run it any more) gets a RuntimeError saying so, not a hang."""

    class SlowClose(MemoryStore):
        async def aclose(self) -> None:
            await closing.wait()

    closing = anyio.Event()
    cache = SWRCache(store=SlowClose())
    f = cache.cached(ttl=60)(source([]))
    assert await f(0) == "computed-0"  # starts the runner's host task
    async with anyio.create_task_group() as tg:
        tg.start_soon(cache.aclose)
        await anyio.wait_all_tasks_blocked()  # aclose now waits for the stores to close
        with anyio.fail_after(5), pytest.raises(RuntimeError, match="closed"):
            await f(1)
        closing.set()


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.eager_task_factory is 3.12+")
async def test_misses_are_batched_under_an_eager_task_factory(clock: FakeClock) -> None:
    """With asyncio.eager_task_factory installed, one loop turn's misses still make one
    get_many: the read batch is never started eagerly."""
    store = CountingStore()
    loop = asyncio.get_running_loop()
    loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined,unused-ignore]
    try:
        async with SWRCache(clock=clock) as cache:
            f = cache.cached(ttl=60, store=store, namespace=NS)(source([]))
            results = await call_concurrently(f, list(range(100)))
    finally:
        loop.set_task_factory(None)
    assert results == [f"computed-{k}" for k in range(100)]
    assert len(store.reads) == 1


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_the_first_miss_of_a_zero_ceremony_cache_keeps_its_context(
    anyio_backend: str,
) -> None:
    """Without `async with`, the first miss's fetch waits for the cache's task group to
    exist (on trio); it still runs in its caller's contextvars context."""
    cache = SWRCache()
    seen: list[str | None] = []

    @cache.cached(ttl=60)
    async def f(k: int) -> int:
        seen.append(tenant.get())
        return k

    tenant.set("first")
    assert await f(0) == 0
    await cache.aclose()
    assert seen == ["first"]
