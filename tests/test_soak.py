"""Soak test (issue 6): a long mixed workload on one cache, memory-only and over SQLite.

One decorated function (ttl 10 s, stale_ttl 20 s, maxsize 1,000, a version callable,
one tag per key) over a 100,000-key space is driven in rounds of concurrent callers:
calls on hot, warm and cold keys, stale refreshes (the FakeClock moves between rounds),
refresh failures and fetch exceptions (3% of fetches fail), waiter cancellations,
``invalidate``, ``invalidate_tags``, ``cache_clear``, ``refresh()``, version bumps,
and bursts of callers on one freshly invalidated key.

What it asserts:

* every value a caller gets is right: the backend's value is ``(key, version,
  generation, started)``, deterministic in the data it read (``generation`` counts the
  invalidations of the key, of its tag and of the whole function), so a value shows
  which key, data version and invalidation epoch it came from and when it was read;
  it must be of the right key, never older than an invalidation that began before the
  call did (``invalidate``, ``invalidate_tags`` and ``cache_clear`` drop memory and doom
  flights before their first await), never served past ``ttl + stale_ttl``;
  ``refresh()`` returns data at least as new as the call; a burst of callers on one
  freshly invalidated key shares one computation;
* memory stays flat: tracemalloc's traced memory after settling at the end is within
  ``MEMORY_BOUND`` of a baseline taken after a warm-up (cache full);
* tasks and threads go back to their baseline once the cache is closed, and shared
  work is never cancelled by a cancelled caller;
* no SQL statement ever runs on the event loop thread (level 2 stays off the loop).

The longest event-loop stall (a heartbeat's lateness, in real time, with tracemalloc
on) is measured and reported, never asserted.  ``pytest -m soak -s`` prints a summary.

CI runs a short form.  For the long one (1,000,000 operations per variant)::

    AIOCACHE_SWR_LONG=1 .venv/bin/pytest tests/test_soak.py -m soak -s -p no:cacheprovider
"""

from __future__ import annotations

import array
import asyncio
import gc
import logging
import os
import random
import sqlite3
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from aiocache_swr import SQLiteStore, SWRCache
from aiocache_swr._backoff import BACKOFF_CAP
from aiocache_swr._function import engine_of
from aiocache_swr.testing import FakeClock

pytestmark = [pytest.mark.anyio, pytest.mark.soak]

LONG = os.environ.get("AIOCACHE_SWR_LONG") == "1"

#: Operations per variant (after the warm-up), short (CI) and long forms.
OPS = {"memory": 1_000_000 if LONG else 24_000, "sqlite": 1_000_000 if LONG else 8_000}
#: Operations of the warm-up (fills the cache and the store) before the memory baseline.
WARMUP = {"memory": 50_000 if LONG else 6_000, "sqlite": 50_000 if LONG else 4_000}

KEYSPACE = 100_000
MAXSIZE = 1_000
HOT = 100  # keys 0..99: 45% of the calls (they stay in memory)
WARM = 500  # the next 500 keys: 20% (in memory, often stale)
TEPID = 1_500  # the next 1,500 keys: 15% (evicted from memory, found in the store)
# the other 20% of the calls are uniform over KEYSPACE (misses, LRU churn)
NTAGS = 64  # key k carries the tag f"t{k % NTAGS}"
TTL = 10.0
STALE_TTL = 120.0
WINDOW = TTL + STALE_TTL
MAX_REFRESHES = 4
ROUND = 64  # operations per round
BURST = 32  # callers of a burst round
FAIL_RATE = 0.03
HEARTBEAT = 0.002  # seconds between two heartbeats (real time: a measurement only)

#: Allowed growth of traced memory, end (settled) vs baseline (after warm-up, cache full).
#: Both points hold the same things: a full LRU of 1,000 entries, empty registries and
#: queues.  Measured: a few KiB, up to ~0.16 MiB after a long SQLite run (the mix of
#: entries computed here and entries read back from the store differs); mid-run, with
#: work in flight, up to ~1.1 MiB.  512 KiB at rest is generous, fixed, and independent
#: of the run's length.  Over it: a leak of half a byte per operation in the long form
#: (1,000,000 operations), of ~20-65 bytes per operation in the short one (one object, a
#: dict slot, or a list of flights, events or log records per call), or of 5 bytes per
#: key of the 100,000-key space.
MEMORY_BOUND = 512 * 1024


class FetchError(Exception):
    """What a failing fetch raises; it names its key."""

    def __init__(self, key: int) -> None:
        super().__init__(f"fetch of key {key} failed")
        self.key = key


class World:
    """The data source, and what the test knows of it.  Fixed-size: it must not grow."""

    def __init__(self, clock: FakeClock, rng: random.Random) -> None:
        self.clock = clock
        self.rng = rng
        self.version = 0
        self.key_gen = array.array("q", bytes(8 * KEYSPACE))
        self.tag_gen = array.array("q", bytes(8 * NTAGS))
        self.clear_gen = 0
        self.failing = True
        self.fetches = 0
        self.failures = 0
        self.cancelled = 0
        self.running = 0
        self.max_span = 0.0  # the most the clock moved during one fetch
        self.watch_key = -1
        self.watch_fetches = 0

    def gen(self, key: int) -> int:
        """The invalidation epoch of ``key``: never decreases."""
        return self.key_gen[key] + self.tag_gen[key % NTAGS] + self.clear_gen

    async def fetch(self, key: int) -> tuple[int, int, int, float]:
        self.fetches += 1
        if key == self.watch_key:
            self.watch_fetches += 1
        started = self.clock()
        value = (key, self.version, self.gen(key), started)
        fail = self.failing and self.rng.random() < FAIL_RATE
        ticks = self.rng.randrange(3)
        self.running += 1
        try:
            for _ in range(ticks):
                await anyio.lowlevel.checkpoint()
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        finally:
            self.running -= 1
        self.max_span = max(self.max_span, self.clock() - started)
        if fail:
            self.failures += 1
            raise FetchError(key)
        return value


class Checker:
    """Checks what callers got; keeps a count and the first few messages."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.errors = 0
        self.messages: list[str] = []

    def bad(self, message: str) -> None:
        self.errors += 1
        if len(self.messages) < 20:
            self.messages.append(message)

    def value(self, kind: str, key: int, got: Any, gen0: int, ver0: int, now0: float) -> None:
        w = self.world
        if type(got) is not tuple or len(got) != 4:
            self.bad(f"{kind}({key}) returned {got!r}")
            return
        k, ver, gen, started = got
        if k != key:
            self.bad(f"{kind}({key}) returned the value of key {k}: {got!r}")
        if gen < gen0:
            self.bad(f"{kind}({key}) returned {got!r}, older than invalidation epoch {gen0}")
        if ver > w.version or gen > w.gen(key) or started > w.clock():
            self.bad(f"{kind}({key}) returned {got!r}, from the future")
        if kind == "refresh" and (ver < ver0 or started < now0):
            self.bad(f"refresh({key}) returned {got!r}, older than the call (v{ver0}, {now0})")
        if now0 >= started + w.max_span + WINDOW:
            self.bad(f"{kind}({key}) at {now0} returned {got!r}, past ttl + stale_ttl")

    def error(self, kind: str, key: int, exc: BaseException) -> None:
        if not isinstance(exc, FetchError) or exc.key != key:
            self.bad(f"{kind}({key}) raised {exc!r}")


class LogCounter(logging.Handler):
    """Counts the library's log records (pytest's capture would keep every one)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.warnings = 0
        self.unexpected: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.WARNING:
            return
        self.warnings += 1
        exc = record.exc_info[1] if record.exc_info else None
        # The only warnings expected are the injected backend failures.
        if (record.levelno >= logging.ERROR or not isinstance(exc, FetchError)) and len(
            self.unexpected
        ) < 20:
            self.unexpected.append(f"{record.levelname}: {record.getMessage()} ({exc!r})")


def cancel_after(loop: asyncio.AbstractEventLoop, scope: anyio.CancelScope, ticks: int) -> None:
    """Cancel ``scope`` after ``ticks`` passes of the event loop (no clock involved)."""
    if ticks <= 0:
        scope.cancel()
    else:
        loop.call_soon(cancel_after, loop, scope, ticks - 1)


class Soak:
    """The workload: the driver, the operations and their checks."""

    def __init__(self, cache: SWRCache, clock: FakeClock, seed: int) -> None:
        self.cache = cache
        self.clock = clock
        self.rng = random.Random(seed)
        self.world = World(clock, random.Random(seed + 1))
        self.check = Checker(self.world)
        self.loop = asyncio.get_running_loop()
        self.ops = 0
        self.rounds = 0
        self.calls = 0  # f() invocations
        self.cancelled_waiters = 0
        self.caller_errors = 0
        self.bursts = 0
        self.clears_allowed = True
        self.max_tasks = 0
        world = self.world

        @cache.cached(
            ttl=TTL,
            stale_ttl=STALE_TTL,
            maxsize=MAXSIZE,
            version=lambda key: world.version,
            tags=lambda key: (f"t{key % NTAGS}",),
            namespace="soak",
        )
        async def f(key: int) -> tuple[int, int, int, float]:
            return await world.fetch(key)

        self.f = f
        self.engine = engine_of(f)

    # -- operations -------------------------------------------------------------

    def pick_key(self) -> int:
        r = self.rng.random()
        if r < 0.45:
            return self.rng.randrange(HOT)
        if r < 0.65:
            return HOT + self.rng.randrange(WARM)
        if r < 0.8:
            return HOT + WARM + self.rng.randrange(TEPID)
        return self.rng.randrange(KEYSPACE)

    def pick_op(self) -> tuple[Any, ...]:
        r = self.rng.random()
        if r < 0.02:
            return ("refresh", self.pick_key())
        if r < 0.04:
            return ("invalidate", self.pick_key())
        if r < 0.042:
            return ("tags", self.rng.randrange(NTAGS))
        if r < 0.0422:
            return ("version",)
        if r < 0.04225 and self.clears_allowed:
            return ("clear",)
        cancel = self.rng.randrange(5) if self.rng.random() < 0.05 else None
        return ("call", self.pick_key(), cancel)

    async def call(self, key: int, cancel: int | None) -> Any:
        """One f(key), checked; with ``cancel``, the caller is cancelled after that many ticks."""
        w = self.world
        gen0, ver0, now0 = w.gen(key), w.version, self.clock()
        self.calls += 1
        outcome: Any = None
        with anyio.CancelScope() as scope:
            if cancel is not None:
                cancel_after(self.loop, scope, cancel)
            try:
                outcome = await self.f(key)
            except Exception as exc:
                self.caller_errors += 1
                self.check.error("f", key, exc)
                return exc
            self.check.value("f", key, outcome, gen0, ver0, now0)
            return outcome
        self.cancelled_waiters += 1
        return None

    async def perform(self, op: tuple[Any, ...]) -> None:
        w, f = self.world, self.f
        kind = op[0]
        if kind == "call":
            await self.call(op[1], op[2])
        elif kind == "refresh":
            key = op[1]
            gen0, ver0, now0 = w.gen(key), w.version, self.clock()
            try:
                got = await f.refresh(key)
            except Exception as exc:
                self.caller_errors += 1
                self.check.error("refresh", key, exc)
            else:
                self.check.value("refresh", key, got, gen0, ver0, now0)
        elif kind == "invalidate":
            w.key_gen[op[1]] += 1
            await f.invalidate(op[1])
        elif kind == "tags":
            w.tag_gen[op[1]] += 1
            await self.cache.invalidate_tags(f"t{op[1]}")
        elif kind == "version":
            w.version += 1
        else:
            w.clear_gen += 1
            await f.cache_clear()

    async def worker(self, ops: list[tuple[Any, ...]]) -> None:
        for op in ops:
            await self.perform(op)

    def count_tasks(self) -> None:
        self.max_tasks = max(self.max_tasks, len(asyncio.all_tasks()))

    async def plain_round(self) -> None:
        ops = [self.pick_op() for _ in range(ROUND)]
        workers = self.rng.randint(1, 16)
        async with anyio.create_task_group() as tg:
            for i in range(workers):
                tg.start_soon(self.worker, ops[i::workers])
            await anyio.lowlevel.checkpoint()
            self.count_tasks()
        self.ops += ROUND

    async def burst_round(self) -> None:
        """Callers arriving together on a freshly invalidated key share one computation."""
        w = self.world
        key = self.pick_key()
        w.key_gen[key] += 1
        await self.f.invalidate(key)
        w.watch_key, w.watch_fetches = key, 0
        outcomes: list[Any] = []

        async def one(cancel: int | None) -> None:
            outcome = await self.call(key, cancel)
            if outcome is not None:
                outcomes.append(outcome)

        async with anyio.create_task_group() as tg:
            for _ in range(BURST):
                tg.start_soon(one, self.rng.randrange(5) if self.rng.random() < 0.2 else None)
            await anyio.lowlevel.checkpoint()
            self.count_tasks()
        w.watch_key = -1
        if w.watch_fetches != 1 or any(o is not outcomes[0] for o in outcomes):
            self.check.bad(
                f"burst on key {key}: {w.watch_fetches} fetches, "
                f"{len({id(o) for o in outcomes})} distinct outcomes"
            )
        self.ops += BURST + 1
        self.bursts += 1

    async def run(self, ops: int) -> None:
        """Run rounds until ``ops`` more operations are done; move the clock between rounds."""
        target = self.ops + ops
        while self.ops < target:
            if self.rng.random() < 0.02:
                await self.burst_round()
            else:
                await self.plain_round()
            self.rounds += 1
            if self.rng.random() < 0.005:
                # A long pause: much of the cache expires.  No fetch may span it (the
                # staleness check allows for the longest fetch), so settle first.
                await self.cache.wait_idle()
                self.clock.advance(self.rng.uniform(WINDOW / 2, 2 * WINDOW))
            else:
                self.clock.advance(self.rng.uniform(0.0, 1.5))

    async def final_check(self) -> int:
        """With failures off: expired entries are recomputed, stale ones refreshed, exactly."""
        w, f = self.world, self.f
        w.failing = False
        keys = list(range(HOT + WARM)) + self.rng.sample(range(HOT + WARM, KEYSPACE), 400)
        self.clock.advance(BACKOFF_CAP + WINDOW + 1)  # everything expired, backoffs over
        computed = self.clock()  # when the values expected in each phase were computed
        for phase in ("recompute", "hit", "stale", "refreshed"):
            if phase == "stale":
                self.clock.advance(TTL + 1)  # served stale; each refreshes in the background
            elif phase == "refreshed":
                computed = self.clock()
            for key in keys:
                got = await f(key)
                self.calls += 1
                expected = (key, w.version, w.gen(key), computed)
                if got != expected:
                    self.check.bad(f"final {phase}: f({key}) returned {got!r}, not {expected!r}")
            await self.cache.wait_idle()
        return len(keys)


class Heartbeat:
    """Measures event-loop stalls: how late a task waking every HEARTBEAT seconds runs.

    Only while ``measuring``: the test's own pauses (gc.collect, the final check) are
    left out; a beat that spans a pause is dropped.  ``longest_cpu`` is the CPU time the
    loop's thread used over the longest beat: close to it, the loop was busy running
    code; far below, the thread was not running (GIL held elsewhere, or descheduled).
    """

    def __init__(self) -> None:
        self.longest = 0.0
        self.longest_cpu = 0.0
        self.beats = 0
        self.measuring = False
        self.epoch = 0
        self.stop = anyio.Event()

    def pause(self) -> None:
        self.measuring = False
        self.epoch += 1

    def resume(self) -> None:
        self.measuring = True
        self.epoch += 1

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.stop.is_set():
            due, epoch, cpu = loop.time() + HEARTBEAT, self.epoch, time.thread_time()
            with anyio.move_on_after(HEARTBEAT):
                await self.stop.wait()
            if self.measuring and self.epoch == epoch:
                late = loop.time() - due
                if late > self.longest:
                    self.longest, self.longest_cpu = late, time.thread_time() - cpu
                self.beats += 1


@pytest.mark.parametrize("level2", ["memory", "sqlite"])
async def test_soak_values_stay_correct_and_memory_tasks_threads_stay_flat(
    level2: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    record_property: Callable[[str, object], None],
) -> None:
    """Mixed workload: right values, flat memory, no leaked task or thread, no SQL on the loop."""
    loop = asyncio.get_running_loop()
    loop_thread = threading.get_ident()
    sql_threads: set[int] = set()
    sql_statements = [0]
    real_connect = sqlite3.connect

    def traced_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        db = real_connect(*args, **kwargs)

        def trace(_statement: str) -> None:
            sql_statements[0] += 1
            sql_threads.add(threading.get_ident())

        db.set_trace_callback(trace)
        return db

    monkeypatch.setattr(sqlite3, "connect", traced_connect)
    loop_problems: list[str] = []
    old_handler = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, ctx: loop_problems.append(str(ctx)[:300]))
    lib_logger = logging.getLogger("aiocache_swr")
    logs = LogCounter()
    old_level = lib_logger.level
    lib_logger.addHandler(logs)
    lib_logger.setLevel(logging.WARNING)
    monkeypatch.setattr(lib_logger, "propagate", False)

    tasks_before = len(asyncio.all_tasks())
    threads_before = threading.active_count()
    clock = FakeClock()
    store = SQLiteStore(tmp_path / "soak.db", clock=clock) if level2 == "sqlite" else None
    cache = SWRCache(store=store, clock=clock, max_concurrent_refreshes=MAX_REFRESHES)
    heartbeat = Heartbeat()
    tracemalloc.start()
    started = time.perf_counter()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(heartbeat.run)
            soak = Soak(cache, clock, seed=20_240_601 if level2 == "memory" else 7)
            soak.clears_allowed = False
            with anyio.fail_after(3600 if LONG else 120):  # a hang guard only
                heartbeat.resume()
                await soak.run(WARMUP[level2])
                await cache.wait_idle()
                warm_info = soak.f.cache_info()
                heartbeat.pause()
                gc.collect()
                baseline = tracemalloc.get_traced_memory()[0]
                tracemalloc.reset_peak()
                heartbeat.resume()
                total = OPS[level2]
                drift: list[int] = []
                for tenth in range(10):
                    soak.clears_allowed = tenth < 5  # the cache is full again at the end
                    await soak.run(total // 10)
                    drift.append(tracemalloc.get_traced_memory()[0] - baseline)
                await cache.wait_idle()
                heartbeat.pause()
                gc.collect()
                current, peak = tracemalloc.get_traced_memory()
                tasks_settled = len(asyncio.all_tasks()) - 1  # minus the heartbeat
                shared_cancelled, running = soak.world.cancelled, soak.world.running
                info = soak.f.cache_info()
                checked = await soak.final_check()
            heartbeat.stop.set()
        elapsed = time.perf_counter() - started
        await cache.aclose()
        tasks_after = len(asyncio.all_tasks())
        threads_after = threading.active_count()
    finally:
        tracemalloc.stop()
        loop.set_exception_handler(old_handler)
        lib_logger.removeHandler(logs)
        lib_logger.setLevel(old_level)

    delta = current - baseline
    figures = {
        "ops": soak.ops,
        "rounds": soak.rounds,
        "seconds": round(elapsed, 1),
        "mem_baseline_bytes": baseline,
        "mem_delta_bytes": delta,
        "mem_peak_above_baseline_bytes": peak - baseline,
        "mem_drift_max_bytes": max(drift),
        "tasks_before": tasks_before,
        "tasks_settled": tasks_settled,
        "tasks_max": soak.max_tasks,
        "tasks_after": tasks_after,
        "threads_before": threads_before,
        "threads_after": threads_after,
        "longest_stall_ms": round(heartbeat.longest * 1000, 2),
        "longest_stall_loop_cpu_ms": round(heartbeat.longest_cpu * 1000, 2),
        "heartbeats": heartbeat.beats,
        "calls": soak.calls,
        "hits": info.hits,
        "stale_hits": info.stale_hits,
        "misses": info.misses,
        "refreshes": info.refreshes,
        "refresh_errors": info.refresh_errors,
        "evictions": info.evictions,
        "store_hits": info.store_hits,
        "fetches": soak.world.fetches,
        "fetch_failures": soak.world.failures,
        "caller_errors": soak.caller_errors,
        "cancelled_waiters": soak.cancelled_waiters,
        "bursts": soak.bursts,
        "max_fetch_span_s": round(soak.world.max_span, 2),
        "sql_statements": sql_statements[0],
    }
    for name, value in figures.items():
        record_property(name, value)
    print(
        f"\nsoak[{level2}] ops={soak.ops} in {elapsed:.1f}s; memory: baseline {baseline} B, "
        f"delta {delta:+d} B, peak +{peak - baseline} B, max drift {max(drift):+d} B; "
        f"tasks {tasks_before} -> settled {tasks_settled} (max {soak.max_tasks}) -> "
        f"{tasks_after}; threads {threads_before} -> {threads_after}; "
        f"longest loop stall {heartbeat.longest * 1000:.2f} ms (loop thread CPU over it: "
        f"{heartbeat.longest_cpu * 1000:.2f} ms; tracemalloc on)\n  {figures}"
    )

    # Every value callers got was right (and the final pass got exact values).
    assert soak.check.errors == 0, soak.check.messages
    assert checked > 0
    # The workload did exercise every path.
    exercised = ["hits", "stale_hits", "misses", "refresh_errors", "evictions", "caller_errors"]
    exercised += ["cancelled_waiters", "bursts"]
    exercised += ["store_hits", "sql_statements"] if level2 == "sqlite" else []
    assert [name for name in exercised if not figures[name]] == []
    # Baseline and end both hold a (nearly: invalidations make gaps) full cache.
    assert min(warm_info.currsize, info.currsize) >= 0.95 * MAXSIZE
    # Counters add up: every f() call was a hit, a stale hit or a miss.
    final_info = soak.f.cache_info()
    assert final_info.hits + final_info.stale_hits + final_info.misses == soak.calls
    # Memory is flat.
    assert delta < MEMORY_BOUND, figures
    # Shared work is never cancelled by its callers; nothing is left running.
    assert (shared_cancelled, running) == (0, 0)
    assert not soak.engine._registry  # no flight left in the single-flight registry
    # Tasks: bounded by a round's concurrency (its workers, their flights, the previous
    # round's flights whose callers were cancelled, the refresh limit), not by the number
    # of operations; only the cache's host task once settled; the baseline once closed.
    assert soak.max_tasks <= tasks_before + 4 + 2 * ROUND + BURST + MAX_REFRESHES
    assert tasks_settled == tasks_before + 1
    assert tasks_after == tasks_before
    assert threads_after == threads_before
    # Nothing reached the loop's exception handler; the only warnings are injected failures.
    assert loop_problems == []
    assert logs.unexpected == []
    assert logs.warnings > 0
    if level2 == "sqlite":
        # Level 2 never failed, and no SQL statement ran on the event loop thread.
        assert info.store_errors == 0
        assert loop_thread not in sql_threads
    else:
        assert sql_statements[0] == 0
