"""The freshness rules (SPEC section 2), as a pure function.

Nothing here touches an event loop, a clock or a cache: :func:`judge` takes an
entry, the current time and the current version and says what the entry is.
That keeps the rules testable on their own (see ``tests/test_freshness.py``).

An entry carries two deadlines computed once, when its value was computed, from
the function's ``ttl`` and ``stale_ttl`` (:func:`deadlines`): ``fresh_until``
and ``serve_until``.  Age always counts from when the value was computed, so
serving a stale value never extends its life (rule 8).
"""

from __future__ import annotations

import enum
import math
from typing import Protocol

__all__ = ["Freshness", "deadlines", "judge"]


class Freshness(enum.Enum):
    """What a cached entry is, for one call."""

    FRESH = "fresh"
    """Return it."""
    STALE = "stale"
    """Return it at once, and make sure one background refresh runs."""
    EXPIRED = "expired"
    """It may not be served: compute inline, as for a miss."""


FRESH = Freshness.FRESH
STALE = Freshness.STALE
EXPIRED = Freshness.EXPIRED


class Judged(Protocol):
    """What :func:`judge` reads from an entry."""

    @property
    def version(self) -> object: ...
    @property
    def fresh_until(self) -> float: ...
    @property
    def serve_until(self) -> float: ...


def deadlines(created: float, ttl: float | None, stale_ttl: float | None) -> tuple[float, float]:
    """Return ``(fresh_until, serve_until)`` for a value computed at ``created``.

    * ``ttl=None``: fresh until its version changes (``fresh_until`` is +inf).
    * ``stale_ttl=None``: a stale entry may always be served.
    * ``stale_ttl=0``: a stale entry is never served (``serve_until`` is -inf,
      so even an entry that is stale only because its version changed is a miss).
    * otherwise a stale entry may be served while its age < ``ttl + stale_ttl``;
      with ``ttl=None`` age never ends that, so only a version change makes it stale.
    """
    fresh_until = math.inf if ttl is None else created + ttl
    if stale_ttl == 0:
        serve_until = -math.inf
    elif stale_ttl is None:
        serve_until = math.inf
    else:
        serve_until = fresh_until + stale_ttl
    return fresh_until, serve_until


def judge(entry: Judged, now: float, version: object) -> Freshness:
    """Say whether ``entry`` is fresh, stale-but-servable, or expired at ``now``.

    Fresh: younger than ``ttl`` and stored under the current ``version``.
    Otherwise stale, and servable until ``serve_until``; past it, expired.
    """
    if now < entry.fresh_until and entry.version == version:
        return FRESH
    if now < entry.serve_until:
        return STALE
    return EXPIRED
