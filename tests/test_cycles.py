"""Calls that would wait for themselves: a computation that calls its own key, or a
cycle of computations waiting for each other, raises instead of hanging; a call that
only looks like one (the outer computation stopped waiting) waits as usual.

A computation waits for another while one of its tasks (its own, or one it started)
awaits that other's result; the check walks those waits when a call would join a
running computation.
"""

from __future__ import annotations

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from aiocache_swr import SWRCache
from aiocache_swr.testing import FakeClock

pytestmark = pytest.mark.anyio

CYCLE = "while computing that key"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_a_computation_that_stopped_waiting_for_another_is_not_in_a_cycle_with_it(
    clock: FakeClock,
) -> None:
    """g(0) awaits f(1) and gives up (a cancel scope, as a timeout would); f(1) goes on
    and calls g(0), which is still computing: it waits for g(0), and a caller that
    joined f(1) gets its value, not a RuntimeError."""
    f_started, f_gate, g_gave_up, g_done = (anyio.Event() for _ in range(4))
    scopes: list[anyio.CancelScope] = []
    results: dict[str, str] = {}
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10)
        async def g(x: int) -> str:
            with anyio.CancelScope() as scope:
                scopes.append(scope)
                await f(1)
            g_gave_up.set()
            await g_done.wait()
            return "g"

        @cache.cached(ttl=10)
        async def f(x: int) -> str:
            f_started.set()
            await f_gate.wait()
            return "f+" + await g(0)

        async def call(name: str, fn: object, x: int) -> None:
            results[name] = await fn(x)  # type: ignore[operator]

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "outer", g, 0)
            await f_started.wait()
            scopes[0].cancel()  # g stops waiting for f(1); f(1)'s computation goes on
            await g_gave_up.wait()
            tg.start_soon(call, "joined", f, 1)
            await wait_all_tasks_blocked()
            f_gate.set()
            await wait_all_tasks_blocked()  # f(1) now waits for g(0)
            g_done.set()
    assert results == {"outer": "g", "joined": "f+g"}


async def test_a_cycle_through_a_computation_another_caller_started_fails(
    clock: FakeClock,
) -> None:
    """f(1) and g(2) are started by two callers; f(1)'s computation awaits g(2), whose
    computation then calls f(1): that call raises instead of waiting forever."""
    g_started, g_go = anyio.Event(), anyio.Event()
    results: dict[str, object] = {}
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10)
        async def f(x: int) -> str:
            return "f+" + await g(2)

        @cache.cached(ttl=10)
        async def g(x: int) -> str:
            g_started.set()
            await g_go.wait()
            return "g+" + await f(1)

        async def call(name: str, fn: object, x: int) -> None:
            try:
                results[name] = await fn(x)  # type: ignore[operator]
            except RuntimeError as exc:
                results[name] = exc

        with anyio.fail_after(10):  # only ends the test if it waits for itself
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, "g", g, 2)
                await g_started.wait()
                tg.start_soon(call, "f", f, 1)
                await wait_all_tasks_blocked()  # f(1)'s computation waits for g(2)
                g_go.set()
    assert isinstance(results["g"], RuntimeError)
    assert CYCLE in str(results["g"])
    assert isinstance(results["f"], RuntimeError)  # g(2)'s error, raised in f(1)'s computation


async def test_a_cycle_through_refresh_fails(clock: FakeClock) -> None:
    """f(1)'s computation awaits f.refresh(2), whose computation calls f(1): that
    call raises instead of waiting forever."""
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10)
        async def f(x: int) -> int:
            if x == 1:
                return await f.refresh(2)
            return await f(1)

        with pytest.raises(RuntimeError, match=CYCLE), anyio.fail_after(10):
            await f(1)


async def test_computations_sharing_a_third_are_no_cycle(clock: FakeClock) -> None:
    """f(0) gathers f(1) and f(2), and f(2)'s computation also awaits f(1): two waits
    for one computation, not a cycle; everyone gets the value."""
    calls: list[int] = []
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10)
        async def f(x: int) -> int:
            calls.append(x)
            if x == 0:
                results: dict[int, int] = {}

                async def one(k: int) -> None:
                    results[k] = await f(k)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(one, 1)
                    tg.start_soon(one, 2)
                return results[1] + results[2]
            if x == 2:
                return 2 + await f(1)
            await anyio.lowlevel.checkpoint()
            return 1

        with anyio.fail_after(10):
            assert await f(0) == 1 + 3
    assert sorted(calls) == [0, 1, 2]
