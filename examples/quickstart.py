import asyncio
import time

from aiocache_swr import swr_cached


@swr_cached(ttl=0.5, stale_ttl=60)  # fresh for 0.5 s, then served stale for a minute
async def fetch_user(user_id: int) -> dict[str, object]:
    await asyncio.sleep(0.2)  # a slow API
    return {"id": user_id, "fetched_at": round(time.time(), 2)}


async def timed(label: str) -> None:
    start = time.perf_counter()
    user = await fetch_user(1)
    print(f"{label:<10} {user} in {(time.perf_counter() - start) * 1000:6.2f} ms")


async def main() -> None:
    await timed("miss")  # computed inline, ~200 ms
    await timed("fresh")  # from memory
    await asyncio.sleep(0.6)  # the entry goes stale
    await timed("stale")  # the old value at once; one refresh starts in the background
    await fetch_user.cache.wait_idle()
    await timed("refreshed")  # the new value, from memory
    print(fetch_user.cache_info())


asyncio.run(main())
