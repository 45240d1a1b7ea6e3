"""SQLiteStore: the level-2 store on aiosqlite (SPEC section 3).

No test sleeps to move time: expiry uses an injected clock, tasks are ordered
with anyio events and ``wait_all_tasks_blocked``, and the database thread is
held at a known point with ``threading.Event`` gates (their timeouts are only
safety nets against a hang).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import pickle
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from aiocache_swr._sqlite import (
    _CLEAR_SQL,
    _EVICT_SQL,
    _PURGE_SQL,
    SCHEMA_VERSION,
    JSONSerializer,
    SchemaVersionError,
    SerializationError,
    SQLiteStore,
    StoreError,
    StoreOpenError,
    _delete_tags_sql,
    _select_sql,
)
from aiocache_swr._store import Record, Store

from ._gate import GATE_TIMEOUT, GateSerializer

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parent.parent
NS = "tests.fn"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def rec(value: Any, *, version: Any = 1, created: float = 1_000.0, **kw: Any) -> Record:
    return Record(value=value, version=version, created=created, **kw)


@contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection to the store's file (autocommit), closed afterwards."""
    with closing(sqlite3.connect(path, isolation_level=None, timeout=10)) as db:
        yield db


def stored_keys(path: Path, namespace: str = NS) -> set[str]:
    with raw(path) as db:
        return {
            k
            for (k,) in db.execute("SELECT key FROM swr_entries WHERE namespace = ?", (namespace,))
        }


def exact_count(path: Path) -> int:
    """COUNT(*) of the entries, after checking that the row counter agrees."""
    with raw(path) as db:
        (counter,) = db.execute("SELECT value FROM swr_meta WHERE name = 'entries'").fetchone()
        (count,) = db.execute("SELECT count(*) FROM swr_entries").fetchone()
    assert counter == count
    return int(count)


def tag_rows(path: Path) -> set[tuple[str, str, str]]:
    with raw(path) as db:
        return set(db.execute("SELECT namespace, key, tag FROM swr_tags"))


def cancellable(
    call: Callable[[], Awaitable[object]],
) -> tuple[anyio.CancelScope, Callable[[], Awaitable[None]]]:
    """A task body awaiting ``call()``, and the scope that cancels it."""
    scope = anyio.CancelScope()

    async def body() -> None:
        with scope:
            await call()

    return scope, body


def join_store_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    """Join the store's worker/helper threads started since ``before``; return those alive."""
    left = []
    for thread in set(threading.enumerate()) - before:
        if thread.name.startswith("aiocache-swr-sqlite"):
            thread.join(GATE_TIMEOUT)
            if thread.is_alive():
                left.append(thread)
    return left


# Unpickling a Tracked records it, so a test can tell whether a blob was unpickled.
UNPICKLED: list[str] = []


def _rebuild_tracked(tag: str) -> Tracked:
    UNPICKLED.append(tag)
    return Tracked(tag)


class Tracked:
    def __init__(self, tag: str) -> None:
        self.tag = tag

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_rebuild_tracked, (self.tag,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tracked) and other.tag == self.tag

    def __hash__(self) -> int:
        return hash(self.tag)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "cache.db"


# ----------------------------------------------------------------- basics


async def test_round_trip(db_path: Path) -> None:
    """A flushed record comes back equal, also from a new store object on the same file."""
    store = SQLiteStore(db_path)
    assert isinstance(store, Store)
    record = rec({"a": [1, 2]}, version=("v", 3), tags=("t1", "t2"), expires=4e9)
    store.put(NS, "k", record)
    await store.flush()
    assert await store.get_many(NS, ["k", "absent"]) == {"k": record}
    await store.aclose()

    again = SQLiteStore(str(db_path))
    assert await again.get_many(NS, ["k"]) == {"k": record}
    assert await again.get_many(NS, []) == {}
    await again.aclose()


async def test_path_is_resolved_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``path`` is the resolved absolute file path, and missing parent directories are created."""
    monkeypatch.chdir(tmp_path)
    store = SQLiteStore("sub/dir/c.db")
    assert store.path == (tmp_path / "sub" / "dir" / "c.db").resolve()
    assert store.path.is_absolute()
    store.put(NS, "k", rec(1))
    await store.aclose()
    assert store.path.is_file()
    assert stat.S_IMODE(os.stat(tmp_path / "sub").st_mode) & 0o077 == 0


async def test_read_your_writes_before_flush(db_path: Path) -> None:
    """Buffered puts are read back before any write reaches the file, and stay pending."""
    store = SQLiteStore(db_path)
    store.put(NS, "a", rec(1))
    store.put(NS, "a", rec(2))  # the last put of a key wins
    assert store.pending
    assert await store.get_many(NS, ["a"]) == {"a": rec(2)}
    assert store.stats.write_transactions == 0
    assert store.stats.read_batches == 0  # answered from the buffer alone
    await store.flush()
    assert not store.pending
    assert stored_keys(db_path) == {"a"}
    await store.aclose()


async def test_reads_see_deletions_and_puts_being_written(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a batch is being committed, reads see its deletions and puts (read-your-writes)."""
    store = SQLiteStore(db_path)
    store.put(NS, "old", rec("old"))
    store.put("other", "x", rec("x"))
    await store.flush()

    entered, gate = threading.Event(), threading.Event()
    real = store._write_sync

    def gated(db: sqlite3.Connection, job: Any) -> None:
        entered.set()
        assert gate.wait(GATE_TIMEOUT)
        real(db, job)

    monkeypatch.setattr(store, "_write_sync", gated)
    store.put(NS, "new", rec("new"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(store.delete, NS, ["old"])
        tg.start_soon(store.clear, "other")
        await anyio.to_thread.run_sync(entered.wait, GATE_TIMEOUT)
        await wait_all_tasks_blocked()
        assert store.pending
        reads = store.stats.read_batches
        # Both answered from the batch being written: no database read is needed.
        assert await store.get_many(NS, ["old", "new"]) == {"new": rec("new")}
        assert await store.get_many("other", ["x"]) == {}
        assert store.stats.read_batches == reads
        gate.set()
    assert not store.pending
    assert stored_keys(db_path) == {"new"}
    assert stored_keys(db_path, "other") == set()
    await store.aclose()


async def test_batched_write_is_one_transaction(db_path: Path) -> None:
    """A flush writes the whole buffer in one transaction; concurrent flushes do not repeat it."""
    store = SQLiteStore(db_path)
    for i in range(300):
        store.put(NS, f"k{i}", rec(i))
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(store.flush)
    assert store.stats.write_transactions == 1
    assert store.stats.rows_written == 300
    assert len(stored_keys(db_path)) == 300
    await store.aclose()


async def test_cancelled_flush_still_completes_its_transaction(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelling a flush mid-transaction neither loses nor repeats the batch it started."""
    store = SQLiteStore(db_path)
    entered, gate = threading.Event(), threading.Event()
    real = store._write_sync

    def gated(db: sqlite3.Connection, job: Any) -> None:
        entered.set()
        assert gate.wait(GATE_TIMEOUT)
        real(db, job)

    monkeypatch.setattr(store, "_write_sync", gated)
    store.put(NS, "k", rec(1))
    scope, flush = cancellable(store.flush)
    async with anyio.create_task_group() as tg:
        tg.start_soon(flush)
        assert await anyio.to_thread.run_sync(entered.wait, GATE_TIMEOUT)
        scope.cancel()
        await wait_all_tasks_blocked()
        gate.set()
    assert scope.cancelled_caught
    assert not store.pending
    assert store.stats.write_transactions == 1
    assert stored_keys(db_path) == {"k"}
    await store.flush()  # nothing left to write
    assert store.stats.write_transactions == 1
    await store.aclose()


async def test_large_buffer_is_written_in_bounded_batches(db_path: Path) -> None:
    """A buffer above the batch size is written in a few batches, one transaction each."""
    store = SQLiteStore(db_path)
    for i in range(4_500):
        store.put(NS, f"k{i}", rec(i))
    await store.flush()
    assert store.stats.write_transactions == 3  # 2000 + 2000 + 500
    assert store.stats.rows_written == 4_500
    assert not store.pending
    await store.aclose()


async def test_namespaces_are_kept_apart(db_path: Path) -> None:
    """The same key in two namespaces is two entries; clearing one namespace leaves the other."""
    store = SQLiteStore(db_path)
    store.put("f1", "k", rec("one"))
    store.put("f2", "k", rec("two"))
    await store.flush()
    assert await store.get_many("f1", ["k"]) == {"k": rec("one")}
    assert await store.get_many("f2", ["k"]) == {"k": rec("two")}
    await store.clear("f1")
    assert await store.get_many("f1", ["k"]) == {}
    assert await store.get_many("f2", ["k"]) == {"k": rec("two")}
    await store.delete("f2", ["other"])
    assert await store.get_many("f2", ["k"]) == {"k": rec("two")}
    await store.aclose()


async def test_deletions_are_ordered_after_buffered_puts(db_path: Path) -> None:
    """delete/clear/delete_tags remove earlier buffered puts, never later ones, and reach disk."""
    store = SQLiteStore(db_path)
    store.put("n1", "a", rec(1, tags=("t1",)))
    store.put("n1", "b", rec(2, tags=("t2",)))
    store.put("n2", "c", rec(3, tags=("t1", "t3")))
    await store.delete_tags(["t1"])  # nothing was flushed before
    assert await store.get_many("n1", ["a", "b"]) == {"b": rec(2, tags=("t2",))}
    assert await store.get_many("n2", ["c"]) == {}

    store.put("n1", "a", rec(10, tags=("t1",)))  # newer than the tag deletion
    await store.delete("n1", ["b"])
    await store.clear("n2")
    store.put("n2", "c", rec(30))  # newer than the clear
    assert not await store.get_many("n1", ["b"])
    await store.flush()
    await store.delete_tags(["t3"])  # c no longer carries t3
    await store.aclose()

    again = SQLiteStore(db_path)
    assert await again.get_many("n1", ["a", "b"]) == {"a": rec(10, tags=("t1",))}
    assert await again.get_many("n2", ["c"]) == {"c": rec(30)}
    await again.delete_tags(["t1"])
    assert await again.get_many("n1", ["a"]) == {}
    await again.aclose()
    with raw(db_path) as db:
        assert db.execute("SELECT count(*) FROM swr_tags").fetchone() == (0,)


# ------------------------------------------------------------------ reads


async def test_concurrent_reads_are_coalesced(db_path: Path) -> None:
    """1,000 concurrent get_many calls for distinct keys take two round trips of few queries.

    The first caller goes at once (a read alone never waits a loop turn); everyone
    arriving while it runs shares the next one.
    """
    store = SQLiteStore(db_path)
    for i in range(1_000):
        store.put(NS, f"k{i}", rec(i))
    await store.flush()
    before = (store.stats.read_batches, store.stats.read_queries)
    results: dict[int, dict[str, Record]] = {}

    async def read(i: int) -> None:
        results[i] = await store.get_many(NS, [f"k{i}"])

    async with anyio.create_task_group() as tg:
        for i in range(1_000):
            tg.start_soon(read, i)
    assert all(results[i] == {f"k{i}": rec(i)} for i in range(1_000))
    assert store.stats.read_batches - before[0] == 2
    assert store.stats.read_queries - before[1] <= 3
    await store.aclose()


async def test_cancelled_reader_does_not_strand_others(db_path: Path) -> None:
    """A reader cancelled while its query runs does not strand the readers gathered behind it."""
    serializer = GateSerializer()
    store = SQLiteStore(db_path, serializer=serializer)
    store.put(NS, "a", rec("A"))
    store.put(NS, "b", rec("B"))
    await store.flush()
    serializer.hold = True
    results: dict[str, dict[str, Record]] = {}
    leader_scope = anyio.CancelScope()

    async def leader() -> None:
        with leader_scope:
            results["a"] = await store.get_many(NS, ["a"])

    async def follower() -> None:
        results["b"] = await store.get_many(NS, ["b"])

    async with anyio.create_task_group() as tg:
        tg.start_soon(leader)
        tg.start_soon(follower)
        assert await anyio.to_thread.run_sync(serializer.entered.wait, GATE_TIMEOUT)
        leader_scope.cancel()  # while the database thread is inside the shared query
        await wait_all_tasks_blocked()
        serializer.release.set()
    assert leader_scope.cancelled_caught
    assert results == {"b": {"b": rec("B")}}
    assert store.stats.read_batches == 2  # the leader's, then the follower's
    serializer.hold = False
    await store.aclose()


async def test_reader_cancelled_before_its_query_still_serves_joiners(db_path: Path) -> None:
    """A batch leader cancelled before submitting still runs the batch for those who joined."""
    store = SQLiteStore(db_path)
    store.put(NS, "a", rec("A"))
    store.put(NS, "b", rec("B"))
    await store.flush()
    results: dict[str, dict[str, Record]] = {}
    leader_scope = anyio.CancelScope()

    async def leader() -> None:
        with leader_scope:
            results["a"] = await store.get_many(NS, ["a"])

    async def follower() -> None:
        results["b"] = await store.get_many(NS, ["b"])

    async def canceller() -> None:
        leader_scope.cancel()  # runs while the leader waits for joiners

    async with anyio.create_task_group() as tg:
        tg.start_soon(leader)
        tg.start_soon(follower)
        tg.start_soon(canceller)
    assert leader_scope.cancelled_caught
    assert results == {"b": {"b": rec("B")}}
    await store.aclose()


# ----------------------------------------------------------------- bounds


async def test_max_entries_evicts_least_recently_written(db_path: Path) -> None:
    """The file keeps at most max_entries rows, evicting the least recently written."""
    store = SQLiteStore(db_path, max_entries=10)
    for batch in range(3):
        for i in range(10):
            store.put(NS, f"{batch}-{i}", rec(i))
        await store.flush()
    store.put(NS, "2-0", rec("rewritten"))  # rewriting makes it the most recent
    store.put(NS, "3-0", rec("new"))
    await store.flush()
    expected = {f"2-{i}" for i in range(10)} - {"2-1"} | {"3-0"}
    assert stored_keys(db_path) == expected
    assert store.stats.evicted == 21
    with raw(db_path) as db:
        assert db.execute("SELECT value FROM swr_meta WHERE name = 'entries'").fetchone() == (10,)
    await store.aclose()


async def test_a_cancelled_flush_drops_its_puts_when_more_than_max_entries_wait(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A flush cancelled while the file is locked (as store_timeout does) keeps its puts
    for the next flush only while at most max_entries would wait: beyond that they go,
    counted and logged, as a failed batch's do, so the buffer stays bounded."""
    monkeypatch.setattr("aiocache_swr._sqlite._WRITE_ATTEMPTS", 1_000)  # retry until cancelled
    store = SQLiteStore(db_path, max_entries=5, busy_timeout=0.01)
    await store.delete(NS, ["none"])  # the file exists
    for i in range(3):
        store.put(NS, f"old{i}", rec(i))
    with raw(db_path) as locker, caplog.at_level(logging.WARNING, logger="aiocache_swr"):
        locker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        for new in (2, 3):  # 3 + 2 puts may wait; 3 + 3 may not
            async with anyio.create_task_group() as tg:
                tg.start_soon(store.flush)
                await wait_all_tasks_blocked()  # the old puts are being written, in vain
                for i in range(new):
                    store.put(NS, f"new{new}-{i}", rec(i))
                tg.cancel_scope.cancel()
        locker.execute("ROLLBACK")
    # First cancel: 3 + 2 kept.  Second: those 5 + 3 newer: the 5 go.
    assert [key for _, key in store._buffer.ops] == ["new3-0", "new3-1", "new3-2"]
    assert store.stats.dropped_writes == 5
    assert any("max_entries=5" in r.message for r in caplog.records)
    await store.flush()
    assert stored_keys(db_path) == {"new3-0", "new3-1", "new3-2"}
    await store.aclose()


async def test_puts_a_newer_clear_removes_do_not_count_towards_the_bound(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Puts of an abandoned flush that a newer clear() removes would not wait as puts:
    they do not count towards max_entries, and the others are kept."""
    monkeypatch.setattr("aiocache_swr._sqlite._WRITE_ATTEMPTS", 1_000)  # retry until cancelled
    store = SQLiteStore(db_path, max_entries=2, busy_timeout=0.01)
    await store.delete(NS, ["none"])  # the file exists
    for key in ("k1", "k2"):
        store.put("a", key, rec(key))
    store.put(NS, "y", rec("y"))
    with raw(db_path) as locker:
        locker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.flush)
            await wait_all_tasks_blocked()
            tg.start_soon(store.clear, "a")  # buffered behind the flush
            await wait_all_tasks_blocked()
            store.put(NS, "x", rec("x"))
            tg.cancel_scope.cancel()
        locker.execute("ROLLBACK")
    assert store.stats.dropped_writes == 0  # only y and x wait: within 2
    await store.flush()
    assert stored_keys(db_path) == {"x", "y"}
    assert stored_keys(db_path, "a") == set()
    await store.aclose()


async def test_overwritten_key_becomes_the_most_recently_written(db_path: Path) -> None:
    """Rewriting a key makes it the newest row of the file: eviction removes the others first."""
    store = SQLiteStore(db_path, max_entries=3)
    for key in "abc":
        store.put(NS, key, rec(key))
    await store.flush()
    store.put(NS, "a", rec("a2"))
    await store.flush()
    await store.aclose()
    # Another store (as another process would): the order is the file's, not memory's.
    other = SQLiteStore(db_path, max_entries=3)
    for key, left in (("d", {"a", "c", "d"}), ("e", {"a", "d", "e"}), ("f", {"d", "e", "f"})):
        other.put(NS, key, rec(key))
        await other.flush()
        assert stored_keys(db_path) == left, key
    assert exact_count(db_path) == 3
    await other.aclose()


async def test_row_counter_stays_exact(db_path: Path) -> None:
    """The row counter equals COUNT(*) through inserts, overwrites, deletions, purges, evictions."""
    now = [1_000.0]
    store = SQLiteStore(db_path, max_entries=30, clock=lambda: now[0])
    other = SQLiteStore(db_path, max_entries=30, clock=lambda: now[0])  # a second writer
    for i in range(20):
        store.put("other", f"k{i}", rec(i))
    for i in range(20):
        store.put(NS, f"k{i}", rec(i, tags=(f"t{i % 3}",)))
    await store.flush()
    assert exact_count(db_path) == 30  # 40 inserted, other's k0-k9 evicted in the same batch
    for i in range(10):  # overwrites, with and without tags, and a new row
        other.put(NS, f"k{i}", rec(-i, tags=() if i % 2 else ("t9",), expires=1_500.0))
    other.put(NS, "new", rec(0))
    await other.flush()
    assert exact_count(db_path) == 30  # 30 + 1 new, other's k10 evicted
    await store.delete(NS, ["k0", "k1", "absent"])
    assert exact_count(db_path) == 28
    await other.delete_tags(["t9", "t1"])  # k2 k4 k6 k8; k10 k13 k16 k19 (k1-k9 retagged)
    assert exact_count(db_path) == 20
    await store.clear("other")
    assert exact_count(db_path) == 11
    now[0] = 2_000.0
    store.put(NS, "later", rec(1, created=2_000.0))
    await store.flush()  # purges the rows that expired at 1_500
    assert stored_keys(db_path) == {"k11", "k12", "k14", "k15", "k17", "k18", "new", "later"}
    assert exact_count(db_path) == 8
    await store.aclose()
    await other.aclose()


async def test_rows_replaced_the_old_way_keep_the_counter_exact(db_path: Path) -> None:
    """Rows rewritten the way this store used to (INSERT OR REPLACE under recursive
    triggers) and the way it does now share a file with an exact counter and tags."""
    store = SQLiteStore(db_path)
    store.put(NS, "a", rec(1, tags=("t",)))
    store.put(NS, "b", rec(2))
    await store.flush()
    with raw(db_path) as db:  # the earlier version's write of a batch of two rows
        db.execute("PRAGMA recursive_triggers = ON")
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT OR REPLACE INTO swr_entries"
            " (namespace, key, blob, created, expires, tags, mac, written)"
            " VALUES (?, ?, ?, 1000.0, NULL, NULL, NULL, 0)",
            [(NS, "a", pickle.dumps((10, 1))), (NS, "c", pickle.dumps((30, 1)))],
        )
        db.execute("UPDATE swr_meta SET value = value + 2 WHERE name = 'entries'")
        db.execute("COMMIT")
    assert exact_count(db_path) == 3
    assert tag_rows(db_path) == set()  # the replaced row's tag went with it
    store.put(NS, "c", rec(3, tags=("t",)))
    store.put(NS, "d", rec(4))
    await store.flush()
    assert exact_count(db_path) == 4
    assert tag_rows(db_path) == {(NS, "c", "t")}
    assert await store.get_many(NS, ["a", "c"]) == {"a": rec(10), "c": rec(3, tags=("t",))}
    await store.aclose()


async def test_deleting_a_tag_of_a_buffered_put_leaves_no_older_row(db_path: Path) -> None:
    """A buffered put supersedes its key's older row, which may lack the tag: deleting the
    put's tag leaves the key without a row (as in MemoryStore), not with the older one."""
    store = SQLiteStore(db_path)
    store.put(NS, "x", rec("old"))
    await store.flush()
    store.put(NS, "x", rec("new", tags=("t",)))
    await store.delete_tags(["t"])
    assert await store.get_many(NS, ["x"]) == {}
    assert stored_keys(db_path) == set()
    assert exact_count(db_path) == 0
    await store.aclose()


async def test_deleting_a_tag_of_a_put_whose_flush_is_cancelled_leaves_no_older_row(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A put whose batch goes back into the buffer under a newer deletion of its tag leaves
    its key without a row, not with the older row it had superseded."""
    store = SQLiteStore(db_path)
    store.put(NS, "x", rec("old"))
    await store.flush()
    entered, gate = threading.Event(), threading.Event()
    real = store._write_sync
    attempts: list[int] = []

    def busy_first(db: sqlite3.Connection, job: Any) -> None:
        attempts.append(1)
        if len(attempts) == 1:  # held, then not written: the file is busy
            entered.set()
            assert gate.wait(GATE_TIMEOUT)
            raise sqlite3.OperationalError("database is locked")
        real(db, job)

    monkeypatch.setattr(store, "_write_sync", busy_first)
    store.put(NS, "x", rec("new", tags=("t",)))
    scope, flush = cancellable(store.flush)
    async with anyio.create_task_group() as tg:
        tg.start_soon(flush)
        assert await anyio.to_thread.run_sync(entered.wait, GATE_TIMEOUT)
        tg.start_soon(store.delete_tags, ["t"])  # buffered; its flush waits for the first
        await wait_all_tasks_blocked()
        scope.cancel()  # the unwritten batch goes back, under the tag deletion
        await wait_all_tasks_blocked()
        gate.set()
    assert scope.cancelled_caught
    assert not store.pending
    assert await store.get_many(NS, ["x"]) == {}
    assert stored_keys(db_path) == set()
    assert exact_count(db_path) == 0
    await store.aclose()


async def test_replacing_a_tagged_row_leaves_exactly_its_new_tags(db_path: Path) -> None:
    """Rewriting a row replaces its tag rows: the old version's tags go, the new version's stay."""
    store = SQLiteStore(db_path)
    store.put(NS, "k", rec(1, tags=("old", "both")))
    store.put(NS, "other", rec(2, tags=("old",)))
    await store.flush()
    store.put(NS, "k", rec(3, tags=("both", "new")))
    await store.flush()
    assert tag_rows(db_path) == {(NS, "k", "both"), (NS, "k", "new"), (NS, "other", "old")}
    store.put(NS, "k", rec(4))
    await store.flush()
    assert tag_rows(db_path) == {(NS, "other", "old")}
    store.put(NS, "k", rec(5, tags=("new",)))
    await store.flush()
    assert tag_rows(db_path) == {(NS, "k", "new"), (NS, "other", "old")}
    await store.delete_tags(["old", "both"])  # k's old tags no longer reach it
    assert stored_keys(db_path) == {"k"}
    assert tag_rows(db_path) == {(NS, "k", "new")}
    assert await store.get_many(NS, ["k"]) == {"k": rec(5, tags=("new",))}
    assert exact_count(db_path) == 1
    await store.aclose()


async def test_expired_rows_are_purged(db_path: Path) -> None:
    """Rows whose expires is before the store clock are purged when the next batch is written."""
    now = [1_000.0]
    store = SQLiteStore(db_path, clock=lambda: now[0])
    store.put(NS, "soon", rec(1, created=900.0, expires=1_100.0))
    store.put(NS, "never", rec(2, created=900.0))
    store.put(NS, "later", rec(3, created=900.0, expires=1_200.0))
    await store.flush()
    assert stored_keys(db_path) == {"soon", "never", "later"}
    now[0] = 1_150.0
    store.put(NS, "fresh", rec(4, created=1_150.0, expires=2_000.0))
    await store.flush()
    assert stored_keys(db_path) == {"never", "later", "fresh"}
    assert store.stats.purged == 1
    await store.aclose()


async def test_maintenance_queries_use_indexes(db_path: Path) -> None:
    """Reads, purge, tag deletion search indexes; eviction reads rowid order; none sorts."""
    store = SQLiteStore(db_path)
    store.put(NS, "k", rec(1, tags=("t",), expires=5.0))
    await store.aclose()
    with raw(db_path) as db:
        # Eviction walks the table in rowid order (its own order: no sort, no index)
        # and stops after LIMIT rows.
        plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + _EVICT_SQL, (5,))]
        assert plan[-1] == "SCAN swr_entries", plan
        assert not any("TEMP B-TREE" in step for step in plan), plan
    queries: list[tuple[str, tuple[Any, ...]]] = [
        (_PURGE_SQL, (1.0, 10)),
        (_CLEAR_SQL, (NS,)),
        (_delete_tags_sql(2), ("a", "b")),
        (_select_sql(3), (NS, "a", "b", "c")),
    ]
    with raw(db_path) as db:
        for sql, params in queries:
            plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, params)]
            for step in plan:
                assert not step.startswith("SCAN") or "INDEX" in step, (sql, plan)
                assert "TEMP B-TREE" not in step, (sql, plan)


# ------------------------------------------------------------ files, modes


async def test_file_is_created_owner_only(db_path: Path) -> None:
    """The database and its -wal/-shm files are created readable by their owner only."""
    store = SQLiteStore(db_path)
    store.put(NS, "k", rec(1))
    await store.flush()
    made = [p for p in db_path.parent.iterdir() if p.name.startswith(db_path.name)]
    assert {p.name for p in made} >= {"cache.db", "cache.db-wal", "cache.db-shm"}
    for p in made:
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600, p
    with raw(db_path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    await store.aclose()


async def test_corrupt_file_is_moved_aside(db_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A file that is not a database is renamed <name>.corrupt-<stamp>, logged, and replaced."""
    garbage = b"this is not a sqlite database\n" * 200
    with open(db_path, "wb") as f:  # noqa: ASYNC230 - test setup
        f.write(garbage)
    store = SQLiteStore(db_path)
    with caplog.at_level(logging.ERROR, logger="aiocache_swr"):
        store.put(NS, "k", rec(1))
        await store.flush()
        assert await store.get_many(NS, ["k"]) == {"k": rec(1)}
    moved = list(db_path.parent.glob("cache.db.corrupt-*"))
    assert len(moved) == 1
    assert moved[0].read_bytes() == garbage
    assert store.stats.moved_aside == 1
    assert any(r.levelno == logging.ERROR and "moved it aside" in r.message for r in caplog.records)
    await store.aclose()


async def test_a_file_not_a_database_past_its_first_16_bytes_is_moved_aside(
    db_path: Path,
) -> None:
    """A database whose header is damaged after the "SQLite format 3" bytes (here its
    page size) is SQLITE_NOTADB: it is set aside like any other such file, and the
    store goes on with a new one (before, those bytes kept it in place for good)."""
    seed = SQLiteStore(db_path)
    seed.put(NS, "a", rec("A"))
    await seed.aclose()
    with open(db_path, "r+b") as f:  # noqa: ASYNC230 - test setup
        f.seek(16)
        f.write(b"\x00\x03")  # not a power of two
    store = SQLiteStore(db_path)
    store.put(NS, "b", rec("B"))
    await store.flush()
    assert store.stats.moved_aside == 1
    assert len(_set_aside(db_path)) == 1
    assert await store.get_many(NS, ["a", "b"]) == {"b": rec("B")}
    await store.aclose()


async def test_a_file_replaced_after_the_open_found_it_corrupt_is_kept(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the file the open found corrupt is set aside: if another process set it
    aside and made a new file meanwhile (between the error and the rename), the
    new file is opened, not renamed away with its rows."""
    theirs = db_path.with_name("theirs.db")
    other = SQLiteStore(theirs)
    other.put(NS, "theirs", rec("T"))
    await other.aclose()
    store = SQLiteStore(db_path)
    original = store._prepare_sync

    def prepare(db: sqlite3.Connection, **kw: Any) -> None:
        monkeypatch.setattr(store, "_prepare_sync", original)
        os.rename(db_path, db_path.with_name("aside.db"))  # what the other process does
        os.rename(theirs, db_path)
        exc = sqlite3.DatabaseError("database disk image is malformed")
        exc.sqlite_errorcode = 11  # type: ignore[attr-defined]
        raise exc

    monkeypatch.setattr(store, "_prepare_sync", prepare)
    store.put(NS, "mine", rec("M"))
    await store.flush()  # the writer's open finds the file corrupt
    assert await store.get_many(NS, ["theirs", "mine"]) == {
        "theirs": rec("T"),
        "mine": rec("M"),
    }
    assert store.stats.moved_aside == 0
    assert _set_aside(db_path) == []
    await store.aclose()


async def test_future_schema_version_is_a_clear_error(db_path: Path) -> None:
    """A file with a newer schema raises SchemaVersionError from operations; it is left alone."""
    with raw(db_path) as db:
        db.execute("PRAGMA user_version = 99")
    store = SQLiteStore(db_path)
    with pytest.raises(SchemaVersionError, match="schema version 99"):
        await store.get_many(NS, ["k"])
    with pytest.raises(SchemaVersionError, match="upgrade aiocache-swr"):
        await store.get_many(NS, ["k"])  # remembered, not reopened
    store.put(NS, "k", rec(1))
    with pytest.raises(StoreOpenError):
        await store.flush()
    assert not store.pending  # the put was dropped (memory only), not kept forever
    assert store.stats.dropped_writes == 1
    await store.aclose()
    with raw(db_path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (99,)


async def test_a_newer_schema_file_keeps_its_journal_mode(db_path: Path) -> None:
    """A file of a newer schema in rollback-journal mode (another version of the
    library made it so) is left untouched by a write's open: not switched to WAL
    (before, the open switched it, then read its version)."""
    with raw(db_path) as db:
        db.execute("PRAGMA journal_mode = DELETE")
        db.execute("PRAGMA user_version = 99")
    store = SQLiteStore(db_path)
    store.put(NS, "k", rec(1))
    with pytest.raises(SchemaVersionError):
        await store.flush()
    await store.aclose()
    with raw(db_path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        assert db.execute("PRAGMA user_version").fetchone() == (99,)
    assert sorted(p.name for p in db_path.parent.iterdir()) == [db_path.name]


# Version 1's schema and write statement, as that release created them (kept here
# verbatim: the module only knows how to upgrade from it).
V1_SCHEMA = (
    """CREATE TABLE swr_entries (
        namespace TEXT NOT NULL,
        key TEXT NOT NULL,
        blob BLOB NOT NULL,
        created REAL NOT NULL,
        expires REAL,
        tags TEXT,
        mac BLOB,
        written INTEGER NOT NULL,
        PRIMARY KEY (namespace, key)
    )""",
    "CREATE INDEX swr_entries_written ON swr_entries (written)",
    "CREATE INDEX swr_entries_expires ON swr_entries (expires) WHERE expires IS NOT NULL",
    """CREATE TABLE swr_tags (
        namespace TEXT NOT NULL,
        key TEXT NOT NULL,
        tag TEXT NOT NULL,
        PRIMARY KEY (namespace, key, tag)
    ) WITHOUT ROWID""",
    "CREATE INDEX swr_tags_tag ON swr_tags (tag)",
    """CREATE TABLE swr_meta (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID""",
    "INSERT INTO swr_meta (name, value) VALUES ('entries', 0)",
    """CREATE TRIGGER swr_entries_insert AFTER INSERT ON swr_entries BEGIN
        UPDATE swr_meta SET value = value + 1 WHERE name = 'entries';
    END""",
    """CREATE TRIGGER swr_entries_delete AFTER DELETE ON swr_entries BEGIN
        UPDATE swr_meta SET value = value - 1 WHERE name = 'entries';
        DELETE FROM swr_tags
         WHERE old.tags IS NOT NULL AND namespace = old.namespace AND key = old.key;
    END""",
    """CREATE TRIGGER swr_entries_retag AFTER UPDATE OF tags ON swr_entries
    WHEN old.tags IS NOT NULL BEGIN
        DELETE FROM swr_tags WHERE namespace = old.namespace AND key = old.key;
    END""",
    "PRAGMA user_version = 1",
)
V1_UPSERT = (
    "INSERT INTO swr_entries (namespace, key, blob, created, expires, tags, mac, written)"
    " VALUES (?, ?, ?, ?, NULL, ?, NULL, ?)"
    " ON CONFLICT (namespace, key) DO UPDATE SET blob = excluded.blob,"
    " created = excluded.created, expires = excluded.expires, tags = excluded.tags,"
    " mac = excluded.mac, written = excluded.written"
)


def write_v1_file(path: Path, rows: list[tuple[str, str, Any, tuple[str, ...]]]) -> None:
    """Create a version-1 file holding ``rows`` (namespace, key, value, tags), written in order."""
    with raw(path) as db:
        db.execute("PRAGMA journal_mode = WAL")
        for statement in V1_SCHEMA:
            db.execute(statement)
        for written, (namespace, key, value, tags) in enumerate(rows, 1):
            tags_json = json.dumps(tags) if tags else None
            blob = pickle.dumps((value, 1))
            db.execute(V1_UPSERT, (namespace, key, blob, 1_000.0, tags_json, written))
            db.execute("DELETE FROM swr_tags WHERE namespace = ? AND key = ?", (namespace, key))
            db.executemany(
                "INSERT INTO swr_tags (namespace, key, tag) VALUES (?, ?, ?)",
                [(namespace, key, tag) for tag in tags],
            )


async def test_version_1_file_is_upgraded_in_place(db_path: Path) -> None:
    """A version-1 file is read as it is, and upgraded by the first write: rows and count
    kept, its trigger and index dropped."""
    write_v1_file(
        db_path,
        [
            (NS, "a", "A0", ("t1",)),
            (NS, "b", "B", ()),
            ("other", "c", "C", ("t2", "t3")),
            (NS, "a", "A", ("t1", "t4")),  # version 1 updated "a" in place (same rowid)
        ],
    )
    assert exact_count(db_path) == 3
    store = SQLiteStore(db_path, max_entries=4)
    assert await store.get_many(NS, ["a", "b"]) == {
        "a": rec("A", tags=("t1", "t4")),
        "b": rec("B"),
    }
    with raw(db_path) as db:  # a read never writes
        assert db.execute("PRAGMA user_version").fetchone() == (1,)
    # Writes keep the count exact; the upgraded rows are evicted first, by rowid.
    store.put(NS, "b", rec("B2"))  # rewritten: now newer than "a" and "c"
    store.put(NS, "d", rec("D"))
    store.put(NS, "e", rec("E"))
    await store.flush()
    with raw(db_path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,) == (2,)
        names = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
    assert "swr_entries_insert" not in names
    assert "swr_entries_written" not in names
    assert {"swr_entries_delete", "swr_entries_expires", "swr_tags_tag"} <= names
    assert exact_count(db_path) == 4
    assert stored_keys(db_path) == {"b", "d", "e"}  # "a" evicted
    assert stored_keys(db_path, "other") == {"c"}
    assert tag_rows(db_path) == {("other", "c", "t2"), ("other", "c", "t3")}
    await store.delete_tags(["t3"])
    assert exact_count(db_path) == 3
    assert tag_rows(db_path) == set()
    await store.aclose()


async def test_unopenable_path_is_a_clear_error(tmp_path: Path) -> None:
    """A path that cannot be created raises StoreOpenError naming the file."""
    (tmp_path / "plain-file").write_text("x")
    store = SQLiteStore(tmp_path / "plain-file" / "cache.db")
    with pytest.raises(StoreOpenError, match="cannot open"):
        await store.get_many(NS, ["k"])
    await store.aclose()


# ------------------------------------------------------- signing, decoding


@pytest.mark.parametrize(
    "tamper",
    [
        "UPDATE swr_entries SET blob = :evil WHERE key = 'bad'",
        "UPDATE swr_entries SET mac = NULL, blob = :evil WHERE key = 'bad'",
        "UPDATE swr_entries SET expires = 9e99 WHERE key = 'bad'",
    ],
    ids=["blob", "unsigned", "expires"],
)
async def test_tampered_row_is_rejected_before_unpickling(
    db_path: Path, caplog: pytest.LogCaptureFixture, tamper: str
) -> None:
    """A row whose signature fails is absent, removed and logged, and is never unpickled."""
    store = SQLiteStore(db_path, secret="s3cret")
    store.put(NS, "good", rec(Tracked("good")))
    store.put(NS, "bad", rec(Tracked("bad")))
    await store.flush()
    with raw(db_path) as db:
        db.execute(tamper, {"evil": pickle.dumps((Tracked("evil"), 1))})
    UNPICKLED.clear()
    with caplog.at_level(logging.WARNING, logger="aiocache_swr"):
        got = await store.get_many(NS, ["good", "bad"])
    assert got == {"good": rec(Tracked("good"))}
    assert UNPICKLED == ["good"]  # the detector works, and nothing else was unpickled
    assert stored_keys(db_path) == {"good"}
    assert store.stats.rejected_rows == 1
    assert any("signature" in r.message for r in caplog.records if r.levelno == logging.WARNING)
    await store.aclose()


async def test_wrong_secret_reads_as_absent(db_path: Path) -> None:
    """Rows signed with another secret are absent; without a secret signatures are not checked."""
    writer = SQLiteStore(db_path, secret=b"one")
    writer.put(NS, "k", rec(1))
    await writer.aclose()
    unsigned = SQLiteStore(db_path)
    assert await unsigned.get_many(NS, ["k"]) == {"k": rec(1)}
    await unsigned.aclose()
    other = SQLiteStore(db_path, secret=b"two")
    assert await other.get_many(NS, ["k"]) == {}
    assert other.stats.rejected_rows == 1
    await other.aclose()


async def test_undecodable_row_is_a_miss_and_removed(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A row that cannot be deserialized is absent, deleted and logged."""
    store = SQLiteStore(db_path)
    store.put(NS, "k", rec(1))
    store.put(NS, "ok", rec(2))
    await store.flush()
    with raw(db_path) as db:
        db.execute("UPDATE swr_entries SET blob = x'80ff00' WHERE key = 'k'")
    with caplog.at_level(logging.WARNING, logger="aiocache_swr"):
        assert await store.get_many(NS, ["k", "ok"]) == {"ok": rec(2)}
    assert stored_keys(db_path) == {"ok"}
    assert any("cannot be deserialized" in r.message for r in caplog.records)
    await store.aclose()


async def test_a_bad_row_is_dropped_without_waiting_for_another_writer(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A read never waits for another connection's write lock to delete a bad row.

    The row is then a miss and stays in the file, and a later read deletes it.
    (Before, the deletion waited for the lock up to busy_timeout, an hour here,
    holding the whole read batch.)
    """
    store = SQLiteStore(db_path, busy_timeout=3600)
    store.put(NS, "k", rec(1))
    store.put(NS, "ok", rec(2))
    await store.flush()
    with raw(db_path) as db:
        db.execute("UPDATE swr_entries SET blob = x'80ff00' WHERE key = 'k'")
    with raw(db_path) as writer, caplog.at_level(logging.WARNING, logger="aiocache_swr"):
        writer.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        assert await store.get_many(NS, ["k", "ok"]) == {"ok": rec(2)}
        writer.execute("ROLLBACK")
    assert any("could not delete that entry" in r.message for r in caplog.records)
    assert stored_keys(db_path) == {"k", "ok"}
    assert await store.get_many(NS, ["k", "ok"]) == {"ok": rec(2)}
    assert stored_keys(db_path) == {"ok"}
    assert store.stats.rejected_rows == 2
    await store.aclose()


@contextmanager
def another_writer_holds_the_lock(path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holds the file's write lock (``BEGIN IMMEDIATE``) until the
    test lets it go, or a safety net does: a test stuck behind it (a read shielded
    behind a flush, say) then fails instead of hanging."""
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")
    safety_net = threading.Timer(GATE_TIMEOUT, writer.execute, ("ROLLBACK",))
    safety_net.start()
    try:
        yield writer
    finally:
        safety_net.cancel()
        safety_net.join()
        if writer.in_transaction:
            writer.execute("ROLLBACK")
        writer.close()


async def test_a_read_does_not_queue_behind_a_write_waiting_for_another_writer(
    db_path: Path,
) -> None:
    """Reads have a connection of their own: a flush waiting for another connection's write
    lock (up to busy_timeout, an hour here) does not hold a read of the rows the file has.

    (Before, both shared one worker thread, and the read waited behind the flush.)
    """
    store = SQLiteStore(db_path, busy_timeout=3600)
    store.put(NS, "old", rec("OLD"))
    await store.flush()
    with another_writer_holds_the_lock(db_path) as writer:
        async with anyio.create_task_group() as tg:
            store.put(NS, "new", rec("NEW"))
            tg.start_soon(store.flush)
            await wait_all_tasks_blocked()  # its batch waits for the lock, on its thread
            assert store._inflight is not None
            found = await store.get_many(NS, ["old", "new"])
            assert writer.in_transaction, "the read waited until the lock was let go"
            assert found == {"old": rec("OLD"), "new": rec("NEW")}  # "new" from the flush
            assert store._inflight is not None  # ...which still waits
            writer.execute("ROLLBACK")
    assert stored_keys(db_path) == {"old", "new"}
    await store.aclose()


async def test_a_range_deletion_written_during_a_read_hides_the_rows_it_read(
    db_path: Path,
) -> None:
    """A tag deletion buffered when a read began, and written (on the other connection)
    while the read was decoding rows it found before that write, still hides those rows."""
    serializer = GateSerializer()
    store = SQLiteStore(db_path, serializer=serializer)
    store.put(NS, "k", rec("K", tags=("t",)))
    store.put(NS, "other", rec("O"))
    await store.flush()
    assert await store.get_many(NS, ["k"]) == {"k": rec("K", tags=("t",))}  # both open
    deleted = anyio.Event()
    found: dict[str, Record] = {}

    async def delete() -> None:
        await store.delete_tags(["t"])
        deleted.set()

    async def read() -> None:
        found.update(await store.get_many(NS, ["k", "other"]))

    async with anyio.create_task_group() as tg:
        async with await _holding_flush(store):
            tg.start_soon(delete)
            await wait_all_tasks_blocked()  # buffered; its flush waits for the lock
            serializer.hold = True
            tg.start_soon(read)
            assert await anyio.to_thread.run_sync(serializer.entered.wait, GATE_TIMEOUT)
        # The read has its rows and is held decoding them; the deletion is written now.
        with anyio.fail_after(GATE_TIMEOUT):  # safety net, not a timing assertion
            await deleted.wait()
        assert stored_keys(db_path) == {"other"}
        serializer.release.set()
    assert found == {"other": rec("O")}
    serializer.hold = False
    await store.aclose()


async def test_a_read_after_the_file_was_replaced_reads_the_new_file(db_path: Path) -> None:
    """When a write finds the file deleted and opens a new one, reads follow it there
    (they do not go on reading the deleted file through a connection of their own)."""
    store = SQLiteStore(db_path)
    store.put(NS, "a", rec("A"))
    await store.flush()
    assert await store.get_many(NS, ["a"]) == {"a": rec("A")}  # the read connection is open
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{db_path}{suffix}")
    store.put(NS, "b", rec("B"))
    await store.flush()  # finds the file gone: writes a new one
    assert stored_keys(db_path) == {"b"}
    assert await store.get_many(NS, ["a", "b"]) == {"b": rec("B")}
    await store.aclose()


async def test_a_read_that_finds_the_file_deleted_is_a_miss_and_the_next_write_makes_it(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The file deleted before the read connection was first opened: reads are misses
    (opened once, logged once), make no file (a process that cannot write there, or
    only reads, does not try to on every read), and the next write makes it."""
    store = SQLiteStore(db_path)
    store.put(NS, "a", rec("A"))
    await store.flush()  # the write connection is open, the read one not yet
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{db_path}{suffix}")
    opens = _count_calls(store, "_open_reader_sync", monkeypatch)
    with caplog.at_level(logging.DEBUG, logger="aiocache_swr"):
        for _ in range(3):
            assert await store.get_many(NS, ["a"]) == {}
    assert db_path.name not in os.listdir(db_path.parent)
    assert opens == [1]
    assert [r.levelno for r in caplog.records if r.name == "aiocache_swr"] == [logging.WARNING]
    store.put(NS, "b", rec("B"))
    await store.flush()
    assert store.stats.dropped_writes == store.stats.write_failures == 0
    assert stored_keys(db_path) == {"b"}
    assert await store.get_many(NS, ["a", "b"]) == {"b": rec("B")}
    await store.aclose()


@pytest.mark.parametrize("last_step", ["_prepare_sync", "_check_version"], ids=["writer", "reader"])
async def test_a_file_replaced_while_a_connection_opens_is_the_one_it_uses(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, last_step: str
) -> None:
    """A file replaced by another process while a connection opens (after its connect,
    before the check of which file the path names): the connection is opened again,
    on the new file, so writes, invalidations and reads go there (before, it stayed
    on the old file, recorded as the new one, so no later check ever noticed)."""
    seed = SQLiteStore(db_path)
    seed.put(NS, "k", rec("OLD"))
    await seed.aclose()
    theirs = db_path.with_name("theirs.db")
    other = SQLiteStore(theirs)
    other.put(NS, "k", rec("THEIRS"))
    await other.aclose()
    store = SQLiteStore(db_path)
    reader = last_step == "_check_version"  # the reader's last step before that check
    if reader:
        await store.delete(NS, ["unknown"])  # the writer is open on the old file
    original = getattr(store, last_step)

    def step(*args: Any, **kw: Any) -> None:
        original(*args, **kw)
        monkeypatch.setattr(store, last_step, original)
        for suffix in ("", "-wal", "-shm"):  # what another process setting it aside does
            with contextlib.suppress(FileNotFoundError):
                os.rename(f"{db_path}{suffix}", f"{db_path}.aside{suffix}")
        os.rename(theirs, db_path)

    monkeypatch.setattr(store, last_step, step)
    if reader:
        assert await store.get_many(NS, ["k"]) == {"k": rec("THEIRS")}
    await store.delete(NS, ["k"])
    store.put(NS, "mine", rec("M"))
    await store.flush()
    assert stored_keys(db_path) == {"mine"}
    assert await store.get_many(NS, ["k", "mine"]) == {"mine": rec("M")}
    assert store.stats.write_failures == 0
    await store.aclose()


async def test_a_read_of_a_file_replaced_by_an_empty_one_is_a_miss_and_the_write_makes_its_schema(
    db_path: Path,
) -> None:
    """A file replaced by an empty one (no schema: emptied, or made by another process
    that has not written its schema yet) is read as empty, not failed on with "no
    such table" by every read until this process writes; the reader leaves it as it
    is (making the schema would wait for another process's write lock), and the
    next write makes the schema."""
    store = await _store_with_rows(db_path, n=2)
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{db_path}{suffix}")
    with open(db_path, "wb"):  # noqa: ASYNC230 - test setup
        pass
    for _ in range(2):
        assert await store.get_many(NS, ["k0"]) == {}
    assert os.stat(db_path).st_size == 0
    store.put(NS, "new", rec("N"))
    await store.flush()
    assert stored_keys(db_path) == {"new"}
    assert await store.get_many(NS, ["k0", "new"]) == {"new": rec("N")}
    await store.aclose()


def _count_calls(store: SQLiteStore, name: str, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A one-item list counting the calls of the store's method ``name`` from now on."""
    calls = [0]
    original = getattr(store, name)

    def counted(*args: Any, **kw: Any) -> Any:
        calls[0] += 1
        return original(*args, **kw)

    monkeypatch.setattr(store, name, counted)
    return calls


async def test_a_read_of_a_file_without_the_schema_does_not_wait_for_another_writer(
    db_path: Path,
) -> None:
    """A read that finds a file without the schema (another process's new file, whose
    schema that process is writing under its write lock) is a miss at once: before,
    the reader made the schema itself and waited for that lock (an hour here), in
    the shielded open, so that no store_timeout let its caller go."""
    store = SQLiteStore(db_path, busy_timeout=3600)
    store.put(NS, "k", rec("V"))
    await store.flush()  # the writer is open, the reader not yet
    theirs = db_path.with_name("theirs.db")
    with raw(theirs) as db:
        db.execute("PRAGMA journal_mode = WAL")
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{db_path}{suffix}")
    os.rename(theirs, db_path)
    with another_writer_holds_the_lock(db_path) as writer:
        assert await store.get_many(NS, ["k"]) == {}
        assert writer.in_transaction, "the read waited for another process's write lock"
        writer.execute("ROLLBACK")
    store.put(NS, "k", rec("W"))
    await store.flush()
    assert await store.get_many(NS, ["k"]) == {"k": rec("W")}  # the schema is there now
    assert store.stats.write_failures == 0
    await store.aclose()


async def test_a_reader_open_that_fails_is_remembered_not_retried_every_read(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read connection that cannot open the file (here replaced by a newer
    version's) fails every read for _OPEN_RETRY_AFTER seconds without opening it
    again, as the writer's failed open does; before, every read batch opened it
    again, logging each time."""
    store = SQLiteStore(db_path)
    store.put(NS, "k", rec("V"))
    await store.flush()
    assert await store.get_many(NS, ["k"]) == {"k": rec("V")}  # both open
    theirs = db_path.with_name("theirs.db")
    with raw(theirs) as db:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("CREATE TABLE their_v3 (x)")
        db.execute("PRAGMA user_version = 3")
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{db_path}{suffix}")
    os.rename(theirs, db_path)
    opens = _count_calls(store, "_open_reader_sync", monkeypatch)
    with pytest.raises(SchemaVersionError, match="schema version 3"):
        await store.get_many(NS, ["k"])
    for _ in range(3):
        with pytest.raises(SchemaVersionError, match="not retried before"):
            await store.get_many(NS, ["k"])
    assert opens == [1]
    await store.aclose()
    with raw(db_path) as db:  # left untouched
        assert db.execute("PRAGMA user_version").fetchone() == (3,)
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == [("their_v3",)]
    assert store.stats.moved_aside == 0


async def test_a_name_sqlite_cannot_hold_is_refused_or_skipped_never_failing_a_batch(
    db_path: Path,
) -> None:
    """A namespace, key or tag with a lone surrogate cannot be bound by SQLite, and
    would fail every statement (and batch) it joins: a put refuses it
    (SerializationError, nothing buffered), reads and deletions skip it (no row has
    it), and the other writes and reads go on."""
    bad = "x\udcff"
    store = SQLiteStore(db_path)
    store.put(NS, "keep", rec("K", tags=("t",)))
    for namespace, key, tags in ((bad, "k", ()), (NS, bad, ()), (NS, "k", (bad,))):
        with pytest.raises(SerializationError, match="surrogates not allowed"):
            store.put(namespace, key, rec("V", tags=tags))
    store.put(NS, "other", rec("O"))
    await store.flush()
    assert stored_keys(db_path) == {"keep", "other"}
    assert await store.get_many(NS, [bad, "keep"]) == {"keep": rec("K", tags=("t",))}
    assert await store.get_many(bad, ["keep"]) == {}
    await store.delete(NS, [bad])
    await store.delete(bad, ["keep"])
    await store.clear(bad)
    await store.delete_tags([bad])
    store.put(NS, "later", rec("L"))
    await store.flush()
    assert stored_keys(db_path) == {"keep", "other", "later"}
    await store.delete_tags([bad, "t"])
    assert stored_keys(db_path) == {"other", "later"}
    assert store.stats.write_failures == store.stats.dropped_writes == 0
    await store.aclose()


def _next_read_finds_it_corrupt(store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's next read job reports SQLITE_CORRUPT, as one reaching a bad page does."""
    original = store._read_sync

    def read_sync(db: sqlite3.Connection, batch: Any) -> None:
        monkeypatch.setattr(store, "_read_sync", original)
        exc = sqlite3.DatabaseError("database disk image is malformed")
        exc.sqlite_errorcode = 11  # type: ignore[attr-defined]
        batch.error = exc
        raise exc

    monkeypatch.setattr(store, "_read_sync", read_sync)


async def test_a_write_after_a_read_found_the_file_corrupt_goes_to_a_new_file(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write made after a read found the file corrupt, before any other read, sets the
    file aside itself and goes to the new file, even when the pages it writes are sound
    (not to the file the next read would set aside)."""
    store = await _store_with_rows(db_path)
    _next_read_finds_it_corrupt(store, monkeypatch)
    with pytest.raises(StoreError, match="malformed"):
        await store.get_many(NS, ["k0"])
    store.put(NS, "new", rec("N"))
    await store.flush()
    assert store.stats.moved_aside == 1
    assert stored_keys(db_path) == {"new"}
    assert await store.get_many(NS, ["new"]) == {"new": rec("N")}
    await store.aclose()


async def test_a_reader_follows_a_file_another_process_replaced(db_path: Path) -> None:
    """A store that only reads notices when another process has replaced the file (set
    it aside, say) and reads the new one, instead of the old file, which no longer
    gets that process's writes or invalidations."""
    store = await _store_with_rows(db_path, n=2)
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.rename(f"{db_path}{suffix}", f"{db_path}.old{suffix}")
    other = SQLiteStore(db_path)
    other.put(NS, "theirs", rec("T"))
    await other.aclose()
    assert await store.get_many(NS, ["k0", "theirs"]) == {"theirs": rec("T")}
    await store.aclose()


async def test_a_read_after_a_corrupt_read_does_not_wait_for_a_blocked_write(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read that sets a corrupt file aside reads what the path names then (nothing:
    a miss) itself: it does not close (and so wait for) the writer, whose flush may
    wait for another process's lock (an hour here)."""
    store = SQLiteStore(db_path, busy_timeout=3600)
    store.put(NS, "old", rec("OLD"))
    await store.flush()
    assert await store.get_many(NS, ["old"]) == {"old": rec("OLD")}  # both open
    with another_writer_holds_the_lock(db_path) as writer:
        async with anyio.create_task_group() as tg:
            store.put(NS, "new", rec("NEW"))
            tg.start_soon(store.flush)
            await wait_all_tasks_blocked()  # its batch waits for the lock
            _next_read_finds_it_corrupt(store, monkeypatch)
            with pytest.raises(StoreError, match="malformed"):
                await store.get_many(NS, ["old"])
            found = await store.get_many(NS, ["old", "new"])  # sets the file aside
            assert writer.in_transaction, "the read waited for the blocked write"
            assert found == {"new": rec("NEW")}  # from the flush under way; "old" gone
            assert store.stats.moved_aside == 1
            writer.execute("ROLLBACK")
    store.put(NS, "later", rec("L"))
    await store.flush()  # the writer follows to the new file
    assert "later" in stored_keys(db_path)
    await store.aclose()


def _signal_file_checks(store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """An event set (on the database thread) after each check that the path still
    names a connection's file: a write job's first one is made before it waits for
    the write lock."""
    checked = threading.Event()
    original = store._check_file_sync

    def check(file_id: tuple[int, int] | None) -> None:
        original(file_id)
        checked.set()

    monkeypatch.setattr(store, "_check_file_sync", check)
    return checked


@contextlib.asynccontextmanager
async def _a_flush_waiting_for_the_lock(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[SQLiteStore, sqlite3.Connection]]:
    """A store holding "old", both connections open, whose flush of "new" has checked
    its file and waits for another connection's write lock (an hour): yields the store
    and that connection; the flush ends once the body lets the lock go."""
    store = SQLiteStore(db_path, busy_timeout=3600)
    store.put(NS, "old", rec("OLD"))
    await store.flush()
    assert await store.get_many(NS, ["old"]) == {"old": rec("OLD")}  # both open
    checked = _signal_file_checks(store, monkeypatch)
    with another_writer_holds_the_lock(db_path) as writer:
        async with anyio.create_task_group() as tg:
            store.put(NS, "new", rec("NEW"))
            tg.start_soon(store.flush)
            assert await anyio.to_thread.run_sync(checked.wait, GATE_TIMEOUT)
            yield store, writer


async def test_a_write_waiting_for_the_lock_while_a_read_sets_the_file_aside_goes_to_the_new_file(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write batch that waits for another connection's lock while a read finds the
    file corrupt and sets it aside is committed to the new file, not to the file set
    aside (before, it was counted as written and lost with that file)."""
    async with _a_flush_waiting_for_the_lock(db_path, monkeypatch) as (store, writer):
        _next_read_finds_it_corrupt(store, monkeypatch)
        with pytest.raises(StoreError, match="malformed"):
            await store.get_many(NS, ["old"])
        assert await store.get_many(NS, ["old"]) == {}  # sets the file aside
        assert store.stats.moved_aside == 1
        writer.execute("ROLLBACK")  # the batch gets the lock, on the file set aside
    assert stored_keys(db_path) == {"new"}
    (aside,) = _set_aside(db_path)
    assert stored_keys(aside) == {"old"}
    assert store.stats.write_failures == store.stats.dropped_writes == 0
    await store.aclose()


@pytest.mark.parametrize("op", ["read", "write"])
async def test_a_folder_replaced_by_a_file_fails_an_operation_as_a_store_error(
    tmp_path: Path, op: str
) -> None:
    """The store's folder replaced by a regular file (the check of which file the path
    names meets NotADirectoryError): a read or write fails with StoreError, a write's
    puts counted as dropped (before, the raw OSError escaped, nothing counted)."""
    folder = tmp_path / "d"
    store = SQLiteStore(folder / "cache.db")
    store.put(NS, "k", rec(1))
    await store.flush()
    assert await store.get_many(NS, ["k"]) == {"k": rec(1)}  # both connections open
    folder.rename(tmp_path / "d.old")
    folder.write_bytes(b"not a folder")
    try:
        if op == "read":
            with pytest.raises(StoreError, match="read failed"):
                await store.get_many(NS, ["k"])
        else:
            store.put(NS, "m", rec(2))
            with pytest.raises(StoreError, match="write failed"):
                await store.flush()
            assert store.stats.write_failures == store.stats.dropped_writes == 1
    finally:
        await store.aclose()


class _WatchedLock:
    """A lock that sets ``tried`` when the store's write thread tries to take it."""

    def __init__(self, tried: threading.Event) -> None:
        self._lock = threading.Lock()
        self._tried = tried

    def __enter__(self) -> bool:
        if threading.current_thread().name.startswith("aiocache-swr-sqlite "):
            self._tried.set()
        return self._lock.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()


async def test_a_write_checking_its_file_while_a_read_sets_it_aside_goes_to_the_new_file(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write batch whose last check before COMMIT comes while a read sets the file
    aside (the file found corrupt, not renamed yet) is committed to the new file:
    before, the read forgot that the file was corrupt before renaming it, so the
    check passed and the batch went into the file set aside, counted as written."""
    store = SQLiteStore(db_path, busy_timeout=3600)
    store.put(NS, "old", rec("OLD"))
    await store.flush()
    assert await store.get_many(NS, ["old"]) == {"old": rec("OLD")}  # both open
    tried = threading.Event()  # the batch is at its last check (or waits to make it)
    monkeypatch.setattr(store, "_file_lock", _WatchedLock(tried), raising=False)
    in_move, go = threading.Event(), threading.Event()
    original_path_id = store._path_id_sync
    armed = False

    def path_id() -> tuple[int, int]:  # held in the read's set-aside, before the rename
        nonlocal armed
        found = original_path_id()
        if armed and threading.current_thread().name.startswith("aiocache-swr-sqlite-read"):
            armed = False
            in_move.set()
            assert go.wait(GATE_TIMEOUT)
        return found

    monkeypatch.setattr(store, "_path_id_sync", path_id)
    checked = _signal_file_checks(store, monkeypatch)
    flushed = anyio.Event()

    async def flush() -> None:
        await store.flush()
        flushed.set()

    with another_writer_holds_the_lock(db_path) as writer:
        async with anyio.create_task_group() as tg:
            store.put(NS, "new", rec("NEW"))
            tg.start_soon(flush)
            assert await anyio.to_thread.run_sync(checked.wait, GATE_TIMEOUT)  # waits for the lock
            original_check = store._check_writer_file_sync

            def last_check() -> None:
                try:
                    original_check()
                finally:
                    tried.set()

            monkeypatch.setattr(store, "_check_writer_file_sync", last_check)
            _next_read_finds_it_corrupt(store, monkeypatch)
            with pytest.raises(StoreError, match="malformed"):
                await store.get_many(NS, ["old"])
            armed = True
            tg.start_soon(store.get_many, NS, ["old"])  # sets the file aside
            assert await anyio.to_thread.run_sync(in_move.wait, GATE_TIMEOUT)
            writer.execute("ROLLBACK")  # the batch gets the lock and goes on to COMMIT
            assert await anyio.to_thread.run_sync(tried.wait, GATE_TIMEOUT)
            go.set()
            with anyio.fail_after(GATE_TIMEOUT):
                await flushed.wait()
    assert store.stats.moved_aside == 1
    assert stored_keys(db_path) == {"new"}
    (aside,) = _set_aside(db_path)
    assert stored_keys(aside) == {"old"}
    assert store.stats.write_failures == store.stats.dropped_writes == 0
    await store.aclose()


async def test_a_read_that_finds_the_file_deleted_does_not_wait_for_a_blocked_write(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read that finds the file deleted while a write batch waits for another
    connection's lock (an hour here) reads it as empty and returns: it does
    not close (and so wait for) the writer, which follows to the new file once it
    gets the lock."""
    async with _a_flush_waiting_for_the_lock(db_path, monkeypatch) as (store, writer):
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{db_path}{suffix}")
        found = await store.get_many(NS, ["old", "new"])
        assert writer.in_transaction, "the read waited for the blocked write"
        assert found == {"new": rec("NEW")}  # from the flush under way; "old" gone
        writer.execute("ROLLBACK")
    assert stored_keys(db_path) == {"new"}
    assert store.stats.write_failures == store.stats.dropped_writes == 0
    await store.aclose()


async def test_a_first_read_does_not_open_the_writer_behind_another_writers_lock(
    db_path: Path,
) -> None:
    """A store's first read, on a file whose schema another process is still writing
    under its write lock, reads it as empty at once: it opens the read connection
    only, never the writer (which would wait for that lock, then fail)."""
    store = SQLiteStore(db_path, busy_timeout=GATE_TIMEOUT)
    with another_writer_holds_the_lock(db_path) as writer:
        assert await store.get_many(NS, ["k"]) == {}
        assert writer.in_transaction, "the read waited for the other writer"
    assert store.stats.opens == 0  # the write connection was never opened
    store.put(NS, "k", rec(1))
    await store.flush()  # the first write makes the schema; reads see it
    assert await store.get_many(NS, ["k"]) == {"k": rec(1)}
    await store.aclose()


async def test_a_first_read_does_not_wait_for_the_writers_open_behind_another_lock(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a write opens the write connection, waiting for another process's lock
    on a file without a schema yet, a store's first read opens the read connection
    and reads the file as empty at once: the two connections open apart."""
    store = SQLiteStore(db_path, busy_timeout=GATE_TIMEOUT)
    opening = threading.Event()
    open_sync = store._open_sync

    def writer_opens() -> sqlite3.Connection:
        opening.set()
        return open_sync()

    monkeypatch.setattr(store, "_open_sync", writer_opens)
    with raw(db_path) as db:  # made by the other process, its schema not written yet
        db.execute("PRAGMA journal_mode = WAL")
    with another_writer_holds_the_lock(db_path) as writer:
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.delete, NS, ["gone"])  # opens the writer: it waits
            assert await anyio.to_thread.run_sync(opening.wait, GATE_TIMEOUT)
            assert await store.get_many(NS, ["k"]) == {}
            assert writer.in_transaction, "the read waited for the writer's open"
            writer.execute("ROLLBACK")  # the other process lets go: the open goes on
    await store.aclose()


async def test_a_version_1_file_without_the_table_reads_as_empty(db_path: Path) -> None:
    """A file at user_version 1 without this library's table (another program's) reads
    as empty, as one without a schema does, until a write makes the schema."""
    with raw(db_path) as db:
        db.execute("PRAGMA user_version = 1")
    store = SQLiteStore(db_path)
    assert await store.get_many(NS, ["k"]) == {}
    await store.aclose()


async def test_a_writers_failed_open_does_not_fail_reads(db_path: Path) -> None:
    """The write connection's failed open (another writer held the lock past
    busy_timeout) is remembered for writes only: reads of the file go on."""
    seed = SQLiteStore(db_path)
    seed.put(NS, "k", rec(1))
    await seed.aclose()
    store = SQLiteStore(db_path, busy_timeout=0.01)
    with raw(db_path) as db:  # a version-1 file: the writer's open must upgrade it
        db.execute("PRAGMA user_version = 1")
    with another_writer_holds_the_lock(db_path):
        store.put(NS, "j", rec(2))
        with pytest.raises(StoreOpenError):
            await store.flush()
    assert store._open_failure is not None  # remembered for the writer
    assert await store.get_many(NS, ["k"]) == {"k": rec(1)}
    await store.aclose()


async def test_a_new_store_reading_before_its_first_write_logs_no_warning(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A store whose file does not exist yet reads as empty without a warning (it is
    new, not deleted), and does not make the file: the first write does."""
    store = SQLiteStore(db_path)
    with caplog.at_level(logging.DEBUG, logger="aiocache_swr"):
        assert await store.get_many(NS, ["k"]) == {}
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert not os.path.exists(db_path)  # noqa: ASYNC240 - a check, not I/O to wait for
    store.put(NS, "k", rec(1))
    await store.flush()
    assert await store.get_many(NS, ["k"]) == {"k": rec(1)}
    await store.aclose()


async def test_a_read_open_whose_file_check_fails_closes_its_connection(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OSError from the check of the file after the read connection's connect (its
    folder replaced by a file meanwhile) fails the read, and closes that connection."""
    store = SQLiteStore(db_path)
    store.put(NS, "k", rec(1))
    await store.flush()  # the writer is open, the reader not yet
    made: list[sqlite3.Connection] = []
    connect, path_id = store._connect_to, store._path_id_sync

    def tracked(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        made.append(connect(*args, **kwargs))
        return made[-1]

    def folder_replaced() -> tuple[int, int]:
        if made:  # the check after the connect
            raise NotADirectoryError(20, "Not a directory", str(db_path))
        return path_id()

    monkeypatch.setattr(store, "_connect_to", tracked)
    monkeypatch.setattr(store, "_path_id_sync", folder_replaced)
    with pytest.raises(StoreError):
        await store.get_many(NS, ["k"])
    assert len(made) == 1
    with pytest.raises(sqlite3.ProgrammingError):  # closed
        made[0].execute("SELECT 1")
    monkeypatch.undo()
    await store.aclose()


def corrupt_in_place(path: Path) -> None:
    """Garble every page of the file but the first, in place, as a failing disk
    might: the file still opens as a database, and its tables no longer read."""
    with raw(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every row into the file itself
        (page_size,) = db.execute("PRAGMA page_size").fetchone()
    size = path.stat().st_size
    assert size > page_size
    with open(path, "r+b") as f:
        f.seek(page_size)
        f.write(bytes(range(256)) * ((size - page_size) // 256 + 1))


async def _store_with_rows(path: Path, n: int = 50) -> SQLiteStore:
    store = SQLiteStore(path)
    for i in range(n):
        store.put(NS, f"k{i}", rec("x" * 500))
    await store.flush()
    assert await store.get_many(NS, ["k0"]) == {"k0": rec("x" * 500)}  # both connections open
    return store


async def test_a_read_that_sets_a_corrupt_file_aside_does_not_call_it_deleted(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The read connection's open that sets aside a file a read found corrupt logs that
    (an ERROR), not that the file is missing as if deleted."""
    store = await _store_with_rows(db_path)
    corrupt_in_place(db_path)
    keys = [f"k{i}" for i in range(50)]
    with pytest.raises(StoreError):
        await store.get_many(NS, keys)  # finds it corrupt
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="aiocache_swr"):
        assert await store.get_many(NS, keys) == {}  # sets it aside, reads as empty
        await store.aclose()  # the cache closed, say; the store stays usable
        assert await store.get_many(NS, keys) == {}  # opens again: still no file
    assert store.stats.moved_aside == 1
    assert not [r for r in caplog.records if "deleted?" in r.getMessage()]
    await store.aclose()


async def test_aclose_cancelled_while_waiting_for_an_open_raises_the_cancellation_if_closing_fails(
    db_path: Path,
) -> None:
    """asyncio's own cancel of aclose, waiting for a connection's open, is raised even
    when closing that connection then fails: the task ends cancelled, as asked."""
    threads = set(threading.enumerate())
    store = SQLiteStore(db_path)
    store.put(NS, "a", rec("A"))
    await store.flush()  # the writer is open
    st = store._state
    assert st is not None
    assert st.writer.conn is not None
    conn = st.writer.conn
    close = conn.close

    async def failing_close() -> None:
        await close()
        raise sqlite3.OperationalError("disk I/O error")

    conn.close = failing_close  # type: ignore[method-assign]
    lock = st.writer.open_lock()
    await lock.acquire()  # an open under way
    closing = asyncio.ensure_future(store.aclose())
    await wait_all_tasks_blocked()  # aclose waits for the open
    closing.cancel()
    await wait_all_tasks_blocked()
    lock.release()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert await anyio.to_thread.run_sync(join_store_threads, threads) == []


async def test_aclose_cancelled_by_asyncio_while_the_reader_opens_still_closes_both(
    db_path: Path,
) -> None:
    """asyncio's own cancel of aclose, arriving while it waits for the read
    connection's open (holding the writer's lock), does not leave either connection or
    its thread behind."""
    threads = set(threading.enumerate())
    store = SQLiteStore(db_path)
    store.put(NS, "a", rec("A"))
    await store.flush()  # the writer is open, the reader not yet
    entered, release = threading.Event(), threading.Event()
    open_reader = store._open_reader_sync

    def held_open() -> sqlite3.Connection:
        db = open_reader()
        entered.set()
        assert release.wait(GATE_TIMEOUT)
        return db

    store._open_reader_sync = held_open  # type: ignore[method-assign]
    found: dict[str, Record] = {}

    async def read() -> None:
        found.update(await store.get_many(NS, ["a"]))

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        assert await anyio.to_thread.run_sync(entered.wait, GATE_TIMEOUT)
        closing = asyncio.ensure_future(store.aclose())
        await wait_all_tasks_blocked()  # aclose waits for the reader's open
        closing.cancel()
        await wait_all_tasks_blocked()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await closing
    assert found == {"a": rec("A")}
    st = store._state
    assert st is not None
    assert st.writer.conn is None
    assert st.reader.conn is None
    assert await anyio.to_thread.run_sync(join_store_threads, threads) == []


def _set_aside(path: Path) -> list[Path]:
    return [p for p in path.parent.glob(f"{path.name}.corrupt-*") if p.name.endswith("Z")]


async def test_a_write_that_finds_the_open_file_corrupt_sets_it_aside(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file corrupted while open, not only one found so when opening, is set aside
    (logged once) as soon as a write finds it: that write goes to a new file."""
    store = await _store_with_rows(db_path)
    corrupt_in_place(db_path)
    with caplog.at_level(logging.ERROR, logger="aiocache_swr"):
        store.put(NS, "new", rec("N"))
        await store.flush()
    assert store.stats.moved_aside == 1
    assert store.stats.write_failures == store.stats.dropped_writes == 0
    assert len(_set_aside(db_path)) == 1
    assert stored_keys(db_path) == {"new"}
    assert await store.get_many(NS, ["k1", "new"]) == {"new": rec("N")}
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    await store.aclose()


async def test_a_read_that_finds_the_open_file_corrupt_sets_it_aside(db_path: Path) -> None:
    """A read that finds the open file corrupt fails (its caller computes), and the
    file is set aside: the reads and writes after it use a new file, without error."""
    store = await _store_with_rows(db_path)
    corrupt_in_place(db_path)
    keys = [f"k{i}" for i in range(50)]
    with pytest.raises(StoreError, match="malformed"):
        await store.get_many(NS, keys)
    assert await store.get_many(NS, keys) == {}
    assert store.stats.moved_aside == 1
    assert len(_set_aside(db_path)) == 1
    store.put(NS, "new", rec("N"))
    await store.flush()
    assert store.stats.write_failures == store.stats.dropped_writes == 0
    assert stored_keys(db_path) == {"new"}
    assert await store.get_many(NS, ["new"]) == {"new": rec("N")}
    await store.aclose()


async def test_a_corrupt_file_another_process_replaced_meanwhile_is_kept(db_path: Path) -> None:
    """Only the very file found corrupt is set aside: if another process has set it
    aside first and written a new one, that new file is read, not set aside."""
    store = await _store_with_rows(db_path)
    corrupt_in_place(db_path)
    with pytest.raises(StoreError, match="malformed"):
        await store.get_many(NS, [f"k{i}" for i in range(50)])
    for suffix in ("", "-wal", "-shm"):  # what the other process does
        with contextlib.suppress(FileNotFoundError):
            os.rename(f"{db_path}{suffix}", f"{db_path}.theirs{suffix}")
    other = SQLiteStore(db_path)
    other.put(NS, "theirs", rec("T"))
    await other.aclose()
    assert await store.get_many(NS, ["theirs"]) == {"theirs": rec("T")}
    store.put(NS, "ours", rec("O"))
    await store.flush()
    assert stored_keys(db_path) == {"theirs", "ours"}
    assert store.stats.moved_aside == 0
    assert _set_aside(db_path) == []
    await store.aclose()


@pytest.mark.parametrize("opening", ["_open_sync", "_open_reader_sync"], ids=["writer", "reader"])
async def test_aclose_while_a_read_opens_a_connection_closes_both(
    db_path: Path, opening: str
) -> None:
    """aclose during the open of a connection (the write one, by a write, or the read
    one, by a read while the write one is open) waits for that open and closes both:
    no thread is left."""
    seed = SQLiteStore(db_path)
    seed.put(NS, "a", rec("A"))
    await seed.aclose()
    threads = set(threading.enumerate())
    store = SQLiteStore(db_path)
    if opening == "_open_reader_sync":
        await store.delete(NS, ["gone"])  # the write connection is open, the read one not yet
    else:
        assert await store.get_many(NS, ["a"]) == {"a": rec("A")}  # the read one is open
    entered, release = threading.Event(), threading.Event()
    connect = getattr(store, opening)

    def held_open() -> sqlite3.Connection:  # on the new connection's thread
        db = connect()
        entered.set()
        assert release.wait(GATE_TIMEOUT)
        return db

    setattr(store, opening, held_open)
    found: dict[str, Record] = {}

    async def read_or_write() -> None:
        if opening == "_open_reader_sync":
            found.update(await store.get_many(NS, ["a"]))
        else:
            await store.delete(NS, ["gone"])

    async with anyio.create_task_group() as tg:
        tg.start_soon(read_or_write)
        assert await anyio.to_thread.run_sync(entered.wait, GATE_TIMEOUT)
        tg.start_soon(store.aclose)
        await wait_all_tasks_blocked()  # aclose waits for the open
        release.set()
    if opening == "_open_reader_sync":
        assert found == {"a": rec("A")}
    st = store._state
    assert st is not None
    assert st.reader.conn is None
    assert st.writer.conn is None
    assert await anyio.to_thread.run_sync(join_store_threads, threads) == []


async def test_aclose_cancelled_by_asyncio_still_closes_the_read_connection(
    db_path: Path,
) -> None:
    """asyncio's own Task.cancel (which goes through anyio's shields), arriving while
    aclose waits for the write connection to close, does not leave the read one open."""
    threads = set(threading.enumerate())
    store = SQLiteStore(db_path)
    store.put(NS, "a", rec("A"))
    await store.flush()
    assert await store.get_many(NS, ["a"]) == {"a": rec("A")}  # both are open
    st = store._state
    assert st is not None
    entered, release = threading.Event(), threading.Event()

    def busy(db: sqlite3.Connection) -> None:  # a job that holds the write thread
        entered.set()
        assert release.wait(GATE_TIMEOUT)

    async with anyio.create_task_group() as tg:
        tg.start_soon(store._call, st, st.writer, busy)
        assert await anyio.to_thread.run_sync(entered.wait, GATE_TIMEOUT)
        closing = asyncio.ensure_future(store.aclose())
        await wait_all_tasks_blocked()  # its close of the write connection waits
        closing.cancel()  # e.g. asyncio.wait_for(store.aclose(), ...) timing out
        await wait_all_tasks_blocked()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await closing
    assert st.reader.conn is None
    assert await anyio.to_thread.run_sync(join_store_threads, threads) == []


@pytest.mark.parametrize("name", ["a b?c#d%e&f=g.db", "x%20y.db", "é 漢.db"])
async def test_the_read_connection_opens_a_file_name_with_uri_characters(
    tmp_path: Path, name: str
) -> None:
    """The read connection opens the file by URI: a name with ``?``, ``#``, ``%`` or
    non-ASCII characters is the same file to it, and no other file is made."""
    store = SQLiteStore(tmp_path / name)
    store.put(NS, "k", rec(1))
    await store.flush()
    assert await store.get_many(NS, ["k"]) == {"k": rec(1)}
    await store.aclose()
    assert sorted(os.listdir(tmp_path)) == [name]


async def test_json_serializer(db_path: Path) -> None:
    """JSONSerializer round-trips JSON values and refuses others at put time."""
    store = SQLiteStore(db_path, serializer=JSONSerializer())
    value = {"name": "é", "items": [1, 2.5, None, True]}
    store.put(NS, "k", rec(value, version="v1"))
    with pytest.raises(SerializationError, match="not JSON serializable"):
        store.put(NS, "bad", rec({1, 2}))
    await store.aclose()
    with raw(db_path) as db:
        (blob,) = db.execute("SELECT blob FROM swr_entries").fetchone()
    assert blob.startswith(b'[{"name":"\xc3\xa9"')
    again = SQLiteStore(db_path, serializer=JSONSerializer())
    assert await again.get_many(NS, ["k", "bad"]) == {"k": rec(value, version="v1")}
    await again.aclose()


async def test_unserializable_value_raises_at_put_and_deletes_the_older_row(
    db_path: Path,
) -> None:
    """put raises SerializationError for a value pickle refuses; it buffers a deletion of
    the key's row instead (an older value must not be read back as current), which
    reads see at once and the next flush writes; other keys keep their rows."""
    store = SQLiteStore(db_path)
    store.put(NS, "k", rec("old"))
    store.put(NS, "other", rec("kept"))
    await store.flush()
    with pytest.raises(SerializationError, match=r"'k' of 'tests\.fn'") as info:
        store.put(NS, "k", rec(threading.Lock()))
    assert isinstance(info.value, StoreError)
    assert info.value.__cause__ is not None
    assert store.pending
    assert await store.get_many(NS, ["k", "other"]) == {"other": rec("kept")}
    await store.flush()
    await store.aclose()
    again = SQLiteStore(db_path)
    assert await again.get_many(NS, ["k", "other"]) == {"other": rec("kept")}
    await again.aclose()


# ----------------------------------------------------------- write failures


async def test_busy_batch_is_retried(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch that meets "database is locked" is retried and committed once."""
    store = SQLiteStore(db_path)
    real = store._write_sync
    attempts: list[int] = []

    def flaky(db: sqlite3.Connection, job: Any) -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise sqlite3.OperationalError("database is locked")
        real(db, job)

    monkeypatch.setattr(store, "_write_sync", flaky)
    store.put(NS, "k", rec(1))
    await store.flush()
    assert len(attempts) == 3
    assert store.stats.write_transactions == 1
    assert stored_keys(db_path) == {"k"}
    await store.aclose()


async def test_failed_batch_drops_puts_and_keeps_deletions(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch that fails for good drops its puts (logged) but keeps its deletions for a retry."""
    store = SQLiteStore(db_path)
    store.put(NS, "old", rec("old"))
    await store.flush()
    real = store._write_sync

    def broken(db: sqlite3.Connection, job: Any) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store, "_write_sync", broken)
    store.put(NS, "new", rec("new"))
    with caplog.at_level(logging.WARNING, logger="aiocache_swr"), pytest.raises(StoreError):
        await store.delete(NS, ["old"])
    assert any("memory only" in r.message for r in caplog.records)
    assert store.stats.write_failures == 1
    assert store.stats.dropped_writes == 1
    assert not store.pending  # nothing new: do not spin on a broken file
    assert await store.get_many(NS, ["old", "new"]) == {}  # the deletion is still seen

    monkeypatch.setattr(store, "_write_sync", real)
    await store.flush()
    assert stored_keys(db_path) == set()
    await store.aclose()


# ------------------------------------------------------------------ loops


def test_two_asyncio_runs_share_one_store(db_path: Path) -> None:
    """One store used by two successive asyncio.run calls keeps its data; warns, leaks nothing."""
    threads = set(threading.enumerate())
    store = SQLiteStore(db_path)

    async def first() -> None:
        store.put(NS, "a", rec("A"))
        await store.flush()
        store.put(NS, "b", rec("B"))  # left buffered when this loop ends
        assert await store.get_many(NS, ["a", "b"]) == {"a": rec("A"), "b": rec("B")}

    async def second() -> dict[str, Record]:
        got = await store.get_many(NS, ["a", "b"])
        await store.aclose()
        return got

    asyncio.run(first())
    assert asyncio.run(second()) == {"a": rec("A"), "b": rec("B")}
    assert store.stats.opens == 2
    assert stored_keys(db_path) == {"a", "b"}
    gc.collect()
    assert join_store_threads(threads) == []


async def test_aclose_stops_the_worker_thread(db_path: Path) -> None:
    """aclose flushes, closes the connection and lets its thread end; the store reopens on use."""
    threads = set(threading.enumerate())
    store = SQLiteStore(db_path)
    store.put(NS, "k", rec(1))
    await store.aclose()
    assert stored_keys(db_path) == {"k"}
    assert await anyio.to_thread.run_sync(join_store_threads, threads) == []
    assert await store.get_many(NS, ["k"]) == {"k": rec(1)}
    assert store.stats.opens == 1  # a read opens the read connection only
    store.put(NS, "k", rec(2))
    await store.flush()
    assert store.stats.opens == 2
    await store.aclose()
    await store.aclose()  # idempotent


# -------------------------------------------------------------- processes

CHILD_PRELUDE = """
import asyncio, sys, time
from aiocache_swr._sqlite import SQLiteStore
from aiocache_swr._store import Record
"""

WORKER = (
    CHILD_PRELUDE
    + """
async def main(path, ident, n):
    store = SQLiteStore(path)
    try:
        for i in range(n):
            store.put("shared", f"{ident}:{i}", Record(value=i, version=ident, created=time.time()))
            if i % 4 == 3:
                await store.flush()
                got = await store.get_many("shared", [f"{ident}:{i}", f"{ident}:{i - 1}"])
                assert got[f"{ident}:{i}"].value == i, got
                assert got[f"{ident}:{i - 1}"].value == i - 1, got
        await store.flush()
    finally:
        await store.aclose()

sys.stdin.readline()  # start together
asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
print("done")
"""
)

WRITER = (
    CHILD_PRELUDE
    + """
async def main(path):
    store = SQLiteStore(path)
    store.put("ns", "k", Record(value={"from": "writer"}, version=7, created=time.time()))
    await store.flush()  # and exit without aclose()

asyncio.run(main(sys.argv[1]))
print("written")
"""
)

READER = (
    CHILD_PRELUDE
    + """
async def main(path):
    store = SQLiteStore(path)
    try:
        print((await store.get_many("ns", ["k"]))["k"])
    finally:
        await store.aclose()

asyncio.run(main(sys.argv[1]))
"""
)


def child(script: str, *args: str, warnings_as_errors: bool = True) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    flags = ["-W", "error"] if warnings_as_errors else []
    return subprocess.Popen(
        [sys.executable, *flags, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def test_processes_share_a_new_file_without_locked_errors(db_path: Path) -> None:
    """Four processes racing to create, switch to WAL and write one file never see "locked"."""
    procs = [child(WORKER, str(db_path), f"p{n}", "200") for n in range(4)]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outputs = [proc.communicate(timeout=120) for proc in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert "locked" not in (out + err).lower(), err
        assert proc.returncode == 0, err
        assert out.strip() == "done", (out, err)
    with raw(db_path) as db:
        assert db.execute("SELECT count(*) FROM swr_entries").fetchone() == (800,)


def test_written_then_exited_child_is_read_by_another(db_path: Path) -> None:
    """A process that flushes and exits (without aclose, without hanging) is read by the next."""
    writer = child(WRITER, str(db_path), warnings_as_errors=False)
    out, err = writer.communicate("", timeout=60)
    assert writer.returncode == 0, err
    assert out.strip() == "written"
    reader = child(READER, str(db_path))
    out, err = reader.communicate("", timeout=60)
    assert reader.returncode == 0, err
    assert "{'from': 'writer'}" in out, out
    assert "version=7" in out, out


# -------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"path": 123}, TypeError, "path"),
        ({"path": b"cache.db"}, TypeError, "path"),
        ({"path": ""}, ValueError, "path"),
        ({"path": ":memory:"}, ValueError, "store=None"),
        ({"max_entries": 0}, ValueError, "max_entries"),
        ({"max_entries": 1.5}, TypeError, "max_entries"),
        ({"max_entries": True}, TypeError, "max_entries"),
        ({"serializer": object()}, TypeError, "dumps"),
        ({"serializer": JSONSerializer}, TypeError, r"JSONSerializer\(\)"),
        ({"secret": b""}, ValueError, "secret"),
        ({"secret": 42}, TypeError, "secret"),
        ({"busy_timeout": -1}, ValueError, "busy_timeout"),
        ({"busy_timeout": float("nan")}, ValueError, "busy_timeout"),
        ({"busy_timeout": "5"}, TypeError, "busy_timeout"),
        ({"clock": 3}, TypeError, "clock"),
    ],
)
def test_bad_arguments_fail_early(
    tmp_path: Path, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    """Invalid constructor arguments raise at once, naming the parameter and the fix."""
    kwargs = {"path": tmp_path / "c.db", **kwargs}
    with pytest.raises(error, match=match):
        SQLiteStore(**kwargs)


def test_directory_path_is_refused(tmp_path: Path) -> None:
    """A directory is not a database file: ValueError suggesting a file inside it."""
    with pytest.raises(ValueError, match="directory"):
        SQLiteStore(tmp_path)
    assert not list(tmp_path.iterdir())


def test_no_worker_thread_outlives_its_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No worker thread is left to report to a loop that asyncio.run has closed.

    A failed open (aiosqlite queues a stop with a future of the running loop),
    a corrupt file set aside, ``aclose`` and readers cancelled when the loop
    ends: by the time ``asyncio.run`` returns, every job has been reported and,
    after a failed open or ``aclose``, the worker thread has exited.  Repeated
    in separate ``asyncio.run`` calls: the race this guards against is narrow.
    """
    before = set(threading.enumerate())
    errors: list[str] = []

    def hook(args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread is not None else "?"
        errors.append(f"{name}: {args.exc_type.__name__}: {args.exc_value!r}")

    monkeypatch.setattr(threading, "excepthook", hook)
    (tmp_path / "plain-file").write_text("a file where a directory should be")

    def alive(file_name: str) -> list[str]:
        return [t.name for t in threading.enumerate() if t.name.endswith(f" {file_name}")]

    async def unopenable(n: int) -> None:
        store = SQLiteStore(tmp_path / "plain-file" / f"c{n}.db")
        with pytest.raises(StoreOpenError):
            await store.get_many(NS, ["k"])
        store.put(NS, "k", rec(n))
        with pytest.raises(StoreOpenError):
            await store.flush()
        await store.aclose()  # the engine closes every store, opened or not

    async def corrupt(n: int) -> None:
        path = tmp_path / f"bad{n}.db"
        path.write_bytes(b"this is not a sqlite database" * 100)
        store = SQLiteStore(path)
        assert await store.get_many(NS, ["k"]) == {}
        await store.aclose()

    async def readers_cancelled_at_loop_end(store: SQLiteStore) -> None:
        store.put(NS, "k", rec(1))
        await store.flush()
        for _ in range(3):  # left running: asyncio.run cancels them before closing the loop
            asyncio.get_running_loop().create_task(store.get_many(NS, ["k", "x"]))
        await asyncio.sleep(0)

    left: list[str] = []
    for n in range(10):
        asyncio.run(unopenable(n))
        left += alive(f"c{n}.db")
        asyncio.run(corrupt(n))
        left += alive(f"bad{n}.db")
        store = SQLiteStore(tmp_path / f"ok{n}.db")
        asyncio.run(readers_cancelled_at_loop_end(store))
        asyncio.run(store.aclose())  # stops the previous loop's connection, closes nothing new
    assert join_store_threads(before) == []
    assert left == []
    assert errors == []


# -- found by review: deletions never lost, reads batched from a cold start -------------------


async def _holding_flush(store: SQLiteStore) -> Any:
    """The store's flush lock, as a flush running elsewhere holds it."""
    st = store._loop_state()
    if st.flush_lock is None:
        st.flush_lock = anyio.Lock()
    return st.flush_lock


async def test_a_tag_deletion_keeps_the_deletion_a_newer_put_replaced(db_path: Path) -> None:
    """delete k, put k (new tags), delete_tags(new tag): the old row of k stays deleted."""
    store = SQLiteStore(db_path)
    store.put(NS, "k", rec("OLD", tags=("a",)))
    await store.flush()
    async with await _holding_flush(store), anyio.create_task_group() as tg:
        tg.start_soon(store.delete, NS, ["k"])
        await wait_all_tasks_blocked()  # the deletion is buffered behind the running flush
        store.put(NS, "k", rec("NEW", tags=("b",)))
        tg.start_soon(store.delete_tags, ["b"])
        await wait_all_tasks_blocked()
        tg.cancel_scope.cancel()  # leave them buffered; the flush below writes them
    await store.flush()
    assert await store.get_many(NS, ["k"]) == {}
    await store.aclose()


async def test_a_cancelled_flush_keeps_every_put_after_a_namespace_clear(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A layer of clear + 2,500 puts (two batches) cancelled while the file is locked is
    written whole later: the clear put back must not hide the second batch's puts."""
    # Retry until cancelled: with the usual 5 attempts, the jittered backoff could
    # give up (StoreError) before the cancellation below arrives.
    monkeypatch.setattr("aiocache_swr._sqlite._WRITE_ATTEMPTS", 1_000)
    store = SQLiteStore(db_path, busy_timeout=0.01)
    store.put(NS, "old", rec(0))
    await store.flush()
    async with await _holding_flush(store), anyio.create_task_group() as tg:
        tg.start_soon(store.clear, NS)
        await wait_all_tasks_blocked()
        for i in range(2_500):
            store.put(NS, f"k{i}", rec(i))
        tg.cancel_scope.cancel()
    with raw(db_path) as locker:  # another process holds the write lock
        locker.execute("BEGIN IMMEDIATE")
        with anyio.move_on_after(0.3):  # a store_timeout-like cancellation
            await store.flush()
        locker.execute("ROLLBACK")
    await store.flush()
    with raw(db_path) as db:
        rows = db.execute("SELECT count(*) FROM swr_entries WHERE namespace = ?", (NS,))
        assert rows.fetchone() == (2_500,)
    await store.aclose()


async def test_concurrent_reads_on_a_closed_connection_share_round_trips(db_path: Path) -> None:
    """200 concurrent reads while the connection is still to be opened make 2 batches, not 200."""
    store = SQLiteStore(db_path)
    for i in range(200):
        store.put(NS, str(i), rec(i))
    await store.flush()
    await store.aclose()  # the next reads start cold
    before = store.stats.read_batches
    async with anyio.create_task_group() as tg:
        for i in range(200):
            tg.start_soon(store.get_many, NS, [str(i)])
    assert store.stats.read_batches - before <= 2
    await store.aclose()


async def test_a_newer_schema_found_by_a_read_is_remembered_as_a_failed_open(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file another process made and then gave a newer version's schema, after the
    reader opened it schema-less: the read that finds the version fails, and the next
    reads fail at once for a while (no read job each, no log each), as after a
    failed open."""
    store = SQLiteStore(db_path)
    store.put(NS, "k", rec(1))
    await store.flush()
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{db_path}{suffix}")
    os.close(os.open(db_path, os.O_CREAT | os.O_WRONLY, 0o600))  # another process's new file
    assert await store.get_many(NS, ["k"]) == {}
    with closing(sqlite3.connect(db_path)) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        raw.commit()
    jobs: list[int] = []
    read = store._read_sync
    monkeypatch.setattr(store, "_read_sync", lambda *a: (jobs.append(1), read(*a))[1])
    for _ in range(3):
        with pytest.raises(StoreError, match="newer"):
            await store.get_many(NS, ["k"])
    assert len(jobs) == 1
    await store.aclose()
