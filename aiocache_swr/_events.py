"""Events for metrics: what a cache tells an ``on_event`` listener."""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Literal

__all__ = ["CacheEvent", "EventKind", "EventListener", "emit"]

logger = logging.getLogger("aiocache_swr")

EventKind = Literal[
    "hit",
    "stale_hit",
    "miss",
    "store_hit",
    "refresh_ok",
    "refresh_error",
    "eviction",
    "store_error",
]


@dataclass(frozen=True, slots=True)
class CacheEvent:
    """One thing that happened in a cache.

    * ``kind``: ``hit``, ``stale_hit`` and ``miss`` (one per call, as counted by
      ``cache_info()``), ``store_hit`` (a miss in memory answered by the store),
      ``refresh_ok`` / ``refresh_error`` (a background refresh or ``refresh()``
      finished), ``eviction`` (an entry dropped from memory to make room),
      ``store_error`` (a store operation failed; logged, never raised).
    * ``function``: the function's namespace (default ``"module.qualname"``), but
      ``repr(store)`` (e.g. ``"SQLiteStore('/srv/app/cache.db')"``) for a
      ``store_error`` of the cache as a whole, one no function owns: a failed
      write batch (flush), close, or ``invalidate_tags``.
    * ``key``: the cache key concerned (``None`` for store errors not tied to a key).
    * ``error``: the exception, for ``refresh_error`` and ``store_error``.
    """

    kind: EventKind
    function: str
    key: Hashable | None
    error: BaseException | None = None


EventListener = Callable[[CacheEvent], None]


def emit(listener: EventListener, event: CacheEvent) -> None:
    """Call ``listener``; a failing listener is logged and never breaks the cache."""
    try:
        listener(event)
    except Exception:
        logger.exception("aiocache_swr: the on_event listener failed on %r", event)
