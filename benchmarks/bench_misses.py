"""Misses (SPEC section 4, rows 3-4): the cost of the machinery around a computation.

* miss overhead: a trivial source coroutine, every call a distinct key, 100,000
  of them in a full run as in the SPEC (a new, empty decorated function per
  round, large enough never to evict);
* LRU churn: ``maxsize=1000``, keys drawn uniformly from 10,000 (so ~90% of the
  calls miss and evict), in a steady state.
"""

from __future__ import annotations

import random
from typing import Any

import floors
from conftest import PRIME, VALUE, Counter, Peer, Sizes, SWRPeer, bench_async

CHURN_MAXSIZE = 1_000
CHURN_KEYSPACE = 10_000


def test_miss_overhead(benchmark, runner, peer: Peer, sizes: Sizes) -> None:
    """``await f(k)`` for ``miss_calls`` distinct keys: every call computes."""
    peer.require(hot=True)
    keys = list(range(sizes.miss_calls))
    state: dict[str, Any] = {}

    async def setup() -> None:
        source = Counter()
        f = peer.decorate(source.fn())
        await f(PRIME)
        state.update(source=source, f=f)

    async def body() -> None:
        f = state["f"]
        for k in keys:
            await f(k)

    bench_async(
        benchmark,
        runner,
        body,
        setup=setup,
        calls=len(keys),
        rounds=sizes.miss_rounds,
        warmup=sizes.warmup,
    )
    assert state["source"].calls == len(keys) + 1, "every call should have been a miss"
    benchmark.extra_info["distinct_keys"] = len(keys)
    if isinstance(peer, SWRPeer):
        benchmark.extra_info["floor"] = "single_flight"
        benchmark.extra_info["floor_s"] = runner.run(floors.single_flight(keys))


def test_lru_churn(benchmark, runner, peer: Peer, sizes: Sizes) -> None:
    """maxsize=1000 over 10,000 uniformly drawn keys: ~90% misses, each evicting."""
    peer.require(hot=True, bounded=True)
    rng = random.Random(1234)
    keys = [rng.randrange(CHURN_KEYSPACE) for _ in range(sizes.churn_calls)]
    source = Counter()
    f = peer.decorate(source.fn(), maxsize=CHURN_MAXSIZE)

    async def fill() -> None:
        await f(PRIME)
        for k in range(CHURN_KEYSPACE):  # reach the steady state: a full LRU
            assert await f(k) == VALUE

    misses: list[int] = []

    async def body() -> None:
        before = source.calls
        for k in keys:
            await f(k)
        misses.append(source.calls - before)

    runner.run(fill())
    bench_async(
        benchmark,
        runner,
        body,
        calls=len(keys),
        rounds=sizes.churn_rounds,
        warmup=sizes.warmup,
    )
    benchmark.extra_info["miss_ratio"] = round(misses[-1] / len(keys), 3)
    if isinstance(peer, SWRPeer):
        benchmark.extra_info["floor"] = "single_flight"
        benchmark.extra_info["floor_s"] = runner.run(
            floors.single_flight(keys, maxsize=CHURN_MAXSIZE)
        )
