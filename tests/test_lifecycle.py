"""Lifecycle: zero-ceremony use under asyncio.run, ``async with cache``, aclose, wait_idle,
cancellation of the application, and decorated methods (SPEC sections 1 and 2, rules 5, 9, 10).

Time only moves through FakeClock; tasks are ordered with anyio Events and
``wait_all_tasks_blocked``.  A fetch's result is ``"<key>:<n>"``, ``n`` counting
the calls made for that key.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import sys
import warnings
import weakref
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from aiocache_swr import SWRCache, swr_cached
from aiocache_swr._function import engine_of
from aiocache_swr._store import MemoryStore
from aiocache_swr.testing import FakeClock

from ._fetcher import Fetcher

pytestmark = pytest.mark.anyio

RUNNER_TASK = "aiocache_swr runner"  # the zero-ceremony host task's name

# Python 3.10 has no Task.cancelling(): a CancelledError raised by the function counts
# as a real cancellation there (see aiocache_swr._runner.cancel_requested).
NEEDS_CANCELLING = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="3.10 cannot tell a raised CancelledError from a cancel"
)


def runner_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == RUNNER_TASK]


def run_checked(main: Any) -> list[dict[str, Any]]:
    """asyncio.run(main()) recording what reaches the loop's exception handler, and warnings."""
    problems: list[dict[str, Any]] = []
    loops: list[asyncio.AbstractEventLoop] = []

    async def wrapper() -> None:
        loop = asyncio.get_running_loop()
        loops.append(loop)
        loop.set_exception_handler(lambda _loop, context: problems.append(context))
        await main()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(wrapper())
        gc.collect()  # a pending task destroyed here would report "Task was destroyed"
    assert [str(w.message) for w in caught] == []
    assert asyncio.all_tasks(loops[0]) == set()
    return problems


# -- zero ceremony under asyncio.run (SPEC section 1, rule 10) -----------------------


def test_asyncio_run_ends_cleanly_with_a_refresh_in_flight(caplog):
    """asyncio.run returns while a background refresh is blocked: no hang, warning or task left."""
    clock, fetcher = FakeClock(), Fetcher()

    @swr_cached(ttl=10, cache=SWRCache(clock=clock))
    async def f(key):
        return await fetcher(key)

    async def main() -> None:
        assert await f(1) == "1:1"
        clock.advance(11)
        fetcher.hold()
        assert await f(1) == "1:1"  # the refresh starts in the library's own task group
        await wait_all_tasks_blocked()
        assert fetcher.calls == [1, 1]
        assert len(runner_tasks()) == 1

    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        problems = run_checked(main)
    assert problems == []
    assert fetcher.cancelled == 1
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_two_asyncio_runs_share_values_and_single_flight_works_in_the_second():
    """Values of a first asyncio.run are hits in a second; loop-bound state does not leak."""
    clock, fetcher = FakeClock(), Fetcher()

    @swr_cached(ttl=10, cache=SWRCache(clock=clock))
    async def f(key):
        return await fetcher(key)

    async def first() -> None:
        assert await f(1) == "1:1"
        assert await f(2) == "2:1"
        clock.advance(5)
        assert await f(3) == "3:1"
        clock.advance(6)  # 1 and 2 stale, 3 fresh
        fetcher.hold()
        assert await f(2) == "2:1"  # its refresh is still blocked when the loop ends
        await wait_all_tasks_blocked()

    async def second() -> None:
        assert await f(3) == "3:1"
        assert f.cache_info().hits == 1
        # the refresh of 2 left behind by the first loop does not block a new one
        assert await f(2) == "2:1"
        await f.cache.wait_idle()
        assert await f(2) == "2:3"
        # single flight on a cold key, in this loop
        fetcher.hold()
        results: list[Any] = []

        async def call() -> None:
            results.append(await f(4))

        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(call)
            await wait_all_tasks_blocked()
            fetcher.release()
        assert results == ["4:1"] * 50

    assert run_checked(first) == []
    fetcher.gate = None
    assert run_checked(second) == []
    assert fetcher.per_key == {1: 1, 2: 3, 3: 1, 4: 1}


async def test_zero_ceremony_in_a_running_loop_and_aclose_is_idempotent(clock, fetcher):
    """Without `async with`, refreshes run in a host task; aclose() stops it, repeatably.

    A miss alone starts no host: on asyncio a fetch is a plain task.
    """
    cache = SWRCache(clock=clock)

    @cache.cached(ttl=10)
    async def f(key):
        return await fetcher(key)

    assert await f(1) == "1:1"
    assert runner_tasks() == []
    clock.advance(11)
    assert await f(1) == "1:1"  # stale: served, and a background refresh starts the host
    assert len(runner_tasks()) == 1
    await cache.wait_idle()
    await cache.aclose()
    assert runner_tasks() == []
    await cache.aclose()
    await cache.aclose()
    assert await f(1) == "1:2"  # still a hit after closing
    assert runner_tasks() == []


async def test_aclose_is_idempotent_after_async_with(clock, fetcher):
    """aclose() after leaving `async with`, twice, is harmless; the cache can be entered again."""
    cache = SWRCache(clock=clock)

    @cache.cached(ttl=10)
    async def f(key):
        return await fetcher(key)

    async with cache:
        assert await f(1) == "1:1"
    await cache.aclose()
    await cache.aclose()
    async with cache:
        assert await f(2) == "2:1"
    await cache.aclose()
    assert runner_tasks() == []


async def test_aclose_on_an_unused_cache_is_a_no_op(clock):
    """aclose() on a cache that never ran anything returns at once, repeatedly."""
    cache = SWRCache(clock=clock)
    await cache.aclose()
    await cache.aclose()
    assert runner_tasks() == []


# -- async with cache: exit (graceful, then cancelling) ---------------------------------


async def test_exit_waits_for_an_in_flight_refresh(clock, fetcher):
    """Leaving `async with` waits for a refresh that finishes within close_timeout; it commits."""
    cache = SWRCache(clock=clock, close_timeout=60)

    @cache.cached(ttl=10)
    async def f(key):
        return await fetcher(key)

    exited = anyio.Event()

    async def app() -> None:
        async with cache:
            assert await f(1) == "1:1"
            clock.advance(11)
            fetcher.hold()
            assert await f(1) == "1:1"
        exited.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(app)
        await wait_all_tasks_blocked()
        assert fetcher.calls == [1, 1]
        assert not exited.is_set()  # exit is waiting for the refresh
        fetcher.release()
        with anyio.fail_after(5):
            await exited.wait()
    assert fetcher.cancelled == 0
    assert await f(1) == "1:2"  # committed: a fresh hit
    assert f.cache_info().hits == 1


async def test_exit_with_zero_close_timeout_cancels_the_refresh(clock, fetcher, caplog):
    """With close_timeout=0, exit cancels a running refresh at once; nothing is committed."""
    cache = SWRCache(clock=clock, close_timeout=0)

    @cache.cached(ttl=10)
    async def f(key):
        return await fetcher(key)

    with caplog.at_level(logging.DEBUG):
        async with cache:
            assert await f(1) == "1:1"
            clock.advance(11)
            fetcher.hold()
            assert await f(1) == "1:1"
            await wait_all_tasks_blocked()
    assert fetcher.cancelled == 1
    assert runner_tasks() == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    fetcher.release()
    async with cache:  # the stale value is still the one served: nothing was committed
        assert await f(1) == "1:1"
        await cache.wait_idle()
    assert await f(1) == "1:3"


async def test_exit_with_zero_close_timeout_does_not_start_queued_refreshes(clock, fetcher):
    """Closing drops queued refreshes: none is started (or committed) after the grace period."""
    cache = SWRCache(clock=clock, close_timeout=0, max_concurrent_refreshes=1)

    @cache.cached(ttl=10)
    async def f(key):
        return await fetcher(key)

    async with cache:
        assert await f(1) == "1:1"
        assert await f(2) == "2:1"
        clock.advance(11)
        gate = fetcher.hold()
        assert await f(1) == "1:1"  # refresh of 1 runs and blocks
        await wait_all_tasks_blocked()
        fetcher.gate = None  # a refresh of 2, if started, would finish at once
        assert await f(2) == "2:1"  # refresh of 2 is queued
    gate.set()
    assert fetcher.calls == [1, 2, 1]  # the queued refresh never called the backend
    async with cache:
        assert await f(2) == "2:1"  # still the stale value: nothing committed


class FlushedOnlyOnClose(MemoryStore):
    """A store whose background flushes never finish: only closing it writes its buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = False
        self.never = anyio.Event()

    async def flush(self) -> None:
        if not self.closing:
            await self.never.wait()
        await super().flush()

    async def aclose(self) -> None:
        self.closing = True
        await super().aclose()


async def test_exit_on_an_error_cancels_refreshes_at_once_and_still_flushes(clock):
    """By decision, like a task group: leaving `async with cache` because the body raised
    cancels the refreshes in flight at once, without waiting close_timeout, and still
    flushes the writes pending (then closes the store); the body's error comes out."""
    store = FlushedOnlyOnClose()
    cache = SWRCache(clock=clock, store=store, close_timeout=math.inf)
    started, gate = anyio.Event(), anyio.Event()
    calls: list[int] = []
    cancelled: list[int] = []

    @cache.cached(ttl=10, namespace="f")
    async def f(key: int) -> str:
        calls.append(key)
        if len(calls) == 2:  # the background refresh: held until the test ends
            started.set()
            try:
                await gate.wait()
            except anyio.get_cancelled_exc_class():
                cancelled.append(key)
                raise
        return f"{key}:{len(calls)}"

    class AppError(Exception):
        pass

    exited = anyio.Event()

    async def body() -> None:
        async with cache:
            assert await f(1) == "1:1"  # its row is buffered: the flush never ends
            clock.advance(11)
            assert await f(1) == "1:1"  # stale: a refresh starts and is held
            await started.wait()
            assert store.pending
            raise AppError

    async def app() -> None:
        with pytest.raises(AppError):
            await body()
        exited.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(app)
        await wait_all_tasks_blocked()
        exited_at_once = exited.is_set()
        gate.set()  # only lets a wrongly waiting exit go on
        store.never.set()
    assert exited_at_once, "exit waited for the refresh in flight"
    assert cancelled == [1]
    assert (store.pending, store.closed) == (False, True)
    assert [(ns, record.created) for (ns, _), record in store.rows.items()] == [
        ("f", clock() - 11)
    ]  # the first value, written at close; the refresh wrote nothing


async def test_wait_idle_returns_after_queued_and_running_refreshes(clock, fetcher):
    """wait_idle() returns only once both the running and the queued refresh are done."""
    async with SWRCache(clock=clock, max_concurrent_refreshes=1) as cache:

        @cache.cached(ttl=10)
        async def f(key):
            return await fetcher(key)

        assert await f(1) == "1:1"
        assert await f(2) == "2:1"
        clock.advance(11)
        first = fetcher.hold()
        assert await f(1) == "1:1"
        assert await f(2) == "2:1"  # queued behind the limit
        await wait_all_tasks_blocked()
        second = fetcher.hold()  # the refresh of 2 will block on this one
        idle = anyio.Event()

        async def wait() -> None:
            await cache.wait_idle()
            idle.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await wait_all_tasks_blocked()
            assert not idle.is_set()
            first.set()  # 1 finishes; 2 starts and blocks
            await wait_all_tasks_blocked()
            assert fetcher.calls == [1, 2, 1, 2]
            assert not idle.is_set()
            second.set()
            await idle.wait()
        assert await f(1) == "1:2"
        assert await f(2) == "2:2"


async def test_wait_idle_with_nothing_to_do_returns_at_once(clock):
    """wait_idle() on an idle (or never used) cache returns immediately."""
    cache = SWRCache(clock=clock)
    with anyio.fail_after(5):
        await cache.wait_idle()
        async with cache:
            await cache.wait_idle()


# -- closing while callers wait ---------------------------------------------------------


async def test_miss_waiter_gets_an_error_when_the_cache_is_closed(clock, fetcher):
    """A caller waiting on a miss when `async with` closes (cancelling) gets an error, no hang."""
    cache = SWRCache(clock=clock, close_timeout=0)

    @cache.cached(ttl=10)
    async def f(key):
        return await fetcher(key)

    outcome: list[BaseException] = []

    async def caller() -> None:
        try:
            await f(1)
        except Exception as exc:
            outcome.append(exc)

    fetcher.hold()
    async with anyio.create_task_group() as tg, cache:
        tg.start_soon(caller)
        await wait_all_tasks_blocked()
    [error] = outcome
    assert isinstance(error, RuntimeError)
    assert "closed" in str(error)
    assert fetcher.cancelled == 1
    assert f.cache_info().currsize == 0


async def test_miss_waiter_gets_an_error_when_a_zero_ceremony_cache_is_aclosed(clock, fetcher):
    """A caller waiting on a miss in zero-ceremony mode gets an error when aclose() cancels."""
    cache = SWRCache(clock=clock, close_timeout=0)

    @cache.cached(ttl=10)
    async def f(key):
        return await fetcher(key)

    outcome: list[BaseException] = []

    async def caller() -> None:
        try:
            await f(1)
        except Exception as exc:
            outcome.append(exc)

    fetcher.hold()
    async with anyio.create_task_group() as tg:
        tg.start_soon(caller)
        await wait_all_tasks_blocked()
        await cache.aclose()
    [error] = outcome
    assert isinstance(error, RuntimeError)
    assert runner_tasks() == []


# -- cancellation of the application ----------------------------------------------------


async def test_cancelling_the_application_mid_refresh_exits_cleanly(clock, fetcher, caplog):
    """Cancelling the task group that holds `async with cache` cancels the refresh; no commit."""
    cache = SWRCache(clock=clock)

    @cache.cached(ttl=10)
    async def f(key):
        return await fetcher(key)

    async def app() -> None:
        async with cache:
            assert await f(1) == "1:1"
            clock.advance(11)
            fetcher.hold()
            assert await f(1) == "1:1"
            await anyio.sleep_forever()

    with caplog.at_level(logging.DEBUG), anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(app)
            await wait_all_tasks_blocked()
            assert fetcher.calls == [1, 1]
            tg.cancel_scope.cancel()
    assert fetcher.cancelled == 1
    assert runner_tasks() == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    fetcher.release()
    async with cache:  # usable again; the stale value was kept
        assert await f(1) == "1:1"
    assert await f(1) == "1:3"


async def test_cancelling_the_application_does_not_cancel_zero_ceremony_work(clock, fetcher):
    """In zero-ceremony mode, cancelling the callers' task group leaves the fetch to commit."""
    cache = SWRCache(clock=clock)

    @cache.cached(ttl=10)
    async def f(key):
        return await fetcher(key)

    fetcher.hold()
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(f, 1)
        await wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    fetcher.release()
    await cache.wait_idle()
    assert await f(1) == "1:1"
    assert (fetcher.cancelled, fetcher.calls) == (0, [1])
    await cache.aclose()


# -- methods ----------------------------------------------------------------------------


def make_repo_class(cache: SWRCache, fetcher: Fetcher, maxsize: int = 16) -> type:
    class Repo:
        def __init__(self, name: str) -> None:
            self.name = name

        @cache.cached(ttl=10, maxsize=maxsize)
        async def get(self, x: int) -> str:
            return await fetcher(f"{self.name}/{x}")

    return Repo


async def test_method_instance_is_part_of_the_key(clock, fetcher):
    """A decorated method caches per instance: two instances, two entries."""
    async with SWRCache(clock=clock) as cache:
        Repo = make_repo_class(cache, fetcher)
        a, b = Repo("a"), Repo("b")
        assert await a.get(1) == "a/1:1"
        assert await b.get(1) == "b/1:1"
        assert await a.get(1) == "a/1:1"
        assert await b.get(1) == "b/1:1"
        info = Repo.get.cache_info()
        assert (info.currsize, info.misses, info.hits) == (2, 2, 2)
        assert a.get.cache_info() == info


async def test_method_invalidate_and_refresh(clock, fetcher):
    """obj.method.invalidate(x) and obj.method.refresh(x) act on that instance's entry only."""
    async with SWRCache(clock=clock) as cache:
        Repo = make_repo_class(cache, fetcher)
        a, b = Repo("a"), Repo("b")
        assert await a.get(1) == "a/1:1"
        assert await b.get(1) == "b/1:1"
        assert await a.get.refresh(1) == "a/1:2"
        assert await a.get(1) == "a/1:2"
        await a.get.invalidate(1)
        assert await b.get(1) == "b/1:1"  # untouched
        assert await a.get(1) == "a/1:3"  # recomputed
        assert fetcher.per_key == {"a/1": 3, "b/1": 1}


async def test_instances_are_not_kept_alive_after_their_entries_are_evicted(clock, fetcher):
    """The cache holds an instance only while one of its entries is among the maxsize newest."""
    async with SWRCache(clock=clock) as cache:
        Repo = make_repo_class(cache, fetcher, maxsize=2)
        a = Repo("a")
        assert await a.get(1) == "a/1:1"
        ref = weakref.ref(a)
        del a
        gc.collect()
        assert ref() is not None  # its entry keeps it alive
        b = Repo("b")
        assert await b.get(1) == "b/1:1"
        assert await b.get(2) == "b/2:1"  # evicts a's entry
        gc.collect()
        assert ref() is None
        assert Repo.get.cache_info().evictions == 1


async def test_an_exception_in_async_with_cache_comes_out_unwrapped(clock, fetcher):
    """An error raised in the body of `async with cache` is raised as itself, not in a group."""
    cache = SWRCache(clock=clock)

    @cache.cached(ttl=10)
    async def f(key):
        return await fetcher(key)

    class AppError(Exception):
        pass

    async def app() -> None:
        async with cache:
            assert await f(1) == "1:1"
            raise AppError

    with pytest.raises(AppError):
        await app()
    async with cache:  # and it can be entered again
        assert await f(1) == "1:1"


async def test_a_fetch_cancelled_before_it_started_releases_its_caller(clock):
    """Leaving `async with cache` right after a miss started its fetch (on 3.11 it has not
    run at all; 3.12+ starts it eagerly up to its first await): the caller gets an error
    instead of waiting forever, and nothing stays registered."""
    cache = SWRCache(clock=clock)

    @cache.cached(ttl=10)
    async def f(key):
        await asyncio.sleep(0)
        return key

    class AppError(Exception):
        pass

    caller = None

    async def app() -> None:
        nonlocal caller
        async with cache:
            caller = asyncio.create_task(f(1))
            await asyncio.sleep(0)  # the miss started its fetch task; it has not run yet
            raise AppError

    with pytest.raises(AppError):
        await app()
    assert caller is not None
    with anyio.fail_after(5), pytest.raises(RuntimeError, match="closed"):
        await caller
    assert engine_of(f)._registry == {}


async def test_stale_hits_while_a_cache_closes_never_strand_a_refresh(clock, fetcher):
    """A stale hit after the cache began closing queues nothing that never runs: a miss on
    that key during the close answers (or fails: closed) instead of waiting forever, and
    stale hits after the close refresh again."""
    cache = SWRCache(clock=clock, close_timeout=0)

    @cache.cached(ttl=1, stale_ttl=100)
    async def f(key):
        return await fetcher(key)

    assert await f(1) == "1:1"
    assert await f(2) == "2:1"
    clock.advance(2)
    fetcher.hold()
    assert await f(2) == "2:1"  # stale: its refresh holds, so closing has work to cancel
    closing = asyncio.create_task(cache.aclose())
    await asyncio.sleep(0)
    assert await f(1) == "1:1"  # stale, while closing
    clock.advance(200)
    fetcher.release()
    with anyio.fail_after(5):
        try:  # expired: not stranded behind a refresh that will never run
            value = await f(1)
        except RuntimeError as exc:
            assert "closed" in str(exc)  # noqa: PT017 (either outcome is fine; a hang is not)
        else:
            assert value == "1:2"
        await closing
    done = fetcher.per_key[1]
    clock.advance(200)
    assert await f(1) == f"1:{done + 1}"  # computed again after the close
    clock.advance(2)
    assert await f(1) == f"1:{done + 1}"  # stale...
    await cache.wait_idle()
    assert await f(1) == f"1:{done + 2}"  # ...and refreshed
    await cache.aclose()


# -- what the function raises besides Exception, and the loop's end (found by review) -------


class Boom(BaseException):
    """A BaseException of the application's own (not an Exception)."""


async def raise_cancelled_from_inside() -> None:
    """Await a future someone else cancelled: a CancelledError nobody asked this task for."""
    future = asyncio.get_running_loop().create_future()
    future.cancel()
    await future


@pytest.mark.parametrize("raised", [pytest.param("cancelled", marks=NEEDS_CANCELLING), "base"])
async def test_a_refresh_raising_a_non_exception_is_a_failed_refresh(clock, caplog, raised):
    """A background refresh that raises a CancelledError of its own (its task was not
    cancelled) or a BaseException keeps the stale value and counts as a failed refresh;
    the application's ``async with cache`` body is not interrupted."""
    calls = 0
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10)
        async def f(key):
            nonlocal calls
            calls += 1
            if calls == 2:
                if raised == "cancelled":
                    await raise_cancelled_from_inside()
                raise Boom("refresh boom")
            return f"{key}:{calls}"

        assert await f(1) == "1:1"
        clock.advance(11)
        with caplog.at_level(logging.WARNING, logger="aiocache_swr"):
            assert await f(1) == "1:1"  # stale; its refresh fails
            await cache.wait_idle()
        assert f.cache_info().refresh_errors == 1
        assert any("background refresh" in r.getMessage() for r in caplog.records)
        assert await f(1) == "1:1"  # still served (backing off)
        clock.advance(3600)  # past the backoff
        assert await f(1) == "1:1"
        await cache.wait_idle()
        assert await f(1) == "1:3"  # the next refresh worked


@pytest.mark.parametrize("raised", [pytest.param("cancelled", marks=NEEDS_CANCELLING), "base"])
async def test_a_miss_raising_a_non_exception_gives_it_to_every_waiter(clock, raised):
    """A miss whose function raises a CancelledError of its own or a BaseException gives
    that exception to every waiter (rule 1), stores nothing, reports nothing to the loop,
    and leaves the key free for the next call."""
    problems: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, c: problems.append(c))
    gate = anyio.Event()
    fail = True
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10)
        async def f(key):
            await gate.wait()
            if fail:
                if raised == "cancelled":
                    await raise_cancelled_from_inside()
                raise Boom("miss boom")
            return "ok"

        outcomes: list[BaseException | str] = []

        async def call() -> None:
            try:
                outcomes.append(await f(1))
            except BaseException as exc:  # the function's own exception, as a waiter sees it
                outcomes.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            tg.start_soon(call)
            await wait_all_tasks_blocked()
            gate.set()
        expected = asyncio.CancelledError if raised == "cancelled" else Boom
        assert [type(o) for o in outcomes] == [expected, expected]
        assert engine_of(f)._registry == {}
        fail = False
        assert await f(1) == "ok"
    gc.collect()
    await asyncio.sleep(0)
    assert problems == []


@NEEDS_CANCELLING
async def test_zero_ceremony_work_goes_on_after_a_refresh_raised_its_own_cancelled_error(
    clock, fetcher
):
    """Without ``async with``, a refresh that raises a CancelledError of its own does not
    end the library's task group: later refreshes run and ``wait_idle`` returns."""
    cache = SWRCache(clock=clock)
    calls = 0

    @cache.cached(ttl=10)
    async def f(key):
        nonlocal calls
        calls += 1
        if calls == 2:
            await raise_cancelled_from_inside()
        return await fetcher(key)

    assert await f(1) == "1:1"
    clock.advance(11)
    assert await f(1) == "1:1"  # its refresh raises
    with anyio.fail_after(5):  # a safety net: this hung when the task group ended
        await cache.wait_idle()
        assert f.cache_info().refresh_errors == 1
        clock.advance(3600)  # past the backoff
        assert await f(1) == "1:1"
        await cache.wait_idle()
    assert await f(1) == "1:2"  # refreshed in the background
    await cache.aclose()


def test_asyncio_run_ending_right_after_a_stale_hit_warns_nothing():
    """A stale hit in ``asyncio.run``'s last step starts a refresh the loop's end cancels
    before it runs: no "coroutine ... was never awaited" warning, no task left."""
    clock, fetcher = FakeClock(), Fetcher()

    @swr_cached(ttl=10, cache=SWRCache(clock=clock))
    async def f(key):
        return await fetcher(key)

    async def first() -> None:
        assert await f(1) == "1:1"

    async def main() -> None:
        clock.advance(11)
        assert await f(1) == "1:1"  # stale: a refresh is started, and main returns

    assert run_checked(first) == []
    assert run_checked(main) == []
    assert fetcher.calls == [1]


def test_asyncio_run_ending_starts_no_queued_refresh():
    """When ``asyncio.run`` ends with refreshes queued behind ``max_concurrent_refreshes``,
    they are dropped, not started one after another as the running ones are cancelled."""
    clock, fetcher = FakeClock(), Fetcher()
    cache = SWRCache(clock=clock, max_concurrent_refreshes=1)

    @swr_cached(ttl=10, cache=cache)
    async def f(key):
        return await fetcher(key)

    async def main() -> None:
        for key in range(5):
            assert await f(key) == f"{key}:1"
        clock.advance(11)
        fetcher.hold()
        for key in range(5):
            assert await f(key) == f"{key}:1"  # one refresh runs, four are queued
        await wait_all_tasks_blocked()
        assert fetcher.calls[5:] == [0]

    assert run_checked(main) == []
    assert fetcher.calls[5:] == [0]


async def test_aclose_cancelled_in_its_grace_period_still_closes(clock, fetcher):
    """``aclose`` cancelled while it waits out the grace period for a refresh still
    cancels that refresh and closes, then lets the cancellation go on."""
    cache = SWRCache(clock=clock, close_timeout=3600)

    @cache.cached(ttl=10)
    async def f(key):
        return await fetcher(key)

    assert await f(1) == "1:1"
    clock.advance(11)
    fetcher.hold()
    assert await f(1) == "1:1"
    await wait_all_tasks_blocked()
    assert fetcher.running == 1
    with anyio.CancelScope() as scope:
        closing = anyio.Event()

        async def cancel_when_waiting() -> None:
            await wait_all_tasks_blocked()
            closing.set()
            scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_when_waiting)
            await cache.aclose()
        pytest.fail("aclose swallowed the cancellation")  # pragma: no cover
    assert closing.is_set()
    assert fetcher.running == 0
    assert fetcher.cancelled == 1
    assert cache._runner is None


async def _inside_a_trio_nursery() -> int:
    import trio

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.sleep_forever)
        await trio.sleep_forever()
    return 0  # pragma: no cover


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_a_flight_cancelled_inside_a_nursery_is_cancelled_not_failed(clock):
    """On trio, closing the cache cancels a flight whose function is inside a nursery
    (which raises the cancellation in an exception group): a cancellation still, not
    the function's failure: the miss's waiter is told the cache closed, a refresh
    counts no error."""
    cache = SWRCache(clock=clock, close_timeout=0)
    calls = 0

    @cache.cached(ttl=10)
    async def f(key):
        nonlocal calls
        calls += 1
        if calls == 1:
            return "1:1"
        return await _inside_a_trio_nursery()

    assert await f(1) == "1:1"
    clock.advance(11)
    assert await f(1) == "1:1"  # stale: its refresh waits in a nursery
    got: list[BaseException] = []

    async def waiter() -> None:
        try:
            await f(2)
        except BaseException as exc:  # what the waiter of a miss gets
            got.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await wait_all_tasks_blocked()
        await cache.aclose()
    assert [type(e) for e in got] == [RuntimeError]
    assert "closed" in str(got[0])
    assert f.cache_info().refresh_errors == 0


async def test_queued_refreshes_still_start_after_one_ended_in_an_internal_error(clock):
    """A refresh whose job raised (here the cache's clock failed while it committed:
    logged as an internal error) still lets the refreshes queued behind it start."""

    class FlakyClock(FakeClock):
        fail_next = False

        def __call__(self) -> float:
            if self.fail_next:
                self.fail_next = False
                raise OSError("clock source unavailable")
            return super().__call__()

    flaky = FlakyClock()
    calls: list[int] = []
    refreshing = False
    async with SWRCache(clock=flaky, max_concurrent_refreshes=1) as cache:

        @cache.cached(ttl=10)
        async def f(key):
            calls.append(key)
            if refreshing and key == 1:
                flaky.fail_next = True  # its commit reads the clock, which raises
            return key

        assert (await f(1), await f(2)) == (1, 2)
        flaky.advance(11)
        refreshing = True
        assert await f(1) == 1  # stale: the refresh of 1 takes the one slot
        assert await f(2) == 2  # stale: the refresh of 2 waits behind it
        with anyio.fail_after(5):  # a safety net: this hung
            await cache.wait_idle()
        assert calls == [1, 2, 1, 2]


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_aclose_by_another_task_while_a_task_holds_async_with_raises(
    clock: FakeClock,
) -> None:
    """Only the task inside `async with cache` can close it (the block's task group is
    that task's): another task's aclose() raises a RuntimeError saying so, and the
    block goes on, uses the cache and leaves cleanly."""
    cache = SWRCache(clock=clock)
    done = anyio.Event()
    finished: list[str] = []

    @cache.cached(ttl=10)
    async def f(key: str) -> str:
        return key

    async def holder() -> None:
        async with cache:
            assert await f("a") == "a"
            await done.wait()
            finished.append(await f("b"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        await wait_all_tasks_blocked()
        with pytest.raises(RuntimeError, match="another task than the one inside"):
            await cache.aclose()
        done.set()
    assert finished == ["b"]
    async with cache:  # closed by its block: it can be entered again
        assert await f("c") == "c"


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_wait_idle_or_aclose_inside_a_computation_of_the_cache_raises(
    clock: FakeClock,
) -> None:
    """Awaited inside a computation of one of its functions, wait_idle() and aclose()
    would wait for that computation, so for themselves: a RuntimeError says so."""
    cache = SWRCache(clock=clock)

    @cache.cached(ttl=10)
    async def waits(key: int) -> int:
        await cache.wait_idle()
        return key

    @cache.cached(ttl=10)
    async def closes(key: int) -> int:
        await cache.aclose()
        return key

    for f in (waits, closes):
        with pytest.raises(RuntimeError, match="would wait for that computation"):
            with anyio.fail_after(10):  # only ends the test if it waits for itself
                await f(1)
    await cache.aclose()


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_a_task_a_computation_started_may_wait_idle_once_it_has_ended(
    clock: FakeClock,
) -> None:
    """A task started by a computation, outliving it, may await wait_idle(): the
    computation it came from has ended, so nothing waits for itself."""
    cache = SWRCache(clock=clock)
    computed, waited = anyio.Event(), anyio.Event()

    async def later() -> None:
        await computed.wait()
        await cache.wait_idle()
        waited.set()

    async with anyio.create_task_group() as tg:

        @cache.cached(ttl=10)
        async def f(key: int) -> int:
            tg.start_soon(later)  # inherits the computation's context
            return key

        assert await f(1) == 1
        computed.set()
        with anyio.fail_after(10):
            await waited.wait()
    await cache.aclose()


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_entering_while_another_task_closes_the_cache_raises(clock: FakeClock) -> None:
    """`async with cache` while another task's aclose() waits for background work is
    refused with a RuntimeError (that close would take the new entry for its own);
    the close then finishes, and the cache can be entered."""
    cache = SWRCache(clock=clock)
    release, started = anyio.Event(), anyio.Event()
    calls = 0

    @cache.cached(ttl=10)
    async def f(key: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:  # the background refresh holds the close's grace period
            started.set()
            await release.wait()
        return key

    assert await f(1) == 1
    clock.advance(11)
    assert await f(1) == 1  # stale: the refresh starts
    await started.wait()
    async with anyio.create_task_group() as tg:
        tg.start_soon(cache.aclose)
        await wait_all_tasks_blocked()  # aclose waits for the refresh
        with pytest.raises(RuntimeError, match="being closed"):
            async with cache:
                pass
        release.set()
    async with cache:
        assert await f(2) == 2
