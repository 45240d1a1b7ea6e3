"""Shared fixtures and peer adapters of the benchmark suite (SPEC section 4).

Every scenario is parametrized over ``PEERS``: this library ("aiocache-swr")
and the peers named in the SPEC.  A peer is driven through a small adapter
(:class:`Peer`) that knows how to decorate a coroutine function with it, and,
when it can, how to make its entries stale or how to persist them.  A peer that
cannot do a scenario is *skipped with a reason starting with* ``"n/a: "``
(:data:`NA`), so it shows up as n/a in pytest's summary and in
``benchmarks/report.py``'s table instead of silently disappearing.

Timing.  pytest-benchmark is synchronous, so each test owns one
:class:`asyncio.Runner` (one event loop for the whole test) and times
``runner.run(body())``, where ``body`` awaits ``n`` calls; the per-call figure
is the round time divided by ``n`` (stored as ``extra_info["calls_per_round"]``).
The harness (one ``runner.run``, one ``for`` loop, one ``await`` per call) is the
same for every peer, so its overhead is identical across peers.

Modes.  Full (default), ``--bench-quick`` (fewer rounds and calls: a smoke run
of ``report.py``), and ``--benchmark-disable`` (CI smoke: every benchmark body
runs once, untimed, with the quick sizes).  No test asserts on timing; tests
assert on correctness (e.g. this library's stampede count).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

NA = "n/a: "  # the prefix of every "this peer cannot do this scenario" skip reason

#: Column order of the report: this library first, the floor last.
PEERS = [
    "aiocache-swr",
    "async-lru",
    "cashews",
    "cashews-early",
    "aiocache",
    "asyncache",
    "cachetools-async",
    "anyio",
    "diskcache",
    "floor",
]
OURS = "aiocache-swr"

#: A short str value, allocated once (so memory figures count the cache, not the value).
VALUE = "value-0123456789"
#: A key no scenario uses: every decorated function is called with it once before it
#: is measured, so lazily created per-loop state (task groups, run vars) exists.
PRIME = -1

AsyncFn = Callable[..., Awaitable[Any]]


# --------------------------------------------------------------------------- options


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--bench-quick",
        action="store_true",
        default=False,
        help="aiocache-swr benchmarks: fewer rounds and calls (a smoke run of the report)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # Peers' own deprecations must not fail the run, but everything else still errors
    # (pytest.ini sets filterwarnings = error).  Each filter names the module it covers.
    for line in (
        "ignore::DeprecationWarning:cashews.*",
        "ignore::DeprecationWarning:aiocache.*",
        "ignore::DeprecationWarning:asyncache.*",
        "ignore::DeprecationWarning:cachetools_async.*",
        "ignore::DeprecationWarning:diskcache.*",
        "ignore::DeprecationWarning:async_lru.*",
    ):
        config.addinivalue_line("filterwarnings", line)


@dataclass(frozen=True)
class Sizes:
    """How much each scenario does per round, and how many rounds."""

    hit_calls: int
    hit_rounds: int
    miss_calls: int
    miss_rounds: int
    churn_calls: int
    churn_rounds: int
    stampede_callers: int
    stampede_rounds: int
    stale_keys: int
    stale_rounds: int
    stale_callers: int
    memory_entries: int
    l2_reads: int
    l2_read_rounds: int
    l2_batch: int
    l2_batch_rounds: int
    l2_writes: int
    l2_write_rounds: int
    warmup: int


FULL = Sizes(
    hit_calls=5_000,
    hit_rounds=25,
    miss_calls=100_000,  # the SPEC's figure (10,000 until 2026-11-25)
    miss_rounds=2,
    churn_calls=10_000,
    churn_rounds=5,
    stampede_callers=10_000,
    stampede_rounds=3,
    stale_keys=1_000,
    stale_rounds=10,
    stale_callers=1_000,
    memory_entries=10_000,
    l2_reads=1_000,
    l2_read_rounds=5,
    l2_batch=1_000,
    l2_batch_rounds=20,
    l2_writes=2_000,
    l2_write_rounds=15,
    warmup=1,
)
QUICK = Sizes(
    hit_calls=1_000,
    hit_rounds=3,
    miss_calls=1_000,
    miss_rounds=2,
    churn_calls=2_000,
    churn_rounds=2,
    stampede_callers=10_000,  # the SPEC's figure: cheap enough to keep even in smoke runs
    stampede_rounds=1,
    stale_keys=200,
    stale_rounds=2,
    stale_callers=1_000,
    memory_entries=2_000,
    l2_reads=200,
    l2_read_rounds=2,
    l2_batch=1_000,
    l2_batch_rounds=2,
    l2_writes=300,
    l2_write_rounds=2,
    warmup=0,
)


@pytest.fixture(scope="session")
def sizes(request: pytest.FixtureRequest) -> Sizes:
    config = request.config
    if config.getoption("--bench-quick") or config.getoption("benchmark_disable", False):
        return QUICK
    return FULL


# ---------------------------------------------------------------------------- helpers


def na(reason: str) -> None:
    """Skip: this peer cannot do this scenario (shown as n/a in the report)."""
    pytest.skip(NA + reason)


class Counter:
    """A source coroutine function that counts its calls: ``async def (k, *a, **kw)``."""

    def __init__(self, delay: float | None = None, value: Any = VALUE) -> None:
        self.calls = 0
        self.delay = delay
        self.value = value

    def fn(self) -> AsyncFn:
        """A new coroutine function (a distinct function object per decoration)."""

        async def source(k: Any, *args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.delay is not None:
                await asyncio.sleep(self.delay)
            return self.value

        return source


async def settle(max_spins: int = 10_000) -> None:
    """Wait until every task of the loop but the current one has finished."""
    me = asyncio.current_task()
    for _ in range(max_spins):
        if not any(t is not me and not t.done() for t in asyncio.all_tasks()):
            return
        await asyncio.sleep(0)
    raise AssertionError("background tasks did not settle")


def bench_async(
    benchmark: Any,
    runner: asyncio.Runner,
    body: Callable[[], Coroutine[Any, Any, Any]],
    *,
    calls: int,
    rounds: int,
    setup: Callable[[], Coroutine[Any, Any, Any]] | None = None,
    warmup: int = 0,
) -> None:
    """Time ``runner.run(body())`` (``calls`` awaited calls per round) with pytest-benchmark.

    ``setup`` (a coroutine function, not timed) runs before every round.
    """
    benchmark.extra_info["calls_per_round"] = calls

    def target() -> None:
        runner.run(body())

    def prepare() -> None:
        if setup is not None:
            runner.run(setup())

    benchmark.pedantic(target, setup=prepare, rounds=rounds, warmup_rounds=warmup, iterations=1)


# ----------------------------------------------------------------------------- peers


class Peer:
    """How one peer is used: decorate, make stale, persist (what it can).

    ``decorate(fn, maxsize=None)``: ``maxsize=None`` means large enough that no
    entry is evicted (unbounded where the peer allows it).
    """

    name = "?"
    hot = True  # an in-memory memoizer (takes part in the memory-level rows)
    bounded = True  # has an LRU size bound
    stale = False  # serves stale values while refreshing in the background

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path

    def require(self, *, hot: bool = False, bounded: bool = False, stale: bool = False) -> None:
        if hot and not self.hot:
            na("level-2 only")
        if bounded and not self.bounded:
            na("no size bound")
        if stale and not self.stale:
            na("no stale serving")

    def decorate(self, fn: AsyncFn, maxsize: int | None = None) -> AsyncFn:
        raise NotImplementedError

    def decorate_stale(self, fn: AsyncFn) -> AsyncFn:
        """Decorate for the stale scenarios (``make_stale`` then ages every entry)."""
        na("no stale serving")
        raise AssertionError

    async def make_stale(self) -> None:
        """Make every entry of the ``decorate_stale`` functions stale (but servable)."""
        na("no stale serving")

    async def settle(self) -> None:
        """Wait for background work (refreshes) to finish."""
        await settle()

    async def aclose(self) -> None:
        pass

    # -- level 2 (persistence) ------------------------------------------------

    persistent = False
    no_persistence = "no persistence"  # why the level-2 rows are n/a

    async def l2_populate(self, keys: list[int]) -> None:
        """Persist an entry for each key (to disk, flushed)."""
        na(self.no_persistence)

    def l2_reader(self) -> AsyncFn:
        """``await read(k)`` reads the persisted entry of ``k`` from level 2, every time."""
        na(self.no_persistence)
        raise AssertionError

    def l2_writer(self) -> AsyncFn:
        """``await write(k)``: persist a value for ``k`` through the level-2 write path."""
        na(self.no_persistence)
        raise AssertionError

    def l2_miss_writer(self) -> AsyncFn:
        """``await f(k)``: a read-through miss on a new key: look in level 2, compute, persist."""
        na(self.no_persistence)
        raise AssertionError

    async def l2_flush(self) -> None:
        """Make every write so far durable."""


class SWRPeer(Peer):
    """This library: ``SWRCache.cached`` (one cache per test; a ``FakeClock`` for stale)."""

    name = OURS
    stale = True
    persistent = True
    TTL = 60.0

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        from aiocache_swr import SWRCache
        from aiocache_swr.testing import FakeClock

        self.cache = SWRCache()
        self.clock = FakeClock(start=time.time())
        self.stale_cache = SWRCache(clock=self.clock)
        self._store: Any = None
        self.reader_fn: Any = None

    def decorate(self, fn: AsyncFn, maxsize: int | None = None) -> AsyncFn:
        return self.cache.cached(ttl=self.TTL, maxsize=maxsize or 1 << 30)(fn)

    def decorate_stale(self, fn: AsyncFn) -> AsyncFn:
        return self.stale_cache.cached(ttl=self.TTL, stale_ttl=None, maxsize=1 << 20)(fn)

    async def make_stale(self) -> None:
        self.clock.advance(self.TTL + 1)

    async def settle(self) -> None:
        await self.cache.wait_idle()
        await self.stale_cache.wait_idle()

    async def aclose(self) -> None:
        await self.cache.aclose()
        await self.stale_cache.aclose()

    # -- level 2: a SQLiteStore in tmp_path; readers whose memory LRU holds one entry

    @property
    def store(self) -> Any:
        if self._store is None:
            from aiocache_swr import SQLiteStore

            self._store = SQLiteStore(self.tmp_path / "swr.db", max_entries=1_000_000)
        return self._store

    async def l2_populate(self, keys: list[int]) -> None:
        write = self.cache.cached(
            ttl=3600, store=self.store, namespace="bench.l2", maxsize=len(keys) + 1
        )(Counter().fn())
        for k in keys:
            await write(k)
        await self.l2_flush()

    def store_connection(self) -> Any:
        """The store's aiosqlite read connection on the running loop, for the level-2
        read floors (private state: the floors must run on the thread ours reads on)."""
        state = self.store._state
        assert state is not None, "the store has not been used on this loop yet"
        assert state.reader.conn is not None, "the store's read connection is closed"
        return state.reader.conn

    def l2_reader(self) -> AsyncFn:
        # maxsize=1: reading distinct keys in turn, no read is ever served from memory;
        # the source must never run (asserted by the scenarios through ``reads_from_store``).
        self.reader_fn = self.cache.cached(
            ttl=3600, store=self.store, namespace="bench.l2", maxsize=1
        )(Counter().fn())
        return self.reader_fn  # type: ignore[no-any-return]

    def l2_writer(self) -> AsyncFn:
        # What the cache does when it commits a value: serialize it and buffer the row
        # (``store.put``); rows reach the file in batched transactions.
        from aiocache_swr._keys import stable_key
        from aiocache_swr._store import Record

        put = self.store.put

        async def write(k: int) -> Any:
            put("bench.w", stable_key((k,)), Record(VALUE, None, time.time(), (), None))
            return VALUE

        return write

    def l2_miss_writer(self) -> AsyncFn:
        return self.cache.cached(ttl=3600, store=self.store, namespace="bench.m", maxsize=1024)(
            Counter().fn()
        )

    async def l2_flush(self) -> None:
        await self.cache.wait_idle()
        await self.store.flush()


class AsyncLRUPeer(Peer):
    name = "async-lru"

    def decorate(self, fn: AsyncFn, maxsize: int | None = None) -> AsyncFn:
        from async_lru import alru_cache

        return alru_cache(maxsize=maxsize)(fn)


class CashewsPeer(Peer):
    """cashews, memory backend (one ``Cache`` per decorated function), ``@cache(ttl=...)``."""

    name = "cashews"
    TTL = 3600
    # cashews can persist through its disk backend, which is diskcache (measured
    # as the level-2 peer); the SPEC names its memory backend.
    no_persistence = "memory backend (as the SPEC names it)"

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.caches: list[Any] = []
        self.backends: list[Any] = []

    def _new_cache(self, maxsize: int | None) -> Any:
        from cashews import Cache

        cache = Cache()
        backend = cache.setup("mem://", size=maxsize or 1 << 30, check_interval=0)
        self.caches.append(cache)
        self.backends.append(backend)
        return cache

    def decorate(self, fn: AsyncFn, maxsize: int | None = None) -> AsyncFn:
        return self._new_cache(maxsize)(ttl=self.TTL)(fn)  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        for cache in self.caches:
            await cache.close()


class CashewsEarlyPeer(CashewsPeer):
    """cashews ``@cache.early``: recomputes in the background once ``early_ttl`` has passed."""

    name = "cashews-early"
    stale = True

    def decorate(self, fn: AsyncFn, maxsize: int | None = None) -> AsyncFn:
        return self._new_cache(maxsize).early(ttl=self.TTL, early_ttl=self.TTL / 2)(fn)  # type: ignore[no-any-return]

    def decorate_stale(self, fn: AsyncFn) -> AsyncFn:
        return self.decorate(fn)

    async def make_stale(self) -> None:
        # An early entry is stored as [early_expire_at, value]: move early_expire_at into
        # the past, which is what waiting for early_ttl would do.
        past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
        for backend in self.backends:
            for key, (expire_at, stored) in list(backend.store.items()):
                if isinstance(stored, list) and len(stored) == 2:
                    backend.store[key] = (expire_at, [past, stored[1]])


class AiocachePeer(Peer):
    """aiocache ``cached`` over ``SimpleMemoryCache`` (no size bound)."""

    name = "aiocache"
    bounded = False

    def decorate(self, fn: AsyncFn, maxsize: int | None = None) -> AsyncFn:
        from aiocache import SimpleMemoryCache, cached

        return cached(ttl=None, cache=SimpleMemoryCache)(fn)  # type: ignore[no-any-return]


class AsyncachePeer(Peer):
    """asyncache ``cached(cachetools.LRUCache(maxsize))``."""

    name = "asyncache"

    def decorate(self, fn: AsyncFn, maxsize: int | None = None) -> AsyncFn:
        import asyncache
        import cachetools

        return asyncache.cached(cachetools.LRUCache(maxsize or 1 << 30))(fn)  # type: ignore[no-any-return]


class CachetoolsAsyncPeer(Peer):
    """cachetools-async ``cached(cachetools.LRUCache(maxsize))`` (caches futures)."""

    name = "cachetools-async"

    def decorate(self, fn: AsyncFn, maxsize: int | None = None) -> AsyncFn:
        import cachetools
        import cachetools_async

        return cachetools_async.cached(cachetools.LRUCache(maxsize or 1 << 30))(fn)  # type: ignore[no-any-return]


class AnyioPeer(Peer):
    """``anyio.functools.lru_cache``."""

    name = "anyio"

    def decorate(self, fn: AsyncFn, maxsize: int | None = None) -> AsyncFn:
        try:  # anyio is the library's own dependency, at a version that may predate it
            import anyio.functools
        except ImportError:
            na("this anyio has no anyio.functools (upgrade anyio)")
        return anyio.functools.lru_cache(maxsize=maxsize)(fn)  # type: ignore[no-any-return]


class DiskcachePeer(Peer):
    """diskcache ``Cache`` (level-2 rows only): synchronous ``get``/``set`` in the loop."""

    name = "diskcache"
    hot = False
    persistent = True

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        import diskcache

        self.dc = diskcache.Cache(str(tmp_path / "diskcache"))

    async def l2_populate(self, keys: list[int]) -> None:
        for k in keys:
            self.dc.set(k, VALUE)

    def l2_reader(self) -> AsyncFn:
        get = self.dc.get

        async def read(k: int) -> Any:
            return get(k)

        return read

    def l2_writer(self) -> AsyncFn:
        set_ = self.dc.set

        async def write(k: int) -> Any:
            set_(k, VALUE)
            return VALUE

        return write

    def l2_miss_writer(self) -> AsyncFn:
        get, set_ = self.dc.get, self.dc.set

        async def read_through(k: int) -> Any:
            value = get(k)
            if value is None:
                value = VALUE
                set_(k, value)
            return value

        return read_through

    async def aclose(self) -> None:
        self.dc.close()


class FloorPeer(Peer):
    """The floor: a minimal dict memoizer (args tuple -> value; no dedup, no bound)."""

    name = "floor"
    bounded = False

    def decorate(self, fn: AsyncFn, maxsize: int | None = None) -> AsyncFn:
        memo: dict[Any, Any] = {}

        async def floor(*args: Any, **kwargs: Any) -> Any:
            key = (*args, *kwargs.items()) if kwargs else args
            try:
                return memo[key]
            except KeyError:
                pass
            value = memo[key] = await fn(*args, **kwargs)
            return value

        return floor


ADAPTERS: dict[str, type[Peer]] = {
    cls.name: cls
    for cls in (
        SWRPeer,
        AsyncLRUPeer,
        CashewsPeer,
        CashewsEarlyPeer,
        AiocachePeer,
        AsyncachePeer,
        CachetoolsAsyncPeer,
        AnyioPeer,
        DiskcachePeer,
        FloorPeer,
    )
}
assert list(ADAPTERS) == PEERS


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    """One event loop for the whole test (every round runs in it)."""
    with asyncio.Runner() as loop_runner:
        yield loop_runner


@pytest.fixture(params=PEERS)
def peer(request: pytest.FixtureRequest, runner: asyncio.Runner, tmp_path: Path) -> Iterator[Peer]:
    adapter = ADAPTERS[request.param](tmp_path)
    try:
        yield adapter
    finally:
        runner.run(adapter.aclose())
