"""Checked by ``mypy --strict`` (see pyproject.toml), never run: pins the public types.

A decorated function keeps its parameters and return type, and its helpers
(refresh, invalidate, cache_clear, cache_info) are typed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import assert_type

from aiocache_swr import CacheInfo, SWRCache, SWRFunction, swr_cached
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
    async def get(self, x: int) -> str:
        return str(x)


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
