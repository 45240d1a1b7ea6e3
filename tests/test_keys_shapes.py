"""Stable keys of enums, NaNs, subclasses and strings: a key equal in memory to
another is spelled alike (a call, ``invalidate`` and ``refresh`` reach one row), an
unequal one never is (one row never answers for another call), and the spelling is
the same in every process.
"""

from __future__ import annotations

import enum
import math
import os
import subprocess
import sys
import zoneinfo
from collections import namedtuple
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from aiocache_swr._keys import UnstableKeyError, stable_key


class Color(enum.Enum):
    RED = 1
    BLUE = 2


Forged = enum.Enum("Forged", [("a", 1), ("a,int:1", 2)])


class Holiday(date, enum.Enum):
    NEW_YEAR = (2024, 1, 1)


class Span(timedelta, enum.Enum):
    DAY = (1,)


class Rate(Decimal, enum.Enum):
    HALF = "0.5"


class Pair(tuple[int, int], enum.Enum):  # type: ignore[misc]
    ORIGIN = (0, 0)


class Point(NamedTuple):
    x: int
    y: int


class Name(str):
    """A str subclass that compares and hashes as a str."""


class Loud(str):
    """A str subclass with an == of its own: not its data."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and str.lower(self) == str.lower(other)

    def __hash__(self) -> int:
        return hash(str.lower(self))


class Identity(int, enum.Enum):
    """An int enum whose members equal only themselves."""

    ONE = 1

    def __eq__(self, other: object) -> bool:
        return self is other

    def __ne__(self, other: object) -> bool:
        return self is not other

    __hash__ = enum.Enum.__hash__


def test_plain_enum_members_are_spelled_by_class_and_name() -> None:
    """A plain Enum member is its class's module and qualified name and its own name."""
    assert stable_key((Color.RED,)) == stable_key((Color.RED,))
    assert stable_key((Color.RED,)) != stable_key((Color.BLUE,))
    assert stable_key((Color.RED,)) != stable_key((1,))


def test_an_enum_member_name_cannot_forge_other_items() -> None:
    """A member named "a,int:1" is not spelled as the member "a" followed by 1."""
    assert (Forged.a, 1) != (Forged["a,int:1"],)
    assert stable_key((Forged.a, 1)) != stable_key((Forged["a,int:1"],))


def test_enum_classes_not_found_by_their_names_are_refused() -> None:
    """Two classes made under one name (the functional API, a reload, a factory) would
    share a spelling though their members are unequal: a class not found at its
    module and qualified name is refused (its entries stay in memory)."""
    old = enum.Enum("Level", ["LOW", "HIGH"])
    new = enum.Enum("Level", ["HIGH", "LOW"])
    assert old.LOW != new.LOW
    for member in (old.LOW, new.LOW):
        with pytest.raises(UnstableKeyError, match="is not found at"):
            stable_key((member,))

    class Local(enum.Enum):
        A = 1

    with pytest.raises(UnstableKeyError, match="is not found at"):
        stable_key((Local.A,))


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Flag boundaries are new in 3.11")
def test_flag_values_are_spelled_by_value() -> None:
    """Flag values with no member name (boundary=KEEP) are told apart by their value,
    and a member named like a combination ("R|W") is not the combination."""
    keep = enum.Flag("Keep", ["R", "W"], boundary=enum.KEEP)  # type: ignore[call-overload]
    named = enum.Flag("Named", [("R", 1), ("W", 2), ("R|W", 4)])
    globals().update(Keep=keep, Named=named)  # found at their module and name
    try:
        assert keep(4) != keep(8)
        assert stable_key((keep(4),)) != stable_key((keep(8),))
        assert stable_key((keep.R | keep.W,)) != stable_key((keep.R,))
        assert named["R|W"] != named.R | named.W
        assert stable_key((named["R|W"],)) != stable_key((named.R | named.W,))
    finally:
        del globals()["Keep"], globals()["Named"]


class Labelled(enum.Enum):
    """An enum whose ``name`` is a display label, the same for every member."""

    A = 1
    B = 2

    @property
    def name(self) -> str:  # type: ignore[override]
        return "label"


def test_an_enum_overriding_name_is_spelled_by_its_members_own_names() -> None:
    assert stable_key((Labelled.A,)) != stable_key((Labelled.B,))


@pytest.mark.parametrize(
    "nan",
    [math.nan, -math.nan, complex(math.nan, 1), complex(1, math.nan), Decimal("NaN")],
    ids=["nan", "-nan", "complex-real", "complex-imag", "decimal"],
)
def test_a_nan_is_refused(nan: Any) -> None:
    """A NaN equals nothing, itself included: no other call can read its row, and
    NaNs of other signs or payloads would share one."""
    with pytest.raises(UnstableKeyError, match="NaN"):
        stable_key((nan,))


@pytest.mark.parametrize(
    ("member", "data"),
    [
        (Holiday.NEW_YEAR, date(2024, 1, 1)),
        (Span.DAY, timedelta(days=1)),
        (Rate.HALF, Decimal("0.5")),
        (Rate.HALF, Fraction(1, 2)),
        (Pair.ORIGIN, (0, 0)),
    ],
    ids=["date", "timedelta", "decimal", "decimal-as-fraction", "tuple"],
)
def test_enum_members_made_of_data_are_spelled_as_that_data(member: Any, data: Any) -> None:
    """A member of a date, timedelta, Decimal or tuple mixin enum is == to its data and
    hashed alike: one key in memory, one row."""
    assert member == data
    assert hash(member) == hash(data)
    assert stable_key((member,)) == stable_key((data,))


def test_an_enum_with_an_eq_of_its_own_is_refused() -> None:
    """An enum comparing its members in its own way may make one equal to other keys
    (or to none): no spelling is sure to follow it."""
    assert Identity.ONE != 1
    with pytest.raises(UnstableKeyError, match="compares its members in its own way"):
        stable_key((Identity.ONE,))


class Half(Fraction):
    numerator = property(lambda self: 7)  # type: ignore[assignment]


class Shifted(datetime):
    def timetz(self) -> Any:
        raise AssertionError("not read")

    year = property(lambda self: 1999)  # type: ignore[assignment]


def test_a_subclass_is_spelled_by_its_base_data_not_its_overridable_attributes() -> None:
    """A subclass keeping its base's == and hash compares by the base's data, whatever
    attributes it overrides: it is spelled by that data."""
    assert Half(1, 2) == Fraction(1, 2)
    assert stable_key((Half(1, 2),)) == stable_key((Fraction(1, 2),))
    moment = Shifted(2024, 5, 6, 7, 8, 9, 10, fold=1)
    assert moment == datetime(2024, 5, 6, 7, 8, 9, 10)
    assert stable_key((moment,)) == stable_key((datetime(2024, 5, 6, 7, 8, 9, 10),))


def test_datetimes_of_one_zone_in_a_fold_of_either_fold_value_are_one_row() -> None:
    """01:30 of a fall-back night in New York, fold=0 and fold=1, are == in one zone
    (wall times): one key, one row. The zone's cached object is spelled by its key; a
    no_cache object of it, which compares unequal there, is refused."""
    new_york = zoneinfo.ZoneInfo("America/New_York")
    first = datetime(2021, 11, 7, 1, 30, tzinfo=new_york)
    second = first.replace(fold=1)
    assert first == second
    assert stable_key((first,)) == stable_key((second,))
    assert stable_key((first,)) != stable_key((first.replace(minute=31),))
    other = first.replace(tzinfo=zoneinfo.ZoneInfo.no_cache("America/New_York"))
    assert other != first
    with pytest.raises(UnstableKeyError, match="no_cache"):
        stable_key((other,))


def test_subclasses_that_compare_as_their_base_are_spelled_as_it() -> None:
    """A named tuple is == to the plain tuple (one key in memory): invalidate(Point(1, 2))
    reaches the row of f((1, 2)). So is any subclass keeping its base's == and hash."""
    Legacy = namedtuple("Legacy", "x y")
    for value, plain in (
        (Point(1, 2), (1, 2)),
        (Legacy(1, 2), (1, 2)),
        (Name("a"), "a"),
        ((Point(1, 2), Name("a")), ((1, 2), "a")),
    ):
        assert value == plain
        assert hash(value) == hash(plain)
        assert stable_key((value,)) == stable_key((plain,))


def test_a_subclass_with_an_eq_of_its_own_is_refused() -> None:
    """Loud("A") == "a", yet "A" != "a": no spelling of its data can be right."""
    with pytest.raises(UnstableKeyError, match="Loud"):
        stable_key((Loud("A"),))


def test_strings_are_spelled_in_ascii() -> None:
    """repr() of a str escapes what the running Python's Unicode database calls
    unprintable, which changes between versions (U+1FAE8 is new in Unicode 15, so
    Python 3.11 escapes it and 3.12 does not): keys are spelled with ascii()."""
    for text in ("\U0001fae8", "é", "naïve ∑"):
        spelled = stable_key((text,))
        assert spelled.isascii()
        assert spelled == f"(str:{text!a},)"
        assert stable_key((text, 1)).isascii()


def _python(where: Path, *args: str) -> str:
    """What ``python *args`` prints, with ``where`` first on its module path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(where), *sys.path])}
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, check=True
    ).stdout


def test_an_enum_of_a_module_run_with_dash_m_is_spelled_as_when_imported(
    tmp_path: Path,
) -> None:
    """Under ``python -m colors`` the class lives in ``__main__``; it is spelled under
    ``colors``, as a process importing the module spells it."""
    (tmp_path / "colors.py").write_text(
        "import enum\n"
        "class Color(enum.Enum):\n"
        "    RED = 1\n"
        "if __name__ == '__main__':\n"
        "    from aiocache_swr._keys import stable_key\n"
        "    print(stable_key((Color.RED,)))\n"
    )
    as_main = _python(tmp_path, "-m", "colors")
    imported = _python(
        tmp_path,
        "-c",
        "from colors import Color; from aiocache_swr._keys import stable_key; "
        "print(stable_key((Color.RED,)))",
    )
    assert as_main == imported
    assert "colors" in as_main


def test_an_enum_of_a_module_run_with_dash_m_and_imported_as_well_is_refused(
    tmp_path: Path,
) -> None:
    """Under ``python -m colors``, a program that also imports ``colors`` has two copies
    of the class, whose members are unequal: they would share the spelling under
    ``colors``, so neither is spelled."""
    (tmp_path / "colors.py").write_text(
        "import enum\n"
        "class Color(enum.Enum):\n"
        "    RED = 1\n"
        "if __name__ == '__main__':\n"
        "    import colors\n"
        "    from aiocache_swr._keys import UnstableKeyError, stable_key\n"
        "    assert Color.RED != colors.Color.RED\n"
        "    try:\n"
        "        print(stable_key((Color.RED,)))\n"
        "    except UnstableKeyError:\n"
        "        print('refused')\n"
    )
    assert _python(tmp_path, "-m", "colors").strip() == "refused"


def _unnamed(cls: Any, value: object) -> Any:
    """A ``_missing_`` that makes a new, unnamed object of ``cls`` for ``value``."""
    member = object.__new__(cls)
    member._name_ = None
    member._value_ = value
    return member


class Status(enum.Enum):
    """An enum whose _missing_ makes an unnamed pseudo-member for each unknown value."""

    OK = 1
    _missing_ = classmethod(_unnamed)


class Bits(enum.Flag):
    """A Flag whose _missing_ makes a new object on every call."""

    R = 4
    W = 2
    _missing_ = classmethod(_unnamed)


def test_enum_objects_that_are_not_the_member_of_their_name_or_value_are_refused() -> None:
    """Status(5) and Status(6) (no name), or two Bits(16) objects (unequal, one value),
    would share a spelling: only the class's own member of a name or value is spelled."""
    assert Status(5) != Status(6)
    assert Bits(16) != Bits(16)
    for obj in (Status(5), Bits(16)):
        with pytest.raises(UnstableKeyError, match="is not"):
            stable_key((obj,))
    assert stable_key((Status.OK,)) != stable_key((Bits.R,))
