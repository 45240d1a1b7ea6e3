"""The statistics snapshot returned by ``cache_info()``."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CacheInfo"]


@dataclass(frozen=True, slots=True)
class CacheInfo:
    """A snapshot of one decorated function's counters.

    Each call counts exactly once, as a hit, a stale hit or a miss.

    * ``hits``: calls answered by a fresh entry.
    * ``stale_hits``: calls answered at once by a stale entry.
    * ``misses``: calls not answered from memory: each waited for the level-2
      store's answer (if the function has a store) and, if that had no usable
      row, for a computation (its own or a shared one).  Those the store
      answered, with a fresh row or a stale one (served at once, refreshed in
      the background), are misses too (and counted in ``store_hits``).
    * ``refreshes``: recomputations started other than by a miss: background
      refreshes (including one whose ``tags=`` raised before it could start) and
      ``refresh()`` calls, whether or not the key had an entry (a call whose key,
      ``version=`` or ``tags=`` raised starts nothing and is not counted).
    * ``refresh_errors``: background refreshes that raised (the stale value was kept).
    * ``evictions``: entries dropped from memory because the LRU was full.
    * ``currsize`` / ``maxsize``: entries in memory now, and the bound.
    * ``store_hits``: misses answered from the level-2 store (a fresh row, or a
      stale one served at once while it refreshes), once per store read: the
      concurrent misses of a key share one read, and each is in ``misses``.
    * ``store_errors``: level-2 store operations that failed (logged; never raised).
    """

    hits: int
    stale_hits: int
    misses: int
    refreshes: int
    refresh_errors: int
    evictions: int
    currsize: int
    maxsize: int
    store_hits: int = 0
    store_errors: int = 0
