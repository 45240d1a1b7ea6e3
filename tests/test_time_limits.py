"""``store_timeout`` on asyncio: a store call that hangs gives up, and nothing else does.

These run on an asyncio loop whose clock the test moves (:class:`VirtualTimeLoop`):
a time limit expires when the test advances the loop's time past it, and never
otherwise, so nothing here sleeps or depends on the machine's speed.  (The trio
side, ``anyio.fail_after``, is covered by ``TestNoStoreTimeout`` in test_faults.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import pytest

from aiocache_swr import SWRCache
from aiocache_swr._store import MemoryStore
from aiocache_swr._watchdog import Watchdog
from aiocache_swr.testing import FakeClock

from ._faulty_store import FaultyStore, hang, raises

pytestmark = pytest.mark.anyio

TIMEOUT = 5.0  # store_timeout, in the loop's (virtual) seconds
TTL = 60.0


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose ``time()`` runs ahead of the real clock by what the test adds.

    ``frozen=True``: only what the test adds moves it (for exact deadlines; then
    nothing may wait for a timer the test does not reach by advancing).
    """

    def __init__(self, *, frozen: bool = False) -> None:
        super().__init__()
        self.offset = 0.0
        self._frozen_at = super().time() if frozen else None

    def time(self) -> float:
        now = super().time() if self._frozen_at is None else self._frozen_at
        return now + self.offset


@pytest.fixture
def anyio_backend() -> Any:
    return ("asyncio", {"loop_factory": VirtualTimeLoop})


async def advance(seconds: float) -> None:
    """Move the loop's clock on by ``seconds``; let what that expires run."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualTimeLoop)
    loop.offset += seconds
    # One loop turn first: timers due are run in the turn after this task yields,
    # behind its own wake-up, so only then can "every task is blocked" be trusted.
    await anyio.lowlevel.checkpoint()
    await anyio.wait_all_tasks_blocked()


def hanging_store(*ops: str) -> FaultyStore:
    store = FaultyStore(MemoryStore())
    for op in ops:
        store.always(op, hang())
    return store


async def test_a_hung_read_gives_up_after_store_timeout_and_the_miss_is_computed(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The miss waits store_timeout for a hung read, then computes; the failure is
    counted and logged with the limit."""
    store = hanging_store("get_many")
    async with SWRCache(clock=clock, store=store, store_timeout=TIMEOUT) as cache:

        @cache.cached(ttl=TTL)
        async def f(key: int) -> str:
            return f"{key}!"

        results: list[str] = []
        with caplog.at_level(logging.WARNING, logger="aiocache_swr"):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: _append(results, f(1)))
                await store.wait_hanging()
                await advance(TIMEOUT * 0.9)
                assert results == [], "gave up before store_timeout"
                await advance(TIMEOUT * 0.2)
            assert results == ["1!"], "the read never gave up"
        assert f.cache_info().store_errors == 1
        assert store.calls.count(("get_many", "cancelled")) == 1
        assert f"store_timeout={TIMEOUT}s" in caplog.text
        store.heal()


async def test_a_read_that_ends_in_time_is_never_cancelled_later(clock: FakeClock) -> None:
    """A read answered before its limit is not touched when the limit's time comes;
    the next read gets a limit of its own, counted from its own start."""
    store = FaultyStore(MemoryStore())
    store.plan("get_many", hang(), hang())
    async with SWRCache(clock=clock, store=store, store_timeout=TIMEOUT) as cache:

        @cache.cached(ttl=TTL)
        async def f(key: int) -> str:
            return f"{key}!"

        async with anyio.create_task_group() as tg:
            tg.start_soon(f, 1)
            await store.wait_hanging()
            await advance(TIMEOUT * 0.6)
            store.release()  # answers in time
        assert f.cache_info().store_errors == 0

        results: list[str] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: _append(results, f(2)))
            await store.wait_hanging()
            await advance(TIMEOUT * 0.6)  # past the first read's limit, not this one's
            assert results == []
            assert f.cache_info().store_errors == 0
            await advance(TIMEOUT * 0.6)
            assert results == ["2!"], "the second read never gave up"
        assert f.cache_info().store_errors == 1


async def test_concurrent_hung_reads_each_give_up(clock: FakeClock) -> None:
    """Two functions' reads hang at once: both give up, each counted once, and a
    third read afterwards works."""
    store = hanging_store("get_many")
    async with SWRCache(clock=clock, store=store, store_timeout=TIMEOUT) as cache:

        @cache.cached(ttl=TTL)
        async def f(key: int) -> str:
            return f"f{key}"

        @cache.cached(ttl=TTL)
        async def g(key: int) -> str:
            return f"g{key}"

        results: list[str] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: _append(results, f(1)))
            await store.wait_hanging()
            await advance(1.0)
            tg.start_soon(lambda: _append(results, g(1)))
            await store.wait_hanging(2)
            await advance(TIMEOUT - 0.5)  # f's read is past its limit, g's is not
            assert results == ["f1"]
            await advance(1.0)
            assert results == ["f1", "g1"], "g's read never gave up"
        assert f.cache_info().store_errors == g.cache_info().store_errors == 1
        store.heal()
        assert await f(3) == "f3"
        assert f.cache_info().store_errors == 1


async def test_a_caller_cancelled_during_a_hung_invalidation_is_cancelled_not_timed_out(
    clock: FakeClock,
) -> None:
    """invalidate() awaits the store in its caller's task: a cancellation from outside
    reaches the caller as such, and its time limit never fires later."""
    store = hanging_store("delete")
    async with SWRCache(clock=clock, store=store, store_timeout=TIMEOUT) as cache:

        @cache.cached(ttl=TTL)
        async def f(key: int) -> str:
            return f"{key}!"

        await f(1)
        with anyio.move_on_after(1.0) as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(f.invalidate, 1)
                await store.wait_hanging()
                await advance(2.0)
        assert scope.cancelled_caught
        assert f.cache_info().store_errors == 0
        await advance(TIMEOUT * 2)  # the store call's limit has ended with it
        assert f.cache_info().store_errors == 0
        store.heal()


async def test_a_cancellation_in_the_same_turn_as_the_time_limit_reaches_the_caller(
    clock: FakeClock,
) -> None:
    """The caller's own asyncio deadline passes in the loop turn in which the store's
    time limit expires: the caller gets its own timeout, not an invalidation that
    returned as if only the store had timed out."""
    store = hanging_store("delete")
    async with SWRCache(clock=clock, store=store, store_timeout=TIMEOUT) as cache:

        @cache.cached(ttl=TTL)
        async def f(key: int) -> str:
            return f"{key}!"

        await f(1)
        outcome: list[str] = []

        async def invalidate_within(seconds: float) -> None:
            try:
                async with asyncio.timeout(seconds):
                    await f.invalidate(1)
            except TimeoutError:
                outcome.append("the caller's own timeout")
            else:
                outcome.append("returned")

        async with anyio.create_task_group() as tg:
            tg.start_soon(invalidate_within, TIMEOUT + 0.5)
            await store.wait_hanging()
            await advance(TIMEOUT + 1.0)  # both deadlines pass at once
        assert outcome == ["the caller's own timeout"]
        store.heal()


async def test_a_time_limit_does_not_outlive_a_failing_call(clock: FakeClock) -> None:
    """A store call that raises before its limit: the limit is gone with it, and the
    task that made the call is not cancelled later."""
    store = FaultyStore(MemoryStore())
    store.plan("delete", hang(then=raises()))
    async with SWRCache(clock=clock, store=store, store_timeout=TIMEOUT) as cache:

        @cache.cached(ttl=TTL)
        async def f(key: int) -> str:
            return f"{key}!"

        await f(1)

        async def release_it() -> None:
            await store.wait_hanging()
            store.release()  # then it raises: a store error, counted

        async with anyio.create_task_group() as tg:
            tg.start_soon(release_it)
            await f.invalidate(1)  # in this task, which goes on afterwards
        assert f.cache_info().store_errors == 1
        with anyio.CancelScope() as scope:
            await advance(TIMEOUT * 2)
            await anyio.lowlevel.checkpoint()
        assert not scope.cancelled_caught, "this task was cancelled after its call ended"
        assert f.cache_info().store_errors == 1


async def test_closing_the_cache_during_a_hung_read_is_not_a_store_timeout(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The cache closes while a read hangs: the read is cancelled, its caller is told
    the cache closed, and no store timeout is reported."""
    store = hanging_store("get_many")
    cache = SWRCache(clock=clock, store=store, store_timeout=TIMEOUT, close_timeout=0.0)

    @cache.cached(ttl=TTL)
    async def f(key: int) -> str:
        return f"{key}!"

    errors: list[BaseException] = []

    async def call() -> None:
        try:
            await f(1)
        except RuntimeError as exc:
            errors.append(exc)

    with caplog.at_level(logging.WARNING, logger="aiocache_swr"):
        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await store.wait_hanging()
            store.heal()
            await cache.aclose()
        await advance(TIMEOUT * 2)
    assert len(errors) == 1
    assert "closed" in str(errors[0])
    assert "store_timeout" not in caplog.text
    assert f.cache_info().store_errors == 0


async def _append(results: list[str], call: Any) -> None:
    results.append(await call)


async def test_a_changed_store_timeout_applies_to_later_calls_only(clock: FakeClock) -> None:
    """store_timeout lowered while a call hangs: a later call gives up at the new limit,
    before the older call, which keeps the limit it started with."""
    store = hanging_store("get_many")
    async with SWRCache(clock=clock, store=store, store_timeout=TIMEOUT) as cache:

        @cache.cached(ttl=TTL)
        async def f(key: int) -> str:
            return f"f{key}"

        @cache.cached(ttl=TTL)
        async def g(key: int) -> str:
            return f"g{key}"

        results: list[str] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: _append(results, f(1)))  # limit: TIMEOUT
            await store.wait_hanging()
            cache.store_timeout = 1.0
            tg.start_soon(lambda: _append(results, g(1)))  # limit: 1.0
            await store.wait_hanging(2)
            await advance(1.5)
            assert results == ["g1"], "the later call kept the old store_timeout"
            await advance(TIMEOUT)
            assert results == ["g1", "f1"], "the older call lost its limit"
        store.heal()


async def test_a_loop_stalled_past_two_deadlines_lets_the_earlier_one_win(
    clock: FakeClock,
) -> None:
    """The caller's own deadline comes before its store call's, and the loop runs late
    past both: the caller is cancelled; its call is not answered as a store timeout
    first (the shared timer, armed for an older store call, must not jump the queue)."""
    store = FaultyStore(MemoryStore())
    async with SWRCache(clock=clock, store=store, store_timeout=TIMEOUT) as cache:

        @cache.cached(ttl=TTL)
        async def f(key: int) -> str:
            return f"{key}!"

        await f(1)  # a store read that ends at once: the timer is armed for its limit
        await advance(3.0)
        store.always("delete", hang())
        outcome: list[str] = []

        async def invalidate_within(seconds: float) -> None:
            with anyio.move_on_after(seconds) as scope:  # due before the store's limit
                await f.invalidate(1)
                outcome.append("invalidate returned")
            outcome.append(f"cancelled: {scope.cancelled_caught}")

        async with anyio.create_task_group() as tg:
            tg.start_soon(invalidate_within, TIMEOUT / 2)
            await store.wait_hanging()
            await advance(TIMEOUT * 2)  # past both deadlines at once
        assert outcome == ["cancelled: True"]
        assert f.cache_info().store_errors == 0
        store.heal()


async def test_limits_one_after_another_do_not_pile_up() -> None:
    """Each limit that ends is dropped when the next one starts: 1,000 limits in a
    row leave one queued, not 1,000 waiting for the timer."""
    watchdog = Watchdog(asyncio.get_running_loop(), TIMEOUT)
    for _ in range(1000):
        with watchdog.limit():
            await anyio.lowlevel.checkpoint()
    assert watchdog.pending == 1


async def test_the_timer_drops_what_ended_behind_a_long_call() -> None:
    """Calls that end while an older one still runs stay queued behind it until the
    timer expires the older one; then none is left, and the next limit still fires."""
    watchdog = Watchdog(asyncio.get_running_loop(), TIMEOUT)
    outcome: list[str] = []

    async def long_call() -> None:
        try:
            with watchdog.limit():
                await anyio.sleep_forever()
        except TimeoutError:
            outcome.append("timed out")

    async with anyio.create_task_group() as tg:
        tg.start_soon(long_call)
        await anyio.wait_all_tasks_blocked()
        for _ in range(10):
            with watchdog.limit():
                await anyio.lowlevel.checkpoint()
        assert watchdog.pending == 11
        await advance(TIMEOUT + 1)
        assert outcome == ["timed out"]
        assert watchdog.pending == 0

    async def limited_wait() -> None:
        with watchdog.limit():
            await advance(TIMEOUT + 1)
            await anyio.sleep_forever()

    with pytest.raises(TimeoutError):
        await limited_wait()


# -- the watchdog on its own, on loops the tests run themselves -------------------


def run_frozen(main: Callable[[VirtualTimeLoop], Coroutine[Any, Any, None]]) -> None:
    """Run ``main(loop)`` on a new loop whose time only the test moves."""
    loop = VirtualTimeLoop(frozen=True)
    try:
        loop.run_until_complete(main(loop))
    finally:
        loop.close()


async def turns(n: int = 3) -> None:
    """Let the loop run ``n`` turns (with a frozen clock no timer fires by itself)."""
    for _ in range(n):
        await asyncio.sleep(0)


async def finished(task: asyncio.Task[Any]) -> Any:
    """``task``'s result, which must be ready within a few turns: on a frozen clock,
    awaiting a task that waits for a timer nobody reaches would hang, not fail."""
    await turns()
    assert task.done(), f"{task!r} is still waiting"
    return task.result()


def test_a_limit_expires_at_its_deadline_not_a_microsecond_before() -> None:
    """Exact deadlines, on the first timer and on the timer re-armed for a later limit."""

    async def main(loop: VirtualTimeLoop) -> None:
        watchdog = Watchdog(loop, TIMEOUT)
        expired: list[str] = []

        async def call(name: str, release: asyncio.Event) -> None:
            try:
                with watchdog.limit():
                    await release.wait()
            except TimeoutError:
                expired.append(name)

        quick, slow = asyncio.Event(), asyncio.Event()
        first = loop.create_task(call("quick", quick))
        await turns()
        loop.offset += 1.0
        second = loop.create_task(call("slow", slow))  # its deadline: TIMEOUT + 1
        await turns()
        quick.set()  # the first ends in time; the timer stays armed for its deadline
        await turns()
        loop.offset += TIMEOUT - 1.0  # the first's deadline: nothing left to expire
        await turns()
        loop.offset += 1.0 - 1e-6
        await turns()
        assert expired == []
        loop.offset += 2e-6
        await turns()
        assert expired == ["slow"]
        await finished(first)
        await finished(second)

    run_frozen(main)


def test_a_cancellation_requested_before_the_limit_does_not_stop_it_timing_out() -> None:
    """A task that caught a cancellation and goes on (cancelling() > 0, as in cleanup
    code) still gets TimeoutError from a limit that expires afterwards."""

    async def main(loop: VirtualTimeLoop) -> None:
        watchdog = Watchdog(loop, TIMEOUT)

        async def cleanup_after_a_cancellation() -> str:
            with contextlib.suppress(asyncio.CancelledError):  # cancelling() stays 1
                await asyncio.Event().wait()
            try:
                with watchdog.limit():
                    await asyncio.Event().wait()
            except TimeoutError:
                return "timed out"
            return "not timed out"

        task = loop.create_task(cleanup_after_a_cancellation())
        await turns()
        task.cancel()
        await turns()
        loop.offset += TIMEOUT + 1
        assert await finished(task) == "timed out"

    run_frozen(main)


def test_a_body_that_swallows_or_replaces_the_cancellation_keeps_its_outcome() -> None:
    """After the limit expires, a body that returns normally returns, and one that raises
    something else raises that: only the cancellation itself becomes TimeoutError."""

    async def main(loop: VirtualTimeLoop) -> None:
        watchdog = Watchdog(loop, TIMEOUT)

        async def swallowing() -> str:
            with watchdog.limit():
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    return "swallowed"
            return "unreachable"

        async def replacing() -> str:
            with watchdog.limit():
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    raise ValueError("replaced") from None
            return "unreachable"

        swallowed = loop.create_task(swallowing())
        replaced = loop.create_task(replacing())
        await turns()
        loop.offset += TIMEOUT + 1
        assert await finished(swallowed) == "swallowed"
        with pytest.raises(ValueError, match="replaced"):
            await finished(replaced)

    run_frozen(main)


def test_calls_that_end_behind_a_slow_one_do_not_pile_up() -> None:
    """10,000 calls end while one older call still runs: the queue stays small, and
    the older call still times out at its deadline."""

    async def main(loop: VirtualTimeLoop) -> None:
        watchdog = Watchdog(loop, TIMEOUT)
        outcome: list[str] = []

        async def slow() -> None:
            try:
                with watchdog.limit():
                    await asyncio.Event().wait()
            except TimeoutError:
                outcome.append("timed out")

        task = loop.create_task(slow())
        await turns()
        most = 0
        for _ in range(10_000):
            with watchdog.limit():
                await asyncio.sleep(0)
            most = max(most, watchdog.pending)
        assert most <= 200
        loop.offset += TIMEOUT
        await finished(task)
        assert outcome == ["timed out"]

    run_frozen(main)


def test_a_watchdog_is_freed_without_the_garbage_collector() -> None:
    """Once its loop is closed, a watchdog (and what it queued) is freed by reference
    counting alone: it keeps no reference cycle."""

    def watchdogs() -> int:  # those of other tests' caches may still be in use
        return sum(isinstance(o, Watchdog) for o in gc.get_objects())

    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        before = watchdogs()

        async def main(loop: VirtualTimeLoop) -> None:
            watchdog = Watchdog(loop, TIMEOUT)
            with watchdog.limit():
                await asyncio.sleep(0)

        run_frozen(main)  # closes the loop with the watchdog's timer still armed
        assert watchdogs() == before
    finally:
        if enabled:
            gc.enable()


def test_limits_overdue_together_all_expire_in_one_turn() -> None:
    """The loop runs late past 1,000 deadlines: every one expires within a couple of
    loop turns, as 1,000 separate timers would, not one limit per turn."""

    async def main(loop: VirtualTimeLoop) -> None:
        watchdog = Watchdog(loop, TIMEOUT)
        expired: list[int] = []

        async def call(n: int) -> None:
            try:
                with watchdog.limit():
                    await asyncio.Event().wait()
            except TimeoutError:
                expired.append(n)

        tasks = []
        for n in range(1000):
            tasks.append(loop.create_task(call(n)))
            await asyncio.sleep(0)
            loop.offset += 1e-3  # a deadline of its own for each
        loop.offset += TIMEOUT * 2
        await turns(3)
        assert sorted(expired) == list(range(1000))
        for task in tasks:
            await finished(task)

    run_frozen(main)


class _Uncancellable(asyncio.Future[None]):
    """A future whose ``cancel()`` fails, as a broken awaitable's might."""

    def cancel(self, msg: Any = None) -> bool:
        raise RuntimeError("cancel failed")


def test_a_limit_that_cannot_cancel_its_task_does_not_stop_the_others() -> None:
    """One task's cancellation raises: the loop's exception handler is told, and the
    other limits due with it, and those due later, still expire."""

    async def main(loop: VirtualTimeLoop) -> None:
        reported: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: reported.append(context))
        watchdog = Watchdog(loop, TIMEOUT)
        outcome: list[str] = []
        stuck = _Uncancellable(loop=loop)

        async def call(name: str, awaited: asyncio.Future[None] | None = None) -> None:
            try:
                with watchdog.limit():
                    await (awaited if awaited is not None else asyncio.Event().wait())
            except TimeoutError:
                outcome.append(name)

        first = loop.create_task(call("first"))
        broken = loop.create_task(call("broken", stuck))
        second = loop.create_task(call("second"))
        await turns()
        loop.offset += 1.0
        later = loop.create_task(call("later"))  # due a second after the others
        await turns()
        loop.offset += TIMEOUT - 0.5
        await turns()
        assert outcome == ["first", "second"]
        assert [str(context["exception"]) for context in reported] == ["cancel failed"]
        loop.offset += 1.0
        await turns()
        assert outcome == ["first", "second", "later"]
        stuck.set_result(None)  # let it end: its limit never expired
        await finished(broken)
        for task in (first, second, later):
            await finished(task)

    run_frozen(main)
