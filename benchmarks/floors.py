"""Floors: the least any implementation of a scenario's mechanism costs, this run.

Where a SPEC section 4 target is not met, ``report.py`` also shows this
library's figure as a multiple of the floor of the mechanism the scenario
needs, measured in the same process and run, so that "not met" can be told
apart from "not possible this way":

* ``class_ttl_lru``: a fresh hit through an instance of a class with
  ``async def __call__`` (the decorated object must be one: it has methods),
  doing only what a TTL LRU must do per hit: one dictionary lookup, one move to
  the LRU's end, one clock read, one comparison;
* ``single_flight``: a miss as the SPEC requires it and nothing more: computed
  in a task of its own (a cancelled caller must not cancel shared work), which
  callers of the same key join through a registry of running computations, each
  waiting on a future of its own; the value goes into an ``OrderedDict`` LRU
  (evicting beyond ``maxsize``).  No TTL, version, statistics or store;
* ``aiosqlite_round_trip``: one query answered on aiosqlite's thread (level-2
  reads never run on the event loop's thread);
* ``batched_read``: one of 1,000 concurrent level-2 reads, each caller waiting
  on a future of its own, all of one loop turn's keys read by one query (per
  500 keys) on aiosqlite's thread, each row unpickled, each caller woken;
* ``batched_insert``: one row of a 2,000-row ``executemany`` upsert into the
  store's own table, in one transaction, on the calling thread.

Each returns seconds per operation: the best of a few repetitions.
"""

from __future__ import annotations

import asyncio
import pickle
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPEAT = 5


async def class_ttl_lru(calls: int, *, keyword: bool = False) -> float:
    """``keyword``: called as ``f(k, 2, z=3)``, its key built as this library builds it."""

    class Shape:
        def __init__(self) -> None:
            self.lru: OrderedDict[Any, tuple[Any, float]] = OrderedDict()

        async def __call__(self, *args: Any, **kwargs: Any) -> Any:
            key = (*args, None, *kwargs.items()) if kwargs else args
            lru = self.lru
            value, fresh_until = lru[key]
            lru.move_to_end(key)
            if time.time() < fresh_until:
                return value
            return None

    f = Shape()
    for k in range(64):
        key = (k, 2, None, ("z", 3)) if keyword else (k,)
        f.lru[key] = ("value", float("inf"))
    keys = [i % 64 for i in range(calls)]
    best = float("inf")
    for _ in range(REPEAT):
        start = time.perf_counter()
        if keyword:
            for k in keys:
                await f(k, 2, z=3)
        else:
            for k in keys:
                await f(k)
        best = min(best, (time.perf_counter() - start) / calls)
    return best


async def single_flight(keys: list[int], maxsize: int | None = None) -> float:
    """Seconds per call of ``keys`` (from a full LRU when bounded)."""
    best = float("inf")
    for _ in range(REPEAT):
        get = _single_flight_cache(asyncio.get_running_loop(), maxsize)
        if maxsize is not None:  # the steady state: a full LRU
            for k in range(2 * maxsize):
                await get(k)
        start = time.perf_counter()
        for k in keys:
            await get(k)
        best = min(best, (time.perf_counter() - start) / len(keys))
    return best


def _single_flight_cache(
    loop: asyncio.AbstractEventLoop, maxsize: int | None
) -> Callable[[int], Awaitable[str]]:
    lru: OrderedDict[int, str] = OrderedDict()
    running: dict[int, tuple[asyncio.Task[None], list[asyncio.Future[str]]]] = {}

    async def source(k: int) -> str:
        return "value"

    async def compute(k: int) -> None:
        try:
            value = await source(k)
            lru[k] = value
            if maxsize is not None and len(lru) > maxsize:
                lru.popitem(last=False)
            for waiter in running[k][1]:
                if not waiter.done():
                    waiter.set_result(value)
        finally:
            del running[k]

    async def get(k: int) -> str:
        try:
            value = lru[k]
        except KeyError:
            pass
        else:
            lru.move_to_end(k)
            return value
        waiter = loop.create_future()
        flight = running.get(k)
        if flight is None:
            running[k] = (loop.create_task(compute(k)), [waiter])
        else:
            flight[1].append(waiter)
        return await waiter

    return get


async def aiosqlite_round_trip(path: Path, calls: int) -> float:
    import aiosqlite

    best = float("inf")
    async with aiosqlite.connect(path) as db:
        for _ in range(REPEAT):
            start = time.perf_counter()
            for _ in range(calls):
                await db.execute_fetchall("SELECT blob FROM swr_entries LIMIT 1")
            best = min(best, (time.perf_counter() - start) / calls)
    return best


def batched_insert(path: Path, rows: int = 2_000) -> float:
    from aiocache_swr._sqlite import _SCHEMA, _UPSERT_SQL

    best = float("inf")
    with sqlite3.connect(path, isolation_level=None) as db:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        for statement in _SCHEMA:
            db.execute(statement)
        for n in range(REPEAT):
            now = time.time()
            batch = [
                (
                    "floor",
                    f"(int:{n * rows + k},)",
                    b"\x80\x05value",
                    now,
                    now + 3600,
                    None,
                    None,
                )
                for k in range(rows)
            ]
            start = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            db.executemany(_UPSERT_SQL, batch)
            db.execute("COMMIT")
            best = min(best, (time.perf_counter() - start) / rows)
    db.close()
    return best


async def batched_read(path: Path, namespace: str, key_sets: list[list[str]]) -> float:
    """``key_sets``: stable keys present in the store's table, read a set at a time."""
    import aiosqlite

    from aiocache_swr._sqlite import _select_sql

    loop = asyncio.get_running_loop()
    pending: dict[str, asyncio.Future[Any]] = {}
    batches: set[asyncio.Task[None]] = set()
    best = float("inf")
    async with aiosqlite.connect(path) as db:

        async def run_batch() -> None:
            await asyncio.sleep(0)  # the callers of this loop turn join
            batch = dict(pending)
            pending.clear()
            keys = list(batch)
            rows: list[Any] = []
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                rows += await db.execute_fetchall(_select_sql(len(chunk)), (namespace, *chunk))
            found = {row[1]: pickle.loads(row[2]) for row in rows}
            for key, future in batch.items():
                future.set_result(found.get(key))

        async def read(key: str) -> Any:
            future = loop.create_future()
            pending[key] = future
            if len(pending) == 1:
                task = loop.create_task(run_batch())
                batches.add(task)
                task.add_done_callback(batches.discard)
            return await future

        for _ in range(REPEAT):
            for keys in key_sets:
                start = time.perf_counter()
                values = await asyncio.gather(*(read(k) for k in keys))
                best = min(best, (time.perf_counter() - start) / len(keys))
                assert None not in values, "the floor must read rows that exist"
    return best
