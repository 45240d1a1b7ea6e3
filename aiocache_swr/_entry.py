"""A cached value and what the engine knows about it."""

from __future__ import annotations

from typing import Any

__all__ = ["Entry"]


class Entry:
    """One cached value: the locator lives in the LRU, this is version + value + times.

    ``fresh_until``/``serve_until`` come from :func:`aiocache_swr._freshness.deadlines`.
    ``failures``/``retry_at`` hold the refresh backoff of a stale value whose
    background refresh failed (rule 6); a new value starts with none, and a
    value read back from the store gets back what the engine kept for it.
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
