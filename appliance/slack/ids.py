"""What a person typed after `/what-happened`: usage, the recent runs, or one run's ID.

An ID may be a 32-hex trace ID, a whole `traceparent`, an AWS X-Ray trace ID (`1-8hex-24hex`, or
a whole `X-Amzn-Trace-Id` value with `Root=`), or a prefix of at least 8 hex digits of a trace ID.
Hex is read in either case. Slack may wrap pasted text in backticks or quotes; those are dropped.
`parse_command` is pure; `resolve` looks the ID up in the store.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass

from appliance.core.errors import TraceContextError
from appliance.core.tracecontext import TraceParent, trace_id_from_xray
from appliance.store import runs

MAX_CANDIDATES = 10

_HEX = re.compile(r"[0-9a-fA-F]+")
_XRAY_ROOT = re.compile(r"1-[0-9a-fA-F]{8}-[0-9a-fA-F]{24}")
_WRAPPING = "`'\"“”‘’ \t\r\n"


@dataclass(frozen=True)
class Usage:
    """`help`, or nothing at all."""


@dataclass(frozen=True)
class Recent:
    """`recent`: the last runs with their status."""


@dataclass(frozen=True)
class TraceID:
    """A whole trace ID, from any of the accepted forms."""

    trace_id: str


@dataclass(frozen=True)
class Prefix:
    """The first 8..31 hex digits of a trace ID (lower-case)."""

    prefix: str


@dataclass(frozen=True)
class Unreadable:
    """Text that is none of the above; `reason` says what was expected."""

    text: str
    reason: str


Command = Usage | Recent | TraceID | Prefix | Unreadable


def parse_command(text: str) -> Command:
    """The command in the slash command's `text` field."""
    cleaned = text.strip(_WRAPPING)
    word = cleaned.lower()
    if word in ("", "help", "-h", "--help", "?"):
        return Usage()
    if word == "recent":
        return Recent()
    if word.startswith("00-") or (len(cleaned) >= 55 and cleaned[2:3] == "-" and _HEX.fullmatch(cleaned[:2])):
        try:
            return TraceID(TraceParent.from_header(word).trace_id)
        except TraceContextError as error:
            return Unreadable(cleaned, f"not a valid traceparent ({error})")
    if _XRAY_ROOT.fullmatch(cleaned) or "root=" in word:
        try:
            return TraceID(trace_id_from_xray(cleaned if "root=" in word else f"Root={cleaned}"))
        except TraceContextError as error:
            return Unreadable(cleaned, f"not a valid X-Ray trace ID ({error})")
    if _HEX.fullmatch(cleaned):
        if len(cleaned) == 32:
            return TraceID(word) if word.strip("0") else Unreadable(cleaned, "the all-zero trace ID is never valid")
        if 8 <= len(cleaned) < 32:
            return Prefix(word)
        reason = "too short: give at least 8 hex digits" if len(cleaned) < 8 else "too long: a trace ID has 32"
        return Unreadable(cleaned, reason)
    return Unreadable(cleaned, "not a run ID")


@dataclass(frozen=True)
class Found:
    run: runs.RunSummary


@dataclass(frozen=True)
class NotFound:
    """No run matches `wanted` (the trace ID or prefix asked for)."""

    wanted: str


@dataclass(frozen=True)
class Ambiguous:
    """Several runs start with `prefix`: the most recent `candidates`; `more` when there are others."""

    prefix: str
    candidates: tuple[runs.RunSummary, ...]
    more: bool


Resolution = Found | NotFound | Ambiguous


def resolve(conn: sqlite3.Connection, wanted: TraceID | Prefix) -> Resolution:
    """The run a trace ID or a prefix names (read from `conn`)."""
    if isinstance(wanted, TraceID):
        summary = runs.get_run(conn, wanted.trace_id)
        return NotFound(wanted.trace_id) if summary is None else Found(summary)
    matches = runs.find_runs_by_prefix(conn, wanted.prefix, limit=MAX_CANDIDATES + 1)
    if not matches:
        return NotFound(wanted.prefix)
    if len(matches) == 1:
        return Found(matches[0])
    return Ambiguous(wanted.prefix, tuple(matches[:MAX_CANDIDATES]), len(matches) > MAX_CANDIDATES)
