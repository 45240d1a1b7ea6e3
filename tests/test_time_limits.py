"""``store_timeout`` on asyncio: a store call that hangs gives up, and nothing else does.

These run on an asyncio loop whose clock the test moves (:class:`VirtualTimeLoop`):
a time limit expires when the test advances the loop's time past it, and never
otherwise, so nothing here sleeps or depends on the machine's speed.  (The trio
side, ``anyio.fail_after``, is covered by ``TestNoStoreTimeout`` in test_faults.py.)
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from aiocache_swr import PickleSerializer, SQLiteStore, SWRCache
from aiocache_swr._keys import stable_key
from aiocache_swr._store import MemoryStore, Record
from aiocache_swr.testing import FakeClock

from ._faulty_store import FaultyStore, hang, raises
from ._gate import GATE_TIMEOUT, GateSerializer

pytestmark = pytest.mark.anyio

TIMEOUT = 5.0  # store_timeout, in the loop's (virtual) seconds
TTL = 60.0


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose ``time()`` runs ahead of the real clock by what the test adds."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = 0.0

    def time(self) -> float:
        return super().time() + self.offset


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


def functions(cache: SWRCache) -> tuple[Any, Any]:
    """Two functions cached by ``cache``: ``f(k) == f"f{k}"`` and ``g(k) == f"g{k}"``."""

    @cache.cached(ttl=TTL)
    async def f(key: int) -> str:
        return f"f{key}"

    @cache.cached(ttl=TTL)
    async def g(key: int) -> str:
        return f"g{key}"

    return f, g


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
        f, _ = functions(cache)

        results: list[str] = []
        with caplog.at_level(logging.WARNING, logger="aiocache_swr"):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: _append(results, f(1)))
                await store.wait_hanging()
                await advance(TIMEOUT * 0.9)
                assert results == [], "gave up before store_timeout"
                await advance(TIMEOUT * 0.2)
            assert results == ["f1"], "the read never gave up"
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
        f, _ = functions(cache)

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
            assert results == ["f2"], "the second read never gave up"
        assert f.cache_info().store_errors == 1


async def test_concurrent_hung_reads_each_give_up(clock: FakeClock) -> None:
    """Two functions' reads hang at once: both give up, each counted once, and a
    third read afterwards works."""
    store = hanging_store("get_many")
    async with SWRCache(clock=clock, store=store, store_timeout=TIMEOUT) as cache:
        f, g = functions(cache)

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
        f, _ = functions(cache)

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


@pytest.mark.skipif(sys.version_info < (3, 11), reason="the test uses asyncio.timeout (3.11+)")
async def test_a_cancellation_in_the_same_turn_as_the_time_limit_reaches_the_caller(
    clock: FakeClock,
) -> None:
    """The caller's own asyncio deadline passes in the loop turn in which the store's
    time limit expires: the caller gets its own timeout, not an invalidation that
    returned as if only the store had timed out."""
    store = hanging_store("delete")
    async with SWRCache(clock=clock, store=store, store_timeout=TIMEOUT) as cache:
        f, _ = functions(cache)

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
        f, _ = functions(cache)

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

    f, _ = functions(cache)

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
        f, g = functions(cache)

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
    first (the case a timer shared by every store call, armed for an older one, got wrong)."""
    store = FaultyStore(MemoryStore())
    async with SWRCache(clock=clock, store=store, store_timeout=TIMEOUT) as cache:
        f, _ = functions(cache)

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


async def test_a_loop_stalled_past_two_deadlines_behind_a_hung_call_lets_the_earlier_win(
    clock: FakeClock,
) -> None:
    """As above, with another function's read still hanging when the loop runs late:
    the caller's own, earlier deadline still wins over its store call's later one."""
    store = FaultyStore(MemoryStore())
    async with SWRCache(clock=clock, store=store, store_timeout=TIMEOUT) as cache:
        f, g = functions(cache)

        await f(1)
        await advance(TIMEOUT + 1)
        store.always("get_many", hang())
        store.always("delete", hang())
        outcome: list[str] = []

        async def invalidate_within(seconds: float) -> None:
            with anyio.move_on_after(seconds) as scope:
                await f.invalidate(1)
                outcome.append("invalidate returned")
            outcome.append(f"cancelled: {scope.cancelled_caught}")

        async with anyio.create_task_group() as tg:
            tg.start_soon(g, 1)  # its read hangs; its limit is due first
            await store.wait_hanging()
            await advance(3.0)
            tg.start_soon(invalidate_within, TIMEOUT / 2)  # due before its delete's limit
            await store.wait_hanging(2)
            await advance(TIMEOUT * 2)  # past every deadline at once
        assert outcome == ["cancelled: True"]
        assert f.cache_info().store_errors == 0
        store.heal()


async def test_a_read_hung_on_the_sqlite_worker_lets_its_caller_go_at_store_timeout(
    clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A SQLiteStore read stuck on its worker thread (a hung disk) is abandoned at
    store_timeout: the caller gets the computed value while the worker is still stuck."""
    path = tmp_path / "cache.db"
    writer = SQLiteStore(path)
    writer.put("ns", stable_key((1,)), Record("stored", None, clock(), ()))
    await writer.aclose()
    loads = GateSerializer()
    cache = SWRCache(clock=clock, store=SQLiteStore(path, serializer=loads), store_timeout=TIMEOUT)

    @cache.cached(ttl=TTL, namespace="ns")
    async def f(key: int) -> str:
        return f"computed {key}"

    results: list[str] = []
    answered = anyio.Event()

    async def call() -> None:
        results.append(await f(1))
        answered.set()

    loads.hold = True
    try:
        with caplog.at_level(logging.WARNING, logger="aiocache_swr"):
            async with cache, anyio.create_task_group() as tg:
                tg.start_soon(call)
                assert await anyio.to_thread.run_sync(loads.entered.wait, GATE_TIMEOUT)
                await advance(TIMEOUT + 1)
                await answered.wait()
                assert not loads.left.is_set(), "the caller waited for the stuck worker"
                assert results == ["computed 1"]
                assert f.cache_info().store_errors == 1
                loads.release.set()
    finally:
        loads.release.set()
    assert "store_timeout" in caplog.text


async def _a_patient_and_a_limited_cache(
    tmp_path: Path, clock: FakeClock, loads: GateSerializer
) -> tuple[SWRCache, SWRCache, tuple[Any, Any, Any]]:
    """Two caches on one SQLiteStore holding "stored 1".."stored 3" (its reads through
    ``loads``): one without store_timeout, one with; two functions of the first (the
    first reader, one to join a batch) and one of the second (a batch's leader)."""
    path = tmp_path / "cache.db"
    seed = SQLiteStore(path)
    for key in (1, 2, 3):
        seed.put("ns", stable_key((key,)), Record(f"stored {key}", None, clock(), ()))
    await seed.aclose()
    store = SQLiteStore(path, serializer=loads)
    patient = SWRCache(clock=clock, store=store, store_timeout=None)
    limited = SWRCache(clock=clock, store=store, store_timeout=TIMEOUT)

    async def compute(key: int) -> str:
        return f"computed {key}"

    functions = (
        patient.cached(ttl=TTL, namespace="ns")(compute),
        patient.cached(ttl=TTL, namespace="ns")(compute),
        limited.cached(ttl=TTL, namespace="ns")(compute),
    )
    return patient, limited, functions


async def test_a_read_batch_leader_let_go_by_its_limit_leaves_its_batch_to_the_store(
    clock: FakeClock, tmp_path: Path
) -> None:
    """Two caches share one SQLiteStore, one with no store_timeout: a read of the
    other's waiting for a read hung on the worker thread, with a read of the first
    cache's joined to its batch, is let go at store_timeout (the caller gets the
    computed value), and the store serves the one who joined once the worker is back."""
    loads = GateSerializer()
    patient, limited, (first, joiner, leader) = await _a_patient_and_a_limited_cache(
        tmp_path, clock, loads
    )
    results: dict[str, str] = {}
    led = anyio.Event()

    async def call(name: str, f: Any, key: int) -> None:
        results[name] = await f(key)
        if name == "leader":
            led.set()

    loads.hold = True
    try:
        async with patient, limited, anyio.create_task_group() as tg:
            tg.start_soon(call, "first", first, 1)
            assert await anyio.to_thread.run_sync(loads.entered.wait, GATE_TIMEOUT)
            tg.start_soon(call, "leader", leader, 2)  # leads the next batch
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(call, "joiner", joiner, 3)  # joins it
            await anyio.wait_all_tasks_blocked()
            await advance(TIMEOUT + 1)
            await led.wait()
            assert not loads.left.is_set(), "the leader waited for the stuck worker"
            assert results == {"leader": "computed 2"}
            loads.hold = False
            loads.release.set()
    finally:
        loads.release.set()
    assert results == {"leader": "computed 2", "first": "stored 1", "joiner": "stored 3"}


class TwoGates(GateSerializer):
    """Holds the read of "stored 1" at the first gate, and any other at the second."""

    def __init__(self) -> None:
        super().__init__()
        self.second = GateSerializer()

    def loads(self, data: bytes) -> Any:
        value = PickleSerializer.loads(self, data)
        if self.hold and value[0] != "stored 1":
            return self.second.loads(data)
        return super().loads(data)


async def test_a_read_batch_leader_let_go_during_its_own_read_leaves_it_to_the_store(
    clock: FakeClock, tmp_path: Path
) -> None:
    """As above, but the leader's limit expires while its own batch hangs on the
    worker: the one who joined is answered from what the worker reads once it is back,
    not failed with the leader's cancellation."""
    loads = TwoGates()
    patient, limited, (first, joiner, leader) = await _a_patient_and_a_limited_cache(
        tmp_path, clock, loads
    )
    results: dict[str, str] = {}

    async def call(name: str, f: Any, key: int) -> None:
        results[name] = await f(key)

    loads.hold = loads.second.hold = True
    try:
        async with patient, limited, anyio.create_task_group() as tg:
            tg.start_soon(call, "first", first, 1)
            assert await anyio.to_thread.run_sync(loads.entered.wait, GATE_TIMEOUT)
            tg.start_soon(call, "leader", leader, 2)  # leads the next batch
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(call, "joiner", joiner, 3)  # joins it
            await anyio.wait_all_tasks_blocked()
            loads.release.set()  # the earlier read ends: the batch runs, and hangs
            assert await anyio.to_thread.run_sync(loads.second.entered.wait, GATE_TIMEOUT)
            await advance(TIMEOUT + 1)  # the leader's limit expires during its read
            assert results == {"first": "stored 1", "leader": "computed 2"}
            loads.second.release.set()
    finally:
        loads.release.set()
        loads.second.release.set()
    assert results == {"first": "stored 1", "leader": "computed 2", "joiner": "stored 3"}
    assert joiner.cache_info().store_errors == 0


async def test_the_time_limit_used_before_python_3_11_says_when_it_has_expired() -> None:
    """Before 3.11 (and on trio) the store's time limit is an anyio cancel scope: it
    says it expired, so a store read it abandons lets its caller go at once (a hung
    disk must not hang the caller there either)."""
    from aiocache_swr._runner import _fail_after

    limits: list[Any] = []

    async def within_no_time() -> None:
        async with _fail_after(0) as limit:
            limits.append(limit)
            await anyio.lowlevel.checkpoint()  # the deadline has passed: cancelled here

    with pytest.raises(TimeoutError):
        await within_no_time()
    assert limits[0].expired()
