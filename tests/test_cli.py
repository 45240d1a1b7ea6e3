"""The command line: ``python -m aiocache_swr demo|stats|ls|purge|vacuum``.

Every cache file is written by the library itself (SWRCache + SQLiteStore, under
asyncio.run) and then read by the CLI, in process (``main([...])``) and as a
child process.  One row's value unpickles by calling ``os.mkdir(marker)``, so a
test sees whether anything unpickled it, in this process or a child.
"""

from __future__ import annotations

import asyncio
import errno
import io
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aiocache_swr import JSONSerializer, SQLiteStore, SWRCache, _demo
from aiocache_swr._cli import main
from aiocache_swr._sqlite import SCHEMA_VERSION
from aiocache_swr._store import Record
from aiocache_swr.testing import FakeClock

pytestmark = pytest.mark.anyio

SECRET = "correct horse battery staple"
USERS = "app.users"  # 3 rows, no expiry, tagged
RATES = "app.rates"  # 2 rows, expired
TRIP = "app.tripwire"  # 1 row, unexpired, unpickling it creates the marker directory
TIMEOUT = 120.0  # safety net for child processes only


class Tripwire:
    """A value whose unpickling runs ``os.mkdir(marker)``: proof that something unpickled it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.marker,))


@dataclass
class CacheFile:
    path: Path
    marker: Path

    @property
    def unpickled(self) -> bool:
        return self.marker.exists()


async def _write(path: Path, marker: Path) -> None:
    store = SQLiteStore(path, secret=SECRET)
    cache = SWRCache(store=store)

    @cache.cached(
        ttl=60,
        stale_ttl=None,
        namespace=USERS,
        tags=lambda user_id: [f"user:{user_id}", "team:a" if user_id < 3 else "team:b"],
    )
    async def user(user_id: int) -> dict[str, object]:
        return {"id": user_id}

    @cache.cached(ttl=3600, stale_ttl=3600, namespace=TRIP)
    async def trip(name: str) -> Tripwire:
        return Tripwire(str(marker))

    async with cache:
        for i in (1, 2, 3):
            await user(i)
        await trip("x")

    # Rows stamped a day ago, through a store whose clock agrees (or it would purge them).
    past = FakeClock(start=time.time() - 86_400)
    old_store = SQLiteStore(path, secret=SECRET, clock=past)
    old = SWRCache(store=old_store, clock=past)

    @old.cached(ttl=60, stale_ttl=60, namespace=RATES, tags=lambda cur: ["rates"])
    async def rate(currency: str) -> float:
        return 1.5

    async with old:
        await rate("EUR")
        await rate("USD")


@pytest.fixture
def cache_file(tmp_path: Path) -> CacheFile:
    path = tmp_path / "cache.db"
    marker = tmp_path / "UNPICKLED"
    asyncio.run(_write(path, marker))
    assert not marker.exists()
    return CacheFile(path, marker)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``main(args)`` in process: (status, stdout, stderr)."""
    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def child(
    *args: str, env: dict[str, str] | None = None, prefix: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m aiocache_swr args`` in a child process (under ``prefix``, a command)."""
    return subprocess.run(
        [*prefix, sys.executable, "-m", "aiocache_swr", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env={**os.environ, **(env or {})},
    )


@dataclass
class ReadOnlyDir:
    """A directory that ``run`` makes read-only (mode 0o555) and runs the CLI unable to write to."""

    path: Path
    prefix: list[str]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        self.path.chmod(0o555)
        return child(*args, prefix=self.prefix)


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[ReadOnlyDir]:
    """A directory, writable until ``run``; skips unless a child really cannot write to it.

    Root writes through permission bits (CAP_DAC_OVERRIDE): as root the child runs under
    ``setpriv --bounding-set=-dac_override``, still root, without that capability.
    """
    prefix = ["setpriv", "--bounding-set=-dac_override"] if os.geteuid() == 0 else []
    directory = tmp_path / "read-only"
    directory.mkdir()
    directory.chmod(0o555)
    try:
        probe = subprocess.run(
            [*prefix, sys.executable, "-c", "import sys; open(sys.argv[1], 'x')", "probe"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except OSError as exc:  # no setpriv
        pytest.skip(f"cannot run a child unable to write to a directory: {exc}")
    finally:
        directory.chmod(0o755)
    if "PermissionError" not in probe.stderr:
        pytest.skip(f"a child could write to a mode 0o555 directory: {probe.stderr[-200:]}")
    try:
        yield ReadOnlyDir(directory, prefix)
    finally:
        directory.chmod(0o755)


def rows(path: Path) -> set[tuple[str, str]]:
    with closing(sqlite3.connect(path)) as db:
        return set(db.execute("SELECT namespace, key FROM swr_entries"))


def edit(path: Path, sql: str) -> None:
    """Change the file by hand, as an operator with the sqlite3 shell might."""
    with closing(sqlite3.connect(path)) as db:
        db.execute(sql)
        db.commit()


def assert_bookkeeping(path: Path) -> None:
    """The triggers' work is intact: row counter exact, no tag row without its entry."""
    with closing(sqlite3.connect(path)) as db:
        (count,) = db.execute("SELECT count(*) FROM swr_entries").fetchone()
        (counter,) = db.execute("SELECT value FROM swr_meta WHERE name = 'entries'").fetchone()
        (orphans,) = db.execute(
            "SELECT count(*) FROM swr_tags AS t WHERE NOT EXISTS (SELECT 1 FROM swr_entries AS e"
            " WHERE e.namespace = t.namespace AND e.key = t.key)"
        ).fetchone()
    assert counter == count
    assert orphans == 0


# ---------------------------------------------------------------------- demo


def test_demo_runs_as_a_module_and_prints_every_step() -> None:
    """`python -m aiocache_swr demo` exits 0 and prints each step with a timing."""
    done = child("demo")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for step in (
        "1. miss",
        "2. fresh hit",
        "3. stale hit",
        "the background refresh finishes",
        "4. failing backend: the stale value is served",
        "refresh_errors=1",
        "5. 100 concurrent callers, cold key: 1 API call",
        "6. restart: answered from disk (store_hits=1)",
        "demo finished",
    ):
        assert step in out, step
    assert " ms " in out
    assert "UNEXPECTED" not in out
    assert "Traceback" not in done.stderr


def test_demo_in_process_returns_0(capsys: pytest.CaptureFixture[str]) -> None:
    """main(['demo']) returns 0 with every expectation met and leaves logging as it was."""
    import logging

    log = logging.getLogger("aiocache_swr")
    handlers, propagate = list(log.handlers), log.propagate
    code, out, _ = cli(capsys, "demo")
    assert code == 0, out
    assert "UNEXPECTED" not in out
    assert (log.handlers, log.propagate) == (handlers, propagate)


def test_demo_path_keeps_a_cache_file_the_other_commands_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """demo --path writes a real cache file; stats reads its two entries; a second run refuses."""
    path = tmp_path / "demo.db"
    assert cli(capsys, "demo", "--path", str(path))[0] == 0
    code, out, _ = cli(capsys, "stats", "--json", str(path))
    assert code == 0
    assert json.loads(out)["entries"] == 2
    code, _, err = cli(capsys, "demo", "--path", str(path))
    assert code == 1
    assert "already exists" in err


@pytest.mark.parametrize("name", [":memory:", "file:demo.db"])
def test_demo_path_that_sqlite_store_refuses_fails_in_one_line(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """demo --path ':memory:' or a 'file:' URI: status 1, one line naming the fix, no file."""
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "demo", "--path", name)
    assert (code, out) == (1, "")
    assert err.count("\n") == 1
    assert err.startswith(f"aiocache-swr demo: error: {name}: ")
    assert "give --path a plain file name" in err
    assert list(tmp_path.iterdir()) == []


def test_demo_path_that_cannot_be_created_fails_in_one_line_before_running(
    tmp_path: Path,
) -> None:
    """demo --path under a regular file: status 1, one line on stderr, no step run, no file."""
    (tmp_path / "a-file").touch()
    done = child("demo", "--path", str(tmp_path / "a-file" / "demo.db"))
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"aiocache-swr demo: error: {tmp_path}/a-file/demo.db: ")
    assert "cannot create the cache file" in done.stderr
    assert "give --path a file in a directory you can write to" in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"]


def test_demo_path_in_a_read_only_directory_fails_in_one_line_before_running(
    read_only_dir: ReadOnlyDir,
) -> None:
    """demo --path in a directory it cannot write to: status 1, one line, no step run, no file."""
    path = read_only_dir.path / "demo.db"
    done = read_only_dir.run("demo", "--path", str(path))
    assert (done.returncode, done.stdout) == (1, ""), done.stdout + done.stderr
    assert done.stderr.count("\n") == 1
    assert f"{path}: cannot create the cache file" in done.stderr
    assert "Permission denied" in done.stderr
    assert list(read_only_dir.path.iterdir()) == []


def test_demo_path_that_fails_after_making_its_directory_leaves_nothing(tmp_path: Path) -> None:
    """demo --path new/NAME, NAME too long: status 1, one line, the directory it made removed."""
    done = child("demo", "--path", str(tmp_path / "new" / ("x" * 300 + ".db")))
    assert (done.returncode, done.stdout) == (1, ""), done.stdout + done.stderr
    assert done.stderr.count("\n") == 1
    assert "cannot create the cache file" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_demo_path_made_by_someone_else_meanwhile_is_refused_and_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file another program makes at --path after the demo checked it: the demo creates
    its file exclusively, so it refuses that one ("already exists"), runs no step, and
    neither writes to it nor removes it."""
    path = tmp_path / "new" / "demo.db"
    made_directories = _demo._Made.directories

    def then_someone_else(made: Any) -> None:
        made_directories(made)
        with closing(sqlite3.connect(made.target)) as db:
            db.execute("CREATE TABLE theirs (x)")
            db.commit()

    monkeypatch.setattr(_demo._Made, "directories", then_someone_else)
    before_run = path.exists()
    code, out, err = cli(capsys, "demo", "--path", str(path))
    assert (before_run, code, out) == (False, 1, "")
    assert err.count("\n") == 1
    assert f"{path}: already exists" in err
    with closing(sqlite3.connect(path)) as db:
        assert [n for (n,) in db.execute("SELECT name FROM sqlite_master")] == ["theirs"]


def test_demo_path_interrupted_while_its_file_is_made_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C while the demo makes its file (here, as the store gives it its schema): the
    file and the directories it made are removed, so the same --path works next time."""
    path = tmp_path / "new" / "demo.db"

    async def interrupted(store: SQLiteStore, namespace: str) -> None:
        assert path.exists()  # made, and about to get its schema
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(SQLiteStore, "clear", interrupted)
        code, out, _ = cli(capsys, "demo", "--path", str(path))
    assert (code, out) == (130, "")
    assert list(tmp_path.iterdir()) == []
    assert cli(capsys, "demo", "--path", str(path))[0] == 0


@pytest.mark.parametrize("given", ["new/../made/{long}", "~/made/{long}"])
def test_demo_path_not_in_canonical_form_that_fails_leaves_nothing(
    given: str, tmp_path: Path
) -> None:
    """demo --path with '..' or '~' whose file cannot be made (a name too long): what it
    made is removed where the store would have put it, not where the path reads."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "aiocache_swr", "demo", "--path", given.format(long="x" * 300)],
        cwd=work,
        env={**os.environ, "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert (done.returncode, done.stdout) == (1, ""), done.stdout + done.stderr
    assert "cannot create the cache file" in done.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["home", "work"]


def test_demo_path_naming_an_existing_file_through_dot_dot_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """demo --path missing/../cache.db, where cache.db exists: "already exists", as the
    store resolves the path; the file is left as it was."""
    existing = tmp_path / "cache.db"
    existing.write_bytes(b"not the demo's")
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "demo", "--path", "missing/../cache.db")
    assert (code, out) == (1, "")
    assert "already exists" in err
    assert existing.read_bytes() == b"not the demo's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.db"]


def test_demo_path_interrupted_keeps_side_files_that_were_there_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A -wal or -journal left beside a missing --path is not the demo's: interrupted while
    it makes its file, the demo removes that file and leaves those."""
    path = tmp_path / "demo.db"
    for suffix in ("-wal", "-journal"):
        Path(f"{path}{suffix}").write_bytes(b"someone else's")

    async def interrupted(store: SQLiteStore, namespace: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(SQLiteStore, "clear", interrupted)
    assert cli(capsys, "demo", "--path", str(path))[0] == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.db-journal", "demo.db-wal"]


@pytest.mark.parametrize("given", ["~no-such-user-here/demo.db", "loop/demo.db"])
def test_demo_path_that_cannot_be_resolved_fails_in_one_line(
    given: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """demo --path through an unknown ~user or a symlink loop: status 1, one line."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "loop").symlink_to("loop")
    code, out, err = cli(capsys, "demo", "--path", given)
    assert (code, out) == (1, "")
    assert err.count("\n") == 1
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (" ", "names no file"),
        ("", "names no file"),
        ("out/", "out/: names a directory"),
        ("out/.", "out/.: names a directory"),
        (".", ".: names a directory"),
    ],
    ids=["blank", "empty", "trailing-slash", "trailing-dot", "dot"],
)
def test_demo_path_that_names_no_file_says_why(
    given: str,
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """demo --path ' ' or 'out/': status 1, one line saying why, and no file made."""
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "demo", "--path", given)
    assert (code, out) == (1, "")
    assert err.count("\n") == 1
    assert expected in err
    assert list(tmp_path.iterdir()) == []


def test_demo_path_that_is_a_dangling_symlink_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """demo --path naming a symlink to nothing: "already exists" (the link does); nothing
    is made where it points."""
    link = tmp_path / "link.db"
    link.symlink_to(tmp_path / "gone" / "target.db")
    code, out, err = cli(capsys, "demo", "--path", str(link))
    assert (code, out) == (1, "")
    assert "already exists" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.db"]


def test_demo_path_interrupted_after_its_file_was_replaced_leaves_it_and_its_side_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another program replaces the demo's new file (and writes a -wal beside it) before the
    demo is interrupted: neither that file nor its side file is removed; a dangling
    symlink left beside the path before is not the demo's either."""
    path = tmp_path / "demo.db"
    Path(f"{path}-shm").symlink_to(tmp_path / "nowhere")

    def replace_it() -> None:
        theirs = tmp_path / "theirs.db"
        theirs.write_bytes(b"their database")
        os.replace(theirs, path)
        Path(f"{path}-wal").write_bytes(b"their log")

    async def replaced_then_interrupted(store: SQLiteStore, namespace: str) -> None:
        replace_it()
        raise KeyboardInterrupt

    monkeypatch.setattr(SQLiteStore, "clear", replaced_then_interrupted)
    assert cli(capsys, "demo", "--path", str(path))[0] == 130
    assert path.read_bytes() == b"their database"
    assert Path(f"{path}-wal").read_bytes() == b"their log"
    assert Path(f"{path}-shm").is_symlink()


def test_demo_path_whose_new_file_cannot_be_examined_removes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failure right after the demo made its file (here its fstat): status 1, one line,
    and the file removed, so that the same --path works next time."""
    path = tmp_path / "demo.db"

    def failing(fd: int) -> os.stat_result:
        raise OSError(5, "Input/output error")

    with monkeypatch.context() as patched:
        patched.setattr(_demo.os, "fstat", failing)
        code, _, err = cli(capsys, "demo", "--path", str(path))
    assert code == 1
    assert "cannot create the cache file" in err
    assert list(tmp_path.iterdir()) == []
    assert cli(capsys, "demo", "--path", str(path))[0] == 0


# ------------------------------------------------------------------- parsing


@pytest.mark.parametrize("command", ["demo", "stats", "ls", "purge", "vacuum"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`COMMAND --help` prints its usage and exits 0."""
    code, out, _ = cli(capsys, command, "--help")
    assert code == 0
    assert out.startswith(f"usage: aiocache-swr {command}")


def test_top_level_help_lists_the_commands() -> None:
    """`python -m aiocache_swr --help` lists every command."""
    done = child("--help")
    assert done.returncode == 0
    for command in ("demo", "stats", "ls", "purge", "vacuum"):
        assert command in done.stdout


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["stats"],
        ["ls", "x.db", "--limit", "-1"],
        ["ls", "x.db", "--secret", "s"],
        ["ls", "x.db", "--values", "--secret", "s", "--secret-env", "S"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """No command, an unknown one, a missing PATH, a bad option: status 2, no traceback."""
    code, _, err = cli(capsys, *argv)
    assert code == 2
    assert "error" in err
    assert "Traceback" not in err


def test_ls_limit_beyond_sqlite_integers_is_a_usage_error(
    cache_file: CacheFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """ls --limit above 2**63 - 1 (SQLite's largest integer): status 2, saying the maximum."""
    path = str(cache_file.path)
    code, out, err = cli(capsys, "ls", path, "--limit", str(2**63))
    assert (code, out) == (2, "")
    assert f"--limit: must be at most {2**63 - 1} (0: no limit), got {2**63}" in err
    code, out, _ = cli(capsys, "ls", path, "--limit", str(2**63 - 1))
    assert code == 0
    assert out.splitlines()[-1] == "6 of 6 entries"


@pytest.mark.parametrize("selectors", [[], ["--all", "--expired"], ["--tag", "a", "--all"]])
def test_purge_needs_exactly_one_selector(
    selectors: list[str], cache_file: CacheFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """purge without a selector, or with two, is a usage error (2) and deletes nothing."""
    before = rows(cache_file.path)
    code, _, err = cli(capsys, "purge", str(cache_file.path), *selectors)
    assert code == 2
    assert "--expired" in err
    assert rows(cache_file.path) == before


# --------------------------------------------------------------------- stats


def test_stats_json_counts_what_the_file_holds(
    cache_file: CacheFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """stats --json: entries per namespace, expired/unexpired/no-expiry, tags, ages, sizes."""
    code, out, _ = cli(capsys, "stats", "--json", str(cache_file.path))
    assert code == 0
    report = json.loads(out)
    assert report["entries"] == report["entries_counter"] == 6
    assert (report["expired"], report["unexpired"], report["no_expiry"]) == (2, 1, 3)
    assert report["signed"] == 6
    assert report["distinct_tags"] == 6  # user:1..3, team:a, team:b, rates
    assert report["tagged_entries"] == 5
    assert report["schema_version"] == SCHEMA_VERSION
    assert report["file_bytes"] == cache_file.path.stat().st_size
    assert report["oldest_created"] < time.time() - 80_000 < report["newest_created"]
    by_ns = {ns["namespace"]: ns for ns in report["namespaces"]}
    assert set(by_ns) == {USERS, RATES, TRIP}
    assert (by_ns[USERS]["entries"], by_ns[USERS]["no_expiry"]) == (3, 3)
    assert (by_ns[RATES]["entries"], by_ns[RATES]["expired"]) == (2, 2)
    assert (by_ns[TRIP]["entries"], by_ns[TRIP]["unexpired"]) == (1, 1)
    assert not cache_file.unpickled


def test_stats_text_is_a_readable_summary(
    cache_file: CacheFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """stats prints labelled lines, says fresh/stale is unknowable, and a namespace table."""
    code, out, _ = cli(capsys, "stats", str(cache_file.path))
    assert code == 0
    assert "entries:      6" in out
    assert "expired:      2" in out
    assert "does not store ttl" in out
    table = out[out.index("namespace") :].splitlines()
    assert table[0].split()[:4] == ["namespace", "entries", "expired", "unexpired"]
    assert any(line.split()[:5] == [RATES, "2", "2", "0", "0"] for line in table)


def test_stats_and_ls_leave_the_file_untouched(
    cache_file: CacheFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """stats and ls open the file read-only: its bytes do not change, nothing goes to the WAL.

    (SQLite may create an empty -wal and a -shm next to a WAL file even for a read-only
    connection; they get the database file's permission bits.)
    """
    before = cache_file.path.read_bytes()
    for argv in (["stats"], ["ls"], ["ls", "--json"], ["stats", "--json"]):
        assert cli(capsys, *argv, str(cache_file.path))[0] == 0
    assert cache_file.path.read_bytes() == before
    for suffix in ("-wal", "-shm"):
        side = Path(f"{cache_file.path}{suffix}")
        if side.exists():
            assert stat.S_IMODE(side.stat().st_mode) == 0o600
    wal = Path(f"{cache_file.path}-wal")
    assert not wal.exists() or wal.stat().st_size == 0


def test_stats_and_ls_leave_wal_and_shm_files_as_the_readme_says(
    cache_file: CacheFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """stats and ls leave an empty -wal and a -shm beside a closed file, as the README says."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = " ".join(readme[readme.index("## The command line") :].split("\n## ")[0].split())
    assert (
        "so `stats` and `ls` leave an empty `cache.db-wal` and a `cache.db-shm` (owner-only,"
        " as the file is) beside a file that was closed without them" in section
    )
    for argv in (["stats"], ["ls"]):
        for suffix in ("-wal", "-shm"):
            Path(f"{cache_file.path}{suffix}").unlink(missing_ok=True)
        assert cli(capsys, *argv, str(cache_file.path))[0] == 0
        wal, shm = Path(f"{cache_file.path}-wal"), Path(f"{cache_file.path}-shm")
        assert wal.stat().st_size == 0
        assert stat.S_IMODE(wal.stat().st_mode) == stat.S_IMODE(shm.stat().st_mode) == 0o600


def test_stats_and_ls_show_a_hand_edited_time_as_stored(
    cache_file: CacheFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """A created or expires that is text, a blob or infinite: stats counts it, ls shows it."""
    with closing(sqlite3.connect(cache_file.path)) as db:
        for key, created in (
            ("(int:1,)", "notanumber"),
            ("(int:2,)", b"\x01"),
            ("(int:3,)", 1e999),
        ):
            db.execute(
                "UPDATE swr_entries SET created = ? WHERE namespace = ? AND key = ?",
                (created, USERS, key),
            )
        db.execute("UPDATE swr_entries SET expires = 'x' WHERE namespace = ?", (TRIP,))
        db.commit()
    code, out, err = cli(capsys, "stats", "--json", str(cache_file.path))
    assert (code, err) == (0, "")
    report = json.loads(out)
    assert report["bad_created"] == 3
    by_ns = {ns["namespace"]: ns for ns in report["namespaces"]}
    assert (by_ns[USERS]["bad_created"], by_ns[USERS]["oldest_created"]) == (3, None)
    assert report["oldest_created"] == by_ns[RATES]["oldest_created"] < time.time() - 80_000
    code, out, err = cli(capsys, "stats", str(cache_file.path))
    assert (code, err) == (0, "")
    assert "bad rows:     3 whose created is not a time" in out
    code, out, err = cli(capsys, "ls", "--json", str(cache_file.path))
    assert (code, err) == (0, "")
    entries = {e["key"]: e for e in json.loads(out)["entries"]}
    assert [entries[f"(int:{i},)"]["created"] for i in (1, 2, 3)] == [
        "notanumber",
        "b'\\x01'",
        "inf",
    ]
    assert {entries[f"(int:{i},)"]["age_seconds"] for i in (1, 2, 3)} == {None}
    assert (entries["(str:'x',)"]["expires"], entries["(str:'x',)"]["expired"]) == ("x", None)
    code, out, err = cli(capsys, "ls", str(cache_file.path))
    assert (code, err) == (0, "")
    assert "'notanumber'" in out
    assert "6 of 6 entries" in out
    code, out, _ = cli(capsys, "ls", "--values", "--secret", SECRET, "--json", str(cache_file.path))
    assert code == 0
    assert {e["signature"] for e in json.loads(out)["entries"] if e["namespace"] == USERS} == {
        "bad"
    }


def test_stats_and_ls_show_names_and_tags_that_are_not_text(
    cache_file: CacheFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """A blob key or namespace, a tags column that is no JSON list of text: shown, not a crash."""
    path = cache_file.path
    edit(path, "UPDATE swr_entries SET key = x'0102' WHERE key = '(int:1,)'")
    edit(path, "UPDATE swr_entries SET tags = 5 WHERE key = '(int:2,)'")
    edit(path, "UPDATE swr_entries SET tags = '\"team:b\"' WHERE key = '(int:3,)'")
    edit(path, f"UPDATE swr_entries SET namespace = x'00ff' WHERE namespace = '{TRIP}'")
    blob_key, blob_ns = "b'\\x01\\x02'", "b'\\x00\\xff'"
    code, out, err = cli(capsys, "stats", "--json", str(path))
    assert (code, err) == (0, "")
    assert {ns["namespace"] for ns in json.loads(out)["namespaces"]} == {USERS, RATES, blob_ns}
    code, out, err = cli(capsys, "stats", str(path))
    assert (code, err) == (0, "")
    assert blob_ns in out
    code, out, err = cli(capsys, "ls", "--json", str(path))
    assert (code, err) == (0, "")
    entries = {(e["namespace"], e["key"]): e for e in json.loads(out)["entries"]}
    assert entries[USERS, blob_key]["tags"] == ["user:1", "team:a"]
    assert entries[USERS, "(int:2,)"]["tags"] == ["5"]  # the column's TEXT affinity made it text
    assert entries[USERS, "(int:3,)"]["tags"] == ['"team:b"']
    assert (blob_ns, "(str:'x',)") in entries
    code, out, err = cli(capsys, "ls", str(path))
    assert (code, err) == (0, "")
    assert blob_key in out
    assert blob_ns in out
    assert out.splitlines()[-1] == "6 of 6 entries"
    argv = ["ls", "--values", "--secret", SECRET, "--json", str(path)]
    code, out, err = cli(capsys, *argv)
    assert code == 0, err
    signatures = {(e["namespace"], e["key"]): e["signature"] for e in json.loads(out)["entries"]}
    assert signatures[blob_ns, "(str:'x',)"] == signatures[USERS, blob_key] == "bad"
    assert not cache_file.unpickled


# ------------------------------------------------------------------------ ls


def test_ls_lists_keys_ages_expiry_and_sizes(
    cache_file: CacheFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """ls prints one aligned row per entry, newest written first, and a count."""
    code, out, err = cli(capsys, "ls", str(cache_file.path))
    assert code == 0
    assert err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["namespace", "key", "age", "expires", "size", "tags", "signed"]
    body = lines[2:-1]
    assert len(body) == 6
    assert body[0].startswith(RATES)  # written last
    assert any("(int:3,)" in line and "never" in line and "team:b" in line for line in body)
    assert any(RATES in line and " ago" in line for line in body)  # expired: "... ago"
    assert lines[-1] == "6 of 6 entries"


def test_ls_without_namespace_lists_every_namespace_as_its_help_says(
    cache_file: CacheFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """ls --help says --namespace defaults to every namespace, and ls lists all three."""
    code, out, _ = cli(capsys, "ls", "--help")
    assert code == 0
    assert "default: every namespace" in " ".join(out.split())
    code, out, _ = cli(capsys, "ls", "--json", str(cache_file.path))
    assert code == 0
    assert {e["namespace"] for e in json.loads(out)["entries"]} == {USERS, RATES, TRIP}


def test_ls_json_filters_by_namespace_and_limits(
    cache_file: CacheFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """ls --json --namespace NS --limit N: N rows of NS, the total, sizes and tags; no values."""
    code, out, _ = cli(
        capsys, "ls", "--json", "--namespace", USERS, "--limit", "2", str(cache_file.path)
    )
    assert code == 0
    listing = json.loads(out)
    assert (listing["total"], listing["shown"]) == (3, 2)
    entries = listing["entries"]
    assert {e["namespace"] for e in entries} == {USERS}
    assert [e["key"] for e in entries] == ["(int:3,)", "(int:2,)"]
    assert entries[0]["tags"] == ["user:3", "team:b"]
    assert entries[0]["expires"] is None
    assert entries[0]["expired"] is None
    assert entries[0]["size"] > 0
    assert entries[0]["signed"] is True
    assert "value" not in entries[0]


def test_ls_without_values_never_unpickles(
    cache_file: CacheFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """No command unpickles a row unless `ls --values` is given (in process and in a child)."""
    path = str(cache_file.path)
    for argv in (["ls", path], ["ls", "--json", path], ["stats", path], ["stats", "--json", path]):
        assert cli(capsys, *argv)[0] == 0
        done = child(*argv)
        assert done.returncode == 0, done.stderr
    assert cli(capsys, "purge", "--dry-run", "--all", path)[0] == 0
    assert cli(capsys, "purge", "--expired", path)[0] == 0
    assert cli(capsys, "vacuum", path)[0] == 0
    assert not cache_file.unpickled
    done = child("ls", "--values", path)  # the tripwire does work
    assert done.returncode == 0, done.stderr
    assert cache_file.unpickled


def test_ls_values_warns_that_pickle_runs_code(
    cache_file: CacheFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """ls --values: a warning that unpickling runs code, then values of the listed rows only."""
    code, out, err = cli(
        capsys, "ls", "--values", "--json", "--namespace", USERS, str(cache_file.path)
    )
    assert code == 0
    assert "unpickling runs code" in err
    assert "--secret" in err
    values = {
        e["key"]: (e["value"], e["version"], e["signature"]) for e in json.loads(out)["entries"]
    }
    assert values["(int:1,)"] == ("{'id': 1}", "None", "unchecked")
    assert not cache_file.unpickled  # only the listed rows are deserialized


def test_ls_values_with_the_right_secret_verifies_then_unpickles(
    cache_file: CacheFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """ls --values --secret-env: every row's signature verifies ("ok") before it is unpickled."""
    done = child(
        "ls",
        "--values",
        "--json",
        "--secret-env",
        "CACHE_SECRET",
        str(cache_file.path),
        env={"CACHE_SECRET": SECRET},
    )
    assert done.returncode == 0, done.stderr
    assert "only when their signature verifies" in done.stderr
    entries = json.loads(done.stdout)["entries"]
    assert {e["signature"] for e in entries} == {"ok"}
    assert cache_file.unpickled


def test_ls_values_with_a_wrong_secret_unpickles_nothing(
    cache_file: CacheFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """ls --values --secret WRONG: every row is reported "bad" and none is unpickled."""
    code, out, _ = cli(
        capsys, "ls", "--values", "--secret", "wrong", "--json", str(cache_file.path)
    )
    assert code == 0
    entries = json.loads(out)["entries"]
    assert {e["signature"] for e in entries} == {"bad"}
    assert {e["value"] for e in entries} == {None}
    assert not cache_file.unpickled
    code, out, _ = cli(capsys, "ls", "--values", "--secret", "wrong", str(cache_file.path))
    assert code == 0
    assert "bad signature: not deserialized" in out
    assert not cache_file.unpickled


@pytest.mark.parametrize("option", ["--secret", "--secret-env"])
def test_ls_values_secret_that_is_not_utf8_verifies_its_bytes(
    option: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A secret of bytes that are not UTF-8 (surrogate-escaped by Python) checks as those bytes."""
    path = tmp_path / "signed.db"
    secret = b"abc\xff"

    async def write() -> None:
        store = SQLiteStore(path, secret=secret)
        store.put(USERS, "(int:1,)", Record({"id": 1}, None, time.time()))
        await store.aclose()

    asyncio.run(write())
    given = secret.decode("utf-8", "surrogateescape")  # as Python decodes argv and environ
    monkeypatch.setenv("CACHE_SECRET", given)
    value = "CACHE_SECRET" if option == "--secret-env" else given
    code, out, err = cli(capsys, "ls", "--values", "--json", option, value, str(path))
    assert code == 0, err
    assert [e["signature"] for e in json.loads(out)["entries"]] == ["ok"]


@pytest.mark.parametrize("name", [":memory:", "file:x.db"])
def test_ls_values_secret_reads_a_file_named_like_sqlite_special_names(
    name: str,
    cache_file: CacheFile,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A cache file named ':memory:' or 'file:x.db' is a file to ls: --secret verifies its rows."""
    monkeypatch.chdir(cache_file.path.parent)
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{cache_file.path}{suffix}").exists():
            os.rename(f"{cache_file.path}{suffix}", f"{name}{suffix}")
    code, out, err = cli(capsys, "ls", "--values", "--secret", SECRET, "--json", name)
    assert code == 0, err
    assert {e["signature"] for e in json.loads(out)["entries"]} == {"ok"}


def test_ls_values_secret_on_an_empty_path_fails_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """ls '' --values --secret: '' is the current directory, so status 1 and one line."""
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "ls", "", "--values", "--secret", SECRET)
    assert (code, out) == (1, "")
    assert err == "aiocache-swr ls: error: .: is a directory, not a cache file\n"


def test_ls_values_json_serializer_needs_no_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A JSONSerializer file: ls --values --serializer json shows values, with no pickle warning."""
    path = tmp_path / "json.db"

    async def write() -> None:
        cache = SWRCache(store=SQLiteStore(path, serializer=JSONSerializer()))

        @cache.cached(ttl=60, namespace="j")
        async def f(x: int) -> list[int]:
            return [x, x]

        async with cache:
            await f(7)

    asyncio.run(write())
    code, out, err = cli(capsys, "ls", "--values", "--serializer", "json", str(path))
    assert code == 0
    assert err == ""
    assert "[7, 7]" in out


# ----------------------------------------------------------- schema versions


def as_version_1(path: Path, newest: tuple[str, str]) -> None:
    """Make a library-written file look as version 1 wrote it.

    Version 1 numbered writes in an indexed ``written`` column (``ls`` lists by it)
    and counted inserts with a trigger.  ``newest`` gets the highest number.
    """
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("BEGIN IMMEDIATE")
        db.execute("UPDATE swr_entries SET written = rowid")
        db.execute("UPDATE swr_entries SET written = 1000 WHERE namespace = ? AND key = ?", newest)
        db.execute("CREATE INDEX swr_entries_written ON swr_entries (written)")
        db.execute(
            "CREATE TRIGGER swr_entries_insert AFTER INSERT ON swr_entries BEGIN"
            " UPDATE swr_meta SET value = value + 1 WHERE name = 'entries'; END"
        )
        db.execute("PRAGMA user_version = 1")
        db.execute("COMMIT")


@pytest.mark.parametrize("version", [1, 2])
def test_stats_and_ls_read_schema_versions_1_and_2(
    version: int, cache_file: CacheFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """stats and ls read version 1 and 2 files, newest written first, and do not upgrade them."""
    path = cache_file.path
    if version == 1:
        as_version_1(path, newest=(USERS, "(int:1,)"))
    code, out, _ = cli(capsys, "stats", "--json", str(path))
    assert code == 0
    report = json.loads(out)
    assert report["schema_version"] == version
    assert report["entries"] == report["entries_counter"] == 6
    code, out, _ = cli(capsys, "stats", str(path))
    assert code == 0
    assert f"version {version}" in out
    code, out, _ = cli(capsys, "ls", "--json", str(path))
    assert code == 0
    listed = [(e["namespace"], e["key"]) for e in json.loads(out)["entries"]]
    if version == 1:  # by the written column
        assert listed[0] == (USERS, "(int:1,)")
        listed = listed[1:]
        users = ["(int:3,)", "(int:2,)"]
    else:  # by rowid: in write order
        users = ["(int:3,)", "(int:2,)", "(int:1,)"]
    assert [ns for ns, _ in listed] == [RATES, RATES, TRIP] + [USERS] * len(users)
    assert [key for ns, key in listed if ns == USERS] == users
    code, out, _ = cli(capsys, "ls", str(path))
    assert code == 0
    assert out.splitlines()[-1] == "6 of 6 entries"
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (version,)
    assert not cache_file.unpickled


async def test_purge_of_a_version_1_file_keeps_its_bookkeeping(
    cache_file: CacheFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """purge works on a version 1 file; the library then upgrades it with the count intact."""
    as_version_1(cache_file.path, newest=(USERS, "(int:1,)"))
    code, _, _ = cli(capsys, "purge", "--tag", "team:a", str(cache_file.path))
    assert code == 0
    assert_bookkeeping(cache_file.path)
    store = SQLiteStore(cache_file.path, secret=SECRET)
    store.put(USERS, "(int:9,)", Record({"id": 9}, 1, time.time()))
    await store.aclose()
    with closing(sqlite3.connect(cache_file.path)) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    assert_bookkeeping(cache_file.path)
    assert len(rows(cache_file.path)) == 6 - 2 - 2 + 1  # team:a purged; expired rates too


# --------------------------------------------------------------------- purge


@pytest.mark.parametrize(
    ("selector", "removed", "left"),
    [
        (["--expired"], {RATES: 2}, {USERS: 3, TRIP: 1}),
        (["--namespace", USERS], {USERS: 3}, {RATES: 2, TRIP: 1}),
        (["--tag", "team:a"], {USERS: 2}, {USERS: 1, RATES: 2, TRIP: 1}),
        (["--tag", "rates"], {RATES: 2}, {USERS: 3, TRIP: 1}),
        (["--all"], {USERS: 3, RATES: 2, TRIP: 1}, {}),
        (["--namespace", "no.such"], {}, {USERS: 3, RATES: 2, TRIP: 1}),
    ],
)
def test_purge_selectors_remove_the_right_rows(
    selector: list[str],
    removed: dict[str, int],
    left: dict[str, int],
    cache_file: CacheFile,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each selector removes exactly its rows, reports the counts, and keeps tags/counter right."""
    code, out, _ = cli(capsys, "purge", "--json", *selector, str(cache_file.path))
    assert code == 0
    report = json.loads(out)
    assert report["by_namespace"] == removed
    assert report["removed"] == sum(removed.values())
    assert report["entries_left"] == sum(left.values())
    remaining: dict[str, int] = {}
    for ns, _key in rows(cache_file.path):
        remaining[ns] = remaining.get(ns, 0) + 1
    assert remaining == left
    assert_bookkeeping(cache_file.path)
    assert not cache_file.unpickled


def test_purge_by_tag_drops_the_tag_rows_of_what_it_removed(cache_file: CacheFile) -> None:
    """purge --tag team:a leaves user 3's tags and no tag row of users 1 and 2."""
    assert child("purge", "--tag", "team:a", str(cache_file.path)).returncode == 0
    with closing(sqlite3.connect(cache_file.path)) as db:
        tags = set(db.execute("SELECT key, tag FROM swr_tags WHERE namespace = ?", (USERS,)))
    assert tags == {("(int:3,)", "user:3"), ("(int:3,)", "team:b")}


def test_purge_text_reports_the_count(
    cache_file: CacheFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """purge prints how many entries it removed, per namespace."""
    code, out, _ = cli(capsys, "purge", "--expired", str(cache_file.path))
    assert code == 0
    assert out.startswith("removed 2 entries (expired); 4 left")
    assert f"2  {RATES}" in out


@pytest.mark.parametrize("json_output", [False, True], ids=["text", "json"])
def test_purge_reports_a_namespace_that_is_not_text(
    json_output: bool, cache_file: CacheFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """purge --all of a hand-edited file with a blob namespace: status 0, the blob shown as repr."""
    edit(cache_file.path, f"UPDATE swr_entries SET namespace = x'00ff' WHERE namespace = '{TRIP}'")
    argv = ["purge", "--all", str(cache_file.path)]
    code, out, err = cli(capsys, *argv, *(["--json"] if json_output else []))
    assert (code, err) == (0, "")
    if json_output:
        assert json.loads(out)["by_namespace"] == {USERS: 3, RATES: 2, "b'\\x00\\xff'": 1}
    else:
        assert "       1  b'\\x00\\xff'\n" in out
    assert rows(cache_file.path) == set()
    assert_bookkeeping(cache_file.path)


def test_purge_dry_run_deletes_nothing(
    cache_file: CacheFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """purge --dry-run reports what it would remove and leaves every row."""
    before = rows(cache_file.path)
    code, out, _ = cli(capsys, "purge", "--dry-run", "--all", str(cache_file.path))
    assert code == 0
    assert out.startswith("would remove 6 entries (all); 0 left")
    assert rows(cache_file.path) == before


async def test_the_library_reads_the_file_after_a_purge(cache_file: CacheFile) -> None:
    """After purge --tag, the library serves what is left from disk and recomputes what went."""
    assert child("purge", "--tag", "team:a", str(cache_file.path)).returncode == 0
    calls: list[int] = []
    cache = SWRCache(store=SQLiteStore(cache_file.path, secret=SECRET))

    @cache.cached(ttl=60, stale_ttl=None, namespace=USERS)
    async def user(user_id: int) -> dict[str, object]:
        calls.append(user_id)
        return {"id": user_id}

    async with cache:
        assert await user(3) == {"id": 3}
        assert await user(1) == {"id": 1}
    assert calls == [1]
    info = user.cache_info()
    assert (info.store_hits, info.store_errors) == (1, 0)
    assert_bookkeeping(cache_file.path)


# -------------------------------------------------------------------- vacuum


def test_vacuum_shrinks_the_file_and_keeps_it_usable(
    cache_file: CacheFile, capsys: pytest.CaptureFixture[str]
) -> None:
    """vacuum after purge --all reports sizes, keeps the file owner-only and a valid cache."""
    mode = stat.S_IMODE(cache_file.path.stat().st_mode)
    assert cli(capsys, "purge", "--all", str(cache_file.path))[0] == 0
    code, out, _ = cli(capsys, "vacuum", "--json", str(cache_file.path))
    assert code == 0
    report = json.loads(out)
    assert report["bytes_after"] <= report["bytes_before"]
    assert stat.S_IMODE(cache_file.path.stat().st_mode) == mode == 0o600
    code, out, _ = cli(capsys, "vacuum", str(cache_file.path))
    assert code == 0
    assert out.startswith(f"vacuumed {cache_file.path}: ")
    code, out, _ = cli(capsys, "stats", "--json", str(cache_file.path))
    assert json.loads(out)["entries"] == 0
    assert_bookkeeping(cache_file.path)


# ------------------------------------------------------------- bad files


def _make_bad(kind: str, tmp_path: Path, cache_file: CacheFile) -> tuple[Path, str]:
    """A path that is not a usable cache file, and a fragment of the expected message."""
    if kind == "missing":
        return tmp_path / "missing.db", "no such file"
    if kind == "directory":
        return tmp_path, "is a directory"
    if kind == "text":
        path = tmp_path / "notes.txt"
        path.write_text("not a database\n" * 10)
        return path, "not a SQLite database"
    if kind == "other-sqlite":
        path = tmp_path / "other.db"
        with closing(sqlite3.connect(path)) as db:
            db.execute("CREATE TABLE t (x)")
            db.commit()
        return path, "not an aiocache-swr cache (no swr_entries"
    if kind == "empty":
        path = tmp_path / "empty.db"
        path.touch()
        return path, "not an aiocache-swr cache"
    if kind == "newer-schema":
        with closing(sqlite3.connect(cache_file.path)) as db:
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
            db.commit()
        return cache_file.path, "newer aiocache-swr"
    raise AssertionError(kind)


BAD_KINDS = ["missing", "directory", "text", "other-sqlite", "empty", "newer-schema"]
COMMANDS = [
    ["stats"],
    ["stats", "--json"],
    ["ls"],
    ["ls", "--values"],
    ["ls", "--values", "--secret", SECRET],
    ["purge", "--all"],
    ["vacuum"],
]


@pytest.mark.parametrize("kind", BAD_KINDS)
@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_file_that_is_not_a_cache_fails_with_one_line(
    kind: str,
    command: list[str],
    tmp_path: Path,
    cache_file: CacheFile,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Missing, a directory, text, another SQLite db, empty, newer schema: exit 1, one line."""
    path, expected = _make_bad(kind, tmp_path, cache_file)
    before = path.read_bytes() if path.is_file() else None
    code, out, err = cli(capsys, *command, str(path))
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"aiocache-swr {command[0]}: error: ")
    assert expected in err
    assert "Traceback" not in err
    if before is not None:
        assert path.read_bytes() == before  # nothing was changed, created or moved aside
    assert not (tmp_path / "missing.db").exists()


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_a_bad_file_fails_cleanly_in_a_child_process(
    kind: str, tmp_path: Path, cache_file: CacheFile
) -> None:
    """As a command: status 1, a one-line message on stderr, no traceback."""
    path, expected = _make_bad(kind, tmp_path, cache_file)
    done = child("stats", str(path))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert expected in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "command",
    [["stats"], ["stats", "--json"], ["ls"], ["purge", "--dry-run", "--all"]],
    ids=" ".join,
)
def test_a_cache_file_in_a_read_only_directory_fails_naming_the_directory(
    command: list[str], cache_file: CacheFile, read_only_dir: ReadOnlyDir
) -> None:
    """A WAL file in a directory SQLite cannot make its -shm in: status 1, one line saying so."""
    path = read_only_dir.path / "cache.db"
    shutil.copy2(cache_file.path, path)
    done = read_only_dir.run(*command, str(path))
    assert (done.returncode, done.stdout) == (1, ""), done.stdout + done.stderr
    assert done.stderr.count("\n") == 1
    assert "must create cache.db-shm and cache.db-wal beside a WAL-mode file" in done.stderr
    assert f"the directory {read_only_dir.path} is not writable" in done.stderr
    assert "not a usable SQLite database" not in done.stderr
    assert [p.name for p in read_only_dir.path.iterdir()] == ["cache.db"]


def test_a_cache_file_with_its_shm_but_no_wal_in_a_read_only_directory_is_named_so(
    cache_file: CacheFile, read_only_dir: ReadOnlyDir
) -> None:
    """A WAL file whose -shm is there but not its -wal, in a directory it cannot write to:
    SQLite must still make the -wal, and the one line says so."""
    path = read_only_dir.path / "cache.db"
    shutil.copy2(cache_file.path, path)
    assert child("stats", str(path)).returncode == 0  # leaves a -wal and a -shm
    os.unlink(f"{path}-wal")
    done = read_only_dir.run("stats", str(path))
    assert (done.returncode, done.stdout) == (1, ""), done.stdout + done.stderr
    assert f"the directory {read_only_dir.path} is not writable" in done.stderr


# ------------------------------------------------------- output closed early


class _ClosedPipe(io.StringIO):
    """A stdout whose reader has gone away (`... | head`)."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")


@pytest.mark.parametrize("command", [["stats"], ["ls"], ["ls", "--json"]], ids=" ".join)
def test_output_closed_early_exits_141_in_silence(
    command: list[str],
    cache_file: CacheFile,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A stdout that raises BrokenPipeError: status 141 (128 + SIGPIPE), nothing on stderr."""
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    code = main([*command, str(cache_file.path)])
    monkeypatch.undo()
    assert code == 141
    assert capsys.readouterr().err == ""


def test_a_pipe_with_no_reader_exits_141_in_silence_in_a_child(cache_file: CacheFile) -> None:
    """`aiocache-swr ls FILE | head` with head gone: status 141 and an empty stderr, as cat."""
    read, write = os.pipe()
    os.close(read)  # before the child starts: its first write finds no reader
    try:
        done = subprocess.run(
            [sys.executable, "-m", "aiocache_swr", "ls", str(cache_file.path)],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (141, "")
