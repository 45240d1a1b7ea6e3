"""Time limits of one length for the tasks of one asyncio loop, on one shared timer.

``asyncio.timeout`` arms a timer when it is entered and cancels it when it is
left: a push on the loop's timer heap, a cancelled handle for the loop to drop
later, and two coroutines for ``async with``.  Around a level-2 read that is
the only store call running, that was 13% of the read.

Limits of one length end in the order they start, so a :class:`Watchdog`
keeps them in a queue, in deadline order, and arms one timer for the oldest.
A limit left in time costs a queue entry: when the timer fires, limits that
have ended are dropped, those past their deadline are expired, and the timer
is armed again for the oldest left.  An expiring limit cancels its task and,
when the task's cancellation comes back through it, turns it into
``TimeoutError`` exactly as ``asyncio.timeout`` does on Python 3.11+: a
cancellation from anywhere else (requested meanwhile, as counted by
``Task.cancelling()``) goes through unchanged.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType

__all__ = ["TimeLimit", "Watchdog"]

_COMPACT_MIN = 64


class Watchdog:
    """Time limits of ``seconds`` for tasks running on ``loop`` (see the module docstring).

    Not thread-safe, like the loop's own timers: use it from the loop's thread.
    """

    __slots__ = ("_armed", "_compact_at", "_limits", "_loop", "_when", "seconds")

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        self._loop = loop
        self.seconds = seconds
        self._limits: deque[TimeLimit] = deque()  # in deadline order
        self._compact_at = _COMPACT_MIN  # drop every ended limit when this many are queued
        # The timer: whether it is armed, and for which deadline.  Its handle is not
        # kept (it is never cancelled): the loop's reference to it is the only one.
        self._armed = False
        self._when = 0.0

    def limit(self) -> TimeLimit:
        """A context manager: the body is cancelled, as ``TimeoutError``, after ``seconds``."""
        return TimeLimit(self)

    @property
    def pending(self) -> int:
        """Limits queued: running, or ended and not dropped yet."""
        return len(self._limits)

    def _add(self, limit: TimeLimit) -> None:
        limits = self._limits
        while limits and limits[0].task is None:  # ended: drop them now
            limits.popleft()
        if len(limits) >= self._compact_at:
            # Limits that ended behind one that still runs (a slow call): drop them
            # too, or they pile up until its deadline.  Amortized O(1): the bound doubles.
            limits = self._limits = deque(running for running in limits if running.task is not None)
            self._compact_at = max(_COMPACT_MIN, 2 * len(limits))
        limits.append(limit)
        if not self._armed:
            self._arm(limit.deadline)

    def _arm(self, when: float) -> None:
        self._armed = True
        self._when = when
        self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._armed = False
        limits = self._limits
        while limits and limits[0].task is None:  # ended
            limits.popleft()
        if not limits:
            return
        if limits[0].deadline > self._when:
            # Armed for a limit that has ended: wake up again at the oldest running
            # one's own deadline, even if the loop runs late and it is already past,
            # so that other timers due before it (a caller's own deadline, whose
            # cancellation must win) run first, as with a timer per limit.
            self._arm(limits[0].deadline)
            return
        # Due: expire, in this one turn, every limit due by now, as the loop runs
        # every timer that is due in one turn.
        due = max(self._loop.time(), self._when)
        expiring: list[TimeLimit] = []
        while limits and (limits[0].task is None or limits[0].deadline <= due):
            limit = limits.popleft()
            if limit.task is not None:
                expiring.append(limit)
        if limits:
            self._arm(limits[0].deadline)
        for limit in expiring:
            task = limit.task
            assert task is not None
            try:
                task.cancel()
            except Exception as exc:  # e.g. an awaited future whose cancel() fails
                # Reported as the loop reports a failing timer; the other limits go on.
                self._loop.call_exception_handler(
                    {
                        "message": "aiocache_swr: a time limit could not cancel its task",
                        "exception": exc,
                        "task": task,
                    }
                )
            else:
                limit.expired = True  # after: a failed cancel() leaves nothing to undo


class TimeLimit:
    """One use of a :class:`Watchdog`: ``with watchdog.limit(): await ...``."""

    __slots__ = ("_cancelling", "_watchdog", "deadline", "expired", "task")

    def __init__(self, watchdog: Watchdog) -> None:
        self._watchdog: Watchdog | None = watchdog
        self.task: asyncio.Task[object] | None = None  # while the body runs
        self.deadline = 0.0
        self.expired = False
        self._cancelling = 0

    def __enter__(self) -> TimeLimit:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a time limit needs to run in a task")
        watchdog = self._watchdog
        if watchdog is None:
            raise RuntimeError("a TimeLimit is entered once")
        self._watchdog = None  # queued by it: no reference cycle left for the collector
        self._cancelling = task.cancelling()
        self.deadline = watchdog._loop.time() + watchdog.seconds
        self.task = task
        watchdog._add(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task = self.task
        self.task = None  # ended: the watchdog drops it
        if (
            self.expired
            and task is not None
            and task.uncancel() <= self._cancelling
            and exc_type is asyncio.CancelledError
        ):
            raise TimeoutError from exc
