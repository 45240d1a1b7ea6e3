"""benchmarks/report.py's judgement of each row, from made-up benchmark results.

No benchmark runs here: ``figures()`` gets a pytest-benchmark document and the
outcomes a run would have recorded.
"""

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


def bench(test: str, peer: str, seconds: float, **extra: Any) -> dict[str, Any]:
    """One pytest-benchmark entry: one call per round, fastest round ``seconds``."""
    return {
        "name": f"{test}[{peer}]",
        "fullname": f"benchmarks/x.py::{test}[{peer}]",
        "params": {"peer": peer},
        "stats": {"min": seconds},
        "extra_info": extra,
    }


def figures(report: ModuleType, *benches: dict[str, Any], failed: str = "") -> dict[str, Any]:
    """Every row report.py computes from ``benches`` (``failed``: a test whose run failed)."""
    collector = report.Collector()
    for entry in benches:
        test, peer = entry["name"][:-1].split("[")
        if peer not in collector.peers:
            collector.peers.append(peer)
        collector.outcomes[(test, peer)] = ("failed" if test == failed else "passed", "call")
    rows = report.figures({"benchmarks": list(benches)}, collector)
    return {row["key"]: row for row in rows}


def l2_read(report: ModuleType, ours: float, floor_s: float) -> dict[str, Any]:
    rows = figures(
        report,
        bench(
            "test_l2_read_sequential",
            report.OURS,
            ours,
            floor="aiosqlite_round_trip",
            floor_s=floor_s,
        ),
        bench("test_l2_read_sequential", "diskcache", 10e-6),
    )
    return rows["l2_read"]  # type: ignore[no-any-return]


def test_a_miss_the_floor_also_misses_is_judged_against_the_proposed_target(
    report: ModuleType,
) -> None:
    """Sequential L2 reads: floor 10x diskcache misses "<= 5x"; ours 15x meets "<= 16x"."""
    row = l2_read(report, ours=150e-6, floor_s=100e-6)
    assert row["result"] == "FAIL"
    assert row["floor_ratio"] == pytest.approx(10.0)
    assert row["floor_meets_target"] is False
    assert row["ours_per_floor"] == pytest.approx(1.5)
    assert row["verdict"] == "floor-bound: proposed PASS"
    assert row["proposed"] == "≤ 16× diskcache get"  # noqa: RUF001


def test_the_proposed_limit_itself_passes_and_beyond_it_fails(report: ModuleType) -> None:
    """Ours exactly 16x diskcache meets "<= 16x"; 17x is "proposed FAIL"."""
    assert l2_read(report, ours=160e-6, floor_s=100e-6)["verdict"] == "floor-bound: proposed PASS"
    assert l2_read(report, ours=170e-6, floor_s=100e-6)["verdict"] == "floor-bound: proposed FAIL"


def test_ours_below_its_floor_is_flagged(report: ModuleType) -> None:
    """A floor slower than ours is no lower bound, and the verdict says so."""
    row = l2_read(report, ours=90e-6, floor_s=100e-6)
    assert row["verdict"].endswith("(ours is below the floor: not a lower bound)")


def test_a_miss_the_floor_meets_stays_a_plain_fail(report: ModuleType) -> None:
    """Floor 0.4x async-lru meets "<= 0.5x": ours at 0.6x is a FAIL, no proposed target."""
    row = figures(
        report,
        bench("test_miss_overhead", report.OURS, 6e-6, floor="sf", floor_s=4e-6),
        bench("test_miss_overhead", "async-lru", 10e-6),
    )["miss"]
    assert row["floor_meets_target"] is True
    assert (row["result"], row["verdict"], row["proposed"]) == ("FAIL", "FAIL", None)


def test_a_target_met_exactly_passes(report: ModuleType) -> None:
    """Ours exactly 0.5x async-lru meets "<= 0.5x"."""
    row = figures(
        report,
        bench("test_hit_one_int", report.OURS, 0.5e-6, floor="hit", floor_s=0.4e-6),
        bench("test_hit_one_int", "async-lru", 1e-6),
    )["hit_int"]
    assert (row["result"], row["verdict"]) == ("PASS", "PASS")


def test_the_dict_floor_row_reads_its_floor_against_the_floor_peer(report: ModuleType) -> None:
    """Target "<= 2x the floor": a hit floor at 2.1x misses it; "<= 2.2x" is then proposed."""

    def hit(ours: float) -> dict[str, Any]:
        return figures(  # type: ignore[no-any-return]
            report,
            bench("test_hit_one_int", report.OURS, ours, floor="ttl_lru_hit", floor_s=210e-9),
            bench("test_hit_one_int", "floor", 100e-9),
        )["hit_int_floor"]

    row = hit(215e-9)
    assert row["floor_ratio"] == pytest.approx(2.1)
    assert row["verdict"] == "floor-bound: proposed PASS"
    assert row["proposed"] == "≤ 2.2× the floor"  # noqa: RUF001
    assert hit(250e-9)["verdict"] == "floor-bound: proposed FAIL"


def test_a_throughput_floor_is_read_as_a_throughput_ratio(report: ModuleType) -> None:
    """Writes: diskcache set 100 us over a 5 us floor is 20x; ours 8 us is 12.5x: PASS."""
    row = figures(
        report,
        bench("test_l2_write_sustained", report.OURS, 8e-6, floor="insert", floor_s=5e-6),
        bench("test_l2_write_sustained", "diskcache", 100e-6),
    )["l2_write"]
    assert row["floor_ratio"] == pytest.approx(20.0)
    assert (row["result"], row["verdict"]) == ("PASS", "PASS")


def test_a_floor_bound_row_without_a_proposed_target_says_so(report: ModuleType) -> None:
    """Writes with the floor at 8x diskcache: "floor-bound", and no proposed verdict."""
    row = figures(
        report,
        bench(
            "test_l2_write_sustained", report.OURS, 20e-6, floor="batched_insert", floor_s=12.5e-6
        ),
        bench("test_l2_write_sustained", "diskcache", 100e-6),
    )["l2_write"]
    assert (row["result"], row["verdict"], row["proposed"]) == ("FAIL", "floor-bound", None)


def test_a_loose_floor_meeting_the_target_does_not_make_it_within_reach(
    report: ModuleType,
) -> None:
    """The batched-insert floor skips work the store must do: meeting "10x" proves nothing."""
    row = figures(
        report,
        bench("test_l2_write_sustained", report.OURS, 20e-6, floor="batched_insert", floor_s=5e-6),
        bench("test_l2_write_sustained", "diskcache", 100e-6),
    )["l2_write"]
    assert row["floor_meets_target"] is True
    assert row["floor_complete"] is False
    assert row["verdict"] == "FAIL (a loose floor meets it: reach unknown)"


def test_only_time_rows_are_set_against_a_floor(report: ModuleType) -> None:
    """A floor_s on the stale-crowd row (a latency ratio to a fresh hit) is ignored."""
    row = figures(
        report,
        bench(
            "test_stale_crowd",
            report.OURS,
            1e-3,
            ratio_to_fresh=3.0,
            stale_median_ns=3000,
            all_stale=True,
            refreshes_per_round=1,
            floor="x",
            floor_s=1e-6,
        ),
    )["stale_crowd"]
    assert row["result"] == "FAIL"
    assert (row["floor_ratio"], row["ours_per_floor"], row["verdict"]) == (None, None, "FAIL")


def test_summary_names_each_kind_of_miss(report: ModuleType) -> None:
    """Floor-bound misses are counted; misses within reach, of unknown reach, not judged
    against a floor, and benchmark errors are named apart; rows not run are counted."""
    rows = figures(
        report,
        # floor-bound, meets its proposed target
        bench("test_l2_read_sequential", report.OURS, 150e-6, floor="rt", floor_s=100e-6),
        bench("test_l2_read_sequential", "diskcache", 10e-6),
        # floor-bound, no proposed target
        bench("test_l2_read_batch", report.OURS, 15e-6, floor="batched_read", floor_s=12e-6),
        bench("test_l2_read_batch", "diskcache", 10e-6),
        # within reach
        bench("test_miss_overhead", report.OURS, 6e-6, floor="single_flight", floor_s=4e-6),
        bench("test_miss_overhead", "async-lru", 10e-6),
        # reach unknown: only a loose floor meets it
        bench("test_l2_write_sustained", report.OURS, 20e-6, floor="batched_insert", floor_s=5e-6),
        bench("test_l2_write_sustained", "diskcache", 100e-6),
        # not judged against a floor
        bench("test_memory_per_entry", report.OURS, 0.0, bytes_per_entry=600),
        bench("test_memory_per_entry", "async-lru", 0.0, bytes_per_entry=800),
        # met
        bench("test_first_stale_caller", report.OURS, 1e-6),
        bench("test_first_stale_caller", "cashews-early", 10e-6),
        # its benchmark failed
        bench("test_stampede_cold_key", report.OURS, 1e-3, source_calls=1),
        failed="test_stampede_cold_key",
    )
    text = report.summary(list(rows.values()))
    assert text.startswith("1/7 SPEC targets met (5 rows not run). ")
    assert "2 missed where the floor itself misses the target; 1 of the 1 with a " in text
    assert "Missed but within the floor's reach: miss overhead (100k distinct keys)." in text
    assert "reach unknown (only a loose floor meets it): L2 sustained writes (store.put)." in text
    assert "Missed, not judged against a floor: memory per entry." in text
    assert text.endswith("Benchmark errors: 10k callers, 1 cold key: calls.")


def test_best_of_keeps_the_fastest_pass_and_the_fastest_floor_of_any_pass(
    report: ModuleType,
) -> None:
    """Our figure comes from our fastest pass; its floor is the fastest of every pass."""
    first = {"benchmarks": [bench("t", report.OURS, 2.0, floor="f", floor_s=1.0, tag="first")]}
    second = {"benchmarks": [bench("t", report.OURS, 3.0, floor="f", floor_s=0.5, tag="second")]}
    (kept,) = report.best_of([first, second])["benchmarks"]
    assert kept["stats"]["min"] == 2.0
    assert kept["extra_info"]["tag"] == "first"
    assert kept["extra_info"]["floor_s"] == 0.5
    assert first["benchmarks"][0]["extra_info"]["floor_s"] == 1.0  # inputs left as they were


def test_best_of_keeps_the_fastest_collector_paused_check_of_any_pass(
    report: ModuleType,
) -> None:
    """``gc_paused_s`` is a best of batches too: the fastest over passes, like a floor."""
    first = {"benchmarks": [bench("t", report.OURS, 2.0, gc_paused_s=1.5)]}
    second = {"benchmarks": [bench("t", report.OURS, 3.0, gc_paused_s=1.0)]}
    (kept,) = report.best_of([first, second])["benchmarks"]
    assert (kept["stats"]["min"], kept["extra_info"]["gc_paused_s"]) == (2.0, 1.0)
    assert first["benchmarks"][0]["extra_info"]["gc_paused_s"] == 1.5  # inputs left as they were


def test_best_of_names_the_floor_even_when_the_fastest_pass_has_none(
    report: ModuleType,
) -> None:
    """A floor measured in another pass still comes with its name."""
    first = {"benchmarks": [bench("t", report.OURS, 2.0)]}
    second = {"benchmarks": [bench("t", report.OURS, 3.0, floor="f", floor_s=0.5)]}
    (kept,) = report.best_of([first, second])["benchmarks"]
    assert (kept["stats"]["min"], kept["extra_info"]["floor"]) == (2.0, "f")
    assert kept["extra_info"]["floor_s"] == 0.5


def test_summary_tells_apart_two_rows_of_one_scenario(report: ModuleType) -> None:
    """Both 1-int hit rows missed within reach: each is named with its target."""
    rows = figures(
        report,
        bench("test_hit_one_int", report.OURS, 600e-9, floor="ttl_lru_hit", floor_s=180e-9),
        bench("test_hit_one_int", "async-lru", 1e-6),
        bench("test_hit_one_int", "floor", 100e-9),
    )
    text = report.summary(list(rows.values()))
    assert "fresh hit, 1 int arg (≤ 0.5× async-lru); fresh hit, 1 int arg (≤ 2× the floor)" in text  # noqa: RUF001


def turns(report: ModuleType, ours: float, floor: float, rounds: int = 40) -> dict[str, Any]:
    """A taking-turns check: medians ``ours`` and ``floor`` against diskcache's 10 µs,
    and fastest rounds a tenth below each."""
    medians = {report.OURS: ours, "floor": floor, "diskcache": 10e-6}
    return {
        "rounds": rounds,
        "best_s": {side: 0.9 * value for side, value in medians.items()},
        "median_s": medians,
    }


def batch_row(report: ModuleType, **extra: Any) -> dict[str, Any]:
    rows = figures(
        report,
        bench("test_l2_read_batch", report.OURS, 12e-6, **extra),
        bench("test_l2_read_batch", "diskcache", 10e-6),
    )
    return rows["l2_batch"]


def test_the_turns_note_gives_each_ratio_as_its_range_over_the_passes(
    report: ModuleType,
) -> None:
    """Medians against the reference, ours against the floor, and fastest rounds, each
    as a range over the passes' checks."""
    row = batch_row(report, taking_turns=[turns(report, 12e-6, 9e-6), turns(report, 11e-6, 9e-6)])
    assert report.turns_note([row]) == (
        "L2 reads, 1000 keys at once, taking turns in one loop (untimed check, 2 passes, "
        "40/40 rounds): by median, aiocache-swr 1.1–1.2× diskcache, floor 0.9× diskcache, "  # noqa: RUF001
        "aiocache-swr 1.22–1.33× the floor; fastest rounds: aiocache-swr 1.1–1.2×, "  # noqa: RUF001
        "floor 0.9× diskcache."  # noqa: RUF001
    )


def test_the_turns_note_takes_one_check_and_one_round(report: ModuleType) -> None:
    """A single check (not a list), of one round (a smoke run), reads in the singular."""
    row = batch_row(report, taking_turns=turns(report, 12e-6, 9e-6, rounds=1))
    assert "(untimed check, 1 pass, 1 round): by median, aiocache-swr 1.2×" in (  # noqa: RUF001
        report.turns_note([row])
    )


def test_the_turns_note_leaves_out_what_it_cannot_set_against_the_reference(
    report: ModuleType,
) -> None:
    """No check, no reference figure: no line; no floor figure: ours alone."""
    assert report.turns_note([batch_row(report)]) == ""
    no_reference = turns(report, 12e-6, 9e-6)
    del no_reference["median_s"]["diskcache"]
    assert report.turns_note([batch_row(report, taking_turns=no_reference)]) == ""
    no_floor = turns(report, 12e-6, 9e-6)
    del no_floor["median_s"]["floor"]
    note = report.turns_note([batch_row(report, taking_turns=no_floor)])
    assert "by median, aiocache-swr 1.2× diskcache; fastest rounds" in note  # noqa: RUF001
    assert "floor" not in note


def test_best_of_keeps_the_taking_turns_check_of_every_pass(report: ModuleType) -> None:
    """Taking-turns checks do not depend on which pass our figure came from: all are kept."""
    first = {"benchmarks": [bench("t", report.OURS, 3.0, taking_turns={"rounds": 1})]}
    second = {"benchmarks": [bench("t", report.OURS, 2.0, taking_turns={"rounds": 2})]}
    (kept,) = report.best_of([first, second])["benchmarks"]
    assert kept["stats"]["min"] == 2.0
    assert kept["extra_info"]["taking_turns"] == [{"rounds": 1}, {"rounds": 2}]
    assert second["benchmarks"][0]["extra_info"]["taking_turns"] == {"rounds": 2}


def test_the_gc_note_sets_ours_against_the_reference_with_the_collector_paused(
    report: ModuleType,
) -> None:
    """A row measured with the collector paused gets a line: both figures, ratio and counts."""
    rows = figures(
        report,
        bench(
            "test_l2_read_batch",
            report.OURS,
            12e-6,
            gc_paused_s=10e-6,
            gc_young_collections_per_batch=17,
        ),
        bench(
            "test_l2_read_batch",
            "diskcache",
            10e-6,
            gc_paused_s=8e-6,
            gc_young_collections_per_batch=8,
        ),
        bench("test_first_stale_caller", report.OURS, 1e-6),
        bench("test_first_stale_caller", "cashews-early", 10e-6),
    )
    note = report.gc_note(list(rows.values()))
    assert note == (
        "L2 reads, 1000 keys at once, with the garbage collector paused (untimed check): "
        "10 µs against diskcache 8 µs, 1.25× (with it: 1.2× diskcache); "  # noqa: RUF001
        "young-generation collections per round: 17 against 8."
    )
