"""Checks of what the store and its anchors say about the log, against the tree rebuilt from its
entries: signed checkpoints, daily roots, the `runs` summaries, the tile tables' extent, and the
checkpoints each anchor holds.

Successive checkpoints are consistent when each one's root equals the root the rebuilt tree has at
its size: all of them are then prefixes of one sequence of leaves, the entries just hashed, which
is what a consistency proof shows. Building proofs from that same tree and verifying them would
only recompute a subset of the same hashes, so it is not done.
"""

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from appliance.anchors.base import Anchor, AnchorError
from appliance.core.checkpoint import CheckpointOriginError
from appliance.core.cosignature import CosignatureVerifier
from appliance.core.errors import RunlogError
from appliance.core.key_history import KeyWindowError, TrustedCheckpoint, TrustedKeys, open_trusted_checkpoint
from appliance.core.keys import NoteVerifier
from appliance.core.tiles import TILE_HEIGHT, TILE_WIDTH
from appliance.verify_store.merge import LogMerger
from appliance.verify_store.report import AnchorSummary, Failure


@dataclass(frozen=True)
class Keys:
    """The keys checkpoints are checked with; `clock` None when the timestamp key is unknown;
    `history`, when known, every log and clock key with its validity window (then a checkpoint must
    be signed by a key valid at its time; `log` and `clock` are the current keys)."""

    log: NoteVerifier
    clock: CosignatureVerifier | None
    history: TrustedKeys | None = None

    @classmethod
    def from_history(cls, history: TrustedKeys) -> "Keys":
        clocks = sorted(history.clock, key=lambda w: w.valid_from or 0)
        return cls(history.current_log, clocks[-1].verifier if clocks else None, history)  # type: ignore[arg-type]

    def trusted(self) -> TrustedKeys:
        return self.history or TrustedKeys.unbounded(self.log, [self.clock] if self.clock else [])


def open_signed(note: str, keys: Keys, origin: str) -> TrustedCheckpoint:
    """`note` opened with the log keys valid at its time (and a clock key's cosignature, required
    when a clock key is known). Raises a `RunlogError` naming what is wrong."""
    trusted = keys.trusted()
    signed = open_trusted_checkpoint(note, trusted, origin=origin)
    if trusted.clock and signed.signed_at is None:
        names = ", ".join(w.label for w in trusted.clock)
        raise _Unsigned(f"no timestamp cosignature by {names}")
    return signed


class _Unsigned(RunlogError):
    """A checkpoint lacks the clock's cosignature."""


def _reason(error: RunlogError) -> str:
    if isinstance(error, KeyWindowError):
        return "key-window"
    return "origin" if isinstance(error, CheckpointOriginError) else "signature"


def _root_failure(check: str, size: int, signed: bytes, merger: LogMerger, store_size: int,
                  **where: str) -> Failure | None:
    """Why the rebuilt tree does not have root `signed` at `size`, or None if it does."""
    if size > store_size:
        return Failure(check, "truncated", f"a signed checkpoint covers {size:,} entries but the store holds "
                                           f"{store_size:,}: entries were removed or the store rolled back",
                       seq=store_size, size=size, **where)
    if merger.tree_end is not None and size > merger.tree_end:
        return Failure(check, "missing", f"the tree cannot be rebuilt to size {size:,}: the entries table has no "
                                         f"row with seq {merger.tree_end}", seq=merger.tree_end, size=size, **where)
    root = merger.roots[size]
    if root != signed:
        return Failure(check, "forked", f"the entries give root {root.hex()} at size {size:,}, the signed "
                                        f"checkpoint says {signed.hex()}", size=size, **where)
    return None


def check_checkpoints(rows: Iterable[tuple[int, bytes, str]], keys: Keys, origin: str, merger: LogMerger,
                      store_size: int) -> tuple[list[Failure], set[int], int | None]:
    """Each stored checkpoint: signatures, its row equal to its note, its root equal to the
    entries' root at its size. Returns failures, the sizes that hold, the latest timestamp."""
    failures: list[Failure] = []
    good: set[int] = set()
    latest_time = None
    last_good = 0
    for size, root, note in rows:
        try:
            signed = open_signed(note, keys, origin)
        except RunlogError as error:
            failures.append(Failure("checkpoints", _reason(error), str(error), size=size))
            continue
        body = signed.checkpoint
        if (body.size, body.root_hash) != (size, bytes(root)):
            failures.append(Failure("checkpoints", "mismatch", f"the row says size {size:,} root {bytes(root).hex()}, "
                                    f"its signed note says size {body.size:,} root {body.root_hash.hex()}",
                                    size=size))
            continue
        failure = _root_failure("checkpoints", size, body.root_hash, merger, store_size)
        if failure is not None:
            if failure.reason == "forked":
                failure = Failure("checkpoints", "forked", f"{failure.message}: one of entries "
                                  f"{last_good:,}..{size - 1:,} is not what was signed", size=size)
            failures.append(failure)
            continue
        good.add(size)
        last_good = size
        stamps = [c.timestamp for c in signed.cosignatures]
        latest_time = max([latest_time or 0, *stamps]) if stamps else latest_time
    return failures, good, latest_time


def check_daily_roots(rows: Iterable[tuple[str, int]], good: set[int], signed_sizes: Iterable[int],
                      merger: LogMerger) -> tuple[list[Failure], int]:
    """Each daily root points at a verified checkpoint covering exactly the entries received before
    the next 00:00 UTC; days follow one another without a gap. Returns failures and the count."""
    failures: list[Failure] = []
    signed_sizes = set(signed_sizes)
    previous: tuple[date, int] | None = None
    count = 0
    for text, size in rows:
        count += 1
        try:
            day = date.fromisoformat(text)
        except (TypeError, ValueError):
            failures.append(Failure("daily-roots", "malformed", f"day {text!r} is not a date", size=size))
            continue
        if previous is not None and (day != previous[0] + timedelta(days=1) or size < previous[1]):
            failures.append(Failure("daily-roots", "missing", f"{day} follows the daily root of {previous[0]} (size "
                                    f"{previous[1]:,}) with size {size:,}: days must follow one another and "
                                    "never shrink", size=size))
        previous = (day, size)
        if size not in good:
            known = size in signed_sizes
            failures.append(Failure("daily-roots", "unverified" if known else "missing",
                                    f"the daily root of {day} points at tree size {size:,}, "
                                    + ("whose checkpoint does not verify" if known else "which has no checkpoint"),
                                    size=size))
            continue
        boundary = (day + timedelta(days=1)).isoformat()  # the rule of store.checkpoints.entries_before
        before, after = merger.received.get(size - 1), merger.received.get(size)
        if size and before is not None and before >= boundary:
            failures.append(Failure("daily-roots", "mismatch", f"the daily root of {day} covers entry {size - 1:,}, "
                                    f"received at {before}, after the day ended", seq=size - 1, size=size))
        elif after is not None and after < boundary:
            failures.append(Failure("daily-roots", "mismatch", f"the daily root of {day} leaves out entry {size:,}, "
                                    f"received at {after}, before the day ended", seq=size, size=size))
    return failures, count


def check_runs_table(conn: sqlite3.Connection, merger: LogMerger, store_size: int | None = None) -> list[Failure]:
    """Every `runs` row summarises its run's entries (count, head, first and last seq, status,
    closed), and every run has a row; given `store_size`, `run_entries` holds one row per entry
    (the chunks checked that each entry has its row). Precondition: both chains verified."""
    failures: list[Failure] = []
    if store_size is not None:
        (rows,) = conn.execute("SELECT count(*) FROM run_entries").fetchone()
        if rows != store_size:
            failures.append(Failure("runs", "inserted" if rows > store_size else "missing",
                                    f"the run_entries table holds {rows:,} rows; the log has {store_size:,} entries"))
    seen = 0
    for trace_id, count, head, first_seq, last_seq, status, closed in conn.execute(
            "SELECT trace_id, count, CAST(head AS BLOB), first_seq, last_seq, status, closed FROM runs"):
        state = merger.runs.get(trace_id)
        if state is None:
            failures.append(Failure("runs", "inserted", f"the runs table has a row for {trace_id}, which has no "
                                                        "entries", seq=last_seq))
            continue
        seen += 1
        expected_status = "failed" if state.failed else ("succeeded" if state.closed else "running")
        stored = (count, head.hex() if isinstance(head, bytes) else head, first_seq, last_seq, status, bool(closed))
        derived = (state.count, state.head.hex(), state.first_seq, state.last_seq, expected_status, state.closed)
        if stored != derived:
            names = ("count", "head", "first_seq", "last_seq", "status", "closed")
            wrong = ", ".join(f"{n} {s!r} (entries say {d!r})" for n, s, d in zip(names, stored, derived) if s != d)
            failures.append(Failure("runs", "mismatch", f"run {trace_id}: {wrong}", seq=state.last_seq))
    if seen != len(merger.runs):
        missing = sorted(set(merger.runs) - {r[0] for r in conn.execute("SELECT trace_id FROM runs")})
        for trace_id in missing[:10]:
            state = merger.runs[trace_id]
            failures.append(Failure("runs", "missing", f"run {trace_id} has entries but no row in the runs table",
                                    seq=state.first_seq))
    return failures


def check_tile_tables(conn: sqlite3.Connection, store_size: int, level4: bool) -> tuple[list[Failure], int]:
    """The tile tables hold exactly the full tiles of the tree (each one was compared already), and
    `level4_nodes` (when `level4`: the store has that table) one row per full level-0 tile."""
    expected, level = 0, 0
    while store_size >> (TILE_HEIGHT * (level + 1)):
        expected += store_size >> (TILE_HEIGHT * (level + 1))
        level += 1
    failures = []
    tables = [("tiles", expected, "full tiles"), ("tile_roots", expected, "full tiles")]
    if level4:
        tables.append(("level4_nodes", store_size >> TILE_HEIGHT, "full level-0 tiles"))
    for table, wanted, which in tables:
        (count,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        if count != wanted:
            failures.append(Failure("tree", "inserted" if count > wanted else "missing",
                                    f"the {table} table holds {count:,} rows; a tree of {store_size:,} entries has "
                                    f"{wanted:,} {which} of {TILE_WIDTH} hashes"))
    return failures, expected


def anchored_checkpoints(anchors: Iterable[Anchor]) -> tuple[list[tuple[str, list]], list[Failure]]:
    """What each anchor holds, read once (their sizes decide which roots the scan must compute)."""
    held, failures = [], []
    for anchor in anchors:
        try:
            held.append((anchor.name, list(anchor.checkpoints())))
        except AnchorError as error:
            failures.append(Failure("anchors", "unreachable", f"cannot list its checkpoints: {error}",
                                    anchor=anchor.name))
            held.append((anchor.name, []))
    return held, failures


def check_anchors(held: list[tuple[str, list]], keys: Keys, origin: str, merger: LogMerger,
                  store_size: int) -> tuple[list[Failure], tuple[AnchorSummary, ...]]:
    """Each anchored checkpoint verifies with the log key and has the root of the store's entries
    at its size; the store is never smaller than an anchored tree."""
    failures: list[Failure] = []
    summaries = []
    for name, checkpoints in held:
        largest = None
        for anchored in checkpoints:
            try:
                signed = open_signed(anchored.note, keys, origin)
            except RunlogError as error:
                failures.append(Failure("anchors", _reason(error), str(error), size=anchored.size, anchor=name))
                continue
            body = signed.checkpoint
            largest = max(largest or 0, body.size)
            if body.size != anchored.size:
                failures.append(Failure("anchors", "mismatch", f"filed under size {anchored.size:,} but signed for "
                                        f"size {body.size:,}", size=anchored.size, anchor=name))
                continue
            failure = _root_failure("anchors", body.size, body.root_hash, merger, store_size, anchor=name)
            if failure is not None:
                if failure.reason == "forked":
                    failure = Failure("anchors", "forked", f"{failure.message}: the store's history was rewritten "
                                      "after this checkpoint was anchored", size=body.size, anchor=name)
                failures.append(failure)
        summaries.append(AnchorSummary(name, len(checkpoints), largest))
    return failures, tuple(summaries)
