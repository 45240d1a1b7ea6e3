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


def _finite_seconds(value: object, what: str) -> float:
    """``value`` as float: TypeError unless a number (not bool), ValueError unless finite."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a number of seconds, got {value!r}")
    try:
        seconds = float(value)
    except OverflowError:
        raise ValueError(f"{what} must be a finite number, got an int beyond float range") from None
    if not math.isfinite(seconds):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return seconds


@final
class FakeClock:
    """A clock that only moves when told to.

    ``clock()`` returns the current time in seconds; ``clock.advance(s)`` moves
    it forward.  It never goes backwards.
    """

    __slots__ = ("__weakref__", "_now")

    def __init__(self, start: float = 1_000_000.0) -> None:
        self._now = _finite_seconds(start, "FakeClock(start=...)")

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (>= 0)."""
        step = _finite_seconds(seconds, "FakeClock.advance(seconds=...)")
        if step < 0:
            raise ValueError(
                f"FakeClock.advance({seconds!r}): seconds must be a finite number >= 0"
            )
        now = self._now + step
        if math.isinf(now):
            raise ValueError(f"FakeClock.advance({seconds!r}): the time would no longer be finite")
        self._now = now

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r})"
