"""Read-only queries over runs and their entries: run lists, one run's summary and events.

The writer maintains the `runs` table (one row per trace, updated with every entry); these
functions only read, from any connection (a reader's own, read-only is fine). Invalid arguments
raise `InvalidInput` with `field` naming the argument, so the web layer can answer 400.

Time filters rely on an invariant of the writer: `received_at` never decreases in `seq` order.
A run's `started_at` is the `received_at` of its first entry, so a time range maps to a range of
`first_seq`, found by binary search over `entries` and then read through the `runs` table (keyed
by `first_seq`) or its `runs_by_status` / `runs_by_source` index, instead of filtering every run.
A run's entries are found through `run_entries` (the run's `first_seq`, `run_seq`) -> `seq`.
"""

import base64
import binascii
import json
import re
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from appliance.core.entry import MAX_SOURCE_CHARS
from appliance.core.errors import EntryError, InvalidInput
from appliance.core.timefmt import format_utc, normalize_rfc3339, parse_utc

RUN_STATUSES = frozenset({"running", "succeeded", "failed"})
MAX_RUNS_PAGE = 500
MAX_EVENTS_PAGE = 1000
MAX_PREFIX_MATCHES = 100
MIN_PREFIX_CHARS = 8

_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_HEX_PREFIX = re.compile(r"[0-9a-f]{8,32}")
_SOURCE = re.compile(r"[!-~]{1,%d}" % MAX_SOURCE_CHARS)
_CURSOR = re.compile(r"r([0-9]{1,16})")

_RUN_COLUMNS = ("trace_id, count, status, closed, source, started_at, updated_at, first_ts, last_ts, head, "
                "first_seq, last_seq")


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One run as of its last entry.

    `steps` counts the run's entries (events). Durations are `updated_at - started_at` (the
    appliance's receive times) and `last_ts - first_ts` (the producer's own clock, which can be
    negative if the producer's clocks disagree; it is reported as recorded). `head` is the hex
    entry hash of the run's last entry: the head of its per-run chain.
    """

    trace_id: str
    steps: int
    status: str
    closed: bool
    source: str
    started_at: str
    updated_at: str
    first_ts: str
    last_ts: str
    duration_seconds: float
    producer_duration_seconds: float
    head: str
    first_seq: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class RunPage:
    """One page of runs, most recent first; pass `next_cursor` back for the next (None: last page)."""

    runs: tuple[RunSummary, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class EventRow:
    """One entry of a run, with `attrs`, `span_id` and `parent_id` read from its canonical bytes."""

    seq: int
    run_seq: int
    step: str
    status: str
    final: bool
    ts: str
    received_at: str
    source: str
    hash: str
    attrs: dict[str, Any] = field(hash=False)
    span_id: str | None = None
    parent_id: str | None = None


def _check_int(value: Any, name: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise InvalidInput(f"{name}: must be an integer {low}..{high}, got {value!r:.40}", field=name)
    return value


def _check_trace_id(trace_id: Any) -> str:
    if type(trace_id) is not str or _TRACE_ID.fullmatch(trace_id) is None:
        raise InvalidInput(f"trace_id: must be 32 lower-case hex digits, got {trace_id!r:.40}", field="trace_id")
    return trace_id


def _seconds_between(start: str, end: str) -> float:
    return (parse_utc(end) - parse_utc(start)).total_seconds()


def _summary(row: tuple) -> RunSummary:
    trace_id, count, status, closed, source, started, updated, first_ts, last_ts, head, first_seq, last_seq = row
    return RunSummary(
        trace_id=trace_id, steps=count, status=status, closed=bool(closed), source=source,
        started_at=started, updated_at=updated, first_ts=first_ts, last_ts=last_ts,
        duration_seconds=_seconds_between(started, updated),
        producer_duration_seconds=_seconds_between(first_ts, last_ts),
        head=bytes(head).hex(), first_seq=first_seq, last_seq=last_seq,
    )


def _time_key(text: str) -> str:
    """A strict UTC time as fixed-width text that sorts like the time: fraction padded to 9 digits.

    Stored times may carry 1..9 fraction digits or none, and "...05Z" sorts after "...05.5Z" as
    text, so neither stored values nor bounds are compared as written.
    """
    fraction = text[20:-1]
    return text[:19] + "." + fraction.ljust(9, "0")


def _bound_key(value: Any, name: str) -> str:
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise InvalidInput(f"{name}: must be a timezone-aware time", field=name)
        return _time_key(format_utc(value.astimezone(timezone.utc)))
    if type(value) is not str:
        raise InvalidInput(f"{name}: must be an RFC 3339 date-time, got {type(value).__name__}", field=name)
    try:
        return _time_key(normalize_rfc3339(value, field=name))
    except EntryError as error:
        raise InvalidInput(str(error), field=name) from None


def _log_size(conn: sqlite3.Connection) -> int:
    top = conn.execute("SELECT max(seq) FROM entries").fetchone()[0]
    return 0 if top is None else top + 1


def _first_seq_received_at_or_after(conn: sqlite3.Connection, key: str, size: int) -> int:
    """The smallest seq < size whose received_at is at or after `key`, or `size` if none."""
    low, high = 0, size
    while low < high:
        middle = (low + high) // 2
        row = conn.execute("SELECT received_at FROM entries WHERE seq = ?", (middle,)).fetchone()
        if row is not None and _time_key(row[0]) < key:
            low = middle + 1
        else:
            high = middle
    return low


def encode_cursor(first_seq: int) -> str:
    """The opaque cursor that continues a run list after the run whose first entry is `first_seq`."""
    return base64.urlsafe_b64encode(f"r{first_seq}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: Any) -> int:
    if type(cursor) is str and 0 < len(cursor) <= 32:
        try:
            text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        except (binascii.Error, ValueError):
            text = ""
        match = _CURSOR.fullmatch(text)
        if match is not None and encode_cursor(int(match.group(1))) == cursor:
            return int(match.group(1))
    raise InvalidInput("cursor: not a cursor returned by a previous page", field="cursor")


def list_runs(
    conn: sqlite3.Connection,
    *,
    status: str | None = None,
    source: str | None = None,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> RunPage:
    """Runs, most recent first (by the seq of their first entry), filtered and paged by keyset.

    `status` is running, succeeded or failed; `source` is the exact source (token name) of the
    run's first entry; `since` (inclusive) and `until` (exclusive) bound `started_at` and are
    RFC 3339 date-times with any offset, or aware datetimes; `limit` is 1..500; `cursor` is the
    `next_cursor` of the previous page, used with the same filters. Pages are stable while the
    log grows: new runs appear before the first page, never inside later ones.
    """
    if status is not None and status not in RUN_STATUSES:
        raise InvalidInput(f"status: must be one of {', '.join(sorted(RUN_STATUSES))}, got {status!r:.40}",
                           field="status")
    if source is not None and (type(source) is not str or _SOURCE.fullmatch(source) is None):
        raise InvalidInput(f"source: must be 1..{MAX_SOURCE_CHARS} printable ASCII characters without spaces",
                           field="source")
    _check_int(limit, "limit", 1, MAX_RUNS_PAGE)
    since_key = None if since is None else _bound_key(since, "since")
    until_key = None if until is None else _bound_key(until, "until")
    if since_key is not None and until_key is not None and until_key <= since_key:
        raise InvalidInput("until: must be later than since", field="until")
    below = None if cursor is None else _decode_cursor(cursor)

    conditions: list[str] = []
    params: list[Any] = []
    at_least = None
    if since_key is not None or until_key is not None:
        size = _log_size(conn)
        at_least = 0 if since_key is None else _first_seq_received_at_or_after(conn, since_key, size)
        end = size if until_key is None else _first_seq_received_at_or_after(conn, until_key, size)
        below = end if below is None else min(below, end)
        if at_least >= below:
            return RunPage((), None)
    if status is not None:
        conditions.append("status = ?")
        params.append(status)
    if source is not None:
        conditions.append("source = ?")
        params.append(source)
    if at_least is not None:
        conditions.append("first_seq >= ?")
        params.append(at_least)
    if below is not None:
        conditions.append("first_seq < ?")
        params.append(below)
    where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
    rows = conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs {where}ORDER BY first_seq DESC LIMIT ?",
                        (*params, limit + 1)).fetchall()
    runs = tuple(_summary(row) for row in rows[:limit])
    next_cursor = encode_cursor(runs[-1].first_seq) if len(rows) > limit else None
    return RunPage(runs, next_cursor)


def get_run(conn: sqlite3.Connection, trace_id: str) -> RunSummary | None:
    """The run's summary, or None if no entry carries `trace_id` (32 lower-case hex digits)."""
    _check_trace_id(trace_id)
    row = conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE trace_id = ?", (trace_id,)).fetchone()
    return None if row is None else _summary(row)


def run_events(conn: sqlite3.Connection, trace_id: str, *, after_run_seq: int = -1, limit: int = 100) -> list[EventRow]:
    """The run's entries with `run_seq > after_run_seq`, in run order, at most `limit` (1..1000).

    For the next page pass the last row's `run_seq`. An unknown run gives an empty list.
    """
    _check_trace_id(trace_id)
    _check_int(after_run_seq, "after_run_seq", -1, 2**53 - 1)
    _check_int(limit, "limit", 1, MAX_EVENTS_PAGE)
    rows = conn.execute(
        "SELECT e.data, e.hash FROM runs AS r JOIN run_entries AS re ON re.run = r.first_seq "
        "JOIN entries AS e ON e.seq = re.seq WHERE r.trace_id = ? AND re.run_seq > ? ORDER BY re.run_seq LIMIT ?",
        (trace_id, after_run_seq, limit),
    )
    events = []
    for data, digest in rows:
        # Every field comes from the stored bytes, the evidence itself: the other columns are copies
        # for indexing, and an edit to a copy must not change what a reader is shown. The full
        # canonical re-check belongs to verification.
        obj = json.loads(data)
        events.append(EventRow(seq=obj["seq"], run_seq=obj["run_seq"], step=obj["step"], status=obj["status"],
                               final=obj.get("final", False), ts=obj["ts"], received_at=obj["received_at"],
                               source=obj["source"], hash=bytes(digest).hex(), attrs=obj["attrs"],
                               span_id=obj.get("span_id"), parent_id=obj.get("parent_id")))
    return events


def find_runs_by_prefix(conn: sqlite3.Connection, prefix: str, limit: int = 10) -> list[RunSummary]:
    """Runs whose trace ID starts with `prefix` (8..32 hex digits, either case), most recent first.

    For people typing a shortened ID (Slack); `limit` is 1..100.
    """
    if type(prefix) is not str or _HEX_PREFIX.fullmatch(prefix.lower()) is None:
        raise InvalidInput(f"prefix: must be {MIN_PREFIX_CHARS}..32 hex digits, got {prefix!r:.40}", field="prefix")
    _check_int(limit, "limit", 1, MAX_PREFIX_MATCHES)
    prefix = prefix.lower()
    # Every trace ID is lower-case hex, so "g" sorts after all IDs that share the prefix. The
    # unary plus keeps SQLite on the runs_by_trace range rather than walking the table backwards.
    rows = conn.execute(
        f"SELECT {_RUN_COLUMNS} FROM runs WHERE trace_id >= ? AND trace_id < ? ORDER BY +first_seq DESC LIMIT ?",
        (prefix, prefix + "g", limit),
    ).fetchall()
    return [_summary(row) for row in rows]


def get_entry(conn: sqlite3.Connection, seq: int) -> tuple[bytes, bytes] | None:
    """The stored canonical bytes and entry hash of entry `seq` (0..2^53-1), or None past the end."""
    _check_int(seq, "seq", 0, 2**53 - 1)
    row = conn.execute("SELECT data, hash FROM entries WHERE seq = ?", (seq,)).fetchone()
    return None if row is None else (bytes(row[0]), bytes(row[1]))
