"""``SWRCache``: groups decorated functions and owns their background work and stores."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import os
import sys
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Hashable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec, TypeVar
from weakref import WeakKeyDictionary, WeakSet

import anyio
import anyio.abc

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

from ._events import CacheEvent, EventListener, emit
from ._function import Engine, computing, decorated, plain_tags
from ._runner import Runner, current_loop, load_backend
from ._sqlite import SQLiteStore, _check_clock, _check_path
from ._store import Store, close_unstarted, distrust
from ._types import SWRFunction

__all__ = ["SWRCache", "default_cache", "swr_cached"]

P = ParamSpec("P")
T = TypeVar("T")

logger = logging.getLogger("aiocache_swr")

StoreArg = str | os.PathLike[str] | Store | None

# One store object per file, shared by every function (of every cache) naming it.
_stores_by_path: dict[Path, Store] = {}
# SQLiteStore objects made by the application and given as store=, by file, in the
# order given: a path naming one of those files gets the first still alive (its
# secret, serializer, max_entries).
_given_by_path: dict[Path, list[weakref.ref[SQLiteStore]]] = {}


def _resolve_store(store: StoreArg, where: str) -> Store | None:
    """A store object for ``store=``; a path gets the one store of that file.

    The functions using it stamp its rows with their clocks (see ``cached``), and a
    row is purged only once expired on every one (``SQLiteStore._purge_time``).
    """
    if store is None:
        return None
    if isinstance(store, str | os.PathLike):
        try:
            path = _check_path(store)  # exactly the checks of SQLiteStore(path)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{where}: store= is not a usable file path: {exc}") from None
        found: Store | None = _given(path)
        if found is None:
            found = _stores_by_path.get(path)
        if found is None:
            found = _stores_by_path[path] = SQLiteStore(path)
            found._idle_clock = found.clock  # only the functions put rows through it
        return found
    if isinstance(store, type):
        raise TypeError(
            f"{where}: store= takes a store instance, not the class {store.__name__}; "
            f"call it, e.g. store={store.__name__}(...)"
        )
    if isinstance(store, SQLiteStore):
        _register_given(store)
        return store
    if isinstance(store, Store):
        return store
    raise TypeError(
        f"{where}: store= must be a path (str or os.PathLike), a SQLiteStore, or None; "
        f"got {type(store).__name__}"
    )


def _default_namespace(fn: object, name: str) -> str:
    """``module.qualname``; for a module run with ``python -m pkg.mod`` (whose functions
    live in ``__main__``), as importing it names them: ``pkg.mod.qualname``."""
    if getattr(fn, "__module__", None) == "__main__":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        if spec is not None and spec.name:
            return f"{spec.name}.{getattr(fn, '__qualname__', fn)!s}"
    return name


def _given(path: Path) -> SQLiteStore | None:
    """The first store given as ``store=`` on the file ``path`` that is still alive."""
    refs = _given_by_path.get(path)
    if refs is None:
        return None
    refs[:] = [ref for ref in refs if ref() is not None]
    if not refs:
        del _given_by_path[path]
        return None
    return refs[0]()


def _register_given(store: SQLiteStore) -> None:
    """Remember ``store`` as its file's store; warn if another store object on the same
    file has other settings (each would read and evict the other's rows as its own)."""
    path = store.path
    others = [
        other
        for other in (_given(path), _stores_by_path.get(path))
        if isinstance(other, SQLiteStore) and other is not store
    ]
    mine = store._settings()
    for other in others:
        theirs = other._settings()
        differ = [name for name, value in mine.items() if theirs[name] != value]
        if differ:
            logger.warning(
                "two SQLiteStore objects name %s with a different %s; each reads, purges "
                "and evicts the other's rows (rows of another secret or serializer read "
                "as corrupt): give every cache and function using the file one "
                "SQLiteStore object",
                path,
                " and ".join(differ),
            )
            break
    refs = _given_by_path.setdefault(path, [])
    if all(ref() is not store for ref in refs):
        refs.append(weakref.ref(store))


def _brief(value: object) -> str:
    """``repr(value)``, except for an int too long to spell in a message."""
    if isinstance(value, int) and value.bit_length() > 128:
        return f"an int of {value.bit_length()} bits"
    return repr(value)


def _check_duration(value: object, param: str, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{where}: {param}= must be a number of seconds or None, got {value!r}")
    if (isinstance(value, float) and math.isnan(value)) or value < 0:
        raise ValueError(f"{where}: {param}= must be >= 0 seconds (or None), got {_brief(value)}")
    try:
        seconds = float(value)
    except OverflowError:
        raise ValueError(
            f"{where}: {param}= is beyond float range; use None (or math.inf) for no limit"
        ) from None
    return None if math.isinf(seconds) else seconds


def _check_maxsize(maxsize: object, where: str) -> None:
    if isinstance(maxsize, bool) or not isinstance(maxsize, int):
        raise TypeError(f"{where}: maxsize= must be an int >= 1, got {maxsize!r}")
    if maxsize < 1:
        raise ValueError(
            f"{where}: maxsize= must be >= 1 (the number of entries kept in memory), "
            f"got {maxsize!r}"
        )


def _check_namespace(namespace: object, where: str) -> None:
    if namespace is None:
        return
    if not isinstance(namespace, str) or not namespace:
        raise TypeError(f"{where}: namespace= must be a non-empty str, got {namespace!r}")
    if not namespace.isascii():
        try:
            namespace.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(
                f"{where}: namespace= {namespace!r} cannot be stored (it has a lone "
                "surrogate, as os.fsdecode makes of undecodable bytes); pass a name "
                "that encodes to UTF-8"
            ) from None


class SWRCache:
    """Owns the background refreshes, in-flight registries and stores of its functions.

    ``store``: the default store of its functions (a path or a store object).
    ``max_concurrent_refreshes``: background refreshes running at once; more wait their
    turn in a queue while their stale values keep being served.
    ``clock``: a zero-argument callable returning wall-clock seconds (default
    ``time.time``); tests pass :class:`aiocache_swr.testing.FakeClock`.
    ``close_timeout``: seconds ``aclose`` (or leaving ``async with`` without an
    error) waits for refreshes in flight before cancelling them (real time, not
    ``clock``: it bounds a real wait).
    ``store_timeout``: real seconds a store operation (a read, an invalidation, a
    flush) may take; one that takes longer is abandoned and counted as a store
    failure, so a disk that hangs during a read never hangs a caller (a write,
    such as an invalidation's, and opening the file still wait for the disk)
    (``None``: wait forever).
    ``on_event``: called with a :class:`~aiocache_swr.CacheEvent` for every hit,
    stale hit, miss, store hit, refresh outcome, eviction and store error, to feed
    metrics; fixed when a function is decorated.  Without it, nothing is built
    or called.  It runs inline, so keep it cheap; if it raises, the error is
    logged and the cache carries on.

    ``async with cache:`` runs background work in a task group of the caller's
    task; without it, a task group is started on first need and lives until the
    event loop ends (or ``aclose``).  Leaving it is ``aclose``, except when the
    body raised: then, as a task group does, the refreshes in flight are
    cancelled at once, without waiting ``close_timeout``; pending writes are
    still flushed and the stores closed, and the body's exception is raised as
    itself.
    """

    def __init__(
        self,
        store: StoreArg = None,
        *,
        max_concurrent_refreshes: int = 32,
        clock: Callable[[], float] | None = None,
        close_timeout: float = 5.0,
        store_timeout: float | None = 5.0,
        on_event: EventListener | None = None,
    ) -> None:
        if isinstance(max_concurrent_refreshes, bool) or not isinstance(
            max_concurrent_refreshes, int
        ):
            raise TypeError(
                "SWRCache: max_concurrent_refreshes= must be an int >= 1, "
                f"got {max_concurrent_refreshes!r}"
            )
        if max_concurrent_refreshes < 1:
            raise ValueError(
                "SWRCache: max_concurrent_refreshes= must be an int >= 1, "
                f"got {_brief(max_concurrent_refreshes)}"
            )
        if on_event is not None and (not callable(on_event) or _is_async_callable(on_event)):
            raise TypeError(
                "SWRCache: on_event= must be a plain callable taking a CacheEvent (it is "
                f"called, never awaited; start a task from it for async work), got {on_event!r}"
            )
        if clock is not None:
            _check_clock(clock, "SWRCache: clock=")
        timeout = _check_duration(close_timeout, "close_timeout", "SWRCache")
        self.clock: Callable[[], float] = clock if clock is not None else time.time
        self.store = _resolve_store(store, "SWRCache")
        self.max_concurrent_refreshes = max_concurrent_refreshes
        self.on_event = on_event
        self.close_timeout = math.inf if timeout is None else timeout
        # Real seconds a store operation may take before it counts as failed.
        self.store_timeout = _check_duration(store_timeout, "store_timeout", "SWRCache")
        self._functions: WeakSet[Engine[Any, Any]] = WeakSet()
        self._stores: list[Store] = [self.store] if self.store is not None else []
        self._runner: Runner | None = None
        self._entered: tuple[Runner, anyio.abc.TaskGroup, Any] | None = None
        self._entered_by: int | None = None  # the task that entered it
        # Closes under way (aclose, __aexit__), by event loop: one stranded on a loop
        # that stopped does not hold back a later loop's `async with cache`.
        self._closing: WeakKeyDictionary[object, int] = WeakKeyDictionary()
        # That task (weakly; None: unknown): once it has ended, nothing can exit the entry.
        self._entered_task: weakref.ref[Any] | None = None
        self._store_reads_held = 0

    def __repr__(self) -> str:
        return f"<SWRCache functions={len(self._functions)} stores={len(self._stores)}>"

    # -- decorating ----------------------------------------------------------

    def cached(
        self,
        ttl: float | None = 60.0,
        stale_ttl: float | None = None,
        version: Any = None,
        maxsize: int = 1024,
        key: Callable[..., Hashable] | None = None,
        namespace: str | None = None,
        tags: Callable[..., Iterable[str]] | None = None,
        store: StoreArg = None,
    ) -> Callable[[Callable[P, Awaitable[T]]], SWRFunction[P, T]]:
        """Decorate a coroutine function with stale-while-revalidate caching.

        See :func:`aiocache_swr.swr_cached` for the parameters and for when a bad
        one is reported (when the decorator is applied, naming the function).
        """
        _check_parentheses(ttl)
        # The arguments are checked when the decorator is applied, so that every
        # message names the function; a store path is resolved on first application
        # and that store reused, so one decorator applied to several functions gives
        # them one store object even if the working directory (or the stores the
        # application registered for that file) changed in between.
        resolved_once: list[Store | None] = []

        def decorate(fn: Callable[P, Awaitable[T]]) -> SWRFunction[P, T]:
            load_backend()
            name = _name_of(fn)
            _check_decorated(fn, name)
            where = f"swr_cached: {name}"
            ttl_s = _check_duration(ttl, "ttl", where)
            stale_s = _check_duration(stale_ttl, "stale_ttl", where)
            _check_maxsize(maxsize, where)
            for param, hook in (("key", key), ("tags", tags)):
                if hook is not None and (not callable(hook) or _is_async_callable(hook)):
                    raise TypeError(
                        f"{where}: {param}= must be a plain callable taking the function's "
                        f"arguments (it is called, never awaited), got {hook!r}"
                    )
            _check_namespace(namespace, where)
            if store is None:
                resolved = self.store
            elif resolved_once:
                resolved = resolved_once[0]
            else:
                resolved = _resolve_store(store, where)
                resolved_once.append(resolved)
            if namespace is None and resolved is not None and not _has_stable_name(fn):
                raise TypeError(
                    f"swr_cached: {fn!r} has no __qualname__ to name its entries in the store; "
                    "pass namespace= a name unique to this function"
                )
            for param, callable_ in (("key", key), ("version", version), ("tags", tags)):
                if callable(callable_):
                    _check_signature(fn, name, param, callable_)
            default = _default_namespace(fn, name)
            if namespace is None and resolved is not None:
                self._check_namespace_is_its_own(fn, default, resolved)
            func = Engine(
                fn,
                self,
                ttl=ttl_s,
                stale_ttl=stale_s,
                version=version,
                maxsize=maxsize,
                key=key,
                namespace=namespace or default,
                tags=tags,
                store=resolved,
            )
            self._functions.add(func)
            if isinstance(resolved, SQLiteStore):
                # Its rows carry times of this cache's clock: the file is purged on it too.
                resolved._stamped_by(func)
            if resolved is not None and resolved not in self._stores:
                self._stores.append(resolved)
            # The caller: a class body when decorating a method (see _is_method).
            return decorated(func, fn, sys._getframe(1))

        return decorate

    def _check_namespace_is_its_own(
        self, fn: Callable[..., Awaitable[Any]], name: str, store: Store
    ) -> None:
        """Warn when ``fn``'s default namespace (``module.qualname``) is also that of
        another function of this cache on ``store`` made from the same code: two
        closures of one factory (``def client(url): @cached(...) async def fetch``)
        would read and clear each other's entries there.

        A warning, not an error: an earlier closure that is no longer used may still
        be referenced (a traceback, a log record keeps it), and its being alive is
        all this can see.  Redefining a function makes new code: not a clash.
        """
        code = getattr(fn, "__code__", None)
        if code is None:
            return
        func, bound_to = getattr(fn, "__func__", fn), getattr(fn, "__self__", None)
        for other in list(self._functions):
            made = other._fn
            if (
                other._store is store
                and other.namespace == name
                and getattr(made, "__code__", None) is code
                and (
                    getattr(made, "__func__", made) is not func
                    or getattr(made, "__self__", None) is not bound_to
                )
            ):
                logger.warning(
                    "swr_cached: %s is made more than once from the same code (a closure, "
                    "e.g. made by a factory), and each names its entries in %r %r: they "
                    "read and clear each other's; pass namespace= a name unique to each "
                    "(e.g. built from the factory's arguments)",
                    name,
                    store,
                    name,
                )
                return

    # -- background work -----------------------------------------------------

    def _runner_here(self) -> Runner:
        """The runner of the running event loop (a new one for a new loop)."""
        runner = self._runner
        if runner is None or not runner.is_current():
            loop = current_loop()
            runner = self._runner = Runner(loop, self.max_concurrent_refreshes, self._close_stores)
        return runner

    def _schedule_flush(self, store: Store) -> None:
        runner = self._runner_here()
        if store in runner.flushing:
            return
        runner.flushing.add(store)

        async def flush() -> None:
            try:
                ok = await self._store_call(store, "write", store.flush())
            finally:
                runner.flushing.discard(store)
            if ok and store.pending:  # after a failure, the next put schedules a flush
                self._schedule_flush(store)

        runner.spawn(flush)

    async def _store_call(
        self,
        store: Store,
        what: str,
        op: Coroutine[Any, Any, Any],
        *,
        invalidates: bool = False,
    ) -> bool:
        """Await a store operation of no one function within ``store_timeout``.

        A failure is logged, counted in ``store_errors`` of every function using
        that store, and reported as an event; a failed invalidation distrusts
        the store's records of every namespace (see ``Distrust``).
        Returns whether it succeeded.
        """
        try:
            if self.store_timeout is None:
                await op
            else:
                with anyio.fail_after(self.store_timeout):
                    await op
            return True
        except Exception as exc:
            if isinstance(exc, TimeoutError):
                what = f"{what} (store_timeout={self.store_timeout}s)"
            logger.warning("aiocache_swr: store %s failed: %r", what, exc, exc_info=exc)
            if invalidates:
                distrust(store).mark(None, self.clock)
            for func in list(self._functions):
                if func._store is store:
                    func._store_errors += 1
            if self.on_event is not None:
                emit(self.on_event, CacheEvent("store_error", repr(store), None, exc))
            return False
        finally:
            close_unstarted(op)

    async def _close_stores(self) -> None:
        """Flush and close what the stores hold for this event loop (they reopen on use)."""
        with anyio.CancelScope(shield=True):
            for store in self._stores:
                await self._store_call(store, "close", store.aclose())

    @asynccontextmanager
    async def _holding_store_reads(self) -> AsyncIterator[None]:
        """While an invalidation is written to a store, misses do not read stores."""
        self._store_reads_held += 1
        try:
            yield
        finally:
            self._store_reads_held -= 1

    async def wait_idle(self) -> None:
        """Return once no background refresh (or fetch, or store write) runs or is queued.

        Awaited inside a computation of one of this cache's functions while it
        runs, it would wait for that computation, so for itself: it raises a
        ``RuntimeError`` instead.
        """
        self._refuse_inside_computation("wait_idle()")
        runner = self._runner
        if runner is not None and runner.loop is current_loop():
            await runner.wait_idle()

    async def invalidate_tags(self, *tags: str) -> None:
        """Drop every entry, of any function of this cache, carrying any of ``tags``.

        From memory, the entries of this cache's functions only: functions of
        another :class:`SWRCache` keep theirs (plain ``swr_cached`` functions
        belong to the default cache, their ``f.cache``).  From the stores this
        cache's functions use, every row carrying a tag, of any namespace.
        """
        for tag in tags:
            if not isinstance(tag, str):
                hint = ""
                if isinstance(tag, list | tuple | set | frozenset):
                    hint = "; to pass a collection, unpack it: invalidate_tags(*tags)"
                raise TypeError(f"SWRCache.invalidate_tags: tags must be str, got {tag!r}{hint}")
        wanted = frozenset(plain_tags(tags))
        if not wanted:
            return
        for func in list(self._functions):
            func._drop_tagged(wanted)
        if self._stores:
            # A store opens on this loop: something must close it when the loop ends.
            self._runner_here().ensure_closer()
        async with self._holding_store_reads():
            for store in self._stores:
                await self._store_call(
                    store,
                    "delete_tags",
                    store.delete_tags(wanted),
                    invalidates=True,
                )

    # -- lifecycle -----------------------------------------------------------

    async def __aenter__(self) -> SWRCache:
        if self._closing.get(current_loop()):
            # Its close would take this entry for the one it closes.
            raise RuntimeError(
                "SWRCache: `async with cache` while the cache is being closed (by "
                "aclose() or the end of another block); enter it once that has finished"
            )
        if self._entered is not None and self._entry_abandoned():
            await self._forget_entry()
        if self._entered is not None:
            raise RuntimeError("SWRCache: this cache is already entered (`async with`)")
        runner = self._runner_here()
        cm = anyio.create_task_group()
        tg = await cm.__aenter__()
        runner.attach(tg)
        self._entered = (runner, tg, cm)
        self._entered_by = anyio.get_current_task().id
        self._entered_task = _current_task_ref()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close as ``aclose`` does; but if the body raised, cancel background work at once.

        On an exception (like a task group) the refreshes in flight are cancelled
        without waiting ``close_timeout``; pending writes are still flushed and
        the stores closed.  Run by another task than the one that entered, once
        that one has ended (the teardown of a pytest-asyncio fixture, say), it
        cannot exit the task group entered there (only its task could): it
        cancels what runs in it instead, and closes the cache.  While the
        entering task runs, another task's exit raises a ``RuntimeError``, as
        ``aclose`` does.
        """
        self._check_closer("leaving `async with cache`")
        await self._close_from_here(exc_type, exc, tb)

    async def aclose(self) -> None:
        """Wait (up to ``close_timeout``) for background work, cancel the rest, flush, close.

        Leaving ``async with cache`` does the same, except after an exception in
        its body: then nothing is waited for (see ``__aexit__``).  While a task is
        inside ``async with cache`` (or after ``__aenter__``), only that task may
        close it, at that level (not under a cancel scope of its own): it exits
        the task group entered there.  Called by another task, it raises a
        ``RuntimeError``: leave the block instead, or cancel that task.  Called
        inside a computation of one of the cache's functions, it raises too, as
        it would wait for that computation.
        """
        self._refuse_inside_computation("aclose()")
        self._check_closer("aclose()")
        await self._close_from_here(None, None, None)

    async def _close_from_here(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close from the running task (allowed by ``_check_closer``): an entry another
        task made, abandoned, is forgotten first; no entry is made meanwhile."""
        loop = current_loop()
        self._closing[loop] = self._closing.get(loop, 0) + 1
        try:
            if self._entered is not None and self._entered_by != anyio.get_current_task().id:
                await self._forget_entry()
            await self._close(exc_type, exc, tb)
        finally:
            self._closing[loop] -= 1

    def _check_closer(self, what: str) -> None:
        """Only the task that entered `async with cache` may close it while it runs."""
        if (
            self._entered is not None
            and self._entered_by != anyio.get_current_task().id
            and not self._entry_abandoned()
        ):
            raise RuntimeError(
                f"SWRCache: {what} in another task than the one inside `async with "
                "cache`, which alone can close it (the block's task group is that "
                "task's): leave the block in that task, or cancel it (asyncio.wait_for "
                "before Python 3.12, and asyncio.shield, run aclose() in a task of "
                "their own)"
            )

    def _entry_abandoned(self) -> bool:
        """The task that entered `async with cache` (or ``__aenter__``) has ended, or
        its event loop is not the running one: nothing can exit the entry any more
        (a test that failed before its ``aclose``, say)."""
        assert self._entered is not None
        if self._entered[0].loop is not current_loop():
            return True
        return _task_ended(self._entered_task)

    async def _forget_entry(self) -> None:
        """Drop an abandoned entry without exiting its task group, which only the task
        that entered it could exit.  On its loop, if running: cancel what runs in the
        group, and retire its runner (its queued refreshes abandoned, its fetches and
        host task stopped), so that what follows starts with a new one.  Otherwise
        nothing will run the group's unstarted children: close them."""
        assert self._entered is not None
        runner, tg, _ = self._entered
        self._entered = None
        runner.detach()
        if runner.loop is not current_loop():
            runner.close_unstarted(tg)
            return
        tg.cancel_scope.cancel()  # the children start, if at all, cancelled
        runner.close()
        if self._runner is runner:
            self._runner = None
        with anyio.CancelScope(shield=True):
            await runner.stop()
        # Let the cancelled children end (a few seconds at most: one that ignores its
        # cancellation is left to the loop).
        with anyio.move_on_after(_FORGET_WAIT, shield=True):
            await runner.wait_idle()

    def _refuse_inside_computation(self, what: str) -> None:
        flight = computing()
        if flight is not None and flight.func.cache is self and not flight.is_set():
            raise RuntimeError(
                f"SWRCache.{what} inside a computation of {flight.func._name}, a function "
                "of this cache: it would wait for that computation, so for itself"
            )

    async def _close(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        runner = self._runner
        if runner is not None and runner.loop is not current_loop():
            runner = None
        cancelled: BaseException | None = None
        if runner is not None and exc_type is None:
            try:
                with anyio.move_on_after(self.close_timeout):
                    await runner.wait_idle()
            except anyio.get_cancelled_exc_class() as exc_:
                # Cancelled during the grace period: cut it short, close all the
                # same (shielded), then let the cancellation go on.
                cancelled = exc_
        if runner is not None:
            runner.close()
        entered, self._entered = self._entered, None
        try:
            if runner is not None:
                # Fetches are plain tasks, outside the task group: cancel them first,
                # while this task may still await (shielded) even when it is cancelled.
                await runner.stop_fetches()
            if entered is not None:
                _, tg, cm = entered
                tg.cancel_scope.cancel()
                entered[0].detach()
                try:
                    await cm.__aexit__(exc_type, exc, tb)
                except BaseExceptionGroup as group:
                    # The body's own exception, wrapped by the task group: let the
                    # `async with` statement re-raise it as it was.
                    if exc is None or list(group.exceptions) != [exc]:
                        raise
                finally:
                    entered[0].close_unstarted(tg)
                    if runner is not None:  # a host started before `async with`
                        with anyio.CancelScope(shield=True):
                            await runner.stop()
            elif runner is not None:
                with anyio.CancelScope(shield=True):
                    await runner.stop()
        finally:
            self._runner = None
            await self._close_stores()
        if cancelled is not None:
            raise cancelled


_FORGET_WAIT = 5.0  # seconds an abandoned entry's cancelled work is waited for


def _current_task_ref() -> weakref.ref[Any] | None:
    """A weak reference to the running task (asyncio's or trio's), or None if unknown."""
    task: object = None
    with contextlib.suppress(RuntimeError):
        task = asyncio.current_task()
    if task is None:
        with contextlib.suppress(Exception):
            import trio

            task = trio.lowlevel.current_task()
    if task is None:
        return None
    try:
        return weakref.ref(task)
    except TypeError:
        return None


def _task_ended(ref: weakref.ref[Any] | None) -> bool:
    """The task ``ref`` names has ended; unknown (``None``) is taken as running."""
    if ref is None:
        return False
    task = ref()
    if task is None:
        return True
    done = getattr(task, "done", None)  # an asyncio task; a trio task cannot end
    return bool(done()) if callable(done) else False  # with a task group still open


def _check_parentheses(ttl: object) -> None:
    """``@swr_cached`` without parentheses passes the function as ``ttl``: say so at once.

    Any callable that is not a number (``ttl=`` never is one), as ``swr_cached(f)``
    cannot be told from ``swr_cached(ttl=f)``: this is the one argument error raised
    before the decorated function is known, so it names the callable instead.
    """
    if not callable(ttl) or isinstance(ttl, int | float):
        return
    if _is_async_callable(ttl):
        raise TypeError(
            f"swr_cached: use it with parentheses, @swr_cached(ttl=...) or "
            f"@cache.cached(ttl=...), above "
            f"{getattr(ttl, '__qualname__', ttl)!s}"
        )
    raise TypeError(
        f"swr_cached: ttl= must be a number of seconds or None, got {_name_of(ttl)}; "
        "if that is the function to cache, write @swr_cached(...) with parentheses, "
        "above an async def function"
    )


def _name_of(fn: object) -> str:
    """``module.qualname`` of a decorated function, as messages name it."""
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)!s}"


def _check_decorated(fn: object, name: str) -> None:
    """``fn`` is an async def function or an async-callable object, else a TypeError."""
    if _is_async_callable(fn):
        return
    if inspect.isasyncgenfunction(fn):
        raise TypeError(
            f"swr_cached: {name} is an async generator function, which cannot be cached; "
            "decorate an `async def` that returns the items (e.g. as a list)"
        )
    if isinstance(fn, staticmethod | classmethod):
        kind = type(fn).__name__
        raise TypeError(
            f"swr_cached: {_name_of(fn.__func__)} is wrapped in a {kind} object; put @swr_cached "
            f"below @{kind} (closer to the def)"
        )
    if inspect.iscoroutine(fn):
        coro_name = getattr(fn, "__qualname__", fn)
        raise TypeError(
            f"swr_cached: got a coroutine object ({coro_name}() was called); pass the "
            "function itself, without calling it"
        )
    raise TypeError(
        f"swr_cached: {name} is not a coroutine function; decorate an "
        "`async def` function (wrap a sync one in an async def first)"
    )


def _has_stable_name(fn: object) -> bool:
    """``fn`` names itself the same in every process (no repr() with a memory address)."""
    return isinstance(getattr(fn, "__qualname__", None), str)


def _signature(obj: Any) -> inspect.Signature | None:
    """The signature of what is really called (a wrapper's own, not its ``__wrapped__``'s)."""
    try:
        return inspect.signature(obj, follow_wrapped=False)
    except (TypeError, ValueError):
        return None


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_BY_NAME = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def _never_binds(giver: inspect.Signature, taker: inspect.Signature) -> str | None:
    """Why no call valid for ``giver`` can bind to ``taker``, or None if one might.

    Conservative: a reason is given only for a required parameter of one side that
    the other side can neither pass (or take) by position nor by name.
    """

    def shape(sig: inspect.Signature) -> tuple[int, bool, set[str], bool]:
        params = sig.parameters.values()
        positional = sum(p.kind in _POSITIONAL for p in params)
        var_pos = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
        names = {p.name for p in params if p.kind in _BY_NAME}
        var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
        return positional, var_pos, names, var_kw

    def required(sig: inspect.Signature) -> list[tuple[int, inspect.Parameter]]:
        out = []
        for index, p in enumerate(sig.parameters.values()):
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                out.append((index, p))
        return out

    def reachable(p: inspect.Parameter, index: int, other: inspect.Signature) -> bool:
        positional, var_pos, names, var_kw = shape(other)
        by_position = p.kind in _POSITIONAL and (var_pos or index < positional)
        by_name = p.kind in _BY_NAME and (var_kw or p.name in names)
        return by_position or by_name

    for index, p in required(giver):  # always passed: the taker must take it
        if not reachable(p, index, taker):
            return f"it cannot take the argument {p.name!r}"
    for index, p in required(taker):  # always needed: the giver must be able to pass it
        if not reachable(p, index, giver):
            return f"it needs an argument {p.name!r} that is never passed"
    return None


def _check_signature(fn: object, name: str, param: str, callable_: Any) -> None:
    """``key=``/``version=``/``tags=`` can take the function's arguments (when sure it cannot)."""
    fn_sig, sig = _signature(fn), _signature(callable_)
    if fn_sig is None or sig is None:
        return
    reason = _never_binds(fn_sig, sig)
    if reason is not None:
        shown = f"{getattr(callable_, '__qualname__', type(callable_).__name__)}{_bare(sig)}"
        raise TypeError(
            f"swr_cached: {param}={shown} cannot be called with the arguments of "
            f"{name}{_bare(fn_sig)} ({reason}); give {param}= the same parameters as the function"
        )


def _bare(sig: inspect.Signature) -> inspect.Signature:
    """``sig`` without annotations, for a message."""
    params = [p.replace(annotation=p.empty) for p in sig.parameters.values()]
    return sig.replace(parameters=params, return_annotation=sig.empty)


def _is_async_callable(fn: object) -> bool:
    """An ``async def`` function, or an object whose class has ``async def __call__``."""
    if inspect.iscoroutinefunction(fn):
        return True
    return callable(fn) and inspect.iscoroutinefunction(type(fn).__call__)


_default = SWRCache()


def default_cache() -> SWRCache:
    """The process-wide cache behind :func:`swr_cached`."""
    return _default


def swr_cached(
    ttl: float | None = 60.0,
    stale_ttl: float | None = None,
    version: Any = None,
    maxsize: int = 1024,
    key: Callable[..., Hashable] | None = None,
    namespace: str | None = None,
    tags: Callable[..., Iterable[str]] | None = None,
    store: StoreArg = None,
    cache: SWRCache | None = None,
) -> Callable[[Callable[P, Awaitable[T]]], SWRFunction[P, T]]:
    """Cache an ``async def`` function with stale-while-revalidate semantics.

    * ``ttl``: seconds an entry is fresh; ``None``: fresh until its version changes.
    * ``stale_ttl``: seconds after ``ttl`` during which a stale entry is still
      served at once while one background refresh runs; ``None``: no limit;
      ``0``: never serve stale.
    * ``version``: a constant, or a callable (sync or async) taking the function's
      arguments and returning the current version of the data; an entry stored
      under another version is stale.  A callable is always called, so a callable
      constant (a class, say) must be wrapped: ``version=lambda *a, **kw: MyClass``.
    * ``maxsize``: entries kept in memory (LRU), per function.
    * ``key``: callable taking the function's arguments, returning the cache key.
    * ``namespace``: names this function's entries in a store; default
      ``"module.qualname"``.
    * ``tags``: callable taking the function's arguments, returning str tags, for
      :meth:`SWRCache.invalidate_tags` of the function's cache (``f.cache``).
    * ``store``: a path or a ``SQLiteStore`` to persist entries; default the cache's.
    * ``cache``: the :class:`SWRCache` owning background work; default the process's.

    A bad argument (``TypeError`` for a wrong type, ``ValueError`` for a wrong
    value) is raised when the returned decorator is applied, at decoration,
    with a message naming the function (``module.qualname``), the parameter and
    the fix; ``swr_cached(...)`` itself raises nothing, so a decorator made but
    never applied reports nothing.  Only a callable ``ttl=`` fails at once,
    naming that callable (``@swr_cached`` without parentheses passes the
    function as ``ttl``).  A ``store=`` path is resolved to its store when the
    decorator is first applied, and that store is kept for every function it
    is applied to.
    """
    _check_parentheses(ttl)
    if cache is not None and not isinstance(cache, SWRCache):
        given = f"the class {cache.__name__}" if isinstance(cache, type) else repr(cache)

        def refuse(fn: Callable[P, Awaitable[T]]) -> SWRFunction[P, T]:
            name = _name_of(fn)
            _check_decorated(fn, name)
            raise TypeError(
                f"swr_cached: {name}: cache= must be an SWRCache instance (or None for the "
                f"default), got {given}; pass e.g. cache=SWRCache()"
            )

        return refuse
    return (cache if cache is not None else _default).cached(
        ttl=ttl,
        stale_ttl=stale_ttl,
        version=version,
        maxsize=maxsize,
        key=key,
        namespace=namespace,
        tags=tags,
        store=store,
    )
