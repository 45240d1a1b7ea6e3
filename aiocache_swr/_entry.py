"""A cached value and what the engine knows about it; the in-memory LRU."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["LRU", "Entry"]


class Entry:
    """One cached value: the locator lives in the LRU, this is version + value + times.

    ``fresh_until``/``serve_until`` come from :func:`aiocache_swr._freshness.deadlines`.
    ``failures``/``retry_at`` hold the refresh backoff of a stale value whose
    background refresh failed (rule 6); a new value starts with none.
    """

    __slots__ = (
        "created",
        "failures",
        "fresh_until",
        "retry_at",
        "serve_until",
        "tags",
        "value",
        "version",
    )

    def __init__(
        self,
        value: Any,
        version: Any,
        created: float,
        fresh_until: float,
        serve_until: float,
        tags: tuple[str, ...],
    ) -> None:
        self.value = value
        self.version = version
        self.created = created
        self.fresh_until = fresh_until
        self.serve_until = serve_until
        self.tags = tags
        self.failures = 0
        self.retry_at = 0.0

    def __repr__(self) -> str:
        return (
            f"Entry(value={self.value!r}, version={self.version!r}, created={self.created!r}, "
            f"failures={self.failures})"
        )


class LRU(OrderedDict[Hashable, Entry]):
    """The in-memory level: an insertion-ordered dict kept in least-recently-used order.

    A hit is ``lru[key]`` plus ``lru.move_to_end(key)``, both in C; ``put``
    evicts the least recently used entries beyond ``maxsize`` and counts them.
    (cachetools' ``LRUCache`` does the same bookkeeping in three Python-level
    calls per lookup, which measured at about 40% of a whole fresh hit.)
    """

    __slots__ = ("evictions", "maxsize")

    def __init__(self, maxsize: int) -> None:
        super().__init__()
        self.maxsize = maxsize
        self.evictions = 0

    def put(self, key: Hashable, entry: Entry, on_evict: Callable[[Hashable], None]) -> None:
        """Store ``entry`` as the most recently used; evict beyond ``maxsize``."""
        self[key] = entry
        self.move_to_end(key)
        while len(self) > self.maxsize:
            evicted, _ = self.popitem(last=False)
            self.evictions += 1
            on_evict(evicted)
