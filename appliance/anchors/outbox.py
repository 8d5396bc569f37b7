"""The durable anchor outbox: every checkpoint goes to every configured anchor, exactly once, in
the end, whatever the anchors do meanwhile.

State lives only in the store's `anchor_outbox` table (one row per anchor and checkpoint size), so
it survives restarts. Each anchor gets its own worker thread and its own SQLite connection: an
anchor that hangs or is down delays only its own rows, never another anchor and never ingest (the
writer's thread and connection are never touched; our writes are single-row autocommits).

- A row is due when unpublished, not failed permanently, and `next_attempt_at <= now`.
- Success sets `published_at` and `location`. `AnchorError` adds an attempt, records `last_error`
  and backs off: next attempt after uniform(0, min(cap, base * 2^attempts)) seconds ("full
  jitter"); the anchor's other rows wait for it, so a dead anchor sees one attempt per backoff.
- `AnchorFork` is logged loudly, recorded as `last_error` "FORK: ..." and never retried
  automatically; a note that is not the checkpoint its row claims is recorded "INVALID: ...". Both
  fail the health check.
- Checkpoints without a row for a configured anchor (an anchor added later, a checkpoint whose
  cutter did not queue it) are queued here, when a worker starts and whenever a newer checkpoint
  appears, so "every checkpoint, every anchor" holds regardless.
- What a worker reads at each poll, and `anchor_status`, does not grow with the published history:
  it reads the unpublished rows, and looks up the newest checkpoint and the last published one.
"""

import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from appliance.anchors.base import Anchor, AnchorConfigError, AnchoredCheckpoint, AnchorError, AnchorFork
from appliance.core.errors import NoteFormatError
from appliance.core.timefmt import format_utc
from appliance.store.db import connect

log = logging.getLogger("runlog.anchors")

FORK, INVALID = "FORK: ", "INVALID: "
_PAGE = 500
_RETRYABLE = "(last_error IS NULL OR (last_error NOT LIKE 'FORK:%' AND last_error NOT LIKE 'INVALID:%'))"
_ROWS = """SELECT o.size, o.attempts, c.note FROM anchor_outbox o JOIN checkpoints c ON c.size = o.size
           WHERE o.anchor = ? AND o.published_at IS NULL
             AND (o.last_error IS NULL OR (o.last_error NOT LIKE 'FORK:%' AND o.last_error NOT LIKE 'INVALID:%'))"""
# What runs at every poll and every /healthz reads unpublished rows only. In `_UNPUBLISHED`,
# `+anchor` keeps the planner off the primary key (anchor, size), whose range for an anchor is its
# whole published history (one row per checkpoint, ~105,000 a year at the default interval), and
# on anchor_outbox_pending (published_at, ...); `_ROWS` walks the primary key from the first
# unpublished size on (`_drain`).
_UNPUBLISHED = "+anchor = ? AND published_at IS NULL"


@dataclass(frozen=True)
class Backoff:
    """Full-jitter exponential backoff: a delay drawn from [0, min(cap, base * 2^attempts)) seconds."""

    base: float = 1.0
    cap: float = 300.0

    def delay(self, attempts: int, rng: Callable[[], float] = random.random) -> float:
        return rng() * min(self.cap, self.base * 2 ** min(attempts, 32))


@dataclass(frozen=True)
class AnchorStatus:
    """One anchor's outbox: `lag_seconds` is the age of its oldest pending checkpoint (0 if none);
    `failed` says a row failed permanently (fork or invalid note) and waits for a human."""

    anchor: str
    pending: int
    lag_seconds: float
    last_error: str | None
    last_published_size: int | None
    next_attempt_at: str | None
    failed: bool

    def health(self, lag_threshold: float) -> tuple[str, str]:
        """(state, one line). State "ok"; "degraded" when the oldest pending checkpoint waited longer
        than `lag_threshold` seconds; "fork" or "failing" (invalid note) after a permanent failure."""
        if self.failed:
            error = self.last_error or ""
            state = "fork" if error.startswith(FORK) else "failing"
            return state, f"{state}: {error.removeprefix(FORK).removeprefix(INVALID)}"
        if self.pending and self.lag_seconds > lag_threshold:
            return "degraded", (f"degraded: {self.pending} checkpoints pending, oldest for {self.lag_seconds:.0f} s "
                                f"(threshold {lag_threshold:.0f} s); last error: {self.last_error or 'none yet'}")
        return "ok", "ok" if not self.pending else f"ok: {self.pending} pending"


@dataclass
class _WorkerState:
    """What one anchor's worker remembers between polls: the newest checkpoint size it queued
    missing rows for (-1: not looked yet) and until when (monotonic) its anchor is held off."""

    newest: int | None = -1
    hold_until: float = 0.0


@dataclass(frozen=True)
class PushResult:
    """What one drain did for one anchor; `error` is what stopped it early (the anchor is down)."""

    anchor: str
    published: int
    failed: int
    error: str | None
    pending: int


def _utc(moment: datetime) -> str:
    return format_utc(moment.astimezone(timezone.utc))


def queue_missing(conn: sqlite3.Connection, anchor_names: Sequence[str], now: datetime) -> int:
    """Queue every checkpoint that has no outbox row for one of `anchor_names`; return how many.

    Finds them with a read first, so the write lock is held only for the inserts themselves."""
    stamp, queued = _utc(now), 0
    for name in anchor_names:
        sizes = [row[0] for row in conn.execute(
            "SELECT size FROM checkpoints c WHERE NOT EXISTS "
            "(SELECT 1 FROM anchor_outbox o WHERE o.anchor = ? AND o.size = c.size) ORDER BY size", (name,))]
        if sizes:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("INSERT INTO anchor_outbox (anchor, size, queued_at, next_attempt_at) "
                                 "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING", [(name, s, stamp, stamp) for s in sizes])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            queued += len(sizes)
    return queued


def anchor_status(conn: sqlite3.Connection, anchor_names: Sequence[str], now: datetime) -> list[AnchorStatus]:
    """The outbox state of each named anchor, read from `conn` (a read-only connection will do)."""
    stamp, result = _utc(now), []
    for name in anchor_names:
        pending, lag, failed, next_at = conn.execute(
            f"""SELECT count(*), coalesce((julianday(?) - julianday(min(queued_at))) * 86400.0, 0),
                       count(*) - count(CASE WHEN {_RETRYABLE} THEN 1 END),
                       min(CASE WHEN {_RETRYABLE} THEN next_attempt_at END)
                FROM anchor_outbox WHERE {_UNPUBLISHED}""", (stamp, name)).fetchone()
        error = conn.execute(
            f"SELECT last_error FROM anchor_outbox WHERE {_UNPUBLISHED} AND last_error IS NOT NULL "
            f"ORDER BY NOT {_RETRYABLE}, julianday(next_attempt_at) DESC LIMIT 1", (name,)).fetchone()
        published = conn.execute(  # backwards along the primary key: past the pending rows at the end only
            "SELECT size FROM anchor_outbox WHERE anchor = ? AND published_at IS NOT NULL ORDER BY size DESC LIMIT 1",
            (name,)).fetchone()
        result.append(AnchorStatus(name, pending, max(0.0, round(lag, 3)), error[0] if error else None,
                                   published[0] if published else None, next_at, failed > 0))
    return result


class Outbox:
    """Publishes queued checkpoints to `anchors`: in background threads (`start`) or now (`push`)."""

    def __init__(self, db_path: str | Path, anchors: Sequence[Anchor], *, origin: str,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 backoff: Backoff = Backoff(), poll_seconds: float = 5.0,
                 rng: Callable[[], float] = random.random) -> None:
        self.anchors = tuple(anchors)
        self._db_path, self._origin, self._clock = db_path, origin, clock
        self._backoff, self._poll, self._rng = backoff, poll_seconds, rng
        self._stopping = threading.Event()
        self._wakes = {anchor.name: threading.Event() for anchor in self.anchors}
        self._threads: list[threading.Thread] = []

    def _connect(self) -> sqlite3.Connection:
        # NORMAL is enough here: a lost "published" mark after power loss only means one idempotent
        # republish, and it keeps our commits (and so the write lock) as short as possible.
        return connect(self._db_path, synchronous="NORMAL")

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """One daemon thread per anchor. Precondition: the store exists and is migrated."""
        self._stopping.clear()
        for anchor in self.anchors:
            thread = threading.Thread(target=self._work, args=(anchor,), name=f"runlog-anchor-{anchor.name}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the workers; one in the middle of a publish finishes it (anchors have timeouts)."""
        self._stopping.set()
        for wake in self._wakes.values():
            wake.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = []

    @property
    def running(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def stop_then_push(self, budget: float) -> list[PushResult] | None:
        """At shutdown, after the last checkpoint was cut: stop the workers, then try every anchor
        once (`push`), all within `budget` seconds. None when that did not finish in time: what is
        left is published at the next start (a publish cut short is repeated; anchors accept that)."""
        deadline = time.monotonic() + budget
        self.stop(timeout=budget / 2)
        if not self.anchors:
            return []
        results: list[PushResult] = []

        def push() -> None:
            try:
                results.extend(self.push())
            except Exception:  # noqa: BLE001 - shutting down: the next start publishes what is left
                log.exception("the last push to the anchors at shutdown failed")

        # A daemon thread, so an anchor that hangs past its own timeouts cannot hold the exit.
        thread = threading.Thread(target=push, name="runlog-anchor-final", daemon=True)
        thread.start()
        thread.join(max(0.0, deadline - time.monotonic()))
        return None if thread.is_alive() else results

    def wake(self) -> None:
        """Look for new checkpoints now rather than at the next poll (a checkpoint was just cut)."""
        for wake in self._wakes.values():
            wake.set()

    # -- draining ----------------------------------------------------------------------------

    def push(self) -> list[PushResult]:
        """Drain now, in this thread: every pending row of every anchor, ignoring backoff, except
        permanent failures. An anchor stops at its first `AnchorError` (it is down)."""
        conn = self._connect()
        try:
            queue_missing(conn, [a.name for a in self.anchors], self._clock())
            results = []
            for anchor in self.anchors:
                published, failed, error, _ = self._drain(conn, anchor, due_only=False)
                pending = anchor_status(conn, [anchor.name], self._clock())[0].pending
                results.append(PushResult(anchor.name, published, failed, error, pending))
            return results
        finally:
            conn.close()

    def status(self) -> list[AnchorStatus]:
        conn = connect(self._db_path, readonly=True)
        try:
            return anchor_status(conn, [a.name for a in self.anchors], self._clock())
        finally:
            conn.close()

    def _work(self, anchor: Anchor) -> None:
        wake, conn, state = self._wakes[anchor.name], None, _WorkerState()
        while not self._stopping.is_set():
            wake.clear()  # before looking, so a wake() during the work is not lost
            delay = self._poll
            try:
                if conn is None:
                    conn = self._connect()
                delay = self._poll_once(conn, anchor, state)
            except sqlite3.Error as error:
                log.error("anchor outbox for %s cannot use the store: %s", anchor.name, error)
            wake.wait(max(0.0, delay))
        if conn is not None:
            conn.close()

    def _poll_once(self, conn: sqlite3.Connection, anchor: Anchor, state: _WorkerState) -> float:
        """One poll of `anchor`'s worker: queue what is missing when a newer checkpoint appeared,
        publish what is due unless the anchor is held off after an error; return the seconds to
        wait before the next poll. Every cutter queues its own checkpoint; this catches an anchor
        configured since, or a cutter that did not know it (a lower size, say, at the next newer
        checkpoint). The newest size is one lookup; counting the rows would read the whole table."""
        newest = conn.execute("SELECT max(size) FROM checkpoints").fetchone()[0]
        if newest != state.newest:
            queue_missing(conn, [anchor.name], self._clock())
            state.newest = newest
        if time.monotonic() < state.hold_until:
            return state.hold_until - time.monotonic()
        _, _, error, retry_in = self._drain(conn, anchor, due_only=True)
        if error is not None:
            state.hold_until = time.monotonic() + retry_in
            return retry_in
        return min(self._poll, self._seconds_to_next(conn, anchor.name))

    def _seconds_to_next(self, conn: sqlite3.Connection, name: str) -> float:
        row = conn.execute(
            f"SELECT (min(julianday(next_attempt_at)) - julianday(?)) * 86400.0 FROM anchor_outbox "
            f"WHERE {_UNPUBLISHED} AND {_RETRYABLE}", (_utc(self._clock()), name)).fetchone()
        return self._poll if row[0] is None else max(0.0, row[0])

    def _drain(self, conn: sqlite3.Connection, anchor: Anchor, *, due_only: bool) -> tuple[int, int, str | None, float]:
        """Publish pending rows in size order; return (published, failed permanently, the error that
        stopped the drain or None, seconds until that row's retry)."""
        first = conn.execute(f"SELECT min(size) FROM anchor_outbox WHERE {_UNPUBLISHED} AND {_RETRYABLE}",
                             (anchor.name,)).fetchone()[0]
        if first is None:
            return 0, 0, None, 0.0
        query, params = _ROWS + " AND o.size > ?", [anchor.name]
        if due_only:
            query += " AND julianday(o.next_attempt_at) <= julianday(?)"
            params.append(_utc(self._clock()))
        published = failed = 0
        for size, attempts, note in self._pages(conn, query + " ORDER BY o.size LIMIT ?", params, after=first - 1):
            if self._stopping.is_set() and due_only:
                break
            try:
                checkpoint = AnchoredCheckpoint.from_note(note)
                if (checkpoint.origin, checkpoint.size) != (self._origin, size):
                    raise NoteFormatError(f"the note is for {checkpoint.origin!r} size {checkpoint.size}")
            except NoteFormatError as error:
                log.error("checkpoint %d is not anchored to %s: its stored note is invalid: %s", size, anchor.name, error)
                self._mark_failed(conn, anchor.name, size, f"{INVALID}{error}")
                failed += 1
                continue
            try:
                location = anchor.publish(checkpoint)
            except AnchorFork as fork:
                log.error("FORK: %s: %s", anchor.name, fork)
                self._mark_failed(conn, anchor.name, size, f"{FORK}{fork}")
                failed += 1
                continue
            except Exception as error:  # noqa: BLE001 - a driver bug must not kill the worker either
                if not isinstance(error, AnchorError):
                    log.exception("anchor %s raised an unexpected error", anchor.name)
                else:  # anchor errors name their anchor
                    log.log(logging.ERROR if isinstance(error, AnchorConfigError) else logging.WARNING, "%s", error)
                retry_in = self._backoff.delay(attempts, self._rng)
                self._mark_retry(conn, anchor.name, size, f"{error.__class__.__name__}: {error}", retry_in)
                return published, failed, str(error), retry_in
            conn.execute("UPDATE anchor_outbox SET published_at = ?, location = ?, last_error = NULL "
                         "WHERE anchor = ? AND size = ? AND published_at IS NULL",
                         (_utc(self._clock()), location, anchor.name, size))
            published += 1
        return published, failed, None, 0.0

    @staticmethod
    def _pages(conn: sqlite3.Connection, query: str, params: list, after: int) -> Iterator[tuple[int, int, str]]:
        """Rows of sizes above `after`, in pages keyed on size, so a long backlog never sits in
        memory at once; each page walks the primary key from where the last one ended."""
        while True:
            rows = conn.execute(query, [params[0], after, *params[1:], _PAGE]).fetchall()
            yield from rows
            if len(rows) < _PAGE:
                return
            after = rows[-1][0]

    def _mark_failed(self, conn: sqlite3.Connection, name: str, size: int, error: str) -> None:
        conn.execute("UPDATE anchor_outbox SET attempts = attempts + 1, last_error = ? "
                     "WHERE anchor = ? AND size = ? AND published_at IS NULL", (error[:2000], name, size))

    def _mark_retry(self, conn: sqlite3.Connection, name: str, size: int, error: str, retry_in: float) -> None:
        next_at = _utc(self._clock() + timedelta(seconds=retry_in))
        conn.execute("UPDATE anchor_outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? "
                     "WHERE anchor = ? AND size = ? AND published_at IS NULL", (error[:2000], next_at, name, size))
