"""A child process for tests/test_persistence.py: a 'service' using a cache file.

usage: python _persist_child.py PATH MODE N
  write  -- compute keys 0..N-1 (str and int arguments, keywords) and exit
            without closing anything (asyncio.run ends the process's loop)
  read   -- read keys 0..N-1; print how many calls were recomputed as JSON
  hammer -- many misses, hits and invalidations on a shared file
"""

from __future__ import annotations

import asyncio
import json
import sys

from aiocache_swr import SWRCache

path, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
calls: list[str] = []
cache = SWRCache(store=path)


@cache.cached(ttl=3600, stale_ttl=None, namespace="users", maxsize=10_000)
async def fetch(name: str, number: int, *, region: str = "eu", tier: int = 0) -> dict[str, object]:
    calls.append(name)
    return {"name": name, "number": number, "region": region, "tier": tier}


async def main() -> None:
    if mode == "write":
        for i in range(n):
            await fetch(f"user-{i}", i, region="us", tier=i % 3)
    elif mode == "read":
        values = [await fetch(f"user-{i}", i, tier=i % 3, region="us") for i in range(n)]
        ok = all(v["number"] == i for i, v in enumerate(values))
        info = fetch.cache_info()
        print(json.dumps({"calls": len(calls), "ok": ok, "store_hits": info.store_hits}))
    elif mode == "hammer":
        for round_ in range(n):
            for i in range(20):
                await fetch(f"shared-{i}", i)
            await fetch.invalidate(f"shared-{round_ % 20}", round_ % 20)
            await cache.wait_idle()
        info = fetch.cache_info()
        print(json.dumps({"store_errors": info.store_errors}))


asyncio.run(main())
