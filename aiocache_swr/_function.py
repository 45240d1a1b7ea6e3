"""The engine of one decorated function: :class:`Engine`, and what the decorator returns.

The decision for a call is :func:`aiocache_swr._freshness.judge`; this module
carries it out (SPEC section 2):

* fresh: return the value (a dictionary lookup, one clock read, no await);
* stale and servable: return the value and make sure ONE background refresh of
  the key is running or queued;
* miss (absent, or expired): wait for one shared computation of the key.

Single flight.  Misses, background refreshes and ``refresh()`` share one
registry of :class:`_Flight` per key, per event loop.  A flight runs as a
task the cache owns (see :mod:`aiocache_swr._runner`), never in a caller's
task, so a caller that is cancelled only stops waiting; the flight finishes,
commits, and its other waiters get its result.  A flight is removed from the
registry only by itself, when it ends.

Checked commits.  ``invalidate``, ``cache_clear``, ``invalidate_tags`` and a
newer ``refresh()`` *doom* the registered flight: it still answers the callers
that were waiting for it, but its result is not written, to memory or to the
store, and callers arriving afterwards start a new flight instead of joining it.
Only the registered flight of a key can commit, so an older fetch never
overwrites a newer one.

Level-2 reads.  With a store, the misses of one function that start in the same
event-loop turn read the store together: one :class:`_Reads` job (a task the
cache owns, like a fetch) asks for all of their keys in one ``get_many``, under
one ``store_timeout``, answers the flights it found and starts a fetch for the
rest.  1,000 concurrent misses are one store call, not 1,000 tasks and time limits.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import logging
import math
import pickle
import sys
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Iterable
from types import FrameType, MethodType, TracebackType
from typing import TYPE_CHECKING, Any, Concatenate, Final, Generic, ParamSpec, TypeVar, cast, final

from ._backoff import backoff_delay
from ._entry import Entry
from ._events import CacheEvent, EventKind, emit
from ._freshness import EXPIRED, STALE, deadlines, judge
from ._info import CacheInfo
from ._keys import KW_MARK, make_key, stable_key
from ._runner import Signal, cancelled_for_real
from ._store import Distrust, Record, Store, close_unstarted, distrust, store_time_limit

if TYPE_CHECKING:
    import asyncio

    from ._cache import SWRCache
    from ._runner import Runner
    from ._types import SWRFunction

__all__ = ["BoundSWRFunction", "Engine", "computing", "decorated", "engine_of"]

P = ParamSpec("P")
T = TypeVar("T")

logger = logging.getLogger("aiocache_swr")

# Keys whose refresh backoff is remembered beside the store, at least (see _backoffs):
# more failing keys than the memory LRU holds must still back off (rule 6).
_BACKOFF_KEYS: Final = 4096

# What a flight does.
_MISS: Final = "miss"  # read the store, else compute; a caller waits
_REFRESH: Final = "refresh"  # background refresh of a stale entry; failure keeps it
_FORCE: Final = "force"  # refresh(): compute now, never from the store

# The flight whose computation this task is part of: set in the flight's own task, and
# inherited by the tasks its computation starts.  While such a task waits for another
# flight, the computation waits for it: an edge of the graph that ``_waits_for``
# walks, so that a call that would wait for itself (a cycle) raises instead.
_computing: contextvars.ContextVar[_Flight | None] = contextvars.ContextVar(
    "aiocache_swr_computing", default=None
)


def plain_tags(tags: tuple[str, ...]) -> tuple[str, ...]:
    """``tags`` as exact ``str``: a ``str`` subclass (a ``StrEnum`` member, say) is a
    tag by its text, which is what the store keeps and matches."""
    if all(type(tag) is str for tag in tags):
        return tags
    return tuple(str.__str__(tag) for tag in tags)


def computing() -> _Flight | None:
    """The flight whose computation the running task is part of, if any."""
    return _computing.get()


def _wait_edge(current: _Flight, flight: _Flight) -> None:
    """The computation of ``current`` waits for ``flight`` (through one more caller)."""
    awaits = current.awaits
    if awaits is None:
        awaits = current.awaits = {}
    awaits[flight] = awaits.get(flight, 0) + 1
    awaited_by = flight.awaited_by
    if awaited_by is None:
        awaited_by = flight.awaited_by = {}
    awaited_by[current] = awaited_by.get(current, 0) + 1


def _stop_waiting(flight: _Flight) -> None:
    """A caller of ``flight`` stopped waiting (its value came, or it was cancelled): if it
    is part of a computation, that computation waits for ``flight`` through one fewer."""
    current = _computing.get()
    if current is None or not current.awaits or flight not in current.awaits:
        return
    _drop_one(current.awaits, flight)
    assert flight.awaited_by is not None
    _drop_one(flight.awaited_by, current)


def _drop_one(counts: dict[_Flight, int], flight: _Flight) -> None:
    count = counts[flight]
    if count == 1:
        del counts[flight]
    else:
        counts[flight] = count - 1


def _waits_for(flight: _Flight, target: _Flight) -> bool:
    """The computation of ``flight`` is ``target``'s, or waits for it, directly or
    through the computations it waits for: joining ``flight`` from ``target``'s
    computation would wait forever.

    Searched from both ends at once (what ``flight`` waits for, and what waits for
    ``target``), each step on the side that has cost less so far (counting the
    step it would take), so that the check costs about twice the smaller side:
    many computations joining one that waits for many others (or the top of a
    long chain of them) each pay for their own few waits, not the whole graph below.
    """
    if flight is target:
        return True
    ahead, behind = {flight}, {target}  # reached from flight, and reaching target
    forward, backward = [flight], [target]
    forward_cost = backward_cost = 0
    while forward and backward:
        fanout = forward[-1].awaits
        fanin = backward[-1].awaited_by
        out_cost = 1 + (len(fanout) if fanout else 0)
        in_cost = 1 + (len(fanin) if fanin else 0)
        if forward_cost + out_cost < backward_cost + in_cost:
            forward_cost += out_cost
            forward.pop()
            for waited in fanout or ():
                if waited in behind:
                    return True
                if waited not in ahead:
                    ahead.add(waited)
                    forward.append(waited)
        else:
            backward_cost += in_cost
            backward.pop()
            for waiting in fanin or ():
                if waiting in ahead:
                    return True
                if waiting not in behind:
                    behind.add(waiting)
                    backward.append(waiting)
    return False


class _Flight(Signal):
    """One computation of one key, shared by every caller waiting for it.

    Its callers wait for it as a :class:`~aiocache_swr._runner.Signal`, set when
    it is done (the value or error is in place).
    """

    __slots__ = (
        "args",
        "awaited_by",
        "awaits",
        "base",
        "doomed",
        "error",
        "error_tb",
        "func",
        "key",
        "kind",
        "kwargs",
        "ok",
        "queued",
        "stale_loaded",
        "tags",
        "value",
        "version",
        "waiters",
    )

    def __init__(
        self,
        func: Engine[Any, Any],
        kind: str,
        key: Hashable,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        version: Any,
        loop: asyncio.AbstractEventLoop | None,
        base: Entry | None = None,
    ) -> None:
        Signal.__init__(self, loop)
        self.func = func
        self.kind = kind
        self.key = key
        self.args = args
        self.kwargs = kwargs
        self.version = version
        self.base = base
        self.tags = func._tags_of(args, kwargs) if func._tags is not None else ()
        self.value: Any = None
        self.error: BaseException | None = None
        self.error_tb: TracebackType | None = None
        self.waiters = 0  # callers waiting for the result right now
        # The flights this one's computation waits for now, and those whose
        # computations wait for this one, each with how many callers (see _waits_for).
        self.awaits: dict[_Flight, int] | None = None
        self.awaited_by: dict[_Flight, int] | None = None
        self.ok = False
        self.doomed = False
        self.queued = False
        self.stale_loaded: Entry | None = None

    def run(self) -> Coroutine[Any, Any, None]:
        return self.func._execute(self)

    def abandon(self) -> None:
        """It will never run (the cache closed before): fail it for its callers."""
        if self.is_set():
            return
        self.fail(
            RuntimeError(f"{self.func._name}: the cache was closed before this computation ran")
        )
        self._unregister()
        self.set()  # done: wake its callers

    def _unregister(self) -> None:
        # A flight is in its function's registry of the running loop, if in
        # any: the registry of a loop that has gone is garbage.
        registry = self.func._registry
        if registry.get(self.key) is self:
            del registry[self.key]

    def fail(self, exc: BaseException) -> None:
        self.error = exc
        self.error_tb = exc.__traceback__

    async def result(self) -> Any:
        """Wait for the outcome, as a caller counted in ``waiters`` (counted before
        the flight starts, as it may run eagerly up to its end).

        The cached call spells this out instead of awaiting it: one coroutine
        fewer to make, and to resume, per miss.
        """
        try:
            await self.wait()
        finally:
            self.waiters -= 1
            if self.awaited_by:
                _stop_waiting(self)
        return self.outcome()

    def outcome(self) -> Any:
        """The value, or raise the exception, of a flight that is done."""
        if self.error is not None:
            # Every waiter raises the one exception: restore its traceback each
            # time, as asyncio.Future does, so it does not grow with the waiters.
            raise self.error.with_traceback(self.error_tb)
        return self.value


class _Reads:
    """Misses of one function waiting to read the store together (see the module docstring).

    A :class:`~aiocache_swr._runner.Job`: it runs as a fetch, one loop turn after
    the first miss joined it, so the misses of that turn join it too.
    """

    __slots__ = ("contexts", "flights", "func", "queued", "runner", "skeys")

    def __init__(self, func: Engine[Any, Any], runner: Runner) -> None:
        self.func = func
        self.runner = runner
        # Per miss, in step: its flight, its stable key, its caller's context.
        self.flights: list[_Flight] = []
        self.skeys: list[str] = []
        self.contexts: list[contextvars.Context] = []
        self.queued = False  # never queued: it starts at once

    def add(self, flight: _Flight, skey: str) -> None:
        # If the store lacks it, its fetch starts in its caller's context (as a
        # miss without a store starts it), not in that of the batch's first caller.
        self.flights.append(flight)
        self.skeys.append(skey)
        self.contexts.append(contextvars.copy_context())

    def run(self) -> Coroutine[Any, Any, None]:
        return self.func._read_store(self)

    def abandon(self) -> None:
        if self.func._reads is self:
            self.func._reads = None
        for flight in self.flights:
            flight.abandon()


@final
class Engine(Generic[P, T]):
    """The cache of one coroutine function wrapped by ``swr_cached`` / ``SWRCache.cached``.

    For a method defined in a class body it is also what the decorator returns
    (see :func:`decorated`): an :class:`~aiocache_swr.SWRFunction`.
    Await it exactly like the original.  It also has ``refresh``,
    ``invalidate``, ``cache_clear`` and ``cache_info``; ``cache`` is the
    :class:`~aiocache_swr.SWRCache` that owns its background work.

    Used on a method, the instance is part of the key (it is the first
    argument), so the cache holds a reference to it for as long as one of its
    entries stays among the ``maxsize`` most recently used; pass ``key=`` to key
    on something else (e.g. ``key=lambda self, x: (self.id, x)``).

    Returned for a method, it is a coroutine function to ``asyncio.iscoroutinefunction``,
    and to ``inspect.iscoroutinefunction`` from Python 3.12 on: before 3.12, inspect
    recognises only functions, so ``Repo.method`` and a ``@staticmethod`` read on its
    class are not one to it (``obj.method``, a :class:`BoundSWRFunction`, is).  Like a
    function, it is copied as itself and pickled by reference.
    """

    # The call path's attributes are slots: an instance has more attributes than
    # CPython 3.11 keeps in a fast shared-key dict.  Dunders (__wrapped__...) go in __dict__.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_call",
        "_clock",
        "_distrust",
        "_evictions",
        "_fn",
        "_hit_count",
        "_key",
        "_listener",
        "_lru",
        "_maxsize",
        "_misses",
        "_name",
        "_reads",
        "_refresh_errors",
        "_refreshes",
        "_registry",
        "_registry_runner",
        "_signature",
        "_signature_known",
        "_stale_hits",
        "_stale_ttl",
        "_store",
        "_store_errors",
        "_store_hits",
        "_tags",
        "_ttl",
        "_version",
        "_version_fn",
        "_warned_serialize",
        "_warned_unstable",
        "cache",
        "namespace",
    )

    def __init__(
        self,
        fn: Callable[P, Awaitable[T]],
        cache: SWRCache,
        *,
        ttl: float | None,
        stale_ttl: float | None,
        version: Any,
        maxsize: int,
        key: Callable[..., Hashable] | None,
        namespace: str,
        tags: Callable[..., Iterable[str]] | None,
        store: Store | None,
    ) -> None:
        self.__wrapped__ = fn
        self.__name__: str = getattr(fn, "__name__", "swr_function")
        self.__qualname__: str = getattr(fn, "__qualname__", self.__name__)
        self.__module__ = getattr(fn, "__module__", __name__)
        self.__doc__ = getattr(fn, "__doc__", None)
        for name in functools.WRAPPER_ASSIGNMENTS:  # the rest: __annotations__ (__annotate__)...
            if name not in self.__dict__ and hasattr(fn, name):
                setattr(self, name, getattr(fn, name))
        self.cache = cache
        self.namespace = namespace
        self._name = f"{self.__module__}.{self.__qualname__}"
        self._fn = fn
        self._ttl = ttl
        self._stale_ttl = stale_ttl
        self._maxsize = maxsize
        self._key = key
        self._tags = tags
        self._store = store
        self._clock = cache.clock
        self._listener = cache.on_event
        if callable(version):
            self._version: Any = None
            self._version_fn: Callable[..., Any] | None = version
        else:
            self._version = version
            self._version_fn = None
        # The in-memory level, in least-recently-used order: a hit is lru[key] plus
        # lru.move_to_end(key), both in C.  An exact OrderedDict (not a subclass,
        # which CPython 3.11 cannot specialize lookups for), and not cachetools'
        # LRUCache, whose three Python-level calls per lookup were 40% of a hit.
        # Never replaced (cleared in place): _cached_call holds it.
        self._lru: OrderedDict[Hashable, Entry] = OrderedDict()
        self._registry: dict[Hashable, _Flight] = {}
        self._registry_runner: Runner | None = None
        self._reads: _Reads | None = None  # misses gathering to read the store
        # The backoff of keys whose last background refresh failed, kept beside
        # their entries when there is a store, so that an entry evicted from
        # memory and read back from the store still backs off (rule 6):
        # key -> (the entry's created, failures, retry_at).  Dropped on the key's
        # next success; beyond _BACKOFF_KEYS (or maxsize, if more), the oldest is
        # dropped.  A plain dict: a commit tests it on every miss.
        self._backoffs: dict[Hashable, tuple[float, int, float]] = {}
        self._stale_hits = 0
        self._misses = 0
        self._refreshes = 0
        self._refresh_errors = 0
        self._evictions = 0
        self._store_hits = 0
        self._store_errors = 0
        # When the store failed to apply invalidations (see Distrust).
        self._distrust: Distrust = distrust(store) if store is not None else Distrust()
        self._distrust.watch(self._clock)
        self._warned_unstable = False
        self._warned_serialize = False
        # The wrapped function's signature, computed on first need (see _check_args).
        self._signature: inspect.Signature | None = None
        self._signature_known = False
        # The call closure (the hot path) and its hit counter; decorated() takes
        # the closure away when it returns the closure itself (see there).
        self._call: Callable[P, Coroutine[Any, Any, T]]
        self._hit_count: Callable[[], int]
        self._call, self._hit_count = _cached_call(self)

    def __repr__(self) -> str:
        return f"<swr_cached {self._name} ttl={self._ttl} stale_ttl={self._stale_ttl}>"

    def _stamp_clock(self) -> Callable[[], float]:
        """The clock its entries are stamped with (see SQLiteStore._purge_time)."""
        return self._clock

    # -- copied and pickled as a function is -----------------------------------

    def __copy__(self) -> Engine[P, T]:
        # Atomic, as a function is: a copy would have its own LRU, which the call
        # closure (bound to this engine) never reads, so invalidating it would do nothing.
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Engine[P, T]:
        return self

    def __reduce__(self) -> str:
        """Pickled by reference, as a function is: found again by module and qualified
        name, or under another name its class keeps it under (as ``BoundSWRFunction``
        finds its method), else a ``PicklingError`` saying why."""
        owner_path, _, name = self.__qualname__.rpartition(".")
        owner: Any = sys.modules.get(self.__module__)
        for part in owner_path.split(".") if owner_path else ():
            owner = getattr(owner, part, None)
        if getattr(owner, name, None) is not self and isinstance(owner, type):
            # e.g. load = cache.cached(...)(_load), whose qualified name is _load's.
            name = next(
                (
                    other
                    for klass in owner.__mro__
                    for other, value in vars(klass).items()
                    if value is self or (isinstance(value, staticmethod) and value.__func__ is self)
                ),
                name,
            )
        if getattr(owner, name, None) is not self:
            raise pickle.PicklingError(
                f"cannot pickle {self!r}: it is pickled by reference, as a function is, and "
                f"{self.__module__}.{self.__qualname__} is not it (define its class at the "
                "top level of its module, or pickle a bound method of an instance)"
            )
        return f"{owner_path}.{name}" if owner_path else name

    # -- the call ------------------------------------------------------------

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._call(*args, **kwargs)

    async def refresh(self, *args: P.args, **kwargs: P.kwargs) -> T:
        """Recompute now (inline), store and return the new value.

        For "the editor must see the latest": it never joins a computation that
        started earlier (that one could predate the edit); it supersedes it, so
        the older one's result is not written.  Callers arriving meanwhile wait
        for this one.  Its exception reaches the caller; the old entry is kept.
        """
        key = self._key_of(args, kwargs)
        self._check_hashable(key)
        version = await self._current_version(args, kwargs)
        runner = self.cache._runner_here()
        registry = self._registry_here(runner)
        # Built first (it evaluates tags=): a refresh that fails here supersedes nothing.
        flight = _Flight(self, _FORCE, key, args, kwargs, version, runner.asyncio_loop)
        old = registry.get(key)
        if old is not None:
            old.doomed = True
        registry[key] = flight
        self._refreshes += 1
        flight.waiters = 1
        current = _computing.get()
        if current is not None:  # before it starts, as it may start eagerly (3.12+)
            _wait_edge(current, flight)
        try:
            runner.start_fetch(flight)
        except BaseException:
            _stop_waiting(flight)
            raise
        return await flight.result()  # type: ignore[no-any-return]

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Drop the entry of these arguments from memory and the store.

        A computation of it already in flight still answers its waiters but
        will not write its result back.
        """
        self._check_args("invalidate", args, kwargs)
        key = self._key_of(args, kwargs)
        try:
            self._lru.pop(key, None)
        except TypeError as exc:
            raise self._key_error(exc) from exc
        flight = self._registry.get(key)
        if flight is not None:
            flight.doomed = True
        if self._store is not None:
            skey = self._stable_key(key)
            if skey is not None:
                async with self.cache._holding_store_reads():
                    await self._store_op(
                        "delete", self._store.delete(self.namespace, (skey,)), invalidates=True
                    )

    async def cache_clear(self) -> None:
        """Drop every entry of this function, from memory and the store."""
        self._drop_memory()
        if self._store is not None:
            async with self.cache._holding_store_reads():
                await self._store_op("clear", self._store.clear(self.namespace), invalidates=True)

    def cache_info(self) -> CacheInfo:
        """A snapshot of this function's counters (see :class:`CacheInfo`)."""
        return CacheInfo(
            hits=self._hit_count(),
            stale_hits=self._stale_hits,
            misses=self._misses,
            refreshes=self._refreshes,
            refresh_errors=self._refresh_errors,
            evictions=self._evictions,
            currsize=len(self._lru),
            maxsize=self._maxsize,
            store_hits=self._store_hits,
            store_errors=self._store_errors,
        )

    def __get__(self: Engine[..., T], instance: object, owner: type | None = None) -> Any:
        # Its types are SWRFunction.__get__'s (the decorator returns an SWRFunction).  No
        # overloads here: mypy would no longer take an Engine for an SWRFunction, as it
        # cannot match self-typed overloads of a class with those of a protocol.
        if instance is None:
            return self
        # BoundSWRFunction(self, instance), spelled out: no __new__ call in Python.
        bound: BoundSWRFunction[..., T] = _new_partial(BoundSWRFunction, self._call, instance)
        bound.__func__ = self
        return bound

    # -- pieces of the call --------------------------------------------------

    def _emit(
        self, kind: EventKind, key: Hashable | None, error: BaseException | None = None
    ) -> None:
        assert self._listener is not None
        emit(self._listener, CacheEvent(kind, self.namespace, key, error))

    def _put(self, key: Hashable, entry: Entry) -> None:
        """Store ``entry`` as the most recently used; evict beyond ``maxsize``, counted."""
        lru = self._lru
        lru[key] = entry
        lru.move_to_end(key)
        while len(lru) > self._maxsize:
            evicted, _ = lru.popitem(last=False)
            self._evictions += 1
            if self._listener is not None:
                self._emit("eviction", evicted)

    def _key_of(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
        if self._key is None:
            return args if not kwargs else make_key(args, kwargs)
        return self._key(*args, **kwargs)

    def _key_error(self, exc: TypeError) -> TypeError:
        if self._key is not None:
            return TypeError(
                f"{self._name}: key= returned a value that cannot be a cache key ({exc}); "
                "make key= return a hashable value, e.g. a tuple instead of a list"
            )
        try:
            params = ", ".join(inspect.signature(self._fn).parameters)
        except (TypeError, ValueError):
            params = "..."
        return TypeError(
            f"{self._name}: these arguments cannot form a cache key ({exc}); "
            f"pass key=lambda {params}: ... returning a hashable key made of them "
            "(a tuple for a list, frozenset(d.items()) for a dict, an id for an object)"
        )

    def _check_hashable(self, key: Hashable) -> None:
        try:
            hash(key)
        except TypeError as exc:
            raise self._key_error(exc) from exc

    def _check_args(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """The wrapped function could take ``args``/``kwargs``, else a TypeError naming it."""
        if not self._signature_known:
            try:
                # The wrapper's own signature (not its __wrapped__'s): it is what is called.
                self._signature = inspect.signature(self._fn, follow_wrapped=False)
            except (TypeError, ValueError):
                self._signature = None
            self._signature_known = True
        if self._signature is None:
            return
        try:
            self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(
                f"{self._name}.{method}: the function cannot take these arguments ({exc}); "
                "pass the arguments of a call to it"
            ) from None

    async def _current_version(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self._version_fn is None:
            return self._version
        version = self._version_fn(*args, **kwargs)
        if inspect.isawaitable(version):
            version = await version
        return version

    def _tags_of(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, ...]:
        if self._tags is None:
            return ()
        tags = self._tags(*args, **kwargs)
        if isinstance(tags, str):
            return plain_tags((tags,))
        try:
            result = tuple(tags)
        except TypeError:
            result = None
        if result is None or not all(isinstance(tag, str) for tag in result):
            raise TypeError(f"{self._name}: tags= must return an iterable of str, got {tags!r}")
        return plain_tags(result)

    def _registry_is_here(self) -> bool:
        """The registry belongs to the cache's open runner on the running event loop."""
        runner = self._registry_runner
        return runner is not None and runner is self.cache._runner and runner.is_current()

    def _registry_here(self, runner: Runner) -> dict[Hashable, _Flight]:
        """This function's in-flight registry for ``runner``'s event loop, the running one."""
        if self._registry_runner is not runner:
            # A new event loop (or runner): flights of the old one can never finish
            # here, and one that still does (its loop suspended, not gone) must not
            # write over what this one's flights commit.
            for flight in self._registry.values():
                flight.doomed = True
            self._registry = {}
            self._registry_runner = runner
        return self._registry

    def _start_refresh(
        self,
        key: Hashable,
        entry: Entry,
        now: float,
        version: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        """Make sure one background refresh of ``key`` runs or is queued."""
        if now < entry.retry_at:
            return  # backing off after failed refreshes
        runner = self.cache._runner_here()
        registry = self._registry_here(runner)
        current = registry.get(key)
        if current is not None and not current.doomed:
            return  # one runs (if of another version, the next stale hit starts one)
        try:
            flight = _Flight(
                self, _REFRESH, key, args, kwargs, version, runner.asyncio_loop, base=entry
            )
        except Exception as exc:  # tags= raised: the refresh failed, the stale value is served
            self._refresh_not_started(key, entry, exc)
            return
        registry[key] = flight
        self._refreshes += 1
        runner.enqueue_refresh(flight)

    def _refresh_not_started(self, key: Hashable, entry: Entry, exc: Exception) -> None:
        """A background refresh failed before it could start: counted, backed off and logged."""
        self._refreshes += 1
        self._refresh_errors += 1
        if self._listener is not None:
            self._emit("refresh_error", key, exc)
        delay = self._back_off(key, entry)
        logger.warning(
            "%s: background refresh of %r could not start (%r); keeping the old value, "
            "next try in %.1fs",
            self._name,
            key,
            exc,
            delay,
            exc_info=exc,
        )

    def _stale_hit(
        self,
        key: Hashable,
        entry: Entry,
        now: float,
        version: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        """Serve a stale ``entry``, counted; make sure one background refresh of it runs."""
        self._stale_hits += 1
        if self._listener is not None:
            self._emit("stale_hit", key)
        current = self._registry.get(key)
        if current is None or current.doomed or not self._registry_is_here():
            self._start_refresh(key, entry, now, version, args, kwargs)
        # else one runs or is queued already: a stale crowd's path
        return entry.value  # type: ignore[no-any-return]

    def _miss(
        self, key: Hashable, version: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> _Flight:
        """Count a miss of ``key``; join or start its flight, as one more waiter of it.

        Not a coroutine: it never waits, and each coroutine level costs every
        miss about 0.3 µs (made, then resumed when the value is ready).  The
        caller waits for the flight as ``_Flight.result`` does.
        """
        self._misses += 1
        if self._listener is not None:
            self._emit("miss", key)
        runner = self._registry_runner
        if runner is not None and runner is self.cache._runner and runner.is_current():
            registry = self._registry  # _registry_is_here(), spelled out: two calls fewer
        else:
            runner = self.cache._runner_here()
            registry = self._registry_here(runner)
        flight = registry.get(key)
        if flight is None or flight.doomed:
            flight = _Flight(self, _MISS, key, args, kwargs, version, runner.asyncio_loop)
            # The stable key to read the store with; None: compute it now (no
            # store, or an invalidation is being written: do not read what it removes).
            skey = None
            if self._store is not None and not self.cache._store_reads_held:
                skey = self._stable_key(key)
            registry[key] = flight
            flight.waiters = 1
            current = _computing.get()
            if current is not None:  # before it starts, as it may start eagerly (3.12+)
                _wait_edge(current, flight)
            try:
                if skey is None:
                    runner.start_fetch(flight)
                else:
                    self._read_first(runner, flight, skey)
            except BaseException:  # e.g. a KeyboardInterrupt: never leave it registered
                if registry.get(key) is flight:
                    del registry[key]
                if current is not None:
                    _stop_waiting(flight)
                raise
            return flight
        current = _computing.get()
        if current is not None and _waits_for(flight, current):
            raise RuntimeError(
                f"{self._name}: called with the key {key!r} while computing that key "
                "(it calls itself, directly or through other cached calls that wait "
                "for it, or awaits a task that does): it would wait for itself forever"
            )
        if flight.queued:
            runner.promote(flight)
        flight.waiters += 1  # after: if promoting raises, this caller never waits
        if current is not None:
            _wait_edge(current, flight)
        return flight

    # -- a flight, in a task the cache owns -----------------------------------

    async def _execute(self, flight: _Flight) -> None:
        try:
            if flight.doomed and flight.kind == _REFRESH and not flight.waiters:
                return  # superseded before it started, and nobody waits for it
            _computing.set(flight)  # in this task's own context
            try:
                value = await self._fn(*flight.args, **flight.kwargs)
            except BaseException as exc:
                # Any other exception is the function's outcome, even one that is
                # not an Exception: a CancelledError from something it awaited (its
                # own task was not cancelled), or a BaseException of its own.  It
                # must not end the cache's task group, nor be lost to its callers.
                # A KeyboardInterrupt or SystemExit stops an asyncio loop; on trio
                # (where the task group's task could only crash the run with it) it
                # is an outcome too, which its waiters raise in their own tasks.
                if isinstance(exc, KeyboardInterrupt | SystemExit) and flight.on_asyncio:
                    raise
                if cancelled_for_real(exc):
                    raise  # this flight was cancelled: the cache is closing
                flight.fail(exc)
                if flight.kind == _REFRESH:
                    self._refresh_failed(flight, exc)
                elif flight.kind == _FORCE and self._listener is not None:
                    # Reported as a refresh() that succeeds is; counted in no
                    # refresh_errors (background refreshes only): its caller has it.
                    self._emit("refresh_error", flight.key, exc)
                if flight.kind != _REFRESH and not flight.waiters:
                    # Every caller stopped waiting: nobody else will see this.
                    logger.warning(
                        "%s: computing %r failed after its callers stopped waiting",
                        self._name,
                        flight.key,
                        exc_info=exc,
                    )
                return
            flight.value = value
            flight.ok = True
            self._commit(flight, value)
        finally:
            self._finish(flight)

    def _finish(self, flight: _Flight) -> None:
        """The flight has ended: release its callers and its registry entry."""
        if not flight.ok and flight.error is None:
            flight.fail(
                RuntimeError(
                    f"{self._name}: the cache was closed before this call's value was computed"
                )
            )
        registry = self._registry  # flight._unregister(), spelled out: one call fewer
        if registry.get(flight.key) is flight:
            del registry[flight.key]
        flight.set()  # done: wake its callers
        stale = flight.stale_loaded
        if stale is not None and not flight.doomed:
            self._start_refresh(
                flight.key, stale, self._clock(), flight.version, flight.args, flight.kwargs
            )

    def _commit(self, flight: _Flight, value: Any) -> None:
        if flight.doomed:
            logger.debug(
                "%s: discarded a result for %r (invalidated meanwhile)", self._name, flight.key
            )
            if self._listener is not None and flight.kind != _MISS:
                self._emit("refresh_ok", flight.key)  # it succeeded, though not kept
            return
        now = self._clock()
        fresh_until, serve_until = deadlines(now, self._ttl, self._stale_ttl)
        entry = Entry(value, flight.version, now, fresh_until, serve_until, flight.tags)
        self._put(flight.key, entry)
        if self._backoffs:  # a success ends the key's backoff
            self._backoffs.pop(flight.key, None)
        if self._listener is not None and flight.kind != _MISS:
            self._emit("refresh_ok", flight.key)
        if self._store is not None:
            self._persist(flight.key, entry)

    def _refresh_failed(self, flight: _Flight, exc: BaseException) -> None:
        self._refresh_errors += 1
        if self._listener is not None:
            self._emit("refresh_error", flight.key, exc)
        base = flight.base
        delay = 0.0 if base is None else self._back_off(flight.key, base)
        logger.warning(
            "%s: background refresh of %r failed; keeping the old value, next try in %.1fs",
            self._name,
            flight.key,
            delay,
            exc_info=exc,
        )

    def _back_off(self, key: Hashable, entry: Entry) -> float:
        """One more failed refresh of ``key``: set ``entry``'s next try; return the delay."""
        entry.failures += 1
        delay = backoff_delay(entry.failures)
        entry.retry_at = self._clock() + delay
        if self._store is not None:  # without one, an evicted key is simply a miss
            backoffs = self._backoffs
            backoffs.pop(key, None)  # re-inserted as the newest
            if len(backoffs) >= max(self._maxsize, _BACKOFF_KEYS):
                del backoffs[next(iter(backoffs))]
            backoffs[key] = (entry.created, entry.failures, entry.retry_at)
        return delay

    # -- level 2 -------------------------------------------------------------

    def _stable_key(self, key: Hashable) -> str | None:
        try:
            return stable_key(key)
        except Exception as exc:  # UnstableKeyError, or e.g. an int too long for str()
            if not self._warned_unstable:
                self._warned_unstable = True
                logger.warning(
                    "%s: a key has no stable form (%s), so such entries stay in memory only; "
                    "pass key= returning str/int/tuple values to persist them",
                    self._name,
                    exc,
                )
            return None

    async def _store_op(
        self,
        what: str,
        op: Coroutine[Any, Any, Any],
        *,
        invalidates: bool = False,
    ) -> Any:
        """Await a store operation within ``store_timeout``; a failure is logged, counted
        and returns None.  After a failed invalidation the store's records of this
        namespace are distrusted (see ``Distrust``)."""
        timeout = self.cache.store_timeout
        runner = self.cache._runner_here()
        runner.ensure_closer()
        try:
            if timeout is None:
                return await op
            async with runner.time_limit(timeout) as limit:
                token = store_time_limit.set(limit)
                try:
                    return await op
                finally:
                    store_time_limit.reset(token)
        except Exception as exc:
            if isinstance(exc, TimeoutError):
                what = f"{what} (store_timeout={timeout}s)"
            self._store_failed(what, exc)
            if invalidates:
                self._distrust.mark(self.namespace, self._clock)
            return None
        finally:
            close_unstarted(op)

    def _store_failed(self, what: str, exc: BaseException, key: Hashable | None = None) -> None:
        self._store_errors += 1
        logger.warning("%s: store %s failed: %r", self._name, what, exc, exc_info=exc)
        if self._listener is not None:
            self._emit("store_error", key, exc)

    def _read_first(self, runner: Runner, flight: _Flight, skey: str) -> None:
        """Queue the miss ``flight`` to read the store first (see ``_Reads``)."""
        reads = self._reads
        if reads is not None and reads.runner is runner:
            reads.add(flight, skey)
            return
        reads = self._reads = _Reads(self, runner)
        reads.add(flight, skey)
        # Not eagerly: this turn's misses join it.  If it cannot start, it is
        # abandoned (its flights fail, self._reads is reset) before this returns.
        runner.start_fetch(reads, eager=False)

    async def _read_store(self, reads: _Reads) -> None:
        """Read the store for a batch of misses; answer what it holds, fetch the rest."""
        if self._reads is reads:
            self._reads = None  # misses from now on gather for the next batch
        flights = reads.flights
        done = 0  # flights[:done] were answered or handed to a fetch
        try:
            found: Any = None
            if not self.cache._store_reads_held:
                assert self._store is not None
                found = await self._store_op(
                    "read",
                    # A copy: the keys must stay in step with the flights.
                    self._store.get_many(self.namespace, tuple(reads.skeys)),
                )
            malformed: tuple[Hashable, Exception] | None = None
            now = self._clock()
            runner = reads.runner
            for flight, skey, context in zip(flights, reads.skeys, reads.contexts, strict=True):
                # In its caller's context, not the batch's first caller's: what it
                # starts (its fetch, or the refresh of a stale entry) and its events.
                error = context.run(self._answer_read, runner, flight, found, skey, now)
                if error is not None:
                    malformed = malformed or (flight.key, error)
                done += 1
            if malformed is not None:  # one failed read, however many records it spoiled
                bad_key, error = malformed
                self._store_failed("read", TypeError(f"malformed record: {error!r}"), bad_key)
        finally:
            for flight in flights[done:]:  # cancelled (the cache is closing)
                self._finish(flight)

    def _answer_read(
        self, runner: Runner, flight: _Flight, found: Any, skey: str, now: float
    ) -> Exception | None:
        """Answer a batched miss from the store's ``found``, else start its fetch.

        Returns why its record was malformed (it is then fetched), if it was."""
        error = None
        try:
            entry = self._loaded(flight, found, skey, now)
        except Exception as exc:  # a store that answers garbage: a miss
            entry = None
            error = exc
        if entry is None:
            runner.start_fetch(flight)
        else:
            flight.value = entry.value
            flight.ok = True
            self._finish(flight)  # starts the refresh of an entry loaded stale
        return error

    def _loaded(self, flight: _Flight, found: Any, skey: str, now: float) -> Entry | None:
        """The entry the store answered for a miss, now in memory; None: compute it.

        Raises if the store's answer is malformed (not a mapping of records)."""
        record: Record | None = found.get(skey) if found else None
        if record is None or flight.doomed:
            return None
        distrusted = self._distrust
        if distrusted.at and not distrusted.trusts(
            self.namespace, skey, record.created, self._clock
        ):
            return None  # from before an invalidation the store failed to apply
        fresh_until, serve_until = deadlines(record.created, self._ttl, self._stale_ttl)
        tags = record.tags
        if type(tags) is not tuple:  # not a call for the common case, a tuple already
            tags = tuple(tags)
        if tags and not all(type(tag) is str for tag in tags):
            raise TypeError(f"tags must be str, got {tags!r}")
        entry = Entry(record.value, record.version, record.created, fresh_until, serve_until, tags)
        if self._backoffs:  # evicted while backing off: it still does
            backoff = self._backoffs.get(flight.key)
            if backoff is not None and backoff[0] == record.created:  # the same value
                _, entry.failures, entry.retry_at = backoff
        state = judge(entry, now, flight.version)
        if state is EXPIRED:
            return None
        self._put(flight.key, entry)
        self._store_hits += 1
        if self._listener is not None:
            self._emit("store_hit", flight.key)
        if state is STALE:
            flight.stale_loaded = entry
        return entry

    def _persist(self, key: Hashable, entry: Entry) -> None:
        store = self._store
        assert store is not None
        skey = self._stable_key(key)
        if skey is None:
            return
        useful_until = max(entry.fresh_until, entry.serve_until)
        expires = None if useful_until == math.inf else useful_until
        record = Record(entry.value, entry.version, entry.created, entry.tags, expires)
        try:
            store.put(self.namespace, skey, record)
        except Exception as exc:
            # The store dropped the key's older record with it (see Store.put):
            # that deletion is written as a put would be.
            if not self._warned_serialize:
                self._warned_serialize = True
                logger.warning(
                    "%s: a value could not be stored (%r); such entries stay in memory only",
                    self._name,
                    exc,
                )
            self._store_errors += 1
            if self._listener is not None:
                self._emit("store_error", key, exc)
            if store.pending:
                self.cache._schedule_flush(store)
            return
        if self._distrust.at:
            self._distrust.written(self.namespace, skey, entry.created, self._clock)
        self.cache._schedule_flush(store)

    # -- invalidation, from the cache ----------------------------------------

    def _drop_memory(self) -> None:
        self._lru.clear()  # in place: the call closure holds this dict
        self._backoffs.clear()
        for flight in self._registry.values():
            flight.doomed = True

    def _drop_tagged(self, tags: frozenset[str]) -> None:
        for key in [k for k, e in self._lru.items() if not tags.isdisjoint(e.tags)]:
            del self._lru[key]
        for flight in self._registry.values():
            if not tags.isdisjoint(flight.tags):
                flight.doomed = True


def decorated(
    engine: Engine[P, T], fn: Callable[P, Awaitable[T]], caller: FrameType | None
) -> SWRFunction[P, T]:
    """What the decorator returns for ``fn``, given its engine and the decorator's caller.

    * A method (see :func:`_is_method`) gets the engine itself, whose
      ``__get__`` binds it to the instance, so ``obj.method.invalidate(x)``
      keys on ``obj`` too.  It keeps the call closure, so the two refer to
      each other: a cycle, but a method lives as long as its class anyway.
    * Anything else gets the call closure, an ``async def`` function carrying
      the engine's members (``refresh``, ``invalidate``, ``cache_clear``,
      ``cache_info``, ``cache``, ``namespace``) and ``fn``'s name, docstring,
      ``__wrapped__`` and (if ``fn`` is a function) attributes.  It is the
      cheapest call there is, and ``inspect.iscoroutinefunction`` is true of
      it.  The engine lets go of it: no reference cycle, so a dropped function
      is freed at once, its LRU with it.
    """
    if _is_method(fn, caller):
        # A partial of a bound method (functools.partial(obj.method, 1)) is made of the
        # call closure: give it the method's signature, which inspect then binds.
        with contextlib.suppress(TypeError, ValueError):
            engine._call.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]
        if inspect.isfunction(fn):
            # Its attributes, as the function shape copies them (e.g. @abstractmethod's
            # __isabstractmethod__, or a framework's marks), where the engine has none.
            for name, value in vars(fn).items():
                if name not in engine.__dict__ and not hasattr(Engine, name):
                    engine.__dict__[name] = value
        _mark_coroutine_function(engine)
        return engine
    front = engine._call
    del engine._call
    functools.update_wrapper(
        front, fn, updated=functools.WRAPPER_UPDATES if inspect.isfunction(fn) else ()
    )
    front.__name__ = engine.__name__  # e.g. a partial's has none: not the closure's own
    front.__qualname__ = engine.__qualname__
    front.__dict__.update(
        cache=engine.cache,
        namespace=engine.namespace,
        refresh=engine.refresh,
        invalidate=engine.invalidate,
        cache_clear=engine.cache_clear,
        cache_info=engine.cache_info,
    )
    return cast("SWRFunction[P, T]", front)


def _mark_coroutine_function(engine: Engine[Any, Any]) -> None:
    """Make ``inspect``/``asyncio.iscoroutinefunction`` true of ``engine`` where they can be.

    Set once, at decoration: nothing is added to a call.  From Python 3.12 on,
    ``inspect.markcoroutinefunction``, which both functions recognise (also through a
    ``classmethod``'s bound method).  Before, ``inspect.iscoroutinefunction`` is true
    of functions only, so of no object; ``asyncio.iscoroutinefunction`` also looks for
    asyncio's mark, which ``unittest.mock.AsyncMock`` sets the same way.
    """
    if sys.version_info >= (3, 12):
        inspect.markcoroutinefunction(engine)
    else:
        import asyncio.coroutines

        marker = getattr(asyncio.coroutines, "_is_coroutine", None)
        if marker is not None:
            engine.__dict__["_is_coroutine"] = marker


def engine_of(f: object) -> Engine[Any, Any]:
    """The engine behind what the decorator returned (or its bound method): for tests and tools."""
    if isinstance(f, BoundSWRFunction):
        f = f.__func__
    if isinstance(f, Engine):
        return f
    engine = getattr(getattr(f, "cache_info", None), "__self__", None)
    if not isinstance(engine, Engine):
        raise TypeError(f"{f!r} is not a function decorated by swr_cached")
    return engine


def _is_method(fn: object, caller: FrameType | None) -> bool:
    """``fn`` is decorated as a method: in a class body, or defined in one.

    Decorated in a class body: the decorator's caller is a class body (its
    namespace has ``__module__`` and ``__qualname__``), which also catches a
    method below a decorator that does not copy ``__qualname__``.  Defined in
    one: ``fn`` is a function whose ``__qualname__`` places it in a class body
    (e.g. decorated later, in a loop over a class's methods).  Erring towards
    "method" is safe: the binding shape is slower, but right for a function;
    the function shape used as a method would key ``obj.method.invalidate(x)``
    without ``obj`` (a TypeError, or no entry dropped).
    """
    # A function's frame (optimized) is no class body; its f_locals is not read, as
    # before 3.13 that keeps a copy of its locals on the frame until it returns.
    if caller is not None and not caller.f_code.co_flags & inspect.CO_OPTIMIZED:
        namespace = caller.f_locals
        if "__module__" in namespace and "__qualname__" in namespace:
            return True
    if not inspect.isfunction(fn):
        return False
    outer, dot, _ = fn.__qualname__.rpartition(".")
    return bool(dot) and not outer.endswith("<locals>")


def _cached_call(
    self: Engine[P, T],
) -> tuple[Callable[P, Coroutine[Any, Any, T]], Callable[[], int]]:
    """The cached call of ``self`` (SPEC section 2), and a reader of its hit count.

    The hot path, as a closure, not a method: calling a function is the
    cheapest call CPython has (an instance with ``__call__`` costs about 15%
    more per hit, 20% with a keyword argument), and a cell is read faster than
    an attribute.  What a fresh hit needs and never changes after ``__init__``
    is read from cells, and the hit count is a cell too (``nonlocal``: 3% of a
    hit, against a slot); the rest is ``self``'s.

    Two shapes, as ``functools.lru_cache``'s pure-Python version has one per
    kind of bound: the plain one (no ``key=``, a constant ``version``, no
    ``on_event``), the common case, and the general one.  The plain one skips
    the three checks and their cells (a call copies each cell into its frame):
    a fresh hit is about 7% faster than through one closure for both shapes.
    Only the key, the version and the fresh hit's event differ; keep what
    follows the lookup the same in both (stale hits and misses are methods).
    """
    lru = self._lru
    move_to_end = lru.move_to_end
    clock = self._clock
    listener = self._listener
    hits = 0

    if self._key is None and self._version_fn is None and listener is None:
        version = self._version

        async def plain(*args: P.args, **kwargs: P.kwargs) -> T:
            nonlocal hits
            # make_key(args, kwargs), without a call for the usual shapes.
            if not kwargs:
                key: Hashable = args
            elif len(kwargs) == 1:
                key = (*args, KW_MARK, *kwargs.items())
            else:
                key = make_key(args, kwargs)
            try:
                entry = lru[key]
            except KeyError:
                pass
            except TypeError as exc:
                raise self._key_error(exc) from exc
            else:
                move_to_end(key)
                now = clock()
                # judge(entry, now, version) is FRESH, spelled out: the hot path.
                if now < entry.fresh_until and entry.version == version:
                    hits += 1
                    return entry.value  # type: ignore[no-any-return]
                if now < entry.serve_until:  # ...and STALE, spelled out too
                    return self._stale_hit(key, entry, now, version, args, kwargs)
                del lru[key]  # expired: lazy expiry
            flight = self._miss(key, version, args, kwargs)
            try:  # await flight.result(), spelled out (see _Flight.result)
                await flight.wait()
            finally:
                flight.waiters -= 1
                if flight.awaited_by:
                    _stop_waiting(flight)
            return flight.outcome()  # type: ignore[no-any-return]

        call = plain
    else:
        key_fn = self._key
        constant_version = self._version
        version_fn = self._version_fn

        async def general(*args: P.args, **kwargs: P.kwargs) -> T:
            nonlocal hits
            if key_fn is not None:
                key: Hashable = key_fn(*args, **kwargs)
            elif not kwargs:
                key = args
            elif len(kwargs) == 1:
                key = (*args, KW_MARK, *kwargs.items())
            else:
                key = make_key(args, kwargs)
            if version_fn is None:
                version = constant_version
            else:
                version = await self._current_version(args, kwargs)
            try:
                entry = lru[key]
            except KeyError:
                pass
            except TypeError as exc:
                raise self._key_error(exc) from exc
            else:
                move_to_end(key)
                now = clock()
                if now < entry.fresh_until and entry.version == version:
                    hits += 1
                    if listener is not None:
                        self._emit("hit", key)
                    return entry.value  # type: ignore[no-any-return]
                if now < entry.serve_until:
                    return self._stale_hit(key, entry, now, version, args, kwargs)
                del lru[key]
            flight = self._miss(key, version, args, kwargs)
            try:
                await flight.wait()
            finally:
                flight.waiters -= 1
                if flight.awaited_by:
                    _stop_waiting(flight)
            return flight.outcome()  # type: ignore[no-any-return]

        call = general

    def hit_count() -> int:
        return hits

    return call, hit_count


_new_partial: Final[Any] = functools.partial.__new__

# What a bound method reads from its function besides the function's __dict__; not
# __code__, __defaults__ and __kwdefaults__, with which inspect (before 3.13) would take
# it for a function and give its signature the instance's parameter.
_FUNCTION_ATTRIBUTES: Final = frozenset(
    {
        "__annotate__",
        "__builtins__",
        "__closure__",
        "__globals__",
        "__type_params__",
    }
)


@final
class BoundSWRFunction(functools.partial[Coroutine[Any, Any, T]], Generic[P, T]):
    """A decorated method bound to one instance (the first argument of its key): ``obj.method``.

    Await it like the method; ``refresh`` and ``invalidate`` are bound to the
    instance too (``obj.method.invalidate(x)`` drops the entry of ``obj`` and
    ``x``), while ``cache_info`` and ``cache_clear`` are the function's and cover
    every instance: its counters, and the entries of all instances.  Like a
    :class:`types.MethodType`, it has its
    function's ``__name__``, ``__qualname__``, ``__doc__``, ``cache`` and
    ``namespace``; its ``__wrapped__`` is the undecorated function bound to the
    instance, and its signature lacks the instance.

    It is a :class:`functools.partial` of the engine's call, an ``async def``,
    with the instance: a call goes to that in C, and ``inspect.iscoroutinefunction``
    (which looks through a partial, on every Python version) is true of it.  One
    is made on every attribute access (``obj.method``), so making one is only the
    partial and one slot: the rest is computed when read.
    """

    __slots__ = ("__func__",)

    class _Doc:
        """``__doc__``: the function's on a bound method, the class's own on the class."""

        __slots__ = ("class_doc",)

        def __init__(self, class_doc: str | None) -> None:
            self.class_doc = class_doc

        def __get__(
            self, instance: BoundSWRFunction[Any, Any] | None, owner: type | None = None
        ) -> str | None:
            return self.class_doc if instance is None else instance.__func__.__doc__

    __doc__ = _Doc(__doc__)

    class _Module(str):
        """``__module__``: the function's on a bound method; on the class, the class's
        own, this string (``type`` reads a class's ``__module__`` as stored: a str)."""

        __slots__ = ()

        def __get__(
            self, instance: BoundSWRFunction[Any, Any] | None, owner: type | None = None
        ) -> str:
            return str(self) if instance is None else instance.__func__.__module__

        def __reduce__(self) -> tuple[Any, ...]:
            return (str, (str(self),))  # the class pickled by reference names a plain str

    __module__ = _Module(__module__)

    class _Annotations(dict[str, Any]):
        """``__annotations__``: the function's on a bound method (``typing.get_type_hints``
        reads them); on the class, none: this empty dict, as ``typing`` and ``inspect``
        read a class's annotations from its ``__dict__``."""

        __slots__ = ()

        def __get__(
            self, instance: BoundSWRFunction[Any, Any] | None, owner: type | None = None
        ) -> dict[str, Any]:
            if instance is None:
                return self
            return instance.__func__.__annotations__

    __annotations__ = _Annotations()

    def __new__(
        cls, func: Engine[Concatenate[Any, P], T], instance: object
    ) -> BoundSWRFunction[P, T]:
        """``func`` bound to ``instance``, as ``types.MethodType(func, instance)`` is (which
        ``weakref.WeakMethod`` calls); ``Engine.__get__`` spells this out."""
        bound = _new_partial(cls, func._call, instance)
        bound.__func__ = func
        return bound  # type: ignore[no-any-return]

    if TYPE_CHECKING:

        def __init__(self, func: Engine[Concatenate[Any, P], T], instance: object) -> None:
            # Declared here, not in the class body, where mypy would take the engine for
            # a descriptor of the class.
            self.__func__: Engine[Concatenate[Any, P], T]

        # At run time the call is the partial's.
        def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, T]: ...

        # At run time these are read from the function by __getattr__: declared here for
        # type checkers, which see no __getattr__ (so a misspelt member is an error).
        cache: SWRCache
        namespace: str
        __name__: str
        __qualname__: str

        @property
        def __wrapped__(self) -> Callable[P, Awaitable[T]]: ...

    else:

        def __getattr__(self, name: str) -> Any:
            # Reached only for names the object and its class lack; kept off the class,
            # where inspect would take a __wrapped__ or __signature__ for the class's own.
            if name == "__func__":  # not set yet: never read it here
                raise AttributeError(name)
            if name in ("cache", "namespace"):
                return getattr(self.__func__, name)
            if name == "__wrapped__":
                # What the engine calls: the function with the instance first.
                return MethodType(self.__func__.__wrapped__, self.__self__)
            # The function's attributes, as a bound method reads them from its function:
            # __name__, __qualname__, and those of the undecorated one (decorated() copies
            # them), e.g. __isabstractmethod__ or a framework's marks; not the engine's members.
            try:
                return self.__func__.__dict__[name]
            except KeyError:
                pass
            if not name.startswith("_") or name in _FUNCTION_ATTRIBUTES:
                # Then the undecorated function's own: __code__, __defaults__, __globals__...
                with contextlib.suppress(AttributeError):
                    return getattr(self.__func__.__wrapped__, name)
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {name!r}", name=name, obj=self
            )

    @property
    def __self__(self) -> object:
        """The instance the method is bound to."""
        return self.args[0]

    def __repr__(self) -> str:
        return f"<bound swr_cached method {self.__func__._name} of {self.__self__!r}>"

    if hasattr(functools.partial, "__get__"):  # Python 3.13+

        def __get__(self, instance: object, owner: type | None = None) -> BoundSWRFunction[P, T]:
            # Already bound: stored on a class and read through an instance, it stays as it
            # is, as before 3.13 (a partial warns there on 3.13, and binds from 3.14 on).
            return self

    def __reduce__(self) -> tuple[Any, ...]:
        # Copied or pickled as a bound method is: looked up again on the instance (a
        # partial's would lose __func__), under a name its class keeps it under.
        func, names = self.__func__, []
        for klass in type(self.__self__).__mro__:
            names += [name for name, value in vars(klass).items() if value is func]
        name = func.__name__ if func.__name__ in names or not names else names[0]
        return (getattr, (self.__self__, name))

    def __eq__(self, other: object) -> bool:
        # As a bound method: the same function bound to the same object (identity).
        if not isinstance(other, BoundSWRFunction):
            return NotImplemented
        return self.__self__ is other.__self__ and self.__func__ is other.__func__

    def __hash__(self) -> int:
        return hash((id(self.__self__), self.__func__))

    async def refresh(self, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self.__func__.refresh(self.__self__, *args, **kwargs)

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        await self.__func__.invalidate(self.__self__, *args, **kwargs)

    async def cache_clear(self) -> None:
        """Drop every entry of the function (of every instance)."""
        await self.__func__.cache_clear()

    def cache_info(self) -> CacheInfo:
        return self.__func__.cache_info()
