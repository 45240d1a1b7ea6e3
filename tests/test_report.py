"""benchmarks/report.py's judgement of a row against its floor (no benchmark is run)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPORT = Path(__file__).resolve().parent.parent / "benchmarks" / "report.py"


@pytest.fixture(scope="module")
def report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_bench_report", REPORT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through it
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def row_of(report: ModuleType, key: str) -> Any:
    return next(r for r in report.ROWS if r.key == key)


def judged(report: ModuleType, key: str, values: dict[str, float], floor_s: float) -> Any:
    row = row_of(report, key)
    ours = values[report.OURS]
    extra = {"floor": "the_floor", "floor_s": floor_s}
    ratio = report._ratio(row, ours, values, extra)
    result = "PASS" if row.passes(ratio, extra) else "FAIL"
    return {"scenario": key, "result": result} | report.against_floor(
        row, result, ours, values, extra
    )


def test_a_miss_the_floor_also_misses_is_judged_against_the_proposed_target(
    report: ModuleType,
) -> None:
    """Sequential L2 reads: floor 10x diskcache misses "<= 5x"; ours 1.5x the floor passes."""
    got = judged(report, "l2_read", {report.OURS: 150e-6, "diskcache": 10e-6}, floor_s=100e-6)
    assert got["result"] == "FAIL"
    assert got["floor_ratio"] == pytest.approx(10.0)
    assert got["floor_meets_target"] is False
    assert got["ours_per_floor"] == pytest.approx(1.5)
    assert got["verdict"] == "floor-bound: proposed PASS"
    assert got["proposed"] == "≤ 2× the_floor"  # noqa: RUF001


def test_a_floor_bound_row_beyond_the_proposed_target_fails_it(report: ModuleType) -> None:
    """Ours 2.5x a floor that itself misses the target: "proposed FAIL"."""
    got = judged(report, "l2_read", {report.OURS: 250e-6, "diskcache": 10e-6}, floor_s=100e-6)
    assert got["verdict"] == "floor-bound: proposed FAIL"


def test_a_miss_the_floor_meets_stays_a_plain_fail(report: ModuleType) -> None:
    """Floor 0.4x async-lru meets "<= 0.5x": ours at 0.6x is a FAIL, no proposed target."""
    got = judged(report, "miss", {report.OURS: 6e-6, "async-lru": 10e-6}, floor_s=4e-6)
    assert got["floor_meets_target"] is True
    assert (got["verdict"], got["proposed"]) == ("FAIL", None)


def test_a_throughput_floor_is_read_as_a_throughput_ratio(report: ModuleType) -> None:
    """Writes: diskcache set 100 us over a 5 us floor is 20x; ours 8 us is 12.5x: PASS."""
    got = judged(report, "l2_write", {report.OURS: 8e-6, "diskcache": 100e-6}, floor_s=5e-6)
    assert got["floor_ratio"] == pytest.approx(20.0)
    assert (got["result"], got["verdict"]) == ("PASS", "PASS")


def test_a_row_without_a_floor_keeps_its_result(report: ModuleType) -> None:
    """No ``floor_s``: nothing is added but the result as the verdict."""
    row = row_of(report, "memory")
    got = report.against_floor(row, "PASS", 270.0, {report.OURS: 270.0, "async-lru": 800.0}, {})
    assert got["verdict"] == "PASS"
    assert got["floor_ratio"] is None


def test_summary_separates_floor_bound_misses_from_reachable_ones(report: ModuleType) -> None:
    """The summary counts SPEC passes, floor-bound misses and rows not run (e.g. ``-k``),
    and names the misses within the floor's reach."""
    rows = [
        judged(report, "l2_read", {report.OURS: 150e-6, "diskcache": 10e-6}, floor_s=100e-6),
        judged(report, "miss", {report.OURS: 6e-6, "async-lru": 10e-6}, floor_s=4e-6),
        judged(report, "l2_write", {report.OURS: 8e-6, "diskcache": 100e-6}, floor_s=5e-6),
        {"scenario": "shown only", "result": "info", "verdict": "info"},
        {"scenario": "filtered out", "result": "not run", "verdict": "not run"},
    ]
    text = report.summary(rows)
    assert text.startswith("1/3 SPEC targets met (1 rows not run). 1 missed where the floor")
    assert "1 of them within the proposed target" in text
    assert text.endswith("Missed but within the floor's reach: miss.")
