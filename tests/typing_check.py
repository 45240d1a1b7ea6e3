"""Checked by ``mypy --strict`` (see pyproject.toml), never run: pins the public types.

A decorated function keeps its parameters and return type, and its helpers
(refresh, invalidate, cache_clear, cache_info) are typed.  So does a decorated
method: read on its class it is the function, taking the instance first; read
on an instance it is a ``BoundSWRFunction`` without it.  A static method
(``@staticmethod`` above the decorator) is typed when read on its class: mypy
takes one read on an instance for a bound method (it applies the decorated
object's ``__get__``, which ``staticmethod`` skips), and a ``@classmethod``
above the decorator for a method that is never bound.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import assert_type

from aiocache_swr import BoundSWRFunction, CacheInfo, SWRCache, SWRFunction, swr_cached
from aiocache_swr.testing import FakeClock


@swr_cached(ttl=60, stale_ttl=3600)
async def fetch_user(user_id: int, *, verbose: bool = False) -> dict[str, int]:
    return {"id": user_id}


cache = SWRCache(clock=FakeClock())


@cache.cached(ttl=None, version=lambda name: len(name), tags=lambda name: [name])
async def greet(name: str) -> str:
    return f"hi {name}"


class Repo:
    @cache.cached(ttl=60)
    async def get(self, x: int, *, fresh: bool = False) -> str:
        return str(x)

    @staticmethod
    @cache.cached(ttl=60)
    async def parse(text: str) -> int:
        return len(text)


def takes_any_swr_function(f: SWRFunction[..., object]) -> CacheInfo:
    return f.cache_info()


async def uses() -> None:
    as_callable: Callable[[int], Awaitable[dict[str, int]]] = fetch_user
    assert_type(await as_callable(1), dict[str, int])
    assert_type(await fetch_user(1), dict[str, int])
    assert_type(await fetch_user(1, verbose=True), dict[str, int])
    assert_type(await fetch_user.refresh(2), dict[str, int])
    assert_type(await fetch_user.invalidate(2), None)
    assert_type(await fetch_user.cache_clear(), None)
    assert_type(fetch_user.cache_info(), CacheInfo)
    assert_type(await greet("ann"), str)
    await fetch_user("not an int")  # type: ignore[arg-type]
    await fetch_user(1, loud=True)  # type: ignore[call-arg]
    await greet.refresh(1)  # type: ignore[arg-type]
    as_swr: SWRFunction[[str], str] = greet
    assert_type(fetch_user.__name__, str)
    assert_type(await fetch_user.__wrapped__(1), dict[str, int])
    assert_type(await as_swr("ann"), str)
    assert_type(takes_any_swr_function(fetch_user), CacheInfo)
    takes_any_swr_function(len)  # type: ignore[arg-type]
    await Repo().get(1)
    await cache.invalidate_tags("user:1")
    await cache.wait_idle()
    async with cache:
        pass


def takes_bound_str(f: BoundSWRFunction[[str], str]) -> None:
    pass


async def uses_methods(repo: Repo) -> None:
    # Read on the class: the function, taking the instance first.
    assert_type(await Repo.get(repo, 1), str)
    assert_type(await Repo.get.refresh(repo, 1, fresh=True), str)
    assert_type(await Repo.get.invalidate(repo, 1), None)
    assert_type(Repo.get.cache_info(), CacheInfo)
    unbound: SWRFunction[[Repo, int], str] = Repo.get
    assert_type(await unbound(repo, 1), str)
    await Repo.get(1)  # type: ignore[arg-type, call-arg]
    # Read on an instance: bound to it, without it.
    bound: BoundSWRFunction[[int], str] = repo.get
    as_callable: Callable[[int], Awaitable[str]] = repo.get
    assert_type(await bound(1), str)
    assert_type(await as_callable(1), str)
    assert_type(await repo.get(1), str)
    assert_type(await repo.get(1, fresh=True), str)
    assert_type(await repo.get.refresh(1), str)
    assert_type(await repo.get.invalidate(1, fresh=True), None)
    assert_type(await repo.get.cache_clear(), None)
    assert_type(repo.get.cache_info(), CacheInfo)
    assert_type(repo.get.cache, SWRCache)
    assert_type(repo.get.namespace, str)
    assert_type(repo.get.__name__, str)
    assert_type(repo.get.__qualname__, str)
    assert_type(repo.get.__self__, object)
    assert_type(await repo.get.__wrapped__(1), str)
    await repo.get("1")  # type: ignore[arg-type]
    await repo.get(repo)  # type: ignore[arg-type]
    await repo.get(1, True)  # type: ignore[call-arg]
    await repo.get(1, stale=True)  # type: ignore[call-arg]
    await repo.get.refresh("1")  # type: ignore[arg-type]
    await repo.get.invalidate()  # type: ignore[call-arg]
    await repo.get.invalidate(repo)  # type: ignore[arg-type]
    print(repo.get.no_such_member)  # type: ignore[attr-defined]
    takes_bound_str(repo.get)  # type: ignore[arg-type]
    # A static method, read on its class.
    assert_type(await Repo.parse("ab"), int)
    assert_type(await Repo.parse.refresh("ab"), int)
    assert_type(await Repo.parse.invalidate("ab"), None)
    await Repo.parse(1)  # type: ignore[arg-type]
