"""Bad input fails early, with a message naming the function (or parameter) and the fix."""

from __future__ import annotations

import copy
import enum
import hashlib
import math
import re
import zoneinfo
from datetime import datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiocache_swr import SWRCache, swr_cached
from aiocache_swr._function import engine_of
from aiocache_swr._keys import MAX_STABLE_KEY, UnstableKeyError, _spell, make_key, stable_key
from aiocache_swr.testing import FakeClock


def test_decorating_a_sync_function_is_a_type_error() -> None:
    """A plain def is refused at decoration, naming the function and asking for async def."""

    def not_async(x: int) -> int:
        return x

    with pytest.raises(TypeError, match=r"not_async is not a coroutine function.*async def"):
        swr_cached(ttl=1)(not_async)  # type: ignore[arg-type]


def test_an_object_with_async_call_is_accepted() -> None:
    """An instance whose class defines async __call__ can be decorated."""

    class Fetcher:
        async def __call__(self, x: int) -> int:
            return x

    swr_cached(ttl=1, cache=SWRCache())(Fetcher())


def test_bare_decorator_use_explains_the_parentheses() -> None:
    """@swr_cached without parentheses gets a clear message."""

    async def f() -> None:
        return None

    with pytest.raises(TypeError, match="parentheses"):
        swr_cached(f)  # type: ignore[arg-type]


def test_bare_decorator_use_over_a_sync_function_or_async_object_fails_at_once() -> None:
    """@swr_cached or @cache.cached without parentheses fails at decoration whatever
    it decorates: a plain function (saying it needs an async def too), or an object
    with an async __call__; the name is never silently bound to a decorator."""

    def fetch(x: int) -> int:
        return x

    class Fetcher:
        async def __call__(self, x: int) -> int:
            return x

    with pytest.raises(TypeError, match=r"fetch.*parentheses.*async def"):
        swr_cached(fetch)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="parentheses"):
        SWRCache().cached(Fetcher())  # type: ignore[arg-type]


def test_a_callable_ttl_fails_at_once_naming_it_and_a_callable_number_is_seconds() -> None:
    """A callable ttl= is reported when swr_cached(...) is called (it cannot be told
    from @swr_cached without parentheses), naming it; a number that happens to be
    callable is a number of seconds."""

    def compute_ttl() -> float:
        return 30.0

    class Seconds(float):
        def __call__(self) -> float:
            return float(self)

    with pytest.raises(TypeError, match=r"ttl= must be a number.*compute_ttl.*parentheses"):
        swr_cached(ttl=compute_ttl)  # type: ignore[arg-type]
    assert engine_of(swr_cached(ttl=Seconds(30), cache=SWRCache())(fetch_user))._ttl == 30.0


async def fetch_user(user_id: int) -> int:
    """A module-level coroutine function whose name the messages below must carry."""
    return user_id


# How the decorator names fetch_user in its messages: module.qualname.
FETCH_USER = re.escape(f"swr_cached: {__name__}.fetch_user: ")


def decorate_fetch_user(**params: Any) -> Any:
    """Apply swr_cached(**params) (on a cache of its own) to fetch_user."""
    return swr_cached(**params, cache=SWRCache())(fetch_user)


@pytest.mark.parametrize("param", ["ttl", "stale_ttl"])
@pytest.mark.parametrize("value", [-1, -0.001, math.nan])
def test_negative_or_nan_durations_are_value_errors(param: str, value: float) -> None:
    """ttl/stale_ttl below zero (or NaN) are refused at decoration, naming function and param."""
    with pytest.raises(ValueError, match=rf"^{FETCH_USER}{param}= must be >= 0"):
        decorate_fetch_user(**{param: value})


@pytest.mark.parametrize("param", ["ttl", "stale_ttl"])
@pytest.mark.parametrize("value", ["10", True, [1]])
def test_non_numeric_durations_are_type_errors(param: str, value: Any) -> None:
    """ttl/stale_ttl must be numbers (bool is refused); the message names the function."""
    with pytest.raises(TypeError, match=rf"^{FETCH_USER}{param}= must be a number"):
        decorate_fetch_user(**{param: value})


def test_infinite_ttl_means_none() -> None:
    """ttl=math.inf is accepted as 'no age limit'."""
    decorate_fetch_user(ttl=math.inf)


@pytest.mark.parametrize("value", [0, -5])
def test_maxsize_below_one_is_a_value_error(value: int) -> None:
    """maxsize < 1 is refused at decoration, naming the function."""
    with pytest.raises(ValueError, match=rf"^{FETCH_USER}maxsize= must be >= 1"):
        decorate_fetch_user(maxsize=value)


@pytest.mark.parametrize("value", [1.5, "10", None])
def test_non_int_maxsize_is_a_type_error(value: Any) -> None:
    """maxsize must be an int; the message names the function."""
    with pytest.raises(TypeError, match=rf"^{FETCH_USER}maxsize= must be an int"):
        decorate_fetch_user(maxsize=value)


@pytest.mark.parametrize("param", ["key", "tags"])
def test_non_callable_key_or_tags_are_type_errors(param: str) -> None:
    """key= and tags= must be callables; the message names the function."""
    with pytest.raises(TypeError, match=rf"^{FETCH_USER}{param}= must be a plain callable"):
        decorate_fetch_user(**{param: "user_id"})


@pytest.mark.parametrize("value", ["", 5])
def test_bad_namespace_is_a_type_error(value: Any) -> None:
    """namespace= must be a non-empty str; the message names the function."""
    with pytest.raises(TypeError, match=rf"^{FETCH_USER}namespace= must be a non-empty str"):
        decorate_fetch_user(namespace=value)


def test_a_namespace_sqlite_cannot_hold_is_a_value_error() -> None:
    """namespace= with a lone surrogate (what os.fsdecode makes of undecodable bytes)
    fails at decoration, naming the function and the fix, rather than every write batch
    it joins."""
    with pytest.raises(ValueError, match=rf"^{FETCH_USER}namespace= .* encodes to UTF-8"):
        decorate_fetch_user(namespace="files:\udcff")


def test_bad_store_is_a_type_error() -> None:
    """store= takes a path, a store, or None; the message names the function."""
    with pytest.raises(TypeError, match=rf"^{FETCH_USER}store= must be a path"):
        decorate_fetch_user(store=42)


@pytest.mark.parametrize(
    ("value", "error"),
    [(0, ValueError), (-1, ValueError), (2.5, TypeError), (True, TypeError), (None, TypeError)],
)
def test_bad_max_concurrent_refreshes(value: Any, error: type[Exception]) -> None:
    """SWRCache(max_concurrent_refreshes=) is an int (TypeError otherwise, bool too) >= 1."""
    with pytest.raises(error, match="max_concurrent_refreshes= must be an int >= 1"):
        SWRCache(max_concurrent_refreshes=value)


def test_bad_clock() -> None:
    """SWRCache(clock=) must be callable."""
    with pytest.raises(TypeError, match="clock="):
        SWRCache(clock=5)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_tags_returning_a_non_str_is_a_type_error() -> None:
    """tags= returning something other than str values fails the call, naming tags=."""
    cache = SWRCache(clock=FakeClock())

    @cache.cached(tags=lambda x: [x])
    async def f(x: int) -> int:
        return x

    async with cache:
        with pytest.raises(TypeError, match=r"f: tags= must return an iterable of str"):
            await f(1)


@pytest.mark.anyio
async def test_invalidate_tags_takes_str() -> None:
    """invalidate_tags refuses non-str tags."""
    with pytest.raises(TypeError, match="tags must be str"):
        await SWRCache().invalidate_tags(1)  # type: ignore[arg-type]


def test_fake_clock_moves_only_forward() -> None:
    """FakeClock starts where told, advances by hand, and refuses to go back."""
    clock = FakeClock(start=5.0)
    clock.advance(2.5)
    assert clock() == 7.5
    with pytest.raises(ValueError, match="advance"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="start"):
        FakeClock(start=math.inf)


# -- keys ------------------------------------------------------------------------


def test_default_key_ignores_keyword_order() -> None:
    """Keyword order never changes the in-memory key."""
    assert make_key((1,), {"a": 1, "b": 2}) == make_key((1,), {"b": 2, "a": 1})


def test_default_key_keeps_positional_and_keyword_apart() -> None:
    """f(1) and f(x=1) are different keys (as in functools.lru_cache)."""
    assert make_key((1,), {}) != make_key((), {"x": 1})


def test_stable_key_spells_values_not_hashes() -> None:
    """A stable key is the same text for equal values and tells types apart."""
    assert stable_key((1, "a", None)) == stable_key((1, "a", None))
    assert stable_key((1,)) != stable_key(("1",))
    assert stable_key((frozenset({"b", "a"}),)) == stable_key((frozenset({"a", "b"}),))
    assert stable_key(make_key((), {"b": 2, "a": 1})) == stable_key(make_key((), {"a": 1, "b": 2}))


@given(st.one_of(st.integers(), st.text(), st.booleans()))
def test_one_argument_keys_are_spelled_like_any_other(item: object) -> None:
    """The fast path for a one-int or one-str key spells it exactly as the general speller."""
    out: list[str] = []
    _spell((item,), out)
    spelled = "".join(out)
    if len(spelled) > MAX_STABLE_KEY:
        spelled = "sha256:" + hashlib.sha256(spelled.encode("utf-8", "surrogatepass")).hexdigest()
    assert stable_key((item,)) == spelled


_NUMBERS = st.one_of(
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False),
    st.decimals(allow_nan=False, places=None),
    st.fractions(),
    st.floats(allow_nan=False, allow_infinity=False).map(complex),
    st.sampled_from([0.1, 0.5, -0.0, 3, Decimal("0.10"), Fraction(1, 10), Fraction(1, 2)]),
)


@given(_NUMBERS, _NUMBERS)
def test_numbers_equal_in_memory_are_spelled_alike_and_only_they(a: Any, b: Any) -> None:
    """Numbers that are one key in memory (equal, so hashed alike) are one row in a
    store, whatever their types (1, True, 1.0, Decimal("1.00")...): a call and an
    invalidate() with equal arguments reach the same row. Unequal ones never share."""
    assert (stable_key((a,)) == stable_key((b,))) == (a == b)


_OFFSETS = st.integers(min_value=-23 * 60, max_value=23 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


@given(st.datetimes(timezones=_OFFSETS), _OFFSETS)
def test_datetimes_of_fixed_offsets_and_one_instant_are_spelled_alike(
    moment: datetime, offset: timezone
) -> None:
    """The same instant seen from two fixed offsets is one key in memory, and one row."""
    other = moment.astimezone(offset)
    assert other == moment
    assert stable_key((other,)) == stable_key((moment,))
    assert stable_key((other + timedelta(microseconds=1),)) != stable_key((moment,))


@given(
    st.datetimes(timezones=st.one_of(st.timezones(), _OFFSETS, st.none())),
    st.sampled_from(["fold", "hour", "zone", "naive"]),
    st.timezones(),
)
def test_datetimes_spelled_alike_are_equal(moment: datetime, change: str, zone: Any) -> None:
    """Never the other way round: two datetimes that share a spelling are equal, in a
    DST gap or fold too (02:30 and 03:30 of a spring-forward day are unequal)."""
    if change == "fold":
        other = moment.replace(fold=1 - moment.fold)
    elif change == "hour":
        other = moment + timedelta(hours=1)
    elif change == "zone":
        other = moment.astimezone(zone) if moment.tzinfo is not None else moment
    else:
        other = moment.replace(tzinfo=None)
    if stable_key((other,)) == stable_key((moment,)):
        assert other == moment


class _SameReprOffset(tzinfo):
    """A fixed offset whose repr does not tell its offset."""

    def __init__(self, hours: int) -> None:
        self.hours = hours

    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(hours=self.hours)

    def __repr__(self) -> str:
        return "SameReprOffset()"


def test_zones_that_share_a_repr_are_told_apart_by_the_instant() -> None:
    """Two zones with one repr and different offsets: the same wall time in each is
    two instants, unequal, so two keys and two rows."""
    a = datetime(2024, 1, 1, 12, tzinfo=_SameReprOffset(1))
    b = datetime(2024, 1, 1, 12, tzinfo=_SameReprOffset(2))
    assert a != b
    assert stable_key((a,)) != stable_key((b,))
    assert stable_key((time(12, tzinfo=_SameReprOffset(1)),)) != stable_key(
        (time(12, tzinfo=_SameReprOffset(2)),)
    )


def _zone_from_file(key: str) -> zoneinfo.ZoneInfo:
    found = [Path(root, key) for root in zoneinfo.TZPATH if Path(root, key).is_file()]
    if not found:
        pytest.skip("no system time zone files")
    with found[0].open("rb") as f:
        return zoneinfo.ZoneInfo.from_file(f)


def test_a_zone_read_from_a_file_is_spelled_by_the_instant_outside_gaps_and_folds() -> None:
    """A ZoneInfo made from a file (no key) has an address in its repr. At a wall time in
    no DST gap or fold its datetimes are spelled by their instant (equal to that instant
    in any zone); in a gap or fold, where the repr would be needed, they are refused."""
    new_york = _zone_from_file("America/New_York")
    winter = datetime(2024, 1, 1, 12, tzinfo=new_york)
    assert stable_key((winter,)) == stable_key((winter.astimezone(timezone.utc),))
    with pytest.raises(UnstableKeyError, match="no stable spelling"):
        stable_key((datetime(2021, 11, 7, 1, 30, tzinfo=new_york),))  # in the fall-back fold


def test_zoneinfo_and_fixed_offsets_of_one_instant_are_one_row() -> None:
    """datetime(12:00, ZoneInfo("UTC")) == datetime(12:00, timezone.utc), hashed alike:
    one key in memory, so one row (an invalidate() with either reaches it)."""
    pairs = (
        (
            datetime(2024, 1, 1, 12, tzinfo=zoneinfo.ZoneInfo("UTC")),
            datetime(2024, 1, 1, 12, tzinfo=timezone.utc),
        ),
        (
            datetime(2024, 7, 1, 14, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")),
            datetime(2024, 7, 1, 12, tzinfo=timezone.utc),
        ),
        (
            datetime(2024, 7, 1, 14, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")),
            datetime(2024, 7, 1, 8, tzinfo=zoneinfo.ZoneInfo("America/New_York")),
        ),
    )
    for a, b in pairs:
        assert a == b
        assert hash(a) == hash(b)
        assert stable_key((a,)) == stable_key((b,))


def test_dst_gap_times_are_not_one_row() -> None:
    """02:30 (which does not exist) and 03:30 of 2021-03-14 in New York are unequal,
    though both are 07:30 UTC: two keys, two rows."""
    new_york = zoneinfo.ZoneInfo("America/New_York")
    gap, after = (
        datetime(2021, 3, 14, 2, 30, tzinfo=new_york),
        datetime(2021, 3, 14, 3, 30, tzinfo=new_york),
    )
    assert gap != after
    assert stable_key((gap,)) != stable_key((after,))


def test_equal_values_of_more_shapes_are_spelled_alike() -> None:
    """Complex numbers with a signed zero, an int enum made with its own value and the
    int it is, a naive datetime of either fold."""

    class Status(int, enum.Enum):
        def __new__(cls, code: int, label: str) -> Status:
            member = int.__new__(cls, code)
            member._value_ = label
            return member

        OK = (200, "ok")

    for a, b in (
        (complex(-0.0, 1.0), complex(0.0, 1.0)),
        (datetime(2021, 11, 7, 1, 30), datetime(2021, 11, 7, 1, 30, fold=1)),
        (Status.OK, 200),
    ):
        assert a == b
        assert stable_key((a,)) == stable_key((b,))
    assert stable_key((Status.OK,)) != stable_key(("ok",))


@pytest.mark.parametrize("text", ["1e999999", "-1e-999999", "0." + "7" * 100_000])
def test_a_decimal_of_too_many_digits_is_refused(text: str) -> None:
    """A Decimal whose exact value would take thousands of digits has no stable key
    (memory only), like an int that long: it is refused before that value is made."""
    with pytest.raises(UnstableKeyError, match="digits has no spelling"):
        stable_key((Decimal(text),))


def test_a_fraction_beyond_any_float_is_spelled() -> None:
    """A fraction too large for a float is still spelled (as a fraction)."""
    assert stable_key((Fraction(2 * 10**400 + 1, 2),)).startswith("sha256:")


class _Plain(enum.Enum):
    ONE = 1


def test_enum_members_equal_to_their_values_are_spelled_as_them() -> None:
    """An IntEnum or str-mixin Enum member equals its value (one memory key): one row.
    A plain Enum member is spelled by its class's module and name, and its own name."""

    class Level(enum.IntEnum):
        HIGH = 3

    class Color(str, enum.Enum):
        RED = "red"

    assert stable_key((Level.HIGH,)) == stable_key((3,))
    assert stable_key((Color.RED,)) == stable_key(("red",))
    assert stable_key((_Plain.ONE,)) != stable_key((1,))
    assert "'_Plain', 'ONE'" in stable_key((_Plain.ONE,))


def test_long_stable_keys_are_digested() -> None:
    """Very long keys are stored as a sha256 digest of their spelling."""
    long_a, long_b = stable_key(("x" * 1000,)), stable_key(("x" * 999 + "y",))
    assert long_a.startswith("sha256:")
    assert long_a != long_b


def test_objects_without_a_stable_spelling_are_refused() -> None:
    """An object whose only spelling is its identity has no stable key."""
    with pytest.raises(UnstableKeyError):
        stable_key((object(),))


class _BareTz(tzinfo):
    """A tzinfo without a __repr__: its default repr is its address."""

    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(hours=1)


def test_a_datetime_whose_tzinfo_is_spelled_by_its_address_is_refused() -> None:
    """A datetime or time with a tzinfo of the default repr has no stable key."""
    for value in (datetime(2024, 1, 1, 12, tzinfo=_BareTz()), time(12, tzinfo=_BareTz())):
        with pytest.raises(UnstableKeyError, match="_BareTz, the tzinfo of a"):
            stable_key((value,))


def test_datetimes_with_standard_tzinfos_have_stable_keys() -> None:
    """Naive datetimes and times, and those on datetime.timezone, are spelled the same."""
    naive = datetime(2024, 1, 1, 12)
    for value in (
        naive,
        time(12),
        naive.replace(tzinfo=timezone.utc),
        naive.replace(tzinfo=timezone(timedelta(hours=1))),
        time(12, tzinfo=timezone(timedelta(hours=-5))),
    ):
        assert stable_key((value,)) == stable_key((copy.deepcopy(value),))
