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
``IntEnum`` or ``StrEnum`` member and the data it is made of, and datetimes and
times of fixed offsets (``datetime.timezone``) that are the same instant.  Never
the other way round: unequal keys never share a spelling.  Datetimes of any other
zone (``ZoneInfo``) are spelled as they are, with their instant, since ``==``
between them depends on the zones (wall time within one, instant across two,
never equal in a DST gap or fold): an equal one in another zone is another row.
(One case is left: two distinct zone objects with one repr, e.g. a
``ZoneInfo.no_cache`` beside the cached one, at one wall time in a DST gap.)
"""

from __future__ import annotations

import enum
import hashlib
import math
import uuid
import zoneinfo
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
_MAX_DIGITS: Final = 4300  # sys.int_info's default limit of digits for str(int)
_NUMBERS: Final = (int, float, Decimal, Fraction, complex)  # and bool, an int


def _number(obj: int | float | Decimal | Fraction | complex) -> str:
    """One spelling for numbers that are equal (and hash alike) across types."""
    if isinstance(obj, complex):
        if obj.imag:
            return f"complex:{complex(obj.real + 0.0, obj.imag + 0.0)!r}"  # -0.0 == 0.0
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
        if (
            isinstance(obj, Decimal)
            and finite
            and (abs(obj.adjusted()) > _MAX_DIGITS or len(obj.as_tuple().digits) > _MAX_DIGITS)
        ):
            # Its exact value would be an int or a fraction of thousands of digits
            # (slow to make): as for an int that long, there is no spelling.
            raise UnstableKeyError(f"a Decimal of {_MAX_DIGITS}+ digits has no spelling")
    if not finite:
        if obj != obj:  # a NaN equals nothing, itself included: kept as it is
            return f"{type(obj).__name__}:{obj!r}"
        return f"float:{float(obj)!r}"  # an infinity, of either type
    exact = Fraction(obj)
    if exact.denominator == 1:
        return f"int:{exact.numerator}"
    try:
        as_float = float(exact)
    except OverflowError:  # beyond any float: no float equals it
        as_float = math.inf
    if math.isfinite(as_float) and Fraction(as_float) == exact:
        return f"float:{as_float!r}"
    return f"frac:{exact.numerator}/{exact.denominator}"


def _instant(obj: datetime, offset: timedelta) -> str:
    """The instant an aware datetime compares as: microseconds since 0001-01-01
    00:00 UTC (never out of range, as ``astimezone`` can be near either end)."""
    since = obj.replace(tzinfo=None) - datetime.min - offset
    return f"utc{since // timedelta(microseconds=1)}us"


def _moment(obj: time, offset: timedelta) -> str:
    """The moment an aware time compares as: CPython's ``time.__eq__`` compares the
    seconds after 00:00 UTC (no wrapping past midnight), then the microseconds,
    leaving the offset's microseconds out; its hash keeps them, so they are spelled
    too (values equal but hashed apart are two keys in memory)."""
    seconds = obj.hour * 3600 + obj.minute * 60 + obj.second - offset.days * 86400 - offset.seconds
    return f"utc{seconds}s{obj.microsecond}us-{offset.microseconds}us"


def _spell(obj: object, out: list[str]) -> None:
    if obj is None or obj is KW_MARK:
        out.append(repr(obj))
    elif isinstance(obj, enum.Enum):
        # An int, float, str or bytes enum (IntEnum, StrEnum, a mixin) is == to the
        # data it is made of (not always its .value): spelled as that data.
        if isinstance(obj, int):
            _spell(int(obj), out)
        elif isinstance(obj, float):
            _spell(float(obj), out)
        elif isinstance(obj, str):
            _spell(str.__str__(obj), out)
        elif isinstance(obj, bytes):
            _spell(bytes(obj), out)
        else:
            out.append(f"{type(obj).__module__}.{type(obj).__qualname__}.{obj.name}")
    elif type(obj) in _NUMBERS or type(obj) is bool:
        out.append(_number(obj))  # type: ignore[arg-type]
    elif type(obj) in _SCALARS:
        out.append(f"{type(obj).__name__}:{obj!r}")
    elif type(obj) is datetime or type(obj) is time:
        name, tz = type(obj).__name__, obj.tzinfo
        offset = None if tz is None else obj.utcoffset()
        if tz is None or (
            offset is None
            and (type(obj) is time or obj.replace(fold=1 - obj.fold).utcoffset() is None)
        ):
            # Naive, or compared as naive (no offset, in either fold): by the wall
            # time, fold ignored.
            out.append(f"{name}:{obj.replace(tzinfo=None, fold=0)!r}")
        elif type(tz) is timezone:  # a fixed offset: == exactly when the same instant
            assert offset is not None
            if type(obj) is datetime:
                out.append(f"{name}:{_instant(obj, offset)}")
            else:
                out.append(f"{name}:{_moment(obj, offset)}")  # type: ignore[arg-type]
        elif type(tz).__repr__ is object.__repr__ or (
            isinstance(tz, zoneinfo.ZoneInfo) and tz.key is None
        ):
            # Its repr holds an address: another process would spell it differently.
            raise UnstableKeyError(
                f"{type(tz).__qualname__}, the tzinfo of a {name}, has no stable "
                "spelling across processes (its repr holds an address): give it a "
                "__repr__ (datetime.timezone and a zoneinfo.ZoneInfo made from a key "
                "have one)"
            )
        else:
            # Any other zone: == compares two values of one zone by their wall time,
            # of two zones by their instant, and one in a DST gap or fold to no
            # other zone's.  Spelled as it is (wall time, fold, zone), and with its
            # instant when it has one: two zones may share a repr.
            spelled = f"{name}:{obj!r}"
            if offset is not None:
                if type(obj) is datetime:
                    spelled += f"@{_instant(obj, offset)}"
                else:
                    spelled += f"@{_moment(obj, offset)}"  # type: ignore[arg-type]
            out.append(spelled)
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
