"""Where background work runs: one :class:`Runner` per cache and event loop.

Every fetch (misses included, so that a cancelled caller never cancels shared
work), every background refresh and every store flush runs as a child of an
anyio task group owned by the cache:

* inside ``async with cache:`` it is the task group entered there;
* otherwise (zero ceremony, e.g. ``swr_cached`` under ``asyncio.run``) the
  runner starts a *host* task on first need (``loop.create_task`` on asyncio, a
  system task on trio) that owns the task group until the loop shuts it down.
  When ``asyncio.run`` cancels it, the task group cancels its children and the
  host, shielded, flushes and closes the stores before it ends: no hang, no warning, no
  lost write.

Fetches that callers wait for (misses and ``refresh()`` calls) are the
exception on asyncio: each is a plain ``loop.create_task`` task that the runner
tracks, waits for and cancels exactly like the task group's children.  Starting
a child of an anyio task group costs about 13 µs on CPython 3.11, most of a
whole miss; a plain task costs about 2.  Background refreshes and store
flushes, which nobody waits for, stay in the task group.

Background refreshes go through a FIFO queue: at most ``max_refreshes`` run at
once and the rest wait as queue entries, not as tasks, so a burst of stale keys
never grows the number of tasks.  A queued refresh that a caller starts waiting
for is *promoted*: it starts at once, outside the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib
import itertools
import logging
import sys
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any, Protocol

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

import anyio
import anyio.abc

from ._store import TimeLimit

__all__ = ["Job", "Runner", "Signal", "cancel_requested", "cancelled_for_real", "current_loop"]

logger = logging.getLogger("aiocache_swr")


def cancelled_for_real(exc: BaseException) -> bool:
    """``exc`` is this task's own cancellation: a cancellation exception (or an
    exception group holding one, as a trio nursery raises) while the task was
    asked to cancel (see :func:`cancel_requested`)."""
    cancelled = anyio.get_cancelled_exc_class()
    if isinstance(exc, BaseExceptionGroup):
        if exc.subgroup(lambda e: isinstance(e, cancelled)) is None:
            return False
    elif not isinstance(exc, cancelled):
        return False
    return cancel_requested()


def cancel_requested() -> bool:
    """The running task was asked to cancel: a cancellation exception it sees is
    a real cancellation, not one raised by the code it awaits.

    On asyncio that is ``Task.cancelling()`` (3.11+; before it, every
    ``CancelledError`` counts as one); trio raises ``Cancelled`` only for a
    cancel scope.
    """
    try:
        task = asyncio.current_task()
    except RuntimeError:  # not asyncio: trio
        return True
    cancelling = getattr(task, "cancelling", None)
    return cancelling is None or cancelling() > 0


def load_backend() -> None:
    """Import anyio's asyncio backend now, once, if it is not yet.

    anyio imports it (about twenty modules: 15-20 ms) the first time a task group
    or an event is made, which would be the first stale hit of a process: a
    stale hit returns at once, so this is done when a function is decorated.
    """
    if "anyio._backends._asyncio" not in sys.modules:
        with contextlib.suppress(ImportError):  # a later anyio may move it
            importlib.import_module("anyio._backends._asyncio")


def current_loop() -> object:
    """An object identifying the running event loop (asyncio loop or trio run)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        import trio  # only reachable when running under trio

        return trio.lowlevel.current_trio_token()


class Signal:
    """Set once, waited for by any number of waiters: a flight's "done" (the base of one).

    On asyncio (``loop`` given) it is made once per miss, so it is cheaper than an
    ``asyncio.Event``: that one looks the running loop up on every ``wait()`` (a
    ``getpid()`` system call on Linux), keeps a deque, and its ``wait()`` is a
    coroutine, one more coroutine level for each waiter to make and resume.
    This one's ``wait()`` returns the waiter's future itself; a waiter that is
    cancelled leaves its (cancelled) future behind, and those are pruned as
    waiters are added.  The first waiter has a slot of its own and a list is
    made only for a second one: most misses have one caller.  Like
    ``asyncio.Event``, it is not thread-safe.

    On any other backend (``loop`` None: trio) an ``anyio.Event`` does the work.

    A flight *is* its signal, a subclass, rather than holding one: every object
    a pending miss keeps alive costs a batch of 1,000 concurrent misses its
    share of garbage collections (one object fewer: 5% fewer collections, and
    2-3% of such a batch's time in interleaved runs).
    """

    __slots__ = ("_event", "_first", "_loop", "_more", "_prune_at", "_set")

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self._loop = loop
        self._set = False
        self._first: asyncio.Future[None] | None = None
        self._more: list[asyncio.Future[None]] | None = None  # the second waiter on
        self._prune_at = 16  # prune cancelled waiters when the list gets this long
        self._event = None if loop is not None else anyio.Event()

    def is_set(self) -> bool:
        return self._set

    @property
    def on_asyncio(self) -> bool:
        return self._loop is not None

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        if self._event is not None:
            self._event.set()
            return
        first = self._first
        if first is not None:
            self._first = None
            if not first.done():
                first.set_result(None)
        more = self._more
        if more is not None:
            self._more = None
            for waiter in more:
                if not waiter.done():
                    waiter.set_result(None)

    def wait(self) -> Awaitable[object]:
        loop = self._loop
        if loop is None:
            assert self._event is not None
            return self._event.wait()
        waiter = loop.create_future()
        if self._set:
            waiter.set_result(None)
            return waiter
        if self._first is None:
            self._first = waiter
            return waiter
        more = self._more
        if more is None:
            more = self._more = []
        elif len(more) >= self._prune_at:  # amortized O(1): the bound doubles
            more[:] = [w for w in more if not w.done()]
            self._prune_at = max(16, 2 * len(more))
        more.append(waiter)
        return waiter


class Job(Protocol):
    """A unit of background work that never raises ``Exception``."""

    queued: bool

    async def run(self) -> None: ...

    def abandon(self) -> None:
        """Never going to run (or cancelled before it ran): release whatever waits
        for it.  Does nothing once it has finished."""


class _ScopeLimit:
    """A :class:`~aiocache_swr._store.TimeLimit` of an anyio cancel scope (before 3.11,
    and on trio): expired once its deadline has cancelled it."""

    __slots__ = ("scope",)

    def __init__(self, scope: anyio.CancelScope) -> None:
        self.scope = scope

    def expired(self) -> bool:
        return self.scope.cancel_called


@asynccontextmanager
async def _fail_after(seconds: float) -> AsyncIterator[TimeLimit]:
    with anyio.fail_after(seconds) as scope:
        yield _ScopeLimit(scope)


def _given(coro: Coroutine[Any, Any, None]) -> Coroutine[Any, Any, None]:
    """What ``start_soon`` calls for a coroutine made beforehand (see ``Runner._start_in``)."""
    return coro


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


class Runner:
    """Background work of one cache on one event loop (see the module docstring)."""

    def __init__(
        self, loop: object, max_refreshes: int, on_host_end: Callable[[], Awaitable[None]]
    ) -> None:
        self.loop = loop
        self._max_refreshes = max_refreshes
        self._on_host_end = on_host_end
        self._explicit_tg: anyio.abc.TaskGroup | None = None
        self._host_tg: anyio.abc.TaskGroup | None = None
        self._host_started = False
        self._host_scope: anyio.CancelScope | None = None
        self._host_done: anyio.Event | None = None
        self._host_ref: object = None  # keeps an asyncio host task referenced
        # Work started before a task group exists, with the context it was started in.
        self._backlog: list[tuple[Callable[[], Awaitable[None]], Job | None, contextvars.Context]]
        self._backlog = []
        # Children of a task group that have not run their first step, by token: see
        # close_unstarted.
        self._unstarted: dict[
            int, tuple[anyio.abc.TaskGroup, Coroutine[Any, Any, None], Job | None]
        ]
        self._unstarted = {}
        self._tokens = itertools.count()
        # Refreshes waiting for a slot, each with the context it was asked for in.
        self._queue: deque[tuple[Job, contextvars.Context]] = deque()
        self._refreshing = 0
        self._busy = 0  # tasks started or waiting in the backlog, plus queued refreshes
        self._idle: anyio.Event | None = None
        self.flushing: set[object] = set()  # stores with a flush scheduled or running
        self._closing = False
        # On asyncio: fetches run as plain tasks (see the module docstring), and a
        # Signal waits with the loop's futures (a twentieth of an anyio.Event's cost).
        self.asyncio_loop = loop if isinstance(loop, asyncio.AbstractEventLoop) else None
        # Fetches running as plain tasks: job -> its task (None while being created).
        self._fetches: dict[Job, asyncio.Task[None] | None] = {}
        self._thread = threading.get_ident()  # where its loop last ran (see is_current)

    def is_current(self) -> bool:
        """Its loop is the running one: ``self.loop is current_loop()``, mostly cheaper.

        Asked on every miss and every stale hit.  On asyncio, a loop that is
        running in the thread it last ran in, this one, is the running loop (a
        thread runs one loop at a time), and asking costs a fifth of
        ``asyncio.get_running_loop()``, which makes a ``getpid()`` system call
        on Python 3.11.  Otherwise (another thread, or the loop is not running)
        it asks ``current_loop()`` and, if its loop now runs in this thread,
        remembers it.  Only a loop nested inside another running loop of the
        same thread (which asyncio refuses) would fool it.
        """
        loop = self.asyncio_loop
        if loop is None:
            return self.loop is current_loop()
        thread = threading.get_ident()
        if thread == self._thread and loop.is_running():
            return True
        if loop is not current_loop():
            return False
        self._thread = thread
        return True

    # -- starting work -------------------------------------------------------

    def spawn(self, fn: Callable[[], Awaitable[None]], job: Job | None = None) -> None:
        """Run ``fn()`` in the cache's task group, now (or as soon as the host runs).

        ``job``: what ``fn`` runs, abandoned if ``fn`` never runs.
        """
        self._busy += 1
        self._start(fn, job)

    def time_limit(self, seconds: float) -> AbstractAsyncContextManager[TimeLimit | None]:
        """Raise ``TimeoutError`` in the body after ``seconds``.

        ``asyncio.timeout`` where it exists (3.11+): a third of the cost of
        ``anyio.fail_after``, and it guards every level-2 read.
        """
        if self.asyncio_loop is not None and sys.version_info >= (3, 11):
            return asyncio.timeout(seconds)
        return _fail_after(seconds)

    def start_fetch(self, job: Job, *, eager: bool = True) -> None:
        """Run ``job``, a fetch that callers wait for, now (see the module docstring).

        ``eager=False``: its first step waits for the next loop turn, even on 3.12+.
        """
        loop = self.asyncio_loop
        if loop is None:
            if self._closing and self._explicit_tg is None and self._host_tg is None:
                job.abandon()  # nothing would ever run it (see _start)
                return
            self.spawn(job.run, job)
            return
        # Even while closing: its caller waits for it.
        fetches = self._fetches
        fetches[job] = None
        self._busy += 1
        try:
            if sys.version_info >= (3, 12):
                # Python 3.12+ runs an eager one at once, up to its first await: a
                # fetch that needs no waiting (a trivial coroutine) costs no loop turn.
                # Made directly, so a loop's eager task factory cannot make a
                # non-eager one (a read batch gathering this turn's misses) eager.
                task = asyncio.Task(self._fetch(job), loop=loop, eager_start=eager)
            else:
                task = loop.create_task(self._fetch(job))
        except BaseException:  # e.g. a KeyboardInterrupt in an eager first step
            if job in fetches:  # _fetch never ran (its end removes the job)
                del fetches[job]
                self._done_one()
                job.abandon()
            raise
        if job in fetches:  # still running
            fetches[job] = task

    async def _fetch(self, job: Job) -> None:
        # What ends a fetch is done here, not in a done callback: that would cost
        # one more loop callback per miss.  A fetch cancelled before it started
        # never runs this; ``stop_fetches`` (the only canceller) releases its callers.
        try:
            await job.run()
        except Exception:  # a bug in the engine: never let it reach the loop
            logger.exception("aiocache_swr: internal error in a fetch")
        except (KeyboardInterrupt, SystemExit):
            # It stops the loop; the task keeps it as its result.  Mark that result
            # retrieved (once the task is done), or asyncio reports it again.
            task = asyncio.current_task()
            if task is not None:
                task.add_done_callback(_retrieve)
            raise
        finally:
            self._fetches.pop(job, None)
            self._done_one()

    def enqueue_refresh(self, job: Job) -> None:
        """Run ``job`` when fewer than ``max_refreshes`` refreshes are running, in the
        context of its caller (that of the stale hit that asked for it)."""
        if self._closing:  # it would never run
            job.abandon()
            return
        self._busy += 1
        if self._refreshing < self._max_refreshes and not self._queue:
            self._refreshing += 1  # a slot is free: started from this context
            self._start(partial(self._run_refresh, job), job)
            return
        job.queued = True
        self._queue.append((job, contextvars.copy_context()))

    def promote(self, job: Job) -> None:
        """Start a queued ``job`` now: a caller is waiting for it."""
        if not job.queued:
            return
        queued = next(item for item in self._queue if item[0] is job)
        self._queue.remove(queued)
        job.queued = False
        queued[1].run(self._start, job.run, job)

    @property
    def busy(self) -> int:
        """Tasks running or waiting to run, including queued refreshes."""
        return self._busy

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def refreshing(self) -> int:
        return self._refreshing

    def close(self) -> None:
        """Start nothing more: queued refreshes are abandoned, later work is dropped.

        Called when the cache closes, after the grace period; what runs is then
        cancelled by the task group's owner.
        """
        self._closing = True
        while self._queue:
            job, _ = self._queue.popleft()
            job.queued = False
            job.abandon()
            self._done_one()

    def _pump(self) -> None:
        while not self._closing and self._refreshing < self._max_refreshes and self._queue:
            job, context = self._queue.popleft()
            job.queued = False
            self._refreshing += 1
            context.run(self._start, partial(self._run_refresh, job), job)

    async def _run_refresh(self, job: Job) -> None:
        ended = False
        try:
            await job.run()
            ended = True
        except Exception:  # a bug in the engine (``_track`` logs it): go on
            ended = True
            raise
        finally:
            # Not after a cancellation: the cache is closing or the loop ending (the
            # first to run of the tasks asyncio.run cancels may be this one).
            self._refreshing -= 1
            if ended:
                self._pump()

    def _start(self, fn: Callable[[], Awaitable[None]], job: Job | None) -> None:
        tg = self._explicit_tg or self._host_tg
        if tg is not None:
            self._start_in(tg, fn, job)
        elif self._closing:
            logger.debug("aiocache_swr: dropped background work started while closing")
            if job is not None:
                job.abandon()
            self._done_one()
        else:
            self._backlog.append((fn, job, contextvars.copy_context()))
            self._ensure_host()

    def _start_in(
        self, tg: anyio.abc.TaskGroup, fn: Callable[[], Awaitable[None]], job: Job | None
    ) -> None:
        """Start ``fn()`` as a child of ``tg``, remembered until its first step runs."""
        token = next(self._tokens)
        coro = self._track(fn, token)
        self._unstarted[token] = (tg, coro, job)
        tg.start_soon(_given, coro, name="aiocache_swr background work")

    def close_unstarted(self, tg: anyio.abc.TaskGroup) -> None:
        """``tg`` has ended: close the children it cancelled before they ran a step.

        anyio runs a child's coroutine inside a wrapper of its own; cancelled
        before its first step, the wrapper ends without closing the coroutine,
        which then warns "coroutine ... was never awaited" when it is collected.
        That happens when the loop ends just after work was started (a stale hit
        in ``asyncio.run``'s last step).  Their jobs are abandoned.
        """
        for token, (owner, coro, job) in list(self._unstarted.items()):
            if owner is tg:
                del self._unstarted[token]
                coro.close()
                if job is not None:
                    job.abandon()
                self._done_one()

    async def _track(self, fn: Callable[[], Awaitable[None]], token: int) -> None:
        del self._unstarted[token]
        try:
            await fn()
        except Exception:  # a bug in the engine: never let it reach the loop
            logger.exception("aiocache_swr: internal error in background work")
        finally:
            self._done_one()

    def _done_one(self) -> None:
        self._busy -= 1
        if self._busy == 0 and self._idle is not None:
            self._idle.set()
            self._idle = None

    async def wait_idle(self) -> None:
        """Return once no work is running, waiting in the backlog or queued."""
        while self._busy:
            if self._idle is None:
                self._idle = anyio.Event()
            await self._idle.wait()

    # -- the task group ------------------------------------------------------

    def attach(self, tg: anyio.abc.TaskGroup) -> None:
        """Use ``tg`` (entered by ``async with cache``) for new work."""
        self._explicit_tg = tg
        backlog, self._backlog = self._backlog, []
        for fn, job, context in backlog:
            # Started in the context it was asked for in: a task copies the context
            # it is started from, on asyncio and on trio alike.
            context.run(self._start_in, tg, fn, job)

    def _ensure_host(self) -> None:
        if self._host_started:
            return
        self._host_started = True
        self._host_done = anyio.Event()
        if isinstance(self.loop, asyncio.AbstractEventLoop):
            self._host_ref = self.loop.create_task(self._host(), name="aiocache_swr runner")
        else:
            import trio

            trio.lowlevel.spawn_system_task(self._host, name="aiocache_swr runner")

    async def _host(self) -> None:
        assert self._host_done is not None
        try:
            with anyio.CancelScope() as scope:
                self._host_scope = scope
                try:
                    tg = anyio.create_task_group()
                    try:
                        async with tg:
                            self._host_tg = tg
                            backlog, self._backlog = self._backlog, []
                            for fn, job, context in backlog:
                                context.run(self._start_in, tg, fn, job)  # see attach()
                            try:
                                await anyio.sleep_forever()
                            finally:
                                # The loop is ending (or the cache closing): start
                                # nothing more, not even the queued refreshes that the
                                # cancelled ones would start as they end.
                                self.close()
                    finally:
                        self.close_unstarted(tg)
                except BaseExceptionGroup as group:
                    # A KeyboardInterrupt/SystemExit in background work: asyncio has
                    # already raised it out of the loop; do not report it again.
                    _, rest = group.split((KeyboardInterrupt, SystemExit))
                    if rest is not None:
                        raise rest from None
        finally:
            self._host_tg = None
            self._host_scope = None
            with anyio.CancelScope(shield=True):
                try:
                    await self._on_host_end()
                except Exception:
                    logger.exception("aiocache_swr: flushing stores at shutdown failed")
            self._host_done.set()

    async def stop(self) -> None:
        """Cancel the fetches and what runs in the host task group; wait for them to end.

        The explicit task group (``async with cache``) is cancelled and exited
        by its owner, the cache's ``__aexit__``.
        """
        await self.stop_fetches()
        if self._host_scope is not None and self._host_done is not None:
            self._host_scope.cancel()
            await self._host_done.wait()

    def ensure_closer(self) -> None:
        """Make sure something closes the stores when this loop ends.

        A store opens a connection on the loop that first uses it; without
        ``async with cache`` that is the host task's job when the loop ends.
        """
        if self._explicit_tg is None and not self._host_started:
            self._ensure_host()

    async def stop_fetches(self) -> None:
        """Cancel the fetches (plain tasks on asyncio) and wait for them, shielded."""
        if not self._fetches:
            return
        running = {job: task for job, task in self._fetches.items() if task is not None}
        for task in running.values():
            task.cancel()
        with anyio.CancelScope(shield=True):
            await asyncio.wait(running.values())
        for job in running:
            if self._fetches.pop(job, None) is not None:
                # Cancelled before it started, its code never ran: release its callers.
                job.abandon()
                self._done_one()

    def detach(self) -> None:
        self._explicit_tg = None
