"""Signed checkpoints in the store: cutting them (interval, on demand, daily roots) and reading them.

A cut signs the tree at a committed size with the log key (a C2SP signed note) and the clock
cosigner (a `cosignature/v1` line attesting the cut time in whole seconds), stores it in
`checkpoints` and queues it in `anchor_outbox` for every configured anchor, in one
`BEGIN IMMEDIATE` transaction on the caller's connection. A size is signed once: cutting it again
returns the stored checkpoint. Only keys the key history (`keyring`) lists as current sign; the
first checkpoint after a rotation is also signed by the retiring keys, and closes their windows.

The daily root of UTC day D is the checkpoint of the tree holding exactly the entries with
`received_at` before D+1 00:00 UTC. The writer never lets `received_at` decrease in seq order, so
that size is a binary search over seq. Days run from the store's first day (meta `created_at`, or
its first entry if that is earlier) to the last day that is over. A day is over once an entry
received after its end is committed (the single writer commits in `received_at` order), or
`settle` after its end: the writer stamps a group just before it takes the write lock, so in the
first instants after midnight a group stamped 23:59:59.9 may still be on its way in.
"""

import math
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from appliance.core.checkpoint import Checkpoint
from appliance.core.cosignature import CosignatureSigner
from appliance.core.keys import NoteSigner
from appliance.core.note import sign_note
from appliance.core.timefmt import format_utc, parse_utc
from appliance.store import keyring
from appliance.store.db import get_meta
from appliance.store.errors import StoreError
from appliance.store.tree_reader import TreeReader

SETTLE = timedelta(seconds=2)
MAX_PAGE = 1000
_DAY = timedelta(days=1)
_COLUMNS = "size, CAST(root AS BLOB), note, cut_at"


@dataclass(frozen=True)
class CheckpointSigners:
    """The log key (named after the origin) and the clock cosigner that time-stamps checkpoints;
    after a rotation, the keys being retired, which sign the next checkpoint too (the handover)."""

    log: NoteSigner
    clock: CosignatureSigner
    retiring_log: NoteSigner | None = None
    retiring_clock: CosignatureSigner | None = None

    @property
    def origin(self) -> str:
        return self.log.name


@dataclass(frozen=True)
class StoredCheckpoint:
    """A signed checkpoint as stored: tree size, raw root hash, the signed note, when it was cut."""

    size: int
    root: bytes
    note: str
    cut_at: str


@dataclass(frozen=True)
class DailyRoot:
    """The checkpoint covering exactly the entries received before the end of UTC day `day`;
    `signed_now` when the cut that recorded it signed it (not when a size is listed or shared)."""

    day: date
    checkpoint: StoredCheckpoint
    signed_now: bool = False


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _utc(now: datetime) -> datetime:
    if not isinstance(now, datetime) or now.utcoffset() is None:
        raise StoreError("checkpoint times must be timezone-aware datetimes")
    return now.astimezone(timezone.utc)


def _row(row: tuple | None) -> StoredCheckpoint | None:
    return None if row is None else StoredCheckpoint(row[0], bytes(row[1]), row[2], row[3])


# -- reads -------------------------------------------------------------------------------------

def latest_checkpoint(conn: sqlite3.Connection) -> StoredCheckpoint | None:
    """The checkpoint of the largest tree, or None when none was cut."""
    return _row(conn.execute(f"SELECT {_COLUMNS} FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone())


def checkpoint_at(conn: sqlite3.Connection, size: int) -> StoredCheckpoint | None:
    """The checkpoint of the tree of `size` entries, or None."""
    return _row(conn.execute(f"SELECT {_COLUMNS} FROM checkpoints WHERE size = ?", (size,)).fetchone())


def list_checkpoints(conn: sqlite3.Connection, *, before: int | None = None,
                     limit: int = 100) -> list[StoredCheckpoint]:
    """Checkpoints, largest first, of sizes below `before` (all when None); at most `limit` (1..MAX_PAGE)."""
    rows = conn.execute(f"SELECT {_COLUMNS} FROM checkpoints WHERE size < ? ORDER BY size DESC LIMIT ?",
                        (2**63 - 1 if before is None else before, _limit(limit))).fetchall()
    return [StoredCheckpoint(r[0], bytes(r[1]), r[2], r[3]) for r in rows]


def list_daily_roots(conn: sqlite3.Connection, *, before: date | None = None, limit: int = 100) -> list[DailyRoot]:
    """Daily roots, latest day first, of days before `before` (all when None); at most `limit`."""
    rows = conn.execute(
        "SELECT d.day, c.size, CAST(c.root AS BLOB), c.note, c.cut_at FROM daily_roots d "
        "JOIN checkpoints c ON c.size = d.size WHERE d.day < ? ORDER BY d.day DESC LIMIT ?",
        ("9999-99-99" if before is None else before.isoformat(), _limit(limit))).fetchall()
    return [DailyRoot(date.fromisoformat(r[0]), StoredCheckpoint(r[1], bytes(r[2]), r[3], r[4])) for r in rows]


def _limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise StoreError(f"a page holds 1..{MAX_PAGE} checkpoints, not {limit!r}")
    return limit


def last_cut_at(conn: sqlite3.Connection) -> datetime | None:
    """When the most recent checkpoint was cut (any size), or None."""
    (text,) = conn.execute("SELECT max(cut_at) FROM checkpoints").fetchone()
    return None if text is None else parse_utc(text, field="cut_at")


def entries_before(conn: sqlite3.Connection, boundary: date) -> int:
    """How many committed entries were received before `boundary` 00:00 UTC.

    Precondition: `received_at` never decreases in seq order (the writer guarantees it), so the
    entries before the boundary are a prefix of the log and a binary search finds its end."""
    # An ISO date sorts before every RFC 3339 time of that day and after every earlier one.
    key = boundary.isoformat()
    low, high = 0, TreeReader(conn).size()
    while low < high:
        middle = (low + high) // 2
        (received_at,) = conn.execute("SELECT received_at FROM entries WHERE seq = ?", (middle,)).fetchone()
        if received_at < key:
            low = middle + 1
        else:
            high = middle
    return low


def first_day(conn: sqlite3.Connection) -> date | None:
    """The store's first UTC day: the earlier of its creation (meta `created_at`) and its first
    entry; None for a store with neither (nothing to have a daily root of)."""
    first = conn.execute("SELECT received_at FROM entries WHERE seq = 0").fetchone()
    times = [text for text in (get_meta(conn, "created_at"), first[0] if first else None) if text]
    return min(parse_utc(text, field="created_at").date() for text in times) if times else None


def due_days(conn: sqlite3.Connection, now: datetime, *, settle: timedelta = SETTLE) -> list[date]:
    """The days that are over at `now` and have no daily root yet, oldest first."""
    last = conn.execute("SELECT max(day) FROM daily_roots").fetchone()[0]
    start = date.fromisoformat(last) + _DAY if last else first_day(conn)
    if start is None:
        return []
    settled = _utc(now) - settle
    newest = conn.execute("SELECT received_at FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
    if newest is not None:
        settled = max(settled, parse_utc(newest[0], field="received_at"))
    end = settled.date()  # every day before this one has ended
    return [start + _DAY * n for n in range((end - start).days)]


def next_day_end(now: datetime, *, settle: timedelta = SETTLE) -> datetime:
    """The next moment a day counts as over by the clock alone: a 00:00 UTC plus `settle`."""
    now = _utc(now)
    today = datetime.combine(now.date(), time(), timezone.utc) + settle
    return today if now < today else today + _DAY


# -- cutting -----------------------------------------------------------------------------------

def _signed(conn: sqlite3.Connection, signers: CheckpointSigners, size: int, now: datetime,
            anchors: Sequence[str]) -> tuple[StoredCheckpoint, bool]:
    """The checkpoint at `size`, signed and queued for `anchors` unless it exists. Inside a transaction."""
    existing = checkpoint_at(conn, size)
    if existing is not None:
        return existing, False
    origin = get_meta(conn, "origin")
    if origin is not None and origin != signers.origin:
        raise StoreError(f"this store belongs to origin {origin!r}, not to the log key's {signers.origin!r}")
    root = TreeReader(conn).root(size)
    timestamp = math.floor(now.timestamp())
    log_signers, cosigners = _signers_now(conn, signers, timestamp)
    # Log signature lines first, then the cosignatures; at a handover one line per key, so C2SP
    # verifiers that know either the old or the new key accept the checkpoint.
    body = Checkpoint(signers.origin, size, root).to_text()
    note = sign_note(body, [*log_signers, *(c.at(timestamp) for c in cosigners)]).decode("utf-8")
    cut_at = format_utc(now)
    conn.execute("INSERT INTO checkpoints (size, root, note, cut_at) VALUES (?, ?, ?, ?)", (size, root, note, cut_at))
    conn.executemany("INSERT INTO anchor_outbox (anchor, size, queued_at, attempts, next_attempt_at) "
                     "VALUES (?, ?, ?, 0, ?)", [(name, size, cut_at, cut_at) for name in dict.fromkeys(anchors)])
    return StoredCheckpoint(size, root, note, cut_at), True


def _signers_now(conn: sqlite3.Connection, signers: CheckpointSigners,
                 timestamp: int) -> tuple[list[NoteSigner], list[CosignatureSigner]]:
    """The keys that sign a checkpoint cut at `timestamp`: the current log and clock keys, which
    the key history must list as current, and the retiring keys whose window the history still
    holds open; their window closes at `timestamp`. Inside the cut's transaction."""
    if signers.retiring_log is not None and signers.retiring_log.name != signers.origin:
        raise StoreError(f"the retiring log key is not named {signers.origin!r}")
    keyring.check_current(conn, "log", signers.log.verifier().to_text(), "the log signing key")
    keyring.check_current(conn, "clock", signers.clock.verifier().to_text(), "the clock key")
    log_signers: list[NoteSigner] = [signers.log]
    cosigners: list[CosignatureSigner] = [signers.clock]
    for role, signer, chosen in (("log", signers.retiring_log, log_signers), ("clock", signers.retiring_clock, cosigners)):
        if signer is None:
            continue
        key = signer.verifier().to_text()
        if any(stored.key == key for stored in keyring.retiring(conn, role)):
            chosen.append(signer)  # type: ignore[arg-type]
            keyring.record(conn, role, key, "valid_until", timestamp)
    return log_signers, cosigners


def cut_checkpoint(conn: sqlite3.Connection, signers: CheckpointSigners, *, now: datetime,
                   anchors: Sequence[str] = (), size: int | None = None) -> tuple[StoredCheckpoint, bool]:
    """Sign the tree at `size` (default: every committed entry) and queue it for `anchors`.

    Returns the checkpoint and whether it was signed now (False: that size already had one).
    Preconditions: `conn` is a write connection in autocommit mode (`store.db.connect`), not in a
    transaction; `size` is committed (else `TreeSizeError`); `now` is timezone-aware."""
    now = _utc(now)
    with _immediate(conn):
        return _signed(conn, signers, TreeReader(conn).size() if size is None else size, now, anchors)


def cut_daily_roots(conn: sqlite3.Connection, signers: CheckpointSigners, *, now: datetime,
                    anchors: Sequence[str] = (), settle: timedelta = SETTLE) -> list[DailyRoot]:
    """Cut the daily root of every day that is over at `now` and lacks one, oldest first, one
    transaction per day; days without entries share the previous day's checkpoint.

    Returns the daily roots recorded now. Preconditions as for `cut_checkpoint`."""
    now = _utc(now)
    recorded = []
    for day in due_days(conn, now, settle=settle):
        with _immediate(conn):
            if conn.execute("SELECT 1 FROM daily_roots WHERE day = ?", (day.isoformat(),)).fetchone():
                continue  # another process (e.g. `runlog checkpoint`) got there first
            checkpoint, created = _signed(conn, signers, entries_before(conn, day + _DAY), now, anchors)
            conn.execute("INSERT INTO daily_roots (day, size) VALUES (?, ?)", (day.isoformat(), checkpoint.size))
        recorded.append(DailyRoot(day, checkpoint, created))
    return recorded
