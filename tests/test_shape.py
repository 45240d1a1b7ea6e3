"""What the decorator returns: an ``async def`` function for a function, a binding
object for a method defined in a class body; both are ``SWRFunction``s.

A fetch's result is ``"<key>:<n>"``, ``n`` counting the calls made for that key.
"""

from __future__ import annotations

import functools
import gc
import inspect
import weakref
from typing import Any

import pytest

from aiocache_swr import BoundSWRFunction, SWRCache, SWRFunction
from aiocache_swr._function import _is_method, engine_of
from aiocache_swr.testing import FakeClock

from ._fetcher import Fetcher

pytestmark = pytest.mark.anyio

MEMBERS = ("refresh", "invalidate", "cache_clear", "cache_info", "cache", "namespace")


async def module_level(x: int) -> int:
    return x


class Holder:
    async def method(self, x: int) -> int:
        return x


def nested() -> Any:
    async def inner(x: int) -> int:
        return x

    class Local:
        async def method(self, x: int) -> int:
            return x

    return inner, Local.method


@pytest.mark.parametrize(
    ("fn", "in_class_body"),
    [
        pytest.param(module_level, False, id="module-level"),
        pytest.param(nested()[0], False, id="nested-in-a-function"),
        pytest.param(Holder.method, True, id="class-body"),
        pytest.param(nested()[1], True, id="class-body-of-a-local-class"),
        pytest.param(Holder().method, False, id="bound-method"),
        pytest.param(functools.partial(module_level), False, id="partial"),
    ],
)
def test_decorated_elsewhere_a_function_whose_qualname_is_in_a_class_body_is_a_method(
    fn: Any, in_class_body: bool
) -> None:
    """Outside a class body, the binding shape is picked by __qualname__, of functions only."""
    assert _is_method(fn, caller=None) is in_class_body


async def test_a_method_below_a_decorator_that_does_not_copy_its_name_still_binds(
    clock: FakeClock, fetcher: Fetcher
) -> None:
    """Decorated in a class body, whatever its __qualname__: obj.get.invalidate(x) keys on obj."""

    def plain_decorator(fn: Any) -> Any:
        async def wrapper(*args: Any) -> Any:
            return await fn(*args)

        return wrapper

    async with SWRCache(clock=clock) as cache:

        class Repo:
            @cache.cached(ttl=10)
            @plain_decorator
            async def get(self, x: int) -> str:
                return await fetcher(x)

        repo = Repo()
        assert await repo.get(1) == "1:1"
        await repo.get.invalidate(1)
        assert await repo.get(1) == "1:2"
        assert await repo.get.refresh(1) == "1:3"


async def test_a_decorated_function_is_a_coroutine_function_that_looks_like_the_original(
    clock: FakeClock,
) -> None:
    """Name, docstring, signature, __wrapped__ and the function's own attributes carry over;
    inspect and asyncio see a coroutine function (frameworks that check it treat it as async)."""

    async def fetch_album(album_id: int, *, lang: str = "en") -> str:
        """Fetch one album."""
        return f"{album_id}/{lang}"

    fetch_album.marker = "kept"  # type: ignore[attr-defined]
    cache = SWRCache(clock=clock)
    f = cache.cached(ttl=10)(fetch_album)
    assert inspect.iscoroutinefunction(f)
    assert (f.__name__, f.__doc__) == ("fetch_album", "Fetch one album.")
    assert f.__qualname__ == fetch_album.__qualname__
    assert f.__wrapped__ is fetch_album  # type: ignore[attr-defined]
    assert inspect.signature(f) == inspect.signature(fetch_album)
    assert f.marker == "kept"  # type: ignore[attr-defined]
    assert await f(1, lang="fr") == "1/fr"
    async with cache:
        assert await f(1, lang="fr") == "1/fr"
    assert f.cache_info().hits == 1


async def test_both_shapes_are_swr_functions_with_every_member(
    clock: FakeClock, fetcher: Fetcher
) -> None:
    """isinstance(f, SWRFunction) holds for a function and for a method, bound or not."""
    async with SWRCache(clock=clock) as cache:

        @cache.cached(ttl=10)
        async def f(x: int) -> str:
            return await fetcher(x)

        class Repo:
            @cache.cached(ttl=10)
            async def get(self, x: int) -> str:
                return await fetcher(x)

        for obj in (f, Repo.get):
            assert isinstance(obj, SWRFunction)
            assert all(hasattr(obj, m) for m in MEMBERS)
            assert obj.cache is cache
        bound = Repo().get
        assert isinstance(bound, BoundSWRFunction)
        assert f.namespace.endswith(".f")
        assert Repo.get.namespace.endswith("Repo.get")
        assert not isinstance(fetcher, SWRFunction)


async def test_a_method_called_through_the_class_shares_the_instances_entry(
    clock: FakeClock, fetcher: Fetcher
) -> None:
    """Repo.get(obj, x) and obj.get(x) are one key: (obj, x)."""
    async with SWRCache(clock=clock) as cache:

        class Repo:
            @cache.cached(ttl=10)
            async def get(self, x: int) -> str:
                return await fetcher(x)

        repo = Repo()
        assert await repo.get(1) == "1:1"
        assert await Repo.get(repo, 1) == "1:1"
        assert inspect.iscoroutinefunction(type(Repo.get).__call__)
        assert Repo.get.cache_info().hits == 1


async def test_a_decorated_function_set_on_a_class_later_binds_when_called(
    clock: FakeClock, fetcher: Fetcher
) -> None:
    """Assigned to a class attribute, it binds like any function: the instance is in the key;
    its invalidate() then takes the instance explicitly, through the class."""
    async with SWRCache(clock=clock) as cache:

        async def get(self: object, x: int) -> str:
            return await fetcher(x)

        class Repo:
            pass

        Repo.get = cache.cached(ttl=10)(get)  # type: ignore[attr-defined]
        a, b = Repo(), Repo()
        assert await a.get(1) == "1:1"  # type: ignore[attr-defined]
        assert await b.get(1) == "1:2"  # type: ignore[attr-defined]
        assert await a.get(1) == "1:1"  # type: ignore[attr-defined]
        await Repo.get.invalidate(a, 1)  # type: ignore[attr-defined]
        assert await a.get(1) == "1:3"  # type: ignore[attr-defined]
        assert await b.get(1) == "1:2"  # type: ignore[attr-defined]


async def test_a_static_method_above_the_decorator_is_not_bound(
    clock: FakeClock, fetcher: Fetcher
) -> None:
    """@staticmethod over @cache.cached: called on the class or an instance, one key (x,)."""
    async with SWRCache(clock=clock) as cache:

        class Repo:
            @staticmethod
            @cache.cached(ttl=10)
            async def get(x: int) -> str:
                return await fetcher(x)

        assert await Repo.get(1) == "1:1"
        assert await Repo().get(1) == "1:1"
        assert Repo.get.cache_info().hits == 1


async def test_a_decorated_function_decorated_again_has_its_own_cache(
    clock: FakeClock, fetcher: Fetcher
) -> None:
    """The outer decoration's members are its own, not copied from the inner one."""
    async with SWRCache(clock=clock) as inner_cache, SWRCache(clock=clock) as outer_cache:

        @outer_cache.cached(ttl=10)
        @inner_cache.cached(ttl=10)
        async def f(x: int) -> str:
            return await fetcher(x)

        assert await f(1) == "1:1"
        assert await f(1) == "1:1"
        assert f.cache is outer_cache
        assert (f.cache_info().misses, f.cache_info().hits) == (1, 1)
        inner = f.__wrapped__  # type: ignore[attr-defined]
        assert inner.cache is inner_cache
        assert (inner.cache_info().misses, inner.cache_info().hits) == (1, 0)


async def test_a_callable_instance_lends_its_name_but_not_its_attributes(
    clock: FakeClock,
) -> None:
    """Only a function's attributes are copied (as functools.wraps does); an object's are
    its state, not copied; the decorated function is not named after the inner closure."""

    class Client:
        def __init__(self) -> None:
            self.token = "secret"

        async def __call__(self, x: int) -> int:
            return x

    f = SWRCache(clock=clock).cached(ttl=10)(Client())
    assert not hasattr(f, "token")
    assert "call" not in (f.__name__, f.__qualname__)
    g = SWRCache(clock=clock).cached(ttl=10)(functools.partial(module_level))
    assert "call" not in (g.__name__, g.__qualname__)


def test_a_dropped_decorated_function_is_freed_without_the_garbage_collector(
    clock: FakeClock,
) -> None:
    """No reference cycle between the function and its engine: its LRU goes with it."""
    cache = SWRCache(clock=clock)
    gc.disable()
    try:
        f = cache.cached(ttl=10)(module_level)
        engine = weakref.ref(engine_of(f))
        del f
        assert engine() is None
    finally:
        gc.enable()


def test_engine_of_refuses_an_undecorated_function() -> None:
    """The test helper names what it was given instead of failing on a missing attribute."""
    with pytest.raises(TypeError, match=r"module_level.*not a function decorated"):
        engine_of(module_level)
