"""Tests of ``profiles.py``, the py-spy profiler of benchmark rows (run by ``.ci/run``).

Not a ``bench_*.py`` module: ``report.py`` and the benchmark smoke run leave it out.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import profiles
import pytest

# py-spy raw lines as profiles.py records them (--threads --idle); the event
# loop's thread is 100.
RAW = """\
thread (100): MainThread;<module> (profiles.py:420);main (profiles.py:400);call (aiocache_swr/_function.py:955) 7
thread (100);call (aiocache_swr/_function.py:955) 3
thread (100): MainThread;Runner.run (asyncio/runners.py:118);BaseEventLoop._run_once (asyncio/base_events.py:1909);EpollSelector.select (selectors.py:468) 5
thread (100): MainThread;Handle._run (asyncio/events.py:80);SQLiteStore.get_many (aiocache_swr/_sqlite.py:993);BaseEventLoop.create_future (asyncio/base_events.py:427) 2
thread (100): MainThread;batched_read.<locals>.read (floors.py:283) 4
thread (0x7F0A1B2C3D00): MainThread;call (aiocache_swr/_function.py:942) 2
thread (100): MainThread 1
thread (200): aiocache-swr-sqlite x.db;Thread._bootstrap (threading.py:1002);_connection_worker_thread (aiosqlite/core.py:59) 11
thread (200);Thread.run (threading.py:982);_connection_worker_thread (aiosqlite/core.py:66);SQLiteStore._read_sync (aiocache_swr/_sqlite.py:1402) 6
thread (300): Thread-2;Thread._bootstrap (threading.py:1002);child.<locals>.<lambda> (profiles.py:215) 9
not a sample line
"""  # noqa: E501


def test_samples_of_the_loop_thread_go_to_the_innermost_layer() -> None:
    """Each loop-thread sample counts once, in the layer of its innermost frame that has
    one, whether or not py-spy read the thread's name or the stack's outer end."""
    profile = profiles.reduce(RAW.splitlines(), loop_thread={100})
    assert profile.ticks == 7 + 3 + 5 + 2 + 4 + 1
    assert profile.layers["engine"] == 10
    assert profile.layers[profiles.OTHER] == 1  # no frames: counted, in no layer
    assert profile.layers[profiles.WAITING] == 5
    assert profile.layers["asyncio"] == 2  # called by the store, but asyncio's own line
    assert profile.layers["floor's own code"] == 4
    assert profile.lines["call (aiocache_swr/_function.py:955)"] == 10
    assert "EpollSelector.select (selectors.py:468)" not in profile.lines  # waiting: no line


def test_a_thread_id_may_be_hex() -> None:
    """py-spy gives an id in hex where it has no native id: the child reports both."""
    profile = profiles.reduce(RAW.splitlines(), loop_thread={100, 0x7F0A1B2C3D00})
    assert profile.layers["engine"] == 12


def test_a_sqlite_thread_counts_only_while_it_runs_a_job() -> None:
    """A worker in aiosqlite's own loop waits for a job; other threads are not SQLite's."""
    profile = profiles.reduce(RAW.splitlines(), loop_thread={100})
    assert profile.layers[profiles.SQLITE] == 6


def test_figures_are_shares_of_the_mean_wall_time_per_call() -> None:
    """A layer's microseconds per call: its share of the loop thread's samples times
    the mean wall time per call."""
    profile = profiles.reduce(RAW.splitlines(), loop_thread={100})
    profile.calls, profile.seconds = 1000, 22e-3
    assert profile.micros(profile.layers["engine"]) == pytest.approx(10.0)
    assert profile.micros(profile.ticks) == pytest.approx(22.0)


def test_turns_add_up() -> None:
    """The turns of one side add up: samples, calls, time and collections."""
    total = profiles.Profile()
    for _ in range(2):
        turn = profiles.reduce(RAW.splitlines(), loop_thread={100})
        turn.calls, turn.seconds, turn.gc_seconds, turn.collections = 1000, 22e-3, 1e-3, [3, 1, 0]
        total += turn
    assert (total.ticks, total.calls, total.collections) == (44, 2000, [6, 2, 0])
    assert total.layers["engine"] == 20
    assert total.seconds == pytest.approx(44e-3)
    assert total.micros(total.layers["engine"]) == pytest.approx(10.0)


def test_unknown_rows_are_refused() -> None:
    with pytest.raises(SystemExit):
        profiles.main(["no-such-row"])


def _py_spy_or_skip() -> None:
    if not (Path(sys.executable).parent / "py-spy").exists() and shutil.which("py-spy") is None:
        pytest.skip("py-spy is not installed (the bench extra installs it)")


def _record_or_skip(row: str, side: str, work: Path) -> profiles.Profile:
    try:
        return profiles.record(row, side, 1, work)
    except profiles.ProfileError as exc:
        if "Permission denied" in str(exc) or "Operation not permitted" in str(exc):
            pytest.skip(f"py-spy may not trace processes here: {exc}")
        raise


def test_a_side_of_a_row_is_sampled_whole(tmp_path: Path) -> None:
    """One second of this library's level-2 batch: the event loop thread's layers add up
    to the whole call, the engine and a SQLite thread show, and calls were counted."""
    _py_spy_or_skip()
    profile = _record_or_skip("l2-batch", "ours", tmp_path)
    assert profile.ticks > 0
    assert profile.calls > 0
    assert profile.seconds > 0
    assert profile.layers["engine"] > 0
    assert profile.layers[profiles.SQLITE] > 0
    loop_layers = sum(n for name, n in profile.layers.items() if name != profiles.SQLITE)
    assert loop_layers == profile.ticks
    assert profile.micros(profile.ticks) == pytest.approx(profile.seconds / profile.calls * 1e6)


def test_a_row_is_written_against_its_floor(tmp_path: Path) -> None:
    """The command line: both sides of a row, into the row's file."""
    _py_spy_or_skip()
    _record_or_skip("hit", "floor", tmp_path)  # skips here if py-spy may not trace
    assert profiles.main(["hit", "--seconds", "1", "--turns", "1", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "hit.txt").read_text()
    for expected in (
        "engine",
        "floor's own code",
        "the whole call (wall time)",
        "of which the garbage collector",
        "ours: the event loop thread's busiest lines",
        "_cached_call.<locals>.plain (aiocache_swr/_function.py:",
    ):
        assert expected in text, f"{expected!r} missing from:\n{text}"


def test_a_child_that_fails_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A child that dies before it is ready is an error that says so, not a hang."""
    monkeypatch.setattr(profiles, "__file__", str(tmp_path / "missing.py"))
    with pytest.raises(profiles.ProfileError, match="did not get ready"):
        profiles.record("hit", "ours", 1, tmp_path)
