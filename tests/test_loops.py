"""Lifecycle and event loops with a SQLite store: aclose with refreshes in flight, the
application's task group cancelled mid-refresh, successive ``asyncio.run`` calls, and a
KeyboardInterrupt raised inside a fetch (SPEC section 1, rules 5, 9, 10, section 3).

tests/test_lifecycle.py pins the memory-only basics; this module adds the store: every
test checks that a write completed before the event is on disk (read back through a
new ``SQLiteStore``), that the number of tasks returns to its baseline, that no SQLite
worker thread is left (every store closed), and that nothing reaches a warning, the
log or the loop's exception handler.

Time only moves through FakeClock; tasks are ordered with anyio Events and
``wait_all_tasks_blocked``.  ``close_timeout`` is real time: the tests that let it run
out use a small one with a fetch that never finishes, and bound everything with
``fail_after`` as a hang guard, never as a timing assertion.  A fetch's result is
``"<key>:<n>"``, ``n`` counting the calls made for that key.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import warnings
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from aiocache_swr import CacheEvent, SQLiteStore, SWRCache
from aiocache_swr._keys import stable_key
from aiocache_swr._runner import Runner
from aiocache_swr.testing import FakeClock

from ._fetcher import Fetcher

pytestmark = pytest.mark.anyio

NAMESPACE = "loops"
RUNNER_TASK = "aiocache_swr runner"  # the zero-ceremony host task's name
HANG_GUARD = 30.0  # seconds; only ever reached by a hang


# -- helpers -----------------------------------------------------------------------------


def sqlite_threads() -> set[threading.Thread]:
    """SQLite worker threads alive: a store that was not closed leaves one."""
    return {t for t in threading.enumerate() if t.name.startswith("aiocache-swr-sqlite")}


def runner_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == RUNNER_TASK]


def make_store(path: Path, clock: FakeClock) -> SQLiteStore:
    """A store object of its own (not the process-wide one of ``store=path``)."""
    return SQLiteStore(path, clock=clock)


async def persisted(path: Path, clock: FakeClock, keys: Iterable[int]) -> dict[int, Any]:
    """The values the file holds for ``f(k)``, read by a new store (a new process would)."""
    wanted = {stable_key((k,)): k for k in keys}
    store = make_store(path, clock)
    try:
        found = await store.get_many(NAMESPACE, list(wanted))
    finally:
        await store.aclose()
    return {wanted[skey]: record.value for skey, record in found.items()}


def persisted_sync(path: Path, clock: FakeClock, keys: Iterable[int]) -> dict[int, Any]:
    return asyncio.run(persisted(path, clock, keys))


class Baseline:
    """The tasks and SQLite threads alive when a test starts (in its event loop)."""

    def __init__(self) -> None:
        self.tasks = asyncio.all_tasks()
        self.threads = sqlite_threads()

    def new_tasks(self) -> set[asyncio.Task[Any]]:
        return {t for t in asyncio.all_tasks() if t not in self.tasks and not t.done()}

    def check(self) -> None:
        """Back to the baseline: no task, no store left open; a GC pass warns of nothing."""
        assert self.new_tasks() == set()
        assert runner_tasks() == []
        assert sqlite_threads() - self.threads == set()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gc.collect()
        assert [str(w.message) for w in caught] == []


def cached_fetcher(
    tmp_path: Path, clock: FakeClock, fetcher: Fetcher, **cache_options: Any
) -> tuple[Path, SWRCache, Any]:
    """A cache over a SQLite file in ``tmp_path``, and ``fetcher`` decorated by it."""
    db = tmp_path / "c.db"
    cache = SWRCache(store=make_store(db, clock), clock=clock, **cache_options)
    return db, cache, cache.cached(ttl=10, namespace=NAMESPACE)(fetcher)


def leaves(exc: BaseException) -> list[type[BaseException]]:
    """The types of the exceptions an exception group holds (flattened)."""
    inner = getattr(exc, "exceptions", None)
    if inner is None:
        return [type(exc)]
    return [t for e in inner for t in leaves(e)]


def loud(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= level]


class Run:
    """One ``asyncio.run(main())`` in a thread of its own, recording what went wrong.

    The thread is a hang guard (``join`` with a timeout) and keeps a KeyboardInterrupt
    raised by ``asyncio.run`` away from pytest.  Recorded: what ``asyncio.run`` raised,
    what reached the loop's exception handler (a "Task exception was never retrieved"
    included: a GC pass runs after the loop closed), and every warning.
    """

    def __init__(self, main: Callable[[], Awaitable[None]]) -> None:
        self.threads_before = sqlite_threads()
        self.raised: BaseException | None = None
        self.problems: list[dict[str, Any]] = []
        self.loop: asyncio.AbstractEventLoop | None = None

        async def wrapper() -> None:
            self.loop = asyncio.get_running_loop()
            self.loop.set_exception_handler(lambda _loop, context: self.problems.append(context))
            await main()

        def target() -> None:
            try:
                asyncio.run(wrapper())
            except BaseException as exc:
                # Without its traceback: its frames would keep the task that raised it
                # alive past the GC pass below, hiding a "never retrieved" report.
                self.raised = exc.with_traceback(None)

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            thread = threading.Thread(target=target, name="asyncio.run under test", daemon=True)
            thread.start()
            thread.join(HANG_GUARD)
            assert not thread.is_alive(), "asyncio.run did not return"
            gc.collect()  # a pending task destroyed here reports "Task was destroyed"
        self.warnings = [str(w.message) for w in caught]
        assert self.loop is not None
        self.tasks_left = asyncio.all_tasks(self.loop)

    def assert_clean(self) -> None:
        """Nothing left running, nothing reported, no store left open."""
        assert self.problems == []
        assert self.warnings == []
        assert self.tasks_left == set()
        assert sqlite_threads() - self.threads_before == set()


# -- aclose() with refreshes in flight --------------------------------------------------


async def test_aclose_waits_for_running_and_queued_refreshes_and_their_writes_land(
    tmp_path, clock, fetcher, caplog
):
    """Graceful aclose: a running and a queued refresh finish within close_timeout and their
    values reach the file; nothing is cancelled or left behind."""
    base = Baseline()
    db, cache, f = cached_fetcher(
        tmp_path, clock, fetcher, close_timeout=60, max_concurrent_refreshes=1
    )

    assert await f(1) == "1:1"
    assert await f(2) == "2:1"
    clock.advance(11)
    fetcher.hold()
    assert await f(1) == "1:1"  # refresh of 1 runs, blocked
    assert await f(2) == "2:1"  # refresh of 2 waits its turn in the queue
    await wait_all_tasks_blocked()
    assert fetcher.calls == [1, 2, 1]
    closed = anyio.Event()

    async def close() -> None:
        await cache.aclose()
        closed.set()

    with caplog.at_level(logging.DEBUG), anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(close)
            await wait_all_tasks_blocked()
            assert not closed.is_set()  # waiting for the refreshes
            fetcher.release()
    assert fetcher.calls == [1, 2, 1, 2]  # the queued one ran too
    assert fetcher.cancelled == 0
    assert loud(caplog) == []
    base.check()
    assert await persisted(db, clock, [1, 2]) == {1: "1:2", 2: "2:2"}


async def test_aclose_cancels_a_hung_refresh_after_close_timeout_without_losing_writes(
    tmp_path, clock, fetcher, caplog
):
    """A refresh hanging past close_timeout is cancelled; a write completed meanwhile is on
    disk, the hung key keeps its old row; a caller of a hung miss gets an error; no leak."""
    base = Baseline()
    db, cache, f = cached_fetcher(tmp_path, clock, fetcher, close_timeout=0.05)

    assert await f(1) == "1:1"
    assert await f(2) == "2:1"
    clock.advance(11)
    fetcher.hold()  # never released: these fetches hang
    assert await f(1) == "1:1"  # its refresh hangs
    outcome: list[BaseException] = []

    async def miss() -> None:
        try:
            await f(3)
        except Exception as exc:
            outcome.append(exc)

    with caplog.at_level(logging.DEBUG), anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(miss)  # hangs too
            await wait_all_tasks_blocked()
            fetcher.gate = None  # later fetches finish at once
            assert await f(2) == "2:1"  # its refresh completes...
            await wait_all_tasks_blocked()
            assert await f(2) == "2:2"  # committed (a fresh hit); its write may be pending
            await cache.aclose()  # ...and must not be lost
    assert fetcher.cancelled == 2  # the refresh of 1 and the miss of 3
    [error] = outcome
    assert isinstance(error, RuntimeError)
    assert "closed" in str(error)
    assert loud(caplog) == []
    base.check()
    assert await persisted(db, clock, [1, 2, 3]) == {1: "1:1", 2: "2:2"}


# -- the application's task group cancelled mid-refresh ----------------------------------


async def test_cancelling_the_app_leaves_zero_ceremony_work_running_and_the_cache_usable(
    tmp_path, clock, fetcher, caplog
):
    """Unbound cache: cancelling the app's task group while a refresh and inline misses run
    cancels only the callers; the fetches finish, commit and persist; the cache works on."""
    base = Baseline()
    db, cache, f = cached_fetcher(tmp_path, clock, fetcher)

    assert await f(1) == "1:1"
    clock.advance(11)
    fetcher.hold()
    served: list[Any] = []

    async def stale_caller() -> None:
        served.append(await f(1))  # answered at once; the refresh runs on
        await anyio.sleep_forever()

    with caplog.at_level(logging.DEBUG), anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as app:
            app.start_soon(stale_caller)
            for _ in range(3):
                app.start_soon(f, 2)  # inline misses, one shared fetch
            await wait_all_tasks_blocked()
            assert sorted(fetcher.calls) == [1, 1, 2]
            app.cancel_scope.cancel()
        assert served == ["1:1"]
        assert fetcher.cancelled == 0
        fetcher.release()
        await cache.wait_idle()
    assert f.cache_info().refreshes == 1
    assert await f(1) == "1:2"  # the refresh committed: a fresh hit
    assert await f(2) == "2:1"  # the miss committed: a fresh hit
    assert await f(4) == "4:1"  # and new work still runs
    assert fetcher.per_key == {1: 2, 2: 1, 4: 1}
    await cache.aclose()
    assert loud(caplog) == []
    base.check()
    assert await persisted(db, clock, [1, 2, 4]) == {1: "1:2", 2: "2:1", 4: "4:1"}


class AppError(Exception):
    """The application's own failure."""


@pytest.mark.parametrize("ending", ["cancelled", "error"])
async def test_ending_the_app_that_holds_async_with_cache_shuts_it_down_cleanly(
    tmp_path, clock, fetcher, caplog, ending
):
    """Bound cache (`async with cache` in the app): the app cancelled (or failing) mid-refresh
    cancels the refresh and the inline miss, closes the store and keeps the writes completed
    before; the cache can be entered again."""
    base = Baseline()
    db, cache, f = cached_fetcher(tmp_path, clock, fetcher)

    fail = anyio.Event()

    async def app() -> None:
        async with cache, anyio.create_task_group() as callers:
            assert await f(1) == "1:1"
            assert await f(2) == "2:1"  # written (its flush may still be running)
            clock.advance(11)
            fetcher.hold()
            assert await f(1) == "1:1"  # its refresh blocks
            for _ in range(2):
                callers.start_soon(f, 3)  # an inline miss, blocked
            await fail.wait()
            raise AppError

    raised: list[type[BaseException]] = []
    with caplog.at_level(logging.DEBUG), anyio.fail_after(HANG_GUARD):
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(app)
                await wait_all_tasks_blocked()
                assert fetcher.calls == [1, 2, 1, 3]
                if ending == "cancelled":
                    tg.cancel_scope.cancel()
                else:
                    fail.set()
        except Exception as exc:
            raised = leaves(exc)
    assert raised == ([] if ending == "cancelled" else [AppError])
    leaked = base.new_tasks()
    if leaked:  # do not leave them (and the store they reopen) to the next tests
        fetcher.release()
        with anyio.fail_after(HANG_GUARD):
            await asyncio.wait(leaked)
        await cache.aclose()
    assert leaked == set(), "fetches left running after the cache closed"
    assert fetcher.cancelled == 2
    assert loud(caplog) == []
    base.check()
    assert await persisted(db, clock, [1, 2, 3]) == {1: "1:1", 2: "2:1"}
    fetcher.release()
    async with cache:  # usable again: the stale value was kept
        assert await f(1) == "1:1"
        await cache.wait_idle()
        assert await f(3) == "3:2"
    assert await f(1) == "1:3"
    base.check()
    assert await persisted(db, clock, [1, 3]) == {1: "1:3", 3: "3:2"}


@pytest.mark.parametrize("ending", ["cancelled", "error"])
async def test_ending_async_with_cache_abnormally_stops_a_host_started_before_it(
    tmp_path, clock, fetcher, ending
):
    """A cache used without ceremony first (its host task runs a refresh), then entered by the
    app: the app cancelled (or failing) leaves no task of the cache behind."""
    base = Baseline()
    _, cache, f = cached_fetcher(tmp_path, clock, fetcher)

    assert await f(1) == "1:1"
    clock.advance(11)
    assert await f(1) == "1:1"  # its refresh starts the host task
    await cache.wait_idle()
    assert len(runner_tasks()) == 1
    fail = anyio.Event()

    async def app() -> None:
        async with cache:
            clock.advance(11)
            fetcher.hold()
            assert await f(1) == "1:2"  # a refresh in the app's task group, blocked
            await fail.wait()
            raise AppError

    raised: list[type[BaseException]] = []
    with anyio.fail_after(HANG_GUARD):
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(app)
                await wait_all_tasks_blocked()
                if ending == "cancelled":
                    tg.cancel_scope.cancel()
                else:
                    fail.set()
        except Exception as exc:
            raised = leaves(exc)
    assert raised == ([] if ending == "cancelled" else [AppError])
    assert fetcher.cancelled == 1
    left = runner_tasks()
    seen = [repr(task) for task in left]
    if left:  # do not leave it to the next tests
        for task in left:
            task.cancel()
        await asyncio.wait(left)
    assert seen == [], "the host task outlived the cache"
    base.check()


# -- successive asyncio.run calls --------------------------------------------------------


def test_sqlite_store_across_asyncio_runs_with_a_refresh_straddling_the_end(tmp_path):
    """Two asyncio.run calls on one file: a refresh in flight at the end of the first is
    cancelled without writing; refreshes that committed just before the end of the second
    are flushed by the end of that run."""
    clock, fetcher = FakeClock(), Fetcher()
    refreshed: list[Any] = []
    both_refreshed: list[anyio.Event] = []  # made in the second run's loop

    def on_event(event: CacheEvent) -> None:
        if event.kind == "refresh_ok":  # emitted on commit, before the write is buffered
            refreshed.append(event.key)
            if len(refreshed) == 2:
                both_refreshed[0].set()

    db, _, f = cached_fetcher(tmp_path, clock, fetcher, on_event=on_event)

    async def first() -> None:
        assert await f(1) == "1:1"
        assert await f(2) == "2:1"
        clock.advance(11)
        fetcher.hold()
        assert await f(1) == "1:1"  # its refresh is still blocked when the loop ends
        await wait_all_tasks_blocked()
        assert len(runner_tasks()) == 1

    async def second() -> None:
        both_refreshed.append(anyio.Event())
        assert await f(2) == "2:1"  # values survive the loop: stale, refreshed
        assert await f(1) == "1:1"  # the refresh left by the first loop does not block this one
        with anyio.fail_after(HANG_GUARD):
            await both_refreshed[0].wait()
        # both committed: return at once, their write still to be flushed

    run = Run(first)
    assert run.raised is None
    run.assert_clean()
    assert fetcher.cancelled == 1
    assert persisted_sync(db, clock, [1, 2]) == {1: "1:1", 2: "2:1"}  # nothing written by it
    fetcher.gate = None
    run = Run(second)
    assert run.raised is None
    run.assert_clean()
    assert fetcher.per_key == {1: 3, 2: 2}
    assert persisted_sync(db, clock, [1, 2]) == {1: "1:3", 2: "2:2"}


def test_an_asyncio_run_that_only_reads_the_store_closes_it(tmp_path):
    """A new process whose run is served from the file alone (fresh rows: no fetch, no
    write, no refresh): asyncio.run's end still closes the store it opened."""
    clock, fetcher = FakeClock(), Fetcher()
    db, _, f = cached_fetcher(tmp_path, clock, fetcher)

    async def write() -> None:
        assert await f(1) == "1:1"
        assert await f(2) == "2:1"

    run = Run(write)
    assert run.raised is None
    run.assert_clean()

    store = make_store(db, clock)
    reader = SWRCache(store=store, clock=clock)
    g = reader.cached(ttl=10, namespace=NAMESPACE)(fetcher)

    async def read() -> None:
        assert await g(1) == "1:1"
        assert await g(2) == "2:1"

    run = Run(read)
    assert run.raised is None
    assert g.cache_info().store_hits == 2
    assert fetcher.calls == [1, 2]
    assert (run.problems, run.warnings, run.tasks_left) == ([], [], set())
    try:
        assert (
            sqlite_threads() - run.threads_before == set()
        )  # once left open: nothing closed the store
    finally:
        asyncio.run(store.aclose())  # stop what it left open, for the next tests


def test_an_asyncio_run_that_only_invalidates_tags_closes_the_store(tmp_path):
    """A run whose only store work is cache.invalidate_tags (no call, no async with):
    asyncio.run's end still closes the store connection that sweep opened."""
    clock = FakeClock()
    store = make_store(tmp_path / "c.db", clock)
    cache = SWRCache(store=store, clock=clock)
    cache.cached(ttl=10, namespace=NAMESPACE, tags=lambda k: [f"t:{k}"])(Fetcher())

    run = Run(lambda: cache.invalidate_tags("t:1"))
    assert run.raised is None
    assert (run.problems, run.warnings, run.tasks_left) == ([], [], set())
    try:
        assert sqlite_threads() - run.threads_before == set()  # nothing closed the store
    finally:
        asyncio.run(store.aclose())  # stop what it left open, for the next tests


# -- KeyboardInterrupt inside a fetch ----------------------------------------------------


def interrupting(fetcher: Fetcher, interrupt: Callable[[Any], bool]) -> Callable[..., Any]:
    async def fetch(key: Any) -> Any:
        value = await fetcher(key)
        if interrupt(key):
            raise KeyboardInterrupt
        return value

    return fetch


@pytest.mark.parametrize("with_store", [True, False], ids=["store", "memory"])
def test_keyboard_interrupt_in_an_inline_miss_under_asyncio_run(tmp_path, caplog, with_store):
    """A KeyboardInterrupt in a miss's fetch ends asyncio.run with it: no hang, no task left,
    nothing reported (no "Task exception was never retrieved"), and the value computed just
    before it is in the file."""
    clock, fetcher = FakeClock(), Fetcher()
    db = tmp_path / "c.db"
    cache = SWRCache(store=make_store(db, clock) if with_store else None, clock=clock)
    f = cache.cached(ttl=10, namespace=NAMESPACE)(interrupting(fetcher, lambda k: k == 2))

    async def main() -> None:
        assert await f(1) == "1:1"  # committed; its write is scheduled
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(f, 2)  # the fetch raises KeyboardInterrupt

    with caplog.at_level(logging.DEBUG):
        run = Run(main)
    assert isinstance(run.raised, KeyboardInterrupt)
    run.assert_clean()
    assert fetcher.calls == [1, 2]
    assert loud(caplog, logging.ERROR) == []
    if with_store:
        assert persisted_sync(db, clock, [1, 2]) == {1: "1:1"}


def test_keyboard_interrupt_in_a_background_refresh_under_asyncio_run(tmp_path, caplog):
    """A KeyboardInterrupt in a background refresh ends asyncio.run with it: no hang, no task
    left, nothing reaches the loop's exception handler, completed writes are in the file."""
    clock, fetcher = FakeClock(), Fetcher()
    db = tmp_path / "c.db"
    cache = SWRCache(store=make_store(db, clock), clock=clock)
    f = cache.cached(ttl=10, namespace=NAMESPACE)(
        interrupting(fetcher, lambda k: fetcher.per_key[k] == 2)
    )

    async def main() -> None:
        assert await f(1) == "1:1"
        assert await f(2) == "2:1"
        clock.advance(11)
        assert await f(1) == "1:1"  # stale: its refresh raises KeyboardInterrupt
        await anyio.sleep_forever()

    with caplog.at_level(logging.DEBUG):
        run = Run(main)
    assert isinstance(run.raised, KeyboardInterrupt)
    assert fetcher.calls == [1, 2, 1]
    assert (run.warnings, run.tasks_left) == ([], set())
    assert sqlite_threads() - run.threads_before == set()
    assert loud(caplog, logging.ERROR) == []
    assert persisted_sync(db, clock, [1, 2]) == {1: "1:1", 2: "2:1"}
    assert run.problems == []  # the host task once re-raised it


# -- which loop is running (Runner.is_current) --------------------------------------------


def test_a_runner_is_current_only_on_its_own_running_loop() -> None:
    """Current inside its loop; not in a later asyncio.run on the same thread, nor on a loop
    that another thread runs while its own loop is still running."""

    async def noop() -> None:
        pass

    def make() -> Runner:
        return Runner(asyncio.get_running_loop(), 1, noop)

    async def first() -> Runner:
        runner = make()
        assert runner.is_current()
        seen: list[bool] = []
        other = threading.Thread(target=lambda: seen.append(asyncio.run(check(runner))))
        other.start()
        await anyio.to_thread.run_sync(other.join)  # this loop keeps running meanwhile
        assert seen == [False]
        return runner

    async def check(runner: Runner) -> bool:
        return runner.is_current()

    runner = asyncio.run(first())
    assert asyncio.run(check(runner)) is False


def test_a_runner_follows_its_loop_to_another_thread() -> None:
    """A loop run by one thread, then by another (one at a time): still its runner's loop."""

    async def noop() -> None:
        pass

    async def make() -> Runner:
        return Runner(asyncio.get_running_loop(), 1, noop)

    async def check(runner: Runner) -> bool:
        return runner.is_current()

    loop = asyncio.new_event_loop()
    try:
        runner = loop.run_until_complete(make())
        seen: list[bool] = []
        other = threading.Thread(target=lambda: seen.append(loop.run_until_complete(check(runner))))
        other.start()
        other.join()
        assert seen == [True]
        assert loop.run_until_complete(check(runner))  # and back
    finally:
        loop.close()


def test_a_cache_left_entered_by_an_ended_event_loop_can_be_closed_and_entered_again() -> None:
    """A test entered the cache (``__aenter__``) and ended its event loop without
    closing it: on the next loop, aclose() closes it and `async with cache` works, as
    nothing can exit that entry any more."""
    cache = SWRCache()

    @cache.cached(ttl=60)
    async def f(x: int) -> int:
        return x

    async def first() -> None:
        await cache.__aenter__()
        await f(1)  # ...and the test fails before its aclose()

    async def cleanup() -> None:
        await cache.aclose()

    async def second() -> int:
        async with cache:
            return await f(2)

    asyncio.run(first())
    asyncio.run(cleanup())
    assert asyncio.run(second()) == 2


def test_a_cache_entered_by_a_fixtures_setup_task_is_closed_by_its_teardown_task() -> None:
    """pytest-asyncio runs an async fixture's setup and teardown as two tasks of one
    loop: ``__aenter__`` in the first, aclose() in the second (the first has ended)
    closes the cache, and the next `async with cache` works."""
    cache = SWRCache()

    @cache.cached(ttl=60)
    async def f(x: int) -> int:
        return x

    async def next_fixture() -> int:
        async with cache:
            return await f(3)

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(cache.__aenter__())
        loop.run_until_complete(cache.aclose())
        assert loop.run_until_complete(next_fixture()) == 3
    finally:
        loop.close()


def test_background_work_of_an_abandoned_entry_is_cancelled_by_aclose() -> None:
    """A test entered the cache, started a background refresh, and ended without
    closing it: the teardown's aclose(), in another task, cancels that refresh
    instead of leaving it running."""
    clock = FakeClock()
    cache = SWRCache(clock=clock, close_timeout=0)
    started = asyncio.Event()
    outcome: list[str] = []
    calls = 0

    @cache.cached(ttl=1)
    async def f(x: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:  # the background refresh
            started.set()
            try:
                await asyncio.Event().wait()  # until cancelled
            except asyncio.CancelledError:
                outcome.append("cancelled")
                raise
        return x

    async def main() -> None:
        async def failing_test() -> None:
            await cache.__aenter__()
            await f(1)
            clock.advance(5)
            await f(1)  # stale: its refresh starts in the entered task group
            await started.wait()  # ...and the test ends before its aclose()

        await asyncio.create_task(failing_test())
        await cache.aclose()
        assert outcome == ["cancelled"]

    asyncio.run(main())


def test_a_fixture_whose_teardown_runs_in_another_task_closes_the_cache() -> None:
    """An async generator fixture, `async with cache: yield cache`, whose setup and
    teardown run as two tasks (pytest-asyncio): the teardown's exit cannot exit the
    setup task's task group, so it closes the cache without it, with no error."""
    cache = SWRCache()

    @cache.cached(ttl=60)
    async def f(x: int) -> int:
        return x

    async def fixture() -> Any:
        async with cache:
            yield cache

    async def setup() -> None:
        await gen.__anext__()

    async def teardown() -> None:
        with pytest.raises(StopAsyncIteration):
            await gen.__anext__()

    gen = fixture()
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(setup())
        assert loop.run_until_complete(f(1)) == 1
        loop.run_until_complete(teardown())
        assert loop.run_until_complete(f(2)) == 2  # closed, and usable again
        loop.run_until_complete(cache.aclose())
    finally:
        loop.close()


def test_reentering_after_an_abandoned_entry_starts_afresh() -> None:
    """An abandoned entry left one refresh running and one queued (one slot): the next
    `async with cache` retires them, so wait_idle() returns and a new stale hit's
    refresh runs."""
    clock = FakeClock()
    cache = SWRCache(clock=clock, max_concurrent_refreshes=1, close_timeout=0)
    calls = {1: 0, 2: 0, 3: 0}
    blocked = asyncio.Event()

    @cache.cached(ttl=1)
    async def f(x: int) -> int:
        calls[x] += 1
        if x == 1 and calls[x] == 2:  # the first refresh: blocks until cancelled
            blocked.set()
            await asyncio.Event().wait()
        return x

    async def main() -> None:
        async def failing_test() -> None:
            await cache.__aenter__()
            for x in (1, 2, 3):
                await f(x)
            clock.advance(5)
            await f(1)  # its refresh runs, and blocks
            await f(2)  # its refresh waits in the queue
            await blocked.wait()

        await asyncio.create_task(failing_test())
        async with cache:
            with anyio.fail_after(10):
                await cache.wait_idle()
            assert await f(3) == 3  # stale: refreshed in this entry
            with anyio.fail_after(10):
                await cache.wait_idle()
            assert calls[3] == 2

    asyncio.run(main())


def test_leaving_async_with_from_another_task_while_its_task_runs_is_refused() -> None:
    """Another task's exit of a block whose task still runs raises a RuntimeError (as
    its aclose() would) and cancels nothing of that task."""
    cache = SWRCache()

    @cache.cached(ttl=60)
    async def f(x: int) -> int:
        return x

    async def holder() -> str:
        await cache.__aenter__()
        with pytest.raises(RuntimeError, match="another task"):
            await asyncio.create_task(cache.__aexit__(None, None, None))
        await asyncio.sleep(0)  # not cancelled
        assert await f(1) == 1
        await cache.aclose()
        return "alive"

    assert asyncio.run(holder()) == "alive"


def test_a_close_stranded_on_a_stopped_loop_does_not_hold_back_another_loops_entry() -> None:
    """aclose() waiting for a refresh on a loop that then stops running (a background
    loop thread stopped, say) does not keep a later loop's `async with cache` out."""
    clock = FakeClock()
    cache = SWRCache(clock=clock)
    hang = asyncio.Event()
    calls = 0

    @cache.cached(ttl=10)
    async def f(x: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:  # the refresh: holds aclose()'s grace period
            await hang.wait()
        return x

    async def start_closing() -> asyncio.Task[None]:
        await f(1)
        clock.advance(11)
        await f(1)  # stale: the refresh starts, and hangs
        closing = asyncio.ensure_future(cache.aclose())
        for _ in range(10):  # let the close reach its grace period
            await asyncio.sleep(0)
        assert not closing.done()
        return closing

    async def enter() -> int:
        async with cache:
            return await f(3)

    stopped = asyncio.new_event_loop()
    try:
        closing = stopped.run_until_complete(start_closing())  # then the loop stops
        assert asyncio.run(enter()) == 3
    finally:
        hang.set()
        stopped.run_until_complete(closing)
        stopped.close()
