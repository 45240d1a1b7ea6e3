"""Helpers for testing code that uses aiocache-swr.

:class:`FakeClock` replaces the wall clock of an :class:`~aiocache_swr.SWRCache`
so a test moves time by hand instead of sleeping::

    clock = FakeClock()
    cache = SWRCache(clock=clock)
    ...
    clock.advance(3600)   # every entry of ttl=3600 is now stale
"""

from __future__ import annotations

import math
from typing import final

__all__ = ["FakeClock"]


@final
class FakeClock:
    """A clock that only moves when told to.

    ``clock()`` returns the current time in seconds; ``clock.advance(s)`` moves
    it forward.  It never goes backwards.
    """

    __slots__ = ("_now",)

    def __init__(self, start: float = 1_000_000.0) -> None:
        if not math.isfinite(start):
            raise ValueError(f"FakeClock(start={start!r}): start must be a finite number")
        self._now = float(start)

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (>= 0)."""
        if not seconds >= 0 or math.isinf(seconds):
            raise ValueError(
                f"FakeClock.advance({seconds!r}): seconds must be a finite number >= 0"
            )
        self._now += seconds

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r})"
