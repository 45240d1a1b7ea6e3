"""Cache keys: the in-memory key of a call, and its stable form for a store.

In memory, the key of ``f(*args, **kwargs)`` is ``args`` itself when there are
no keyword arguments (no allocation), else ``args`` followed by a marker and
the keyword items sorted by name, so keyword order never changes a key.  As with
``functools.lru_cache``, ``f(1)`` and ``f(x=1)`` are different keys.

A store needs keys that mean the same in every process, so :func:`stable_key`
spells a key out from its values (never from ``hash()``, which is randomized per
process for ``str``, nor from ``repr()`` of a ``str``, which follows the Unicode
database of the running Python); it refuses objects whose only spelling is their
identity.  Keys equal in memory are spelled alike, so that a call, ``invalidate``
and ``refresh`` with equal arguments reach one row: equal numbers of any type
(``1``, ``True``, ``1.0``, ``Decimal("1.00")``, ``Fraction(1)``, ``1+0j``), an
enum member made of data (``IntEnum``, ``StrEnum``, a ``date`` mixin) and that
data, a named tuple (or any subclass of a spelled type that keeps its ``==`` and
hash) and the plain value, and aware datetimes and times of ``datetime.timezone``
or ``ZoneInfo`` zones that are the same instant, unless one is in a DST gap or
fold.  Never the other way round: unequal keys never share a spelling.  So a NaN
is refused (it equals nothing, so no other call could read its row), as is an
enum class that compares its members in its own way, or that cannot be found
again by its module and qualified name (made in a function, one of two made
under one name, or a module run with ``python -m`` and imported as well); a
``Flag`` member is spelled by its value.  A datetime in a DST gap or fold
compares equal to no other zone's, and by wall time within its zone object: in
a ``ZoneInfo`` it is spelled by wall time and key when the zone is the cached
object ``ZoneInfo(key)`` gives, and refused otherwise (``no_cache``,
``from_file``); in any other zone it is spelled as it is, with its instant (two
such zone objects sharing a repr, at one wall time in a gap, are the case left).
An enum class defined in a script run as ``python script.py`` is spelled under
``__main__``, as that process names it: another process that imports the script
spells it under the script's module name, another row.
"""

from __future__ import annotations

import enum
import hashlib
import math
import sys
import uuid
import zoneinfo
from collections.abc import Callable, Hashable
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
_NAN: Final = "a NaN equals nothing, itself included, so no other call can share its row"


def _number(obj: int | float | Decimal | Fraction | complex) -> str:
    """One spelling for numbers that are equal (and hash alike) across types."""
    if isinstance(obj, complex):
        if obj != obj:
            raise UnstableKeyError(_NAN)
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
        if obj != obj:
            raise UnstableKeyError(_NAN)
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
    cls = type(obj)
    if obj is None or obj is KW_MARK:
        out.append(repr(obj))
    elif cls in _NUMBERS or cls is bool:
        out.append(_number(obj))  # type: ignore[arg-type]
    elif cls in _SCALARS:
        out.append(f"{cls.__name__}:{obj!a}")  # ascii: the same under every Unicode version
    elif cls is datetime or cls is time:
        out.append(_clock_time(obj))  # type: ignore[arg-type]
    elif cls is tuple or cls is list:
        out.append("(" if cls is tuple else "[")
        for item in obj:  # type: ignore[attr-defined]
            _spell(item, out)
            out.append(",")
        out.append(")" if cls is tuple else "]")
    elif cls is frozenset or cls is set:
        parts = []
        for item in obj:  # type: ignore[attr-defined]
            sub: list[str] = []
            _spell(item, sub)
            parts.append("".join(sub))
        out.append("{" + ",".join(sorted(parts)) + "}")
    else:
        data = _as_data(obj)
        if data is not None:
            _spell(data, out)
        elif isinstance(obj, enum.Enum):
            out.append(_member(obj))
        else:
            raise UnstableKeyError(f"{cls.__qualname__} has no stable spelling across processes")


def _cached_zone(key: str) -> zoneinfo.ZoneInfo | None:
    try:
        return zoneinfo.ZoneInfo(key)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        return None


def _clock_time(obj: datetime | time) -> str:
    name, tz = type(obj).__name__, obj.tzinfo
    offset = None if tz is None else obj.utcoffset()
    if tz is None or (
        offset is None and (type(obj) is time or obj.replace(fold=1 - obj.fold).utcoffset() is None)
    ):
        # Naive, or compared as naive (no offset, in either fold): by the wall
        # time, fold ignored.
        return f"{name}:{obj.replace(tzinfo=None, fold=0)!r}"
    if type(tz) is timezone or (
        type(tz) is zoneinfo.ZoneInfo and obj.replace(fold=1 - obj.fold).utcoffset() == offset
    ):
        # A fixed offset, or a zone at a wall time that is in no DST gap or fold:
        # == exactly when the same instant.  Across zones, == compares instants
        # (and a value in a gap or fold is equal to no other zone's); within a
        # zone it compares wall times, and outside its gaps and folds a ZoneInfo
        # maps wall times to instants one to one.  (A time's ZoneInfo gives no
        # offset: compared as naive, above.)
        assert offset is not None
        if isinstance(obj, datetime):
            return f"{name}:{_instant(obj, offset)}"
        return f"{name}:{_moment(obj, offset)}"
    if type(tz) is zoneinfo.ZoneInfo:
        # In a DST gap or fold: == compares it by wall time (fold ignored) within its
        # zone object and to no other zone's.  The zone's cached object (the one
        # ZoneInfo(key) gives, in every process) is spelled by its key; another
        # object of the zone (no_cache, from_file) cannot be told apart in a spelling.
        if type(tz.key) is str and _cached_zone(tz.key) is tz:
            return f"{name}:{obj.replace(tzinfo=None, fold=0)!r}@zone:{tz.key!a}"
        raise UnstableKeyError(
            f"a {name} in a DST gap or fold of a ZoneInfo made by ZoneInfo.no_cache or "
            "from_file has no stable spelling: use ZoneInfo(key)"
        )
    if type(tz).__repr__ is object.__repr__ or (
        isinstance(tz, zoneinfo.ZoneInfo) and tz.key is None
    ):
        # Its repr holds an address: another process would spell it differently.
        raise UnstableKeyError(
            f"{type(tz).__qualname__}, the tzinfo of a {name}, has no stable "
            "spelling across processes (its repr holds an address): give it a "
            "__repr__ (datetime.timezone and a zoneinfo.ZoneInfo made from a key "
            "have one)"
        )
    # In a DST gap or fold, or any other zone (whose offset may ignore the fold):
    # == compares two values of one zone by their wall time, of two zones by
    # their instant, and one in a DST gap or fold to no other zone's.  Spelled
    # as it is (wall time, fold, zone), and with its instant when it has one:
    # two zones may share a repr.
    spelled = f"{name}:{obj!r}"
    if offset is not None:
        if isinstance(obj, datetime):
            spelled += f"@{_instant(obj, offset)}"
        else:
            spelled += f"@{_moment(obj, offset)}"
    return spelled


def _time(t: time) -> time:
    return time(t.hour, t.minute, t.second, t.microsecond, t.tzinfo, fold=t.fold)


_COMPLEX_REAL: Final[Any] = complex.__dict__["real"]
_COMPLEX_IMAG: Final[Any] = complex.__dict__["imag"]
_FRACTION_NUM: Final[Any] = Fraction.numerator.fget  # type: ignore[attr-defined]
_FRACTION_DEN: Final[Any] = Fraction.denominator.fget  # type: ignore[attr-defined]

#: Types spelled as their data when subclassed (a named tuple, an ``IntEnum``, a
#: ``date`` mixin enum), each with how to make an instance of exactly that type
#: from an instance of a subclass without calling methods a subclass may override.
_DATA: Final[dict[type, Callable[[Any], object]]] = {
    int: int.__int__,
    float: float.__float__,
    complex: lambda c: complex(_COMPLEX_REAL.__get__(c), _COMPLEX_IMAG.__get__(c)),
    Decimal: Decimal,
    Fraction: lambda f: Fraction(_FRACTION_NUM(f), _FRACTION_DEN(f)),
    str: str.__str__,
    bytes: lambda b: bytes.__getitem__(b, slice(None)),
    tuple: lambda t: tuple.__getitem__(t, slice(None)),
    frozenset: frozenset,
    # Rebuilt from the state they pickle (fold included), not from attributes.
    datetime: lambda d: datetime(*datetime.__reduce_ex__(d, 4)[1]),
    date: lambda d: date(*date.__reduce__(d)[1]),
    time: lambda t: time(*time.__reduce_ex__(t, 4)[1]),
    timedelta: lambda t: timedelta(*timedelta.__reduce__(t)[1]),
    uuid.UUID: lambda u: uuid.UUID(int=u.int),  # its == compares .int too
}


def _as_data(obj: object) -> object | None:
    """``obj`` as an instance of the spelled type it subclasses, when it compares and
    hashes as that type does (so is == to the data it is made of); else None."""
    cls = type(obj)
    for base in cls.__mro__[1:]:
        convert = _DATA.get(base)
        if convert is not None:
            eq: object = cls.__eq__
            if eq is base.__eq__ and cls.__hash__ is base.__hash__:  # type: ignore[comparison-overlap]
                data = convert(obj)
                return data if type(data) is base else None
            return None
    return None


def _member(obj: enum.Enum) -> str:
    """An enum member that is not its data: by its class's module and qualified name,
    and its own name (a ``Flag``'s: its value, as a ``Flag`` member may be named like
    a combination, "R|W"), when those find the class again (so in another process
    too) and the class compares and hashes its members as ``Enum`` does (by
    identity, and by name)."""
    cls = type(obj)
    eq: object = cls.__eq__
    if eq is not object.__eq__ or cls.__hash__ is not enum.Enum.__hash__:
        raise UnstableKeyError(
            f"enum {cls.__qualname__} compares its members in its own way: no stable spelling"
        )
    found: object = sys.modules.get(cls.__module__)
    for part in cls.__qualname__.split("."):
        found = getattr(found, part, None)
    if found is not cls:
        raise UnstableKeyError(
            f"enum {cls.__qualname__} is not found at {cls.__module__}.{cls.__qualname__} "
            "(made in a function, or two made under one name): it has no stable spelling"
        )
    module = cls.__module__
    if module == "__main__":  # run by ``python -m``: spelled as importing it spells it
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        if spec is not None and spec.name:
            if sys.modules.get(spec.name, sys.modules["__main__"]) is not sys.modules["__main__"]:
                # Imported as well: two copies of the class, whose members are unequal.
                raise UnstableKeyError(
                    f"enum {cls.__qualname__} of __main__ also exists as "
                    f"{spec.name}.{cls.__qualname__}: its members have no stable spelling"
                )
            module = spec.name
    if isinstance(obj, enum.Flag):
        value = obj._value_
        if type(value) is not int or cls._value2member_map_.get(value) is not obj:
            raise UnstableKeyError(
                f"{cls.__qualname__}({value!r}) is not the one member of its value"
            )
        return f"enum:{(module, cls.__qualname__, value)!a}"
    if cls._member_map_.get(obj._name_) is not obj:  # e.g. made by _missing_, unnamed
        raise UnstableKeyError(f"{cls.__qualname__}: {obj!r} is not a member by its name")
    return f"enum:{(module, cls.__qualname__, obj._name_)!a}"


def stable_key(key: object) -> str:
    """Spell ``key`` the same way in every process; digest it when long.

    Supports None, bool, numbers, str, bytes, dates, UUIDs, enums and tuples,
    lists, sets and frozensets of those, and subclasses of those types that keep
    their ``==`` and hash.  Anything else (or a key nested too
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
            spelled = f"(str:{item!a},)"
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
