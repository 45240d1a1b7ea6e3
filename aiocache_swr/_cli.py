"""The ``aiocache-swr`` command line (``python -m aiocache_swr``).

``demo`` runs a self-contained demonstration.  The other commands inspect and
maintain a cache file written by :class:`~aiocache_swr.SQLiteStore`, for an
operator:

* ``stats PATH``   rows per namespace, expired/unexpired/no-expiry counts, sizes, ages
* ``ls PATH``      the rows: namespace, key, age, expiry, size, tags (values only with ``--values``)
* ``purge PATH``   delete rows: ``--expired``, ``--namespace NS``, ``--tag TAG`` or ``--all``
* ``vacuum PATH``  rebuild the file to give free pages back to the file system

The commands are synchronous and use :mod:`sqlite3` directly.  ``stats`` and
``ls`` open the file read-only (``mode=ro``).  Nothing is deserialized unless
``ls --values`` is given: values are pickled by default, and unpickling runs
code.  ``purge`` deletes with plain ``DELETE`` statements on ``swr_entries`` so
the schema's triggers keep the tag table and the row counter right, in one
``BEGIN IMMEDIATE`` transaction (waiting up to a busy timeout for processes
using the file).

What the file can and cannot tell: a row stores when its value was computed
(``created``) and when it stops being servable at all (``expires`` = created +
ttl + stale_ttl, or none when either is unlimited).  The ``ttl`` itself is not
stored, so whether an unexpired row is *fresh* or *stale* is not knowable here;
an *expired* row would be recomputed by the next call and is purged by the
library's next write batch.

Exit status: 0 success, 1 operational error (one line on stderr), 2 usage error;
141 (128 + SIGPIPE, as for ``cat`` or ``grep``) when whoever reads the output
stops reading it (``| head``), quietly; 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import json
import math
import os
import pickle
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from ._sqlite import SCHEMA_VERSION, SQLiteStore

__all__ = ["CliError", "main"]

PROG = "aiocache-swr"
_EXIT_PIPE_CLOSED = 128 + 13  # what a shell reports for a command killed by SIGPIPE
_EXIT_INTERRUPTED = 128 + 2  # ... and by SIGINT
_SQLITE_MAGIC = b"SQLite format 3\x00"
_BUSY_TIMEOUT = 5.0  # seconds purge/vacuum wait for another process's lock
_REQUIRED_TABLES = ("swr_entries", "swr_tags", "swr_meta")
# Schema versions these commands read (and purge/vacuum), with the ORDER BY of
# "newest written first": version 1 numbered writes in ``written``; version 2
# deletes a rewritten key and inserts it again, so it gets the highest rowid.
_NEWEST_FIRST = {1: "written DESC", 2: "rowid DESC"}
assert max(_NEWEST_FIRST) == SCHEMA_VERSION
_MAX_SQLITE_INT = 2**63 - 1  # the largest ls --limit: SQLite's integers are 64-bit
_KEY_WIDTH = 48
_VALUE_WIDTH = 60
# What a stored time can be: the library writes seconds since the epoch, but a
# hand-edited file may hold text, a blob, an infinity or 1e300 in their place.
_MAX_TIME = 1e11  # seconds since the epoch: about the year 5138
_CREATED_IS_A_TIME = f"(typeof(created) IN ('integer', 'real') AND abs(created) < {_MAX_TIME:.0f})"

_PICKLE_WARNING = (
    "warning: --values unpickles every listed row, and unpickling runs code: whoever can "
    "write this file can run code in this process. Use it only on a file whose writers "
    "you trust."
)
_PICKLE_WARNING_UNVERIFIED = " Pass --secret (or --secret-env) to check signatures first."
_PICKLE_WARNING_VERIFIED = " Rows are unpickled only when their signature verifies (--secret)."


class CliError(Exception):
    """An operational error: printed as one line on stderr, exit status 1."""


_Command = Callable[[argparse.Namespace, TextIO, TextIO], int]


# ---------------------------------------------------------------- formatting


def _human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _human_duration(seconds: float) -> str:
    """``42s``, ``5m07s``, ``3h02m``, ``12d04h``; negative for the future."""
    if seconds < 0:
        return "-" + _human_duration(-seconds)
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _seconds(value: object) -> float | None:
    """A stored ``created`` or ``expires`` as seconds; None unless it is a time."""
    if isinstance(value, int | float) and abs(value) < _MAX_TIME:
        return float(value)
    return None


def _as_stored(value: object) -> object:
    """A stored value for JSON: text, a finite number or None as it is, anything else as repr."""
    if value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return repr(value)


def _tags(tags_json: object) -> list[object]:
    """A row's ``tags`` column as a list: the JSON list of text the library writes, or
    (a hand-edited file) a one-item list of the column as stored (``_as_stored``)."""
    if tags_json is None:
        return []
    if isinstance(tags_json, str):
        try:
            tags = json.loads(tags_json)
        except (ValueError, RecursionError):
            tags = None
        if isinstance(tags, list) and all(isinstance(tag, str) for tag in tags):
            return list(tags)
    return [_as_stored(tags_json)]


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return None


def _printable(value: object) -> str:
    """A stored namespace, key or tag for the terminal: text with its control characters
    escaped, so that it cannot mess up the terminal; anything else (a blob or a number in
    a hand-edited file) as its repr, e.g. ``b'\\x00\\xff'``."""
    if not isinstance(value, str):
        return repr(value)
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _table(out: TextIO, headers: Sequence[str], rows: Sequence[Sequence[str]], right: str) -> None:
    """Print aligned columns; ``right`` holds 'r' for right-aligned columns, 'l' otherwise."""
    widths = [len(h) for h in headers]
    for r in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, r, strict=True)]

    def fmt(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if align == "r" else c.ljust(w)
            for c, w, align in zip(cells, widths, right, strict=True)
        ]
        return "  ".join(parts).rstrip()

    print(fmt(headers), file=out)
    print(fmt(["-" * w for w in widths]), file=out)
    for r in rows:
        print(fmt(r), file=out)


def _dump_json(out: TextIO, obj: object) -> None:
    json.dump(obj, out, indent=2, ensure_ascii=False)
    out.write("\n")


# ----------------------------------------------------------------- the file


def _check_file(path: Path) -> None:
    try:
        if not path.exists():
            raise CliError(f"{path}: no such file")
        if path.is_dir():
            raise CliError(f"{path}: is a directory, not a cache file")
        with path.open("rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise CliError(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    if head and head != _SQLITE_MAGIC:
        raise CliError(f"{path}: not a SQLite database, so not an aiocache-swr cache file")


def _connect(path: Path, *, write: bool) -> sqlite3.Connection:
    """Open an existing cache file (never creating one) and check it is one we can read."""
    _check_file(path)
    mode = "rw" if write else "ro"
    uri = f"{path.resolve().as_uri()}?mode={mode}"
    try:
        db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=_BUSY_TIMEOUT)
    except sqlite3.Error as exc:
        raise CliError(f"{path}: cannot open it: {exc}") from exc
    try:
        _check_schema(db, path)
    except BaseException:
        db.close()
        raise
    return db


def _check_schema(db: sqlite3.Connection, path: Path) -> None:
    """Raise unless the file is a cache with a schema version in ``_NEWEST_FIRST``."""
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = {
            name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
    except sqlite3.DatabaseError as exc:
        if _side_files_blocked(path):
            name, directory = path.resolve().name, path.resolve().parent
            raise CliError(
                f"{path}: cannot open it: SQLite must create {name}-shm and {name}-wal beside"
                f" a WAL-mode file, even to read it, and the directory {directory} is not"
                " writable; copy the file (with its -wal, if any) to a directory you can write to"
            ) from exc
        raise CliError(f"{path}: not a usable SQLite database ({exc})") from exc
    if version > SCHEMA_VERSION:
        raise CliError(
            f"{path}: written by a newer aiocache-swr (schema version {version}; this one "
            f"reads versions up to {SCHEMA_VERSION}); upgrade aiocache-swr"
        )
    missing = [t for t in _REQUIRED_TABLES if t not in tables]
    if missing:
        raise CliError(
            f"{path}: a SQLite database but not an aiocache-swr cache "
            f"(no {', '.join(missing)} table)"
        )
    if version not in _NEWEST_FIRST:
        raise CliError(
            f"{path}: has schema version {version}, not one this aiocache-swr knows "
            f"({', '.join(map(str, _NEWEST_FIRST))})"
        )


def _side_files_blocked(path: Path) -> bool:
    """SQLite cannot open ``path`` because it cannot make its side files: the file is in
    WAL mode (header bytes 18 and 19 are 2), whose readers too need its ``-shm`` and
    ``-wal`` files, one of them is missing, and the directory is not writable."""
    real = path.resolve()  # SQLite puts the side files beside the file a link names
    try:
        with real.open("rb") as f:
            head = f.read(20)
    except OSError:
        return False
    return (
        head[18:20] == b"\x02\x02"
        and not (os.path.lexists(f"{real}-shm") and os.path.lexists(f"{real}-wal"))
        and not os.access(real.parent, os.W_OK)
    )


def _schema_version(db: sqlite3.Connection) -> int:
    """The file's schema version (one ``_check_schema`` accepted)."""
    version: int = db.execute("PRAGMA user_version").fetchone()[0]
    return version


def _file_sizes(path: Path) -> tuple[int, int]:
    """(database file bytes, -wal file bytes)."""
    size = path.stat().st_size
    try:
        wal = os.stat(f"{path}-wal").st_size
    except OSError:
        wal = 0
    return size, wal


# ------------------------------------------------------------------- stats


def _cmd_stats(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    path = Path(args.path)
    now = time.time()
    with contextlib.closing(_connect(path, write=False)) as db:
        db.execute("BEGIN")  # one snapshot for every query below
        version = _schema_version(db)
        per_ns = db.execute(
            "SELECT namespace, count(*),"
            " coalesce(sum(expires IS NOT NULL AND expires < :now), 0),"
            " coalesce(sum(expires IS NOT NULL AND expires >= :now), 0),"
            " coalesce(sum(expires IS NULL), 0),"
            " coalesce(sum(length(blob)), 0),"
            f" min(CASE WHEN {_CREATED_IS_A_TIME} THEN created END),"
            f" max(CASE WHEN {_CREATED_IS_A_TIME} THEN created END),"
            f" coalesce(sum(mac IS NOT NULL), 0), coalesce(sum(NOT {_CREATED_IS_A_TIME}), 0)"
            " FROM swr_entries GROUP BY namespace ORDER BY namespace",
            {"now": now},
        ).fetchall()
        counter_row = db.execute("SELECT value FROM swr_meta WHERE name = 'entries'").fetchone()
        distinct_tags, tagged = db.execute(
            "SELECT count(DISTINCT tag), count(DISTINCT namespace || char(0) || key) FROM swr_tags"
        ).fetchone()
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        free_pages = db.execute("PRAGMA freelist_count").fetchone()[0]
        db.execute("COMMIT")
    size, wal = _file_sizes(path)
    namespaces = [
        {
            "namespace": _as_stored(ns),
            "entries": n,
            "expired": expired,
            "unexpired": unexpired,
            "no_expiry": no_expiry,
            "value_bytes": value_bytes,
            "signed": signed,
            "oldest_created": oldest,
            "newest_created": newest,
            "bad_created": bad,
        }
        for ns, n, expired, unexpired, no_expiry, value_bytes, oldest, newest, signed, bad in per_ns
    ]
    total = sum(int(ns["entries"]) for ns in namespaces)
    olds = [float(ns["oldest_created"]) for ns in namespaces if ns["oldest_created"] is not None]
    news = [float(ns["newest_created"]) for ns in namespaces if ns["newest_created"] is not None]
    report: dict[str, Any] = {
        "path": str(path.resolve()),
        "now": now,
        "file_bytes": size,
        "wal_bytes": wal,
        "free_bytes": page_size * free_pages,
        "schema_version": version,
        "entries": total,
        "entries_counter": None if counter_row is None else counter_row[0],
        "expired": sum(int(ns["expired"]) for ns in namespaces),
        "unexpired": sum(int(ns["unexpired"]) for ns in namespaces),
        "no_expiry": sum(int(ns["no_expiry"]) for ns in namespaces),
        "value_bytes": sum(int(ns["value_bytes"]) for ns in namespaces),
        "signed": sum(int(ns["signed"]) for ns in namespaces),
        "distinct_tags": distinct_tags,
        "tagged_entries": tagged,
        "oldest_created": min(olds) if olds else None,
        "newest_created": max(news) if news else None,
        "bad_created": sum(int(ns["bad_created"]) for ns in namespaces),
        "namespaces": namespaces,
    }
    if args.json:
        _dump_json(out, report)
        return 0

    def when(ts: float | None) -> str:
        if ts is None:
            return "-"
        return f"{_iso(ts)} ({_human_duration(now - ts)} ago)"

    def ago(ts: float | None) -> str:
        return "-" if ts is None else _human_duration(now - ts)

    counter = report["entries_counter"]
    lines = [
        ("file", report["path"]),
        (
            "size",
            f"{_human_size(size)} (+ {_human_size(wal)} WAL; {_human_size(page_size * free_pages)}"
            f" free{', `vacuum` gives it back' if free_pages else ''})",
        ),
        ("schema", f"version {version}"),
        ("entries", f"{total}" + ("" if counter == total else f" (row counter says {counter}!)")),
        ("expired", f"{report['expired']} (past ttl + stale_ttl: recomputed on the next call)"),
        ("unexpired", f"{report['unexpired']} (fresh or stale: the file does not store ttl)"),
        ("no expiry", f"{report['no_expiry']} (ttl or stale_ttl is None: servable until replaced)"),
        ("values", _human_size(report["value_bytes"])),
        ("signed rows", f"{report['signed']} (HMAC, from SQLiteStore(secret=...))"),
        ("tags", f"{distinct_tags} distinct, on {tagged} entries"),
        ("oldest entry", when(report["oldest_created"])),
        ("newest entry", when(report["newest_created"])),
    ]
    if report["bad_created"]:
        lines.append(
            (
                "bad rows",
                f"{report['bad_created']} whose created is not a time (hand-edited?): oldest"
                " and newest leave them out; `ls` shows them as stored",
            )
        )
    for label, text in lines:
        print(f"{label + ':':<14}{text}", file=out)
    if namespaces:
        print(file=out)
        _table(
            out,
            [
                "namespace",
                "entries",
                "expired",
                "unexpired",
                "no expiry",
                "values",
                "oldest",
                "newest",
            ],
            [
                [
                    _clip(_printable(ns["namespace"]), _KEY_WIDTH),
                    str(ns["entries"]),
                    str(ns["expired"]),
                    str(ns["unexpired"]),
                    str(ns["no_expiry"]),
                    _human_size(int(ns["value_bytes"])),
                    ago(ns["oldest_created"]),
                    ago(ns["newest_created"]),
                ]
                for ns in namespaces
            ],
            "lrrrrrrr",
        )
    return 0


# ---------------------------------------------------------------------- ls


@dataclass
class _Decoded:
    signature: str  # "ok", "bad", "unsigned", "unchecked"
    value: str | None = None
    value_type: str | None = None
    version: str | None = None
    error: str | None = None


def _secret_of(args: argparse.Namespace) -> bytes | None:
    """The ``--secret`` (or ``--secret-env``) value as bytes: text in UTF-8, as
    ``SQLiteStore(secret=str)`` encodes it, and bytes that are not text back as they
    were given (Python decodes them to lone surrogates, ``surrogateescape``), as a
    service would pass them in ``SQLiteStore(secret=b"...")``."""
    if args.secret_env is not None:
        value = os.environ.get(args.secret_env)
        if not value:
            raise CliError(
                f"--secret-env {args.secret_env}: that environment variable is empty or unset"
            )
        return value.encode("utf-8", "surrogateescape")
    if args.secret is not None:
        if not args.secret:
            raise CliError("--secret is empty")
        return str(args.secret).encode("utf-8", "surrogateescape")
    return None


def _decoder(
    path: Path, serializer: str, secret: bytes | None
) -> Callable[[str, str, bytes, float, float | None, str | None, bytes | None], _Decoded]:
    """Checks a row's signature (with ``secret``), then deserializes it.

    Built once ``_connect`` accepted ``path``: the store that signs is never opened,
    and its resolved path is a plain file name even when ``path`` reads as
    ``:memory:`` or a ``file:`` URI, names SQLiteStore refuses.
    """
    loads: Callable[[bytes], Any] = json.loads if serializer == "json" else pickle.loads
    signer: SQLiteStore | None = None
    if secret is not None:
        try:
            signer = SQLiteStore(path.resolve(), secret=secret)
        except (TypeError, ValueError) as exc:
            raise CliError(f"{path}: cannot check signatures: {exc}") from exc

    def decode(
        namespace: str,
        key: str,
        blob: bytes,
        created: float,
        expires: float | None,
        tags_json: str | None,
        mac: bytes | None,
    ) -> _Decoded:
        if not isinstance(blob, bytes):
            return _Decoded("unchecked", error="the value is not a blob")
        status = "unchecked"
        if signer is not None:
            if not isinstance(mac, bytes):
                return _Decoded("unsigned", error="not signed: not deserialized")
            try:
                expected = signer._sign(
                    namespace,
                    key,
                    blob,
                    float(created),
                    None if expires is None else float(expires),
                    tags_json if isinstance(tags_json, str) else None,
                )
            except (AttributeError, TypeError, ValueError):  # a hand-edited row: not text
                expected = b""
            if not hmac.compare_digest(mac, expected):
                return _Decoded("bad", error="bad signature: not deserialized")
            status = "ok"
        try:
            data = loads(blob)
            if not isinstance(data, (tuple, list)) or len(data) != 2:
                raise ValueError(f"expected a (value, version) pair, got {type(data).__name__}")
            value, version = data
            return _Decoded(status, repr(value), type(value).__qualname__, repr(version))
        except Exception as exc:
            return _Decoded(status, error=f"cannot deserialize: {type(exc).__name__}: {exc}")

    return decode


def _cmd_ls(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    path = Path(args.path)
    secret = _secret_of(args)
    now = time.time()
    where, params = (
        ("WHERE namespace = ?", [args.namespace]) if args.namespace is not None else ("", [])
    )
    columns = "namespace, key, created, expires, length(blob), tags, mac IS NOT NULL"
    if args.values:
        columns += ", blob, mac"
    limit = "" if args.limit == 0 else f" LIMIT {int(args.limit)}"
    with contextlib.closing(_connect(path, write=False)) as db:
        decode = _decoder(path, args.serializer, secret) if args.values else None
        db.execute("BEGIN")
        total = db.execute(f"SELECT count(*) FROM swr_entries {where}", params).fetchone()[0]
        order = _NEWEST_FIRST[_schema_version(db)]
        cursor = db.execute(
            f"SELECT {columns} FROM swr_entries {where} ORDER BY {order}{limit}", params
        )
        if args.values and args.serializer == "pickle":
            more = _PICKLE_WARNING_UNVERIFIED if secret is None else _PICKLE_WARNING_VERIFIED
            print(_PICKLE_WARNING + more, file=err, flush=True)
        entries: list[dict[str, Any]] = []
        for row in cursor:
            namespace, key, created, expires, size, tags_json, signed = row[:7]
            created_at, expires_at = _seconds(created), _seconds(expires)
            entry: dict[str, Any] = {
                "namespace": _as_stored(namespace),
                "key": _as_stored(key),
                "created": _as_stored(created),
                "age_seconds": None if created_at is None else now - created_at,
                "expires": _as_stored(expires),
                "expired": None if expires_at is None else expires_at < now,
                "size": size,
                "tags": _tags(tags_json),
                "signed": bool(signed),
            }
            if decode is not None:
                d = decode(namespace, key, row[7], created, expires, tags_json, row[8])
                entry.update(
                    signature=d.signature,
                    value=d.value,
                    value_type=d.value_type,
                    version=d.version,
                    error=d.error,
                )
            entries.append(entry)
        db.execute("COMMIT")
    if args.json:
        _dump_json(
            out,
            {
                "path": str(path.resolve()),
                "now": now,
                "total": total,
                "shown": len(entries),
                "entries": entries,
            },
        )
        return 0
    headers = ["namespace", "key", "age", "expires", "size", "tags", "signed"]
    align = "llrrrll"
    if decode is not None:
        headers += ["check", "value"]
        align += "ll"
    rows: list[list[str]] = []
    for e in entries:
        expires, expires_at = e["expires"], _seconds(e["expires"])
        if expires is None:
            expiry = "never"
        elif expires_at is None:  # not a time (a hand-edited file): as stored
            expiry = _clip(_printable(repr(expires)), 20)
        elif expires_at < now:
            expiry = f"{_human_duration(now - expires_at)} ago"
        else:
            expiry = f"in {_human_duration(expires_at - now)}"
        age = e["age_seconds"]
        cells = [
            _clip(_printable(e["namespace"]), _KEY_WIDTH),
            _clip(_printable(e["key"]), _KEY_WIDTH),
            _clip(_printable(repr(e["created"])), 20) if age is None else _human_duration(age),
            expiry,
            _human_size(e["size"]),
            _clip(_printable(",".join(map(str, e["tags"]))), 30),
            "yes" if e["signed"] else "no",
        ]
        if decode is not None:
            shown = e["value"] if e["error"] is None else f"<{e['error']}>"
            cells += [e["signature"], _clip(_printable(str(shown)), _VALUE_WIDTH)]
        rows.append(cells)
    if rows:
        _table(out, headers, rows, align)
    more = f" (--limit {args.limit}; --limit 0 shows all)" if len(entries) < total else ""
    print(f"{len(entries)} of {total} entries{more}", file=out)
    return 0


# ------------------------------------------------------------------- purge

_TAG_SELECT = (
    "rowid IN (SELECT e.rowid FROM swr_tags AS t JOIN swr_entries AS e"
    " ON e.namespace = t.namespace AND e.key = t.key WHERE t.tag = ?)"
)


def _cmd_purge(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    path = Path(args.path)
    now = time.time()
    if args.expired:
        selector, where, params = "expired", "expires < ?", [now]
    elif args.namespace is not None:
        selector, where, params = f"namespace {args.namespace!r}", "namespace = ?", [args.namespace]
    elif args.tag is not None:
        selector, where, params = f"tag {args.tag!r}", _TAG_SELECT, [args.tag]
    else:
        selector, where, params = "all", "1", []
    with contextlib.closing(_connect(path, write=not args.dry_run)) as db:
        try:
            db.execute("BEGIN" if args.dry_run else "BEGIN IMMEDIATE")
            counts = db.execute(
                f"SELECT namespace, count(*) FROM swr_entries WHERE {where}"
                " GROUP BY namespace ORDER BY namespace",
                params,
            ).fetchall()
            removed = sum(n for _, n in counts)
            if not args.dry_run and removed:
                # Through the triggers: they keep swr_tags and the row counter right.
                deleted = db.execute(f"DELETE FROM swr_entries WHERE {where}", params).rowcount
                if deleted != removed:
                    raise CliError(
                        f"{path}: expected to delete {removed} rows, deleted {deleted}; rolled back"
                    )
            left = db.execute("SELECT value FROM swr_meta WHERE name = 'entries'").fetchone()
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise
    report = {
        "path": str(path.resolve()),
        "selector": selector,
        "dry_run": bool(args.dry_run),
        "removed": removed,
        "by_namespace": {str(_as_stored(ns)): n for ns, n in counts},
        "entries_left": None if left is None else (left[0] - removed if args.dry_run else left[0]),
    }
    if args.json:
        _dump_json(out, report)
        return 0
    verb = "would remove" if args.dry_run else "removed"
    print(
        f"{verb} {removed} entr{'y' if removed == 1 else 'ies'} ({selector});"
        f" {report['entries_left']} left",
        file=out,
    )
    for ns, n in counts:
        print(f"  {n:>8}  {_printable(ns)}", file=out)
    if removed and not args.dry_run:
        print(
            "processes using the file keep their in-memory copies; `vacuum` shrinks the file",
            file=out,
        )
    return 0


# ------------------------------------------------------------------ vacuum


def _cmd_vacuum(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    path = Path(args.path)
    before = sum(_file_sizes(path)) if path.is_file() else 0
    with contextlib.closing(_connect(path, write=True)) as db:
        db.execute("VACUUM")
        with contextlib.suppress(sqlite3.Error):
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("PRAGMA optimize")
    after = sum(_file_sizes(path))
    if args.json:
        _dump_json(out, {"path": str(path.resolve()), "bytes_before": before, "bytes_after": after})
    else:
        print(
            f"vacuumed {path}: {_human_size(before)} -> {_human_size(after)} (file + WAL)", file=out
        )
    return 0


# ------------------------------------------------------------------ parser


def _cmd_demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ._demo import DemoFileError, DemoFileExists, run_demo

    path: Path | None = None
    if args.path is not None:
        path = Path(args.path)
        if not args.path.strip():
            raise CliError(f"--path {args.path!r} names no file; give a file name, e.g. demo.db")
        # Path() drops a trailing '/' or '/.': the demo would make a file there.
        if args.path.rpartition("/")[2] in ("", ".", ".."):
            raise CliError(
                f"{args.path}: names a directory; give --path a file in it, "
                f"e.g. --path {args.path.rstrip('/')}/demo.db"
            )
        try:
            # As the store resolves it: 'missing/../cache.db' or '~/cache.db' may name a file.
            resolved = path.expanduser().resolve()
        except (OSError, RuntimeError) as exc:  # an unknown ~user, a symlink loop
            raise CliError(f"{path}: cannot use this path ({exc})") from exc
        if os.path.lexists(resolved) or os.path.lexists(path.expanduser()):  # a dangling link
            raise CliError(f"{path}: already exists; the demo writes a new file")
        try:
            SQLiteStore(path)  # what exists is refused above: this refuses ':memory:', 'file:...'
        except ValueError as exc:
            if args.path.strip() and (args.path == ":memory:" or args.path.startswith("file:")):
                raise CliError(
                    f"{path}: SQLiteStore takes neither ':memory:' nor a 'file:' URI for a "
                    "file; give --path a plain file name, e.g. --path demo.db"
                ) from exc
            raise CliError(f"{args.path!r}: {exc}") from exc
    try:
        return run_demo(out, path)
    except DemoFileExists as exc:
        raise CliError(str(exc)) from exc
    except DemoFileError as exc:
        raise CliError(f"{exc}; give --path a file in a directory you can write to") from exc


def _non_negative_int(text: str) -> int:
    """A ``--limit``: 0 (no limit) up to the largest integer SQLite holds."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0: no limit), got {n}")
    if n > _MAX_SQLITE_INT:
        raise argparse.ArgumentTypeError(
            f"must be at most {_MAX_SQLITE_INT} (0: no limit), got {n}"
        )
    return n


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="aiocache-swr: a demo, and tools for inspecting and maintaining a cache file "
        "written by SQLiteStore.",
        epilog="Exit status: 0 success, 1 operational error, 2 usage error, 141 output "
        "closed early (| head), 130 interrupted.",
    )
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        parser.add_argument(
            "--version", action="version", version=f"%(prog)s {version('aiocache-swr')}"
        )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="a self-contained demonstration (about a second)",
        description="Show a miss, a fresh hit, a stale hit refreshed in the background, 100 "
        "concurrent callers sharing one call, a failing backend served stale, and a restart "
        "answered from disk, with timings. The API is simulated (200 ms per call); the cache's "
        "time is a FakeClock moved by hand.",
    )
    demo.add_argument(
        "--path",
        metavar="FILE",
        help="write (and keep) the cache file here, a new file the demo creates before its first"
        " step (or stops, in one line); default: a temporary file",
    )
    demo.set_defaults(run=_cmd_demo)

    note = (
        "The file stores when a value was computed (created) and when it stops being servable "
        "(expires = created + ttl + stale_ttl; none when either is unlimited). ttl is not "
        "stored, so fresh and stale cannot be told apart: 'expired' rows are past expires, "
        "'unexpired' rows are fresh or stale, 'no expiry' rows are servable until replaced."
    )
    stats = sub.add_parser(
        "stats",
        help="entries per namespace, expiry counts, sizes, oldest/newest (read-only)",
        description="Summarize a cache file, opened read-only. " + note,
    )
    stats.add_argument("path", metavar="PATH", help="the cache file")
    stats.add_argument("--json", action="store_true", help="print JSON, for scripts")
    stats.set_defaults(run=_cmd_stats)

    ls = sub.add_parser(
        "ls",
        help="list entries: key, age, expiry, size, tags (read-only)",
        description="List the rows of a cache file, newest written first, opened read-only. "
        "Values are NOT read unless --values is given: they are pickled by default, and "
        "unpickling runs code. " + note,
    )
    ls.add_argument("path", metavar="PATH", help="the cache file")
    ls.add_argument(
        "--namespace",
        metavar="NS",
        help="only this namespace, e.g. 'myapp.users.fetch_user' (a function's module.qualname"
        " unless it set namespace=); default: every namespace",
    )
    ls.add_argument(
        "--limit",
        type=_non_negative_int,
        default=50,
        metavar="N",
        help="show at most N rows (default 50; 0: all)",
    )
    ls.add_argument(
        "--values",
        action="store_true",
        help="deserialize and show values and versions; with pickle THIS RUNS CODE from the file",
    )
    ls.add_argument(
        "--serializer",
        choices=("pickle", "json"),
        default="pickle",
        help="how values were serialized (default pickle; json runs no code)",
    )
    secrets = ls.add_mutually_exclusive_group()
    secrets.add_argument(
        "--secret",
        metavar="SECRET",
        help="with --values: verify each row's HMAC before reading it (a command-line"
        " argument is visible to other local users: prefer --secret-env)",
    )
    secrets.add_argument(
        "--secret-env", metavar="VAR", help="like --secret, read from this environment variable"
    )
    ls.add_argument("--json", action="store_true", help="print JSON, for scripts")
    ls.set_defaults(run=_cmd_ls, parser=ls)

    purge = sub.add_parser(
        "purge",
        help="delete entries: --expired, --namespace NS, --tag TAG or --all",
        description="Delete rows in one transaction (waiting up to 5 s for other processes), "
        "keeping the tag table and row counter right. Exactly one selector is required. "
        "Processes using the file keep what they already hold in memory.",
    )
    purge.add_argument("path", metavar="PATH", help="the cache file")
    which = purge.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--expired", action="store_true", help="rows past their expiry (ttl + stale_ttl)"
    )
    which.add_argument("--namespace", metavar="NS", help="every row of this namespace")
    which.add_argument("--tag", metavar="TAG", help="every row carrying this tag")
    which.add_argument("--all", action="store_true", help="every row")
    purge.add_argument(
        "--dry-run", action="store_true", help="count, do not delete (opens read-only)"
    )
    purge.add_argument("--json", action="store_true", help="print JSON, for scripts")
    purge.set_defaults(run=_cmd_purge)

    vacuum = sub.add_parser(
        "vacuum",
        help="rebuild the file to give free space back",
        description="Run SQLite's VACUUM (then truncate the WAL) to shrink the file after purges. "
        "Needs free disk space about the size of the file; waits up to 5 s for other processes.",
    )
    vacuum.add_argument("path", metavar="PATH", help="the cache file")
    vacuum.add_argument("--json", action="store_true", help="print JSON, for scripts")
    vacuum.set_defaults(run=_cmd_vacuum)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit status.

    Usage errors exit through :class:`SystemExit` with status 2 (argparse's behaviour),
    ``--help`` and ``--version`` with status 0.
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_usage(sys.stderr)
        print(f"{PROG}: error: a command is required (see --help)", file=sys.stderr)
        return 2
    if args.command == "ls" and not args.values and (args.secret or args.secret_env):
        args.parser.error("--secret/--secret-env only matter with --values")
    run: _Command = args.run
    where = f"{PROG} {args.command}: error:"
    try:
        status = run(args, sys.stdout, sys.stderr)
        sys.stdout.flush()  # a reader gone (`| head`) shows here, not as a warning at exit
        return status
    except CliError as exc:
        _error(f"{where} {exc}")
    except sqlite3.Error as exc:
        _error(f"{where} {getattr(args, 'path', '')}: {exc}")
    except BrokenPipeError:  # `... | head`: stop quietly, with the status `cat` would get
        with contextlib.suppress(Exception):  # the flush at exit must not fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return _EXIT_PIPE_CLOSED
    except OSError as exc:
        _error(f"{where} {exc}")
    except KeyboardInterrupt:
        _error(f"{PROG} {args.command}: interrupted")
        return _EXIT_INTERRUPTED
    return 1


def _error(message: str) -> None:
    """One line on stderr, whatever the message holds."""
    print(" ".join(message.split()), file=sys.stderr)
