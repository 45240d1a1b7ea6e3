"""Level 2 through the engine with a real SQLite file (SPEC section 3)."""

from __future__ import annotations

import enum
import gc
import json
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
import weakref
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from aiocache_swr import SQLiteStore, SWRCache
from aiocache_swr._function import engine_of
from aiocache_swr._keys import stable_key
from aiocache_swr._store import Distrust, MemoryStore, Record
from aiocache_swr.testing import FakeClock

CHILD = Path(__file__).with_name("_persist_child.py")


def child(path: Path, mode: str, n: int, hashseed: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONHASHSEED": hashseed}
    done = subprocess.run(
        [sys.executable, "-W", "error", str(CHILD), str(path), mode, str(n)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_a_restarted_process_recomputes_nothing(tmp_path: Path) -> None:
    """Written by one process, read by another with another hash seed: zero recomputations.

    The writer exits without closing anything: asyncio.run's end flushes its writes.
    """
    db = tmp_path / "cache.db"
    child(db, "write", 200, hashseed="1")
    result = json.loads(child(db, "read", 200, hashseed="2").stdout)
    assert result == {"calls": 0, "ok": True, "store_hits": 200}


def test_four_processes_share_one_file(tmp_path: Path) -> None:
    """Four processes hammering one new file never see a store error."""
    db = tmp_path / "shared.db"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-W", "error", str(CHILD), str(db), "hammer", "30"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(4)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        assert "locked" not in err
        assert json.loads(out) == {"store_errors": 0}


pytestmark_anyio = pytest.mark.anyio


@pytestmark_anyio
async def test_stale_persisted_entries_are_served_then_refreshed(tmp_path: Path) -> None:
    """After a 'restart', a stale row is answered at once and refreshed in the background."""
    clock = FakeClock()
    db = tmp_path / "c.db"
    versions = iter(["first", "second"])

    async def compute(x: int) -> str:
        return next(versions)

    async with SWRCache(clock=clock, store=SQLiteStore(db, clock=clock)) as first:
        f = first.cached(ttl=10, namespace="f")(compute)
        assert await f(1) == "first"
    clock.advance(60)
    async with SWRCache(clock=clock, store=SQLiteStore(db, clock=clock)) as second:
        g = second.cached(ttl=10, namespace="f")(compute)
        assert await g(1) == "first"  # stale, from the file
        await second.wait_idle()
        assert await g(1) == "second"
        info = g.cache_info()
        assert (info.store_hits, info.refreshes) == (1, 1)


@pytestmark_anyio
async def test_invalidate_during_a_refresh_writes_nothing_back(tmp_path: Path) -> None:
    """A refresh started before invalidate() writes neither level; a new process misses."""
    clock = FakeClock()
    db = tmp_path / "c.db"
    release = anyio.Event()
    calls = 0

    async def compute(x: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            await release.wait()
        return calls

    async with SWRCache(clock=clock, store=SQLiteStore(db, clock=clock)) as cache:
        f = cache.cached(ttl=10, namespace="f")(compute)
        await f(1)
        clock.advance(10)
        assert await f(1) == 1  # stale; refresh now blocked
        await anyio.wait_all_tasks_blocked()
        await f.invalidate(1)
        release.set()
        await cache.wait_idle()
        assert f.cache_info().currsize == 0
    async with SWRCache(clock=clock, store=SQLiteStore(db, clock=clock)) as again:
        g = again.cached(ttl=10, namespace="f")(compute)
        assert await g(1) == 3
        assert g.cache_info().store_hits == 0


@pytestmark_anyio
async def test_path_stores_are_shared_per_file(tmp_path: Path) -> None:
    """Every function naming one path shares one SQLiteStore, kept apart by namespace."""
    cache = SWRCache(clock=FakeClock())
    db = str(tmp_path / "shared.db")

    @cache.cached(store=db)
    async def a(x: int) -> str:
        return f"a{x}"

    @cache.cached(store=tmp_path / "shared.db")
    async def b(x: int) -> str:
        return f"b{x}"

    async with cache:
        assert (await a(1), await b(1)) == ("a1", "b1")
    assert engine_of(a)._store is engine_of(b)._store


@pytestmark_anyio
async def test_a_corrupt_file_never_fails_the_call(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file that is not a database is reported and set aside; calls still work."""
    db = tmp_path / "c.db"
    db.write_bytes(b"this is not a sqlite database" * 100)
    clock = FakeClock()
    with caplog.at_level(logging.WARNING, logger="aiocache_swr"):
        async with SWRCache(clock=clock, store=SQLiteStore(db, clock=clock)) as cache:
            f = cache.cached(ttl=10)(_double)
            assert await f(2) == 4
    assert any(r.levelno >= logging.ERROR for r in caplog.records)


@pytestmark_anyio
async def test_a_file_corrupted_while_in_use_costs_one_store_error(tmp_path: Path) -> None:
    """A file corrupted under a running cache is set aside at the first failure:
    the calls after it read and write a new file, with no further store errors."""
    db = tmp_path / "c.db"
    clock = FakeClock()
    store = SQLiteStore(db, clock=clock)
    async with SWRCache(clock=clock, store=store) as cache:
        f = cache.cached(ttl=10, maxsize=1)(_padded)
        for x in range(50):
            await f(x)
        await store.flush()
        with closing(sqlite3.connect(db)) as raw:
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every row into the file itself
            (page,) = raw.execute("PRAGMA page_size").fetchone()
        with open(db, "r+b") as file:  # noqa: ASYNC230 - garble all but the header page
            file.seek(page)
            file.write(b"\xa5" * (db.stat().st_size - page))
        assert [await f(x) for x in range(50)] == [_padded_value(x) for x in range(50)]
        assert f.cache_info().store_errors == 1
        assert store.stats.moved_aside == 1
        await store.flush()
        assert [await f(x) for x in range(50)] == [_padded_value(x) for x in range(50)]
        assert f.cache_info().store_errors == 1
        assert f.cache_info().store_hits == 50


@pytestmark_anyio
async def test_a_tag_sqlite_cannot_hold_keeps_its_entry_in_memory_and_no_other(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An entry whose tag has a lone surrogate stays in memory only (warned once), and
    the entries written with it, of other functions, still reach the file; invalidating
    such a tag drops it from memory and leaves the store writing."""
    db = tmp_path / "c.db"
    clock = FakeClock()
    store = SQLiteStore(db, clock=clock)
    gate = anyio.Event()
    async with SWRCache(clock=clock, store=store) as cache:

        @cache.cached(ttl=10, tags=lambda x: [x], namespace="tagged")
        async def tagged(x: str) -> str:
            await gate.wait()
            return f"v-{x}"

        @cache.cached(ttl=10, namespace="other")
        async def other(x: int) -> int:
            await gate.wait()
            return x * 2

        results: list[object] = []

        async def call(f: Any, x: Any) -> None:
            results.append(await f(x))

        with caplog.at_level(logging.WARNING, logger="aiocache_swr"):
            async with anyio.create_task_group() as tg:  # one write batch for all
                for i in range(3):
                    tg.start_soon(call, other, i)
                tg.start_soon(call, tagged, "\udcff")
                await anyio.wait_all_tasks_blocked()
                gate.set()
            await store.flush()
        assert sorted(map(str, results)) == ["0", "2", "4", "v-\udcff"]
        with closing(sqlite3.connect(db)) as raw:
            assert {ns for (ns,) in raw.execute("SELECT namespace FROM swr_entries")} == {"other"}
        assert sum("could not be stored" in r.getMessage() for r in caplog.records) == 1
        await cache.invalidate_tags("\udcff")
        assert tagged.cache_info().currsize == 0
        assert await other(7) == 14
        await store.flush()
        assert store.stats.write_failures == 0
        assert other.cache_info().store_errors == 0


@pytestmark_anyio
@pytest.mark.parametrize("equal", [1.0, True, Decimal("1.00")], ids=["float", "bool", "decimal"])
async def test_invalidate_with_an_equal_argument_of_another_type_drops_the_stored_row(
    tmp_path: Path, equal: Any
) -> None:
    """f(1) stored, then f.invalidate(1.0): one key in memory, so one row in the file
    too; it is gone, and neither this process nor the next is answered from it."""
    db = tmp_path / "c.db"
    clock = FakeClock()
    calls = 0

    async def compute(x: Any) -> int:
        nonlocal calls
        calls += 1
        return calls

    async with SWRCache(clock=clock, store=SQLiteStore(db, clock=clock)) as cache:
        f = cache.cached(ttl=10, namespace="f")(compute)
        assert await f(1) == 1
        await f.invalidate(equal)
        assert f.cache_info().currsize == 0
        assert await f(1) == 2  # not the stored 1
        await f.invalidate(equal)
    async with SWRCache(clock=clock, store=SQLiteStore(db, clock=clock)) as cache:
        g = cache.cached(ttl=10, namespace="f")(compute)
        assert await g(1) == 3
        assert g.cache_info().store_hits == 0


@pytestmark_anyio
async def test_caches_with_different_clocks_can_share_a_file(tmp_path: Path) -> None:
    """Two caches naming one file with clocks far apart (a FakeClock beside the real
    one): the store purges a row only once every clock has it expired, so the
    cache whose clock is behind keeps its rows, and they answer its next process."""
    db = tmp_path / "c.db"
    ahead, behind = FakeClock(start=2_000_000_000.0), FakeClock(start=1_000_000.0)
    calls = 0

    async def compute(x: int) -> int:
        nonlocal calls
        calls += 1
        return x

    # The cache whose clock is ahead names the file first.
    async with SWRCache(clock=ahead, store=db) as fast, SWRCache(clock=behind, store=db) as slow:
        b = slow.cached(ttl=10, stale_ttl=10, namespace="b")(compute)
        a = fast.cached(ttl=10, stale_ttl=10, namespace="a")(compute)
        assert await b(1) == 1
        await slow.wait_idle()
        assert await a(2) == 2  # its write batch purges what has expired
        await fast.wait_idle()
    with closing(sqlite3.connect(db)) as raw:
        stored = set(raw.execute("SELECT namespace FROM swr_entries"))
    assert stored == {("a",), ("b",)}


class _FailingTags(MemoryStore):
    fail = False

    async def delete_tags(self, tags: Any) -> None:
        if self.fail:
            raise OSError("injected: tag deletion failed")
        await super().delete_tags(tags)


@pytestmark_anyio
async def test_a_failed_invalidation_is_judged_on_each_caches_own_clock() -> None:
    """After one cache's invalidate_tags fails on a shared store, another cache with a
    clock far behind distrusts its rows from before the failure (read on its own
    clock), and trusts those it writes after it."""
    store = _FailingTags()
    ahead, behind = FakeClock(start=2_000_000_000.0), FakeClock(start=1_000_000.0)
    calls = 0

    async def compute(x: int) -> int:
        nonlocal calls
        calls += 1
        return calls

    slow, fast = SWRCache(clock=behind, store=store), SWRCache(clock=ahead, store=store)
    async with slow, fast:
        f = slow.cached(ttl=100, maxsize=1, namespace="f", tags=lambda x: ["t"])(compute)
        fast.cached(namespace="other")(compute)
        assert await f(1) == 1
        store.fail = True
        await fast.invalidate_tags("t")  # fails: logged, and the store is distrusted
        store.fail = False
        assert await f(2) == 2  # evicts f(1) from memory
        assert await f(1) == 3  # its row predates the failure: recomputed, not read
        behind.advance(10)
        assert await f(4) == 4  # written after the failure...
        assert await f(1) == 3  # (evicts f(4))
        assert await f(4) == 4  # ...so read back from the store
        assert f.cache_info().store_hits == 2


@pytestmark_anyio
async def test_a_failed_invalidation_before_any_function_is_decorated_is_kept() -> None:
    """invalidate_tags failing before any function of the store was decorated still
    distrusts the rows it could not delete, for the functions decorated later."""
    clock = FakeClock()
    store = _FailingTags()
    store.put("f", stable_key((1,)), Record("old", None, clock() - 1, ("t",), None))
    await store.flush()
    async with SWRCache(clock=clock, store=store) as cache:
        store.fail = True
        await cache.invalidate_tags("t")  # fails: the row stays
        store.fail = False
        clock.advance(1)

        @cache.cached(ttl=100, namespace="f", tags=lambda x: ["t"])
        async def f(x: int) -> str:
            return "new"

        assert await f(1) == "new"  # not the row from before the failed invalidation


def test_a_failed_invalidation_outlives_the_clock_that_marked_it() -> None:
    """The mark of a failed invalidation stays when the clock that made it is gone: a
    cache on another clock that starts using the store later distrusts what it has
    not seen."""
    marks = Distrust()
    clock = FakeClock()
    marks.mark("ns", clock)
    del clock
    gc.collect()
    later = FakeClock(start=2_000_000_000.0)
    marks.watch(later)
    assert not marks.trusts("ns", "k", later() - 1, later)
    later.advance(1)
    assert marks.trusts("ns", "k", later(), later)


@pytestmark_anyio
async def test_a_cache_gone_holds_back_no_purge_of_a_shared_file(tmp_path: Path) -> None:
    """A cache with a clock of its own that named the file and is gone no longer
    holds back purging by the clocks still in use, and its clock is not kept alive."""
    db = tmp_path / "c.db"
    app_clock = FakeClock(start=2_000_000_000.0)
    app = SWRCache(clock=app_clock, store=db)
    a = app.cached(ttl=1, stale_ttl=0, namespace="a")(_double)
    old = FakeClock(start=1_000_000.0)
    tool = SWRCache(clock=old, store=db)
    await tool.aclose()
    gone = weakref.ref(old)
    del tool, old
    gc.collect()
    assert gone() is None
    assert await a(1) == 2
    await app.wait_idle()
    app_clock.advance(10)  # a(1) has expired by the only clock still in use
    assert await a(2) == 4  # this write batch purges what has expired
    await app.aclose()
    with closing(sqlite3.connect(db)) as raw:
        assert [k for (k,) in raw.execute("SELECT key FROM swr_entries")] == ["(int:2,)"]


@pytestmark_anyio
async def test_an_unopenable_file_never_fails_the_call(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A store that cannot open (a file where its directory should be) is logged, not raised."""
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where a directory should be")
    clock = FakeClock()
    with caplog.at_level(logging.WARNING, logger="aiocache_swr"):
        async with SWRCache(clock=clock, store=SQLiteStore(blocked / "c.db", clock=clock)) as c:
            f = c.cached(ttl=10)(_double)
            assert await f(3) == 6
            assert await f(3) == 6
            assert f.cache_info().store_errors >= 1


def _padded_value(x: int) -> str:
    return f"{x:>500}"


async def _padded(x: int) -> str:
    return _padded_value(x)


async def _double(x: int) -> Any:
    return x * 2


@pytest.mark.anyio
async def test_a_path_naming_the_file_of_a_given_store_object_gets_that_object(
    tmp_path: Path,
) -> None:
    """SWRCache(store=SQLiteStore(path, secret=...)) and a function given store=path share
    one store, the signed one: not a second, unsigned store writing into the file."""
    path = tmp_path / "signed.db"
    signed = SQLiteStore(path, secret=b"k" * 32)
    cache = SWRCache(store=signed)

    @cache.cached(store=str(path))
    async def f(k: int) -> int:
        return k

    assert engine_of(f)._store is signed
    async with cache:
        await f(1)
    with closing(sqlite3.connect(path)) as db:
        macs = [mac for (mac,) in db.execute("SELECT mac FROM swr_entries")]
    assert macs
    assert all(mac is not None for mac in macs)


@pytest.mark.anyio
async def test_a_fake_clock_cache_naming_a_given_stores_file_keeps_its_rows(
    tmp_path: Path,
) -> None:
    """A cache with a FakeClock that names by path the file of a given SQLiteStore (on
    the real clock) gets that store, which then purges on the earlier of the two
    clocks: the fake-clock rows are not purged by the batch that writes them."""
    path = tmp_path / "c.db"
    given = SQLiteStore(path)
    real = SWRCache(store=given)
    fake = SWRCache(store=str(path), clock=FakeClock())

    @fake.cached(ttl=60, stale_ttl=60, namespace="fake")
    async def f(k: int) -> int:
        return k

    assert engine_of(f)._store is given
    async with fake, real:
        assert await f(1) == 1
    with closing(sqlite3.connect(path)) as db:
        assert set(db.execute("SELECT namespace, key FROM swr_entries")) == {("fake", "(int:1,)")}


def test_a_path_gets_a_later_given_store_once_the_first_is_gone(tmp_path: Path) -> None:
    """Of two SQLiteStore objects given on one file, a path gets the first while it
    lives, and the second once the first has been collected: never a new store."""
    path = tmp_path / "signed.db"
    first = SQLiteStore(path, secret=b"k" * 32)
    second = SQLiteStore(path, secret=b"k" * 32)
    SWRCache(store=first)
    keep = SWRCache(store=second)
    assert SWRCache(store=str(path)).store is first
    del first
    gc.collect()
    assert SWRCache(store=str(path)).store is second
    assert keep.store is second


def test_two_store_objects_of_other_settings_on_one_file_are_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two SQLiteStore objects naming one file with another secret or max_entries each
    read and evict the other's rows: a WARNING names the file and what differs."""
    path = tmp_path / "shared.db"
    first = SWRCache(store=SQLiteStore(path, secret=b"k" * 32))
    with caplog.at_level(logging.WARNING, logger="aiocache_swr"):
        second = SWRCache(store=SQLiteStore(path, max_entries=10))
    [record] = [r for r in caplog.records if "two SQLiteStore objects" in r.getMessage()]
    assert str(path) in record.getMessage()
    assert "secret and max_entries" in record.getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="aiocache_swr"):
        third = SWRCache(store=SQLiteStore(path, secret=b"k" * 32))  # the first's settings
    assert not [r for r in caplog.records if "two SQLiteStore objects" in r.getMessage()]
    assert first.store is not second.store is not third.store


def test_the_default_namespace_of_a_module_run_with_dash_m_is_its_imported_name(
    tmp_path: Path,
) -> None:
    """``python -m jobs`` and a process importing ``jobs`` name a function's entries
    alike (``jobs.f``), so one answers from what the other stored. A script run as
    ``python jobs.py`` names them ``__main__.f``."""
    (tmp_path / "jobs.py").write_text(
        "from aiocache_swr import swr_cached\n"
        "@swr_cached(store='jobs.db')\n"
        "async def f(k):\n"
        "    return k\n"
        "if __name__ == '__main__':\n"
        "    print(f.namespace)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}

    def run(*args: str) -> str:
        return subprocess.run(
            [sys.executable, *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    assert run("-m", "jobs") == "jobs.f"
    assert run("-c", "import jobs; print(jobs.f.namespace)") == "jobs.f"
    assert run("jobs.py") == "__main__.f"


@pytest.mark.anyio
async def test_a_fake_clock_cache_given_a_store_on_the_real_clock_keeps_its_rows(
    tmp_path: Path,
) -> None:
    """A cache with a FakeClock given a SQLiteStore object on the real clock adds its
    clock to the store's purge clock: its rows outlive the batch that writes them,
    and a new cache on the same store reads them back instead of recomputing."""
    store = SQLiteStore(tmp_path / "c.db")
    clock = FakeClock()
    calls: list[int] = []

    def cached() -> tuple[SWRCache, Any]:
        cache = SWRCache(store=store, clock=clock)

        @cache.cached(ttl=60, stale_ttl=60, namespace="fake")
        async def f(k: int) -> int:
            calls.append(k)
            return k

        return cache, f

    cache, f = cached()
    async with cache:
        assert await f(1) == 1
    cache, f = cached()  # a restart, the clock unmoved: the row is fresh
    async with cache:
        assert await f(1) == 1
    assert calls == [1]
    assert f.cache_info().store_hits == 1


@pytest.mark.anyio
async def test_a_newer_value_the_store_refuses_deletes_the_older_row(tmp_path: Path) -> None:
    """When refresh() computes a value the serializer refuses, the key's older row goes
    from the store: once the new value leaves memory the key is recomputed, and the
    older value never comes back as if it were current."""
    clock = FakeClock()
    store = SQLiteStore(tmp_path / "c.db", clock=clock)
    cache = SWRCache(store=store, clock=clock)
    unpicklable = threading.Lock()
    values: list[Any] = ["v1", unpicklable, "v3"]

    @cache.cached(ttl=600, maxsize=1, namespace="ns")
    async def f(k: int) -> Any:
        return values.pop(0) if k == 1 else "other"

    async with cache:
        assert await f(1) == "v1"
        await cache.wait_idle()
        assert await f.refresh(1) is unpicklable
        assert await f(2) == "other"  # key 1 leaves memory
        await cache.wait_idle()
        assert await f(1) == "v3"
    assert f.cache_info().store_errors == 1
    assert values == []


class Tag(str, enum.Enum):  # enum.StrEnum from Python 3.11
    ALBUM = "album"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "tags", [lambda k: [Tag.ALBUM], lambda k: Tag.ALBUM], ids=["in-a-list", "alone"]
)
async def test_str_subclass_tags_are_stored_and_swept_by_their_text(
    tmp_path: Path, tags: Any
) -> None:
    """A tag that is a str subclass (a str enum member), returned in a list or alone, is
    kept as its text: the entry is persisted with it, and invalidate_tags with the member
    sweeps the row."""
    db = tmp_path / "c.db"
    clock = FakeClock()
    cache = SWRCache(store=SQLiteStore(db, clock=clock), clock=clock)

    @cache.cached(ttl=60, namespace="ns", tags=tags)
    async def f(k: int) -> int:
        return k

    async with cache:
        assert await f(1) == 1
        await cache.wait_idle()
        with closing(sqlite3.connect(db)) as raw:
            assert list(raw.execute("SELECT key, tags FROM swr_entries")) == [
                ("(int:1,)", '["album"]')
            ]
        await cache.invalidate_tags(Tag.ALBUM)
        assert f.cache_info().currsize == 0
        with closing(sqlite3.connect(db)) as raw:
            assert list(raw.execute("SELECT key FROM swr_entries")) == []
    assert f.cache_info().store_errors == 0


def _function_on(store: Any, clock: FakeClock) -> Any:
    """A function of a new cache on ``clock`` using ``store`` (a store or a path)."""
    return SWRCache(store=store, clock=clock).cached(ttl=60, namespace="ns")(_double)


def test_a_files_purge_time_is_the_earliest_clock_stamping_its_rows(tmp_path: Path) -> None:
    """Rows are purged on the earliest of the store's own clock (replaceable, as
    documented) and the clocks of the functions using it that are still alive: a replaced
    clock counts at once, and a function that is gone no longer holds purging back."""
    store = SQLiteStore(tmp_path / "c.db", clock=FakeClock(500.0))
    first = _function_on(store, FakeClock(100.0))
    assert store._purge_time() == 100.0
    store.clock = FakeClock(10.0)
    second = _function_on(store, FakeClock(200.0))
    assert store._purge_time() == 10.0
    store.clock = FakeClock(1_000.0)
    assert store._purge_time() == 100.0
    del first
    gc.collect()
    assert store._purge_time() == 200.0
    assert engine_of(second)._store is store


def test_a_store_named_by_path_stops_purging_on_a_fake_clock_once_its_functions_are_gone(
    tmp_path: Path,
) -> None:
    """The store a path makes purges on the clocks of the functions using it, and its own
    clock once the application replaces it; with none, on the real clock: once the only
    FakeClock function is gone, the fake clock, far behind, holds back no purging."""
    path = tmp_path / "c.db"
    f = _function_on(str(path), FakeClock())
    store = engine_of(f)._store
    assert isinstance(store, SQLiteStore)
    assert store._purge_time() == 1_000_000.0  # FakeClock()'s start
    store.clock = FakeClock(5.0)
    assert store._purge_time() == 5.0
    store.clock = time.time
    del f
    gc.collect()
    assert store._purge_time() > 1_700_000_000.0  # the real clock's seconds, 2023 on


def test_a_bad_store_clock_fails_at_construction(tmp_path: Path) -> None:
    """SQLiteStore(clock=...) is called once when the store is made: a clock that does not
    return seconds fails there, naming the fix, not in a later write batch."""
    with pytest.raises(TypeError, match=r"must return seconds as a number"):
        SQLiteStore(tmp_path / "c.db", clock=lambda: "now")
    with pytest.raises(TypeError, match=r"clock\(\) raised"):
        SQLiteStore(tmp_path / "c.db", clock=lambda: 1 / 0)


@pytest.mark.anyio
async def test_a_clock_that_fails_later_costs_a_batch_its_purge_not_its_writes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A clock stamping a file's rows that fails in a write batch (another store object's,
    replaced by the application) is logged, and that batch purges nothing: its rows and
    deletions are written, and no row is purged early."""
    db = tmp_path / "c.db"
    other = SQLiteStore(db)
    store = SQLiteStore(db)
    f = _function_on(store, FakeClock())

    def broken() -> float:
        raise OSError("clock unplugged")

    other.clock = broken
    with caplog.at_level(logging.WARNING, logger="aiocache_swr"):
        assert await f(1) == 2
        await engine_of(f).cache.aclose()
    assert _keys_in(db) == ["ns:(int:1,)"]
    assert any("purge no expired row" in r.getMessage() for r in caplog.records)
    assert engine_of(f).cache_info().store_errors == 0


def _keys_in(db: Path) -> list[str]:
    with closing(sqlite3.connect(db)) as raw:
        rows = raw.execute("SELECT namespace, key FROM swr_entries")
        return sorted(f"{namespace}:{key}" for namespace, key in rows)


@pytest.mark.anyio
@pytest.mark.parametrize("named", ["given", "by-path"])
async def test_a_live_caches_clock_holds_back_purging_after_store_clock_is_replaced(
    tmp_path: Path, named: str
) -> None:
    """A cache's own clock stamps its rows: replacing store.clock (documented as
    replaceable) with the real clock does not purge a live FakeClock cache's fresh row."""
    db = tmp_path / "c.db"
    clock = FakeClock()
    if named == "given":
        cache = SWRCache(store=SQLiteStore(db, clock=clock), clock=clock)
    else:
        cache = SWRCache(store=db, clock=clock)
    assert isinstance(cache.store, SQLiteStore)
    cache.store.clock = time.time
    f = cache.cached(ttl=60, stale_ttl=0, namespace="ns")(_double)
    assert await f(1) == 2
    await cache.aclose()
    assert _keys_in(db) == ["ns:(int:1,)"]


async def _name_the_file_and_go(db: Path) -> weakref.ref[FakeClock]:
    old = FakeClock()
    tool = SWRCache(clock=old, store=db)
    await tool.aclose()
    return weakref.ref(old)


@pytest.mark.anyio
async def test_a_cache_gone_that_named_the_file_first_holds_back_no_purge(tmp_path: Path) -> None:
    """The first cache to name a file by path, gone, holds back no purging by the clock of
    the cache still using it, even one running ahead of the real clock (nor does the real
    clock, which no cache of the file uses)."""
    db = tmp_path / "c.db"
    gone = await _name_the_file_and_go(db)
    app_clock = FakeClock(start=2_000_000_000.0)
    app = SWRCache(clock=app_clock, store=db)
    a = app.cached(ttl=1, stale_ttl=0, namespace="a")(_double)
    gc.collect()
    assert gone() is None
    assert await a(1) == 2
    await app.wait_idle()
    app_clock.advance(10)  # a(1) has expired on the only clock in use
    assert await a(2) == 4  # this write batch purges what has expired
    await app.aclose()
    assert _keys_in(db) == ["a:(int:2,)"]


class _SlotsClock:
    """A clock that takes no weak reference (as some C callables)."""

    __slots__ = ("now",)

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.anyio
async def test_a_gone_caches_clock_that_takes_no_weak_reference_holds_back_no_purge(
    tmp_path: Path,
) -> None:
    """A cache that is gone no longer holds back purging, even when its clock takes no
    weak reference: the store follows the cache, not the clock."""
    db = tmp_path / "c.db"
    store = SQLiteStore(db)
    fake = SWRCache(store=store, clock=_SlotsClock(1_000_000.0))
    del fake
    gc.collect()
    real = SWRCache(store=store)
    f = real.cached(ttl=60, namespace="ns")(_double)
    now = time.time()
    store.put("ns", "old", Record(1, None, now - 100, (), now - 50))  # expired
    assert await f(1) == 2  # this write batch purges what has expired
    await real.aclose()
    assert _keys_in(db) == ["ns:(int:1,)"]


@pytest.mark.anyio
async def test_two_store_objects_on_one_file_purge_on_every_clock_stamping_it(
    tmp_path: Path,
) -> None:
    """Two SQLiteStore objects on one file, a FakeClock cache on one and a real-clock cache
    on the other: the real one's write batch leaves the FakeClock cache's fresh row."""
    db = tmp_path / "c.db"
    clock = FakeClock()
    fake = SWRCache(store=SQLiteStore(db, clock=clock), clock=clock)
    real = SWRCache(store=SQLiteStore(db))
    f = fake.cached(ttl=60, stale_ttl=0, namespace="f")(_double)
    g = real.cached(ttl=60, stale_ttl=0, namespace="g")(_double)
    assert await f(1) == 2
    await fake.wait_idle()
    assert await g(1) == 2
    await real.aclose()
    await fake.aclose()
    assert _keys_in(db) == ["f:(int:1,)", "g:(int:1,)"]


@pytest.mark.anyio
async def test_a_functions_rows_are_purged_on_the_clock_it_stamps_them_with(
    tmp_path: Path,
) -> None:
    """A function stamps its rows with the clock its cache had when it was decorated: the
    cache's clock replaced afterwards does not get its fresh rows purged."""
    db = tmp_path / "c.db"
    cache = SWRCache(store=SQLiteStore(db), clock=FakeClock())
    f = cache.cached(ttl=60, stale_ttl=0, namespace="ns")(_double)
    cache.clock = time.time
    assert await f(1) == 2
    await cache.aclose()
    assert _keys_in(db) == ["ns:(int:1,)"]


def test_a_file_whose_stores_are_gone_is_forgotten(tmp_path: Path) -> None:
    """What stamps a file's rows is kept per file only while a store object on it lives."""
    from aiocache_swr._sqlite import _stampers

    paths = [tmp_path / f"{i}.db" for i in range(20)]
    stores = [SQLiteStore(path) for path in paths]
    assert all(store._path in _stampers for store in stores)
    del stores
    gc.collect()
    assert not any(path.resolve() in _stampers for path in paths)


@pytest.mark.anyio
async def test_a_failing_clock_is_logged_once_until_it_reads_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A store clock that keeps failing, or returns no number, is logged once, naming whose
    clock it is, not on every write batch; nothing is purged meanwhile."""
    db = tmp_path / "c.db"
    other = SQLiteStore(db)
    store = SQLiteStore(db)
    f = _function_on(store, FakeClock())
    readings: list[Any] = [None, True]

    def broken() -> Any:
        return readings.pop(0) if readings else 1 / 0

    other.clock = broken
    with caplog.at_level(logging.WARNING, logger="aiocache_swr"):
        for k in range(4):
            assert await f(k) == 2 * k
            await store.flush()
        await engine_of(f).cache.aclose()
    warned = [r.getMessage() for r in caplog.records if "purge no expired row" in r.getMessage()]
    assert len(warned) == 1
    assert "the clock of another SQLiteStore object on this file" in warned[0]
    assert "None" in warned[0]
    assert _keys_in(db) == [f"ns:(int:{k},)" for k in range(4)]


@pytest.mark.anyio
async def test_the_backoffs_kept_for_evicted_entries_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a store, the backoffs of keys whose refresh failed are kept for when their
    entries are read back, at most max(maxsize, the bound): the oldest go first."""
    monkeypatch.setattr("aiocache_swr._function._BACKOFF_KEYS", 2)
    clock = FakeClock()
    cache = SWRCache(store=MemoryStore(), clock=clock)
    failing = False

    @cache.cached(ttl=10, maxsize=1, namespace="ns")
    async def f(k: int) -> int:
        if failing:
            raise ConnectionError("down")
        return k

    async with cache:
        for k in range(4):
            assert await f(k) == k
        failing = True
        clock.advance(11)
        for k in range(4):
            assert await f(k) == k  # stale, read back from the store: its refresh fails
            await cache.wait_idle()
    assert list(engine_of(f)._backoffs) == [(2,), (3,)]
