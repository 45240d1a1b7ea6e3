"""aiocache-swr: an asyncio stale-while-revalidate memoizer.

A fresh entry is returned from memory; a stale one is returned at once while
one background refresh runs; a miss is computed once however many callers wait
for it.  Entries can also live in SQLite, so a restarted process answers from
disk.  See ``swr_cached``.
"""

from ._cache import SWRCache, swr_cached
from ._events import CacheEvent
from ._function import BoundSWRFunction
from ._info import CacheInfo
from ._sqlite import JSONSerializer, PickleSerializer, SQLiteStore
from ._types import SWRFunction

__all__ = [
    "BoundSWRFunction",
    "CacheEvent",
    "CacheInfo",
    "JSONSerializer",
    "PickleSerializer",
    "SQLiteStore",
    "SWRCache",
    "SWRFunction",
    "swr_cached",
]
