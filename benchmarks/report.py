"""Run the benchmark suite and print the SPEC section 4 table.

    python benchmarks/report.py            # full run: two passes (about 5 minutes on 2 cores)
    python benchmarks/report.py --quick    # smoke: fewer rounds and calls

It runs every ``benchmarks/bench_*.py`` scenario with pytest-benchmark in this
process, then prints, per SPEC row: this library's figure, each peer's (``n/a``
when the peer cannot do the scenario), our ratio to the row's reference, the
target and PASS/FAIL.  A second table sets each row that has a floor (the least
its mechanism costs, ``floors.py``, measured in the same run) against it: the
floor read as the target reads, so a missed target the floor itself misses is
told apart ("floor-bound", then judged against the proposed target
``Row.proposed``: the same ratio at the limit the floor reaches) from one that
this library could meet.  It writes
the raw numbers to ``docs/benchmarks.json`` and a chart to
``docs/benchmarks.png``.  Targets are reported, never asserted: the exit status
is non-zero only when a benchmark itself failed (e.g. a correctness check such
as the stampede count).

Time figures are per call: the fastest round divided by the calls per round
(the minimum is the figure least disturbed by other processes on a shared
machine; ``docs/benchmarks.json`` keeps min, median, mean, max and stddev).
A full run makes two passes over the suite and keeps, for each benchmark, the
pass with its fastest round (with that pass's extra figures, e.g. its floor):
the benchmark machine runs fast and slow for seconds at a time, so one pass
can catch one side of a ratio in a slow phase and the other in a fast one.
Latency in the stale-crowd row is the median over every caller, as the SPEC asks.
"""

# ruff: noqa: RUF001  (the multiplication sign in ratios and targets is meant)
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import sys
import tempfile
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OURS = "aiocache-swr"
NA = "n/a: "
STAT = "min"  # the round statistic behind time figures (see the module docstring)


# ------------------------------------------------------------------------------ rows


@dataclass(frozen=True)
class Row:
    key: str
    scenario: str
    test: str
    kind: str  # "time" (s per call), "count", "bytes", "latency" (stale crowd median, ns)
    reference: str | None  # a peer, "fresh" (the same crowd on a fresh entry), or None
    target: str
    passes: Callable[[float | None, dict[str, Any]], bool] | None  # None: informational
    # The nearest honest target, for a row whose floor (benchmarks/floors.py) misses
    # ``target``: the same ratio, at the limit the floor itself reached in this
    # machine's runs (rounded up).  Applied only in a run whose floor misses ``target``.
    proposed: float | None = None


NO_TARGET = "(no target: shown)"


def _le(limit: float) -> Callable[[float | None, dict[str, Any]], bool]:
    return lambda ratio, extra: ratio is not None and ratio <= limit


ROWS = [
    Row("hit_int", "fresh hit, 1 int arg", "test_hit_one_int", "time", "async-lru",
        "≤ 0.5× async-lru", _le(0.5)),
    Row("hit_int_floor", "fresh hit, 1 int arg", "test_hit_one_int", "time", "floor",
        "≤ 2× the floor", _le(2.0), proposed=2.2),
    Row("hit_args", "fresh hit, 2 pos + 1 kw", "test_hit_args_kwargs", "time", "async-lru",
        "≤ 0.5× async-lru", _le(0.5)),
    Row("miss", "miss overhead (100k distinct keys)", "test_miss_overhead", "time", "async-lru",
        "≤ 0.5× async-lru", _le(0.5), proposed=0.6),
    Row("churn", "LRU churn (1000 / 10k keys)", "test_lru_churn", "time", "async-lru",
        "≤ 0.5× async-lru", _le(0.5), proposed=0.6),
    Row("stampede", "10k callers, 1 cold key: calls", "test_stampede_cold_key", "count", None,
        "exactly 1 call", lambda ratio, extra: extra.get("source_calls") == 1),
    Row("first_stale", "first caller on a stale entry", "test_first_stale_caller", "time",
        "cashews-early", "≤ 0.25× cashews early", _le(0.25)),
    Row("stale_crowd", "1k callers on stale: median", "test_stale_crowd", "latency", "fresh",
        "all stale, 1 refresh, ≤ 2× fresh",
        lambda ratio, extra: ratio is not None and ratio <= 2.0
        and extra.get("all_stale") is True and extra.get("refreshes_per_round") == 1),
    Row("memory", "memory per entry", "test_memory_per_entry", "bytes", "async-lru",
        "≤ 0.5× async-lru", _le(0.5)),
    Row("l2_read", "L2 read, one at a time", "test_l2_read_sequential", "time", "diskcache",
        "≤ 5× diskcache get", _le(5.0), proposed=16.0),
    Row("l2_batch", "L2 reads, 1000 keys at once", "test_l2_read_batch", "time", "diskcache",
        "≤ 1× diskcache get", _le(1.0)),
    Row("l2_write", "L2 sustained writes (store.put)", "test_l2_write_sustained", "time",
        "diskcache",
        "≥ 10× diskcache set thrpt", lambda ratio, extra: ratio is not None and ratio >= 10.0),
    Row("l2_miss_write", "L2 miss + compute + write, 1 at a time", "test_l2_miss_then_write",
        "time", "diskcache", NO_TARGET, None),
]  # fmt: skip


# ---------------------------------------------------------------- running the suite


class Collector:
    """A pytest plugin recording each (test, peer)'s outcome and skip reason."""

    NODE = re.compile(r"::(?P<test>\w+)\[(?P<peer>[^\]]+)\]$")

    def __init__(self) -> None:
        self.peers: list[str] = []
        self.outcomes: dict[tuple[str, str], tuple[str, str]] = {}

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            callspec = getattr(item, "callspec", None)
            peer = callspec.params.get("peer") if callspec is not None else None
            if peer is not None and peer not in self.peers:
                self.peers.append(peer)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        match = self.NODE.search(report.nodeid)
        if match is None:
            return
        key = (match["test"], match["peer"])
        if report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else "skipped"
            self.outcomes[key] = ("skipped", reason.removeprefix("Skipped: "))
        elif report.failed:
            self.outcomes[key] = ("failed", report.when)
        elif report.when == "call":
            self.outcomes.setdefault(key, ("passed", ""))


def run_suite(quick: bool, json_path: Path, extra_args: list[str], collector: Collector) -> int:
    args = [
        str(HERE),
        "-q",
        f"--benchmark-json={json_path}",
        "--benchmark-quiet",
        "--benchmark-sort=name",
        *(["--bench-quick"] if quick else []),
        *extra_args,
    ]
    # A fresh import of the suite's modules for each pass: the bench modules kept
    # from a previous pass would hold the previous conftest's classes, and their
    # ``isinstance(peer, SWRPeer)`` checks would quietly be false.
    for name in [n for n in sys.modules if n in ("conftest", "floors") or n.startswith("bench_")]:
        del sys.modules[name]
    return int(pytest.main(args, plugins=[collector]))


def best_of(passes: list[dict[str, Any]]) -> dict[str, Any]:
    """One pytest-benchmark document: per benchmark, the pass with the fastest round,
    and the fastest of its floors (``floor_s``) and of its collector-paused checks
    (``gc_paused_s``) over every pass: those are bests of repetitions too, and must
    not depend on which pass our own figure came from.  For the same reason its
    taking-turns checks (``taking_turns``) are kept from every pass, as a list."""
    best: dict[str, dict[str, Any]] = {}
    floors: dict[str, float] = {}
    paused: dict[str, float] = {}
    turns: dict[str, list[dict[str, Any]]] = {}
    for doc in passes:
        for bench in doc.get("benchmarks", []):
            name = bench["fullname"]
            kept = best.get(name)
            if kept is None or bench["stats"]["min"] < kept["stats"]["min"]:
                best[name] = bench
            floor_s = bench.get("extra_info", {}).get("floor_s")
            if floor_s:
                floors[name] = min(floors.get(name, math.inf), float(floor_s))
            paused_s = bench.get("extra_info", {}).get("gc_paused_s")
            if paused_s:
                paused[name] = min(paused.get(name, math.inf), float(paused_s))
            taking_turns = bench.get("extra_info", {}).get("taking_turns")
            if taking_turns:
                turns.setdefault(name, []).append(taking_turns)
    benchmarks = []
    for name, bench in best.items():
        if name in paused:
            bench = {**bench, "extra_info": {**bench["extra_info"], "gc_paused_s": paused[name]}}
        if name in turns:
            bench = {**bench, "extra_info": {**bench["extra_info"], "taking_turns": turns[name]}}
        if name in floors:
            floor_name = next(
                b["extra_info"]["floor"]
                for doc in passes
                for b in doc.get("benchmarks", [])
                if b["fullname"] == name and b.get("extra_info", {}).get("floor")
            )
            extra = {**bench["extra_info"], "floor": floor_name, "floor_s": floors[name]}
            bench = {**bench, "extra_info": extra}
        benchmarks.append(bench)
    return {**passes[-1], "benchmarks": benchmarks}


def merge_outcomes(collectors: list[Collector]) -> Collector:
    """A (test, peer) passed only if it passed in every pass."""
    merged = Collector()
    merged.peers = collectors[0].peers
    for collector in collectors:
        for key, outcome in collector.outcomes.items():
            if merged.outcomes.get(key, ("passed", ""))[0] == "passed":
                merged.outcomes[key] = outcome
    return merged


# ---------------------------------------------------------------------- the figures


def figures(bench_json: dict[str, Any], collector: Collector) -> list[dict[str, Any]]:
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    for bench in bench_json.get("benchmarks", []):
        peer = bench.get("params", {}).get("peer")
        by_key[(bench["name"].split("[")[0], peer)] = bench

    peers = collector.peers
    rows = []
    for row in ROWS:
        values: dict[str, float | None] = {}
        extras: dict[str, dict[str, Any]] = {}
        status: dict[str, str] = {}
        for peer in peers:
            bench = by_key.get((row.test, peer))
            outcome, reason = collector.outcomes.get((row.test, peer), ("missing", ""))
            if outcome == "skipped":
                status[peer] = reason if reason.startswith(NA) else f"skipped: {reason}"
                values[peer] = None
                continue
            if outcome != "passed" or bench is None:
                status[peer] = "error" if outcome == "failed" else "missing"
                values[peer] = None
                continue
            extra = bench.get("extra_info", {})
            extras[peer] = extra
            status[peer] = "ok"
            values[peer] = _value(row, bench, extra)
        ours = values.get(OURS)
        ratio = _ratio(row, ours, values, extras.get(OURS, {}))
        ours_state = status.get(OURS, "missing")
        if ours_state == "ok" and row.passes is None:
            result = "info"
        elif ours_state == "ok":
            result = "PASS" if row.passes(ratio, extras.get(OURS, {})) else "FAIL"
        else:
            result = "not run" if ours_state == "missing" else "ERROR"
        rows.append(
            {
                "key": row.key,
                "scenario": row.scenario,
                "test": row.test,
                "kind": row.kind,
                "unit": {"time": "s", "count": "calls", "bytes": "B", "latency": "ns"}[row.kind],
                "reference": row.reference,
                "target": row.target,
                "values": values,
                "status": status,
                "ratio": ratio,
                "result": result,
                "ours_extra": extras.get(OURS, {}),
                "fresh_reference_ns": {
                    p: e.get("fresh_median_ns") for p, e in extras.items() if "fresh_median_ns" in e
                }
                or None,
                # per call with the garbage collector paused (an untimed check), if measured
                "gc_paused_s": {
                    p: e["gc_paused_s"] for p, e in extras.items() if "gc_paused_s" in e
                }
                or None,
                "gc_young_per_round": {
                    p: e["gc_young_collections_per_batch"]
                    for p, e in extras.items()
                    if "gc_young_collections_per_batch" in e
                }
                or None,
                **against_floor(row, result, ours, values, extras.get(OURS, {})),
            }
        )
    return rows


# Floors that are only the core of their mechanism (see floors.py): their missing
# the target shows it cannot be met that way, but their meeting it proves nothing.
LOOSE_FLOORS = frozenset({"aiosqlite_round_trip", "batched_insert"})


def against_floor(
    row: Row,
    result: str,
    ours: float | None,
    values: dict[str, float | None],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Where the row has a floor: is a missed target within reach of the mechanism at all?

    ``floor_ratio`` is the floor expressed as the target is (e.g. the floor's time
    over async-lru's); ``floor_meets_target`` whether the floor itself would pass.
    ``verdict``: the result, or for a missed target whose floor misses it too,
    "floor-bound" and the result against the proposed target (``Row.proposed``,
    the same ratio at the limit the floor reaches).
    """
    floor_s = extra.get("floor_s")
    floor = extra.get("floor")
    out: dict[str, Any] = {
        "floor": floor,
        "floor_s": floor_s,
        "floor_complete": floor is not None and floor not in LOOSE_FLOORS,
        "floor_ratio": None,
        "floor_meets_target": None,
        "ours_per_floor": None,
        "proposed": None,
        "verdict": result,
    }
    if not floor_s or ours is None or row.passes is None or row.kind != "time":
        return out  # floors are times per call; other kinds have none
    floor_ratio = _ratio(row, float(floor_s), values, extra)
    out["floor_ratio"] = floor_ratio
    out["ours_per_floor"] = ours / float(floor_s)
    if floor_ratio is None:
        return out
    out["floor_meets_target"] = meets = bool(row.passes(floor_ratio, extra))
    if result == "FAIL" and not meets:
        out["verdict"] = "floor-bound"
        if row.proposed is not None:
            out["proposed"] = re.sub(r"[\d.]+×", f"{row.proposed:g}×", row.target, count=1)
            ratio = _ratio(row, ours, values, extra)
            within = ratio is not None and ratio <= row.proposed
            out["verdict"] += ": proposed " + ("PASS" if within else "FAIL")
    elif result == "FAIL" and not out["floor_complete"]:
        out["verdict"] = "FAIL (a loose floor meets it: reach unknown)"
    if out["ours_per_floor"] < 1:
        out["verdict"] += " (ours is below the floor: not a lower bound)"
    return out


def _value(row: Row, bench: dict[str, Any], extra: dict[str, Any]) -> float | None:
    if row.kind == "time":
        return float(bench["stats"][STAT]) / float(extra.get("calls_per_round", 1))
    if row.kind == "count":
        return extra.get("source_calls")
    if row.kind == "bytes":
        return extra.get("bytes_per_entry")
    if row.kind == "latency":
        return extra.get("stale_median_ns")
    raise ValueError(row.kind)


def _ratio(
    row: Row, ours: float | None, values: dict[str, float | None], extra: dict[str, Any]
) -> float | None:
    if ours is None or row.reference is None:
        return None
    if row.reference == "fresh":
        return extra.get("ratio_to_fresh")
    ref = values.get(row.reference)
    if not ref:
        return None
    if row.key in ("l2_write", "l2_miss_write"):  # throughput ratios: their time / ours
        return ref / ours
    return ours / ref


# ---------------------------------------------------------------------------- output


def fmt_value(kind: str, value: float | None) -> str:
    if value is None:
        return "?"
    if kind == "count":
        return f"{int(value):,}"
    if kind == "bytes":
        return f"{value:.0f} B"
    seconds = value * 1e-9 if kind == "latency" else value
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if seconds >= scale or unit == "ns":
            number = seconds / scale
            return f"{number:.3g} {unit}" if number < 1000 else f"{number:.0f} {unit}"
    raise AssertionError


def fmt_cell(row: dict[str, Any], peer: str) -> str:
    state = row["status"].get(peer, "missing")
    if state == "ok":
        return fmt_value(row["kind"], row["values"][peer])
    if state.startswith(NA):
        return "n/a"
    return state


def fmt_ratio(row: dict[str, Any]) -> str:
    ratio = row["ratio"]
    if row["key"] == "stampede":
        calls = row["values"].get(OURS)
        return "?" if calls is None else f"{int(calls):,} call" + ("" if calls == 1 else "s")
    if ratio is None:
        return "?"
    ref = row["reference"]
    if ref == "fresh":
        fresh = (row["fresh_reference_ns"] or {}).get(OURS)
        # The same crowd on a fresh entry, timed the same way (per caller, in a crowd).
        ref = "crowd fresh hit" + ("" if fresh is None else f" ({fmt_value('latency', fresh)})")
    if row["key"] in ("l2_write", "l2_miss_write"):
        return f"{ratio:.3g}× {ref} thrpt"
    return f"{ratio:.3g}× {ref}"


def table(rows: list[dict[str, Any]], peers: list[str]) -> str:
    header = ["scenario", *peers, "ratio", "target", "result"]
    body = [
        [r["scenario"], *(fmt_cell(r, p) for p in peers), fmt_ratio(r), r["target"], r["result"]]
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(cells) for cells in body]
    return "\n".join(out)


def floor_table(rows: list[dict[str, Any]]) -> str:
    """Per row with a floor: the floor as the target reads, and ours over the floor."""
    header = ["scenario", "target", "result", "floor", "floor as target", "ours/floor", "verdict"]
    body = []
    for r in rows:
        if r["floor_ratio"] is None:
            continue
        shown = dict(r, ratio=r["floor_ratio"])
        meets = "meets it" if r["floor_meets_target"] else "misses it"
        body.append(
            [
                r["scenario"],
                r["target"],
                r["result"],
                f"{r['floor']} {fmt_value('time', r['floor_s'])}",
                f"{fmt_ratio(shown)}: {meets}",
                f"{r['ours_per_floor']:.2f}×",
                r["verdict"] + (f" ({r['proposed']})" if r["proposed"] else ""),
            ]
        )
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join(
        [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        + [line(cells) for cells in body]
    )


def gc_note(rows: list[dict[str, Any]]) -> str:
    """Rows also measured with the garbage collector paused: ours against the reference.

    Not a figure of the table (nobody runs with the collector off): it tells the
    cost of the collections a scenario causes from the rest of it.
    """
    lines = []
    for r in rows:
        paused = r.get("gc_paused_s") or {}
        ours, ref = paused.get(OURS), paused.get(r["reference"])
        if ours is None or ref is None:
            continue
        young = r.get("gc_young_per_round") or {}
        counts = ""
        if OURS in young and r["reference"] in young:
            counts = (
                f"; young-generation collections per round: {young[OURS]} against "
                f"{young[r['reference']]}"
            )
        lines.append(
            f"{r['scenario']}, with the garbage collector paused (untimed check): "
            f"{fmt_value('time', ours)} against {r['reference']} {fmt_value('time', ref)}, "
            f"{ours / ref:.3g}× (with it: {fmt_ratio(r)}){counts}."
        )
    return "\n".join(lines)


def _ratio_span(checks: list[dict[str, Any]], stat: str, side: str, base: str) -> str:
    """``side`` over ``base`` in ``stat`` of each check: one ratio, or their range."""
    ratios = [c[stat][side] / c[stat][base] for c in checks]
    low, high = f"{min(ratios):.3g}", f"{max(ratios):.3g}"
    return f"{low}×" if low == high else f"{low}–{high}×"


def turns_note(rows: list[dict[str, Any]]) -> str:
    """Rows whose sides also took turns in one loop (``taking_turns``, an untimed check).

    The table sets each side's fastest round, timed in tests of their own, against
    the other's; taking turns puts a slow phase of the machine on every side, and
    the medians tell what a typical round costs, ours and the floor's, against the
    reference.  ``taking_turns`` is one check or a list of them (one per pass):
    each ratio is shown as its range over the passes.
    """
    lines = []
    for r in rows:
        checks = (r.get("ours_extra") or {}).get("taking_turns")
        if isinstance(checks, dict):
            checks = [checks]
        ref = r["reference"]
        checks = [
            c
            for c in checks or []
            if OURS in c["median_s"] and c["median_s"].get(ref) and c["best_s"].get(ref)
        ]
        if not checks:
            continue
        floor = all(c["median_s"].get("floor") and c["best_s"].get("floor") for c in checks)
        sides = [OURS, "floor"] if floor else [OURS]
        by_median = [f"{s} {_ratio_span(checks, 'median_s', s, ref)} {ref}" for s in sides]
        if floor:
            by_median.append(f"{OURS} {_ratio_span(checks, 'median_s', OURS, 'floor')} the floor")
        fastest = [f"{s} {_ratio_span(checks, 'best_s', s, ref)}" for s in sides]
        rounds = "/".join(str(c["rounds"]) for c in checks)
        passes = f"{len(checks)} pass" + ("es" if len(checks) > 1 else "")
        unit = "round" if rounds == "1" else "rounds"
        lines.append(
            f"{r['scenario']}, taking turns in one loop (untimed check, "
            f"{passes}, {rounds} {unit}): "
            f"by median, {', '.join(by_median)}; fastest rounds: {', '.join(fastest)} {ref}."
        )
    return "\n".join(lines)


def summary(rows: list[dict[str, Any]]) -> str:
    """One line: SPEC targets met, and each miss by kind.

    A miss is floor-bound (its floor misses the target too; then judged against
    its proposed target, if it has one), within reach (a floor that does what
    the SPEC requires meets the target), of unknown reach (only a loose floor
    meets it), or not judged against a floor; rows whose benchmark failed are
    errors.
    """
    targets = [r for r in rows if r["result"] != "info" and r["target"] != NO_TARGET]
    judged = [r for r in targets if r["result"] in ("PASS", "FAIL", "ERROR")]
    met = sum(r["result"] == "PASS" for r in judged)
    failed = [r for r in judged if r["result"] == "FAIL"]
    bound = [r for r in failed if r["floor_meets_target"] is False]
    proposed = [r for r in bound if r["proposed"] is not None]
    held = sum(r["verdict"].startswith("floor-bound: proposed PASS") for r in proposed)
    reach = [r for r in failed if r["floor_meets_target"] is True]
    scenarios = [r["scenario"] for r in rows]

    def name(r: dict[str, Any]) -> str:  # the target too, where two rows share a scenario
        shared = scenarios.count(r["scenario"]) > 1
        return f"{r['scenario']} ({r['target']})" if shared else str(r["scenario"])

    within = [name(r) for r in reach if r["floor_complete"]]
    unknown = [name(r) for r in reach if not r["floor_complete"]]
    unjudged = [name(r) for r in failed if r["floor_meets_target"] is None]
    errors = [name(r) for r in judged if r["result"] == "ERROR"]
    not_run = len(targets) - len(judged)
    parts = [
        f"{met}/{len(judged)} SPEC targets met"
        + (f" ({not_run} rows not run)" if not_run else "")
        + ".",
        f"{len(bound)} missed where the floor itself misses the target; "
        f"{held} of the {len(proposed)} with a proposed target meet it.",
        f"Missed but within the floor's reach: {'; '.join(within)}."
        if within
        else "No target missed that a complete floor meets.",
    ]
    if unknown:
        parts.append(f"Missed, reach unknown (only a loose floor meets it): {'; '.join(unknown)}.")
    if unjudged:
        parts.append(f"Missed, not judged against a floor: {'; '.join(unjudged)}.")
    if errors:
        parts.append(f"Benchmark errors: {'; '.join(errors)}.")
    return " ".join(parts)


def na_legend(rows: list[dict[str, Any]]) -> str:
    reasons: dict[str, list[str]] = {}
    for row in rows:
        for peer, state in row["status"].items():
            if state.startswith(NA):
                peers = reasons.setdefault(state.removeprefix(NA), [])
                if peer not in peers:
                    peers.append(peer)
    return "\n".join(f"  n/a = {reason}: {', '.join(peers)}" for reason, peers in reasons.items())


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
    }


def write_json(
    path: Path,
    rows: list[dict[str, Any]],
    bench_json: dict[str, Any],
    collector: Collector,
    info: dict[str, Any],
) -> None:
    raw = []
    for bench in bench_json.get("benchmarks", []):
        stats = bench["stats"]
        raw.append(
            {
                "name": bench["name"],
                "test": bench["name"].split("[")[0],
                "peer": bench.get("params", {}).get("peer"),
                "stats": {
                    k: stats[k] for k in ("min", "max", "mean", "median", "stddev", "rounds")
                },
                "extra_info": bench.get("extra_info", {}),
            }
        )
    doc = {
        **info,
        "peers": collector.peers,
        "rows": rows,
        "skipped": {
            f"{test}[{peer}]": reason
            for (test, peer), (outcome, reason) in collector.outcomes.items()
            if outcome == "skipped"
        },
        "failed": sorted(
            f"{test}[{peer}]"
            for (test, peer), (outcome, _) in collector.outcomes.items()
            if outcome == "failed"
        ),
        "benchmarks": raw,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n")


def chart(path: Path, rows: list[dict[str, Any]], peers: list[str], info: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    panels = [r for r in rows if r["key"] != "hit_int_floor"]  # same data as hit_int
    ncols = 3
    nrows = math.ceil((len(panels) + 1) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(18, 4.1 * nrows))
    flat = list(axes.flat)
    colors = {"ours": "#d62728", "ref": "#1f77b4", "other": "#9a9a9a", "floor": "#ff7f0e"}

    for ax, row in zip(flat, panels, strict=False):
        labels, values, tints, absent = [], [], [], []
        for peer in peers:
            state = row["status"].get(peer, "missing")
            if state != "ok" or row["values"][peer] is None:
                absent.append(peer if state.startswith(NA) else f"{peer} ({state})")
                continue
            value = float(row["values"][peer])
            if row["kind"] == "time":
                value *= 1e6  # µs
            elif row["kind"] == "latency":
                value /= 1e3  # µs
            labels.append(f"{peer} (stale)" if row["kind"] == "latency" else peer)
            values.append(value)
            tints.append(
                colors["ours"]
                if peer == OURS
                else colors["ref"]
                if peer == row["reference"]
                else colors["other"]
            )
        if row["key"] == "stale_crowd" and row["fresh_reference_ns"]:
            for peer, fresh in row["fresh_reference_ns"].items():
                labels.append(f"{peer} (fresh)")
                values.append(fresh / 1e3)
                tints.append(colors["ref"])
        floor_s = row.get("floor_s")
        floor_us = float(floor_s) * 1e6 if floor_s and row["kind"] == "time" else None
        finite = [v for v in [*values, floor_us or 0.0] if v > 0]
        y = range(len(labels))
        ax.barh(list(y), values, color=tints, height=0.6)
        ax.set_yticks(list(y), labels, fontsize=8)
        ax.invert_yaxis()
        if finite and max(finite) / min(finite) > 20:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # only the decades are labelled
        if floor_us is not None:  # the least the mechanism costs, same run (floors.py)
            ax.axvline(floor_us, color=colors["floor"], linestyle="--", linewidth=1.2)
        for yi, v in zip(y, values, strict=True):
            text = f"{v:,.0f}" if v >= 100 else f"{v:.3g}"
            ax.text(v, yi, " " + text, va="center", fontsize=7)
        unit = {
            "time": "µs per call (fastest round)",
            "count": "source calls",
            "bytes": "bytes per entry",
            "latency": "median µs per caller",
        }[row["kind"]]
        ratio = fmt_ratio(row)
        ax.set_title(
            f"{row['scenario']}\n{row['result']}: {ratio} (target {row['target']})",
            fontsize=9,
            color={"PASS": "#2ca02c", "info": "#555555"}.get(
                row["result"],
                "#ff7f0e" if row["verdict"].startswith("floor-bound: proposed PASS") else "#d62728",
            ),
        )
        xlabel = unit + ("  (log scale)" if ax.get_xscale() == "log" else "")
        if floor_us is not None:
            xlabel += f"\ndashed: floor {row['floor']} ({fmt_value('time', floor_s)})"
        if absent:
            xlabel += "\n" + textwrap.fill("n/a: " + ", ".join(absent), width=72)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.margins(x=0.15)

    lines = [
        "red bar: aiocache-swr   blue: the row's reference",
        "lower is better everywhere (time, calls, bytes)",
        "dashed orange line: the row's floor (benchmarks/floors.py), same run",
        "orange title: missed, but the floor misses it too; the proposed target is met",
        "",
    ]
    for r in rows:
        lines.append(f"{r['result']}  {r['scenario']}: {fmt_ratio(r)}  [{r['target']}]")
        if r["proposed"]:
            lines.append(
                f"      floor-bound (ours {r['ours_per_floor']:.2f}× the floor); "
                f"proposed {r['proposed']}: {r['verdict'].split(': proposed ')[-1]}"
            )
    spare = flat[len(panels) :]
    per_cell = math.ceil(len(lines) / len(spare))
    for n, ax in enumerate(spare):  # the legend, over the cells the panels left free
        ax.axis("off")
        text = "\n".join(lines[n * per_cell : (n + 1) * per_cell])
        ax.text(0.0, 1.0, text, va="top", fontsize=7.5, family="monospace")
    m = info["machine"]
    fig.suptitle(
        f"aiocache-swr benchmarks ({info['mode']} run) — {m['platform']}, "
        f"{m['cpu_count']} CPUs, {m['implementation']} {m['python']} — {info['date']}",
        fontsize=12,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer rounds")
    parser.add_argument(
        "--passes", type=int, default=None, help="passes over the suite (full: 2, quick: 1)"
    )
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "benchmarks.json")
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "benchmarks.png")
    args, pytest_args = parser.parse_known_args(argv)  # the rest goes to pytest (e.g. -k hit)

    if args.passes is not None and args.passes < 1:
        parser.error("--passes must be at least 1")
    passes = args.passes or (1 if args.quick else 2)
    started = dt.datetime.now(dt.timezone.utc)
    docs: list[dict[str, Any]] = []
    collectors: list[Collector] = []
    code = 0
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(passes):
            raw_path = Path(tmp) / f"pytest-benchmark-{n}.json"
            collectors.append(Collector())
            code = run_suite(args.quick, raw_path, pytest_args, collectors[-1]) or code
            if not raw_path.exists():
                print(f"report: pytest produced no benchmark results (exit status {code})")
                return code or 1
            docs.append(json.loads(raw_path.read_text()))
    bench_json = best_of(docs)
    collector = merge_outcomes(collectors)

    rows = figures(bench_json, collector)
    info = {
        "command": "python benchmarks/report.py" + (" --quick" if args.quick else ""),
        "mode": "quick" if args.quick else "full",
        "passes": passes,
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": round((dt.datetime.now(dt.timezone.utc) - started).total_seconds(), 1),
        "machine": machine(),
        "note": f"time figures: {STAT} round time / calls per round",
    }
    peers = collector.peers
    print()
    m = info["machine"]
    print(
        f"aiocache-swr benchmarks, {info['mode']} run ({passes} passes), {info['date']}: "
        f"{m['platform']}, "
        f"{m['cpu_count']} CPUs, {m['implementation']} {m['python']} ({info['duration_s']} s)"
    )
    print(table(rows, peers))
    print(na_legend(rows))
    print()
    print("Against the floors (benchmarks/floors.py), measured in this run:")
    print(floor_table(rows))
    print(summary(rows))
    for note in (gc_note(rows), turns_note(rows)):
        if note:
            print(note)
    write_json(args.json, rows, bench_json, collector, info)
    chart(args.png, rows, peers, info)
    print(f"wrote {args.json} and {args.png}")
    return 0 if code == 0 else int(code)


if __name__ == "__main__":
    sys.exit(main())
