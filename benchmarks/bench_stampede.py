"""Stampede (SPEC section 4, row 5): 10,000 concurrent callers on one cold key.

The source coroutine is held on a gate until every caller has made its call (and
then a little longer), so "concurrent" is certain whatever each peer's call path
costs: a peer without single-flight runs the source once per caller.  The figure
is the COUNT of source calls (``extra_info["source_calls"]``); the round time is
recorded too (per caller), but it includes the gate and is not a SPEC figure.
"""

from __future__ import annotations

import asyncio
from typing import Any

from conftest import OURS, PRIME, VALUE, Peer, Sizes, bench_async


def test_stampede_cold_key(benchmark, runner, peer: Peer, sizes: Sizes) -> None:
    peer.require(hot=True)
    n = sizes.stampede_callers
    state: dict[str, Any] = {}

    async def setup() -> None:
        gate = asyncio.Event()
        calls = [0]

        async def source(k: int) -> str:
            calls[0] += 1
            if k != PRIME:
                await gate.wait()
            return VALUE

        f = peer.decorate(source)
        await f(PRIME)
        calls[0] = 0
        state.update(f=f, gate=gate, calls=calls)

    async def body() -> None:
        f, gate = state["f"], state["gate"]
        arrived = 0
        all_arrived = asyncio.Event()

        async def caller() -> Any:
            nonlocal arrived
            arrived += 1
            if arrived == n:
                all_arrived.set()
            return await f(0)

        async def open_gate() -> None:
            await all_arrived.wait()
            for _ in range(20):  # let the last callers reach their await
                await asyncio.sleep(0)
            await asyncio.sleep(0.002)
            gate.set()

        opener = asyncio.ensure_future(open_gate())
        results = await asyncio.gather(*(caller() for _ in range(n)))
        await opener
        state["results"] = results

    bench_async(benchmark, runner, body, setup=setup, calls=n, rounds=sizes.stampede_rounds)
    calls = state["calls"][0]
    benchmark.extra_info["source_calls"] = calls
    benchmark.extra_info["callers"] = n
    assert all(r == VALUE for r in state["results"]), "a caller got a wrong value"
    if peer.name == OURS:
        assert calls == 1, f"{OURS}: {n} concurrent callers of a cold key ran {calls} computations"
