"""A framework-free web handler using aiocache-swr, served with asyncio streams.

    python examples/web_handler.py

The server listens on 127.0.0.1 on a free port, the script sends itself a few
HTTP requests, prints what came back, and stops.  ``handle()`` is the part a
real application would have in its framework's route: a cached lookup for
GET, and ``refresh()`` for the write path, where the editor must see the latest
value at once.
"""

from __future__ import annotations

import asyncio
import json
import time

from aiocache_swr import SWRCache

cache = SWRCache()  # the application's cache: its lifetime is the server's (see main)
db_queries = 0
db_names = {1: "Ada", 2: "Grace"}


@cache.cached(ttl=30, stale_ttl=300)
async def load_user(user_id: int) -> dict[str, object]:
    """The slow part: a database query (simulated, 200 ms)."""
    global db_queries
    db_queries += 1
    await asyncio.sleep(0.2)
    return {"id": user_id, "name": db_names.get(user_id, "?"), "query": db_queries}


async def handle(method: str, path: str) -> tuple[int, dict[str, object]]:
    """Route one request: ``GET /users/<id>``, ``POST /users/<id>/rename/<name>``."""
    parts = path.strip("/").split("/")
    if len(parts) < 2 or parts[0] != "users" or not parts[1].isdigit():
        return 404, {"error": "not found"}
    user_id = int(parts[1])
    if method == "GET" and len(parts) == 2:
        return 200, await load_user(user_id)
    if method == "POST" and len(parts) == 4 and parts[2] == "rename":
        db_names[user_id] = parts[3]  # the write...
        return 200, await load_user.refresh(user_id)  # ...and the editor sees it at once
    return 405, {"error": "method not allowed"}


async def serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Minimal HTTP/1.1: one request per connection."""
    try:
        request_line = (await reader.readline()).decode("latin-1").split()
        while (await reader.readline()).strip():  # skip the headers
            pass
        if len(request_line) == 3:
            status, body = await handle(request_line[0], request_line[1])
        else:
            status, body = 400, {"error": "bad request"}
        payload = json.dumps(body).encode()
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
            + payload
        )
        await writer.drain()
    finally:
        writer.close()
        await writer.wait_closed()


async def request(port: int, method: str, path: str) -> tuple[int, str, float]:
    """A tiny HTTP client: (status, body, milliseconds)."""
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = response.decode().partition("\r\n\r\n")
    status = int(head.split()[1])
    return status, body, (time.perf_counter() - start) * 1000


async def main() -> None:
    async with cache:  # the application's lifespan: refreshes finish, then everything closes
        server = await asyncio.start_server(serve_client, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        print(f"listening on http://127.0.0.1:{port}")
        async with server:
            for method, path in [
                ("GET", "/users/1"),  # miss: one query
                ("GET", "/users/1"),  # fresh: from memory
                ("POST", "/users/1/rename/Lovelace"),  # write path: refresh()
                ("GET", "/users/1"),  # the new value, from memory
                ("GET", "/nothing"),
            ]:
                status, body, ms = await request(port, method, path)
                print(f"{method:<4} {path:<26} -> {status} {body:<46} {ms:7.1f} ms")
            results = await asyncio.gather(*(request(port, "GET", "/users/2") for _ in range(20)))
            slowest = max(ms for _, _, ms in results)
            statuses = {status for status, _, _ in results}
            print(f"20 concurrent GET /users/2  -> {statuses} in at most {slowest:.1f} ms")
    print(f"database queries: {db_queries}; {load_user.cache_info()}")


if __name__ == "__main__":
    asyncio.run(main())
