"""Memory per entry (SPEC section 4, row 8): int key, short str value.

The keys (ints outside the small-int cache) and the value are allocated before
tracing starts, so the figure is what the cache itself keeps per entry: key
tuples or strings, entry records, LRU links, locks, futures...  Measured with
``tracemalloc`` as the memory still held after ``memory_entries`` misses (and a
``gc.collect()``), divided by the number of entries.  The round time is recorded
but is not a SPEC figure (tracing slows everything down).
"""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

from conftest import PRIME, VALUE, Peer, Sizes


def test_memory_per_entry(benchmark, runner, peer: Peer, sizes: Sizes) -> None:
    peer.require(hot=True)
    n = sizes.memory_entries
    keys = [100_000 + i for i in range(n)]  # allocated outside the trace
    values = [f"v{i:08d}" for i in range(n)]  # short str values, allocated outside too
    state: dict[str, Any] = {}

    async def source(k: int) -> str:
        return values[k - 100_000] if k != PRIME else VALUE

    async def setup() -> None:
        f = peer.decorate(source, maxsize=2 * n)
        await f(PRIME)  # per-loop state, first allocations of the cache structures
        await peer.settle()
        state["f"] = f

    async def fill() -> None:
        f = state["f"]
        for k in keys:
            await f(k)
        await peer.settle()

    def body() -> None:
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            runner.run(fill())
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        state["bytes"] = after - before

    def prepare() -> None:
        runner.run(setup())

    benchmark.pedantic(body, setup=prepare, rounds=1, iterations=1)
    f = state["f"]
    results = [runner.run(f(k)) for k in keys[:10]]
    assert results == values[:10], "entries must still be cached after the measurement"
    benchmark.extra_info.update(
        entries=n,
        bytes_total=state["bytes"],
        bytes_per_entry=round(state["bytes"] / n, 1),
    )
