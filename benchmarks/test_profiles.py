"""Tests of ``profiles.py``, the py-spy profiler of benchmark rows (run by ``.ci/run``).

Not a ``bench_*.py`` module: ``report.py`` and the benchmark smoke run leave it out.
"""

from __future__ import annotations

import shutil
import subprocess
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
thread (200): aiocache-swr-sqlite x.db;Thread._bootstrap (threading.py:1002);_connection_worker_thread (aiosqlite/core.py:59) 11
thread (200);Thread.run (threading.py:982);_connection_worker_thread (aiosqlite/core.py:66);SQLiteStore._read_sync (aiocache_swr/_sqlite.py:1402) 6
thread (300): Thread-2;Thread._bootstrap (threading.py:1002);child.<locals>.<lambda> (profiles.py:215) 9
not a sample line
"""  # noqa: E501


def test_samples_of_the_loop_thread_go_to_the_innermost_layer() -> None:
    """Each loop-thread sample counts once, in the layer of its innermost frame that has
    one, whether or not py-spy read the thread's name or the stack's outer end."""
    profile = profiles.reduce(RAW.splitlines(), loop_thread=100)
    assert profile.ticks == 7 + 3 + 5 + 2 + 4
    assert profile.layers["engine"] == 10
    assert profile.layers[profiles.WAITING] == 5
    assert profile.layers["asyncio"] == 2  # called by the store, but asyncio's own line
    assert profile.layers["floor's own code"] == 4
    assert profile.lines["call (aiocache_swr/_function.py:955)"] == 10
    assert "EpollSelector.select (selectors.py:468)" not in profile.lines  # waiting: no line


def test_a_sqlite_thread_counts_only_while_it_runs_a_job() -> None:
    """A worker in aiosqlite's own loop waits for a job; other threads are not SQLite's."""
    profile = profiles.reduce(RAW.splitlines(), loop_thread=100)
    assert profile.layers[profiles.SQLITE] == 6


def test_figures_are_shares_of_the_mean_wall_time_per_call() -> None:
    """A layer's microseconds per call: its share of the loop thread's samples times
    the mean wall time per call."""
    profile = profiles.reduce(RAW.splitlines(), loop_thread=100)
    profile.calls, profile.seconds = 1000, 21e-3
    assert profile.micros(profile.layers["engine"]) == pytest.approx(10.0)
    assert profile.micros(profile.ticks) == pytest.approx(21.0)


def test_turns_add_up() -> None:
    """The turns of one side add up: samples, calls, time and collections."""
    total = profiles.Profile()
    for _ in range(2):
        turn = profiles.reduce(RAW.splitlines(), loop_thread=100)
        turn.calls, turn.seconds, turn.gc_seconds, turn.collections = 1000, 21e-3, 1e-3, [3, 1, 0]
        total += turn
    assert (total.ticks, total.calls, total.collections) == (42, 2000, [6, 2, 0])
    assert total.layers["engine"] == 20
    assert total.seconds == pytest.approx(42e-3)
    assert total.micros(total.layers["engine"]) == pytest.approx(10.0)


def test_unknown_rows_are_refused() -> None:
    with pytest.raises(SystemExit):
        profiles.main(["no-such-row"])


def test_a_row_is_profiled_against_its_floor(tmp_path: Path) -> None:
    """One short run of a level-2 row: py-spy attaches to both children, and the
    report has every layer of either side, the collector's line, and the SQLite thread."""
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists() and shutil.which("py-spy") is None:
        pytest.skip("py-spy is not installed (the bench extra installs it)")
    short = ["--seconds", "1", "--turns", "1", "--out", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, profiles.__file__, "l2-batch", *short],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 and "ptrace" in done.stderr:
        pytest.skip(f"py-spy may not trace processes here: {done.stderr.strip()[-200:]}")
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "l2-batch.txt").read_text()
    for expected in (
        "engine",
        "floor's own code",
        profiles.WAITING,
        "of which the garbage collector",
        profiles.SQLITE,
        "ours: the event loop thread's busiest lines",
    ):
        assert expected in text, f"{expected!r} missing from:\n{text}"
