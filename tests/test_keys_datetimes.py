"""Stable keys of datetimes and times: unequal ones never share a spelling (one row
would answer for another), and equal ones share one where ``==`` allows it.

A property test over pools of values made to be near each other: the same wall time
in other zones, the same instant in other zones, the other fold, DST gaps and folds,
zones with a shared repr, zones whose offset varies, depends on the fold, or is
None, alone or nested in a tuple or a frozenset.
"""

from __future__ import annotations

import contextlib
import zoneinfo
from datetime import datetime, time, timedelta, timezone, tzinfo
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiocache_swr._keys import UnstableKeyError, stable_key


class Fixed(tzinfo):
    def __init__(self, minutes: int, name: str) -> None:
        self.minutes, self.name = minutes, name

    def utcoffset(self, dt):
        return timedelta(minutes=self.minutes)

    def dst(self, dt):
        return timedelta(0)

    def __repr__(self):
        return f"Fixed({self.name!r})"


class Varying(tzinfo):  # offset varies with date; None for times
    def __init__(self, name="V"):
        self.name = name

    def utcoffset(self, dt):
        if dt is None:
            return None
        return timedelta(hours=1 if 4 <= dt.month <= 9 else 0)

    def dst(self, dt):
        return timedelta(0)

    def __repr__(self):
        return f"Varying({self.name!r})"


class FoldDep(tzinfo):  # offset depends on fold at 01:xx
    def __init__(self, name="F"):
        self.name = name

    def utcoffset(self, dt):
        if dt is None:
            return timedelta(hours=-4)
        if dt.hour == 1:
            return timedelta(hours=-5 if dt.fold else -4)
        return timedelta(hours=-4)

    def dst(self, dt):
        return timedelta(0)

    def __repr__(self):
        return f"FoldDep({self.name!r})"


class NoneTZ(tzinfo):
    def utcoffset(self, dt):
        return None

    def dst(self, dt):
        return None

    def __repr__(self):
        return "NoneTZ()"


class PartialNone(tzinfo):  # None at even hours, +1h otherwise
    def utcoffset(self, dt):
        if dt is None or dt.hour % 2 == 0:
            return None
        return timedelta(hours=1)

    def dst(self, dt):
        return None

    def __repr__(self):
        return "PartialNone()"


KEYS = ["America/New_York", "Europe/London", "Australia/Lord_Howe", "UTC", "Asia/Kolkata"]

tzs = st.one_of(
    st.none(),
    st.builds(
        lambda m, s, us: timezone(timedelta(minutes=m, seconds=s, microseconds=us)),
        st.integers(-23 * 60, 23 * 60),
        st.sampled_from([0, 0, 30]),
        st.sampled_from([0, 0, 5]),
    ),
    st.just(timezone.utc),
    st.sampled_from(KEYS).map(zoneinfo.ZoneInfo),
    st.sampled_from(KEYS).map(zoneinfo.ZoneInfo.no_cache),
    st.timezones(),
    st.builds(Fixed, st.sampled_from([-300, -240, 0, 60, 120]), st.sampled_from(["A", "B"])),
    st.builds(Varying, st.just("V")),
    st.builds(FoldDep, st.just("F")),
    st.builds(NoneTZ),
    st.builds(PartialNone),
)

walls = st.one_of(
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1)),
    st.sampled_from(
        [
            datetime(2021, 11, 7, 1, 30),
            datetime(2021, 3, 14, 2, 30),
            datetime(2021, 3, 14, 3, 30),
            datetime(2021, 10, 31, 1, 30),
            datetime(2021, 3, 28, 1, 30),
            datetime(2024, 1, 1, 12),
            datetime(2024, 7, 1, 1, 15),
            datetime(2024, 4, 7, 1, 45),
        ]
    ),
)


@st.composite
def values(draw):
    """A pool of datetimes/times, with derived variants (other tz, same instant, fold)."""
    pool = []
    for _ in range(draw(st.integers(2, 6))):
        w = draw(walls).replace(fold=draw(st.integers(0, 1)))
        tz = draw(tzs)
        v = w.replace(tzinfo=tz)
        pool.append(v)
        # derived: same wall time other tz / other fold / same instant in other tz
        tz2 = draw(tzs)
        pool.append(w.replace(tzinfo=tz2))
        pool.append(v.replace(fold=1 - v.fold))
        off1, off2 = v.utcoffset(), w.replace(tzinfo=tz2).utcoffset()
        if off1 is not None and off2 is not None:
            with contextlib.suppress(OverflowError):
                pool.append((w - off1 + off2).replace(tzinfo=tz2))
        t = v.timetz()
        pool.append(t)
        pool.append(t.replace(tzinfo=tz2))
        to1, to2 = t.utcoffset(), t.replace(tzinfo=tz2).utcoffset()
        if to1 is not None and to2 is not None:
            shifted = datetime.combine(datetime(2000, 1, 2), t.replace(tzinfo=None)) - to1 + to2
            if shifted.date() == datetime(2000, 1, 2).date():
                pool.append(shifted.time().replace(tzinfo=tz2))
    return pool


def spell(v: Any) -> str | None:
    try:
        return stable_key(v)
    except (UnstableKeyError, OverflowError):
        return None


def _unequal(a: Any, b: Any) -> bool:
    return bool(a != b or hash(a) != hash(b))


def _known_limit(a: Any, b: Any) -> bool:
    """Left, and documented: two distinct zone objects with one repr, at one wall time,
    fold and offset (``ZoneInfo.no_cache`` beside the cached zone, in a gap or fold)."""
    return (
        type(a) is type(b)
        and a.tzinfo is not None
        and b.tzinfo is not None
        and a.tzinfo is not b.tzinfo
        and repr(a.tzinfo) == repr(b.tzinfo)
        and a.replace(tzinfo=None) == b.replace(tzinfo=None)
        and a.fold == b.fold
        and a.utcoffset() == b.utcoffset()
    )


def _wrap(kind: int, x: Any, naive: datetime) -> Any:
    if kind == 0:
        return (x,)
    if kind == 1:
        return ((x, naive),)
    return (frozenset({x, naive}),)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(values(), st.integers(0, 2))
def test_unequal_datetimes_and_times_never_share_a_spelling(pool: list[Any], kind: int) -> None:
    """Two keys unequal in memory get two spellings, so two rows."""
    naive = datetime(2024, 1, 1, 12)
    for i, a in enumerate(pool):
        for b in pool[i + 1 :]:
            ka, kb = _wrap(kind, a, naive), _wrap(kind, b, naive)
            sa, sb = spell(ka), spell(kb)
            if sa is None or sb is None:
                continue
            if _unequal(ka, kb) and not _known_limit(a, b):
                assert sa != sb, (a, b)


def _plain_zone(v: Any) -> bool:
    """Naive, a fixed offset, or a keyed ZoneInfo at a wall time in no DST gap or fold."""
    tz = v.tzinfo
    if tz is None or type(tz) is timezone:
        return True
    return (
        type(v) is datetime
        and type(tz) is zoneinfo.ZoneInfo
        and tz.key is not None
        and v.utcoffset() == v.replace(fold=1 - v.fold).utcoffset()
    )


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(values())
def test_equal_datetimes_of_plain_zones_share_a_spelling(pool: list[Any]) -> None:
    """Two keys equal in memory (== and one hash) are one row, for naive values, fixed
    offsets, and ZoneInfo values outside DST gaps and folds."""
    for i, a in enumerate(pool):
        for b in pool[i + 1 :]:
            if _unequal(a, b) or not (_plain_zone(a) and _plain_zone(b)):
                continue
            assert stable_key((a,)) == stable_key((b,)), (a, b)


def test_values_compared_as_naive_are_spelled_as_naive() -> None:
    """A time whose zone gives no offset, or a datetime whose zone gives none in either
    fold, is == to the naive value: one key, one row."""
    new_york = zoneinfo.ZoneInfo("America/New_York")
    assert time(9, tzinfo=new_york) == time(9)
    assert stable_key((time(9, tzinfo=new_york),)) == stable_key((time(9),))
    assert datetime(2024, 1, 1, 9, tzinfo=NoneTZ()) == datetime(2024, 1, 1, 9)
    assert stable_key((datetime(2024, 1, 1, 9, tzinfo=NoneTZ()),)) == stable_key(
        (datetime(2024, 1, 1, 9),)
    )


def test_an_offset_with_seconds_is_compared_as_time_compares_it() -> None:
    """time's == leaves an offset's microseconds out, and keeps its seconds."""
    a = time(12, 0, 0, 5, tzinfo=timezone(timedelta(hours=1, microseconds=5)))
    b = time(12, tzinfo=timezone(timedelta(hours=1)))
    assert a != b
    assert stable_key((a,)) != stable_key((b,))
    c = time(0, tzinfo=timezone(timedelta(seconds=60)))
    d = time(0, tzinfo=timezone(timedelta(seconds=90)))
    assert c != d
    assert stable_key((c,)) != stable_key((d,))


def test_the_ends_of_the_datetime_range_have_keys() -> None:
    """datetime.max in a zone ("never") has a key: its instant is not made with
    astimezone, which would run out of range."""
    for zone in (zoneinfo.ZoneInfo("America/New_York"), timezone(timedelta(hours=-5))):
        stable_key((datetime.max.replace(tzinfo=zone),))
        stable_key((datetime.min.replace(tzinfo=timezone(timedelta(hours=5))),))
