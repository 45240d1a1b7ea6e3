"""Floors: the least an implementation of a scenario's mechanism can cost, this run.

Where a SPEC section 4 target is not met, ``report.py`` also shows this
library's figure as a multiple of the floor of the mechanism the scenario
needs, measured in the same process and run, so that "not met" can be told
apart from "not possible this way".

Three floors do what the SPEC requires of that call and nothing more, so they
bound any implementation of the SPEC:

* ``ttl_lru_hit``: a fresh hit through a closure (the cheapest callable, as
  this library's decorated function is; a decorated method is not), doing
  only what the SPEC makes every hit do: one dictionary lookup, one move to
  the LRU's end, one clock read and age comparison, one version comparison
  (SPEC section 3: fresh means young enough *and* of the current version), one
  hit counted (``cache_info().hits``);
* ``single_flight``: a miss as the SPEC requires it: the running loop looked up
  (a decorated function outlives event loops), counted, computed in a task of
  its own, which callers of the same key join through a registry of running
  computations, each waiting on a future of its own that gets the value or the
  exception; the value kept, unless invalidated meanwhile, in an
  ``OrderedDict`` LRU with its deadline and version, evictions counted; a hit
  does what ``ttl_lru_hit`` does.  No stale window, tags, events or store.  The
  task is needed from the computation's first step: a caller's cancellation
  must not cancel shared work (SPEC race 5), and code in that first step may
  bind itself to ``asyncio.current_task()`` (``asyncio.timeout``, anyio cancel
  scopes), so the first step cannot run in the caller's task; Python 3.11
  cannot start a task eagerly (3.12 can, and this library does there);
* ``batched_read``: one of 1,000 concurrent level-2 reads, each doing what the
  SPEC makes a read-through miss do: looked up in memory and counted, its
  stable key spelled, joined to a read of the same key if one is pending, and
  waiting on a future of its own; all of one loop turn's keys read by one query
  on aiosqlite's thread, each row unpickled, judged (not expired, of the
  current version) and kept in the LRU, each caller woken.

Two are only the core of their mechanism, so they are looser lower bounds:

* ``aiosqlite_round_trip``: one query answered on aiosqlite's thread (this
  library never runs level-2 work on the event loop's thread), without a key,
  a time limit or unpickling;
* ``batched_insert``: one row of a 2,000-row ``executemany`` ``INSERT`` of a ready
  blob under a new key into the store's own table, in one transaction, on the
  calling thread.

The two read floors run on the aiosqlite connection they are given, and the
benchmarks give them the store's own: a round trip costs about twice as much
when the kernel runs the connection's thread on the other CPU than the event
loop's, and a thread tends to stay where it was put.  On a connection of its
own, a floor could be timed on the cheap CPU and ours on the dear one.

Each returns seconds per operation: the best of ``REPEAT`` repetitions
(``batched_read``: of ``repeat``, if given).
"""

from __future__ import annotations

import asyncio
import pickle
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiosqlite

REPEAT = 10


async def ttl_lru_hit(calls: int, *, keyword: bool = False) -> float:
    """``keyword``: called as ``f(k, 2, z=3)``, its key built as this library builds it."""
    lru: OrderedDict[Any, tuple[Any, float, Any]] = OrderedDict()
    move_to_end = lru.move_to_end
    clock = time.time
    current_version = None
    hits = 0

    async def f(*args: Any, **kwargs: Any) -> Any:
        nonlocal hits
        key = (*args, None, *kwargs.items()) if kwargs else args
        value, fresh_until, version = lru[key]
        move_to_end(key)
        if clock() < fresh_until and version == current_version:
            hits += 1
            return value
        return None

    for k in range(64):
        key = (k, 2, None, ("z", 3)) if keyword else (k,)
        lru[key] = ("value", float("inf"), None)
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
    assert hits == REPEAT * calls
    return best


async def single_flight(keys: list[int], maxsize: int | None = None) -> float:
    """Seconds per call of ``keys`` (from a full LRU when bounded)."""
    best = float("inf")
    for _ in range(REPEAT):
        get = _single_flight_cache(maxsize)
        if maxsize is not None:  # the steady state: a full LRU
            for k in range(2 * maxsize):
                await get(k)
        start = time.perf_counter()
        for k in keys:
            await get(k)
        best = min(best, (time.perf_counter() - start) / len(keys))
    return best


def _single_flight_cache(maxsize: int | None) -> Callable[[int], Awaitable[str]]:
    lru: OrderedDict[int, tuple[str, float, Any]] = OrderedDict()
    running: dict[int, tuple[int, list[asyncio.Future[str]], asyncio.Task[None]]] = {}
    counts = {"hits": 0, "misses": 0, "evictions": 0}
    current_version = None
    generation = 0  # what an invalidation would bump: a stale result is not kept

    async def source(k: int) -> str:
        return "value"

    async def compute(k: int) -> None:
        started, waiters, _ = running[k]
        try:
            value = await source(k)
        except Exception as exc:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        finally:
            del running[k]
        if started == generation:
            lru[k] = (value, time.time() + 3600.0, current_version)
            if maxsize is not None and len(lru) > maxsize:
                lru.popitem(last=False)
                counts["evictions"] += 1
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(value)

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
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        flight = running.get(k)
        if flight is None:
            running[k] = (generation, [waiter], loop.create_task(compute(k)))
        else:
            flight[1].append(waiter)
        return await waiter

    return get


async def aiosqlite_round_trip(db: aiosqlite.Connection, calls: int) -> float:
    best = float("inf")
    for _ in range(REPEAT):
        start = time.perf_counter()
        for _ in range(calls):
            await db.execute_fetchall("SELECT blob FROM swr_entries LIMIT 1")
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def batched_insert(path: Path, rows: int = 2_000) -> float:
    from aiocache_swr._sqlite import _INSERT_SQL, _SCHEMA

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
            db.executemany(_INSERT_SQL, batch)
            db.execute("COMMIT")
            best = min(best, (time.perf_counter() - start) / rows)
    db.close()
    return best


async def batched_read(
    db: aiosqlite.Connection,
    namespace: str,
    key_sets: list[list[int]],
    maxsize: int = 1,
    repeat: int | None = None,
) -> float:
    """``key_sets``: int keys whose rows are in the store's table, read a set at a time,
    ``repeat`` times over (default ``REPEAT``)."""
    from aiocache_swr._keys import stable_key
    from aiocache_swr._sqlite import _select_sql

    max_variables = 999  # SQLite's old default; Python 3.11+ can ask
    probe = sqlite3.connect(":memory:")
    if hasattr(probe, "getlimit"):
        max_variables = probe.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    probe.close()
    lru: OrderedDict[tuple[int], tuple[Any, float, Any]] = OrderedDict()
    pending: dict[str, tuple[tuple[int], list[asyncio.Future[Any]]]] = {}
    batches: set[asyncio.Task[None]] = set()
    counts = {"hits": 0, "misses": 0}
    current_version = None
    best = float("inf")

    async def run_batch() -> None:
        await asyncio.sleep(0)  # the callers of this loop turn join
        batch = dict(pending)
        pending.clear()
        keys = list(batch)
        # One thread hop, as the store's one round trip per batch (which runs
        # queries of 500 keys on its thread): one query where SQLite allows.
        rows: list[Any] = []
        step = len(keys) if len(keys) < max_variables else 500
        for start in range(0, len(keys), step):
            chunk = keys[start : start + step]
            rows += await db.execute_fetchall(_select_sql(len(chunk)), (namespace, *chunk))
        now = time.time()
        found = {row[0]: (*pickle.loads(row[1]), row[2], row[3]) for row in rows}
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
        loop = asyncio.get_running_loop()
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

    for _ in range(REPEAT if repeat is None else repeat):
        for keys in key_sets:
            start = time.perf_counter()
            values = await asyncio.gather(*(read(k) for k in keys))
            best = min(best, (time.perf_counter() - start) / len(keys))
            assert None not in values, "the floor must read rows that exist"
            assert counts["hits"] == 0, "the floor must read from level 2"
    return best
