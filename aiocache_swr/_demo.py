"""``python -m aiocache_swr demo``: the library's behaviour, step by step, with timings.

A simulated slow API (a real ``asyncio.sleep`` of :data:`API_DELAY` per call)
sits behind a cached function persisted in a SQLite file.  Time as the cache
sees it is a :class:`~aiocache_swr.testing.FakeClock` moved by hand, so "a
minute later" costs nothing and the run is deterministic; only the API's own
delay is real, so the whole demonstration takes about a second.

Every step checks what it shows (calls made, values returned, counters); a
surprise is printed and makes the demo exit with status 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO, TypeVar

from ._cache import SWRCache
from ._info import CacheInfo
from ._sqlite import SQLiteStore, StoreError
from ._types import SWRFunction
from .testing import FakeClock

__all__ = ["API_DELAY", "DemoFileError", "run_demo"]

T = TypeVar("T")

#: Seconds each call of the simulated API takes (really slept).
API_DELAY = 0.2
TTL = 60.0
STALE_TTL = 3600.0
CONCURRENT = 100
NAMESPACE = "demo.get_user"


class DemoFileError(Exception):
    """The demo's cache file cannot be created: nothing was run."""


class DemoFileExists(DemoFileError):
    """The demo's cache file exists (it was made meanwhile): nothing was run."""


class SlowAPI:
    """A pretend remote API: every call sleeps :data:`API_DELAY`, and it can be made to fail."""

    def __init__(self) -> None:
        self.started = 0  # calls made (numbers the answers)
        self.finished = 0  # calls that returned or raised
        self.failures = 0
        self.failing = False

    async def get_user(self, user_id: int) -> str:
        self.started += 1
        number = self.started
        try:
            await asyncio.sleep(API_DELAY)
            if self.failing:
                self.failures += 1
                raise ConnectionError("the API is down (simulated)")
            return f"user {user_id} (API call #{number})"
        finally:
            self.finished += 1


class _Captured(logging.Handler):
    """Collects the library's log records so the demo's table stays readable."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def _capture_library_logs() -> Iterator[_Captured]:
    log = logging.getLogger("aiocache_swr")
    handler = _Captured()
    saved = log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        yield handler
    finally:
        log.removeHandler(handler)
        log.propagate = saved


class _Report:
    """Prints the table and remembers whether every expectation held."""

    LABEL = 54

    def __init__(self, out: TextIO, api: SlowAPI) -> None:
        self.out = out
        self.api = api
        self.ok = True

    def line(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def header(self) -> None:
        self.line(f"  {'step':<{self.LABEL}} {'elapsed':>10}  {'API calls':>9}  answer")
        self.line(f"  {'-' * self.LABEL} {'-' * 10}  {'-' * 9}  {'-' * 24}")

    def note(self, text: str) -> None:
        self.line(f"     {text}")

    def row(self, label: str, elapsed: float, answer: str | None) -> None:
        ms = f"{elapsed * 1000:8.1f} ms"
        shown = "" if answer is None else repr(answer)
        self.line(f"  {label:<{self.LABEL}} {ms:>10}  {self.api.finished:>9}  {shown}".rstrip())

    def expect(self, condition: bool, what: str) -> None:
        if not condition:
            self.ok = False
            self.line(f"     UNEXPECTED: {what}")


async def _timed(awaitable: Awaitable[T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = await awaitable
    return time.perf_counter() - start, result


async def _create_file(path: Path) -> None:
    """Create the cache file before the first step, so that a path that cannot be one
    fails in one line, not as a store error logged at every step.

    The demo makes the file itself, exclusively (a file that appears meanwhile is
    refused, never written to nor removed), with the directories it lacks, owner-only
    as the store makes them; the store then gives it its schema.  If any of that
    fails, or is interrupted, what the demo made is removed again.
    """
    made = _Made(path)
    try:
        try:
            made.directories()
            made.file()
        except FileExistsError as exc:
            raise DemoFileExists(f"{path}: already exists; the demo writes a new file") from exc
        except OSError as exc:
            raise DemoFileError(f"{path}: cannot create the cache file ({exc})") from exc
        store = SQLiteStore(made.target)
        try:
            try:
                await store.clear(NAMESPACE)  # opens the writer, which makes the schema
            finally:
                with contextlib.suppress(StoreError):
                    await store.aclose()
        except StoreError as exc:
            reason = exc.__cause__ or exc
            raise DemoFileError(f"{path}: cannot create the cache file ({reason})") from exc
    except BaseException:
        made.remove()
        raise


class _Made:
    """The directories and the file a demo made for its cache file, to remove again."""

    def __init__(self, path: Path) -> None:
        self.target = path.expanduser().resolve()  # the file the store opens
        self.made: list[Path] = []  # in the order made
        self.identity: tuple[int, int] | None = None  # the file's, once made
        self.sides: list[Path] = []  # its side files, once it is made, if not there before

    def directories(self) -> None:
        missing = [parent for parent in self.target.parents if not parent.is_dir()]
        for directory in reversed(missing):
            try:
                os.mkdir(directory, 0o700)
            except FileExistsError:  # made meanwhile, by someone else: not ours
                continue
            self.made.append(directory)

    def file(self) -> None:
        target = self.target
        # SQLite's side files of the file this makes are this run's too, unless there
        # already (left by a database deleted without them).
        self.sides = [
            side for suffix in _SIDE_FILES if not os.path.lexists(side := Path(f"{target}{suffix}"))
        ]
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(target, flags, 0o600)
        self.made.append(target)  # at once: made, whatever happens next
        try:
            found = os.fstat(fd)
            self.identity = (found.st_dev, found.st_ino)
        finally:
            os.close(fd)

    def remove(self) -> None:
        """Remove what this made, the file's side files first, the directories last; not
        the file, nor its side files, if the file was replaced since (by device and
        inode, as far as they tell)."""
        made = list(self.made)
        if self.target in made:
            made.remove(self.target)
            if self._still_made():
                made += [self.target, *self.sides]
        for path in reversed(made):  # side files, the file, then the directories
            with contextlib.suppress(OSError):
                if path.is_dir() and not path.is_symlink():
                    path.rmdir()  # only if empty
                else:
                    path.unlink()

    def _still_made(self) -> bool:
        try:
            found = self.target.lstat()
        except OSError:
            return False
        return self.identity is None or (found.st_dev, found.st_ino) == self.identity


_SIDE_FILES = ("-wal", "-shm", "-journal")


def _make_cache(
    path: Path, clock: FakeClock, api: SlowAPI
) -> tuple[SWRCache, SWRFunction[[int], str]]:
    """What an application does at start-up: a cache on a file, and a decorated function."""
    cache = SWRCache(store=SQLiteStore(path, clock=clock), clock=clock)

    @cache.cached(ttl=TTL, stale_ttl=STALE_TTL, namespace=NAMESPACE)
    async def get_user(user_id: int) -> str:
        return await api.get_user(user_id)

    return cache, get_user


async def _run(out: TextIO, path: Path) -> bool:
    await _create_file(path)
    api = SlowAPI()
    # Started in the past by as much as the demo moves it, so the rows it leaves in the
    # file (`demo --path`) are stamped about "now", not in the future.
    clock = FakeClock(start=time.time() - 2 * (TTL + 1))
    report = _Report(out, api)
    line, note, row, expect = report.line, report.note, report.row, report.expect

    line("aiocache-swr demo")
    line(f"  a slow API: {API_DELAY * 1000:.0f} ms per call (a real asyncio.sleep)")
    line(f"  @cache.cached(ttl={TTL:g}, stale_ttl={STALE_TTL:g}) on SQLite file {path}")
    line("  the cache's time is a FakeClock moved by hand: 'clock +61 s' takes no time")
    line()
    report.header()

    cache, get_user = _make_cache(path, clock, api)
    async with cache:
        elapsed, value = await _timed(get_user(1))
        row("1. miss: computed inline, the caller waits", elapsed, value)
        expect(api.finished == 1 and value == "user 1 (API call #1)", "one API call")

        elapsed, value = await _timed(get_user(1))
        row("2. fresh hit: from memory", elapsed, value)
        expect(api.finished == 1, "no API call for a fresh hit")

        clock.advance(TTL + 1)
        note(f"clock +{TTL + 1:g} s: the entry is now stale")
        elapsed, value = await _timed(get_user(1))
        row("3. stale hit: old value at once, 1 refresh starts", elapsed, value)
        expect(value == "user 1 (API call #1)", "the stale value")
        elapsed, values = await _timed(asyncio.gather(*(get_user(1) for _ in range(10))))
        row("   10 more callers meanwhile: stale, no new refresh", elapsed, values[0])
        expect(get_user.cache_info().refreshes == 1, "exactly one background refresh")
        elapsed, _ = await _timed(cache.wait_idle())
        row("   ...the background refresh finishes (wait_idle)", elapsed, None)
        elapsed, value = await _timed(get_user(1))
        row("   fresh hit on the refreshed value", elapsed, value)
        expect(api.finished == 2 and value == "user 1 (API call #2)", "the refreshed value")

        clock.advance(TTL + 1)
        api.failing = True
        note(f"clock +{TTL + 1:g} s, and the API starts failing")
        with _capture_library_logs() as logs:
            elapsed, value = await _timed(get_user(1))
            row("4. failing backend: the stale value is served", elapsed, value)
            elapsed, _ = await _timed(cache.wait_idle())
            errors = get_user.cache_info().refresh_errors
            row(f"   ...its refresh fails: refresh_errors={errors}", elapsed, None)
            elapsed, value = await _timed(get_user(1))
            row("   next call: still stale, no retry during backoff", elapsed, value)
            await cache.wait_idle()
        expect(errors == 1 and api.failures == 1, "one failed refresh, counted")
        expect(value == "user 1 (API call #2)", "the stale value despite the failure")
        expect(api.started == 3, "no second refresh during the backoff")
        for record in logs.records:  # "<module.qualname>: background refresh of ... failed; ..."
            message = record.getMessage().rpartition(".get_user: ")[2]
            note(f"(logged at {record.levelname}: get_user: {message})")
        api.failing = False
        note("the API recovers")

        before = api.finished
        elapsed, values = await _timed(asyncio.gather(*(get_user(2) for _ in range(CONCURRENT))))
        calls = api.finished - before
        row(f"5. {CONCURRENT} concurrent callers, cold key: {calls} API call", elapsed, values[0])
        expect(calls == 1 and len(set(values)) == 1, f"{CONCURRENT} callers share one call")
        info = get_user.cache_info()

    note("restart: the cache is closed (writes flushed); a new SWRCache opens the file")
    before = api.finished
    cache2, get_user2 = _make_cache(path, clock, api)
    async with cache2:
        elapsed, value = await _timed(get_user2(2))
        hits = get_user2.cache_info().store_hits
        row(f"6. restart: answered from disk (store_hits={hits})", elapsed, value)
        expect(api.finished == before and value == values[0], "no API call after the restart")
        expect(hits == 1, "one read from the file")
    line()
    line(f"  first cache:  {_counters(info)}")
    line(f"  second cache: {_counters(get_user2.cache_info())}")
    return report.ok


def _counters(info: CacheInfo) -> str:
    fields = ("hits", "stale_hits", "misses", "refreshes", "refresh_errors", "store_hits")
    return "cache_info(): " + " ".join(f"{name}={getattr(info, name)}" for name in fields)


def run_demo(out: TextIO, path: Path | None = None) -> int:
    """Run the demonstration, printing to ``out``; return the exit status (0: all as expected).

    ``path``: the cache file to write (kept afterwards); default a file in a temporary
    directory that is removed at the end.  Raises :class:`DemoFileError`, having shown
    nothing, when the file cannot be created.
    """
    start = time.perf_counter()
    if path is not None:
        ok = asyncio.run(_run(out, path))
    else:
        with tempfile.TemporaryDirectory(prefix="aiocache-swr-demo-") as tmp:
            ok = asyncio.run(_run(out, Path(tmp) / "demo.db"))
    took = time.perf_counter() - start
    print(f"  demo finished in {took:.2f} s{'' if ok else ' WITH UNEXPECTED RESULTS'}", file=out)
    if path is not None:
        print(f"  the cache file is kept: try `python -m aiocache_swr stats {path}`", file=out)
    return 0 if ok else 1
