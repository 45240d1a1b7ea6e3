"""Stale entries (SPEC section 4, rows 6-7).

* first caller on a stale entry: ``stale_keys`` entries are made stale (this
  library: its ``FakeClock`` moved past ``ttl``; cashews ``early``: the entry's
  ``early_expire_at`` moved into the past, as waiting ``early_ttl`` would), then
  each is called once: every call returns the stale value and starts a refresh;
* 1,000 concurrent callers on one stale entry: each caller times its own call;
  all must get the stale value, one refresh must run, and the median latency is
  compared with the same crowd on a fresh entry.

Peers that do not serve stale values are n/a.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from conftest import OURS, PRIME, Peer, Sizes, bench_async


class Source:
    """Returns the current generation; ``bump()`` starts a new one (what a refresh sees)."""

    def __init__(self, delay: float | None = None) -> None:
        self.gen = 0
        self.calls = 0
        self.delay = delay

    def bump(self) -> None:
        self.gen += 1

    async def fn(self, k: int) -> int:
        self.calls += 1
        gen = self.gen
        if self.delay is not None and k != PRIME:
            await asyncio.sleep(self.delay)
        return gen


def test_first_stale_caller(benchmark, runner, peer: Peer, sizes: Sizes) -> None:
    peer.require(hot=True, stale=True)
    source = Source()
    f = peer.decorate_stale(source.fn)
    keys = list(range(sizes.stale_keys))
    state: dict[str, Any] = {"stale_value": None, "calls_at_body": None}
    refreshes: list[int] = []
    wrong: list[Any] = []

    async def setup() -> None:
        await peer.settle()
        if state["calls_at_body"] is not None:
            refreshes.append(source.calls - state["calls_at_body"])
        await f(PRIME)
        values = await asyncio.gather(*(f(k) for k in keys))  # fresh (or computed, round 1)
        assert len(set(values)) == 1, values
        state["stale_value"] = values[0]
        source.bump()
        await peer.make_stale()

    async def body() -> None:
        state["calls_at_body"] = source.calls
        stale = state["stale_value"]
        for k in keys:
            if await f(k) != stale:
                wrong.append(k)

    bench_async(benchmark, runner, body, setup=setup, calls=len(keys), rounds=sizes.stale_rounds)
    runner.run(peer.settle())
    refreshes.append(source.calls - state["calls_at_body"])
    benchmark.extra_info["refreshes_per_round"] = max(refreshes)
    benchmark.extra_info["all_stale"] = not wrong
    if peer.name == OURS:
        assert not wrong, f"{len(wrong)} calls on a stale entry did not get the stale value"
        # one refresh per stale key (plus PRIME's, which is stale too but not called)
        assert set(refreshes) == {len(keys)}, refreshes


def test_stale_crowd(benchmark, runner, peer: Peer, sizes: Sizes) -> None:
    peer.require(hot=True, stale=True)
    source = Source(delay=0.001)  # a refresh takes a while: callers must not wait for it
    f = peer.decorate_stale(source.fn)
    n = sizes.stale_callers
    key = 0
    state: dict[str, Any] = {"stale_value": None, "calls_at_body": None}
    refreshes: list[int] = []
    stale_latencies: list[int] = []
    all_stale = True

    async def crowd() -> tuple[list[int], list[Any]]:
        latencies: list[int] = []
        values: list[Any] = []
        clock = time.perf_counter_ns

        async def caller() -> None:
            t0 = clock()
            value = await f(key)
            latencies.append(clock() - t0)
            values.append(value)

        await asyncio.gather(*(caller() for _ in range(n)))
        return latencies, values

    async def setup() -> None:
        await peer.settle()
        if state["calls_at_body"] is not None:
            refreshes.append(source.calls - state["calls_at_body"])
        await f(PRIME)
        state["stale_value"] = await f(key)
        source.bump()
        await peer.make_stale()

    async def body() -> None:
        nonlocal all_stale
        state["calls_at_body"] = source.calls
        latencies, values = await crowd()
        stale_latencies.extend(latencies)
        all_stale = all_stale and all(v == state["stale_value"] for v in values)

    bench_async(benchmark, runner, body, setup=setup, calls=n, rounds=sizes.stale_rounds)
    runner.run(peer.settle())
    refreshes.append(source.calls - state["calls_at_body"])

    # The reference: the same crowd on the same entry, fresh.
    fresh_latencies: list[int] = []
    for _ in range(max(3, sizes.stale_rounds)):
        latencies, values = runner.run(crowd())
        assert all(v == source.gen for v in values), "a fresh crowd got an old value"
        fresh_latencies.extend(latencies)

    stale_median = statistics.median(stale_latencies)
    fresh_median = statistics.median(fresh_latencies)
    benchmark.extra_info.update(
        callers=n,
        stale_median_ns=stale_median,
        fresh_median_ns=fresh_median,
        ratio_to_fresh=round(stale_median / fresh_median, 3),
        refreshes_per_round=max(refreshes),
        all_stale=all_stale,
    )
    if peer.name == OURS:
        assert all_stale, "a caller of a stale entry did not get the stale value"
        assert set(refreshes) == {1}, f"refreshes per round: {refreshes}"
