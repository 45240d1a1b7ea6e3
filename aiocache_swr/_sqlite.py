"""SQLite persistence (level 2) on aiosqlite: :class:`SQLiteStore`.

:class:`SQLiteStore` implements the :class:`~aiocache_swr._store.Store` seam.
What an integrator needs to know:

Errors
    Every failure of a store operation surfaces as :class:`StoreError` (or a
    subclass), chained to the underlying ``sqlite3``/``OSError`` exception:

    * :class:`StoreOpenError` -- the file cannot be created or opened (permissions,
      missing volume, read-only file, ...).  The failure is remembered for a few
      seconds (``_OPEN_RETRY_AFTER``) so a broken file is not re-opened on every
      call: the write connection's fails every operation meanwhile, the read
      connection's every read.
    * :class:`SchemaVersionError` (a :class:`StoreOpenError`) -- the file was
      written by a newer aiocache-swr (its ``PRAGMA user_version`` is above
      :data:`SCHEMA_VERSION`).  The file is left untouched.
    * :class:`SerializationError` -- raised synchronously by :meth:`SQLiteStore.put`
      when the value cannot be serialized; the value is not buffered, and a
      deletion of the key's older row is (it would be read back as current).
    * plain :class:`StoreError` -- a read or write failed (after retries).

    A file that is not a SQLite database (``SQLITE_NOTADB``) or is corrupt
    (``SQLITE_CORRUPT``) while opening is *not* an error: it is renamed to
    ``<name>.corrupt-<UTC timestamp>`` (with its ``-wal``/``-shm``), logged at
    ERROR on the ``aiocache_swr`` logger, and an empty database is created in its
    place.  A file found so later, by a read or a write on an open connection,
    goes the same way: that read fails (the reader is closed; the next read or
    write, whichever comes first, sets the file aside, so no write goes to the
    file about to be set aside, and a read never closes, nor so waits for, the
    writer; a read then finds no file, a miss, and a write makes the new one),
    that write is retried once on the new file.  The
    file is set aside only if the path still names it (same device and inode):
    another process may have set it aside and created a new one first.  Each read
    job checks that the path still names the reader's file, so a process that
    only reads follows a file another process set aside or replaced.  Each write
    job checks it for the writer's file before it waits for the write lock and
    again before it commits: a batch that waited while the file was set aside
    (by a read, or another process) is rolled back and written to the new file.
    That last check and the COMMIT hold a lock that this store's setting aside of
    a file holds too, from its check of the file to the rename, so neither runs
    in the middle of the other.

    A single row that fails its signature check or cannot be deserialized is a
    miss: it is deleted and logged at WARNING (the signature is checked before
    anything is deserialized).  The deletion runs on the read connection and
    never waits for the write lock, as the read it runs in would wait too: while
    one is held (by another process, or by this store's own write batch), the
    row stays, and a later read deletes it.

Event loops
    aiosqlite runs each connection on its own worker thread and hands results
    back through futures of the loop that asked, so this store is asyncio-only
    (under another async library every operation raises :class:`StoreError`).
    The store keeps two connections for the running loop, each with its worker
    thread, and opens them lazily, each on its own: one writes, one reads (see
    "Reads").  The writer creates the file and its schema, and upgrades an
    older one; the reader opens the file the path names (``mode=rw``).  The
    reader never opens the writer, makes a file or a schema, nor closes the
    writer (any of these could wait for another process's lock): a missing
    file, or one without a schema yet, reads as empty until a write makes it.
    A file of an older schema reads as it is (see ``_READABLE_SINCE``).  When the
    store is used from a different loop (two successive ``asyncio.run`` calls,
    one loop per test...), the previous connections are stopped from a
    short-lived helper thread --
    there, aiosqlite's ``stop()`` finds no event loop and queues its shutdown
    without a future, so the worker closes the sqlite connection and exits
    without ever touching the dead loop -- and new ones are opened.  Writes
    buffered under the old loop are kept and flushed under the new one.
    Loop-bound state (locks, events, the read batch) is per loop.
    :meth:`SQLiteStore.aclose` flushes and closes the running loop's
    connections; the store can be used again afterwards (it reopens lazily).
    The worker threads are daemon threads so a store that was never closed
    cannot keep the interpreter from exiting.

    Every database call is a single job on a worker thread (one transaction,
    or one group of ``SELECT`` statements), so cancelling the awaiting task never
    leaves a transaction open.  The worker reports every job to a future of the
    loop that queued it, and dies with ``RuntimeError: Event loop is closed`` if
    that loop has closed meanwhile.  So every path that queues a job makes sure
    something waits until it has been reported, whatever cancellation arrives (asyncio's own
    ``Task.cancel`` goes through anyio's shielded scopes; ``asyncio.run`` cancels
    leftover tasks once and waits for them before closing the loop): a cancelled
    call waits for a no-op queued behind its job -- unless it is a read that the
    engine's ``store_timeout`` abandoned, when a task of the store waits instead
    and the caller goes at once (a disk hung in a read must not hang it; the
    task is a leftover that ``asyncio.run`` waits for, and closing waits for the
    worker anyway; a write waits, as it must learn whether its batch committed
    before putting it back in the buffer); a failed (or interrupted) open
    -- aiosqlite then queues a stop reporting to this loop -- and :meth:`aclose`
    wait until the worker thread has exited.

Files
    The database file is created by this module with ``os.open(..., 0o600)``
    before SQLite opens it (parent directories are created with mode ``0o700``).
    SQLite's unix VFS gives the ``-wal``/``-shm`` files the permission bits of
    the database file, so they are owner-only too -- no ``umask`` change is
    needed (a library must not change the process-wide umask).  The mode of a
    file that already exists is left alone.  Open sequence, retried as a whole
    with backoff while SQLite reports busy/locked: create file, connect with the
    busy timeout, check the schema version (before anything else, so that a
    newer version's file keeps its journal mode), ``PRAGMA journal_mode=WAL``,
    ``synchronous=NORMAL``, schema check/creation in a ``BEGIN IMMEDIATE``
    transaction.  The file's (device,
    inode) is taken before the connect and checked after the last step: if the
    path names another file by then (replaced by another process), the
    connection may be on either, so it is closed and the open starts again.

Writes
    ``put`` serializes ``(value, version)`` at once and buffers the row; ``delete``,
    ``clear`` and ``delete_tags`` buffer a deletion (applied before the buffer's
    puts, which are all newer) and then flush, so they are ordered after every
    earlier write and have reached disk when they return.  Reads see the buffer
    (puts and deletions).  ``flush`` writes the buffer in batches of at most
    ``_MAX_BATCH`` operations, each ONE transaction, while holding a per-loop
    lock, looping until the buffer is empty.  A batch that fails with
    busy/locked is retried with backoff; when it still fails, its *puts are
    dropped* (logged at WARNING; they stay in level 1, and an unbounded buffer in
    front of a broken disk would be a memory leak) while its *deletions are kept*
    and retried by the next flush (a lost invalidation could let another process
    serve data that was meant to be gone).  After such a failure ``pending`` stays
    False until something new is buffered, so a caller that flushes "while
    pending" does not spin against a broken file.  A cancelled flush still
    finishes the transaction the worker already runs; later batches go back into
    the buffer, puts included -- unless more than ``max_entries`` puts would then
    wait, when its puts are dropped as a failed batch's are (counted, logged).
    So while the file stays locked for longer than the cache's
    ``store_timeout``, which abandons one flush after another, the buffer holds
    at most ``max_entries`` puts, or those buffered since the last flush began.

Bounds
    After each batch, in the same transaction: rows whose ``expires`` is before
    the purge time (see "Clock") are purged (at most ``_PURGE_LIMIT`` per batch, through an index on
    ``expires``), then rows beyond ``max_entries`` are evicted in the order they
    were *written*, lowest ``rowid`` first.  A write batch deletes its keys, then
    inserts its puts: a rewritten key is deleted and inserted again, so it gets a
    new, highest rowid and the table's rowid order is the write order -- no write
    sequence column or index to maintain.  (SQLite gives a new row ``max(rowid) +
    1`` until rowid 2**63 - 1 has been used, and only then random free rowids;
    at a million writes a second that takes about 300,000 years.)  The row count
    is kept in ``swr_meta``, so bounding the table needs no ``COUNT(*)`` scan:
    each write batch adds the rows it inserted, and a delete trigger subtracts
    every deleted row (and drops its tags).  Deleting first, rather than ``INSERT
    OR REPLACE``: those deletions fire the trigger only under ``PRAGMA
    recursive_triggers = ON``, and then SQLite looks each row up once more before
    inserting it (about 0.5 µs more per row on the benchmark machine, new key or
    not).  Written order rather than read order:
    recording reads would turn every level-2 read into a write transaction (a
    cross-process write lock and WAL growth on the read path); hot entries live
    in level 1 anyway and are rewritten on every refresh.

Schema versions
    ``PRAGMA user_version``.  Version 1 ordered writes by a ``written`` column
    (with an index) and counted inserts with an ``AFTER INSERT`` trigger.  A
    version-1 file is upgraded in place when it is opened, in the ``BEGIN
    IMMEDIATE`` transaction that creates a new file's schema: the trigger and
    the index are dropped, rows and the count are kept.  Its rows keep their
    rowids, so they are evicted in the order they were first inserted (version 1
    updated rows in place).  The ``written`` column stays (unused, written as 0),
    and new files have it too, so both share one table shape.

Reads
    Reads have a connection (and a worker thread) of their own, so a read never
    queues behind a write: in WAL mode a read takes no lock, but a write batch
    can wait up to ``busy_timeout`` for another process's write lock, and its
    thread with it.  So a read can run while a write of this store is being
    committed; it sees through the buffer as it was when the read began as well
    as now, so a range deletion (``clear``, ``delete_tags``) that was pending
    then still hides the rows it removed, even if its commit came after the
    read's snapshot.  When a write finds the file deleted or replaced and opens
    a new one, the reader is closed too and reopens on the new file.  When a
    read finds it so, only the reader is reopened (on no file if the path names
    none: a miss), and the writer follows at its next write.
    Concurrent ``get_many`` calls are coalesced: the first caller of a batch
    (the leader) yields once so callers of the same loop tick can join (and, if a
    read is already in flight, waits for it, gathering more callers meanwhile),
    then runs one job that issues ``SELECT ... WHERE namespace=? AND key IN (...)``
    statements, per namespace, in chunks of ``_CHUNK`` keys.  A cancelled leader
    still completes the batch (shielded) for the callers that joined it; a
    cancelled joiner just stops waiting.  Signature checks and deserialization
    run on the worker thread, not on the event loop.

Clock
    ``created``/``expires`` are stored as given.  Purging compares ``expires`` with
    the earliest time of the clocks that stamp the file's rows in this process
    (``_purge_time``): each store object's ``clock`` (``time.time`` unless
    ``clock=`` is passed; not the default one of a store a cache made for a path)
    and the clock of each decorated function using the file, while they live, so
    records stamped by another clock (a fake clock in tests) are not taken for long
    expired.  With none alive, the real clock.  While one of them fails (or does
    not return seconds), writes purge nothing (logged).  Another process purges
    by its own clocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import hmac
import json
import logging
import math
import os
import pickle
import random
import sqlite3
import struct
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Any, Final, Literal, Protocol, cast, runtime_checkable

import aiosqlite
import anyio
import anyio.lowlevel

from ._store import Record, store_time_limit

__all__ = [
    "SCHEMA_VERSION",
    "JSONSerializer",
    "PickleSerializer",
    "SQLiteStore",
    "SQLiteStoreStats",
    "SchemaVersionError",
    "SerializationError",
    "Serializer",
    "StoreError",
    "StoreOpenError",
]

logger = logging.getLogger("aiocache_swr")

#: Version of the on-disk schema (``PRAGMA user_version``) this module writes.
SCHEMA_VERSION: Final = 2
# The oldest schema reads understand: version 2 only dropped a trigger and an index
# of version 1, so a version-1 file is read as it is until a write upgrades it.
_READABLE_SINCE: Final = 1

_CHUNK: Final = 500  # keys or tags per statement: under SQLite's old 999-variable limit
_MAX_BATCH: Final = 2000  # buffered operations written per transaction
_PURGE_LIMIT: Final = 1000  # expired rows removed per batch
_OPEN_ATTEMPTS: Final = 8
_WRITE_ATTEMPTS: Final = 5
_READ_ATTEMPTS: Final = 4
_OPEN_RETRY_AFTER: Final = 5.0  # seconds an open failure is remembered
_MAC_DOMAIN: Final = b"aiocache-swr/sqlite/v1\x00"

_SQLITE_CORRUPT: Final = 11
_SQLITE_CANTOPEN: Final = 14
_SQLITE_NOTADB: Final = 26
_SQLITE_BUSY: Final = 5
_SQLITE_LOCKED: Final = 6


# --------------------------------------------------------------------------- errors


class StoreError(Exception):
    """A level-2 store operation failed; the engine logs it and carries on without the store."""


class StoreOpenError(StoreError):
    """The database file cannot be created or opened."""


class SchemaVersionError(StoreOpenError):
    """The database file was written by a newer aiocache-swr (a higher schema version)."""


class SerializationError(StoreError):
    """The value cannot be serialized by the store's serializer (raised by ``put``)."""


# ---------------------------------------------------------------------- serializers


@runtime_checkable
class Serializer(Protocol):
    """Turns what the store persists (a ``(value, version)`` tuple) into bytes and back."""

    def dumps(self, obj: Any) -> bytes:
        """Serialize ``obj``; raise if it cannot be serialized."""
        ...

    def loads(self, data: bytes) -> Any:
        """Rebuild the object ``dumps`` serialized."""
        ...


class PickleSerializer:
    """The default: :mod:`pickle`.  Use ``secret=`` if others can write the file."""

    __slots__ = ("protocol",)

    def __init__(self, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        if isinstance(protocol, bool) or not isinstance(protocol, int):
            raise TypeError(f"PickleSerializer(protocol=...) expects an int, got {protocol!r}")
        if not 0 <= protocol <= pickle.HIGHEST_PROTOCOL:
            raise ValueError(
                f"PickleSerializer(protocol={protocol}) is out of range; "
                f"use 0..{pickle.HIGHEST_PROTOCOL} (pickle.HIGHEST_PROTOCOL)"
            )
        self.protocol = protocol

    def dumps(self, obj: Any) -> bytes:
        return pickle.dumps(obj, self.protocol)

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)

    def __repr__(self) -> str:
        return f"PickleSerializer(protocol={self.protocol})"


class JSONSerializer:
    """JSON (UTF-8).  Only JSON types round-trip: tuples come back as lists.

    That includes versions: a version that is not a JSON-native value (a tuple,
    say) will not compare equal after a round trip, so the entry reads as stale.
    """

    __slots__ = ()

    def dumps(self, obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def loads(self, data: bytes) -> Any:
        return json.loads(data)

    def __repr__(self) -> str:
        return "JSONSerializer()"


# ------------------------------------------------------------------------- stats


@dataclass
class SQLiteStoreStats:
    """Counters of one :class:`SQLiteStore` (diagnostics and tests; not synchronized)."""

    opens: int = 0  # times the write connection opened the file: per event loop, per reopen
    # (the read connection opens with the first read after each, and is not counted)
    read_batches: int = 0  # coalesced get_many round trips to the database thread
    read_queries: int = 0  # SELECT statements those round trips ran
    write_transactions: int = 0  # committed write batches
    rows_written: int = 0
    purged: int = 0  # expired rows removed
    evicted: int = 0  # rows removed to stay within max_entries
    rejected_rows: int = 0  # rows dropped: bad signature or undecodable
    write_failures: int = 0  # batches given up after retries
    dropped_writes: int = 0  # puts lost with those batches
    moved_aside: int = 0  # corrupt files renamed


# ------------------------------------------------------------------------ schema

_SCHEMA: Final[tuple[str, ...]] = (
    """CREATE TABLE IF NOT EXISTS swr_entries (
        namespace TEXT NOT NULL,
        key TEXT NOT NULL,
        blob BLOB NOT NULL,
        created REAL NOT NULL,
        expires REAL,
        tags TEXT,
        mac BLOB,
        written INTEGER NOT NULL,  -- version 1's write sequence; unused (0) since version 2
        PRIMARY KEY (namespace, key)
    )""",
    "CREATE INDEX IF NOT EXISTS swr_entries_expires ON swr_entries (expires)"
    " WHERE expires IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS swr_tags (
        namespace TEXT NOT NULL,
        key TEXT NOT NULL,
        tag TEXT NOT NULL,
        PRIMARY KEY (namespace, key, tag)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS swr_tags_tag ON swr_tags (tag)",
    """CREATE TABLE IF NOT EXISTS swr_meta (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID""",
    "INSERT OR IGNORE INTO swr_meta (name, value) VALUES ('entries', 0)",
    # The row count, kept exact so bounding the table never needs COUNT(*): write
    # batches add what they insert, this trigger subtracts every deleted row.  Rows
    # leave only through DELETE (a write batch deletes its keys, then inserts), never
    # through INSERT OR REPLACE, whose deletions fire no trigger unless the
    # connection sets recursive_triggers (earlier versions replaced rows that way).
    """CREATE TRIGGER IF NOT EXISTS swr_entries_delete AFTER DELETE ON swr_entries BEGIN
        UPDATE swr_meta SET value = value - 1 WHERE name = 'entries';
        DELETE FROM swr_tags
         WHERE old.tags IS NOT NULL AND namespace = old.namespace AND key = old.key;
    END""",
    """CREATE TRIGGER IF NOT EXISTS swr_entries_retag AFTER UPDATE OF tags ON swr_entries
    WHEN old.tags IS NOT NULL BEGIN
        DELETE FROM swr_tags WHERE namespace = old.namespace AND key = old.key;
    END""",
)

# Version 1 -> 2, run before _SCHEMA (whose statements are all IF NOT EXISTS).
_MIGRATE_V1: Final[tuple[str, ...]] = (
    "DROP TRIGGER IF EXISTS swr_entries_insert",
    "DROP INDEX IF EXISTS swr_entries_written",
)

# A write batch deletes its keys (_delete_keys_sql), then inserts its puts: a
# rewritten row gets a new, highest rowid (rowid order is write order) and its old
# version goes through the delete trigger (count, tags).
_INSERT_SQL: Final = (
    "INSERT INTO swr_entries"
    " (namespace, key, blob, created, expires, tags, mac, written)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, 0)"
)
_ADD_COUNT_SQL: Final = "UPDATE swr_meta SET value = value + ? WHERE name = 'entries'"
_INSERT_TAG_SQL: Final = "INSERT OR IGNORE INTO swr_tags (namespace, key, tag) VALUES (?, ?, ?)"
_CLEAR_SQL: Final = "DELETE FROM swr_entries WHERE namespace = ?"
_COUNT_SQL: Final = "SELECT value FROM swr_meta WHERE name = 'entries'"
_PURGE_SQL: Final = (
    "DELETE FROM swr_entries WHERE rowid IN"
    " (SELECT rowid FROM swr_entries WHERE expires < ? ORDER BY expires LIMIT ?)"
)
_EVICT_SQL: Final = (  # lowest rowids: least recently written (see "Bounds")
    "DELETE FROM swr_entries WHERE rowid IN (SELECT rowid FROM swr_entries ORDER BY rowid LIMIT ?)"
)
_REJECT_SQL: Final = (
    "DELETE FROM swr_entries WHERE namespace = ? AND key = ? AND blob IS ? AND mac IS ?"
)


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


def _select_sql(n: int) -> str:
    # Not the namespace column: the query names it, and it would be one more str per row.
    return (
        "SELECT key, blob, created, expires, tags, mac FROM swr_entries"
        f" WHERE namespace = ? AND key IN ({_placeholders(n)})"
    )


def _delete_keys_sql(n: int) -> str:
    return f"DELETE FROM swr_entries WHERE namespace = ? AND key IN ({_placeholders(n)})"


def _delete_tags_sql(n: int) -> str:
    return (
        "DELETE FROM swr_entries WHERE rowid IN (SELECT e.rowid FROM swr_tags AS t"
        " JOIN swr_entries AS e ON e.namespace = t.namespace AND e.key = t.key"
        f" WHERE t.tag IN ({_placeholders(n)}))"
    )


# ----------------------------------------------------------------- sqlite errors


def _primary_code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    return code & 0xFF if isinstance(code, int) else None


def _is_busy(exc: BaseException) -> bool:
    """SQLITE_BUSY / SQLITE_LOCKED: another connection holds a lock; worth retrying."""
    if isinstance(exc, _NotWal):
        return True
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = _primary_code(exc)
    if code is not None:
        return code in (_SQLITE_BUSY, _SQLITE_LOCKED)
    message = str(exc).lower()
    return "locked" in message or "busy" in message


def _is_text(name: str) -> bool:
    """SQLite can hold ``name``: it encodes to UTF-8 (no lone surrogate, as
    ``os.fsdecode`` makes of undecodable bytes).  A name it cannot hold has no
    row, and binding it would fail the whole statement, so every entry point
    checks first: a put refuses it, a read or deletion skips it."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_corrupt(exc: BaseException) -> bool:
    """SQLITE_NOTADB / SQLITE_CORRUPT: the file is not a usable database."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = _primary_code(exc)
    if code is not None:
        return code in (_SQLITE_NOTADB, _SQLITE_CORRUPT)
    message = str(exc).lower()
    return "not a database" in message or "malformed" in message


class _NotWal(sqlite3.OperationalError):
    """``PRAGMA journal_mode=WAL`` did not take (another connection held the file)."""


class _FileGone(Exception):
    """The database file was deleted or replaced since the connection opened it."""


# ------------------------------------------------------------- internal records


class _Put:
    """A buffered write: the serialized row, ready for the database.

    ``after_delete``: it replaced a deletion of its key that was not written
    yet, so if it is dropped unwritten it must become that deletion again (or
    an invalidated row could come back).
    """

    __slots__ = ("after_delete", "blob", "created", "expires", "tags", "tags_json")

    def __init__(
        self,
        blob: bytes,
        created: float,
        expires: float | None,
        tags: tuple[str, ...],
        tags_json: str | None,
    ) -> None:
        self.blob = blob
        self.created = created
        self.expires = expires
        self.tags = tags
        self.tags_json = tags_json
        self.after_delete = False


def _dropped(op: _Put | None) -> Literal[_Miss.MISS] | None:
    """What an unwritten operation leaves when its puts are dropped (_MISS: nothing)."""
    if op is None or op.after_delete:
        return None
    return _MISS


class _Layer:
    """Buffered operations: per-key puts/deletions (``None``) and range deletions.

    Range deletions (``clears``: namespaces, ``tag_deletes``: tags) apply to the
    layers below this one, never to this layer's own puts: a put buffered before a
    range deletion is removed from the layer when the deletion is buffered (a tag
    deletion leaves a deletion of the put's key instead, as the put had replaced
    the key's older row, which need not carry the tag), so every put left in the
    layer is newer than its range deletions.
    """

    __slots__ = ("clears", "ops", "tag_deletes")

    def __init__(self) -> None:
        self.ops: dict[tuple[str, str], _Put | None] = {}
        self.clears: set[str] = set()
        self.tag_deletes: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self.ops or self.clears or self.tag_deletes)

    def hides(self, namespace: str, tags: tuple[str, ...]) -> bool:
        """Whether this layer's range deletions remove a lower-layer row."""
        return namespace in self.clears or (
            bool(self.tag_deletes) and not self.tag_deletes.isdisjoint(tags)
        )

    def puts(self) -> int:
        return sum(1 for op in self.ops.values() if op is not None)


class _Miss(Enum):
    MISS = 0


_MISS: Final = _Miss.MISS


class _ReadBatch:
    """``get_many`` calls coalesced into one job on the database thread."""

    __slots__ = ("complete", "error", "event", "found", "shared", "wanted")

    def __init__(self) -> None:
        self.wanted: dict[str, set[str]] = {}
        self.shared: set[str] = set()  # namespaces asked for by more than one caller
        self.found: dict[str, dict[str, Record]] = {}  # per namespace
        self.complete = False  # set by the database thread when ``found`` is final
        self.error: BaseException | None = None
        self.event: asyncio.Event | None = None  # created by the first caller that waits

    def add(self, namespace: str, keys: Iterable[str]) -> None:
        wanted = self.wanted.get(namespace)
        if wanted is None:
            self.wanted[namespace] = set(keys)
        else:
            wanted.update(keys)
            self.shared.add(namespace)

    def found_for(self, namespace: str, keys: Iterable[str]) -> dict[str, Record]:
        """What was found of ``keys``: the namespace's records themselves when
        nobody else asked for that namespace (a batch of 1,000 keys then builds no
        second dictionary), else a new dictionary of just those keys."""
        got = self.found.get(namespace)
        if got is None:
            return {}
        if namespace not in self.shared:
            return got
        return {key: got[key] for key in keys if key in got}

    def wait_event(self) -> asyncio.Event:
        # asyncio's own Event: the store runs on asyncio only, and anyio's costs
        # ten times as much to make.
        if self.event is None:
            self.event = asyncio.Event()
        return self.event


class _WriteJob:
    """One write transaction; the database thread records the outcome here."""

    __slots__ = ("batch", "committed", "evicted", "now", "purged", "rows")

    def __init__(self, batch: _Layer, now: float) -> None:
        self.batch = batch
        self.now = now
        self.committed = False
        self.rows = 0
        self.purged = 0
        self.evicted = 0


class _Opened:
    """Hand-over of the sqlite connection made by the connector on the worker thread."""

    __slots__ = ("db",)

    def __init__(self) -> None:
        self.db: sqlite3.Connection | None = None


_Execute = Callable[..., Awaitable[Any]]


class _Link:
    """One aiosqlite connection: its worker thread runs the jobs given to it, in order."""

    __slots__ = ("_open_lock", "conn", "db", "execute", "role")

    def __init__(self, role: str) -> None:
        self.role = role  # "write" or "read": names the worker thread
        self.conn: aiosqlite.Connection | None = None
        self.db: sqlite3.Connection | None = None
        self.execute: _Execute | None = None
        self._open_lock: anyio.Lock | None = None

    def open_lock(self) -> anyio.Lock:
        """Held while it opens or closes: each connection's own, so that a read never
        waits for the writer's open (which may wait for another process's lock)."""
        if self._open_lock is None:
            self._open_lock = anyio.Lock()
        return self._open_lock

    def forget(self) -> aiosqlite.Connection | None:
        """Mark it closed (the next job opens it again); return the connection it had."""
        conn = self.conn
        self.conn = self.db = self.execute = None
        return conn


class _LoopState:
    """What belongs to one event loop: its two connections, locks and read batches.

    Writes go through ``writer``, reads through ``reader`` (see "Reads" in the
    module docstring): a read never queues behind a write on one worker thread.
    """

    __slots__ = (
        "flush_lock",
        "loop",
        "read_batch",
        "reader",
        "reading",
        "writer",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.writer = _Link("write")
        self.reader = _Link("read")
        self.flush_lock: anyio.Lock | None = None
        self.read_batch: _ReadBatch | None = None  # open for joining
        self.reading: _ReadBatch | None = None  # submitted, not finished


def _noop() -> None:
    return None


def _worker_thread(conn: aiosqlite.Connection) -> threading.Thread | None:
    thread: object = conn if isinstance(conn, threading.Thread) else getattr(conn, "_thread", None)
    return thread if isinstance(thread, threading.Thread) else None


async def _settle(conn: aiosqlite.Connection, *, until_exit: bool = False) -> None:
    """Wait, through any cancellation, until ``conn``'s worker owes this loop nothing.

    aiosqlite's worker thread reports every job it runs to the future of the loop
    that queued it (``call_soon_threadsafe``), and raises ``RuntimeError: Event loop
    is closed`` in its thread if that loop has gone.  So whoever queued a job must
    keep its loop alive until the job is reported, even when cancelled: this waits
    for a no-op queued behind everything else (or, with ``until_exit`` or once the
    connection is stopping, for the thread to exit), polling with short sleeps.
    Shielded from anyio cancel scopes; asyncio's own ``Task.cancel`` goes through
    such a shield, so it is caught here and the first one re-raised afterwards.
    """
    thread = _worker_thread(conn)
    if thread is None or thread.ident is None:
        return  # never started: it will run nothing
    marker: asyncio.Future[Any] | None = None
    if not until_exit and getattr(conn, "_running", False):
        tx = getattr(conn, "_tx", None)
        if tx is not None:
            marker = asyncio.get_running_loop().create_future()
            tx.put_nowait((marker, _noop))
    elif getattr(conn, "_running", False):
        _stop_quietly(conn.stop)  # nothing stopped it (no sqlite connection to close)
    cancelled: BaseException | None = None
    delay = 0.0005
    with anyio.CancelScope(shield=True):
        while thread.is_alive() and (marker is None or not marker.done()):
            try:
                if marker is None:
                    await asyncio.sleep(delay)
                else:
                    await asyncio.wait((marker,), timeout=delay)
            except asyncio.CancelledError as exc:  # asyncio's own: not stopped by the shield
                if cancelled is None:
                    cancelled = exc
            delay = min(delay * 2, 0.02)
    if cancelled is not None:
        raise cancelled


def _stop_quietly(stop: Callable[[], object]) -> None:
    with contextlib.suppress(Exception):
        stop()


def _stop_in_background(conn: aiosqlite.Connection) -> None:
    """Stop an aiosqlite connection whose event loop is gone, without touching that loop.

    aiosqlite's ``stop()`` queues "close the sqlite connection, then exit" for the
    worker thread; called from a thread without an event loop it attaches no
    future, so the worker never calls back into any loop.
    """
    stop = getattr(conn, "stop", None) or getattr(conn, "_stop_running", None)
    if callable(stop):
        threading.Thread(
            target=_stop_quietly, args=(stop,), name="aiocache-swr-sqlite-stop", daemon=True
        ).start()


def _daemonize(conn: aiosqlite.Connection, name: str) -> None:
    """Make the (not yet started) worker thread a daemon: an unclosed store must not hang exit."""
    thread = _worker_thread(conn)
    if thread is not None and thread.ident is None:
        thread.daemon = True
        thread.name = name


# --------------------------------------------------------------- argument checks


def _let_go() -> bool:
    """The running store operation's time limit has expired: its caller is let go."""
    limit = store_time_limit.get()
    return limit is not None and limit.expired()


def _readable(db: sqlite3.Connection, version: int) -> bool:
    """The file has a schema reads understand: a version from ``_READABLE_SINCE`` on,
    and its table (a file of version 1 may be another program's)."""
    if version < _READABLE_SINCE:
        return False
    found = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'swr_entries'"
    ).fetchone()
    return found is not None


# Per file: what stamps its rows, weakly (see SQLiteStore._purge_time).  Each store
# object on the file (each purges it, so each must know every clock) holds the set,
# and the entry goes with the last of them.
_stampers: weakref.WeakValueDictionary[Path, weakref.WeakSet[Any]]
_stampers = weakref.WeakValueDictionary()


def _check_path(path: object) -> Path:
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"SQLiteStore(path=...) expects a file path (str or os.PathLike[str]), got "
            f"{type(path).__name__}; pass e.g. 'cache.db' or pathlib.Path('cache.db')"
        )
    raw = os.fspath(path)
    if not isinstance(raw, str):
        raise TypeError(
            "SQLiteStore(path=...) expects a str path; decode the bytes path first "
            "(os.fsdecode(path))"
        )
    if not raw.strip():
        raise ValueError("SQLiteStore(path='') needs a file name, e.g. 'cache.db'")
    if raw == ":memory:" or raw.startswith("file:"):
        raise ValueError(
            f"SQLiteStore(path={raw!r}): give a plain file path; for memory-only caching "
            "use no store at all (store=None)"
        )
    resolved = Path(raw).expanduser().resolve()
    if resolved.is_dir():
        raise ValueError(
            f"SQLiteStore(path={raw!r}) is a directory; give a file inside it, "
            f"e.g. {str(resolved / 'cache.db')!r}"
        )
    return resolved


def _check_clock(clock: object, where: str) -> None:
    """``clock`` (``where``: how the caller names it, e.g. ``SWRCache: clock=``) is
    called once, here, so that a wrong one fails at construction, not in a call or
    a write batch (where every store on the file reads it, see ``_purge_time``)."""
    if not callable(clock):
        raise TypeError(f"{where} must be a zero-argument callable, got {clock!r}")
    try:
        reading = clock()
    except Exception as exc:
        raise TypeError(
            f"{where} must be callable with no arguments, like time.time; clock() raised {exc!r}"
        ) from exc
    if isinstance(reading, bool) or not isinstance(reading, int | float):
        raise TypeError(
            f"{where} must return seconds as a number, like time.time; clock() returned {reading!r}"
        )


def _check_max_entries(max_entries: object) -> int:
    if isinstance(max_entries, bool) or not isinstance(max_entries, int):
        raise TypeError(f"SQLiteStore(max_entries=...) expects an int, got {max_entries!r}")
    if max_entries < 1:
        raise ValueError(
            f"SQLiteStore(max_entries={max_entries}) must be at least 1 "
            "(it bounds the rows kept in the file)"
        )
    return max_entries


def _check_serializer(serializer: object) -> Serializer:
    if serializer is None:
        return PickleSerializer()
    if isinstance(serializer, type):
        raise TypeError(
            f"SQLiteStore(serializer={serializer.__name__}) expects an instance; "
            f"pass {serializer.__name__}()"
        )
    if not (
        callable(getattr(serializer, "dumps", None))
        and callable(getattr(serializer, "loads", None))
    ):
        raise TypeError(
            f"SQLiteStore(serializer=...) expects an object with dumps(obj) -> bytes and "
            f"loads(bytes) -> obj (e.g. JSONSerializer()), got {serializer!r}"
        )
    return cast(Serializer, serializer)


def _check_secret(secret: object) -> bytes | None:
    if secret is None:
        return None
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    if not isinstance(secret, (bytes, bytearray)):
        raise TypeError(
            f"SQLiteStore(secret=...) expects bytes or str (or None), got {type(secret).__name__}"
        )
    if not secret:
        raise ValueError(
            "SQLiteStore(secret=...) is empty; pass a long random key (e.g. "
            "secrets.token_bytes(32)) or None to store rows unsigned"
        )
    return bytes(secret)


def _check_busy_timeout(busy_timeout: object) -> float:
    if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, (int, float)):
        raise TypeError(
            f"SQLiteStore(busy_timeout=...) expects seconds as a number, got {busy_timeout!r}"
        )
    if isinstance(busy_timeout, int) and busy_timeout.bit_length() > 64:
        raise ValueError(
            "SQLiteStore(busy_timeout=...) is out of range; give a finite number of "
            "seconds >= 0 (default 5.0)"
        )
    if not math.isfinite(busy_timeout) or busy_timeout < 0:
        raise ValueError(
            f"SQLiteStore(busy_timeout={busy_timeout!r}) must be a finite number of seconds "
            ">= 0 (default 5.0)"
        )
    return float(busy_timeout)


_pack_double = struct.Struct("!d").pack
_pack_length = struct.Struct("!Q").pack


# ------------------------------------------------------------------------ store


class SQLiteStore:
    """A level-2 :class:`~aiocache_swr._store.Store` in one SQLite file (see the module doc).

    ``path``: the database file (created owner-only if missing).  ``max_entries``:
    rows kept; the least recently *written* beyond it are evicted.  ``serializer``:
    :class:`PickleSerializer` by default.  ``secret``: sign every row with
    HMAC-SHA256 over namespace, key, serialized value, created, expires and tags;
    a row that does not verify is dropped before it is deserialized (rows without
    a signature are rejected too).  Without a secret, signatures are not checked.
    ``busy_timeout``: seconds SQLite waits for another process's lock before an
    operation is retried.  ``clock``: wall-clock seconds of the rows put through
    it directly (``time.time`` by default), for purging expired rows.  Decorated
    functions stamp rows with their cache's clock (a fake clock in tests): a row
    is purged only once expired on the clock of every store object and function
    on the file that is still alive.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_entries: int = 100_000,
        serializer: Serializer | None = None,
        secret: bytes | str | None = None,
        busy_timeout: float = 5.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._path = _check_path(path)
        self._max_entries = _check_max_entries(max_entries)
        self._serializer = _check_serializer(serializer)
        self._secret = _check_secret(secret)
        self._busy_timeout = _check_busy_timeout(busy_timeout)
        if clock is not None:
            _check_clock(clock, "SQLiteStore(clock=...)")
        #: Wall clock of the rows put through it directly, for purging expired rows;
        #: may be replaced.
        self.clock: Callable[[], float] = clock if clock is not None else time.time
        # A clock that stamps no row: the default one of the store a cache makes for a
        # path, through which only its functions, each on its own clock, put rows.
        self._idle_clock: object = None
        # What stamps this file's rows (see _purge_time): this store, the other store
        # objects on the file and the functions using any of them.
        stampers = _stampers.get(self._path)
        if stampers is None:
            stampers = _stampers[self._path] = weakref.WeakSet()
        self._stampers = stampers
        self._stampers.add(self)
        self._clock_failed = False  # warned of a failing clock since the last good read
        self.stats = SQLiteStoreStats()
        self._dumps = self._serializer.dumps
        # PickleSerializer.loads is pickle.loads: call it directly (one frame less per row).
        self._loads = (
            pickle.loads if type(self._serializer) is PickleSerializer else self._serializer.loads
        )
        self._buffer = _Layer()
        self._inflight: _Layer | None = None
        self._state: _LoopState | None = None
        self._open_failure: tuple[float, StoreError] | None = None  # the writer's
        self._read_open_failure: tuple[float, StoreError] | None = None  # the reader's
        self._file_id: tuple[int, int] | None = None  # (device, inode) of the open file
        # ...and of the reader's (None: the path named no file when it opened), and
        # whether that file has a schema reads understand (if not, it reads as empty).
        self._reader_file_id: tuple[int, int] | None = None
        self._reader_schema = False
        # This store set the path's file aside, and no open has found a file since:
        # a missing file is then no surprise (not "deleted?").
        self._moved_away = False
        # The open file, found corrupt by a job, and how: set aside by the next open.
        self._corrupt: tuple[tuple[int, int], BaseException] | None = None
        # Held (on a worker thread) by a write batch's last check of its file and its
        # COMMIT, and by the setting aside of a file: a batch commits either before
        # the file is set aside (as any batch before it) or, finding it so, to the new
        # file; never to a file being set aside, unchecked.  Neither waits for
        # another process's lock under it (a WAL commit does not).
        self._file_lock = threading.Lock()
        self._hold = False  # see ``pending``
        self._settling: set[asyncio.Task[None]] = set()  # see ``_call``

    # ------------------------------------------------------------ properties

    @property
    def path(self) -> Path:
        """The database file, as a resolved absolute path."""
        return self._path

    @property
    def max_entries(self) -> int:
        return self._max_entries

    @property
    def serializer(self) -> Serializer:
        return self._serializer

    @property
    def busy_timeout(self) -> float:
        return self._busy_timeout

    @property
    def pending(self) -> bool:
        """True while writes or deletions wait to be flushed.

        After a failed flush, the deletions it kept for a retry do not count until
        something new is buffered (so a caller that flushes while ``pending`` does
        not spin against a broken file); the next flush still retries them.
        """
        if self._hold:
            return self._inflight is not None
        return bool(self._buffer) or self._inflight is not None

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self._path)!r})"

    def _settings(self) -> dict[str, object]:
        """What two store objects naming one file must agree on: each reads, purges and
        evicts the other's rows (a secret or serializer that differs: read as corrupt)."""
        return {
            "secret": self._secret,
            "serializer": type(self._serializer),
            "max_entries": self._max_entries,
        }

    def _stamped_by(self, stamper: object) -> None:
        """``stamper`` (a decorated function using this store) stamps rows of this file
        with the clock its ``_stamp_clock()`` gives: purge only what has expired on it
        too, while it lives."""
        self._stampers.add(stamper)

    def _stamp_clock(self) -> Callable[[], float] | None:
        """The clock of the rows put through this store directly."""
        clock = self.clock
        return None if clock is self._idle_clock else clock

    def _purge_time(self) -> float:
        """The time rows are purged by: the earliest on the clocks stamping this file's
        rows (a ``FakeClock`` function's rows are not purged by the real clock), of the
        functions and stores still alive, each clock read once; with none, the real
        clock.  A clock that fails or does not return seconds is logged (once, until
        one reads well again), and the batch then purges nothing."""
        clocks: dict[int, tuple[Callable[[], float], object]] = {}
        for stamper in list(self._stampers):
            clock = stamper._stamp_clock()
            if clock is not None and id(clock) not in clocks:
                clocks[id(clock)] = (clock, stamper)
        earliest = math.inf
        for clock, stamper in clocks.values():
            try:
                reading = clock()
                if isinstance(reading, bool) or not isinstance(reading, int | float):
                    raise TypeError(f"it returned {reading!r}, not seconds")
            except Exception as exc:
                if not self._clock_failed:
                    self._clock_failed = True
                    whose = (
                        "its own clock"
                        if stamper is self
                        else "the clock of another SQLiteStore object on this file"
                        if isinstance(stamper, SQLiteStore)
                        else f"the clock of {stamper!r}"
                    )
                    logger.warning(
                        "%r: %s, which stamps rows of this file, failed (%r); writes purge "
                        "no expired row until it reads again",
                        self,
                        whose,
                        exc,
                        exc_info=exc,
                    )
                return -math.inf
            earliest = min(earliest, reading)
        self._clock_failed = False
        return time.time() if earliest == math.inf else earliest

    # ----------------------------------------------------------------- writes

    def put(self, namespace: str, key: str, record: Record) -> None:
        """Serialize ``(record.value, record.version)`` now and buffer the row.

        Raises :class:`SerializationError` if it cannot, having buffered a
        deletion of the key's row instead: the older value must not be read
        back once the newer one has been computed."""
        try:
            blob = self._dumps((record.value, record.version))
            if type(blob) is not bytes:
                blob = bytes(blob)
            created = record.created
            if type(created) is not float:
                created = float(created)
            expires = record.expires
            if expires is not None and type(expires) is not float:
                expires = float(expires)
            tags = record.tags
            if type(tags) is not tuple:
                tags = tuple(tags)
            tags_json: str | None = None
            if tags:
                if not all(type(tag) is str for tag in tags):
                    raise TypeError(f"tags must be str, got {tags!r}")
                tags_json = json.dumps(tags, ensure_ascii=False)
            # What SQLite cannot hold would fail the whole batch the row joins.
            for text in (namespace, key, tags_json):
                if text is not None and not text.isascii():
                    text.encode("utf-8")
        except Exception as exc:
            # The key's older row must go too: it would be read back (once the
            # new value leaves memory, or in the next process) as if current.
            if _is_text(namespace) and _is_text(key):
                ops = self._buffer.ops
                ops.pop((namespace, key), None)  # popped: keep the buffer in write order
                ops[namespace, key] = None
                self._hold = False
            raise SerializationError(
                f"{self!r} cannot store the entry {key!r} of {namespace!r}: "
                f"{type(exc).__name__}: {exc} (serializer: {self._serializer!r}); "
                "its older row is deleted"
            ) from exc
        ops = self._buffer.ops
        k = (namespace, key)
        op = _Put(blob, created, expires, tags, tags_json)
        previous = ops.pop(k, _MISS)  # popped: keep the buffer in write order
        if previous is not _MISS and _dropped(previous) is None:
            op.after_delete = True
        ops[k] = op
        self._hold = False

    async def flush(self) -> None:
        """Write the buffer, one transaction per batch, until it is empty."""
        if not self._buffer and self._inflight is None:
            return
        st = self._loop_state()
        if st.flush_lock is None:
            st.flush_lock = anyio.Lock()
        async with st.flush_lock:
            while self._buffer:
                try:
                    await self._ready(st, st.writer)
                except StoreError:
                    self._drop_buffered_puts("the database cannot be opened")
                    self._hold = True
                    raise
                layer = self._buffer
                self._buffer = _Layer()
                self._inflight = layer  # reads see it until every batch of it is written
                try:
                    await self._write_layer(st, layer)
                except StoreError:
                    self._hold = True
                    raise
                finally:
                    self._inflight = None
            self._hold = False

    async def delete(self, namespace: str, keys: Collection[str]) -> None:
        """Remove these keys of ``namespace`` (after every write buffered before)."""
        if not _is_text(namespace):
            return  # no row has it
        ops = self._buffer.ops
        added = False
        for key in keys:
            if not key.isascii() and not _is_text(key):
                continue
            k = (namespace, key)
            ops.pop(k, None)
            ops[k] = None
            added = True
        if added:
            self._hold = False
            await self.flush()

    async def clear(self, namespace: str) -> None:
        """Remove every key of ``namespace`` (after every write buffered before)."""
        if not _is_text(namespace):
            return  # no row has it
        buffer = self._buffer
        for k in [k for k in buffer.ops if k[0] == namespace]:
            del buffer.ops[k]
        buffer.clears.add(namespace)
        self._hold = False
        await self.flush()

    async def delete_tags(self, tags: Iterable[str]) -> None:
        """Remove every row, of any namespace, carrying one of ``tags``."""
        wanted = {tag for tag in tags if _is_text(tag)}  # no row has the others
        if not wanted:
            return
        buffer = self._buffer
        for k, op in buffer.ops.items():  # values replaced, no key added or removed
            if op is not None and not wanted.isdisjoint(op.tags):
                # A deletion of the key, not nothing: the put superseded the key's
                # older row, which need not carry the tag.
                buffer.ops[k] = None
        buffer.tag_deletes |= wanted
        self._hold = False
        await self.flush()

    async def aclose(self) -> None:
        """Flush, then close the running loop's connections (the store stays usable)."""
        st = self._loop_state()
        try:
            await self.flush()
        finally:
            # Even with nothing open: a read may be opening them (under the open lock).
            if st.flush_lock is None:
                st.flush_lock = anyio.Lock()
            with anyio.CancelScope(shield=True):
                async with st.flush_lock:
                    await self._close_links(st, raise_errors=True)

    # ------------------------------------------------------------------ reads

    async def get_many(self, namespace: str, keys: Collection[str]) -> dict[str, Record]:
        """Return the records found for ``keys``; concurrent calls share one query."""
        if not _is_text(namespace):
            return {}  # no row has it
        if not all(map(str.isascii, keys)):  # O(1) each: the common case costs little
            keys = [key for key in keys if _is_text(key)]
        found: dict[str, Record] = {}
        buffer, inflight = self._buffer, self._inflight
        if buffer or inflight is not None:
            need: list[str] = []
            for key in keys:
                seen = self._lookup(namespace, key, _MISS, (buffer, inflight))
                if seen is _MISS:
                    need.append(key)
                elif seen is not None:
                    record = self._as_record(namespace, key, seen)
                    if record is not None:
                        found[key] = record
        else:
            need = list(keys)
        if not need:
            return found
        rows = await self._read(namespace, need)
        # Newest first: what is buffered now, and what was when the read began.
        # The writer may have written the latter meanwhile, after the read's
        # snapshot: its range deletions still hide the rows read.
        layers: list[_Layer] = []
        for layer in (self._buffer, self._inflight, buffer, inflight):
            if layer is not None and layer and layer not in layers:
                layers.append(layer)
        if not layers:
            if not found:
                return rows  # nothing buffered to look through: no second dictionary
            found.update(rows)
            return found
        for key in need:
            seen = self._lookup(namespace, key, rows.get(key), layers)
            if seen is not None and seen is not _MISS:
                record = self._as_record(namespace, key, seen)
                if record is not None:
                    found[key] = record
        return found

    def _lookup(
        self,
        namespace: str,
        key: str,
        below: Record | Literal[_Miss.MISS] | None,
        layers: Iterable[_Layer | None],
    ) -> _Put | Record | Literal[_Miss.MISS] | None:
        """What a read sees through ``layers`` (newest first): a put, a row, ``None``
        (deleted) or _MISS.

        ``below`` is what the database holds (``_MISS`` when not read yet).
        """
        k = (namespace, key)
        above: list[_Layer] = []
        result: _Put | Record | Literal[_Miss.MISS] | None = below
        for layer in layers:
            if layer is None:
                continue
            op = layer.ops.get(k, _MISS)
            if op is not _MISS:
                result = op
                break
            if namespace in layer.clears:
                return None
            if layer.tag_deletes:
                above.append(layer)
        if result is None or result is _MISS:
            return result
        for layer in above:
            if not layer.tag_deletes.isdisjoint(result.tags):
                return None
        return result

    def _as_record(self, namespace: str, key: str, seen: _Put | Record) -> Record | None:
        """A row read through the buffer; a buffered put that cannot be loaded is a miss.

        Such a put is replaced by a deletion, as a stored row that cannot be
        loaded is deleted when read (and it supersedes any older row anyway).
        """
        if isinstance(seen, Record):
            return seen
        try:
            value, version = self._loads(seen.blob)
        except Exception as exc:
            self.stats.rejected_rows += 1
            logger.warning(
                "%r: dropped the buffered entry %r of %r: it cannot be deserialized (%s: %s)",
                self,
                key,
                namespace,
                type(exc).__name__,
                exc,
            )
            # Buffered: the deletion replaces it.  Being written right now (by the
            # database thread, so left alone): the deletion follows it.
            self._buffer.ops[namespace, key] = None
            self._hold = False
            return None
        return Record(
            value=value, version=version, created=seen.created, tags=seen.tags, expires=seen.expires
        )

    async def _read(self, namespace: str, keys: list[str]) -> dict[str, Record]:
        st = self._loop_state()
        batch = st.read_batch
        if batch is None:
            batch = _ReadBatch()
            st.read_batch = batch
            batch.add(namespace, keys)
            await self._lead(st, batch)
        else:
            batch.add(namespace, keys)
            await batch.wait_event().wait()
            if not batch.complete:
                raise StoreError(f"{self!r}: read failed: {batch.error!r}") from batch.error
        return batch.found_for(namespace, keys)

    async def _lead(self, st: _LoopState, batch: _ReadBatch) -> None:
        """Gather callers into ``batch``, run it, and wake them -- even if cancelled."""
        cancelled: BaseException | None = None
        previous = st.reading
        if previous is not None:  # gather more callers while that read runs
            try:
                await previous.wait_event().wait()
            except anyio.get_cancelled_exc_class() as exc:
                cancelled = exc
        # else go at once: a read alone pays no extra loop turn, and callers
        # arriving meanwhile gather for the next batch.
        if st.read_batch is batch:
            st.read_batch = None
        if cancelled is not None and batch.event is not None and _let_go():
            # Let go by its time limit (as _call lets go a read hung on the worker):
            # a task of this store serves those who joined, on its own.
            self._serve_later(st, batch)
            raise cancelled
        handed_off = False
        try:
            if cancelled is None:
                await self._run_read(st, batch)
            elif batch.event is not None:  # others joined: serve them anyway
                with anyio.CancelScope(shield=True):
                    await self._run_read(st, batch)
        except anyio.get_cancelled_exc_class():
            if batch.event is not None and _let_go():
                # ...and so during its own read: the worker may still be reading.
                handed_off = True
                self._serve_later(st, batch)
            elif batch.error is None:
                batch.error = StoreError(f"{self!r}: read cancelled")
            raise
        except BaseException as exc:
            if batch.error is None:
                batch.error = exc
            raise
        finally:
            if batch.event is not None and not handed_off:
                batch.event.set()
        if cancelled is not None:
            raise cancelled

    def _serve_later(self, st: _LoopState, batch: _ReadBatch) -> None:
        """Answer the callers who joined ``batch`` from a task of this store, under no
        time limit (its cancellation, the loop ending, waits for the worker): once the
        read connection's worker has finished what it was given (``batch``'s job, if
        its leader had submitted it), from what that found, else by running it."""

        async def serve() -> None:
            try:
                conn = st.reader.conn
                if conn is not None:
                    await _settle(conn)
                if not batch.complete:
                    batch.error = None
                    await self._run_read(st, batch)
            except Exception as exc:  # theirs to raise (``_read``), not this task's
                if batch.error is None:
                    batch.error = exc
            finally:
                assert batch.event is not None
                batch.event.set()

        context = contextvars.copy_context()
        context.run(store_time_limit.set, None)
        task = context.run(asyncio.get_running_loop().create_task, serve())
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _run_read(self, st: _LoopState, batch: _ReadBatch) -> None:
        st.reading = batch  # before opening: readers arriving meanwhile gather behind it
        try:
            for attempt in (1, 2):
                await self._ready(st, st.reader)
                self.stats.read_batches += 1
                try:
                    await self._call(st, st.reader, self._read_sync, batch, abandonable=True)
                    return
                except _FileGone:
                    # The path names another file now (set aside as corrupt, replaced
                    # or deleted, by this process or another): the reader follows it.
                    batch.error = None
                    with anyio.CancelScope(shield=True):
                        await self._close_links(st, raise_errors=False, writer=False)
                    if attempt == 2:
                        raise StoreError(f"{self!r}: the database file keeps changing") from None
        except SchemaVersionError as exc:
            # A newer version's schema, found by the check before a read (another
            # process upgraded the file since the reader opened it): remembered as a
            # failed open of the reader is, and the reader closed.
            self._read_open_failure = (time.monotonic() + _OPEN_RETRY_AFTER, exc)
            with anyio.CancelScope(shield=True):
                await self._close_links(st, raise_errors=False, writer=False)
            raise
        except StoreError:
            raise
        except (sqlite3.Error, ValueError, OSError) as exc:  # OSError: from the file's check
            if self._found_corrupt(exc, self._reader_file_id):
                # Only the reader closes here (the writer may be waiting for a lock):
                # opening it again sets the file aside (and the writer follows).
                with anyio.CancelScope(shield=True):
                    await self._close_links(st, raise_errors=False, writer=False)
            raise StoreError(f"{self!r}: read failed: {exc}") from exc
        finally:
            if st.reading is batch:
                st.reading = None

    # -------------------------------------------------------- loops, opening

    def _loop_state(self) -> _LoopState:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise StoreError(
                f"{self!r} needs a running asyncio event loop (aiosqlite runs on asyncio only)"
            ) from None
        st = self._state
        if st is not None and st.loop is loop:
            return st
        if st is not None:
            self._abandon(st)
        st = self._state = _LoopState(loop)
        return st

    def _abandon(self, st: _LoopState) -> None:
        """Forget a previous loop's state; stop its connections without awaiting them."""
        st.read_batch = st.reading = None
        if self._inflight is not None:  # that loop died mid-flush: write it again
            self._requeue(self._inflight, keep_puts=True)
            self._inflight = None
        for link in (st.writer, st.reader):
            conn = link.forget()
            if conn is not None:
                _stop_in_background(conn)

    async def _ready(self, st: _LoopState, link: _Link) -> None:
        """Make sure ``link`` (``st.writer`` or ``st.reader``) is open.

        Each opens on its own: the reader never opens the writer, whose open
        makes the file and its schema and so may wait for another process's
        write lock, and it never closes the writer, nor makes a file or a schema
        (``_open_reader_sync``).  An open that fails is remembered for
        ``_OPEN_RETRY_AFTER`` seconds, each connection's apart: meanwhile the
        operations that need that connection fail at once.
        """
        if link.execute is not None:
            return
        reader = link is st.reader
        self._check_open_failure(reader=reader)
        with anyio.CancelScope(shield=True):  # one open serves every waiting caller
            async with link.open_lock():
                if link.execute is not None:
                    return
                self._check_open_failure(reader=reader)
                if not reader:
                    await self._open_writer(st)
                    return
                try:
                    await self._open(st.reader, self._open_reader_sync)
                except StoreError as exc:
                    self._read_open_failure = (time.monotonic() + _OPEN_RETRY_AFTER, exc)
                    raise

    async def _open_writer(self, st: _LoopState) -> None:
        """Open ``st.writer`` unless it is open; a failure is remembered for a while."""
        if st.writer.execute is not None:
            return
        try:
            await self._open(st.writer, self._open_sync)
        except StoreError as exc:
            self._open_failure = (time.monotonic() + _OPEN_RETRY_AFTER, exc)
            raise
        self.stats.opens += 1

    async def _reopen(self, st: _LoopState) -> None:
        """Close ``st``'s connections and open the file again (creating it).

        The reader is closed too, so that it reads the new file, not the old one.
        """
        with anyio.CancelScope(shield=True):
            await self._close_links(st, raise_errors=False)
        await self._ready(st, st.writer)

    async def _close_links(
        self, st: _LoopState, *, raise_errors: bool, writer: bool = True
    ) -> None:
        """Close both connections of ``st`` (the reader only, without ``writer``) and
        wait until their threads have exited.

        A job queued before the close (a read running meanwhile) still runs first,
        and so does an open under way of a connection it closes (then closed too: it
        may be of a deleted file).  Locks are taken writer first, always.
        """
        cancelled: BaseException | None = None  # asyncio's own Task.cancel: see _settle
        held: list[anyio.Lock] = []
        try:
            with anyio.CancelScope(shield=True):
                for link in (st.writer, st.reader) if writer else (st.reader,):
                    lock = link.open_lock()
                    while True:
                        try:
                            await lock.acquire()
                            break
                        except asyncio.CancelledError as exc:
                            cancelled = cancelled or exc
                    held.append(lock)
            await self._close_unlocked(st, raise_errors=raise_errors, writer=writer)
        except Exception as exc:
            if cancelled is None:
                raise
            # The cancellation wins over a failed close, as in _close_unlocked.
            logger.debug("%r: closing failed while cancelled: %r", self, exc)
        finally:
            for lock in reversed(held):
                lock.release()
        if cancelled is not None:
            raise cancelled

    async def _close_unlocked(
        self, st: _LoopState, *, raise_errors: bool, writer: bool = True
    ) -> None:
        failure: Exception | None = None
        interrupted: BaseException | None = None  # e.g. asyncio's own Task.cancel
        # Both forgotten first: a job arriving meanwhile opens new ones, left open.
        links = (st.writer, st.reader) if writer else (st.reader,)
        conns = [conn for conn in (link.forget() for link in links) if conn is not None]
        for conn in conns:  # each closed and waited for, whatever interrupts the other
            try:
                await conn.close()
            except Exception as exc:
                logger.debug("%r: closing a connection failed: %r", self, exc)
                failure = failure or exc
            except BaseException as exc:
                interrupted = interrupted or exc
            try:
                await _settle(conn, until_exit=True)  # the thread has reported and exited
            except BaseException as exc:
                interrupted = interrupted or exc
        if interrupted is not None:
            raise interrupted
        if failure is not None and raise_errors:
            raise StoreError(f"{self!r}: closing failed: {failure}") from failure

    def _check_open_failure(self, *, reader: bool = False) -> None:
        """Raise the open failure remembered for less than ``_OPEN_RETRY_AFTER``
        seconds: the writer's, or with ``reader`` the reader's.

        A new exception, not chained: its caller logs it, without the traceback of
        the open that failed each time.
        """
        now = time.monotonic()
        if reader:
            failure = self._read_open_failure
            if failure is not None and now >= failure[0]:
                failure = self._read_open_failure = None
        else:
            failure = self._open_failure
            if failure is not None and now >= failure[0]:
                failure = self._open_failure = None
        if failure is not None:
            exc = failure[1]
            raise type(exc)(f"{exc} (not retried before {_OPEN_RETRY_AFTER:g}s have passed)")

    async def _open(self, link: _Link, connect: Callable[[], sqlite3.Connection]) -> None:
        opened = _Opened()
        conn = aiosqlite.Connection(partial(self._connect_sync, connect, opened), 64)
        name = "aiocache-swr-sqlite" if link.role == "write" else "aiocache-swr-sqlite-read"
        _daemonize(conn, f"{name} {self._path.name}")
        try:
            await conn
        except BaseException as exc:
            # aiosqlite has queued a stop whose result goes to a future of this loop:
            # wait until the worker has delivered it and exited, or it may deliver to
            # a closed loop.  Then close what the connector made if the wait for it
            # was interrupted (the stop does not know about that connection).
            try:
                await _settle(conn, until_exit=True)
            finally:
                if opened.db is not None:
                    with contextlib.suppress(Exception):
                        opened.db.close()
            if isinstance(exc, StoreError):
                raise
            if isinstance(exc, (sqlite3.Error, OSError, ValueError)):
                raise StoreOpenError(f"{self!r}: cannot open the database: {exc}") from exc
            raise
        link.conn = conn
        link.db = opened.db
        link.execute = conn._execute

    async def _call(
        self,
        st: _LoopState,
        link: _Link,
        fn: Callable[..., Any],
        *args: Any,
        abandonable: bool = False,
    ) -> Any:
        """Run ``fn(db, *args)`` as one job on ``link``'s worker thread.

        ``abandonable``: the job leaves nothing to reconcile if its caller goes
        before it is done (a read), so the engine's time limit may let the caller go.
        """
        execute = link.execute
        if execute is None:  # closed by aclose() meanwhile: reopen
            await self._ready(st, link)
            execute = link.execute
            assert execute is not None
        conn = link.conn
        try:
            return await execute(fn, link.db, *args)
        except anyio.get_cancelled_exc_class():
            # The worker still runs ``fn``.  The loop must not close before the
            # worker has reported it, so someone waits for that.  A read abandoned
            # by the engine's time limit lets its caller go at once (a hung disk
            # must not hang it) and a task of this store waits: asyncio.run waits
            # for leftover tasks, and the cache's closing waits for the worker too.
            # Otherwise the caller itself waits: a write must know whether its
            # batch committed before it puts it back in the buffer (``_write``),
            # and after a cancellation from outside (e.g. the loop ending) a task
            # started now might not be waited for.
            if conn is not None:
                limit = store_time_limit.get() if abandonable else None
                if limit is not None and limit.expired():
                    task = asyncio.get_running_loop().create_task(_settle(conn))
                    self._settling.add(task)
                    task.add_done_callback(self._settling.discard)
                else:
                    await _settle(conn)
            raise

    # ----------------------------------------------------- worker-thread side

    def _connect_sync(
        self, connect: Callable[[], sqlite3.Connection], opened: _Opened
    ) -> sqlite3.Connection:
        db = connect()
        opened.db = db
        return db

    def _open_sync(self) -> sqlite3.Connection:
        """The writer's whole open sequence, retried with backoff while SQLite
        reports busy, and at once while the file is replaced during it."""
        delay = 0.01
        moved = False
        self._set_aside_corrupt_sync()
        for attempt in range(1, _OPEN_ATTEMPTS + 1):
            db: sqlite3.Connection | None = None
            file_id: tuple[int, int] | None = None
            try:
                file_id = self._create_file_sync()
                db = self._connect_to(self._path)
                self._prepare_sync(db, last_attempt=attempt == _OPEN_ATTEMPTS)
                # The path named file_id before the connect and still does, so that is
                # the file connected to.  Replaced in between (by another process that
                # set it aside, say), the connection may be on the old file while the
                # path names the new one: then open again.
                self._check_file_sync(file_id)
                self._file_id = file_id
                self._moved_away = False
                return db
            except SchemaVersionError:
                if db is not None:
                    db.close()
                raise
            except _FileGone:
                if db is not None:
                    db.close()
                if attempt < _OPEN_ATTEMPTS:
                    continue  # replaced or deleted during the open: open what it names now
                raise StoreOpenError(
                    f"{self!r}: cannot open the database: the file keeps being replaced"
                ) from None
            except (sqlite3.Error, OSError) as exc:
                if db is not None:
                    db.close()
                if _is_busy(exc) and attempt < _OPEN_ATTEMPTS:
                    logger.debug("%r: open attempt %d found the file busy: %s", self, attempt, exc)
                    time.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 0.5)
                    continue
                if _is_corrupt(exc) and not moved and attempt < _OPEN_ATTEMPTS:
                    if file_id is not None:  # the file connected to (see _move_aside_sync)
                        moved = self._move_aside_sync(exc, file_id)
                    continue
                raise StoreOpenError(f"{self!r}: cannot open the database: {exc}") from exc
        raise StoreOpenError(f"{self!r}: cannot open the database")  # pragma: no cover

    def _connect_to(self, database: str | Path, *, uri: bool = False) -> sqlite3.Connection:
        """A connection as both of a loop's are made (autocommit, the busy timeout)."""
        return sqlite3.connect(
            database,
            uri=uri,
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=256,
        )

    def _open_reader_sync(self) -> sqlite3.Connection:
        """Open the read connection on the file the path names (``mode=rw``).

        It never makes a file or a schema: that could wait for another process's
        write lock (``BEGIN IMMEDIATE``), and a read must not (nor close the
        writer, whose job may wait so).  A path that names no file (deleted) reads
        as empty: the connection is then an in-memory one, and each read checks
        whether a file has been made since.  So does a file without a schema
        (``user_version`` 0: emptied, or made by another process that has not
        written its schema yet), each read checking its version until it has
        one.  The next write makes the schema, or upgrades an older one that
        reads understood meanwhile (the writer finds out that the file changed).
        A file found corrupt, before or by this open, is set aside first (a
        rename).  A newer schema's file raises :class:`SchemaVersionError`.
        """
        set_aside = self._set_aside_corrupt_sync()
        moved = False
        delay = 0.01
        for attempt in range(1, _OPEN_ATTEMPTS + 1):
            db: sqlite3.Connection | None = None
            file_id: tuple[int, int] | None = None
            try:
                file_id = self._path_id_sync()
                db = self._connect_to(f"{self._path.as_uri()}?mode=rw", uri=True)
                version = db.execute("PRAGMA user_version").fetchone()[0]
                self._check_version(version)
                readable = _readable(db, version)
                self._check_file_sync(file_id)  # as in _open_sync
            except FileNotFoundError:  # from the first stat
                if (
                    set_aside
                    or moved
                    or self._moved_away
                    or (self._file_id is None and self._reader_file_id is None)
                ):
                    # Set aside by this open (logged), or never had: a new one.
                    logger.debug("%r: no database file yet; the first write makes it", self)
                else:
                    logger.warning(
                        "%r: the database file is missing (deleted?); reads find nothing "
                        "until a write makes a new one",
                        self,
                    )
                self._reader_file_id = None
                self._reader_schema = False
                return self._connect_to(":memory:")
            except SchemaVersionError:
                if db is not None:
                    db.close()
                raise
            except _FileGone:
                if db is not None:
                    db.close()
                if attempt < _OPEN_ATTEMPTS:
                    continue
                raise StoreOpenError(
                    f"{self!r}: cannot open the database to read: the file keeps being replaced"
                ) from None
            except sqlite3.Error as exc:
                if db is not None:
                    db.close()
                if attempt < _OPEN_ATTEMPTS:
                    if _is_busy(exc):
                        time.sleep(delay * (0.5 + random.random()))
                        delay = min(delay * 2, 0.5)
                        continue
                    if _is_corrupt(exc) and not moved and file_id is not None:
                        moved = self._move_aside_sync(exc, file_id)
                        continue
                    if _primary_code(exc) == _SQLITE_CANTOPEN:
                        continue  # deleted after the stat, say: see what the path names now
                raise StoreOpenError(f"{self!r}: cannot open the database to read: {exc}") from exc
            except BaseException:  # e.g. an OSError of the check: the folder replaced
                if db is not None:
                    db.close()
                raise
            self._reader_file_id = file_id
            self._moved_away = False
            self._reader_schema = readable
            if not self._reader_schema:
                logger.info(
                    "%r: the database file has no schema yet (user_version %s); reads "
                    "find nothing until a write makes it",
                    self,
                    version,
                )
            return db
        raise StoreOpenError(f"{self!r}: cannot open the database to read")  # pragma: no cover

    def _create_file_sync(self) -> tuple[int, int]:
        """Create the file (owner-only) and its directories unless they exist; return
        the (device, inode) of the file the path named then."""
        missing: list[Path] = []
        parent = self._path.parent
        while not parent.is_dir() and parent != parent.parent:
            missing.append(parent)
            parent = parent.parent
        for directory in reversed(missing):  # owner-only, every level (unlike os.makedirs)
            with contextlib.suppress(FileExistsError):
                os.mkdir(directory, 0o700)
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self._path, flags, 0o600)
        try:
            found = os.fstat(fd)
        finally:
            os.close(fd)
        return (found.st_dev, found.st_ino)

    def _prepare_sync(self, db: sqlite3.Connection, *, last_attempt: bool) -> None:
        db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        # The version first: a newer version's file is left untouched, journal mode
        # included (it may use another one).
        self._check_version(db.execute("PRAGMA user_version").fetchone()[0])
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            if not last_attempt:
                raise _NotWal(f"journal_mode stayed {mode!r}")
            logger.warning("%r: could not switch to WAL mode (it is %r); continuing", self, mode)
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA journal_size_limit = 67108864")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        self._check_version(version)
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            self._check_version(version)
            if version < SCHEMA_VERSION:
                for statement in (*_MIGRATE_V1, *_SCHEMA):  # no-ops on a new file
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise

    def _check_version(self, version: object) -> None:
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{self!r}: the file has schema version {version}, newer than this "
                f"aiocache-swr understands ({SCHEMA_VERSION}); upgrade aiocache-swr or "
                "point the store at another file"
            )

    def _found_corrupt(self, exc: BaseException, file_id: tuple[int, int] | None) -> bool:
        """``exc``, from a job on a connection open on ``file_id``, says the file is
        corrupt: remember it, so that the next open (or write) sets it aside."""
        if not _is_corrupt(exc) or file_id is None:
            return False
        self._corrupt = (file_id, exc)
        return True

    def _set_aside_corrupt_sync(self) -> bool:
        """Move aside the file a job found corrupt, unless it was replaced meanwhile
        (e.g. by another process that found it corrupt too); say whether it was.

        Under ``_file_lock``, from the check of the mark to the rename: a write batch
        that checks its file meanwhile waits, then finds the file gone.
        """
        with self._file_lock:
            corrupt = self._corrupt
            if corrupt is None:
                return False
            try:
                file_id, exc = corrupt
                return self._move_aside_locked(exc, file_id)
            finally:
                if self._corrupt is corrupt:  # not a mark set meanwhile, of another file
                    self._corrupt = None

    def _move_aside_sync(self, exc: BaseException, file_id: tuple[int, int]) -> bool:
        """:meth:`_move_aside_locked` under ``_file_lock``."""
        with self._file_lock:
            return self._move_aside_locked(exc, file_id)

    def _move_aside_locked(self, exc: BaseException, file_id: tuple[int, int]) -> bool:
        """Rename the corrupt database ``file_id`` (and its -wal/-shm) to
        ``<name>.corrupt-<stamp>``; say whether it was renamed.

        Only if the path still names that very file: what its bytes say proves
        nothing (a damaged header may still start as a database's does), and
        another process that found it corrupt too may have set it aside and made
        a new file, which must be kept.
        """
        path = self._path
        try:
            if self._path_id_sync() != file_id:
                return False  # replaced meanwhile: open what the path names now
        except FileNotFoundError:
            return False  # someone else moved it: just try again
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        target = path.with_name(f"{path.name}.corrupt-{stamp}")
        n = 0
        while target.exists():
            n += 1
            target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        try:
            os.rename(path, target)
        except FileNotFoundError:
            return False
        for suffix in ("-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.rename(f"{path}{suffix}", f"{target}{suffix}")
        self.stats.moved_aside += 1
        self._moved_away = True
        logger.error(
            "%r: %s is not a usable SQLite database (%s); moved it aside to %s "
            "and starting with an empty cache",
            self,
            path,
            exc,
            target,
        )
        return True

    def _sign(
        self,
        namespace: str,
        key: str,
        blob: bytes,
        created: float,
        expires: float | None,
        tags_json: str | None,
    ) -> bytes:
        assert self._secret is not None
        mac = hmac.new(self._secret, _MAC_DOMAIN, hashlib.sha256)
        for part in (
            namespace.encode("utf-8", "surrogatepass"),
            key.encode("utf-8", "surrogatepass"),
            blob,
            _pack_double(created),
            b"" if expires is None else _pack_double(expires),
            b"" if tags_json is None else tags_json.encode("utf-8", "surrogatepass"),
        ):
            mac.update(_pack_length(len(part)))
            mac.update(part)
        return mac.digest()

    def _path_id_sync(self) -> tuple[int, int]:
        """The (device, inode) of the file the path names now."""
        found = os.stat(self._path)
        return (found.st_dev, found.st_ino)

    def _check_file_sync(self, file_id: tuple[int, int] | None) -> None:
        """Raise :class:`_FileGone` unless the path still names the file ``file_id``:
        an open connection keeps using a file deleted or replaced under it.  Another
        ``OSError`` of the ``stat`` (a folder replaced by a file, or not searchable)
        is raised as it is: the job fails (a store error, counted)."""
        try:
            now = self._path_id_sync()
        except FileNotFoundError:
            raise _FileGone from None
        if now != file_id:
            raise _FileGone

    def _reader_has_rows_sync(self, db: sqlite3.Connection) -> bool:
        """Check the reader's file before a read: raise :class:`_FileGone` if the
        path names another file now (the reader opens it); say whether there is
        anything to read (not if the path named no file when the reader opened
        and still does not, or the file has no schema reads understand yet)."""
        file_id = self._reader_file_id
        if file_id is None:  # the path named no file
            try:
                self._path_id_sync()
            except FileNotFoundError:
                return False
            raise _FileGone  # made since
        self._check_file_sync(file_id)
        if self._reader_schema:
            return True
        version = db.execute("PRAGMA user_version").fetchone()[0]
        self._check_version(version)
        if not _readable(db, version):
            return False
        self._reader_schema = True
        return True

    def _read_sync(self, db: sqlite3.Connection, batch: _ReadBatch) -> None:
        if not self._reader_has_rows_sync(db):
            batch.found = {}
            batch.complete = True
            return
        try:
            selected: list[tuple[str, list[tuple[Any, ...]]]] = []  # (namespace, its rows)
            delay = 0.01
            for attempt in range(1, _READ_ATTEMPTS + 1):
                try:
                    selected = []
                    for namespace, wanted in batch.wanted.items():
                        # In index order: the B-tree pages are then visited in
                        # turn (a sixth faster than in set order, for far less
                        # than the sort costs).
                        keys = sorted(wanted)
                        rows: list[tuple[Any, ...]] = []
                        for start in range(0, len(keys), _CHUNK):
                            chunk = keys[start : start + _CHUNK]
                            cursor = db.execute(_select_sql(len(chunk)), (namespace, *chunk))
                            rows.extend(cursor.fetchall())
                            self.stats.read_queries += 1
                        selected.append((namespace, rows))
                    break
                except sqlite3.OperationalError as exc:
                    if not _is_busy(exc) or attempt == _READ_ATTEMPTS:
                        raise
                    time.sleep(delay)
                    delay *= 2
            batch.found = {
                namespace: self._decode_rows(db, namespace, rows) for namespace, rows in selected
            }
            batch.complete = True
        except BaseException as exc:
            batch.error = exc
            raise

    def _decode_rows(
        self, db: sqlite3.Connection, namespace: str, rows: list[tuple[Any, ...]]
    ) -> dict[str, Record]:
        """The records of the rows selected from ``namespace``, by key; reject (delete,
        log) each row that does not decode.

        One loop for the batch rather than a call per row, with the per-batch
        lookups hoisted and ``Record`` built positionally: for the common row
        (unsigned, untagged) this costs little more than the ``loads`` itself.
        """
        found: dict[str, Record] = {}
        loads = self._loads
        signed = self._secret is not None
        for key, blob, created, expires, tags_json, mac in rows:
            if not isinstance(blob, bytes):
                self._reject(db, namespace, key, blob, mac, "its value is not a blob")
                continue
            if signed and not self._verify(namespace, key, blob, created, expires, tags_json, mac):
                self._reject(
                    db,
                    namespace,
                    key,
                    blob,
                    mac,
                    "its signature does not verify (tampered with, or another secret)",
                )
                continue
            try:
                data = loads(blob)
                if not isinstance(data, (tuple, list)) or len(data) != 2:
                    raise ValueError(f"expected a (value, version) pair, got {type(data).__name__}")
                tags: tuple[str, ...] = ()
                if tags_json is not None:
                    tags = tuple(json.loads(tags_json))
                    if not all(type(tag) is str for tag in tags):
                        raise ValueError("tags are not strings")
                record = Record(
                    data[0],  # value
                    data[1],  # version
                    float(created),
                    tags,
                    None if expires is None else float(expires),
                )
            except Exception as exc:
                self._reject(
                    db,
                    namespace,
                    key,
                    blob,
                    mac,
                    f"it cannot be deserialized ({type(exc).__name__}: {exc})",
                )
            else:
                found[key] = record
        return found

    def _verify(
        self,
        namespace: str,
        key: str,
        blob: bytes,
        created: object,
        expires: object,
        tags_json: object,
        mac: object,
    ) -> bool:
        """Whether a row's signature matches (rows with a malformed column never do)."""
        try:
            expected = self._sign(
                namespace,
                key,
                blob,
                float(created),  # type: ignore[arg-type]
                None if expires is None else float(expires),  # type: ignore[arg-type]
                tags_json if isinstance(tags_json, str) else None,
            )
        except (TypeError, ValueError):
            expected = b""
        return (
            isinstance(mac, bytes)
            and (tags_json is None or isinstance(tags_json, str))
            and hmac.compare_digest(mac, expected)
        )

    def _reject(
        self,
        db: sqlite3.Connection,
        namespace: str,
        key: str,
        blob: object,
        mac: object,
        reason: str,
    ) -> None:
        self.stats.rejected_rows += 1
        logger.warning("%r: dropped the stored entry %r of %r: %s", self, key, namespace, reason)
        # Without waiting for the write lock (another process's, or this store's
        # writer's): this runs in a read job, whose callers (and every read queued
        # behind it) would wait up to busy_timeout.  Left in place, the row is
        # dropped again by a later read.
        try:
            db.execute("PRAGMA busy_timeout = 0")
            try:
                db.execute(_REJECT_SQL, (namespace, key, blob, mac))
            finally:
                db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        except sqlite3.Error as exc:
            logger.warning("%r: could not delete that entry: %s", self, exc)

    def _check_writer_file_sync(self) -> None:
        """Raise :class:`_FileGone` unless the writer's file is still the one to write
        to: the path names it, and no read has found it corrupt (it is set aside
        first).  Rows written to a file deleted, replaced or set aside vanish with it."""
        corrupt = self._corrupt
        if corrupt is not None and corrupt[0] == self._file_id:  # found so by a read
            raise _FileGone
        self._check_file_sync(self._file_id)

    def _write_sync(self, db: sqlite3.Connection, job: _WriteJob) -> None:
        # Checked before waiting for the write lock, which may take up to
        # busy_timeout, and again before committing: meanwhile a read of this
        # store, or another process, may have set the file aside or replaced it.
        self._check_writer_file_sync()
        batch = job.batch
        db.execute("BEGIN IMMEDIATE")
        try:
            for namespace in batch.clears:
                db.execute(_CLEAR_SQL, (namespace,))
            if batch.tag_deletes:
                tags = list(batch.tag_deletes)
                for start in range(0, len(tags), _CHUNK):
                    chunk = tags[start : start + _CHUNK]
                    db.execute(_delete_tags_sql(len(chunk)), chunk)
            # Every key of the batch is deleted, then its puts are inserted (see
            # "Bounds" in the module docstring: not INSERT OR REPLACE).
            keys_of: dict[str, list[str]] = {}
            for namespace, key in batch.ops:
                keys = keys_of.get(namespace)
                if keys is None:
                    keys = keys_of[namespace] = []
                keys.append(key)
            for namespace, keys in keys_of.items():
                for start in range(0, len(keys), _CHUNK):
                    chunk = keys[start : start + _CHUNK]
                    db.execute(_delete_keys_sql(len(chunk)), (namespace, *chunk))
            rows: list[tuple[Any, ...]] = []
            tag_rows: list[tuple[str, str, str]] = []
            secret = self._secret is not None
            for (namespace, key), op in batch.ops.items():
                if op is None:  # a deletion: done above
                    continue
                mac = (
                    self._sign(namespace, key, op.blob, op.created, op.expires, op.tags_json)
                    if secret
                    else None
                )
                rows.append((namespace, key, op.blob, op.created, op.expires, op.tags_json, mac))
                for tag in op.tags:
                    tag_rows.append((namespace, key, tag))
            if rows:
                # Each inserts one row: keys are unique in a batch, and were deleted
                # above (the delete trigger subtracted those that existed from the
                # count and removed their tags).
                db.executemany(_INSERT_SQL, rows)
                db.execute(_ADD_COUNT_SQL, (len(rows),))
            if tag_rows:
                db.executemany(_INSERT_TAG_SQL, tag_rows)
            purged = db.execute(_PURGE_SQL, (job.now, _PURGE_LIMIT)).rowcount
            count = db.execute(_COUNT_SQL).fetchone()[0]
            evicted = 0
            if count > self._max_entries:
                evicted = db.execute(_EVICT_SQL, (count - self._max_entries,)).rowcount
            with self._file_lock:  # not while a read sets the file aside
                self._check_writer_file_sync()  # else rolled back, written to the new file
                db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise
        job.rows = len(rows)
        job.purged = max(purged, 0)
        job.evicted = max(evicted, 0)
        job.committed = True

    # ------------------------------------------------------- loop-side writes

    async def _write_layer(self, st: _LoopState, layer: _Layer) -> None:
        """Write ``layer`` in batches of ``_MAX_BATCH`` operations, one transaction each.

        If a batch fails or is cancelled, it and every later one go back under
        the buffer together, with the layer's range deletions only if that first
        batch (which carries them) was not written: requeued separately, the
        range deletions would hide the later batches' newer puts.
        """
        items = list(layer.ops.items())
        start = 0
        while True:
            batch = _Layer()
            batch.ops = dict(items[start : start + _MAX_BATCH])
            if start == 0:  # range deletions first: every put in the layer is newer
                batch.clears, batch.tag_deletes = layer.clears, layer.tag_deletes
            job = _WriteJob(batch, self._purge_time())
            try:
                await self._write(st, job)
            except BaseException as exc:
                cancelled = isinstance(exc, anyio.get_cancelled_exc_class())
                unwritten = _Layer()
                after = start + _MAX_BATCH
                unwritten.ops = dict(items[after if job.committed else start :])
                if start == 0 and not job.committed:
                    unwritten.clears, unwritten.tag_deletes = layer.clears, layer.tag_deletes
                # A cancelled flush (e.g. abandoned by the cache's store_timeout)
                # keeps its puts for the next one, unless more than max_entries
                # would then wait: then they go, as a failed batch's do.  So the
                # buffer stays bounded while the file stays locked, whatever the
                # number of flushes abandoned meanwhile.
                buffer = self._buffer
                lost = sum(  # puts that would wait: not superseded or removed by newer ops
                    op is not None and k not in buffer.ops and not buffer.hides(k[0], op.tags)
                    for k, op in unwritten.ops.items()
                )
                keep = cancelled and lost + self._buffer.puts() <= self._max_entries
                self._requeue(unwritten, keep_puts=keep)
                if cancelled and not keep and lost:
                    self.stats.dropped_writes += lost
                    logger.warning(
                        "%r: a flush was abandoned while more than max_entries=%d entries "
                        "waited to be written; its %d entries stay in memory only",
                        self,
                        self._max_entries,
                        lost,
                    )
                rest = sum(op is not None for _, op in items[after:])
                if not cancelled and rest:
                    self.stats.dropped_writes += rest
                    logger.warning(
                        "%r: %d more buffered entries of that flush stay in memory only",
                        self,
                        rest,
                    )
                raise
            start += _MAX_BATCH
            if start >= len(items):
                return

    def _requeue(self, batch: _Layer, *, keep_puts: bool) -> None:
        """Put an unwritten batch back under the (newer) buffer.

        Without ``keep_puts`` its puts are dropped (see :class:`_Put`).
        """
        buffer = self._buffer
        ops: dict[tuple[str, str], _Put | None] = {}
        for k, op in batch.ops.items():
            newer = buffer.ops.get(k, _MISS)
            if newer is not _MISS:  # a newer operation on that key wins
                if newer is not None and _dropped(op) is None:
                    newer.after_delete = True  # ...and inherits the deletion it hides
                continue
            kept: _Put | Literal[_Miss.MISS] | None = op
            if op is not None and buffer.hides(k[0], op.tags):
                kept = None  # a newer range deletion removes it, and the older row it replaced
            elif op is not None and not keep_puts:
                kept = _dropped(op)  # dropped; a deletion it had replaced stays
            if kept is not _MISS:
                ops[k] = kept
        ops.update(buffer.ops)
        buffer.ops = ops
        buffer.clears |= batch.clears
        buffer.tag_deletes |= batch.tag_deletes

    def _drop_buffered_puts(self, reason: str) -> None:
        buffer = self._buffer
        dropped = buffer.puts()
        if not dropped:
            return
        buffer.ops = {
            k: kept for k, op in buffer.ops.items() if (kept := _dropped(op)) is not _MISS
        }
        self.stats.dropped_writes += dropped
        logger.warning(
            "%r: %s; %d buffered entries stay in memory only (deletions are kept)",
            self,
            reason,
            dropped,
        )

    async def _write(self, st: _LoopState, job: _WriteJob) -> None:
        """Write ``job``'s batch: retry while the file is busy, reopen a file deleted
        under the connection once.  Raises if it is not written (the caller puts
        back what was not); its dropped puts are counted and logged here."""
        batch = job.batch
        delay = 0.02
        attempt = 0
        reopened = False
        while True:
            attempt += 1
            try:
                await self._call(st, st.writer, self._write_sync, job)
            except anyio.get_cancelled_exc_class():
                if job.committed:  # the worker finished it before we stopped waiting
                    self._count_commit(job)
                raise
            except _FileGone:
                failure: BaseException = StoreError("the database file keeps disappearing")
                if not reopened:
                    logger.warning(
                        "%r: the database file was deleted or replaced; writing to a new one",
                        self,
                    )
                    reopened = True
                    try:
                        await self._reopen(st)
                    except Exception as exc:
                        failure = exc
                    else:
                        attempt -= 1  # reopening is not a failed attempt
                        continue
            # OSError: from the check of the file (its folder replaced, say).
            except (sqlite3.Error, ValueError, StoreError, OSError) as exc:
                if _is_busy(exc) and attempt < _WRITE_ATTEMPTS:
                    logger.debug("%r: write attempt %d found the file busy: %s", self, attempt, exc)
                    await anyio.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 1.0)
                    continue
                failure = exc
                if not reopened and self._found_corrupt(exc, self._file_id):
                    reopened = True  # opening it again sets the corrupt file aside
                    try:
                        await self._reopen(st)
                    except Exception as reopen_exc:
                        failure = reopen_exc
                    else:
                        attempt -= 1
                        continue
            else:
                self._count_commit(job)
                return
            puts = batch.puts()
            self.stats.write_failures += 1
            self.stats.dropped_writes += puts
            logger.warning(
                "%r: writing a batch failed after %d attempt(s): %s; its %d entries stay "
                "in memory only (its deletions are kept and retried by the next flush)",
                self,
                attempt,
                failure,
                puts,
            )
            raise StoreError(f"{self!r}: write failed: {failure}") from failure

    def _count_commit(self, job: _WriteJob) -> None:
        stats = self.stats
        stats.write_transactions += 1
        stats.rows_written += job.rows
        stats.purged += job.purged
        stats.evicted += job.evicted
