"""Floors: the least any implementation of a scenario's mechanism costs, this run.

Where a SPEC section 4 target is not met, ``report.py`` also shows this
library's figure as a multiple of the floor of the mechanism the scenario
needs, measured in the same process and run, so that "not met" can be told
apart from "not possible this way":

* ``class_ttl_lru``: a fresh hit through an instance of a class with
  ``async def __call__`` (the decorated object must be one: it has methods),
  doing only what the SPEC makes every hit do: one dictionary lookup, one move
  to the LRU's end, one clock read and age comparison, one version comparison
  (SPEC section 3: fresh means young enough *and* of the current version), one
  hit counted (``cache_info().hits``);
* ``single_flight``: a miss as the SPEC requires it and nothing more: counted,
  computed in a task of its own (a cancelled caller must not cancel shared
  work), which callers of the same key join through a registry of running
  computations, each waiting on a future of its own; the value goes into an
  ``OrderedDict`` LRU with its deadline and version (evicting beyond
  ``maxsize``), and a hit does what ``class_ttl_lru`` does.  No stale window,
  tags, events or store;
* ``aiosqlite_round_trip``: one query answered on aiosqlite's thread (level-2
  reads never run on the event loop's thread);
* ``batched_read``: one of 1,000 concurrent level-2 reads, each doing what the
  SPEC makes a read-through miss do: looked up in memory and counted, its
  stable key spelled, joined to a read of the same key if one is pending, and
  waiting on a future of its own; all of one loop turn's keys read by one query
  (per 500 keys) on aiosqlite's thread, each row unpickled, judged (not
  expired, of the current version) and kept in the LRU, each caller woken;
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
            self.lru: OrderedDict[Any, tuple[Any, float, Any]] = OrderedDict()
            self.version = None  # the current version (``version=None``)
            self.hits = 0

        async def __call__(self, *args: Any, **kwargs: Any) -> Any:
            key = (*args, None, *kwargs.items()) if kwargs else args
            lru = self.lru
            value, fresh_until, version = lru[key]
            lru.move_to_end(key)
            if time.time() < fresh_until and version == self.version:
                self.hits += 1
                return value
            return None

    f = Shape()
    for k in range(64):
        key = (k, 2, None, ("z", 3)) if keyword else (k,)
        f.lru[key] = ("value", float("inf"), None)
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
    lru: OrderedDict[int, tuple[str, float, Any]] = OrderedDict()
    running: dict[int, tuple[asyncio.Task[None], list[asyncio.Future[str]]]] = {}
    counts = {"hits": 0, "misses": 0}
    current_version = None

    async def source(k: int) -> str:
        return "value"

    async def compute(k: int) -> None:
        try:
            value = await source(k)
            lru[k] = (value, time.time() + 3600.0, current_version)
            if maxsize is not None and len(lru) > maxsize:
                lru.popitem(last=False)
            for waiter in running[k][1]:
                if not waiter.done():
                    waiter.set_result(value)
        finally:
            del running[k]

    async def get(k: int) -> str:
        try:
            value, fresh_until, version = lru[k]
        except KeyError:
            pass
        else:
            lru.move_to_end(k)
            if time.time() < fresh_until and version == current_version:
                counts["hits"] += 1
                return value
        counts["misses"] += 1
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


async def batched_read(
    path: Path, namespace: str, key_sets: list[list[int]], maxsize: int = 1
) -> float:
    """``key_sets``: int keys whose rows are in the store's table, read a set at a time."""
    import aiosqlite

    from aiocache_swr._keys import stable_key
    from aiocache_swr._sqlite import _select_sql

    loop = asyncio.get_running_loop()
    lru: OrderedDict[tuple[int], tuple[Any, float, Any]] = OrderedDict()
    pending: dict[str, tuple[tuple[int], list[asyncio.Future[Any]]]] = {}
    batches: set[asyncio.Task[None]] = set()
    counts = {"hits": 0, "misses": 0}
    current_version = None
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
            now = time.time()
            found = {row[1]: (*pickle.loads(row[2]), row[3], row[4]) for row in rows}
            for skey, (key, futures) in batch.items():
                value = None
                record = found.get(skey)
                if record is not None:
                    value, version, created, expires = record
                    if (expires is None or now < expires) and version == current_version:
                        lru[key] = (value, created + 3600.0, version)
                        if len(lru) > maxsize:
                            lru.popitem(last=False)
                    else:
                        value = None
                for future in futures:
                    future.set_result(value)

        async def read(*args: int) -> Any:
            try:
                value, fresh_until, version = lru[args]
            except KeyError:
                pass
            else:
                lru.move_to_end(args)
                if time.time() < fresh_until and version == current_version:
                    counts["hits"] += 1
                    return value
            counts["misses"] += 1
            skey = stable_key(args)
            future = loop.create_future()
            waiting = pending.get(skey)
            if waiting is not None:
                waiting[1].append(future)
            else:
                pending[skey] = (args, [future])
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
                assert counts["hits"] == 0, "the floor must read from level 2"
    return best
