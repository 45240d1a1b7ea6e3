"""Caching a slow HTTP-like API with aiocache-swr (simulated: no network needed).

    python examples/slow_api.py

``http_get`` stands for an HTTP client call that takes ~200 ms.  Decorated with
``@swr_cached``, the first request of a URL pays that once, repeated requests
are answered from memory, concurrent requests of one URL share one round trip,
and once a response is stale it is still answered at once while one background
request refreshes it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

from aiocache_swr import swr_cached

T = TypeVar("T")
LATENCY = 0.2  # seconds per simulated request
requests_made: list[str] = []


async def http_get(url: str) -> dict[str, object]:
    """A pretend HTTP GET returning a JSON body."""
    requests_made.append(url)
    await asyncio.sleep(LATENCY)
    return {"url": url, "status": 200, "served_at": round(time.time(), 3)}


@swr_cached(ttl=0.5, stale_ttl=60)  # fresh for 0.5 s, then served stale (and refreshed) for 1 min
async def get_json(url: str) -> dict[str, object]:
    return await http_get(url)


async def timed(label: str, awaitable: Awaitable[T]) -> T:
    start = time.perf_counter()
    result = await awaitable
    elapsed = (time.perf_counter() - start) * 1000
    print(f"{label:<46} {elapsed:8.1f} ms   requests so far: {len(requests_made)}")
    return result


async def main() -> None:
    urls = [f"https://api.example.com/items/{i}" for i in range(3)]
    await timed("3 URLs, cold, fetched concurrently", asyncio.gather(*map(get_json, urls)))
    await timed("the same 3 URLs again (fresh, from memory)", asyncio.gather(*map(get_json, urls)))
    hot = "https://api.example.com/hot"
    callers = asyncio.gather(*(get_json(hot) for _ in range(50)))
    await timed("50 concurrent callers of one cold URL", callers)
    await asyncio.sleep(0.55)  # let the entries go stale (real time: this is a script)
    await timed("a stale URL: answered at once, refreshing", get_json(urls[0]))
    await get_json.cache.wait_idle()  # the background request has finished
    await timed("the refreshed URL (fresh again)", get_json(urls[0]))
    info = get_json.cache_info()
    calls = info.hits + info.stale_hits + info.misses
    print(f"{calls} calls, {len(requests_made)} requests (3 cold + 1 hot + 1 background refresh)")
    print(info)


if __name__ == "__main__":
    asyncio.run(main())
