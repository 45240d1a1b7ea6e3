"""The level-2 store seam: what the engine needs from persistence.

The engine talks to a store only through :class:`Store`.  Keys reaching a
store are already stable strings (see ``_keys.stable_key``) and every key
lives in a *namespace* (one per decorated function), so one store can be
shared by many functions.

Contract every implementation keeps:

* ``put`` never waits for disk: it serializes at once (so a value that cannot
  be serialized fails right there, in the caller's flow, and the engine keeps
  the entry memory-only) and buffers the write.  ``flush`` writes what is
  buffered, in batches, until the buffer is empty.  The engine schedules
  ``flush`` in its own task group whenever ``pending`` is true after a
  ``put``.
* Reads see buffered writes and deletions (read-your-writes), so an entry
  evicted from level 1 is found again even before its batch reached disk.
* ``delete``, ``clear`` and ``delete_tags`` are ordered after every write
  buffered before them, and have taken effect when they return.
* Methods may raise anything: the engine treats every store failure as "the
  store is unavailable for this operation", logs it and counts it; a store
  failure never fails the caller's call.

:class:`MemoryStore` is the reference implementation, used by tests (it
round-trips values through pickle so tests see what a real store would).
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import math
import pickle
import weakref
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "Distrust",
    "MemoryStore",
    "Record",
    "Store",
    "TimeLimit",
    "close_unstarted",
    "distrust",
    "store_time_limit",
    "weak_clock",
]


class TimeLimit(Protocol):
    def expired(self) -> bool: ...


#: The engine's time limit (``store_timeout``) around the store call running in
#: this context, if any.  A store whose call it abandons may let the caller go at
#: once, even if work the call started goes on (``SQLiteStore``'s worker thread).
store_time_limit: contextvars.ContextVar[TimeLimit | None] = contextvars.ContextVar(
    "aiocache_swr_store_time_limit", default=None
)


@dataclass(slots=True)
class Record:
    """One persisted entry (treat it as immutable).

    Not ``frozen``: a frozen dataclass sets each field through
    ``object.__setattr__``, which doubled the cost of making one, and one is
    made for every row read and every value written.

    ``created`` is wall-clock seconds (``time.time`` scale) so it means the
    same in the next process.  ``expires`` is when the row stops being useful
    at all (``created + ttl + stale_ttl``), or ``None`` for never; stores may
    purge rows past it.
    """

    value: Any
    version: Any
    created: float
    tags: tuple[str, ...] = ()
    expires: float | None = None


@runtime_checkable
class Store(Protocol):
    """What the engine needs from a level-2 store (see the module docstring)."""

    async def get_many(self, namespace: str, keys: Collection[str]) -> dict[str, Record]:
        """Return the records found for ``keys`` (absent keys are left out)."""
        ...

    def put(self, namespace: str, key: str, record: Record) -> None:
        """Serialize ``record`` now and buffer its write.

        If it cannot be serialized, buffer a deletion of the key's record instead
        (a newer value than the stored one was computed), then raise."""
        ...

    @property
    def pending(self) -> bool:
        """True while writes are buffered and not yet flushed."""
        ...

    async def flush(self) -> None:
        """Write everything buffered, in batches, until nothing is buffered."""
        ...

    async def delete(self, namespace: str, keys: Collection[str]) -> None:
        """Remove these keys of ``namespace``."""
        ...

    async def clear(self, namespace: str) -> None:
        """Remove every key of ``namespace``."""
        ...

    async def delete_tags(self, tags: Iterable[str]) -> None:
        """Remove every record, of any namespace, carrying one of ``tags``."""
        ...

    async def aclose(self) -> None:
        """Flush, then release what this store holds for the running event loop."""
        ...


class Distrust:
    """When a store failed to apply invalidations, for every cache of this process.

    When a store fails to apply an invalidation, the engine records when
    (:meth:`mark`), and from then on no function trusts a record of that
    namespace created at or before that time -- better recompute than serve
    what the invalidation should have removed -- except records this process
    wrote afterwards (:meth:`written`; they matter when the clock has not moved,
    as with ``FakeClock``).  A new process trusts the store again
    (``SQLiteStore`` keeps a deletion it could not write and retries it).

    "When" is read on the clock of every cache using the store (:meth:`watch`),
    and each function compares with the reading of its own: caches with
    different clocks (a ``FakeClock`` beside the real one) may share a file.
    """

    __slots__ = ("__weakref__", "at", "clocks", "marked", "rewritten")

    def __init__(self) -> None:
        # (namespace (None: every one), id of a clock) -> that clock's time then
        self.at: dict[tuple[str | None, int], float] = {}
        # The clocks watched, by id: weakly where they can be (a clock that goes
        # takes its marks with it, and its id may then be reused).
        self.clocks: dict[int, Callable[[], Callable[[], float] | None]] = {}
        self.marked: set[str | None] = set()  # every namespace marked, for clocks to come
        self.rewritten: set[tuple[str, str]] = set()  # written at a mark's time, after it

    def watch(self, clock: Callable[[], float]) -> None:
        """``clock`` is the clock of a cache using the store.  Watched after marks
        were made, it takes them at its time now: it distrusts what it has not seen."""
        key = id(clock)
        if key in self.clocks:
            return
        self.clocks[key] = weak_clock(clock, partial(_forget_clock, weakref.ref(self), key))
        for namespace in self.marked:
            self.at[namespace, key] = clock()

    def mark(self, namespace: str | None, clock: Callable[[], float]) -> None:
        """The store failed to apply an invalidation of ``namespace`` (None: of every
        one), seen by a cache on ``clock``: now, on every clock watched."""
        self.watch(clock)
        self.marked.add(namespace)
        for key, ref in list(self.clocks.items()):
            watched = ref()
            if watched is not None:
                self.at[namespace, key] = watched()
        self.rewritten = {k for k in self.rewritten if namespace is not None and k[0] != namespace}

    def _limit(self, namespace: str, clock: Callable[[], float]) -> float:
        at, key = self.at, id(clock)
        return max(at.get((namespace, key), -math.inf), at.get((None, key), -math.inf))

    def written(self, namespace: str, key: str, created: float, clock: Callable[[], float]) -> None:
        if created == self._limit(namespace, clock):
            self.rewritten.add((namespace, key))

    def trusts(self, namespace: str, key: str, created: float, clock: Callable[[], float]) -> bool:
        limit = self._limit(namespace, clock)
        return created > limit or (created == limit and (namespace, key) in self.rewritten)


def weak_clock(
    clock: Callable[[], float], gone: Callable[[object], None] | None = None
) -> Callable[[], Callable[[], float] | None]:
    """A reference to ``clock``: weak if it takes one (calling ``gone`` when it goes)."""
    try:
        return weakref.ref(clock, gone)
    except TypeError:  # e.g. time.time, which lives as long as the process anyway
        return lambda: clock


def _forget_clock(distrust: weakref.ref[Distrust], key: int, _gone: object) -> None:
    found = distrust()
    if found is not None:
        found.clocks.pop(key, None)
        for mark in [mark for mark in found.at if mark[1] == key]:
            del found.at[mark]


_distrust: dict[int, Distrust] = {}  # by id(store): stores need not be hashable


def distrust(store: Store) -> Distrust:
    """The :class:`Distrust` of ``store``, shared by every cache of this process."""
    key = id(store)
    found = _distrust.get(key)
    if found is None:
        found = _distrust[key] = Distrust()
        # Forgotten with the store (its id may be reused afterwards); a store that
        # takes no weak references keeps its marks for the life of the process.
        with contextlib.suppress(TypeError):
            weakref.finalize(store, _distrust.pop, key, None)
    return found


def close_unstarted(op: object) -> None:
    """Close a store operation's coroutine if it never ran (e.g. a time limit could
    not be entered), so that Python does not warn it was never awaited.  Other
    awaitables (a Future, say) are left alone."""
    if inspect.iscoroutine(op) and inspect.getcoroutinestate(op) == inspect.CORO_CREATED:
        op.close()


class MemoryStore:
    """An in-process :class:`Store`, used by tests; values round-trip through pickle."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Record] = {}
        self._buffer: list[tuple[str, str, Record | None]] = []  # None: deleted
        self.flushes = 0
        self.closed = False

    async def get_many(self, namespace: str, keys: Collection[str]) -> dict[str, Record]:
        found: dict[str, Record] = {}
        for key in keys:
            record = self.rows.get((namespace, key))
            for ns, k, buffered in self._buffer:
                if (ns, k) == (namespace, key):
                    record = buffered
            if record is not None:
                found[key] = replace(record, value=pickle.loads(record.value))
        return found

    def put(self, namespace: str, key: str, record: Record) -> None:
        try:
            blob = pickle.dumps(record.value)
        except Exception:
            self._buffer.append((namespace, key, None))
            raise
        self._buffer.append((namespace, key, replace(record, value=blob)))

    @property
    def pending(self) -> bool:
        return bool(self._buffer)

    async def flush(self) -> None:
        while self._buffer:
            batch, self._buffer = self._buffer, []
            for namespace, key, record in batch:
                if record is None:
                    self.rows.pop((namespace, key), None)
                else:
                    self.rows[namespace, key] = record
            self.flushes += 1

    async def delete(self, namespace: str, keys: Collection[str]) -> None:
        await self.flush()
        for key in keys:
            self.rows.pop((namespace, key), None)

    async def clear(self, namespace: str) -> None:
        await self.flush()
        for row in [row for row in self.rows if row[0] == namespace]:
            del self.rows[row]

    async def delete_tags(self, tags: Iterable[str]) -> None:
        await self.flush()
        wanted = set(tags)
        for row in [row for row, rec in self.rows.items() if wanted.intersection(rec.tags)]:
            del self.rows[row]

    async def aclose(self) -> None:
        await self.flush()
        self.closed = True
