"""How long a key waits before its next background refresh after failures."""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["BACKOFF_BASE", "BACKOFF_CAP", "backoff_delay"]

#: Seconds to wait after the first failed refresh of a key.
BACKOFF_BASE = 1.0
#: The longest wait between two refreshes of a failing key.
BACKOFF_CAP = 300.0


def backoff_delay(
    failures: int,
    *,
    base: float = BACKOFF_BASE,
    cap: float = BACKOFF_CAP,
    rand: Callable[[], float] = random.random,
) -> float:
    """Delay after ``failures`` consecutive failures (>= 1): exponential, capped, jittered.

    "Equal jitter": half of ``min(cap, base * 2**(failures-1))`` is fixed and the
    other half random, so retries of many keys spread out, yet never come sooner
    than half the nominal delay.
    """
    nominal = min(cap, base * 2.0 ** min(failures - 1, 64))
    return nominal / 2 + nominal / 2 * rand()
