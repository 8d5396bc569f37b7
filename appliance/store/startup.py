"""Restore the writer's state from the store, and refuse to continue a log that does not verify.

What is checked at every start (the full check is `runlog verify --db`):
- the stored tree at the last checkpoint's size has the checkpoint's root;
- the entry just before that size is the one the tree committed to (its leaf hash is in the tree);
- every entry after it: canonical, its recorded hash right, chained to the one before (`prev`),
  chained within its run (`run_prev`, `run_seq`), and in the tree (tiles give the same frontier);
- the `runs` table's heads match the entries they summarise, and `run_entries` leads to each of
  those entries, for every run touched since.
"""

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

from appliance.core.chain import ChainHead, verify_global_chain
from appliance.core.compact import CompactRange
from appliance.core.entry import decode_entry
from appliance.core.errors import ChainError, RunlogError
from appliance.core.hashing import leaf_hash
from appliance.store.errors import StoreCorrupt
from appliance.core.tiles import TILE_WIDTH
from appliance.store.tree_reader import TreeReader


@dataclass(frozen=True)
class RestoredLog:
    frontier: CompactRange
    head_hash: bytes | None
    last_received_at: str


def _last_checkpoint(conn: sqlite3.Connection) -> tuple[int, bytes] | None:
    return conn.execute("SELECT size, root FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()


def restore_log(conn: sqlite3.Connection) -> RestoredLog:
    """The frontier, head hash and last received_at of the stored log, after checking its tail.

    Raises `StoreCorrupt` naming the first bad seq."""
    size = conn.execute("SELECT coalesce(max(seq) + 1, 0) FROM entries").fetchone()[0]
    checkpoint = _last_checkpoint(conn)
    start = 0
    reader = TreeReader(conn)
    if checkpoint is not None:
        start, root = checkpoint
        if start > size:
            raise StoreCorrupt(f"the log ends after {size} entries but a checkpoint covers {start}: "
                               "entries were removed (truncated)", seq=size)
        if start and reader.root(start) != root:
            _explain_root_mismatch(conn, reader, start)
    head = ChainHead(0, None)
    frontier = reader.frontier(start)
    if start:
        data, recorded = conn.execute("SELECT data, hash FROM entries WHERE seq = ?", (start - 1,)).fetchone() or (b"", b"")
        if leaf_hash(data) != reader.leaf_hash(start - 1):
            raise StoreCorrupt("entry was edited after it was checkpointed (its leaf is not in the tree)", seq=start - 1)
        head = ChainHead(start, recorded)

    tail = _Tail(conn, start, frontier)
    try:
        head = verify_global_chain(tail.rows(), start=head)
    except ChainError as error:
        raise StoreCorrupt(f"the log's chain is broken ({error.reason}): {error}", seq=error.seq) from None
    except RunlogError as error:
        raise StoreCorrupt(f"the log cannot be read: {error}") from None
    if head.size != size:
        raise StoreCorrupt(f"entries {head.size}..{size - 1} are missing", seq=head.size)
    stored = reader.frontier(size)
    if stored.root() != tail.frontier.root():
        raise StoreCorrupt(f"the stored Merkle tree does not match the entries after seq {start}", seq=start)
    _check_run_heads(conn, tail.touched, start)
    last = conn.execute("SELECT received_at FROM entries WHERE seq = ?", (size - 1,)).fetchone()
    return RestoredLog(stored, head.head_hash, last[0] if last else "")


def _explain_root_mismatch(conn: sqlite3.Connection, reader: TreeReader, size: int) -> None:
    """Raise `StoreCorrupt` for a tree that no longer has the checkpoint's root at `size`, naming
    the first bad seq when the entries of the last, partially stored tile show it (the root over
    them is computed from the entries themselves)."""
    tile_start = (size - 1) // TILE_WIDTH * TILE_WIDTH
    head = ChainHead(0, None)
    if tile_start:
        row = conn.execute("SELECT hash FROM entries WHERE seq = ?", (tile_start - 1,)).fetchone()
        head = ChainHead(tile_start, row[0] if row else b"\x00" * 32)
    rows = conn.execute("SELECT data, hash FROM entries WHERE seq >= ? AND seq < ? ORDER BY seq", (tile_start, size))
    try:
        verify_global_chain(((bytes(d), bytes(h)) for d, h in rows), start=head)
    except ChainError as error:
        raise StoreCorrupt(f"the log's chain is broken ({error.reason}) under a signed checkpoint: {error}",
                           seq=error.seq) from None
    raise StoreCorrupt(f"the stored Merkle tree at size {size} does not match the signed checkpoint")


class _Tail:
    """Streams (data, recorded hash) from `start`, rebuilding the frontier and noting the runs seen."""

    def __init__(self, conn: sqlite3.Connection, start: int, frontier: CompactRange) -> None:
        self._conn, self._start = conn, start
        self.frontier = frontier
        self.touched: dict[str, int] = {}  # trace ID -> its entries in the tail

    def rows(self) -> Iterator[tuple[bytes, bytes]]:
        touched = self.touched
        for trace_id, data, recorded in self._conn.execute(
            "SELECT trace_id, data, hash FROM entries WHERE seq >= ? ORDER BY seq", (self._start,)
        ):
            touched[trace_id] = touched.get(trace_id, 0) + 1
            self.frontier.append(leaf_hash(data))
            yield data, recorded


_RUN_ROWS = ("SELECT e.seq, re.run_seq, e.trace_id, e.data, e.hash FROM run_entries AS re "
             "JOIN entries AS e ON e.seq = re.seq WHERE re.run = ? AND re.seq >= ? ORDER BY re.run_seq")
_RUN_ENTRY = ("SELECT e.trace_id, e.hash FROM run_entries AS re JOIN entries AS e ON e.seq = re.seq "
              "WHERE re.run = ? AND re.run_seq = ?")


def _check_run_heads(conn: sqlite3.Connection, touched: dict[str, int], start: int) -> None:
    """Each run touched from `start` on (`touched`: trace ID -> its entries since) has a `runs` row
    that matches its last entry, and its `run_entries` rows lead to all its entries from `start` on,
    chained through `run_prev` to its entry before `start`."""
    for trace_id, tail_count in touched.items():
        head = conn.execute("SELECT count, head, last_seq, closed, first_seq FROM runs WHERE trace_id = ?",
                            (trace_id,)).fetchone()
        if head is None:
            seq = conn.execute("SELECT min(seq) FROM entries WHERE seq >= ? AND trace_id = ?", (start, trace_id))
            raise StoreCorrupt(f"the runs table has no row for run {trace_id}", seq=seq.fetchone()[0])
        run = head[4]
        rows = conn.execute(_RUN_ROWS, (run, start)).fetchall()
        if len(rows) != tail_count or any(row[2] != trace_id for row in rows):
            raise StoreCorrupt(f"run_entries does not lead to the entries of run {trace_id}", seq=head[2])
        first_run_seq = rows[0][1]
        before = conn.execute(_RUN_ENTRY, (run, first_run_seq - 1)).fetchone() if first_run_seq else None
        if (before is None) != (first_run_seq == 0) or (before is not None and before[0] != trace_id):
            raise StoreCorrupt(f"run {trace_id} is missing run_seq {first_run_seq - 1}", seq=rows[0][0])
        previous = before[1] if before else None
        final = False
        for offset, (seq, run_seq, _, data, recorded) in enumerate(rows):
            entry = decode_entry(data)
            if run_seq != first_run_seq + offset or entry.run_seq != run_seq or entry.run_prev != previous:
                raise StoreCorrupt(f"run {trace_id} is broken at run_seq {first_run_seq + offset}", seq=seq)
            previous, final = recorded, entry.final
        last_seq, last_run_seq, _, _, last_hash = rows[-1]
        if head[:4] != (last_run_seq + 1, last_hash, last_seq, int(final)):
            raise StoreCorrupt(f"the runs table does not match the entries of run {trace_id}", seq=last_seq)
