"""Bad-input sweep over the public API (issue 6, item 5); extends tests/test_validation.py.

Every entry point gets wrong types and values.  The contract pinned here:

* wrong *type* -> ``TypeError``; right type, wrong *value* -> ``ValueError``;
* raised at the earliest point: decoration (or construction) when the input is
  known there, otherwise the call;
* the message names the function (its qualname) or the constructor, the
  parameter, and says the fix;
* a refused input leaves nothing behind: no in-flight registration (the same
  white-box registry check as tests/test_model.py), no queued work, consistent
  ``cache_info()`` counters, a good call still computes then hits, and a store
  never receives a value that should not be written.

Where the library falls short today the test states the desired behaviour and is
marked ``xfail(strict=True, reason="defect: ...")``.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import math
import re
import sqlite3
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from aiocache_swr import (
    BoundSWRFunction,
    JSONSerializer,
    PickleSerializer,
    SQLiteStore,
    SWRCache,
    SWRFunction,
    swr_cached,
)
from aiocache_swr._cache import _stores_by_path
from aiocache_swr._function import engine_of
from aiocache_swr._keys import stable_key
from aiocache_swr._store import MemoryStore, Record
from aiocache_swr.testing import FakeClock

from ._fetcher import Fetcher

pytestmark = pytest.mark.anyio

LOGGER = "aiocache_swr"
BAD = "bad"  # the argument on which the misbehaving key=/version=/tags= callables misbehave
_good = itertools.count()


def defect(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(reason=f"defect: {reason}", strict=True)


async def fetch_album(album_id: Any) -> Any:
    """A module-level coroutine function with a distinctive qualname to look for in messages."""
    return album_id


# How decoration-time messages name fetch_album: "swr_cached: module.qualname: ...".
FETCH_ALBUM = f"swr_cached: {__name__}.fetch_album: "


async def stream_rows(n: int) -> Any:  # an async generator function: not cacheable
    yield n


def lookup_via(cache: SWRCache, fetcher: Fetcher, **params: Any) -> SWRFunction[Any, Any]:
    """``lookup(x)``, cached by ``cache`` with ``params``, computing through ``fetcher``."""

    @cache.cached(**{"ttl": 10, **params})
    async def lookup(x: Any) -> Any:
        return await fetcher(x)

    return lookup


def message_of(info: pytest.ExceptionInfo[BaseException]) -> str:
    return str(info.value)


def assert_names(message: str, *parts: str) -> None:
    """Every part (function qualname, parameter, ...) appears in the message."""
    for part in parts:
        assert part in message, f"{part!r} missing from: {message}"


async def assert_healthy(
    f: SWRFunction[Any, Any] | BoundSWRFunction[Any, Any],
    cache: SWRCache,
    caplog: pytest.LogCaptureFixture | None = None,
) -> str:
    """Nothing was left behind by a refused call, and a good call still computes then hits.

    Returns the good argument it used.
    """
    func = engine_of(f)
    await cache.wait_idle()
    assert func._registry == {}, f"in-flight registration leaked: {func._registry}"
    runner = cache._runner
    if runner is not None:
        assert (runner.busy, runner.queued, runner.refreshing) == (0, 0, 0)
    before = f.cache_info()
    assert 0 <= before.currsize <= before.maxsize
    good = f"good-{next(_good)}"
    first = await f(good)
    assert await f(good) == first
    after = f.cache_info()
    assert (after.misses, after.hits) == (before.misses + 1, before.hits + 1)
    assert after.currsize == min(before.currsize + 1, after.maxsize)
    assert (after.refresh_errors, after.stale_hits) == (before.refresh_errors, before.stale_hits)
    await cache.wait_idle()
    assert func._registry == {}
    if caplog is not None:
        errors = [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.ERROR]
        assert errors == [], [r.getMessage() for r in errors]
    return good


def stored_keys(path: Path) -> set[str]:
    """Keys of every row in the SQLite file (read after the cache is closed)."""
    if not path.exists():
        return set()
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {key for (key,) in db.execute("SELECT key FROM swr_entries")}


def skey(*args: Any) -> str:
    return stable_key(args)


def _recursive_list() -> list[Any]:
    items: list[Any] = [1]
    items.append(items)
    return items


def _recursive_dict() -> dict[str, Any]:
    mapping: dict[str, Any] = {"a": 1}
    mapping["self"] = mapping
    return mapping


def _deep_tuple(depth: int) -> tuple[Any, ...]:
    nested: tuple[Any, ...] = ()
    for _ in range(depth):
        nested = (nested,)
    return nested


def _gen() -> Iterator[int]:
    yield 1


def _cannot_rebuild() -> None:
    raise RuntimeError("cannot rebuild this value")


class HalfSerializer:
    """Has dumps but no loads."""

    def dumps(self, obj: Any) -> bytes:
        return repr(obj).encode()


class Unloadable:
    """Pickles fine; unpickling it raises."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (_cannot_rebuild, ())


UNHASHABLE: dict[str, Callable[[], Any]] = {
    "list": lambda: [1, 2],
    "dict": lambda: {"a": 1},
    "set": lambda: {1, 2},
    "recursive-list": _recursive_list,
    "recursive-dict": _recursive_dict,
}


# == decoration time: parameters of swr_cached / SWRCache.cached ===============================


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("ttl", False),
        ("ttl", 1j),
        ("ttl", b"10"),
        ("stale_ttl", False),
        ("stale_ttl", 1j),
        ("maxsize", True),
        ("maxsize", 1.0),
        ("maxsize", math.inf),
        ("maxsize", math.nan),
        ("maxsize", b"5"),
        ("key", 5),
        ("tags", ["album"]),
        ("namespace", b"ns"),
        ("namespace", ["ns"]),
        ("store", b"cache.db"),
        ("store", 3.5),
        ("store", object()),
    ],
)
def test_wrong_parameter_types_are_type_errors_at_decoration(param: str, value: Any) -> None:
    """A parameter of the wrong type is a TypeError naming the function and the parameter;
    nothing gets registered."""
    cache = SWRCache()
    with pytest.raises(TypeError) as info:
        cache.cached(**{param: value})(fetch_album)
    assert_names(message_of(info), FETCH_ALBUM, f"{param}=")
    assert not cache._functions
    assert not cache._stores


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("ttl", -math.inf),
        ("stale_ttl", -math.inf),
        ("stale_ttl", -1e-300),
        ("maxsize", -(10**18)),
        ("maxsize", -(sys.maxsize + 1)),
    ],
)
def test_wrong_parameter_values_are_value_errors_at_decoration(param: str, value: Any) -> None:
    """A parameter of the right type but an invalid value is a ValueError naming the
    function and the parameter."""
    cache = SWRCache()
    with pytest.raises(ValueError, match=rf"{param}= must be >= ") as info:
        cache.cached(**{param: value})(fetch_album)
    assert_names(message_of(info), FETCH_ALBUM)
    assert not cache._functions


@pytest.mark.parametrize(
    ("build", "param"),
    [
        (lambda tmp: swr_cached(ttl=10**400, cache=SWRCache())(fetch_album), "ttl="),
        (lambda tmp: swr_cached(ttl=-(10**400), cache=SWRCache())(fetch_album), "ttl="),
        (lambda tmp: swr_cached(stale_ttl=10**400, cache=SWRCache())(fetch_album), "stale_ttl="),
        (lambda tmp: SWRCache(close_timeout=10**400), "close_timeout="),
        (lambda tmp: SQLiteStore(tmp / "c.db", busy_timeout=10**400), "busy_timeout="),
        (lambda tmp: FakeClock(start=10**400), "start"),
        (lambda tmp: FakeClock().advance(10**400), "advance"),
    ],
    ids=["ttl", "-ttl", "stale_ttl", "close_timeout", "busy_timeout", "start", "advance"],
)
def test_durations_beyond_float_range_are_value_errors(
    tmp_path: Path, build: Callable[[Path], Any], param: str
) -> None:
    """10**400 seconds is refused with a ValueError naming the parameter (or use None/inf)."""
    with pytest.raises(ValueError, match=re.escape(param)):
        build(tmp_path)


def test_zero_and_infinity_are_valid_durations() -> None:
    """ttl=0, stale_ttl=0 and close_timeout=0 mean something, as does inf: all accepted."""
    cache = SWRCache(close_timeout=0)
    assert cache.close_timeout == 0
    assert SWRCache(close_timeout=math.inf).close_timeout == math.inf
    for params in ({"ttl": 0}, {"stale_ttl": 0}, {"stale_ttl": math.inf}, {"ttl": None}):
        assert isinstance(cache.cached(**params)(fetch_album), SWRFunction)


@pytest.mark.parametrize("maxsize", [10**18, sys.maxsize + 1])
async def test_huge_maxsize_is_accepted_and_allocates_nothing(
    clock: FakeClock, fetcher: Fetcher, maxsize: int
) -> None:
    """maxsize beyond any real size is a valid bound: reported as given, and calls work."""
    async with SWRCache(clock=clock) as cache:
        f = lookup_via(cache, fetcher, maxsize=maxsize)
        assert f.cache_info().maxsize == maxsize
        assert f.cache_info().currsize == 0
        await assert_healthy(f, cache)


async def test_huge_max_concurrent_refreshes_is_accepted(
    clock: FakeClock, fetcher: Fetcher
) -> None:
    """max_concurrent_refreshes=sys.maxsize+1 just means no practical limit."""
    async with SWRCache(clock=clock, max_concurrent_refreshes=sys.maxsize + 1) as cache:
        f = lookup_via(cache, fetcher)
        assert await f(1) == "1:1"
        clock.advance(11)
        assert await f(1) == "1:1"  # stale, refreshed in the background
        await cache.wait_idle()
        assert await f(1) == "1:2"
        await assert_healthy(f, cache)


BAD_ARGUMENTS = [
    pytest.param({"ttl": -1}, ValueError, id="ttl"),
    pytest.param({"stale_ttl": "soon"}, TypeError, id="stale_ttl"),
    pytest.param({"maxsize": 0}, ValueError, id="maxsize"),
    pytest.param({"key": "album_id"}, TypeError, id="key"),
    pytest.param({"tags": "album"}, TypeError, id="tags"),
    pytest.param({"namespace": ""}, TypeError, id="namespace"),
    pytest.param({"store": 42}, TypeError, id="store"),
    pytest.param({"store": ":memory:"}, ValueError, id="store-path"),
    pytest.param({"cache": 42}, TypeError, id="cache"),
]


@pytest.mark.parametrize(("params", "error"), BAD_ARGUMENTS)
def test_argument_errors_are_raised_at_decoration_naming_the_function(
    params: dict[str, Any], error: type[Exception]
) -> None:
    """A bad argument of swr_cached(...) is raised when the decorator is applied (SPEC 1:
    at decoration), naming the function as module.qualname, the parameter and the fix;
    nothing gets registered."""
    cache = SWRCache()
    decorator = swr_cached(**{"cache": cache, **params})
    with pytest.raises(error) as info:
        decorator(fetch_album)
    (param,) = params
    assert message_of(info).startswith(f"{FETCH_ALBUM}{param}="), message_of(info)
    assert not cache._functions
    assert not cache._stores


@pytest.mark.parametrize(("params", "error"), BAD_ARGUMENTS)
def test_a_decorator_with_bad_arguments_never_applied_raises_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, params: dict[str, Any], error: type[Exception]
) -> None:
    """By decision, swr_cached(bad=...) itself raises nothing (no function to name yet):
    the error comes when it is applied, every time it is applied; and it opens no store."""
    monkeypatch.chdir(tmp_path)
    cache = SWRCache()
    decorator = swr_cached(**{"cache": cache, **params})
    assert not cache._functions
    assert not cache._stores
    for _ in range(2):
        with pytest.raises(error, match=re.escape(FETCH_ALBUM)):
            decorator(fetch_album)
    assert list(tmp_path.iterdir()) == []


async def fetch_artist(artist_id: Any) -> Any:
    """A second module-level coroutine function, for a decorator applied twice."""
    return artist_id


def test_a_bad_argument_names_each_function_the_decorator_is_applied_to() -> None:
    """One decorator applied to two functions names whichever is being decorated."""
    decorator = swr_cached(maxsize=0, cache=SWRCache())
    for fn in (fetch_album, fetch_artist):
        with pytest.raises(ValueError, match=re.escape(f"{__name__}.{fn.__qualname__}: ")):
            decorator(fn)


def test_a_decorator_applied_twice_resolves_its_store_path_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path given as store= is resolved when the decorator is first applied; applying
    it again gives the same store object, even after a chdir or after the application
    registered another SQLiteStore object on the newly resolved file."""
    for directory in ("one", "two"):
        (tmp_path / directory).mkdir()
    monkeypatch.chdir(tmp_path / "one")
    cache = SWRCache()
    decorator = cache.cached(store="cache.db")
    first = decorator(fetch_album)
    monkeypatch.chdir(tmp_path / "two")
    given = SQLiteStore(tmp_path / "two" / "cache.db")
    other_cache = SWRCache(store=given)  # registers given as its file's store
    second = decorator(fetch_artist)
    store = engine_of(first)._store
    assert isinstance(store, SQLiteStore)
    assert store.path == tmp_path.resolve() / "one" / "cache.db"
    assert engine_of(second)._store is store
    assert cache._stores == [store]
    assert other_cache.store is given is not store


def test_two_decorators_naming_one_path_share_one_store(tmp_path: Path) -> None:
    """Two cached(store=path) decorators, each applied, resolve the path to one store."""
    cache = SWRCache()
    path = tmp_path / "cache.db"
    first = cache.cached(store=path)(fetch_album)
    second = cache.cached(store=str(path))(fetch_artist)
    assert engine_of(first)._store is engine_of(second)._store is _stores_by_path[path.resolve()]


@pytest.mark.parametrize("value", [42, SWRCache, "default"], ids=["int", "class", "str"])
def test_cache_must_be_an_swrcache(value: Any) -> None:
    """swr_cached(cache=...) takes an SWRCache instance: TypeError naming cache= otherwise."""
    with pytest.raises(TypeError, match=r"cache=.*SWRCache"):
        swr_cached(cache=value)(fetch_album)


# -- store= -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda cls: swr_cached(store=cls, cache=SWRCache())(fetch_album),
        lambda cls: SWRCache(store=cls),
    ],
    ids=["swr_cached", "SWRCache"],
)
@pytest.mark.parametrize("cls", [SQLiteStore, MemoryStore])
def test_a_store_class_instead_of_an_instance_is_refused(
    build: Callable[[type], Any], cls: type
) -> None:
    """store=SQLiteStore (forgot the call) is a TypeError asking for an instance."""
    with pytest.raises(TypeError, match=rf"store=.*{cls.__name__}\("):
        build(cls)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (":memory:", "store=None"),
        ("file:cache.db?mode=memory", "plain file path"),
        ("", "needs a file name"),
    ],
    ids=["memory", "uri", "empty"],
)
def test_store_strings_are_checked_like_sqlitestore_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, match: str
) -> None:
    """store=':memory:' / a URI / '' fail at decoration exactly as SQLiteStore(path) does."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=re.escape(match)):
        swr_cached(store=value, cache=SWRCache())(fetch_album)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("as_str", [False, True])
@pytest.mark.parametrize(
    "build",
    [
        lambda target, cache: swr_cached(store=target, cache=cache)(fetch_album),
        lambda target, cache: SWRCache(store=target),
    ],
    ids=["swr_cached", "SWRCache"],
)
def test_store_directory_is_a_value_error_suggesting_a_file(
    tmp_path: Path, build: Callable[[Any, SWRCache], Any], as_str: bool
) -> None:
    """store=<a directory> is a ValueError suggesting a file inside it; nothing is registered."""
    target: Any = str(tmp_path) if as_str else tmp_path
    cache = SWRCache()
    with pytest.raises(ValueError, match="is a directory; give a file inside it") as info:
        build(target, cache)
    assert_names(message_of(info), str(tmp_path.resolve() / "cache.db"))
    assert tmp_path.resolve() not in _stores_by_path
    assert not cache._functions
    assert list(tmp_path.iterdir()) == []


async def test_store_in_a_missing_directory_is_created(
    tmp_path: Path, clock: FakeClock, fetcher: Fetcher
) -> None:
    """store= under directories that do not exist yet: they are created and rows written."""
    path = tmp_path / "not" / "yet" / "cache.db"
    async with SWRCache(clock=clock, store=path) as cache:
        f = lookup_via(cache, fetcher)
        assert await f(1) == "1:1"
        await assert_healthy(f, cache)
    assert skey(1) in stored_keys(path)


async def test_store_under_a_regular_file_never_fails_the_call(
    tmp_path: Path, clock: FakeClock, fetcher: Fetcher, caplog: pytest.LogCaptureFixture
) -> None:
    """A store path that cannot exist (its parent is a file): calls work, the error is logged."""
    (tmp_path / "plain").write_text("not a directory")
    path = tmp_path / "plain" / "cache.db"
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        async with SWRCache(clock=clock, store=path) as cache:
            f = lookup_via(cache, fetcher)
            assert await f(1) == "1:1"
            assert await f(1) == "1:1"
            assert f.cache_info().store_errors >= 1
            await assert_healthy(f, cache, caplog)
    assert str(path) in caplog.text
    assert "Not a directory" in caplog.text


# == decoration time: what is decorated ========================================================


class SyncThing:
    def method(self, x: int) -> int:
        return x


class AsyncCallable:
    async def __call__(self, x: Any) -> Any:
        return x


@pytest.mark.parametrize(
    ("obj", "name"),
    [
        (lambda x: x, "<lambda>"),
        (SyncThing, "SyncThing"),
        (AsyncCallable, "AsyncCallable"),  # the class: calling it is sync, its instances are not
        (SyncThing.method, "SyncThing.method"),
        (SyncThing().method, "SyncThing.method"),
        (print, "print"),
        (None, "None"),
        (42, "42"),
    ],
    ids=["lambda", "class", "async-callable-class", "function", "bound", "builtin", "None", "int"],
)
def test_non_coroutine_callables_are_refused_naming_them(obj: Any, name: str) -> None:
    """Anything but a coroutine function (or async-callable object) is a TypeError naming it."""
    cache = SWRCache()
    with pytest.raises(TypeError, match=r"is not a coroutine function.*async def") as info:
        cache.cached()(obj)
    assert_names(message_of(info), name)
    assert not cache._functions


def test_async_generator_function_is_refused_saying_why() -> None:
    """An async generator cannot be cached: the TypeError says it is a generator."""
    with pytest.raises(TypeError, match="generator") as info:
        swr_cached(cache=SWRCache())(stream_rows)  # type: ignore[arg-type]
    assert_names(message_of(info), stream_rows.__qualname__)


@pytest.mark.parametrize("wrapper", [staticmethod, classmethod])
def test_staticmethod_or_classmethod_object_is_refused_explaining_the_order(
    wrapper: Callable[[Any], Any],
) -> None:
    """@swr_cached above @staticmethod: the TypeError tells to put it below (closer to def)."""
    with pytest.raises(TypeError, match=wrapper.__name__) as info:  # type: ignore[attr-defined]
        swr_cached(cache=SWRCache())(wrapper(fetch_album))
    assert_names(message_of(info), fetch_album.__qualname__)


def test_coroutine_object_is_refused_saying_pass_the_function() -> None:
    """Passing fetch_album(1) instead of fetch_album: TypeError saying 'coroutine object'."""
    coro = fetch_album(1)
    try:
        with pytest.raises(TypeError, match="coroutine object"):
            swr_cached(cache=SWRCache())(coro)  # type: ignore[arg-type]
    finally:
        coro.close()


async def test_async_callables_of_every_kind_are_accepted(clock: FakeClock) -> None:
    """Bound async methods, partials of async functions and async-callable instances work."""

    class Repo:
        def __init__(self) -> None:
            self.calls = 0

        async def load(self, x: Any) -> Any:
            self.calls += 1
            return (x, self.calls)

    async def scaled(factor: int, x: Any) -> Any:
        return (factor, x)

    repo = Repo()
    async with SWRCache(clock=clock) as cache:
        for target in (repo.load, functools.partial(scaled, 3), AsyncCallable()):
            f = cache.cached(ttl=10)(target)
            first = await f("k")
            assert await f("k") == first
            assert f.cache_info().hits == 1
            await assert_healthy(f, cache)
    assert repo.calls == 2  # "k", then assert_healthy's good key (its second call is a hit)


@pytest.mark.parametrize(
    "target",
    [functools.partial(fetch_album), AsyncCallable()],
    ids=["partial", "instance"],
)
def test_callable_without_a_stable_name_needs_a_namespace_with_a_store(
    tmp_path: Path, target: Any
) -> None:
    """Persisting such a callable without namespace= is a TypeError asking for namespace=."""
    cache = SWRCache(store=MemoryStore())
    with pytest.raises(TypeError, match="namespace="):
        cache.cached()(target)
    assert "0x" not in cache.cached(namespace="albums")(target).namespace


def test_closures_of_one_factory_on_one_store_are_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two closures made by one factory would share the default namespace
    (module.qualname) in a store, reading each other's entries: decorating the second
    while the first lives logs a WARNING asking for namespace= (a warning: a closure
    no longer used may still be referenced, by a traceback say). Not with namespace=,
    without a store, or for one function decorated twice."""
    store = MemoryStore()
    cache = SWRCache(store=store)

    def client_for(base: str, **options: Any) -> Any:
        @cache.cached(**options)
        async def fetch(path: str) -> str:
            return f"{base}/{path}"

        return fetch

    def clashes() -> list[str]:
        found = [r.getMessage() for r in caplog.records if "made more than once" in r.getMessage()]
        caplog.clear()
        return found

    with caplog.at_level(logging.WARNING, logger="aiocache_swr"):
        users = client_for("https://users")
        assert clashes() == []
        orders = client_for("https://orders")
        [message] = clashes()
        assert "client_for.<locals>.fetch" in message
        assert "namespace=" in message
        client_for("https://orders", namespace="orders")
        assert clashes() == []
        memory_only = SWRCache()

        async def plain(path: str) -> str:
            return path

        memory_only.cached()(plain)
        memory_only.cached(ttl=1)(plain)
        cache.cached()(plain)
        cache.cached(ttl=1)(plain)  # the same function twice: the same data, no clash
        assert clashes() == []
    assert users.namespace == orders.namespace  # what the warning is about


# == call time: arguments that cannot form a key ===============================================


async def _call(f: Any, arg: Any) -> Any:
    return await f(arg)


async def _call_kw(f: Any, arg: Any) -> Any:
    return await f(x=arg)


async def _invalidate(f: Any, arg: Any) -> Any:
    return await f.invalidate(arg)


async def _refresh(f: Any, arg: Any) -> Any:
    return await f.refresh(arg)


_KEY_OPS = [
    pytest.param(_call, id="call"),
    pytest.param(_call_kw, id="call-kw"),
    pytest.param(_invalidate, id="invalidate"),
    pytest.param(_refresh, id="refresh"),
]


@pytest.mark.parametrize("op", _KEY_OPS)
@pytest.mark.parametrize("kind", list(UNHASHABLE))
async def test_unhashable_arguments_name_the_function_and_key(
    clock: FakeClock,
    fetcher: Fetcher,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    op: Callable[[Any, Any], Awaitable[Any]],
) -> None:
    """list/dict/set (also self-containing ones): TypeError naming the function and key=."""
    async with SWRCache(clock=clock) as cache:
        f = lookup_via(cache, fetcher)
        before = f.cache_info()
        with anyio.fail_after(10), pytest.raises(TypeError) as info:
            await op(f, UNHASHABLE[kind]())
        assert_names(message_of(info), f.__qualname__, "key=")
        assert f.cache_info() == before  # a refused call is counted nowhere
        assert fetcher.calls == []
        await assert_healthy(f, cache, caplog)


@pytest.mark.parametrize(
    "op",
    [
        pytest.param(_call, id="call"),
        pytest.param(_invalidate, id="invalidate"),
        pytest.param(_refresh, id="refresh"),
    ],
)
async def test_unhashable_arguments_of_a_method_name_the_method(
    clock: FakeClock, fetcher: Fetcher, op: Callable[[Any, Any], Awaitable[Any]]
) -> None:
    """The same through a decorated method (BoundSWRFunction)."""
    async with SWRCache(clock=clock) as cache:

        class Albums:
            @cache.cached(ttl=10)
            async def lookup(self, x: Any) -> Any:
                return await fetcher(x)

        albums = Albums()
        with pytest.raises(TypeError) as info:
            await op(albums.lookup, [1])
        assert_names(message_of(info), "Albums.lookup", "key=lambda self, x: ...")
        await assert_healthy(albums.lookup, cache)


async def test_self_containing_arguments_work_through_a_key_function(clock: FakeClock) -> None:
    """A recursive list with key= mapping it to something hashable is computed and cached."""
    calls = 0
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10, key=lambda items: len(items))
        async def count(items: list[Any]) -> int:
            nonlocal calls
            calls += 1
            return len(items)

        with anyio.fail_after(10):
            assert await count(_recursive_list()) == 2
            assert await count(_recursive_list()) == 2
        assert calls == 1


async def test_a_deeply_nested_key_works_in_memory(clock: FakeClock, fetcher: Fetcher) -> None:
    """A tuple nested far beyond the recursion limit is a fine in-memory key."""
    deep = _deep_tuple(sys.getrecursionlimit() * 5)
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10)
        async def depth(t: Any) -> int:
            await fetcher("depth")
            return 1

        assert await depth(deep) == 1
        assert await depth(deep) == 1
        assert fetcher.calls == ["depth"]


async def test_a_deeply_nested_key_with_a_store_stays_in_memory(
    clock: FakeClock, fetcher: Fetcher, caplog: pytest.LogCaptureFixture
) -> None:
    """Too deep to spell for the store: cached in memory only, warned, like any unstable key."""
    deep = _deep_tuple(sys.getrecursionlimit() + 100)
    store = MemoryStore()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        async with SWRCache(clock=clock, store=store) as cache:
            f = lookup_via(cache, fetcher, key=lambda x: x if x != BAD else deep)
            assert await f(BAD) == "bad:1"
            assert await f(BAD) == "bad:1"
            await f.invalidate(BAD)
            assert f.cache_info().currsize == 0
            await assert_healthy(f, cache, caplog)
    assert "no stable form" in caplog.text
    assert len(store.rows) == 1  # only the good call's row


async def test_calling_with_arguments_the_function_cannot_take_caches_nothing(
    clock: FakeClock, fetcher: Fetcher, caplog: pytest.LogCaptureFixture
) -> None:
    """f(1, 2) for f(x): the function's own TypeError reaches the caller; nothing is stored."""
    async with SWRCache(clock=clock) as cache:
        f = lookup_via(cache, fetcher)
        with pytest.raises(TypeError, match=r"lookup\(\) takes 1 positional argument"):
            await f(1, 2)
        with pytest.raises(TypeError, match=r"unexpected keyword argument 'y'"):
            await f(y=1)
        info = f.cache_info()
        assert (info.currsize, info.misses, info.hits) == (0, 2, 0)
        await assert_healthy(f, cache, caplog)


@pytest.mark.parametrize(
    ("args", "kwargs"), [((1, 2), {}), ((), {"y": 1}), ((), {})], ids=["extra", "kw", "none"]
)
async def test_invalidate_with_arguments_the_function_cannot_take_is_a_type_error(
    clock: FakeClock, fetcher: Fetcher, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """A typo in invalidate()'s arguments would leave stale data forever: TypeError instead."""
    # No `async with`: a pytest.raises failure (a BaseException) must not cross a task group.
    cache = SWRCache(clock=clock)
    try:
        f = lookup_via(cache, fetcher)
        await f(1)
        with pytest.raises(TypeError) as info:
            await f.invalidate(*args, **kwargs)
        assert_names(message_of(info), f.__qualname__)
        await assert_healthy(f, cache)
    finally:
        await cache.aclose()


async def test_refresh_with_arguments_the_function_cannot_take_leaves_nothing(
    clock: FakeClock, fetcher: Fetcher, caplog: pytest.LogCaptureFixture
) -> None:
    """refresh(1, 2) for f(x): the function's own TypeError; no flight stays registered."""
    async with SWRCache(clock=clock) as cache:
        f = lookup_via(cache, fetcher)
        assert await f(1) == "1:1"
        with pytest.raises(TypeError, match=r"lookup\(\) takes 1 positional argument"):
            await f.refresh(1, 2)
        with pytest.raises(TypeError, match=r"unexpected keyword argument 'y'"):
            await f.refresh(1, y=2)
        assert engine_of(f)._registry == {}
        assert await f(1) == "1:1"  # the entry is untouched
        await assert_healthy(f, cache, caplog)


def _injecting(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """A decorator that passes one more argument than its callers do (wraps() hides it)."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        return await fn(*args, db="conn", **kwargs)

    return wrapper


async def test_a_wrapper_is_checked_by_its_own_signature_not_the_wrapped_one(
    clock: FakeClock,
) -> None:
    """key= and invalidate() take what the wrapper takes, although __wrapped__ wants db too."""
    async with SWRCache(clock=clock) as cache:

        @cache.cached(key=lambda x: x, tags=lambda x: [f"x:{x}"])
        @_injecting
        async def load(x: Any, db: str) -> Any:
            return (x, db)

        assert await load(1) == (1, "conn")
        await load.invalidate(1)
        assert load.cache_info().currsize == 0
        assert await load.refresh(1) == (1, "conn")


# == call time: what a store cannot hold =======================================================


@pytest.mark.parametrize(
    "make_arg",
    [lambda: lambda: 1, threading.Lock, _gen],
    ids=["lambda", "lock", "generator"],
)
async def test_unstable_key_arguments_never_reach_the_store(
    tmp_path: Path,
    clock: FakeClock,
    fetcher: Fetcher,
    caplog: pytest.LogCaptureFixture,
    make_arg: Callable[[], Any],
) -> None:
    """An argument with no stable spelling: the call works, memory only, warned once."""
    path = tmp_path / "c.db"
    arg, other = make_arg(), make_arg()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        async with SWRCache(clock=clock, store=SQLiteStore(path, clock=clock)) as cache:
            f = lookup_via(cache, fetcher)
            first = await f(arg)
            assert await f(arg) == first
            await f(other)
            await f.invalidate(arg)
            assert f.cache_info().currsize == 1
            good = await assert_healthy(f, cache, caplog)
    warned = [r.getMessage() for r in caplog.records if "no stable form" in r.getMessage()]
    assert len(warned) == 1
    assert_names(warned[0], f.__qualname__, "key=")
    assert stored_keys(path) == {skey(good)}


def _results() -> dict[str, Callable[[], Any]]:
    return {
        "lambda": lambda: lambda: 1,
        "lock": threading.Lock,
        "generator": _gen,
        "set": lambda: {1, 2},
        "recursive-list": _recursive_list,
    }


@pytest.mark.parametrize(
    ("serializer", "kind"),
    [
        (PickleSerializer, "lambda"),
        (PickleSerializer, "lock"),
        (PickleSerializer, "generator"),
        (JSONSerializer, "set"),
        (JSONSerializer, "recursive-list"),
        (JSONSerializer, "lambda"),
    ],
)
async def test_unserializable_results_are_returned_and_never_written(
    tmp_path: Path,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    serializer: type[Any],
    kind: str,
) -> None:
    """A result the serializer refuses: returned, kept in memory, warned once, never written."""
    path = tmp_path / "c.db"
    store = SQLiteStore(path, serializer=serializer(), clock=clock)
    made = _results()[kind]
    computed: list[Any] = []
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        async with SWRCache(clock=clock, store=store) as cache:

            @cache.cached(ttl=10)
            async def produce(name: str) -> Any:
                value = made() if name.startswith(BAD) else name
                computed.append(value)
                return value

            value = await produce(BAD)
            assert await produce(BAD) is value
            await produce(BAD + "-2")
            info = produce.cache_info()
            assert (info.store_errors, info.currsize, info.hits) == (2, 2, 1)
            await assert_healthy(produce, cache, caplog)
    assert len(computed) == 3
    warned = [r.getMessage() for r in caplog.records if "could not be stored" in r.getMessage()]
    assert len(warned) == 1
    assert_names(warned[0], produce.__qualname__)
    assert BAD not in "".join(stored_keys(path))
    assert len(stored_keys(path)) == 1  # the good call's row


async def test_a_result_that_fails_to_unpickle_is_a_miss_and_recomputed(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A stored row that pickled but cannot be unpickled is dropped and the value recomputed."""
    path = tmp_path / "c.db"
    store = SQLiteStore(path, clock=clock)
    computed: list[str] = []
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        async with SWRCache(clock=clock, store=store) as cache:

            @cache.cached(ttl=10, maxsize=1)
            async def produce(name: str) -> Any:
                computed.append(name)
                return Unloadable() if name == BAD else name

            assert isinstance(await produce(BAD), Unloadable)
            await cache.wait_idle()  # the row reached the file
            await produce("evict")
            await cache.wait_idle()
            assert isinstance(await produce(BAD), Unloadable)  # read, rejected, recomputed
            assert computed == [BAD, "evict", BAD]
            assert store.stats.rejected_rows == 1
            assert produce.cache_info().store_hits == 0
            await assert_healthy(produce, cache, caplog)
    assert "cannot be deserialized" in caplog.text


async def test_a_buffered_row_that_fails_to_unpickle_reads_as_a_miss(tmp_path: Path) -> None:
    """Read-your-writes treats an unreadable buffered row like an unreadable stored one."""
    store = SQLiteStore(tmp_path / "c.db")
    try:
        store.put("ns", "k", Record(Unloadable(), 1, 1.0))
        store.put("ns", "ok", Record("fine", 1, 1.0))
        assert await store.get_many("ns", ["k", "ok"]) == {"ok": Record("fine", 1, 1.0)}
    finally:
        await store.aclose()


# == key= / version= / tags= callables ========================================================


def _raising(param: str) -> Callable[..., Any]:
    def misbehave(x: Any) -> Any:
        if x == BAD:
            raise LookupError(f"{param} service down")
        return ["t"] if param == "tags" else x

    return misbehave


def _raising_async_version(x: Any) -> Any:
    async def version() -> Any:
        if x == BAD:
            raise LookupError("version service down")
        return 1

    return version()


@pytest.mark.parametrize(
    ("param", "callable_", "op"),
    [
        ("key", _raising("key"), _call),
        ("key", _raising("key"), _invalidate),
        ("key", _raising("key"), _refresh),
        ("version", _raising("version"), _call),
        ("version", _raising("version"), _refresh),
        ("version", _raising_async_version, _call),
        ("tags", _raising("tags"), _call),
        ("tags", _raising("tags"), _refresh),
    ],
    ids=[
        "key-call",
        "key-invalidate",
        "key-refresh",
        "version-call",
        "version-refresh",
        "async-version-call",
        "tags-call",
        "tags-refresh",
    ],
)
async def test_a_raising_callable_propagates_unchanged_and_leaves_nothing(
    clock: FakeClock,
    fetcher: Fetcher,
    caplog: pytest.LogCaptureFixture,
    param: str,
    callable_: Callable[..., Any],
    op: Callable[[Any, Any], Awaitable[Any]],
) -> None:
    """The user's own exception reaches the caller as is; nothing is computed or registered."""
    async with SWRCache(clock=clock) as cache:
        f = lookup_via(cache, fetcher, **{param: callable_})
        before = f.cache_info()
        with pytest.raises(LookupError, match=f"^{param} service down$"):
            await op(f, BAD)
        after = f.cache_info()
        assert (after.hits, after.currsize, after.refreshes) == (0, 0, 0)
        assert after.misses - before.misses <= 1
        assert fetcher.calls == []
        await assert_healthy(f, cache, caplog)


async def test_a_refresh_refused_by_tags_does_not_discard_the_fetch_in_flight(
    clock: FakeClock, fetcher: Fetcher
) -> None:
    """A refresh() that fails before it starts has no effect on the miss already in flight."""
    tags_fail = False

    def tags(x: Any) -> list[str]:
        if tags_fail:
            raise LookupError("tags service down")
        return ["t"]

    async with SWRCache(clock=clock) as cache:
        f = lookup_via(cache, fetcher, tags=tags)
        fetcher.hold()
        async with anyio.create_task_group() as tg:
            tg.start_soon(f, 1)
            await wait_all_tasks_blocked()
            tags_fail = True
            with pytest.raises(LookupError):
                await f.refresh(1)
            tags_fail = False
            fetcher.release()
        assert f.cache_info().currsize == 1  # the miss's result was stored
        assert await f(1) == "1:1"
        await assert_healthy(f, cache)


async def test_tags_raising_on_a_stale_hit_still_serves_the_stale_value(
    clock: FakeClock, fetcher: Fetcher, caplog: pytest.LogCaptureFixture
) -> None:
    """The failure belongs to the refresh: counted and logged; the caller gets the stale value."""
    tags_fail = False

    def tags(x: Any) -> list[str]:
        if tags_fail:
            raise LookupError("tags service down")
        return ["t"]

    async with SWRCache(clock=clock) as cache:
        f = lookup_via(cache, fetcher, tags=tags)
        assert await f(1) == "1:1"
        clock.advance(11)
        tags_fail = True
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            assert await f(1) == "1:1"
            await cache.wait_idle()
        assert f.cache_info().refresh_errors == 1
        assert "tags service down" in caplog.text


async def test_tags_raising_on_a_stale_hit_backs_off_like_a_failed_refresh(
    clock: FakeClock, fetcher: Fetcher, caplog: pytest.LogCaptureFixture
) -> None:
    """After tags= failed a refresh, the key waits out its backoff, then refreshes again."""
    tags_calls: list[Any] = []
    tags_fail = False

    def tags(x: Any) -> list[str]:
        tags_calls.append(x)
        if tags_fail:
            raise LookupError("tags service down")
        return ["t"]

    async with SWRCache(clock=clock) as cache:
        f = lookup_via(cache, fetcher, tags=tags)
        assert await f(1) == "1:1"
        clock.advance(11)
        tags_fail = True
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            assert await f(1) == "1:1"
            assert await f(1) == "1:1"  # within the backoff: no new attempt
        assert len(tags_calls) == 2
        assert f.cache_info().refresh_errors == 1
        assert_names(caplog.text, f.__qualname__, "(1,)", "tags service down")
        tags_fail = False
        clock.advance(1)  # the first backoff is at most 1 s
        assert await f(1) == "1:1"
        await cache.wait_idle()
        assert await f(1) == "1:2"
        assert f.cache_info().refresh_errors == 1
        await assert_healthy(f, cache)


@pytest.mark.parametrize(
    "op",
    [
        pytest.param(_call, id="call"),
        pytest.param(_invalidate, id="invalidate"),
        pytest.param(_refresh, id="refresh"),
    ],
)
@pytest.mark.parametrize("returned", [[1], {"a": 1}, {1}], ids=["list", "dict", "set"])
async def test_key_returning_an_unhashable_value_says_key_returned_it(
    clock: FakeClock, fetcher: Fetcher, returned: Any, op: Callable[[Any, Any], Awaitable[Any]]
) -> None:
    """TypeError naming the function and saying key= returned an unhashable value."""
    async with SWRCache(clock=clock) as cache:
        f = lookup_via(cache, fetcher, key=lambda x: returned if x == BAD else x)
        with pytest.raises(TypeError, match=r"key= returned") as info:
            await op(f, BAD)
        assert_names(message_of(info), f.__qualname__, type(returned).__name__)
        await assert_healthy(f, cache)


async def test_version_may_be_any_value_compared_by_equality(
    clock: FakeClock, fetcher: Fetcher
) -> None:
    """An unhashable version (a dict) is fine: it is only compared with ==."""
    current = {"rev": [1]}
    async with SWRCache(clock=clock) as cache:
        f = lookup_via(cache, fetcher, version=lambda x: dict(current))
        assert await f(1) == "1:1"
        assert await f(1) == "1:1"
        assert f.cache_info().hits == 1
        current["rev"] = [2]
        assert await f(1) == "1:1"  # stale under the new version, refreshed in the background
        await cache.wait_idle()
        assert await f(1) == "1:2"
        await assert_healthy(f, cache)


@pytest.mark.parametrize(
    "returned",
    [None, 5, b"ab", [b"album"], ("album", 1), 1.5],
    ids=["None", "int", "bytes", "list-of-bytes", "mixed", "float"],
)
async def test_tags_returning_other_than_str_is_a_type_error(
    clock: FakeClock, fetcher: Fetcher, caplog: pytest.LogCaptureFixture, returned: Any
) -> None:
    """tags= must return str or an iterable of str: TypeError naming the function and tags=."""
    async with SWRCache(clock=clock) as cache:
        f = lookup_via(cache, fetcher, tags=lambda x: returned if x == BAD else ["t"])
        with pytest.raises(TypeError, match=r"tags= must return an iterable of str") as info:
            await f(BAD)
        assert_names(message_of(info), f.__qualname__, repr(returned))
        assert fetcher.calls == []
        await assert_healthy(f, cache, caplog)


async def test_tags_returning_one_str_is_one_tag(clock: FakeClock, fetcher: Fetcher) -> None:
    """A str from tags= is one tag, not an iterable of one-letter tags."""
    async with SWRCache(clock=clock) as cache:
        f = lookup_via(cache, fetcher, tags=lambda x: "album:1")
        await f(1)
        await cache.invalidate_tags("a")
        assert f.cache_info().currsize == 1
        await cache.invalidate_tags("album:1")
        assert f.cache_info().currsize == 0


@pytest.mark.parametrize(
    ("param", "callable_"),
    [
        ("key", lambda: "k"),
        ("key", lambda x, y: x),
        ("version", lambda: 1),
        ("version", lambda *, x: 1),
        ("tags", lambda: ["t"]),
    ],
    ids=["key-none", "key-two", "version-none", "version-kwonly", "tags-none"],
)
def test_callables_with_the_wrong_signature_are_refused_at_decoration(
    param: str, callable_: Callable[..., Any]
) -> None:
    """TypeError at decoration naming the function and the parameter."""
    with pytest.raises(TypeError) as info:
        swr_cached(cache=SWRCache(), **{param: callable_})(fetch_album)
    assert_names(message_of(info), fetch_album.__qualname__, f"{param}=")


async def test_callables_with_compatible_signatures_are_accepted(clock: FakeClock) -> None:
    """Varargs, defaults and self: every signature that can take the arguments works."""
    async with SWRCache(clock=clock) as cache:

        @cache.cached(
            key=lambda *a, **kw: (a, tuple(sorted(kw.items()))),
            version=lambda x, y=0: 1,
            tags=lambda *args, **kwargs: ["t"],
        )
        async def plain(x: Any, y: int = 0) -> Any:
            return x

        class Repo:
            @cache.cached(key=lambda self, x: x, version=lambda self, x: 1, tags=lambda s, x: [])
            async def load(self, x: Any) -> Any:
                return x

        assert await plain(1) == 1
        assert await plain(1, y=2) == 1
        assert await Repo().load(1) == 1
        assert await Repo().load(1) == 1
        assert Repo.load.cache_info().hits == 1


# == SWRCache: constructor and methods =========================================================


@pytest.mark.parametrize("value", ["4", None, math.inf, math.nan, 2.0])
def test_max_concurrent_refreshes_of_the_wrong_type_is_a_type_error(value: Any) -> None:
    """A non-int is a TypeError naming the parameter (test_validation pins ValueError today)."""
    with pytest.raises(TypeError, match="max_concurrent_refreshes="):
        SWRCache(max_concurrent_refreshes=value)


def test_max_concurrent_refreshes_far_below_one_is_a_value_error() -> None:
    """A hugely negative int is a ValueError naming the parameter."""
    with pytest.raises(
        ValueError, match=r"SWRCache: max_concurrent_refreshes= must be an int >= 1"
    ):
        SWRCache(max_concurrent_refreshes=-(10**18))


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("1", TypeError),
        (True, TypeError),
        ([5], TypeError),
        (1j, TypeError),
        (-1, ValueError),
        (-math.inf, ValueError),
        (math.nan, ValueError),
    ],
)
def test_bad_close_timeout(value: Any, error: type[Exception]) -> None:
    """close_timeout= is seconds >= 0 (or None/inf for no limit)."""
    with pytest.raises(error, match=r"SWRCache: close_timeout= must be"):
        SWRCache(close_timeout=value)


@pytest.mark.parametrize("value", ["log", 5])
def test_on_event_must_be_callable(value: Any) -> None:
    """on_event= must be a callable taking a CacheEvent."""
    with pytest.raises(TypeError, match=r"SWRCache: on_event= must be a plain callable"):
        SWRCache(on_event=value)


@pytest.mark.parametrize("clock", [time.sleep, lambda now: now], ids=["sleep", "one-arg"])
def test_a_clock_that_needs_arguments_is_refused(clock: Any) -> None:
    """clock= must be callable with no arguments: TypeError naming clock= at construction."""
    with pytest.raises(TypeError, match="clock="):
        SWRCache(clock=clock)


@pytest.mark.parametrize("reading", [None, "2024-01-01"], ids=["None", "str"])
def test_a_clock_returning_a_non_number_is_refused(reading: Any) -> None:
    """clock() must return seconds as a number: TypeError naming clock= at construction."""
    with pytest.raises(TypeError, match="clock="):
        SWRCache(clock=lambda: reading)


@pytest.mark.parametrize("tag", [None, b"album", 1.5, ("album",)], ids=repr)
async def test_invalidate_tags_with_a_non_str_drops_nothing(
    clock: FakeClock, fetcher: Fetcher, tag: Any
) -> None:
    """invalidate_tags refuses a non-str tag before dropping anything, naming the method."""
    async with SWRCache(clock=clock) as cache:
        f = lookup_via(cache, fetcher, tags=lambda x: ["album"])
        await f(1)
        with pytest.raises(TypeError, match=r"SWRCache\.invalidate_tags: tags must be str"):
            await cache.invalidate_tags("album", tag)
        assert f.cache_info().currsize == 1
        await assert_healthy(f, cache)


async def test_invalidate_tags_with_a_list_suggests_unpacking() -> None:
    """Passing one list instead of several tags: the TypeError shows invalidate_tags(*tags)."""
    with pytest.raises(TypeError, match=r"invalidate_tags\(\*"):
        await SWRCache().invalidate_tags(["album:1", "album:2"])  # type: ignore[arg-type]


# == SQLiteStore, serializers, FakeClock =======================================================


@pytest.mark.parametrize(
    ("kwargs", "error", "param"),
    [
        ({"max_entries": -1}, ValueError, "max_entries"),
        ({"max_entries": -(10**18)}, ValueError, "max_entries"),
        ({"max_entries": math.nan}, TypeError, "max_entries"),
        ({"max_entries": math.inf}, TypeError, "max_entries"),
        ({"max_entries": "5"}, TypeError, "max_entries"),
        ({"max_entries": None}, TypeError, "max_entries"),
        ({"busy_timeout": math.inf}, ValueError, "busy_timeout"),
        ({"busy_timeout": -math.inf}, ValueError, "busy_timeout"),
        ({"busy_timeout": True}, TypeError, "busy_timeout"),
        ({"busy_timeout": None}, TypeError, "busy_timeout"),
        ({"secret": ""}, ValueError, "secret"),
        ({"secret": ["key"]}, TypeError, "secret"),
        ({"secret": 0}, TypeError, "secret"),
        ({"serializer": PickleSerializer}, TypeError, "serializer"),
        ({"serializer": "pickle"}, TypeError, "serializer"),
        ({"serializer": HalfSerializer()}, TypeError, "serializer"),
        ({"clock": "time.time"}, TypeError, "clock"),
        ({"path": None}, TypeError, "path"),
        ({"path": Path(":memory:")}, ValueError, "path"),
        ({"path": "file:cache.db?mode=ro"}, ValueError, "path"),
        ({"path": "   "}, ValueError, "path"),
    ],
)
def test_sqlitestore_refuses_bad_arguments_at_construction(
    tmp_path: Path, kwargs: dict[str, Any], error: type[Exception], param: str
) -> None:
    """Wrong types are TypeErrors, wrong values ValueErrors, naming SQLiteStore(param=...)."""
    with pytest.raises(error) as info:
        SQLiteStore(**{"path": tmp_path / "c.db", **kwargs})
    assert_names(message_of(info), f"SQLiteStore({param}=")
    assert list(tmp_path.iterdir()) == []


def test_sqlitestore_accepts_a_huge_max_entries(tmp_path: Path) -> None:
    """max_entries beyond any real size is a valid bound."""
    assert SQLiteStore(tmp_path / "c.db", max_entries=10**18).max_entries == 10**18


@pytest.mark.parametrize(
    ("protocol", "error"),
    [(True, TypeError), ("5", TypeError), (5.0, TypeError), (99, ValueError), (-2, ValueError)],
)
def test_pickle_serializer_protocol(protocol: Any, error: type[Exception]) -> None:
    """PickleSerializer(protocol=) is an int within pickle's range."""
    with pytest.raises(error, match=r"PickleSerializer\(protocol="):
        PickleSerializer(protocol)


def test_json_serializer_takes_no_arguments() -> None:
    """JSONSerializer has nothing to configure."""
    with pytest.raises(TypeError, match="JSONSerializer"):
        JSONSerializer(indent=2)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("build", "param"),
    [
        (lambda: FakeClock("0"), "start"),
        (lambda: FakeClock(None), "start"),
        (lambda: FakeClock(True), "start"),
        (lambda: FakeClock().advance("1"), "advance"),
        (lambda: FakeClock().advance(None), "advance"),
        (lambda: FakeClock().advance(True), "advance"),
    ],
    ids=["start-str", "start-None", "start-bool", "advance-str", "advance-None", "advance-bool"],
)
def test_fake_clock_wrong_types_are_type_errors(build: Callable[[], Any], param: str) -> None:
    """A non-number is a TypeError naming FakeClock and the parameter."""
    with pytest.raises(TypeError) as info:
        build()
    assert_names(message_of(info), "FakeClock", param)


@pytest.mark.parametrize(
    ("build", "param"),
    [
        (lambda c: FakeClock(math.nan), "start"),
        (lambda c: FakeClock(-math.inf), "start"),
        (lambda c: c.advance(math.nan), "advance"),
        (lambda c: c.advance(math.inf), "advance"),
        (lambda c: c.advance(-1e-9), "advance"),
    ],
    ids=["start-nan", "start-minus-inf", "advance-nan", "advance-inf", "advance-negative"],
)
def test_fake_clock_wrong_values_are_value_errors_and_do_not_move_it(
    build: Callable[[FakeClock], Any], param: str
) -> None:
    """NaN/inf/backwards are ValueErrors naming the parameter; the clock stays where it was."""
    clock = FakeClock(start=10.0)
    with pytest.raises(ValueError, match=rf"FakeClock.*{param}") as info:
        build(clock)
    assert_names(message_of(info), "finite")
    assert clock() == 10.0
