"""Floors: the least any implementation of a scenario's mechanism costs, this run.

Where a SPEC section 4 target is not met, ``report.py`` also shows this
library's figure as a multiple of the floor of the mechanism the scenario
needs, measured in the same process and run, so that "not met" can be told
apart from "not possible this way":

* ``class_ttl_lru``: a fresh hit through an instance of a class with
  ``async def __call__`` (the decorated object must be one: it has methods),
  doing only what a TTL LRU must do per hit: one dictionary lookup, one move to
  the LRU's end, one clock read, one comparison;
* ``bare_task``: a miss computed in a task of its own (so that a cancelled
  caller cannot cancel it), started and awaited, and nothing else;
* ``aiosqlite_round_trip``: one query answered on aiosqlite's thread (level-2
  reads never run on the event loop's thread);
* ``batched_insert``: one row of a 2,000-row ``executemany`` upsert into the
  store's own table, in one transaction, on the calling thread.

Each returns seconds per operation: the best of a few repetitions.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import OrderedDict
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


async def bare_task(calls: int) -> float:
    async def source(k: int) -> str:
        return "value"

    loop = asyncio.get_running_loop()
    best = float("inf")
    for _ in range(REPEAT):
        start = time.perf_counter()
        for k in range(calls):
            await loop.create_task(source(k))
        best = min(best, (time.perf_counter() - start) / calls)
    return best


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
                    k,
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
