"""A long-running bot loop that polls a slow API on every tick, through aiocache-swr.

    python examples/bot_loop.py
    BOT_ITERATIONS=1000 BOT_INTERVAL=1 BOT_CACHE_FILE=bot-cache.db python examples/bot_loop.py

Each tick the bot needs the latest quotes.  The quote API takes ~150 ms; the
bot's tick must not.  With ``ttl`` shorter than the API's latency budget and a
generous ``stale_ttl``, only the very first tick waits: after that every tick is
answered at once (fresh, or stale while one background refresh per symbol runs),
and a flaky API never stalls the loop.

Environment: ``BOT_ITERATIONS`` (ticks, default 15), ``BOT_INTERVAL`` (seconds
between ticks, default 0.05), ``BOT_CACHE_FILE`` (optional SQLite file, so a
restarted bot starts warm).
"""

from __future__ import annotations

import asyncio
import os
import random
import time

from aiocache_swr import SWRCache

ITERATIONS = int(os.environ.get("BOT_ITERATIONS", "15"))
INTERVAL = float(os.environ.get("BOT_INTERVAL", "0.05"))
CACHE_FILE = os.environ.get("BOT_CACHE_FILE") or None
SYMBOLS = ("BTC", "ETH")

cache = SWRCache(store=CACHE_FILE)
api_calls = 0


@cache.cached(ttl=0.2, stale_ttl=30, namespace="bot.quote")
async def quote(symbol: str) -> float:
    """The slow quote API (simulated)."""
    global api_calls
    api_calls += 1
    await asyncio.sleep(0.15)
    return round(100 + random.random(), 2)


async def tick(n: int) -> None:
    start = time.perf_counter()
    prices = await asyncio.gather(*(quote(s) for s in SYMBOLS))
    elapsed = (time.perf_counter() - start) * 1000
    shown = "  ".join(f"{s}={p:7.2f}" for s, p in zip(SYMBOLS, prices, strict=True))
    print(f"tick {n:>3}  {shown}  answered in {elapsed:7.1f} ms  (API calls so far: {api_calls})")


async def main() -> None:
    async with cache:  # on exit: waits for refreshes in flight, flushes the file, closes
        for n in range(1, ITERATIONS + 1):
            await tick(n)
            await asyncio.sleep(INTERVAL)
    info = quote.cache_info()
    print(
        f"done: {ITERATIONS} ticks, {api_calls} API calls; hits={info.hits} "
        f"stale_hits={info.stale_hits} misses={info.misses} refreshes={info.refreshes} "
        f"store_hits={info.store_hits}"
    )


if __name__ == "__main__":
    asyncio.run(main())
