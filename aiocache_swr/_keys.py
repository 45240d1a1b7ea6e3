"""Cache keys: the in-memory key of a call, and its stable form for a store.

In memory, the key of ``f(*args, **kwargs)`` is ``args`` itself when there are
no keyword arguments (no allocation), else ``args`` followed by a marker and
the keyword items sorted by name, so keyword order never changes a key.  As with
``functools.lru_cache``, ``f(1)`` and ``f(x=1)`` are different keys.

A store needs keys that mean the same in every process, so :func:`stable_key`
spells a key out from its values (never from ``hash()``, which is randomized per
process for ``str``); it refuses objects whose only spelling is their identity.
Keys equal in memory are spelled alike, so that a call, ``invalidate`` and
``refresh`` with equal arguments reach one row: equal numbers of any type
(``1``, ``True``, ``1.0``, ``Decimal("1.00")``, ``Fraction(1)``, ``1+0j``), an
``IntEnum`` or ``StrEnum`` member and its value, and aware datetimes and times
that are the same instant in different zones.
"""

from __future__ import annotations

import enum
import hashlib
import math
import uuid
from collections.abc import Hashable
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from typing import Any, Final

__all__ = ["KW_MARK", "UnstableKeyError", "make_key", "stable_key"]


class _KwMark:
    """Separates positional from keyword items in a key."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<kw>"

    def __reduce__(self) -> str:
        return "KW_MARK"


KW_MARK: Final = _KwMark()

#: Stable keys longer than this are stored as a digest of their spelling.
MAX_STABLE_KEY = 200


def make_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
    """The default in-memory key of a call (see the module docstring)."""
    if not kwargs:
        return args
    if len(kwargs) == 1:  # nothing to sort: a third of the time
        return (*args, KW_MARK, *kwargs.items())
    return (*args, KW_MARK, *sorted(kwargs.items()))


class UnstableKeyError(TypeError):
    """A key holds an object that has no process-independent spelling."""


_SCALARS: Final = (str, bytes, date, timedelta, uuid.UUID)
_MAX_EXPONENT: Final = 4300  # sys.int_info's default limit of digits for str(int)
_NUMBERS: Final = (int, float, Decimal, Fraction, complex)  # and bool, an int


def _number(obj: int | float | Decimal | Fraction | complex) -> str:
    """One spelling for numbers that are equal (and hash alike) across types."""
    if isinstance(obj, complex):
        if obj.imag:
            return f"complex:{obj!r}"
        obj = obj.real
    if isinstance(obj, int):  # bool too
        return f"int:{int(obj)}"
    if isinstance(obj, float):
        if obj.is_integer():
            return f"int:{int(obj)}"
        finite = math.isfinite(obj)
        if finite:
            return f"float:{obj!r}"  # every float is a fraction a float spells exactly
    else:
        finite = not isinstance(obj, Decimal) or obj.is_finite()
        if finite and isinstance(obj, Decimal) and abs(obj.adjusted()) > _MAX_EXPONENT:
            # Its exact value would be an int or a fraction of thousands of digits
            # (slow to make): as for an int that long, there is no spelling.
            raise UnstableKeyError(f"{obj!r} is too large or too small to spell")
    if not finite:
        if obj != obj:  # a NaN equals nothing, itself included: kept as it is
            return f"{type(obj).__name__}:{obj!r}"
        return f"float:{float(obj)!r}"  # an infinity, of either type
    exact = Fraction(obj)
    if exact.denominator == 1:
        return f"int:{exact.numerator}"
    if Fraction(float(exact)) == exact:
        return f"float:{float(exact)!r}"
    return f"frac:{exact.numerator}/{exact.denominator}"


def _aware_time(obj: time) -> str | None:
    """An aware time as the moment it compares as: microseconds after 00:00 UTC
    (negative or past a day, as the offset takes it: ``time`` does not wrap)."""
    offset = obj.utcoffset()
    if offset is None:
        return None
    local = timedelta(
        hours=obj.hour, minutes=obj.minute, seconds=obj.second, microseconds=obj.microsecond
    )
    return f"time:utc{(local - offset) // timedelta(microseconds=1)}us"


def _spell(obj: object, out: list[str]) -> None:
    if obj is None or obj is KW_MARK:
        out.append(repr(obj))
    elif isinstance(obj, enum.Enum):
        if isinstance(obj, (*_NUMBERS, str, bytes)):  # IntEnum, StrEnum...: == its value
            _spell(obj.value, out)
        else:
            out.append(f"{type(obj).__module__}.{type(obj).__qualname__}.{obj.name}")
    elif type(obj) in _NUMBERS or type(obj) is bool:
        out.append(_number(obj))  # type: ignore[arg-type]
    elif type(obj) in _SCALARS:
        out.append(f"{type(obj).__name__}:{obj!r}")
    elif type(obj) is datetime or type(obj) is time:
        tz = obj.tzinfo
        if tz is not None and type(tz).__repr__ is object.__repr__:
            # Its repr is its address: another process would spell it differently.
            raise UnstableKeyError(
                f"{type(tz).__qualname__}, the tzinfo of a {type(obj).__name__}, has no "
                "stable spelling across processes: give it a __repr__ (datetime.timezone "
                "and zoneinfo.ZoneInfo have one)"
            )
        if type(obj) is datetime and obj.utcoffset() is not None:
            out.append(f"datetime:{obj.astimezone(timezone.utc)!r}")  # the same instant
        elif type(obj) is time and (aware := _aware_time(obj)) is not None:
            out.append(aware)
        else:
            out.append(f"{type(obj).__name__}:{obj!r}")
    elif type(obj) is tuple or type(obj) is list:
        out.append("(" if type(obj) is tuple else "[")
        for item in obj:
            _spell(item, out)
            out.append(",")
        out.append(")" if type(obj) is tuple else "]")
    elif type(obj) is frozenset or type(obj) is set:
        parts = []
        for item in obj:
            sub: list[str] = []
            _spell(item, sub)
            parts.append("".join(sub))
        out.append("{" + ",".join(sorted(parts)) + "}")
    else:
        raise UnstableKeyError(f"{type(obj).__qualname__} has no stable spelling across processes")


def stable_key(key: object) -> str:
    """Spell ``key`` the same way in every process; digest it when long.

    Supports None, bool, numbers, str, bytes, dates, UUIDs, enums and tuples,
    lists, sets and frozensets of those.  Anything else (or a key nested too
    deeply to spell) raises :class:`UnstableKeyError`: give the function a
    ``key=`` that returns such values.
    """
    if type(key) is tuple and len(key) == 1:  # one int or str argument: the common key
        # What _spell writes for it, in one step: a third of the time.
        item = key[0]
        spelled = None
        if type(item) is int:
            spelled = f"(int:{item!r},)"
        elif type(item) is str:
            spelled = f"(str:{item!r},)"
        if spelled is not None and len(spelled) <= MAX_STABLE_KEY:
            return spelled
    out: list[str] = []
    try:
        _spell(key, out)
    except RecursionError:
        raise UnstableKeyError("the key is nested too deeply to spell") from None
    spelled = "".join(out)
    if len(spelled) <= MAX_STABLE_KEY:
        return spelled
    return "sha256:" + hashlib.sha256(spelled.encode("utf-8", "surrogatepass")).hexdigest()
