"""Engine behaviours pinned after the fifth review (SPEC section 2): a version change
during a computation, a function that calls itself, the context of a queued refresh,
the host task ending while the loop goes on, flights of a suspended event loop, and
async callables given where a plain one is called.
"""

from __future__ import annotations

import asyncio
import contextvars
import subprocess
import sys
import textwrap
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from aiocache_swr import SWRCache
from aiocache_swr.testing import FakeClock

pytestmark = pytest.mark.anyio

who: contextvars.ContextVar[str | None] = contextvars.ContextVar("who", default=None)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_a_call_under_a_new_version_shares_a_computation_of_the_old_one(
    clock: FakeClock,
) -> None:
    """Documented: a caller arriving while a computation of its key runs shares it,
    whatever version it started under; the stored entry is then judged under each
    call's version (with stale_ttl=0, the next call computes the new version)."""
    data = {"v": 1}
    gate = anyio.Event()
    started: list[int] = []
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=None, stale_ttl=0, version=lambda k: data["v"])
        async def f(k: int) -> str:
            seen = data["v"]
            started.append(seen)
            if seen == 1:
                await gate.wait()
            return f"data@{seen}"

        results: dict[str, str] = {}

        async def call(name: str) -> None:
            results[name] = await f(1)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "old")
            await wait_all_tasks_blocked()
            data["v"] = 2
            tg.start_soon(call, "new")
            await wait_all_tasks_blocked()
            gate.set()
        assert results == {"old": "data@1", "new": "data@1"}
        assert started == [1]
        assert await f(1) == "data@2"  # stored under version 1: recomputed for version 2
        assert started == [1, 2]


async def test_stale_hits_under_a_new_version_start_no_second_refresh_while_one_runs(
    clock: FakeClock,
) -> None:
    """A refresh of the old version still running counts as the key's one refresh:
    stale hits under a new version (or flipping between two) start no other; the
    first stale hit after it ends starts the new version's."""
    data = {"v": 1}
    gate = anyio.Event()
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10, version=lambda k: data["v"])
        async def f(k: int) -> str:
            seen = data["v"]
            if not gate.is_set():
                await gate.wait()
            return f"data@{seen}"

        gate.set()
        assert await f(1) == "data@1"
        gate = anyio.Event()
        clock.advance(11)
        assert await f(1) == "data@1"  # stale: a refresh under version 1 starts, blocks
        await wait_all_tasks_blocked()
        for v in [2, 1] * 50:
            data["v"] = v
            assert await f(1) == "data@1"  # stale, served; no second refresh
        assert f.cache_info().refreshes == 1
        data["v"] = 2
        gate.set()
        await cache.wait_idle()
        assert await f(1) == "data@1"  # stored under version 1: stale, a new refresh
        await cache.wait_idle()
        assert f.cache_info().refreshes == 2
        assert await f(1) == "data@2"


async def test_a_function_calling_itself_with_its_key_fails_instead_of_waiting_forever(
    clock: FakeClock,
) -> None:
    """The inner call would join the computation it is part of: a RuntimeError naming
    the function reaches the caller, and the cache goes on working."""
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10, key=lambda k, depth=0: k)
        async def g(k: int, depth: int = 0) -> int:
            if depth == 0:
                return await g(k, depth=1)
            return k

        with pytest.raises(RuntimeError, match="while computing that key"), anyio.fail_after(10):
            await g(1)  # (the time limit only ends the test if it waits for itself)
        assert await g(2, depth=1) == 2


async def test_a_cycle_of_calls_through_other_keys_fails_instead_of_waiting_forever(
    clock: FakeClock,
) -> None:
    """f(1) awaits f(2), whose computation awaits f(1): the call that would close the
    cycle raises instead of waiting for itself."""
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10)
        async def f(k: int) -> int:
            return await f(2) if k == 1 else await f(1)

        with pytest.raises(RuntimeError, match="while computing that key"), anyio.fail_after(10):
            await f(1)  # (the time limit only ends the test if it waits for itself)


async def test_other_keys_and_other_functions_may_be_called_while_computing(
    clock: FakeClock,
) -> None:
    """Only the computation's own key is refused: a call of another key of the same
    function, awaited inside it, is computed as usual."""
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10)
        async def fib(n: int) -> int:
            return n if n < 2 else await fib(n - 1) + await fib(n - 2)

        assert await fib(20) == 6765


async def test_a_queued_refresh_runs_in_the_context_of_the_caller_that_asked_for_it(
    clock: FakeClock,
) -> None:
    """With one refresh slot, the refresh queued by caller B runs with B's contextvars,
    not with those of the refresh that ran before it."""
    seen: dict[int, list[str | None]] = {}
    gate = anyio.Event()
    async with SWRCache(clock=clock, max_concurrent_refreshes=1) as cache:

        @cache.cached(ttl=10)
        async def f(k: int) -> int:
            seen.setdefault(k, []).append(who.get())
            if k == 1 and len(seen[k]) > 1:
                await gate.wait()
            return k

        await f(1)
        await f(2)
        clock.advance(11)

        async def caller(name: str, k: int) -> None:
            who.set(name)
            await f(k)

        async with anyio.create_task_group() as tg:
            tg.start_soon(caller, "A", 1)  # the refresh of 1 takes the slot, blocks
            await wait_all_tasks_blocked()
            tg.start_soon(caller, "B", 2)  # the refresh of 2 waits in the queue
            await wait_all_tasks_blocked()
        gate.set()
        await cache.wait_idle()
    assert seen[1][-1] == "A"
    assert seen[2][-1] == "B"


async def test_an_async_on_event_listener_is_refused() -> None:
    """on_event is called, never awaited: an async one would record nothing."""

    async def listener(event: Any) -> None:
        pass

    with pytest.raises(TypeError, match="on_event= must be a plain callable"):
        SWRCache(on_event=listener)


@pytest.mark.parametrize("param", ["key", "tags"])
async def test_an_async_key_or_tags_callable_is_refused_at_decoration(param: str) -> None:
    """key= and tags= are called, never awaited: an async one would make every call a
    miss (a new coroutine object as its key) or fail later."""

    async def helper(k: int) -> Any:
        return k

    with pytest.raises(TypeError, match=f"{param}= must be a plain callable"):

        @SWRCache().cached(**{param: helper})
        async def f(k: int) -> int:
            return k


def test_keyboard_interrupt_in_a_computation_under_trio_reaches_its_caller() -> None:
    """On trio, a KeyboardInterrupt raised by the function is raised to the callers
    waiting for it (not dropped with the cache's background task group), and the
    cache keeps working for a caller that handles it."""
    trio = pytest.importorskip("trio")
    cache = SWRCache(clock=FakeClock())
    interrupt = {"on": True}

    @cache.cached(ttl=10)
    async def f(k: int) -> int:
        await trio.lowlevel.checkpoint()
        if interrupt["on"]:
            raise KeyboardInterrupt
        return k

    out: dict[str, Any] = {}

    async def main() -> None:
        try:
            await f(1)
        except KeyboardInterrupt as exc:
            out["first"] = exc
        interrupt["on"] = False
        out["second"] = await f(2)

    trio.run(main)
    assert isinstance(out["first"], KeyboardInterrupt)
    assert out["second"] == 2


def test_a_flight_of_a_suspended_loop_does_not_write_over_a_newer_loops_value() -> None:
    """A refresh left blocked in loop 1 (run_until_complete returned) finishes after
    another loop committed a newer value: it is not written over it."""
    clock = FakeClock()
    cache = SWRCache(clock=clock)
    state: dict[str, Any] = {"gate": None, "n": 0}

    @cache.cached(ttl=10)
    async def f(k: int) -> str:
        state["n"] += 1
        n = state["n"]
        if state["gate"] is not None:
            await state["gate"].wait()
        return f"v{n}"

    loop1 = asyncio.new_event_loop()

    async def start() -> None:
        assert await f(1) == "v1"
        clock.advance(11)
        state["gate"] = asyncio.Event()
        assert await f(1) == "v1"  # stale: the refresh (v2) starts and blocks
        for _ in range(3):
            await asyncio.sleep(0)

    async def resume() -> str:
        gate.set()
        for _ in range(5):
            await asyncio.sleep(0)
        return await f(1)

    try:
        loop1.run_until_complete(start())
        gate, state["gate"] = state["gate"], None

        async def other() -> str:
            return await f.refresh(1)  # v3: the newest value

        assert asyncio.run(other()) == "v3"
        assert loop1.run_until_complete(resume()) == "v3"
    finally:
        loop1.run_until_complete(cache.aclose())
        loop1.close()


def test_the_first_stale_hit_imports_nothing() -> None:
    """A stale hit returns at once: anyio's asyncio backend (about 20 modules, 15-20
    ms) is imported when a function is decorated, not on the first stale hit."""
    script = textwrap.dedent(
        """
        import asyncio, sys
        from aiocache_swr import SWRCache
        from aiocache_swr.testing import FakeClock

        clock = FakeClock()
        cache = SWRCache(clock=clock)

        @cache.cached(ttl=10)
        async def f(k):
            return k

        async def main():
            await f(1)
            clock.advance(11)
            before = set(sys.modules)
            await f(1)
            print(sorted(set(sys.modules) - before))
            await cache.aclose()

        asyncio.run(main())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


async def test_a_background_refresh_started_inside_a_computation_may_call_it(
    clock: FakeClock,
) -> None:
    """f(1)'s computation reads g(2), stale: served, and refreshed in the background.
    That refresh calls f(1) while it computes: it waits for it (f(1) never waits for
    the refresh), and is no self-call."""
    gate = anyio.Event()
    calls = {"f": 0, "g": 0}
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10, stale_ttl=0)
        async def f(k: int) -> str:
            calls["f"] += 1
            other = await g(2)
            if calls["f"] > 1:
                await gate.wait()
            return f"f{k}/{other}"

        @cache.cached(ttl=5, stale_ttl=None)
        async def g(k: int) -> str:
            calls["g"] += 1
            if calls["g"] == 1:
                return "g0"
            return f"g{calls['g']}<{await f(1)}>"

        assert await f(1) == "f1/g0"
        clock.advance(11)  # f(1) expired (a miss), g(2) stale (served, refreshed)
        async with anyio.create_task_group() as tg:
            tg.start_soon(f, 1)
            await wait_all_tasks_blocked()
            gate.set()
        await cache.wait_idle()
        assert g.cache_info().refresh_errors == 0
        assert await g(2) == "g2<f1/g0>"
