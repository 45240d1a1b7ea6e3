"""A model-based test of the engine (SPEC sections 2 and 3), with hypothesis' rule-based machines.

:class:`SWRModel` drives the real ``SWRCache`` on one asyncio event loop kept for a whole
run: random interleavings of calls, backend completions and failures, caller
cancellations, clock moves, version bumps, ``refresh()``, ``invalidate()``,
``cache_clear()`` and ``invalidate_tags()``.  The backend is fully controlled: each
fetch blocks until a rule releases it with a value or an exception.  A small
reference model (the LRU contents, which fetches are doomed, the counters) predicts
what every call must return, and the checks compare the cache against it after
every step.  Time only moves through ``FakeClock``; the loop is settled by
``asyncio.sleep(0)`` passes (and, with a SQLite store, by waiting until no store
operation is in progress on its worker thread), never by real time.

Four machines run the same rules:

* :class:`TestSWRModel`: memory only;
* :class:`TestSWRModelPlain`: memory only, with a constant ``version`` (never bumped),
  which the cache serves through its other call closure (see ``_function._cached_call``);
* :class:`TestSWRModelMemoryL2`: with a ``MemoryStore`` as level 2;
* :class:`TestSWRModelSQLite`: with a ``SQLiteStore`` as level 2, in a file of its own
  per example.

The two with level 2 add a ``restart`` rule: the cache is closed (what runs is cancelled:
``close_timeout=0``) and a new cache and decorated function open the same store (for
SQLite, a new ``SQLiteStore`` on the same file: a new process).  Level 1 starts empty, so
values come back from level 2, judged by the same freshness rules; the model also tracks
level 2 (commits write it, invalidations delete from it, evictions from level 1 do not),
so nothing invalidated comes back from it and a level-1 miss is served from it exactly
when the model says its row may be served.

CI runs a short search.  For a long one::

    AIOCACHE_SWR_LONG=1 .venv/bin/pytest tests/test_model.py -q -p no:cacheprovider

(1000 examples of up to 60 steps per machine, 300 with SQLite; several minutes).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import anyio
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from aiocache_swr import SQLiteStore, SWRCache
from aiocache_swr._backoff import BACKOFF_BASE
from aiocache_swr._function import _BACKOFF_KEYS, engine_of
from aiocache_swr._keys import stable_key
from aiocache_swr._store import MemoryStore, Record
from aiocache_swr.testing import FakeClock

KEYS = st.integers(0, 3)
TTL = 10.0
STALE_TTL = 20.0
MAXSIZE = 3
MAX_REFRESHES = 2
NAMESPACE = "model"

LONG = os.environ.get("AIOCACHE_SWR_LONG") == "1"


class BackendError(Exception):
    """What a failed fetch raises: distinct per fetch, so a caller's error names its fetch."""

    def __init__(self, key: int, serial: int) -> None:
        super().__init__(f"fetch #{serial} of key {key} failed")
        self.key = key
        self.serial = serial


class _Tracked:
    """Counts the store operations in progress, so the loop can be settled past them.

    A SQLite operation runs on the store's worker thread: while it does, the tasks
    awaiting it look blocked, so "every task is blocked" does not mean the loop is
    settled.  Every async method of the store is counted here; ``wait_quiet``
    returns once none runs.
    """

    active = 0
    _quiet: asyncio.Event | None = None

    async def _track(self, op: Any) -> Any:
        self.active += 1
        try:
            return await op
        finally:
            self.active -= 1
            if not self.active and self._quiet is not None:
                self._quiet.set()

    async def wait_quiet(self) -> None:
        while self.active:
            self._quiet = asyncio.Event()
            # a hang guard, not a timing assertion
            await asyncio.wait_for(self._quiet.wait(), timeout=10)

    async def get_many(self, namespace: str, keys: Collection[str]) -> dict[str, Record]:
        return await self._track(super().get_many(namespace, keys))  # type: ignore[misc]

    async def flush(self) -> None:
        await self._track(super().flush())  # type: ignore[misc]

    async def delete(self, namespace: str, keys: Collection[str]) -> None:
        await self._track(super().delete(namespace, keys))  # type: ignore[misc]

    async def clear(self, namespace: str) -> None:
        await self._track(super().clear(namespace))  # type: ignore[misc]

    async def delete_tags(self, tags: Iterable[str]) -> None:
        await self._track(super().delete_tags(tags))  # type: ignore[misc]

    async def aclose(self) -> None:
        await self._track(super().aclose())  # type: ignore[misc]


class TrackedSQLiteStore(_Tracked, SQLiteStore):
    """A real SQLiteStore whose operations in progress are counted."""


class TrackedMemoryStore(_Tracked, MemoryStore):
    """The reference MemoryStore, counted the same way."""


def sqlite_threads() -> set[threading.Thread]:
    """The SQLite worker threads alive (a store that was not closed leaves one)."""
    return {t for t in threading.enumerate() if t.name.startswith("aiocache-swr-sqlite")}


@dataclass(eq=False)
class Fetch:
    """One call of the backend, as the test saw it."""

    serial: int
    key: int
    version: int  # the data version when the backend started
    start_seq: int  # logical time of the backend start
    flight: Any  # the engine's _Flight (white box: read from the registry at start)
    kind: str  # the flight's kind: "miss", "refresh" or "force"
    flight_version: int  # the version the flight records (and commits under)
    gate: anyio.Event
    doomed: bool = False  # the model's view: a doom event of its key came after its start
    error: BackendError | None = None
    completed_at: float | None = None
    outcome: str | None = None  # "ok" / "error" once released, "closed" if the cache closed
    saw_cancel: bool = False  # the backend call was cancelled

    @property
    def value(self) -> tuple[int, int, int]:
        return (self.key, self.version, self.serial)


@dataclass(eq=False)
class ModelEntry:
    """What the model expects the cache to hold for a key."""

    fetch: Fetch
    created: float
    version: int


@dataclass(eq=False)
class Call:
    """A caller task: ``f(k)`` or ``f.refresh(k)``."""

    key: int
    kind: str  # "call" / "refresh"
    start_seq: int
    inval_seq: int  # the key's last invalidation before the call started
    task: asyncio.Task[Any]
    source: Fetch | None = None  # the fetch whose outcome it must get
    cancelled: bool = False
    checked: bool = False


class SWRModel(RuleBasedStateMachine):
    """The real cache, one event loop per run, checked against a reference model of SPEC 2.

    Model (all bookkeeping is in logical ``seq`` steps, since many steps share a FakeClock time):

    * ``model``: the LRU the cache must hold (order, value, creation time, version);
    * each pending fetch is *doomed* once a doom event of its key (``refresh()``,
      ``invalidate``, ``cache_clear``, ``invalidate_tags``) happens after it started; a
      fetch that succeeds commits (enters ``model``) iff it is not doomed;
    * a call that finds a fresh/servable entry returns it at once; otherwise it waits
      for the one live (non-doomed) fetch of its key and gets exactly its outcome;
    * with a store (subclasses), ``l2``: what level 2 must hold.  A commit writes it, an
      invalidation deletes from it, an eviction from level 1 does not.  A level-1 miss
      with no live fetch of its key reads level 2 and is served from it when its row may
      be served (and a stale row starts a background refresh); else it computes.
    """

    store: Any = None  # the level-2 store of the current cache (subclasses set one)
    # version= is a function of the call (bumped by a rule), so the cache uses its
    # general call closure; False: a constant version, its plain one (never bumped).
    versioned = True

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        self.version = 0
        self.seq = 0
        self.fetches: list[Fetch] = []
        self.pending: list[Fetch] = []
        self.calls: list[Call] = []
        self.model: OrderedDict[int, ModelEntry] = OrderedDict()
        self.inval_seq = dict.fromkeys(range(4), -1)
        self.doom_seqs: dict[int, list[int]] = {k: [] for k in range(4)}
        self.problems: list[str] = []
        self.l2: dict[int, ModelEntry] = {}
        self._open()

    def _new_store(self) -> Any:
        """The level-2 store of a new cache (None: memory only)."""
        return None

    def _open(self) -> None:
        """A new cache and decorated function (on a new store object, if any): L1 is empty."""
        self.store = self._new_store()
        self.cache = SWRCache(
            store=self.store,
            clock=self.clock,
            max_concurrent_refreshes=MAX_REFRESHES,
            close_timeout=0,
        )
        self.model = OrderedDict()
        # With a store, the backoff of each key whose last refresh failed, oldest
        # first, at most max(MAXSIZE, _BACKOFF_KEYS) (with four keys, never reached:
        # tests/test_persistence.py pins the bound): key -> (the failed entry's
        # created, retry_at).
        self.m_backoffs: dict[int, tuple[float, float]] = {}
        self.m_hits = self.m_stale_hits = self.m_misses = self.m_store_hits = 0
        self.m_refresh_calls = self.m_refresh_errors = self.m_evictions = 0
        machine = self

        async def backend(k: int) -> tuple[int, int, int]:
            return await machine._backend(k)

        self.f = self.cache.cached(
            ttl=TTL,
            stale_ttl=STALE_TTL,
            version=(lambda k: machine.version) if self.versioned else self.version,
            maxsize=MAXSIZE,
            namespace=NAMESPACE,
            tags=lambda k: [f"t{k % 2}"],
        )(backend)
        self.engine = engine_of(self.f)
        assert self.f.__code__.co_name == ("general" if self.versioned else "plain")

    # -- plumbing ------------------------------------------------------------

    async def _backend(self, k: int) -> tuple[int, int, int]:
        """The function under test: one pending fetch, released by a rule."""
        flight = self.engine._registry.get((k,))
        if flight is None or flight.doomed:
            self.problems.append(f"fetch of {k} started for a flight that is not live: {flight}")
        self.seq += 1
        x = Fetch(
            serial=len(self.fetches),
            key=k,
            version=self.version,
            start_seq=self.seq,
            flight=flight,
            kind=getattr(flight, "kind", "?"),
            flight_version=getattr(flight, "version", -1),
            gate=anyio.Event(),
        )
        self.fetches.append(x)
        self.pending.append(x)
        try:
            await x.gate.wait()
        except asyncio.CancelledError:
            x.saw_cancel = True
            raise
        if x.error is not None:
            raise x.error
        return x.value

    async def _settle(self) -> None:
        """Run the loop until every other task is blocked (sleep(0) passes, no real time)."""
        me = asyncio.current_task()
        quiet = 0
        for _ in range(10_000):
            await asyncio.sleep(0)
            if self.store is not None and self.store.active:
                quiet = 0
                await self.store.wait_quiet()  # an operation on the store's worker thread
                continue
            busy = any(
                t is not me and (t._fut_waiter is None or t._fut_waiter.done())  # type: ignore[attr-defined]
                for t in asyncio.all_tasks()
            )
            quiet = 0 if busy else quiet + 1
            if quiet >= 3:
                return
        raise AssertionError("the event loop did not settle")

    def _do(self, action: Any) -> Any:
        """Run ``await action()`` on the machine's loop, settle, and check finished callers."""

        async def go() -> Any:
            result = await action()
            await self._settle()
            return result

        result = self.loop.run_until_complete(go())
        self._collect()
        return result

    def _start(self, k: int, kind: str, source: Fetch | None = None) -> Call:
        self.seq += 1
        coro = self.f(k) if kind == "call" else self.f.refresh(k)
        task = self.loop.create_task(coro)
        call = Call(k, kind, self.seq, self.inval_seq[k], task, source=source)
        self.calls.append(call)
        return call

    def _live_fetch(self, k: int) -> Fetch:
        live = [x for x in self.pending if x.key == k and not x.doomed]
        assert len(live) == 1, f"key {k}: expected one live fetch, got {live}"
        return live[0]

    def _doom(self, keys: list[int]) -> None:
        """A doom event (refresh/invalidate/clear/tags) of ``keys`` at the current seq."""
        self.seq += 1
        for k in keys:
            self.doom_seqs[k].append(self.seq)
        for x in self.pending:
            if x.key in keys:
                x.doomed = True

    def _invalidated(self, keys: list[int]) -> None:
        self._doom(keys)
        for k in keys:
            self.inval_seq[k] = self.seq
            self.model.pop(k, None)
            self.l2.pop(k, None)

    def _collect(self) -> None:
        """Check every caller that finished since the last step."""
        for c in self.calls:
            if c.checked or not c.task.done():
                continue
            c.checked = True
            who = f"{c.kind}({c.key}) started at seq {c.start_seq}"
            if c.task.cancelled():
                assert c.cancelled, f"{who} was cancelled, but not by the test"
                continue
            assert not c.cancelled, f"{who}: cancelled but finished anyway"
            exc = c.task.exception()
            src = c.source
            assert src is not None, f"{who} finished before its source was known: {exc!r}"
            if src.outcome == "closed":
                assert isinstance(exc, RuntimeError), f"{who}: closed cache, got {exc!r}"
                assert "closed" in str(exc), f"{who}: closed cache, got {exc!r}"
                continue
            if exc is not None:
                assert isinstance(exc, BackendError), f"{who} raised a non-backend error: {exc!r}"
                assert exc is src.error, f"{who} raised {exc!r}, expected {src.error!r}"
                continue
            value = c.task.result()
            assert isinstance(value, tuple), f"{who}: odd value {value!r}"
            assert len(value) == 3, f"{who}: odd value {value!r}"
            produced = self.fetches[value[2]]
            assert produced.value == value, f"{who} returned {value!r}, never produced"
            assert produced.outcome == "ok", f"{who} returned {value!r}, never produced"
            assert produced.key == c.key, f"{who} returned a value of key {produced.key}"
            # SPEC 7: nothing computed before an invalidation reaches a later caller.
            assert produced.start_seq > c.inval_seq, (
                f"{who} returned {value!r}, computed before the key's invalidation"
            )
            if c.kind == "refresh":
                assert produced.start_seq > c.start_seq, f"{who} reused an earlier computation"
            assert value == src.value, f"{who} returned {value!r}, expected {src.value!r}"

    # -- rules ---------------------------------------------------------------

    @initialize(keys=st.lists(KEYS, max_size=4, unique=True))
    def seed(self, keys: list[int]) -> None:
        """Start with some committed entries (swarm testing may disable the calling rules)."""
        for k in keys:
            self.call(k)
            self._release(self.pending.index(self._live_fetch(k)), ok=True)

    @precondition(lambda self: self.model)
    @rule(i=st.integers(0, 63))
    def call_cached_key(self, i: int) -> None:
        """Start f(k) for a key the model holds (more hits and stale hits)."""
        keys = list(self.model)
        self.call(keys[i % len(keys)])

    def _judge(self, entry: ModelEntry, now: float) -> str:
        """SPEC 2 for the model's entries: "fresh", "stale" (may be served) or "expired"."""
        if now < entry.created + TTL and entry.version == self.version:
            return "fresh"
        if now < entry.created + TTL + STALE_TTL:
            return "stale"
        return "expired"

    @rule(k=KEYS)
    def call(self, k: int) -> None:
        """Start f(k): a fresh/servable entry returns at once; a miss waits for the live fetch.

        With level 2, a miss with no live fetch of its key is served from level 2 when
        the model's row may be served (a stale row starts a refresh), else it computes.
        """
        now = self.clock()
        entry = self.model.get(k)
        state = "miss"
        if entry is not None:
            self.model.move_to_end(k)
            state = self._judge(entry, now)
            if state == "expired":
                del self.model[k]  # lazy expiry
                state = "miss"
        engine_entry = self.engine._lru.get((k,))
        retry_at = engine_entry.retry_at if engine_entry is not None else None
        reg_before = self.engine._registry.get((k,))
        refreshes_before = self.f.cache_info().refreshes
        row_state = "none"
        new_flight = reg_before is None or reg_before.doomed
        if state == "miss" and self.store is not None and new_flight:  # it reads level 2
            row = self.l2.get(k)
            if row is not None and self._judge(row, now) != "expired":
                row_state = self._judge(row, now)
                entry, state = row, "level2"
                # Rule 6: evicted while backing off, the same value still backs off.
                backoff = self.m_backoffs.get(k)
                if (
                    row_state == "stale"
                    and backoff is not None
                    and backoff[0] == row.created
                    and now < backoff[1]
                ):
                    row_state = "stale, backing off"

        holder: list[Call] = []

        async def start() -> None:
            holder.append(self._start(k, "call", entry.fetch if state != "miss" else None))

        self._do(start)
        c = holder[0]
        if state == "miss":
            self.m_misses += 1
            assert not c.task.done(), f"f({k}) returned at once on a miss"
            c.source = self._live_fetch(k)
            return
        assert entry is not None
        if state == "level2":
            event(f"a {row_state} level-2 row served")
            self.m_misses += 1
            self.m_store_hits += 1
            assert c.task.done(), f"f({k}): a servable level-2 row was not served"
            self._collect()  # checks the returned value against the row's fetch
            # promoted into level 1, as the most recently used
            self.model[k] = entry
            while len(self.model) > MAXSIZE:
                self.model.popitem(last=False)
                self.m_evictions += 1
            reg_after = self.engine._registry.get((k,))
            if row_state != "stale":  # fresh, or backing off
                assert reg_after is None, f"f({k}): a {row_state} level-2 row started {reg_after}"
                assert self.f.cache_info().refreshes == refreshes_before
            else:  # section 3: a persisted stale entry is served and refreshed
                assert reg_after is not None, f"f({k}): a stale level-2 row started no refresh"
                assert reg_after.kind == "refresh"
                assert not reg_after.doomed
                assert self.f.cache_info().refreshes == refreshes_before + 1
            return
        assert c.task.done(), f"f({k}) waited although a {state} entry was cached"
        # Rule 8 / section 2: a served value is never older than ttl + stale_ttl.
        assert entry.fetch.completed_at is not None
        age = now - entry.fetch.completed_at
        assert age < TTL + STALE_TTL, f"f({k}) served a value {age}s old"
        self._collect()  # checks the returned value against entry.fetch
        if state == "fresh":
            self.m_hits += 1
            assert entry.fetch.version == self.version, f"f({k}): fresh hit of an old version"
            assert age < TTL, f"f({k}): fresh hit {age}s old"
            return
        self.m_stale_hits += 1
        # Rule 3 / 6: a stale hit makes sure ONE refresh runs, unless backing off.
        assert retry_at is not None
        reg_after = self.engine._registry.get((k,))
        if now < retry_at or (reg_before is not None and not reg_before.doomed):
            assert reg_after is reg_before, f"f({k}): a refresh started while backing off/running"
            assert self.f.cache_info().refreshes == refreshes_before
        else:
            assert reg_after is not None, f"f({k}): a stale hit started no refresh"
            assert reg_after is not reg_before, f"f({k}): a stale hit started no refresh"
            assert reg_after.kind == "refresh"
            assert not reg_after.doomed
            assert self.f.cache_info().refreshes == refreshes_before + 1

    @rule(k=KEYS)
    def refresh(self, k: int) -> None:
        """Start f.refresh(k): it supersedes (dooms) a running fetch and waits for its own."""
        self.m_refresh_calls += 1
        holder: list[Call] = []

        async def start() -> None:
            self._doom([k])
            holder.append(self._start(k, "refresh"))

        self._do(start)
        c = holder[0]
        assert not c.task.done(), f"refresh({k}) returned before its fetch was released"
        c.source = self._live_fetch(k)
        assert c.source.kind == "force"
        assert c.source.start_seq > c.start_seq

    def _release(self, i: int, ok: bool) -> None:
        x = self.pending.pop(i % len(self.pending))
        now = self.clock()
        x.completed_at = now
        if ok:
            x.outcome = "ok"
            if not x.doomed:  # commit (SPEC 7: a doomed fetch never writes)
                self.m_backoffs.pop(x.key, None)  # a success ends the backoff
                self.model[x.key] = self.l2[x.key] = ModelEntry(x, now, x.flight_version)
                self.model.move_to_end(x.key)
                while len(self.model) > MAXSIZE:
                    self.model.popitem(last=False)
                    self.m_evictions += 1
        else:
            x.outcome = "error"
            x.error = BackendError(x.key, x.serial)
            if x.kind == "refresh":
                self.m_refresh_errors += 1

        async def release() -> None:
            x.gate.set()

        self._do(release)
        for c in self.calls:
            if c.source is x and not c.cancelled:
                assert c.task.done(), f"a waiter of fetch #{x.serial} did not get its outcome"
        if not ok and x.kind == "refresh" and x.flight.base is not None:
            # Rule 6: a failed refresh backs off (at least half the base delay).
            base = x.flight.base
            assert base.retry_at >= now + BACKOFF_BASE / 2
            if self.store is not None:  # kept for when the entry is read back
                self.m_backoffs.pop(x.key, None)
                if len(self.m_backoffs) >= max(MAXSIZE, _BACKOFF_KEYS):
                    del self.m_backoffs[next(iter(self.m_backoffs))]
                self.m_backoffs[x.key] = (base.created, base.retry_at)

    @precondition(lambda self: self.pending)
    @rule(i=st.integers(0, 63))
    def release_ok(self, i: int) -> None:
        """Let a pending fetch return its value."""
        self._release(i, ok=True)

    @precondition(lambda self: self.pending)
    @rule(i=st.integers(0, 63))
    def release_error(self, i: int) -> None:
        """Let a pending fetch raise its own BackendError."""
        self._release(i, ok=False)

    @precondition(lambda self: any(not c.task.done() for c in self.calls))
    @rule(i=st.integers(0, 63))
    def cancel_caller(self, i: int) -> None:
        """Cancel a waiting caller: it stops waiting; the shared fetch goes on (rule 5)."""
        waiting = [c for c in self.calls if not c.task.done()]
        c = waiting[i % len(waiting)]
        c.cancelled = True

        async def cancel() -> None:
            c.task.cancel()

        self._do(cancel)
        assert c.task.cancelled()

    @rule(dt=st.integers(0, 12) | st.integers(0, 40))
    def advance(self, dt: int) -> None:
        """Move the FakeClock."""
        self.clock.advance(dt)

    @precondition(lambda self: self.versioned)
    @rule()
    def bump_version(self) -> None:
        """The data changes: every cached entry becomes stale (not expired)."""
        self.version += 1

    @rule(k=KEYS)
    def invalidate(self, k: int) -> None:
        """f.invalidate(k): drop the entry; a fetch in flight must not write back."""

        async def go() -> None:
            self._invalidated([k])
            await self.f.invalidate(k)

        self._do(go)

    @rule(which=st.sampled_from(["clear", "t0", "t1"]))
    def drop_many(self, which: str) -> None:
        """f.cache_clear() or cache.invalidate_tags("t0"/"t1"): no fetch in flight writes back."""
        keys = [k for k in range(4) if which == "clear" or f"t{k % 2}" == which]

        if which == "clear":
            self.m_backoffs.clear()

        async def go() -> None:
            self._invalidated(keys)
            if which == "clear":
                await self.f.cache_clear()
            else:
                await self.cache.invalidate_tags(which)

        self._do(go)

    # -- invariants ----------------------------------------------------------

    @invariant()
    def no_problems(self) -> None:
        """Nothing odd was seen inside the backend."""
        assert not self.problems, self.problems

    @invariant()
    def lru_matches_model(self) -> None:
        """The in-memory LRU holds exactly the model's entries, in LRU order."""
        lru = self.engine._lru
        assert list(lru.keys()) == [(k,) for k in self.model], (list(lru.keys()), self.model)
        for k, m in self.model.items():
            e = lru[(k,)]
            assert (e.value, e.created, e.version) == (m.fetch.value, m.created, m.version), (k, e)

    @invariant()
    def counters_match(self) -> None:
        """cache_info agrees with the model; currsize never exceeds maxsize."""
        info = self.f.cache_info()
        assert info.currsize <= MAXSIZE
        assert info.currsize == len(self.model)
        assert (info.hits, info.stale_hits, info.misses) == (
            self.m_hits,
            self.m_stale_hits,
            self.m_misses,
        )
        assert info.refresh_errors == self.m_refresh_errors
        assert info.evictions == self.m_evictions
        assert info.refreshes >= self.m_refresh_calls
        assert (info.store_hits, info.store_errors) == (self.m_store_hits, 0)

    @invariant()
    def backoffs_match_model(self) -> None:
        """The backoffs kept for evicted entries are the model's, oldest first."""
        kept = [
            (k, (created, retry_at))
            for (k,), (created, _, retry_at) in self.engine._backoffs.items()
        ]
        assert kept == list(self.m_backoffs.items())

    @invariant()
    def flights_are_single(self) -> None:
        """At most one live fetch per key; doomed ones are bounded by the doom events since."""
        for x in self.pending:
            assert x.flight.doomed == x.doomed, f"fetch #{x.serial}: engine/model doom differ"
            assert not x.flight.is_set()
            if not x.doomed:
                assert self.engine._registry.get((x.key,)) is x.flight, (
                    f"live #{x.serial} unregistered"
                )
        for k in range(4):
            mine = sorted((x for x in self.pending if x.key == k), key=lambda x: x.start_seq)
            assert sum(not x.doomed for x in mine) <= 1
            for j, x in enumerate(mine):
                dooms = sum(s > x.start_seq for s in self.doom_seqs[k])
                assert len(mine) - j - 1 <= dooms, f"key {k}: too many concurrent fetches"

    @invariant()
    def registry_has_no_leak(self) -> None:
        """Each registered flight is queued or has a pending fetch; idle means empty."""
        flights = {id(x.flight) for x in self.pending}
        for key, flight in self.engine._registry.items():
            assert flight.key == key
            assert flight.queued or id(flight) in flights, f"{key}: leaked flight {flight}"
        if not self.pending:
            assert not self.engine._registry, f"registry leak: {self.engine._registry}"
        runner = self.cache._runner
        if runner is not None:
            assert runner.refreshing <= MAX_REFRESHES

    @invariant()
    def waiters_have_a_fetch(self) -> None:
        """Every caller still waiting waits for a fetch that is still pending."""
        for c in self.calls:
            if not c.task.done():
                assert c.source is not None, f"{c.kind}({c.key}) waits for nothing"
                assert c.source in self.pending, f"{c.kind}({c.key}) waits for nothing"

    def teardown(self) -> None:
        """Cancel leftover callers, close the cache, close the loop: no warning may escape."""

        async def shutdown() -> None:
            for c in self.calls:
                if not c.task.done():
                    c.task.cancel()
            await asyncio.gather(*(c.task for c in self.calls), return_exceptions=True)
            await self.cache.aclose()
            me = asyncio.current_task()
            left = [t for t in asyncio.all_tasks() if t is not me]
            assert not left, f"tasks left after aclose: {left}"

        try:
            self.loop.run_until_complete(shutdown())
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()


class SWRModelPlain(SWRModel):
    """Memory only, with a constant version: the cache's plain call closure."""

    versioned = False


class _LevelTwoModel(SWRModel):
    """The same machine with a level-2 store, plus restarts (SPEC section 3)."""

    def _new_store(self) -> Any:
        raise NotImplementedError

    def _rows(self) -> dict[int, Record]:
        """What the store holds for each key (through its own read path, in one read)."""
        skeys = {stable_key((k,)): k for k in range(4)}

        async def read() -> dict[str, Record]:
            return await self.store.get_many(NAMESPACE, list(skeys))  # type: ignore[no-any-return]

        return {skeys[skey]: record for skey, record in self._do(read).items()}

    @precondition(lambda self: self.l2)
    @rule(i=st.integers(0, 63))
    def call_persisted_key(self, i: int) -> None:
        """Start f(k) for a key level 2 holds (more level-2 reads after restarts/evictions)."""
        keys = sorted(self.l2)
        self.call(keys[i % len(keys)])

    @precondition(lambda self: self._evicted_backing_off())
    @rule(i=st.integers(0, 63))
    def call_evicted_backing_off_key(self, i: int) -> None:
        """Start f(k) for a key evicted from level 1 while backing off (rule 6, read back)."""
        keys = self._evicted_backing_off()
        self.call(keys[i % len(keys)])

    def _evicted_backing_off(self) -> list[int]:
        return sorted(k for k in self.m_backoffs if k not in self.model and k in self.l2)

    @rule(then=st.lists(KEYS, max_size=4))
    def restart(self, then: list[int]) -> None:
        """A new process: close the cache, then open a new cache and function on the same store.

        close_timeout=0, so the fetches in flight are cancelled and their waiters get a
        "closed" error; nothing is committed by them.  Level 1 starts empty and values
        come back from level 2, judged by the same freshness rules: the new process then
        calls ``then`` (each call checked as by the ``call`` rule).
        """
        now = self.clock()
        closed, self.pending = self.pending, []
        event(f"restart with {min(len(closed), 2)}{'+' if len(closed) > 2 else ''} in flight")
        for x in closed:
            x.outcome = "closed"
            x.completed_at = now
        old = self.cache

        async def close() -> None:
            await old.aclose()
            me = asyncio.current_task()
            left = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
            assert not left, f"tasks left after aclose: {left}"

        self._do(close)
        for x in closed:
            assert x.saw_cancel, f"fetch #{x.serial} was not cancelled by aclose"
        for c in self.calls:
            assert c.checked, f"{c.kind}({c.key}) still waits after aclose"
        self._open()
        for k in then:
            self.call(k)

    @invariant()
    def store_matches_model(self) -> None:
        """Level 2 holds the model's rows: committed values, nothing invalidated.

        A row past its ``expires`` may have been purged already; any other row is there
        exactly as committed.  While a key is in level 1, level 2 holds the same entry.
        """
        now = self.clock()
        rows = self._rows()
        for k in range(4):
            row, m = rows.get(k), self.l2.get(k)
            if m is None:
                assert row is None, f"key {k}: level 2 holds {row}, invalidated or never committed"
                continue
            if row is None:
                assert now > m.created + TTL + STALE_TTL, f"key {k}: level 2 lost {m.fetch.value}"
                continue
            assert (row.value, row.created, row.version, row.tags) == (
                m.fetch.value,
                m.created,
                m.version,
                (f"t{k % 2}",),
            ), (k, row, m)
            assert row.expires == m.created + TTL + STALE_TTL
        for k, m in self.model.items():
            assert self.l2.get(k) is m, f"key {k}: level 1 and level 2 differ"


class SWRModelMemoryL2(_LevelTwoModel):
    """Level 2 is one MemoryStore kept across restarts."""

    def _new_store(self) -> Any:
        store = getattr(self, "_memory_store", None)
        if store is None:
            store = self._memory_store = TrackedMemoryStore()
        return store


class SWRModelSQLite(_LevelTwoModel):
    """Level 2 is a SQLite file of this example; each restart opens a new SQLiteStore on it."""

    def __init__(self) -> None:
        self.tmpdir = tempfile.mkdtemp(prefix="aiocache-swr-model-")
        self.threads_before = sqlite_threads()
        super().__init__()

    def _new_store(self) -> Any:
        return TrackedSQLiteStore(os.path.join(self.tmpdir, "cache.db"), clock=self.clock)

    def teardown(self) -> None:
        """As the base, then: every store closed (no worker thread left), the file removed."""
        try:
            super().teardown()
            left = sqlite_threads() - self.threads_before
            assert not left, f"a store was left open: {left}"
        finally:
            shutil.rmtree(self.tmpdir, ignore_errors=True)


def _settings(examples: int, long_examples: int) -> settings:
    return settings(
        max_examples=long_examples if LONG else examples,
        stateful_step_count=60 if LONG else 30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


SWRModel.TestCase.settings = _settings(60, 1000)
TestSWRModel = SWRModel.TestCase
SWRModelPlain.TestCase.settings = _settings(40, 1000)
TestSWRModelPlain = SWRModelPlain.TestCase
SWRModelMemoryL2.TestCase.settings = _settings(50, 1000)
TestSWRModelMemoryL2 = SWRModelMemoryL2.TestCase
SWRModelSQLite.TestCase.settings = _settings(50, 300)
TestSWRModelSQLite = SWRModelSQLite.TestCase
