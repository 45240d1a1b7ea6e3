"""Fresh hits (SPEC section 4, rows 1-2): the hot path, from memory.

Each round awaits ``hit_calls`` calls of a warm decorated function, cycling over
64 keys that are all cached; the figure is the time per call.
"""

from __future__ import annotations

import floors
from conftest import PRIME, VALUE, Counter, Peer, Sizes, SWRPeer, bench_async

KEYS = 64


def _keys(sizes: Sizes) -> list[int]:
    return [i % KEYS for i in range(sizes.hit_calls)]


def test_hit_one_int(benchmark, runner, peer: Peer, sizes: Sizes) -> None:
    """``await f(k)``: one int argument, fresh in memory."""
    peer.require(hot=True)
    source = Counter()
    f = peer.decorate(source.fn())
    keys = _keys(sizes)

    async def warm() -> None:
        await f(PRIME)
        for k in range(KEYS):
            assert await f(k) == VALUE

    async def body() -> None:
        for k in keys:
            await f(k)

    runner.run(warm())
    calls_before = source.calls
    bench_async(
        benchmark, runner, body, calls=len(keys), rounds=sizes.hit_rounds, warmup=sizes.warmup
    )
    assert source.calls == calls_before, "a fresh hit called the source"
    if isinstance(peer, SWRPeer):
        benchmark.extra_info["floor"] = "ttl_lru_hit"
        benchmark.extra_info["floor_s"] = runner.run(floors.ttl_lru_hit(len(keys)))


def test_hit_args_kwargs(benchmark, runner, peer: Peer, sizes: Sizes) -> None:
    """``await f(k, 2, z=3)``: two positional arguments and one keyword, fresh in memory."""
    peer.require(hot=True)
    source = Counter()
    f = peer.decorate(source.fn())
    keys = _keys(sizes)

    async def warm() -> None:
        await f(PRIME, 2, z=3)
        for k in range(KEYS):
            assert await f(k, 2, z=3) == VALUE

    async def body() -> None:
        for k in keys:
            await f(k, 2, z=3)

    runner.run(warm())
    calls_before = source.calls
    bench_async(
        benchmark, runner, body, calls=len(keys), rounds=sizes.hit_rounds, warmup=sizes.warmup
    )
    assert source.calls == calls_before, "a fresh hit called the source"
    if isinstance(peer, SWRPeer):
        benchmark.extra_info["floor"] = "ttl_lru_hit"
        benchmark.extra_info["floor_s"] = runner.run(floors.ttl_lru_hit(len(keys), keyword=True))
