"""Full verification of a store: `verify_store(path, keys)` returns a `VerifyReport`.

It recomputes every entry's hash and checks it against the `hash` column; checks each entry is the
canonical encoding of a valid entry, the global chain (`prev`, seq) and every run's chain
(`run_seq`, `run_prev`, nothing after `final`), the indexed columns of each row against its bytes,
and that `received_at` never goes back; rebuilds the Merkle tree from the entries and compares
every stored tile and tile root with it; checks every stored checkpoint's signatures (log key,
clock cosignature) and its root against the rebuilt tree at its size (which makes successive
checkpoints consistent), the daily roots, the `runs` summaries and the `run_entries` rows that
lead from each run to its entries, and, given anchors, every
checkpoint each anchor holds: signed by the log key, the store's root at its size, and never a
larger tree than the store holds.

How it is fast (DESIGN.md: >= 300,000 entries/s): the entries are cut into chunks of
`CHUNK_SIZE` rows checked in parallel by worker processes (`chunk.py`, each with its own read-only
connection), with a strict entry check that proves in C, many entries at a time, what the core's
`decode_entry` proves one entry at a time (`entry_scan.py`); the main process links the chunks
in order (`merge.py`). Memory is constant in the number of entries: a few chunks in flight, one
small state per run (O(runs)), one root per checkpoint size (O(checkpoints)).

The main connection holds one read transaction throughout, so a store that is being written
to is verified as of the moment verification started (entries and tiles never change once
committed, so the workers read the same rows).
"""

import multiprocessing
import os
import sqlite3
import threading
import time
from bisect import bisect_left, bisect_right
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from itertools import islice
from datetime import datetime, timezone
from pathlib import Path

from appliance.anchors.base import Anchor
from appliance.core.errors import InvalidInput
from appliance.core.timefmt import format_utc
from appliance.store.db import MIGRATIONS, connect, get_meta
from appliance.store.errors import StoreError
from appliance.verify_store.chunk import ChunkResult, ChunkTask, check_chunk, scan_chunk
from appliance.verify_store.evidence import (
    Keys,
    anchored_checkpoints,
    check_anchors,
    check_checkpoints,
    check_daily_roots,
    check_runs_table,
    check_tile_tables,
)
from appliance.verify_store.merge import LogMerger
from appliance.verify_store.report import AnchorSummary, Failure, VerifyReport

__all__ = ["CHUNK_SIZE", "Failure", "Keys", "VerifyReport", "verify_store"]

CHUNK_SIZE = 65_536
MAX_LISTED = 20  # failures listed per check; the rest are counted in a note
_LEVEL4_SCHEMA = 1 + [name for name, _ in MIGRATIONS].index("level-4 nodes of the full level-0 tiles")
_RUN_ENTRIES_SCHEMA = 1 + [name for name, _ in MIGRATIONS].index("runs and run_entries keyed by the run's first seq")

Progress = Callable[[int, int], None]


def _plan(db_path: str, size: int, chunk_size: int, sizes: list[int], positions: list[int],
          level4: bool, run_entries: bool) -> list[ChunkTask]:
    tasks = []
    for start in range(0, size, chunk_size):
        end = min(start + chunk_size, size)
        tasks.append(ChunkTask(db_path, start, end,
                               tuple(sizes[bisect_right(sizes, start):bisect_right(sizes, end)]),
                               tuple(positions[bisect_left(positions, start):bisect_left(positions, end)]), level4,
                               run_entries))
    return tasks


def _results(conn: sqlite3.Connection, tasks: list[ChunkTask], workers: int) -> Iterator[ChunkResult]:
    """Each task's result, in order; in this process, or in `workers` processes a few chunks ahead."""
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield scan_chunk(conn, task)
        return
    # fork starts workers at once and needs no `if __name__ == "__main__"` guard in the caller, but
    # copies other threads' locks mid-use: only a single-threaded caller (the CLI) gets it.
    method = "fork" if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods() \
        else "spawn"
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as pool:
        queued = iter(tasks)
        pending = deque(pool.submit(check_chunk, task) for task in islice(queued, 2 * workers))
        while pending:
            result = pending.popleft().result()
            following = next(queued, None)
            if following is not None:
                pending.append(pool.submit(check_chunk, following))
            yield result


def _table_to_check(conn: sqlite3.Connection, table: str, check: str, since: int,
                    predates: str) -> tuple[bool, list[Failure], list[str]]:
    """Whether the store has `table` to check; a failure if its schema says it must (it has had it
    since schema `since`), a note for a store from before it (runlog adds it when it next opens
    the store for writing): `predates` is that note, with `{version}` for the store's schema."""
    if conn.execute("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?", (table,)).fetchone():
        return True, [], []
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version >= since:
        return False, [Failure(check, "missing", f"the {table} table is missing (the store's schema, "
                                                 f"{version}, has it since {since})")], []
    return False, [], [predates.format(version=version)]


def _listed(failures: list[Failure]) -> tuple[tuple[Failure, ...], list[str]]:
    counts = Counter(f.check for f in failures)
    shown: list[Failure] = []
    per_check: Counter[str] = Counter()
    for failure in sorted(failures, key=Failure.sort_key):
        per_check[failure.check] += 1
        if per_check[failure.check] <= MAX_LISTED:
            shown.append(failure)
    notes = [f"{count - MAX_LISTED:,} more {check} failures not listed" for check, count in counts.items()
             if count > MAX_LISTED]
    return tuple(shown), notes


def verify_store(
    db_path: str | Path,
    keys: Keys,
    *,
    anchors: Sequence[Anchor] | None = None,
    workers: int | None = None,
    chunk_size: int = CHUNK_SIZE,
    progress: Progress | None = None,
    notes: Sequence[str] = (),
) -> VerifyReport:
    """Verify the store at `db_path` with `keys` (and `anchors`, when given) and say what holds.

    Preconditions: the store exists (`StoreError` otherwise); `chunk_size` is a positive multiple
    of 256, the tile width (`InvalidInput` otherwise). `workers` processes check chunks (default:
    one per CPU; 1: all in this process). `progress(done, total)` is called after each chunk.
    Never raises for what it finds: every problem is a `Failure` in the report.
    """
    if chunk_size <= 0 or chunk_size % 256:
        raise InvalidInput("chunk_size must be a positive multiple of 256", field="chunk_size")
    path = Path(db_path)
    if not path.is_file():
        raise StoreError(f"no store at {path}")
    started = time.perf_counter()
    workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
    conn = connect(path, readonly=True)
    try:
        conn.execute("BEGIN")  # one snapshot for everything this connection reads
        size = conn.execute("SELECT coalesce(max(seq) + 1, 0) FROM entries").fetchone()[0]
        origin = get_meta(conn, "origin") or keys.log.name
        failures: list[Failure] = []
        if keys.log.name != origin:
            failures.append(Failure("keys", "origin", f"the log key is named {keys.log.name!r} but the store's "
                                                      f"origin is {origin!r}: it is not this log's key"))
        checkpoint_sizes = [row[0] for row in conn.execute("SELECT size FROM checkpoints ORDER BY size")]
        daily = conn.execute("SELECT day, size FROM daily_roots ORDER BY day").fetchall()
        held, anchor_failures = anchored_checkpoints(anchors) if anchors is not None else ([], [])
        wanted = {s for s in checkpoint_sizes if 0 < s <= size} | {size}
        wanted |= {c.size for _, held_by in held for c in held_by if type(c.size) is int and 0 < c.size <= size}
        positions = sorted({p for _, s in daily if type(s) is int for p in (s - 1, s) if 0 <= p < size})
        level4, level4_failures, level4_notes = _table_to_check(
            conn, "level4_nodes", "tree", _LEVEL4_SCHEMA, "level-4 nodes not compared: the store's schema "
            "({version}) predates them; runlog adds them when it next opens the store for writing")
        failures += level4_failures
        run_entries, run_entries_failures, run_entries_notes = _table_to_check(
            conn, "run_entries", "runs", _RUN_ENTRIES_SCHEMA, "run_entries not compared: the store's schema "
            "({version}) predates it; runlog adds it when it next opens the store for writing")
        failures += run_entries_failures
        tasks = _plan(str(path), size, chunk_size, sorted(wanted - {0}), positions, level4, run_entries)
        merger = LogMerger(conn)
        for done, result in enumerate(_results(conn, tasks, min(workers, len(tasks))), start=1):
            merger.add(result)
            if progress is not None:
                progress(min(done * chunk_size, size), size)
        failures += [f for f in (merger.chain_failure, merger.column_failure, merger.run_index_failure,
                                 merger.clock_failure, merger.tree_failure) if f is not None]
        tiles = 0
        if merger.tree_end is None:
            tile_failures, tiles = check_tile_tables(conn, size, level4)
            failures += tile_failures
        checkpoint_failures, good, signed_at = check_checkpoints(
            conn.execute("SELECT size, CAST(root AS BLOB), note FROM checkpoints ORDER BY size"), keys, origin, merger,
            size)
        failures += checkpoint_failures
        daily_failures, daily_count = check_daily_roots(daily, good, checkpoint_sizes, merger)
        failures += daily_failures
        extra_notes = list(notes) + level4_notes + run_entries_notes
        if merger.chain_failure is None:
            failures += check_runs_table(conn, merger, size if run_entries else None)
        else:
            extra_notes.append("runs table not compared: the chain is broken")
        summaries: tuple[AnchorSummary, ...] | None = None
        if anchors is not None:
            anchor_checks, summaries = check_anchors(held, keys, origin, merger, size)
            failures += anchor_failures + anchor_checks
            if not anchors:
                failures.append(Failure("anchors", "missing", "--anchors asked for, but no anchor is configured "
                                                              "(RUNLOG_ANCHOR_*)"))
        conn.execute("COMMIT")
    finally:
        conn.close()
    listed, more = _listed(failures)
    return VerifyReport(
        db=str(path), origin=origin, log_key=keys.log.to_text(),
        clock_key=keys.clock.to_text() if keys.clock else None, entries=size, runs=len(merger.runs), tiles=tiles,
        checkpoints=len(checkpoint_sizes), daily_roots=daily_count,
        latest_checkpoint=checkpoint_sizes[-1] if checkpoint_sizes else None,
        latest_signed_at=format_utc(datetime.fromtimestamp(signed_at, timezone.utc), 0) if signed_at else None,
        root=merger.roots[size].hex() if size in merger.roots else None, anchors=summaries, failures=listed,
        notes=tuple(extra_notes + more), seconds=time.perf_counter() - started, workers=min(workers, len(tasks)) or 1,
    )
