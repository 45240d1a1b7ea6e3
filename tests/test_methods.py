"""A decorated method read on an instance (``obj.method``): a ``BoundSWRFunction``.

It looks like a bound method of the original, as a decorated function looks
like the original function (README, "What you get back"), and frameworks that
check for a coroutine function take it for one.

A fetch's result is ``"<key>:<n>"``, ``n`` counting the calls made for that key.
"""

from __future__ import annotations

import abc
import asyncio
import copy
import functools
import gc
import inspect
import pickle
import sys
import types
import typing
import weakref
from typing import Any

import pytest

from aiocache_swr import BoundSWRFunction, SWRCache, SWRFunction
from aiocache_swr.testing import FakeClock

from ._fetcher import Fetcher

pytestmark = pytest.mark.anyio


def repo_class(cache: SWRCache, fetcher: Fetcher) -> Any:
    class Repo:
        @cache.cached(ttl=10)
        async def get(self, album_id: int, *, lang: str = "en") -> str:
            """Fetch one album."""
            return await fetcher((album_id, lang))

    return Repo


def test_a_bound_method_has_the_functions_name_qualname_and_docstring(
    clock: FakeClock, fetcher: Fetcher
) -> None:
    """As a bound method has its function's; the class keeps its own docstring."""
    Repo = repo_class(SWRCache(clock=clock), fetcher)
    bound = Repo().get
    assert isinstance(bound, BoundSWRFunction)
    assert (bound.__name__, bound.__qualname__) == ("get", f"{Repo.__qualname__}.get")
    assert bound.__doc__ == "Fetch one album."
    assert inspect.getdoc(bound) == "Fetch one album."
    assert isinstance(BoundSWRFunction.__doc__, str)
    assert BoundSWRFunction.__doc__ != bound.__doc__


def test_a_bound_method_says_what_it_is_bound_to(clock: FakeClock, fetcher: Fetcher) -> None:
    """Its repr names the function and the instance, as a bound method's does."""
    Repo = repo_class(SWRCache(clock=clock), fetcher)
    repo = Repo()
    text = repr(repo.get)
    assert text.startswith("<bound ")
    assert f"{Repo.__qualname__}.get" in text
    assert repr(repo) in text


async def test_a_bound_methods_wrapped_is_the_undecorated_function_bound_to_the_instance(
    clock: FakeClock, fetcher: Fetcher
) -> None:
    """``obj.method.__wrapped__`` is what the cache calls: the function, with ``obj`` first."""
    async with SWRCache(clock=clock) as cache:
        Repo = repo_class(cache, fetcher)
        repo = Repo()
        wrapped = repo.get.__wrapped__
        assert isinstance(wrapped, types.MethodType)
        assert wrapped.__func__ is Repo.get.__wrapped__
        assert wrapped.__self__ is repo
        assert inspect.unwrap(repo.get) == wrapped
        assert await repo.get(1) == "(1, 'en'):1"
        assert await wrapped(1) == "(1, 'en'):2"  # not cached
        assert await repo.get(1) == "(1, 'en'):1"


def passing(fn: Any) -> Any:
    """A decorator that wraps ``fn`` with ``functools.wraps`` and changes nothing."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        return await fn(*args, **kwargs)

    return wrapper


def test_a_bound_methods_signature_lacks_the_instance(clock: FakeClock, fetcher: Fetcher) -> None:
    """inspect.signature(obj.method) is the function's without ``self``, also when the
    function is itself a wrapper (inspect would otherwise unwrap to the inner function)."""

    cache = SWRCache(clock=clock)

    class Repo:
        @cache.cached(ttl=10)
        async def get(self, album_id: int, *, lang: str = "en") -> str:
            return await fetcher(album_id)

        @cache.cached(ttl=10)
        @passing
        async def wrapped_get(self, album_id: int, *, lang: str = "en") -> str:
            return await fetcher(album_id)

    params = list(inspect.signature(Repo.get.__wrapped__).parameters.values())
    expected = inspect.signature(Repo.get.__wrapped__).replace(parameters=params[1:])
    assert str(expected) == "(album_id: 'int', *, lang: 'str' = 'en') -> 'str'"
    assert inspect.signature(Repo().get) == expected
    assert inspect.signature(Repo().wrapped_get) == expected


async def test_a_bound_method_has_the_cache_and_namespace_of_its_function(
    clock: FakeClock, fetcher: Fetcher
) -> None:
    """``obj.method.cache`` and ``.namespace`` are the function's: the README's
    ``await obj.method.cache.wait_idle()`` waits for the refresh a stale hit started."""
    async with SWRCache(clock=clock) as cache:
        Repo = repo_class(cache, fetcher)
        repo = Repo()
        assert repo.get.cache is cache
        assert repo.get.namespace == Repo.get.namespace
        assert repo.get.namespace.endswith("Repo.get")
        assert await repo.get(1) == "(1, 'en'):1"
        clock.advance(11)
        assert await repo.get(1) == "(1, 'en'):1"  # stale: served, refresh started
        await repo.get.cache.wait_idle()
        assert await repo.get(1) == "(1, 'en'):2"


async def test_a_bound_method_is_a_coroutine_function(clock: FakeClock, fetcher: Fetcher) -> None:
    """inspect and asyncio say so, on every Python version (frameworks that check it await
    it), as they do of the decorated function and of a plain ``async def`` method."""
    async with SWRCache(clock=clock) as cache:
        repo = repo_class(cache, fetcher)()
        assert inspect.iscoroutinefunction(repo.get)
        if sys.version_info < (3, 14):  # deprecated from 3.14 on
            assert asyncio.iscoroutinefunction(repo.get)
        assert inspect.iscoroutinefunction(repo.get.__wrapped__)
        assert await repo.get(1) == "(1, 'en'):1"


async def test_a_bound_method_stays_bound_when_copied_or_stored_on_a_class(
    clock: FakeClock, fetcher: Fetcher
) -> None:
    """A copy is bound to the same instance and reads the same entries; one stored on
    another class and read through an instance of it stays bound to its own (no warning)."""
    async with SWRCache(clock=clock) as cache:
        repo = repo_class(cache, fetcher)()
        assert await repo.get(1) == "(1, 'en'):1"
        duplicate = copy.copy(repo.get)
        assert duplicate.__self__ is repo
        assert await duplicate(1) == "(1, 'en'):1"

        class Holder:
            get = repo.get

        assert Holder().get.__self__ is repo
        assert await Holder().get(1) == "(1, 'en'):1"
        assert repo.get.cache_info().hits == 2


def test_a_bound_method_is_not_an_swr_function(clock: FakeClock, fetcher: Fetcher) -> None:
    """On every Python version, as for type checkers: the README tells the two apart.

    Its function, read on the class, is one."""
    Repo = repo_class(SWRCache(clock=clock), fetcher)
    assert isinstance(Repo.get, SWRFunction)
    assert not isinstance(Repo().get, SWRFunction)
    with pytest.raises(AttributeError, match="no_such_member"):
        Repo().get.no_such_member  # noqa: B018


async def test_a_bound_method_rebuilt_by_weakmethod_is_the_same_method(
    clock: FakeClock, fetcher: Fetcher
) -> None:
    """weakref.WeakMethod (signal and observer libraries) rebuilds a method as
    type(m)(m.__func__, m.__self__): the result is a working bound method."""
    import weakref

    repo = repo_class(SWRCache(clock=clock), fetcher)()
    again = weakref.WeakMethod(repo.get)()
    assert again is not None
    assert await again(1) == "(1, 'en'):1"
    assert again.__self__ is repo
    assert again.cache_info().misses == 1
    assert again == repo.get


def test_bound_methods_compare_and_hash_as_bound_methods(
    clock: FakeClock, fetcher: Fetcher
) -> None:
    """obj.method == obj.method (the same function bound to the same object), so it
    can be removed from a list of callbacks, or kept in a set."""
    Repo = repo_class(SWRCache(clock=clock), fetcher)
    a, b = Repo(), Repo()
    assert a.get == a.get
    assert hash(a.get) == hash(a.get)
    assert a.get != b.get
    callbacks = [a.get]
    callbacks.remove(a.get)
    assert {a.get, a.get, b.get} == {a.get, b.get}


async def test_a_method_kept_under_another_name_is_copied_as_that_name(
    clock: FakeClock, fetcher: Fetcher
) -> None:
    """``load = cache.cached(...)(_load)``: a copy of ``obj.load`` is ``obj.load`` (the
    cached method), not the undecorated ``_load``."""
    cache = SWRCache(clock=clock)

    class Repo:
        async def _load(self, x: int) -> Any:
            return await fetcher(x)

        load = cache.cached(ttl=10)(_load)

    repo = Repo()
    copied = copy.copy(repo.load)
    assert isinstance(copied, BoundSWRFunction)
    assert await copied(1) == "1:1"
    assert await repo.load(1) == "1:1"  # cached by the copy


def test_a_partial_of_a_bound_method_has_the_methods_signature(
    clock: FakeClock, fetcher: Fetcher
) -> None:
    """functools.partial(obj.method, 1) shows the parameters left, as for any method."""
    repo = repo_class(SWRCache(clock=clock), fetcher)()
    assert (
        str(inspect.signature(functools.partial(repo.get, 1))) == "(*, lang: 'str' = 'en') -> 'str'"
    )


class _Loader:
    cache = SWRCache()

    @cache.cached(ttl=10)
    async def load(self, k: int) -> int:
        return k


class _Alias:
    fetch = _Loader.load  # the same engine, kept by another class under another name


def test_a_copy_of_a_bound_method_is_found_under_its_own_class_name() -> None:
    """Another class keeping the engine under another name changes nothing for a copy
    of the first class's bound method."""
    loader = _Loader()
    copied = copy.copy(loader.load)
    assert copied == loader.load


class _Parser:
    cache = SWRCache()

    @staticmethod
    @cache.cached(ttl=10)
    async def parse(text: str) -> int:
        return len(text)

    async def _load(self, k: int) -> int:
        return k

    load = cache.cached(ttl=10)(_load)


async def test_a_copy_of_a_method_read_on_its_class_is_itself(
    clock: FakeClock, fetcher: Fetcher
) -> None:
    """copy and deepcopy leave it as it is, as a function (a copy with its own entries
    would not be the one its calls read: invalidating through it would drop nothing)."""
    async with SWRCache(clock=clock) as cache:

        class Repo:
            @staticmethod
            @cache.cached(ttl=10)
            async def parse(x: int) -> str:
                return await fetcher(x)

            @cache.cached(ttl=10)
            async def get(self, x: int) -> str:
                return await fetcher(x)

        for method in (Repo.parse, Repo.get):
            assert copy.copy(method) is method
            assert copy.deepcopy(method) is method
        handlers = copy.deepcopy({"parse": Repo.parse})  # e.g. a config's defaults
        assert handlers["parse"] is Repo.parse
        assert await handlers["parse"](1) == "1:1"
        await handlers["parse"].invalidate(1)
        assert await Repo.parse(1) == "1:2"


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_method_read_on_its_class_is_pickled_by_reference(protocol: int) -> None:
    """As a function is: unpickled, it is the same object, also a static method, and a
    method kept under another name than its function's."""
    for method in (_Loader.load, _Parser.parse, _Parser.load, _Alias.fetch):
        assert pickle.loads(pickle.dumps(method, protocol)) is method


def test_a_method_of_a_class_its_module_does_not_hold_cannot_be_pickled() -> None:
    """A class defined in a function: a PicklingError saying where it was looked for."""
    cache = SWRCache()

    class Local:
        @cache.cached(ttl=10)
        async def get(self, x: int) -> int:
            return x

    with pytest.raises(pickle.PicklingError, match=r"pickled by reference.*Local\.get"):
        pickle.dumps(Local.get)


def test_a_method_read_on_its_class_is_a_coroutine_function(clock: FakeClock) -> None:
    """Also a static method or a class method over the decorator: to asyncio on every
    version (before 3.14, which deprecates it), to inspect from 3.12 (before, inspect
    recognises only functions)."""
    cache = SWRCache(clock=clock)

    class Repo:
        @cache.cached(ttl=10)
        async def get(self, x: int) -> int:
            return x

        @staticmethod
        @cache.cached(ttl=10)
        async def parse(x: int) -> int:
            return x

        @classmethod
        @cache.cached(ttl=10)
        async def build(cls, x: int) -> int:
            return x

    for method in (Repo.get, Repo.parse, Repo().parse, Repo.build):
        if sys.version_info >= (3, 12):
            assert inspect.iscoroutinefunction(method)
        if sys.version_info < (3, 14):
            assert asyncio.iscoroutinefunction(method)


class _Album:
    """A type only this module's globals resolve."""


def _routed(fn: Any) -> Any:
    fn.route = "/albums"  # as a handler-registration decorator marks its function
    return fn


def _album_repos(cache: SWRCache) -> tuple[Any, Any]:
    class Plain:
        @_routed
        async def get(self, album_id: int) -> _Album:
            return _Album()

    class Repo:
        @cache.cached(ttl=10)
        @_routed
        async def get(self, album_id: int) -> _Album:
            return _Album()

    return Plain, Repo


def test_a_bound_method_has_the_functions_module_and_annotations(clock: FakeClock) -> None:
    """As a bound method reads them from its function (``typing.get_type_hints`` resolves
    them in the function's module); the class keeps its own module and no annotations."""
    Plain, Repo = _album_repos(SWRCache(clock=clock))
    expected = {"album_id": int, "return": _Album}
    assert typing.get_type_hints(Plain().get) == expected
    for method in (Repo.get, Repo().get):
        assert method.__module__ == __name__
        assert typing.get_type_hints(method) == expected
    assert BoundSWRFunction.__module__ == "aiocache_swr._function"
    assert repr(BoundSWRFunction) == "<class 'aiocache_swr._function.BoundSWRFunction'>"
    assert typing.get_type_hints(BoundSWRFunction) == {}
    assert inspect.get_annotations(BoundSWRFunction) == {}
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        assert pickle.loads(pickle.dumps(BoundSWRFunction, protocol)) is BoundSWRFunction


def test_a_bound_method_reads_what_a_decorator_set_on_the_function(clock: FakeClock) -> None:
    """An attribute set on the function by a decorator under ours (``fn.route``) is read
    through the method on its class and bound, as through a bound method."""
    _, Repo = _album_repos(SWRCache(clock=clock))
    assert Repo.get.route == "/albums"
    assert Repo().get.route == "/albums"
    with pytest.raises(AttributeError, match="_lru"):
        Repo().get._lru  # noqa: B018  (the engine's members are not the function's)


def test_a_bound_method_reads_the_functions_globals_and_evaluates_its_annotations(
    clock: FakeClock,
) -> None:
    """``__globals__`` is the function's, as through a bound method (frameworks resolve
    string annotations there); ``inspect.signature`` evaluates them with
    ``eval_str=True``, also through a wrapper, and leaves out the instance with
    ``follow_wrapped=False`` too."""

    cache = SWRCache(clock=clock)

    class Repo:
        @cache.cached(ttl=10)
        async def get(self, album_id: int) -> _Album:
            return _Album()

        @cache.cached(ttl=10)
        @passing
        async def wrapped_get(self, album_id: int) -> _Album:
            return _Album()

    repo = Repo()
    for name in ("get", "wrapped_get"):
        bound = getattr(repo, name)
        plain = types.MethodType(getattr(Repo, name).__wrapped__, repo)
        assert bound.__globals__ is plain.__globals__
        evaluated = inspect.signature(bound, eval_str=True)
        assert evaluated == inspect.signature(plain, eval_str=True)
        assert evaluated.return_annotation is _Album
        unwrapped = inspect.signature(bound, follow_wrapped=False)
        assert list(unwrapped.parameters) == ["album_id"]


def test_an_abstract_method_under_the_decorator_stays_abstract(clock: FakeClock) -> None:
    """``@cache.cached`` over ``@abc.abstractmethod``: the class cannot be instantiated
    until a subclass defines the method, as without the decorator."""
    cache = SWRCache(clock=clock)

    class Base(abc.ABC):
        @cache.cached(ttl=10)
        @abc.abstractmethod
        async def get(self, x: int) -> int: ...

    class Impl(Base):
        async def get(self, x: int) -> int:
            return x

    assert inspect.isabstract(Base)
    with pytest.raises(TypeError, match="abstract"):
        Base()
    assert not inspect.isabstract(Impl)
    Impl()


def test_decorating_in_a_function_keeps_none_of_its_locals_alive() -> None:
    """Decorating inside a function (the check for a class body) takes no copy of that
    function's locals: an object it deletes afterwards is gone at once."""
    clock = FakeClock()
    gone = weakref.ref(clock)
    cache = SWRCache()

    async def f(x: int) -> int:
        return x

    cache.cached(ttl=1)(f)
    del clock
    gc.collect()
    assert gone() is None
