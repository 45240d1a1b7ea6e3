"""Level 2 (SPEC section 4, rows 9-11): persisted entries, against diskcache.

This library uses a ``SQLiteStore`` in ``tmp_path``; its readers are decorated
with ``maxsize=1`` and read distinct keys in turn, so no read is served from
memory (each is a level-1 miss answered by SQLite; asserted through
``cache_info()``).  ``cache_clear()`` is not used: it would clear the store too.
diskcache's synchronous ``get``/``set`` are called from the same kind of
coroutine, so both sides pay the same harness.

* sequential reads: one ``await read(k)`` at a time, over ``l2_reads`` keys;
* batch reads: ``l2_batch`` distinct keys read at once (``asyncio.gather``),
  alternating between two key sets so the one entry the LRU holds is never read;
* sustained writes: the level-2 write path, one value at a time, until every
  write is durable (the round ends with a flush): this library's ``store.put``
  (what the cache does when it commits a value: serialize, buffer, write in
  batched transactions) against diskcache ``set``, durable when it returns;
* miss then write (shown, no target): a read-through miss on a new key, one at a
  time: look in level 2, compute, persist; diskcache ``get`` then ``set``.

Peers without persistence are n/a.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import statistics
import time
from collections.abc import Iterator
from typing import Any

import floors
from conftest import VALUE, AsyncFn, Peer, Sizes, SWRPeer, bench_async


def _check_reads_from_store(peer: Peer, reads: int) -> None:
    if isinstance(peer, SWRPeer):
        info = peer.reader_fn.cache_info()
        assert info.hits == 0, f"{info.hits} reads were served from memory, not level 2"
        assert info.store_hits == info.misses >= reads, info


def test_l2_read_sequential(benchmark, runner, peer: Peer, sizes: Sizes) -> None:
    keys = list(range(sizes.l2_reads))
    runner.run(peer.l2_populate(keys))
    read = peer.l2_reader()
    bad: list[Any] = []

    async def body() -> None:
        for k in keys:
            if await read(k) != VALUE:
                bad.append(k)

    bench_async(
        benchmark, runner, body, calls=len(keys), rounds=sizes.l2_read_rounds, warmup=sizes.warmup
    )
    assert not bad, f"{len(bad)} level-2 reads returned a wrong value"
    _check_reads_from_store(peer, len(keys))
    if isinstance(peer, SWRPeer):
        benchmark.extra_info["floor"] = "aiosqlite_round_trip"
        benchmark.extra_info["floor_s"] = runner.run(
            floors.aiosqlite_round_trip(peer.store_connection(), len(keys))
        )


def test_l2_read_batch(benchmark, runner, peer: Peer, sizes: Sizes) -> None:
    n = sizes.l2_batch
    key_sets = [list(range(n)), list(range(n, 2 * n))]
    runner.run(peer.l2_populate(key_sets[0] + key_sets[1]))
    read = peer.l2_reader()
    turn = itertools.cycle(key_sets)
    bad: list[Any] = []

    async def body() -> None:
        keys = next(turn)
        values = await asyncio.gather(*(read(k) for k in keys))
        bad.extend(k for k, v in zip(keys, values, strict=True) if v != VALUE)

    if isinstance(peer, SWRPeer):
        batches_before = peer.store.stats.read_batches
    bench_async(benchmark, runner, body, calls=n, rounds=sizes.l2_batch_rounds, warmup=sizes.warmup)
    if isinstance(peer, SWRPeer):  # before the untimed batches below
        timed_batches = peer.store.stats.read_batches - batches_before
    # One more batch, untimed, counting the garbage collector's young-generation
    # runs: every object a pending read keeps alive makes them more frequent.
    young_before = gc.get_stats()[0]["collections"]
    runner.run(body())
    benchmark.extra_info["gc_young_collections_per_batch"] = (
        gc.get_stats()[0]["collections"] - young_before
    )
    # And a few with the collector paused (untimed by pytest-benchmark, shown by
    # the report apart from the table): what the same reads cost without the
    # collections they cause, to tell that cost from the rest.
    benchmark.extra_info["gc_paused_s"] = _best_batch_without_gc(runner, body, n)
    assert not bad, f"{len(bad)} level-2 reads returned a wrong value"
    _check_reads_from_store(peer, n)
    if isinstance(peer, SWRPeer):
        rounds = sizes.l2_batch_rounds + sizes.warmup if benchmark.enabled else 1
        benchmark.extra_info["store_round_trips_per_round"] = round(timed_batches / rounds, 2)
        benchmark.extra_info["floor"] = "batched_read"
        benchmark.extra_info["floor_s"] = runner.run(
            floors.batched_read(peer.store_connection(), "bench.l2", key_sets)
        )
        # Twice the timed rounds: a median needs more rounds than a fastest one.
        check_rounds = sizes.l2_batch_rounds * 2 if benchmark.enabled else 1
        benchmark.extra_info["taking_turns"] = runner.run(
            _taking_turns(peer, read, turn, key_sets, check_rounds)
        )
        _check_reads_from_store(peer, n)


async def _taking_turns(
    peer: SWRPeer,
    read: AsyncFn,
    turn: Iterator[list[int]],
    key_sets: list[list[int]],
    rounds: int,
) -> dict[str, Any]:
    """Untimed check: this library, the floor and diskcache read the same batches in
    turn, ``rounds`` times, in one loop; per side, the fastest and the median round,
    per read.

    pytest-benchmark times each peer in a test of its own, and the report keeps each
    side's fastest round; here a slow phase of the machine falls on every side, and
    the median tells what a typical batch costs.
    """
    import diskcache  # a bench dependency, as for the diskcache peer

    dc = diskcache.Cache(str(peer.tmp_path / "taking-turns"))
    try:
        for k in itertools.chain.from_iterable(key_sets):
            dc.set(k, VALUE)
        get = dc.get

        async def dc_read(k: int) -> Any:
            return get(k)

        async def gathered(fn: AsyncFn, keys: list[int]) -> float:
            start = time.perf_counter()
            values = await asyncio.gather(*(fn(k) for k in keys))
            elapsed = (time.perf_counter() - start) / len(keys)
            assert values == [VALUE] * len(keys), "a read returned a wrong value"
            return elapsed

        conn = peer.store_connection()
        sides: dict[str, Any] = {
            peer.name: lambda keys: gathered(read, keys),
            "floor": lambda keys: floors.batched_read(conn, "bench.l2", [keys], repeat=1),
            "diskcache": lambda keys: gathered(dc_read, keys),
        }
        times: dict[str, list[float]] = {name: [] for name in sides}
        names = list(sides)
        for r in range(rounds):
            keys = next(turn)  # ours' one LRU entry is from the other set
            first = r % len(names)  # each side goes first in turn
            for name in names[first:] + names[:first]:
                times[name].append(await sides[name](keys))
    finally:
        dc.close()
    return {
        "rounds": rounds,
        "best_s": {name: min(ts) for name, ts in times.items()},
        "median_s": {name: statistics.median(ts) for name, ts in times.items()},
    }


def _best_batch_without_gc(runner: Any, body: Any, calls: int, batches: int = 10) -> float:
    """Per call, the fastest of ``batches`` runs of ``body`` with the collector paused."""
    best = float("inf")
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for _ in range(batches):
            start = time.perf_counter()
            runner.run(body())
            best = min(best, (time.perf_counter() - start) / calls)
    finally:
        if was_enabled:
            gc.enable()
    return best


def test_l2_write_sustained(benchmark, runner, peer: Peer, sizes: Sizes) -> None:
    _sustained_writes(benchmark, runner, peer, sizes, peer.l2_writer(), write_path=True)


def test_l2_miss_then_write(benchmark, runner, peer: Peer, sizes: Sizes) -> None:
    _sustained_writes(benchmark, runner, peer, sizes, peer.l2_miss_writer(), write_path=False)


def _sustained_writes(
    benchmark, runner, peer: Peer, sizes: Sizes, write: Any, *, write_path: bool
) -> None:
    n = sizes.l2_writes
    starts = itertools.count(0, n)

    async def body() -> None:
        start = next(starts)
        for k in range(start, start + n):
            await write(k)
        await peer.l2_flush()  # the round ends when every write is durable

    if isinstance(peer, SWRPeer):
        written_before = peer.store.stats.rows_written
    bench_async(benchmark, runner, body, calls=n, rounds=sizes.l2_write_rounds, warmup=sizes.warmup)
    if isinstance(peer, SWRPeer) and write_path:
        benchmark.extra_info["floor"] = "batched_insert"
        benchmark.extra_info["floor_s"] = floors.batched_insert(peer.tmp_path / "floor.db")
    if isinstance(peer, SWRPeer):
        total = next(starts)  # every key written so far
        written = peer.store.stats.rows_written - written_before
        assert written == total, f"{written} rows written for {total} writes"
        benchmark.extra_info["write_transactions"] = peer.store.stats.write_transactions
