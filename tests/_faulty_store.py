"""A level-2 store that misbehaves on demand, for the fault-injection suite.

:class:`FaultyStore` wraps any :class:`~aiocache_swr._store.Store` (a
``MemoryStore`` or a ``SQLiteStore``) and implements the same protocol.  Before
each operation it picks a :class:`Fault`, from (in this order):

1. the operation's *plan*: faults queued with :meth:`FaultyStore.plan`, used
   once each, in order;
2. the operation's *standing* fault, set with :meth:`FaultyStore.always`;
3. the seeded random schedule (``FaultyStore(inner, seed=..., rate=...)``):
   with probability ``rate`` one of the ``choices`` for that operation, drawn
   from a ``random.Random(seed)``, so the same calls get the same faults;
4. otherwise :data:`OK`: the call goes straight to the wrapped store.

Fault kinds:

``ok``
    pass the call through.
``raise``
    raise a new exception from the fault's factory (``OSError``, a ``sqlite3``
    error...), without touching the wrapped store.
``hang``
    block until the test calls :meth:`FaultyStore.release` (or until ``limit``
    seconds of anyio time have passed -- virtual under trio's MockClock -- which
    ``gave_up`` counts), then act as the fault's ``then`` (``ok`` by default).
    ``hang(after=True)`` (get_many only) reads first and holds the answer back.
    ``put`` is synchronous and cannot hang.
``garbage``
    ``get_many``: return what no store should ("wrong_type": a str per key;
    "bytes": raw bytes per key; "bad_record": a Record whose ``created`` is a
    str; "not_mapping": a list).  ``put``: hand the wrapped store a record
    whose value serializes but cannot be deserialized (:class:`Undecodable`),
    as bit rot would.  Other operations: do the work, return a junk value.

Every exception that leaves the store (injected, or raised by the wrapped
store) is kept in ``raised[op]``, so a test can check that each one was
counted and logged by the cache.  ``calls`` records ``(op, outcome)`` in call
order.
"""

from __future__ import annotations

import errno
import random
import sqlite3
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import anyio

from aiocache_swr._store import Record, Store

__all__ = [
    "GARBAGE_READS",
    "OK",
    "OPS",
    "Fault",
    "FaultyStore",
    "Undecodable",
    "garbage",
    "hang",
    "raises",
]

#: Every operation of the Store protocol.
OPS = ("get_many", "put", "flush", "delete", "clear", "delete_tags", "aclose")

#: The forms of garbage ``get_many`` can return.
GARBAGE_READS = ("wrong_type", "bytes", "bad_record", "not_mapping")


def _explode() -> None:
    raise ValueError("undecodable: this stored value was damaged (bit rot)")


class Undecodable:
    """Pickles fine; unpickling it raises, like a damaged row."""

    def __reduce__(self) -> tuple[Callable[[], None], tuple[()]]:
        return _explode, ()


@dataclass(frozen=True)
class Fault:
    """What one store operation does (see the module docstring)."""

    kind: str = "ok"  # ok | raise | hang | garbage
    exc: Callable[[], BaseException] | None = None
    form: str = "wrong_type"  # garbage: what get_many returns
    then: Fault | None = None  # hang: what happens once released
    limit: float | None = None  # hang: seconds (anyio time) before giving up on a release
    after: bool = False  # hang: do the work first, then hang before answering

    def __post_init__(self) -> None:
        if self.kind not in ("ok", "raise", "hang", "garbage"):
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if self.kind == "raise" and self.exc is None:
            raise ValueError("a raise fault needs an exception factory")
        if self.kind == "garbage" and self.form not in GARBAGE_READS:
            raise ValueError(f"unknown garbage form {self.form!r}")
        if self.after and (self.kind != "hang" or self.then is not None):
            raise ValueError("after=True is for a plain hang (the work is already done)")

    def __repr__(self) -> str:
        if self.kind == "raise":
            assert self.exc is not None
            return f"raises({type(self.exc()).__name__})"
        if self.kind == "hang":
            after = ", after=True" if self.after else ""
            return f"hang(then={self.then!r}{after})" if self.then else f"hang({after[2:]})"
        if self.kind == "garbage":
            return f"garbage({self.form!r})"
        return "OK"


OK = Fault()


def raises(exc: Callable[[], BaseException] | type[BaseException] | None = None) -> Fault:
    """A fault raising a new exception per call (default: ``OSError(EIO)``)."""
    if exc is None:
        return Fault("raise", exc=lambda: OSError(errno.EIO, "injected I/O error"))
    return Fault("raise", exc=exc)


def hang(then: Fault | None = None, *, limit: float | None = None, after: bool = False) -> Fault:
    """A fault blocking until released; then ``then`` (default: pass through).

    ``after=True``: the wrapped store does the work first and the answer is held
    back (a slow store answering with what it read before something changed).
    """
    return Fault("hang", then=then, limit=limit, after=after)


def garbage(form: str = "wrong_type") -> Fault:
    return Fault("garbage", form=form)


#: Exceptions a real store raises, for the random schedule and the matrix.
STORE_EXCEPTIONS: tuple[Callable[[], BaseException], ...] = (
    lambda: OSError(errno.EIO, "injected I/O error"),
    lambda: PermissionError(errno.EACCES, "injected: permission denied"),
    lambda: sqlite3.OperationalError("injected: disk I/O error"),
    lambda: sqlite3.OperationalError("injected: database or disk is full"),
    lambda: sqlite3.DatabaseError("injected: database disk image is malformed"),
    lambda: TimeoutError("injected: the store did not answer"),
)


def default_choices(kinds: Collection[str]) -> dict[str, list[Fault]]:
    """Faults the random schedule draws from, per operation, limited to ``kinds``."""
    choices: dict[str, list[Fault]] = {}
    for op in OPS:
        faults: list[Fault] = []
        if "raise" in kinds:
            faults += [raises(exc) for exc in STORE_EXCEPTIONS]
        if "hang" in kinds and op != "put":
            faults += [hang(), hang(then=raises())]
        if "garbage" in kinds:
            if op == "get_many":
                faults += [garbage(form) for form in GARBAGE_READS]
            else:
                faults.append(garbage())
        if "undecodable" in kinds and op == "put":
            faults.append(garbage())
        choices[op] = faults
    return choices


class FaultyStore:
    """A :class:`Store` wrapping ``inner`` that fails on a schedule (see the module doc)."""

    def __init__(
        self,
        inner: Store,
        *,
        seed: int | None = None,
        rate: float = 0.0,
        choices: dict[str, Sequence[Fault]] | None = None,
        quiet_after_failed_flush: bool = True,
    ) -> None:
        self.inner = inner
        self._plans: dict[str, deque[Fault]] = defaultdict(deque)
        self._always: dict[str, Fault] = {}
        self._rng = random.Random(seed) if seed is not None else None
        self.rate = rate
        self.choices: dict[str, Sequence[Fault]] = (
            choices if choices is not None else default_choices(("raise",))
        )
        self.calls: list[tuple[str, str]] = []
        self.raised: dict[str, list[BaseException]] = defaultdict(list)
        self.garbage_returned: Counter[str] = Counter()
        self.hanging = 0
        self.hung: Counter[str] = Counter()
        self.gave_up: Counter[str] = Counter()  # hangs that ended at their limit
        self._gate: anyio.Event | None = None
        self._hung_event: anyio.Event | None = None
        # Like SQLiteStore: after a failed flush, report nothing pending until
        # something new is buffered (the engine reflushes while ``pending``).
        self.quiet_after_failed_flush = quiet_after_failed_flush
        self._quiet = False

    def __repr__(self) -> str:
        return f"FaultyStore({self.inner!r})"

    # -- the schedule ----------------------------------------------------------

    def plan(self, op: str, *faults: Fault) -> None:
        """The next calls of ``op`` get ``faults``, one each, in order."""
        self._check_op(op, faults)
        self._plans[op].extend(faults)

    def always(self, ops: str | Iterable[str], fault: Fault) -> None:
        """Every later call of ``ops`` gets ``fault`` (once its plan is used up)."""
        for op in [ops] if isinstance(ops, str) else list(ops):
            self._check_op(op, (fault,))
            if fault.kind == "ok":
                self._always.pop(op, None)
            else:
                self._always[op] = fault

    def heal(self) -> None:
        """No more faults: plans, standing faults and the random schedule are dropped."""
        self._plans.clear()
        self._always.clear()
        self.rate = 0.0

    def release(self) -> None:
        """Let every operation hanging now go on (later hangs wait for a new release)."""
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.set()

    async def wait_hanging(self, n: int = 1) -> None:
        """Return once at least ``n`` operations are hanging."""
        while self.hanging < n:
            if self._hung_event is None:
                self._hung_event = anyio.Event()
            await self._hung_event.wait()

    def errors(self, *ops: str) -> list[BaseException]:
        """Exceptions that left the store from ``ops`` (every operation if none given)."""
        return [exc for op in ops or OPS for exc in self.raised.get(op, [])]

    def _check_op(self, op: str, faults: Iterable[Fault]) -> None:
        if op not in OPS:
            raise ValueError(f"unknown store operation {op!r}; one of {OPS}")
        for fault in faults:
            if op == "put" and fault.kind == "hang":
                raise ValueError("put is synchronous: it can raise or store garbage, not hang")
            if fault.after and op != "get_many":
                raise ValueError("hang(after=True) is implemented for get_many only")

    def _next(self, op: str) -> Fault:
        plan = self._plans.get(op)
        if plan:
            return plan.popleft()
        fault = self._always.get(op)
        if fault is not None:
            return fault
        rng = self._rng
        if rng is not None and self.rate > 0:
            options = self.choices.get(op, ())
            # Draw twice per call whatever happens, so one op's outcome does not
            # shift every later draw when the rate or the choices change.
            roll, pick = rng.random(), rng.random()
            if options and roll < self.rate:
                return options[int(pick * len(options))]
        return OK

    # -- running an operation --------------------------------------------------

    async def _prelude(self, op: str, fault: Fault | None = None) -> Fault:
        """Apply the hang part of this call's fault; return what to do next."""
        if fault is None:
            fault = self._next(op)
        while fault.kind == "hang":
            self.hung[op] += 1
            self.calls.append((op, "hang"))
            if self._gate is None:
                self._gate = anyio.Event()
            gate = self._gate
            self.hanging += 1
            if self._hung_event is not None:
                self._hung_event.set()
                self._hung_event = None
            try:
                if fault.limit is None:
                    await gate.wait()
                else:
                    with anyio.move_on_after(fault.limit) as scope:
                        await gate.wait()
                    if scope.cancelled_caught:
                        self.gave_up[op] += 1
            except BaseException:
                self.calls.append((op, "cancelled"))
                raise
            finally:
                self.hanging -= 1
            fault = fault.then or OK
        if fault.kind == "raise":
            assert fault.exc is not None
            exc = fault.exc()
            self.calls.append((op, f"raise {type(exc).__name__}"))
            self.raised[op].append(exc)
            raise exc
        self.calls.append((op, fault.kind))
        return fault

    async def _through(self, op: str, call: Callable[[], Any]) -> Any:
        """Await ``call()`` on the wrapped store, keeping any exception it raises."""
        try:
            return await call()
        except Exception as exc:
            self.raised[op].append(exc)
            self.calls.append((op, f"inner raised {type(exc).__name__}"))
            raise

    # -- the Store protocol ----------------------------------------------------

    async def get_many(self, namespace: str, keys: Collection[str]) -> Any:
        fault = self._next("get_many")
        if fault.after:
            found = await self._through("get_many", lambda: self.inner.get_many(namespace, keys))
            await self._prelude("get_many", fault)
            return found
        fault = await self._prelude("get_many", fault)
        if fault.kind == "garbage":
            self.garbage_returned["get_many"] += 1
            if fault.form == "not_mapping":
                return [b"\x80\x04garbage"]
            if fault.form == "bytes":
                return {key: b"\x80\x04\x95garbage\x00" for key in keys}
            if fault.form == "bad_record":
                return {
                    key: Record(value="garbage", version=None, created="yesterday")  # type: ignore[arg-type]
                    for key in keys
                }
            return {key: "garbage" for key in keys}
        return await self._through("get_many", lambda: self.inner.get_many(namespace, keys))

    def put(self, namespace: str, key: str, record: Record) -> None:
        fault = self._next("put")
        self._check_op("put", (fault,))
        if fault.kind == "raise":
            assert fault.exc is not None
            exc = fault.exc()
            self.calls.append(("put", f"raise {type(exc).__name__}"))
            self.raised["put"].append(exc)
            raise exc
        self.calls.append(("put", fault.kind))
        if fault.kind == "garbage":
            self.garbage_returned["put"] += 1
            record = replace(record, value=Undecodable())
        try:
            self.inner.put(namespace, key, record)
        except Exception as exc:
            self.raised["put"].append(exc)
            raise
        self._quiet = False

    @property
    def pending(self) -> bool:
        return False if self._quiet else self.inner.pending

    async def flush(self) -> Any:
        try:
            fault = await self._prelude("flush")
            await self._through("flush", self.inner.flush)
        except Exception:
            self._quiet = self.quiet_after_failed_flush
            raise
        return self._junk(fault, "flush")

    async def delete(self, namespace: str, keys: Collection[str]) -> Any:
        fault = await self._prelude("delete")
        self._quiet = False
        await self._through("delete", lambda: self.inner.delete(namespace, keys))
        return self._junk(fault, "delete")

    async def clear(self, namespace: str) -> Any:
        fault = await self._prelude("clear")
        self._quiet = False
        await self._through("clear", lambda: self.inner.clear(namespace))
        return self._junk(fault, "clear")

    async def delete_tags(self, tags: Iterable[str]) -> Any:
        fault = await self._prelude("delete_tags")
        self._quiet = False
        tags = list(tags)
        await self._through("delete_tags", lambda: self.inner.delete_tags(tags))
        return self._junk(fault, "delete_tags")

    async def aclose(self) -> Any:
        fault = await self._prelude("aclose")
        await self._through("aclose", self.inner.aclose)
        return self._junk(fault, "aclose")

    def _junk(self, fault: Fault, op: str) -> Any:
        if fault.kind == "garbage":
            self.garbage_returned[op] += 1
            return b"\x00junk"
        return None
