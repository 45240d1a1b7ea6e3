"""The programs in examples/ run, end by themselves, and print what they promise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
TIMEOUT = 120.0  # safety net only: every example finishes in a couple of seconds


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "was destroyed" not in done.stderr, done.stderr
    assert "never retrieved" not in done.stderr, done.stderr
    return done


def example(name: str, env: dict[str, str] | None = None) -> str:
    """Run examples/NAME with warnings as errors; return its stdout."""
    return run("-W", "error", str(EXAMPLES / name), env=env).stdout


def test_slow_api_dedups_and_refreshes() -> None:
    """slow_api.py: 58 calls cost 5 requests; a stale URL is answered while refreshed."""
    out = example("slow_api.py")
    assert "50 concurrent callers of one cold URL" in out
    assert "requests so far: 4" in out
    assert "58 calls, 5 requests" in out
    assert "refresh_errors=0" in out


def test_bot_loop_ends_by_itself_and_only_the_first_tick_waits() -> None:
    """bot_loop.py: BOT_ITERATIONS bounds the loop; misses only on the first tick."""
    out = example("bot_loop.py", env={"BOT_ITERATIONS": "6", "BOT_INTERVAL": "0.01"})
    ticks = [line for line in out.splitlines() if line.startswith("tick ")]
    assert len(ticks) == 6
    assert "done: 6 ticks" in out
    assert "misses=2 " in out  # two symbols, first tick only


def test_bot_loop_restarts_warm_from_a_cache_file(tmp_path: Path) -> None:
    """bot_loop.py with BOT_CACHE_FILE: a second run answers its first tick from the file."""
    env = {"BOT_ITERATIONS": "2", "BOT_INTERVAL": "0", "BOT_CACHE_FILE": str(tmp_path / "b.db")}
    assert "store_hits=0" in example("bot_loop.py", env=env)
    out = example("bot_loop.py", env=env)
    assert "misses=2 " in out
    assert "store_hits=2" in out


def test_web_handler_serves_itself_and_stops() -> None:
    """web_handler.py: a server on an ephemeral port answers its own requests, then stops."""
    out = example("web_handler.py")
    assert "listening on http://127.0.0.1:" in out
    assert '-> 200 {"id": 1, "name": "Lovelace", "query": 2}' in out
    assert "-> 404" in out
    assert "20 concurrent GET /users/2  -> {200}" in out
    assert "database queries: 3;" in out


def test_the_fakeclock_example_passes_under_pytest() -> None:
    """examples/test_with_fakeclock.py is collected and passes when run with pytest."""
    done = run(
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "examples/test_with_fakeclock.py",
    )
    assert "5 passed" in done.stdout
    assert "warning" not in done.stdout.lower()
