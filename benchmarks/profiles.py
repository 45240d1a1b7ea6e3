"""Profile benchmark rows with py-spy: where this library's time goes, against the row's floor.

    python benchmarks/profiles.py                    # every row, into docs/profiles/
    python benchmarks/profiles.py l2-batch hit       # some rows
    python benchmarks/profiles.py --seconds 2 --out /tmp/p   # shorter, elsewhere

Each row runs in child processes: this library doing the row's calls, with the
decoration and data of the benchmark suite (``conftest.SWRPeer``), and the row's
floor (``floors.py``), taking turns (``--turns``) so that a slow phase of the
machine falls on both.  Once a child is set up and warm, py-spy (a ``bench``
dependency) attaches to it and samples it; then the child stops and reports how
many calls it made in how long, and how long the garbage collector ran meanwhile
(``gc.callbacks``).  py-spy reads the process from outside, so the
code runs at full speed (pyinstrument's per-call hooks made a level-2 batch four
times slower), and it sees every thread: the SQLite thread's share shows.  It
needs permission to trace another process (``ptrace``); when py-spy or a child
fails, this script prints what it said and stops.

A sample of the event loop's thread goes to the layer of its innermost frame
that is in one (``LAYERS``), or to "waiting" when the loop waits in ``select``
(for a timer, or for a SQLite thread to answer).  A sample of a SQLite thread
counts when it runs a job, not when it waits for one; a store has two (one
reads, one writes), and their samples add up where both run at once.  Figures are microseconds
per call: each layer's share of the samples times the mean wall time per call.
So they are means, collector pauses included, where ``report.py`` shows each
side's fastest round; the split between layers is what to read.

Writes ``<out>/<row>.txt``: the layers for ours and the floor side by side, then
each side's busiest lines by self time (a line's own work and the C calls it
makes, such as ``pickle.loads``; the collector's time lands on the line whose
allocation triggered it).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import itertools
import json
import os
import platform
import random
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # conftest and floors, as pytest imports them

import floors  # noqa: E402
from conftest import PRIME, Counter, SWRPeer  # noqa: E402

RATE = 250  # samples per second: py-spy's own work stays small beside the child's
READY_WITHIN = 120.0  # seconds a child may take to set up
CHILD_STOPS_WITHIN = 60.0  # seconds a child may take to stop once told (after its sampling)
WAITING = "waiting (select)"
SQLITE = "a SQLite thread, running a job"

#: Where a sample of the event loop's thread goes: the first layer, from the
#: innermost frame outwards, whose pattern matches the frame's file.
LAYERS: list[tuple[str, re.Pattern[str]]] = [
    ("store (loop side)", re.compile(r"aiocache_swr/_(sqlite|store)\.py$")),
    ("engine", re.compile(r"aiocache_swr/")),
    ("floor's own code", re.compile(r"floors\.py$")),
    ("aiosqlite (loop side)", re.compile(r"aiosqlite/")),
    ("asyncio", re.compile(r"(asyncio/|selectors\.py$|_weakrefset\.py$)")),
    ("the driver: its loop of calls, its source", re.compile(r"(profiles|conftest)\.py$")),
]
OTHER = "other"
TOP_LINES = 12


@dataclass(frozen=True)
class Row:
    title: str
    floor: str  # its name in floors.py


ROWS = {
    "hit": Row("fresh hit, 1 int argument", "ttl_lru_hit"),
    "miss": Row("miss overhead (100k distinct keys)", "single_flight"),
    "churn": Row("LRU churn (maxsize 1,000, 10,000 keys)", "single_flight"),
    "l2-read": Row("level-2 read, one at a time", "aiosqlite_round_trip"),
    "l2-batch": Row("level-2 reads, 1,000 keys at once", "batched_read"),
}
HIT_KEYS, HIT_CALLS = 64, 5_000
MISS_CALLS = 100_000  # the SPEC's figure, as in the benchmark suite
CHURN_MAXSIZE, CHURN_KEYSPACE, CHURN_CALLS = 1_000, 10_000, 10_000
L2_KEYS = 1_000

Once = Callable[[], Awaitable[int]]  # runs a round of calls, returns how many


# ----------------------------------------------------------------- the children


def _ours(row: str, runner: asyncio.Runner, peer: SWRPeer) -> Once:
    """This library doing ``row``'s calls, as the benchmark suite has it do them."""
    if row == "hit":
        f = peer.decorate(Counter().fn())
        for k in [PRIME, *range(HIT_KEYS)]:
            runner.run(f(k))
        keys = [i % HIT_KEYS for i in range(HIT_CALLS)]

        async def hits() -> int:
            for k in keys:
                await f(k)
            return len(keys)

        return hits
    if row == "miss":

        async def misses() -> int:
            g = peer.decorate(Counter().fn())  # empty: every call below misses
            for k in range(MISS_CALLS):
                await g(k)
            return MISS_CALLS

        return misses
    if row == "churn":
        return _churn(peer.decorate(Counter().fn(), maxsize=CHURN_MAXSIZE), runner)
    runner.run(peer.l2_populate(list(range(2 * L2_KEYS))))
    read = peer.l2_reader()
    if row == "l2-read":

        async def reads() -> int:
            for k in range(L2_KEYS):
                await read(k)
            return L2_KEYS

        return reads
    key_sets = itertools.cycle([range(L2_KEYS), range(L2_KEYS, 2 * L2_KEYS)])

    async def batch() -> int:
        await asyncio.gather(*(read(k) for k in next(key_sets)))
        return L2_KEYS

    return batch


def _floor(row: str, runner: asyncio.Runner, peer: SWRPeer) -> Once:
    """``row``'s floor.  A floor makes its calls ``floors.REPEAT`` times."""
    repeat = floors.REPEAT
    if row == "hit":
        return lambda: _counted(floors.ttl_lru_hit(HIT_CALLS), repeat * HIT_CALLS)
    if row == "miss":
        keys = list(range(MISS_CALLS))
        return lambda: _counted(floors.single_flight(keys), repeat * MISS_CALLS)
    if row == "churn":
        # The floor's cache, filled once as ours is (floors.single_flight fills a new
        # one for each repetition, which would count those misses too).
        return _churn(floors._single_flight_cache(CHURN_MAXSIZE), runner)
    # The level-2 floors read the rows the store wrote, from its own file.
    runner.run(peer.l2_populate(list(range(2 * L2_KEYS))))
    runner.run(peer.aclose())
    path = peer.store.path
    if row == "l2-read":
        return lambda: _counted(
            _connected(path, floors.aiosqlite_round_trip, L2_KEYS), repeat * L2_KEYS
        )
    key_sets = [list(range(L2_KEYS)), list(range(L2_KEYS, 2 * L2_KEYS))]
    calls = repeat * 2 * L2_KEYS
    return lambda: _counted(_connected(path, floors.batched_read, "bench.l2", key_sets), calls)


async def _connected(path: Path, floor: Callable[..., Awaitable[float]], *args: Any) -> float:
    """``floor(db, *args)`` on an aiosqlite connection of its own: this child has no
    store open (each side of a row runs in children of its own)."""
    import aiosqlite

    async with aiosqlite.connect(path) as db:
        return await floor(db, *args)


def _churn(f: Callable[[int], Coroutine[Any, Any, Any]], runner: asyncio.Runner) -> Once:
    """The churn row's calls of ``f`` (bounded to ``CHURN_MAXSIZE``), from a full LRU."""
    for k in range(CHURN_KEYSPACE):  # the steady state
        runner.run(f(k))
    rng = random.Random(1234)  # the benchmark's draw
    drawn = [rng.randrange(CHURN_KEYSPACE) for _ in range(CHURN_CALLS)]

    async def churn() -> int:
        for k in drawn:
            await f(k)
        return len(drawn)

    return churn


async def _counted(run: Awaitable[float], calls: int) -> int:
    await run
    return calls


class Collector:
    """A ``gc.callbacks`` entry: how often each generation is collected, and for how long."""

    def __init__(self) -> None:
        self.runs = [0, 0, 0]
        self.seconds = 0.0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._start
            self.runs[info["generation"]] += 1


def child(row: str, side: str, result: Path) -> None:
    """Set ``row`` up for ``side``; say it is ready, with the ids py-spy may give its
    event loop's thread; make calls until a line arrives on stdin; then write what
    was done to ``result``."""
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp, asyncio.Runner() as runner:
        peer = SWRPeer(Path(tmp))
        once = (_ours if side == "ours" else _floor)(row, runner, peer)
        runner.run(once())  # warm up: state made on first use, caches
        collector = Collector()
        gc.callbacks.append(collector)
        print(f"ready {threading.get_native_id()} {threading.get_ident()}", flush=True)
        calls, start = 0, time.perf_counter()
        while not stop.is_set():
            calls += runner.run(once())
        elapsed = time.perf_counter() - start
        gc.callbacks.remove(collector)
        runner.run(peer.aclose())
    done = {"calls": calls, "seconds": elapsed, "gc_seconds": collector.seconds}
    result.write_text(json.dumps({**done, "gc": collector.runs}))


# ------------------------------------------------------------------ the samples


@dataclass
class Profile:
    """One side: its samples, sorted into layers and lines, and what its calls took."""

    ticks: int = 0  # samples of the event loop's thread: one per tick, waiting or not
    layers: Tally[str] = field(default_factory=Tally)
    lines: Tally[str] = field(default_factory=Tally)  # the innermost frame: function (file:line)
    calls: int = 0
    seconds: float = 0.0  # that the calls took
    gc_seconds: float = 0.0  # of which, in the collector
    collections: list[int] = field(default_factory=lambda: [0, 0, 0])  # per generation

    def __iadd__(self, other: Profile) -> Profile:
        self.ticks += other.ticks
        self.layers += other.layers
        self.lines += other.lines
        self.calls += other.calls
        self.seconds += other.seconds
        self.gc_seconds += other.gc_seconds
        self.collections = [a + b for a, b in zip(self.collections, other.collections, strict=True)]
        return self

    def micros(self, samples: float) -> float:
        """Microseconds per call that ``samples`` of the event loop's thread stand for."""
        return samples / self.ticks * self.seconds / self.calls * 1e6 if self.ticks else 0.0


# py-spy's raw format, with --threads: "thread (TID): NAME;frame;...;frame COUNT", where
# TID is decimal (the native id) or hex (``threading.get_ident()``, where py-spy has no
# native id), ": NAME" is left out when py-spy could not read it, and the frames are
# left out when it read none.  Names are not used: py-spy can keep an ended thread's
# name for a new one that reuses its ident.  Nor is the stack's outer end: for a
# coroutine, py-spy may give only the frames above the task's step.
_LINE = re.compile(
    r"^thread \((?P<tid>0[xX][0-9a-fA-F]+|\d+)\)(?:: [^;]*)?(?:;(?P<stack>.*))? (?P<count>\d+)$"
)
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]*)(?::\d+)?\)$")


def frames(stack: str) -> list[tuple[str, str]]:
    """``(function, file)`` of each frame of a py-spy raw stack, outermost first."""
    out = []
    for part in stack.split(";"):
        m = _FRAME.match(part)
        out.append((m["func"], m["file"]) if m else (part, ""))
    return out


def layer_of(stack: list[tuple[str, str]]) -> str:
    func, file = stack[-1]
    if file.endswith("selectors.py") and func.endswith(".select"):
        return WAITING
    for _, file in reversed(stack):
        for name, pattern in LAYERS:
            if pattern.search(file):
                return name
    return OTHER


def reduce(lines: Iterable[str], loop_thread: Collection[int]) -> Profile:
    """Sort py-spy raw lines (``--threads --idle``) of a child into a :class:`Profile`;
    ``loop_thread``: the ids py-spy may give the child's event loop thread."""
    profile = Profile()
    for line in lines:
        m = _LINE.match(line.rstrip("\n"))
        if m is None:
            continue
        count, stack = int(m["count"]), frames(m["stack"] or "")
        if int(m["tid"], 0) in loop_thread:
            profile.ticks += count
            layer = layer_of(stack) if m["stack"] else OTHER
            profile.layers[layer] += count
            if layer != WAITING and m["stack"]:
                profile.lines[m["stack"].rsplit(";", 1)[-1]] += count
        elif (
            any(func == "_connection_worker_thread" for func, _ in stack)
            and stack[-1][0] != "_connection_worker_thread"
        ):
            # aiosqlite's thread, inside a job.  Innermost in its own loop, it waits
            # for a job (in a C call: aiosqlite >= 0.22 takes jobs from a SimpleQueue);
            # the few samples taken between two jobs are left out with those.
            profile.layers[SQLITE] += count
    return profile


# ------------------------------------------------------------------ the parent


def py_spy() -> str:
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        sys.exit("profiles.py: py-spy is not installed (pip install -e '.[bench]')")
    return spy


class ProfileError(Exception):
    """A child or py-spy failed: the message says which, and what they printed."""


def record(row: str, side: str, seconds: int, work: Path) -> Profile:
    """Profile ``side`` of ``row`` for ``seconds`` in a child process (files in ``work``)."""
    turn = work / f"{row}-{side}-{len(list(work.iterdir()))}"
    raw, result = turn.with_suffix(".raw"), turn.with_suffix(".json")
    command = [sys.executable, __file__, "--child", row, side, str(result)]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as c:
        try:
            ids = _ready(c, READY_WITHIN)
            # fmt: off
            sampler = [
                py_spy(), "record", "--pid", str(c.pid), "--duration", str(seconds),
                "--rate", str(RATE), "--format", "raw", "--threads", "--idle", "--nonblocking",
                "--output", str(raw),
            ]
            # fmt: on
            spy = subprocess.run(sampler, capture_output=True, text=True, check=False)
            _, errors = c.communicate("stop\n", timeout=CHILD_STOPS_WITHIN + seconds)
        finally:
            if c.poll() is None:
                c.kill()
    if c.returncode != 0:
        raise ProfileError(f"the {side} child of {row} failed:\n{errors.strip()}")
    if spy.returncode != 0 or not raw.exists():
        raise ProfileError(f"py-spy could not sample {row} ({side}):\n{spy.stderr.strip()}")
    done = json.loads(result.read_text())
    with raw.open() as lines:
        profile = reduce(lines, loop_thread=ids)
    if not profile.ticks:
        raise ProfileError(f"no sample of the event loop's thread in {raw.name}: {ids=}")
    profile.calls, profile.seconds = done["calls"], done["seconds"]
    profile.gc_seconds, profile.collections = done["gc_seconds"], done["gc"]
    return profile


def _ready(c: subprocess.Popen[str], timeout: float) -> set[int]:
    """Wait for the child's "ready" line; the thread ids it gives."""
    assert c.stdout is not None
    readable, _, _ = select.select([c.stdout], [], [], timeout)
    line = c.stdout.readline() if readable else ""
    words = line.split()
    if len(words) != 3 or words[0] != "ready":
        c.kill()
        _, errors = c.communicate()
        raise ProfileError(f"the child did not get ready ({line!r}):\n{errors.strip()}")
    return {int(words[1]), int(words[2])}


def figures(p: Profile) -> dict[str, float]:
    """``p``'s lines of the table, in order: label -> figure."""
    out = {f"  {name}": p.micros(p.layers[name]) for name, _ in [*LAYERS, (OTHER, None)]}
    out[f"  {WAITING}"] = p.micros(p.layers[WAITING])
    out["  the whole call (wall time)"] = p.seconds / p.calls * 1e6
    out["  of which the garbage collector (timed, any thread)"] = p.gc_seconds / p.calls * 1e6
    for g in range(3):
        out[f"  collections of generation {g}, per 1,000 calls"] = 1000 * p.collections[g] / p.calls
    out[SQLITE] = p.micros(p.layers[SQLITE])
    return out


def render(row: str, ours: Profile, floor: Profile, turns: int, per_turn: int) -> str:
    spec = ROWS[row]
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"{spec.title} ({row}): where the time goes, against its floor (floors.{spec.floor})",
        f"py-spy, {RATE} samples/s, {turns} turns of {per_turn} s per side "
        f"({ours.ticks:,} and {floor.ticks:,} samples of the event loop's thread); "
        f"CPython {platform.python_version()}, {os.cpu_count()} CPUs, {now}",
        f"Regenerate: python benchmarks/profiles.py {row}",
        "",
        f"{'microseconds per call (means)':<52}{'ours':>10}{'floor':>10}",
        "the event loop's thread:",
    ]

    mine, theirs = figures(ours), figures(floor)
    layers = {f"  {name}" for name, _ in LAYERS} | {f"  {OTHER}", f"  {WAITING}", SQLITE}
    for label, value in mine.items():
        if label not in layers or max(value, theirs[label]) >= 0.0005:  # leave out empty layers
            lines.append(f"{label:<52}{value:10.3f}{theirs[label]:10.3f}")
    lines.append("(a floor's loop of calls is its own code, but for churn's: the driver's)")
    for name, side in (("ours", ours), ("the floor", floor)):
        lines += ["", f"{name}: the event loop thread's busiest lines, by self time (µs per call)"]
        for where, count in side.lines.most_common(TOP_LINES):
            lines.append(f"  {side.micros(count):8.3f}  {where}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("rows", nargs="*", metavar="ROW", help="any of " + ", ".join(ROWS))
    parser.add_argument("--seconds", type=float, default=12.0, help="sampled, per side and row")
    parser.add_argument(
        "--turns",
        type=int,
        default=4,
        help="the sides take turns, so a slow phase of the machine falls on both",
    )
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs" / "profiles")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        row, side, result = args.child
        child(row, side, Path(result))
        return 0
    unknown = sorted(set(args.rows) - set(ROWS))
    if unknown:
        parser.error(f"unknown rows {unknown}: choose from {', '.join(ROWS)}")
    py_spy()
    per_turn = max(1, round(args.seconds / args.turns))  # py-spy samples whole seconds
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        for row in args.rows or list(ROWS):
            ours, floor = Profile(), Profile()
            try:
                for _ in range(args.turns):
                    ours += record(row, "ours", per_turn, Path(work))
                    floor += record(row, "floor", per_turn, Path(work))
            except ProfileError as exc:
                print(f"profiles.py: {exc}", file=sys.stderr)
                return 1
            text = render(row, ours, floor, args.turns, per_turn)
            (args.out / f"{row}.txt").write_text(text)
            print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
