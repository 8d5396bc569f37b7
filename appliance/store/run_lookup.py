"""What someone looking up one run needs beyond `runs.get_run`: its failed steps, and how far its
evidence has travelled (the latest signed checkpoint covering it, and which anchors hold one).

Read-only, from any connection. A checkpoint covers a run when its tree holds the run's last
entry (`size > last_seq`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from appliance.store.checkpoints import latest_checkpoint


@dataclass(frozen=True)
class Failures:
    """How many of a run's entries have status failed, and the `run_seq` of the first (None: none)."""

    count: int
    first_run_seq: int | None


def run_failures(conn: sqlite3.Connection, trace_id: str) -> Failures:
    """The run's failed steps (reads every entry of the run through `run_entries`)."""
    count, first = conn.execute(
        "SELECT count(*), min(re.run_seq) FROM runs AS r JOIN run_entries AS re ON re.run = r.first_seq "
        "JOIN entries AS e ON e.seq = re.seq WHERE r.trace_id = ? AND e.status = 'failed'", (trace_id,)).fetchone()
    return Failures(count, first)


@dataclass(frozen=True)
class AnchorState:
    """One configured anchor for one run: the largest checkpoint covering the run that it holds
    (`published_size`, `published_at`, `location`), or None with the error of its latest attempt."""

    anchor: str
    published_size: int | None
    published_at: str | None
    location: str | None
    last_error: str | None


@dataclass(frozen=True)
class Anchoring:
    """The latest checkpoint covering the run (None: not signed yet) and each anchor's state."""

    checkpoint_size: int | None
    checkpoint_cut_at: str | None
    anchors: tuple[AnchorState, ...]


def run_anchoring(conn: sqlite3.Connection, last_seq: int, anchor_names: Sequence[str]) -> Anchoring:
    """The anchoring state of a run whose last entry is `last_seq`, for the configured `anchor_names`."""
    owned = not conn.in_transaction
    if owned:
        conn.execute("BEGIN")  # one snapshot: the checkpoint and the outbox rows agree
    try:
        latest = latest_checkpoint(conn)
        if latest is None or latest.size <= last_seq:
            return Anchoring(None, None, ())
        states = []
        for name in anchor_names:
            row = conn.execute(
                "SELECT size, published_at, location FROM anchor_outbox WHERE anchor = ? AND size > ? "
                "AND published_at IS NOT NULL ORDER BY size DESC LIMIT 1", (name, last_seq)).fetchone()
            if row is not None:
                states.append(AnchorState(name, row[0], row[1], row[2], None))
                continue
            error = conn.execute(
                "SELECT last_error FROM anchor_outbox WHERE anchor = ? AND size > ? ORDER BY size DESC LIMIT 1",
                (name, last_seq)).fetchone()
            states.append(AnchorState(name, None, None, None, error[0] if error else None))
        return Anchoring(latest.size, latest.cut_at, tuple(states))
    finally:
        if owned:
            conn.execute("COMMIT")
