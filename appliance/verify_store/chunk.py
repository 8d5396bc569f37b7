"""One chunk of the store checked on its own, so that chunks can be checked in parallel.

A chunk is the entries rows with seq in [start, end), start a multiple of the tile width. For them
the worker checks everything that needs no other chunk: each entry strictly valid (`scan_entries`),
its recorded hash, its seq equal to its position, its `prev` equal to the previous entry's hash,
the summary columns of its row equal to its bytes, `received_at` never going back, and each run's
chain from the run's first entry in the chunk on, and that `run_entries` leads from each entry's
(run, run_seq) to its seq. It rebuilds the chunk's level-0 tiles and their
roots from the leaves and compares them with the stored ones. What links the chunk to the ones
before it (the first `prev`, each run's first entry in the chunk, the tree above level 8) goes back
in the `ChunkResult` for the caller, who merges chunks in order (see `merge.py`).

Links are checked a batch of rows at a time, by whole-list comparisons in C when everything
holds, entry by entry otherwise. The scan stops checking links at the first problem: after a
break every later link is meaningless, and the caller re-runs the core verifier there to say
exactly what broke. The leaves (and so the tree) go on to the end of the chunk or the first
missing row.
"""

import hashlib
import sqlite3
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter

from appliance.core.compact import CompactRange
from appliance.core.tiles import MID_LEVEL, TILE_WIDTH
from appliance.store.db import connect
from appliance.verify_store.entry_scan import ScannedEntry, hex_ok, scan_entries

BATCH_ROWS = 8192
_ROWS = ("SELECT seq, trace_id, run_seq, received_at, CAST(data AS BLOB), CAST(hash AS BLOB) FROM entries "
         "WHERE seq >= ? AND seq < ? ORDER BY seq")
_COLUMNS = ("seq", "trace_id", "run_seq", "received_at")
_DATA, _RECORDED, _ROW_COLUMNS = itemgetter(4), itemgetter(5), itemgetter(0, 1, 2, 3)
_SEQ, _PREV, _RECEIVED = attrgetter("seq"), attrgetter("prev"), attrgetter("received_at")
_COLUMN_VALUES = attrgetter(*_COLUMNS)
# The first entry of [start, end) that run_entries does not lead to from (its run's first_seq,
# its run_seq); the run's first_seq comes from `runs`, whose rows the merger checks against the entries.
_UNINDEXED = ("SELECT e.seq, e.trace_id, e.run_seq FROM entries AS e WHERE e.seq >= ? AND e.seq < ? AND NOT EXISTS "
              "(SELECT 1 FROM runs AS r JOIN run_entries AS re ON re.run = r.first_seq WHERE r.trace_id = e.trace_id "
              "AND re.run_seq = e.run_seq AND re.seq = e.seq) ORDER BY e.seq LIMIT 1")


@dataclass(frozen=True)
class ChunkTask:
    """Check entries [start, end) of the store at `db_path`; report the right-edge peaks at each of
    `sizes` (tree sizes in (start, end]) and the received_at of each seq in `positions`."""

    db_path: str
    start: int
    end: int
    sizes: tuple[int, ...] = ()
    positions: tuple[int, ...] = ()
    level4: bool = True  # the store has the level4_nodes table (schema 4 on) to compare
    run_entries: bool = True  # the store has the run_entries table (schema 5 on) to compare


@dataclass(frozen=True)
class Problem:
    """The first thing in the chunk that does not hold, at stream `position` (row `column_seq`).

    kind "chain": a global-chain rule (unreadable entry, recorded hash, seq, prev) broke; the caller
    asks the core verifier for the reason, starting at `position` after `head` (the previous
    entry's hash). kind "run": `reason`, `seq` and `message` are final.
    """

    kind: str
    position: int
    column_seq: int
    head: bytes | None
    reason: str = ""
    seq: int = 0
    message: str = ""


@dataclass
class ChunkResult:
    """What the caller needs to link this chunk to the ones before it."""

    start: int
    end: int
    rows: int = 0  # entries linked: up to the first problem
    first_prev: str | None = None
    last_digest: bytes | None = None
    first_received_at: str = ""
    last_received_at: str = ""
    problem: Problem | None = None
    # (seq, message) of the first row whose indexed columns disagree with its bytes, and of the
    # first entry received before the one before it: neither breaks a chain, so linking goes on.
    column_problem: tuple[int, str] | None = None
    clock_problem: tuple[int, str] | None = None
    run_index_problem: tuple[int, str] | None = None  # (seq, message): run_entries does not lead to it
    # Per run, in order of first appearance: (trace_id, position, seq, run_seq, run_prev, count, head,
    # closed, last_seq, failed) where the last five describe the run after its last entry in the chunk.
    runs: list[tuple] = field(default_factory=list)
    leaves: int = 0  # leaves rebuilt: rows up to the first missing one
    tile_roots: list[bytes] = field(default_factory=list)
    tree_problem: tuple[int, str] | None = None
    peaks: dict[int, list[bytes]] = field(default_factory=dict)
    received: dict[int, bytes] = field(default_factory=dict)


def check_chunk(task: ChunkTask) -> ChunkResult:
    """Check one chunk against a read-only connection of its own (safe to run in a worker process)."""
    conn = connect(task.db_path, readonly=True)
    try:
        return scan_chunk(conn, task)
    finally:
        conn.close()


def scan_chunk(conn: sqlite3.Connection, task: ChunkTask) -> ChunkResult:
    """Check entries [task.start, task.end) read through `conn`. Precondition: start is a multiple
    of the tile width and the rows are committed (entries never change once committed)."""
    result = ChunkResult(task.start, task.end)
    leaves: list[bytes] = []
    _scan_rows(conn.execute(_ROWS, (task.start, task.end)), task, result, leaves)
    _check_tiles(conn, task.start, leaves, result, task.level4)
    if task.run_entries:
        row = conn.execute(_UNINDEXED, (task.start, task.end)).fetchone()
        if row is not None:
            result.run_index_problem = (row[0], f"run_entries does not lead to entry {row[0]} from its run "
                                                f"{row[1]}'s first seq and run_seq {row[2]}")
    for size in task.sizes:
        partial = size % TILE_WIDTH
        if size - task.start <= len(leaves):
            peaks = CompactRange()
            for leaf in leaves[size - partial - task.start:size - task.start]:
                peaks.append(leaf)
            result.peaks[size] = list(peaks.peaks)
    return result


def _contiguous(batch: list, first: int) -> int:
    """How many rows of `batch` (ordered by seq) have seq first, first + 1, ... without a gap."""
    if batch[-1][0] == first + len(batch) - 1:  # seq is the primary key: no duplicates
        return len(batch)
    return next(i for i, row in enumerate(batch) if row[0] != first + i)


class _Links:
    """The chunk's chain state while its rows are read in batches."""

    def __init__(self, task: ChunkTask) -> None:
        self.task = task
        self.wanted = set(task.positions)
        self.runs: dict[str, list] = {}
        self.position = task.start
        self.last: bytes | None = None
        self.last_hex = ""
        self.last_received = ""
        self.problem: Problem | None = None

    def add_batch(self, rows: list, digests: list[bytes], result: ChunkResult) -> None:
        """Link a batch of contiguous rows: whole-batch comparisons in C when everything holds (the
        usual case), else entry by entry to find the first problem."""
        scanned = scan_entries(list(map(_DATA, rows)), check_hashes=False)
        hexes = [digest.hex() for digest in digests]
        start = self.position
        prevs = list(map(_PREV, scanned)) if set(map(type, scanned)) == {ScannedEntry} else None
        if (prevs is not None and list(map(_SEQ, scanned)) == list(range(start, start + len(rows)))
                and digests == list(map(_RECORDED, rows)) and prevs[1:] == hexes[:-1]
                and (prevs[0] == self.last_hex if start != self.task.start else hex_ok(prevs[0]))
                and list(map(_COLUMN_VALUES, scanned)) == list(map(_ROW_COLUMNS, rows))):
            received = list(map(_RECEIVED, scanned))
            if received == sorted(received) and not (self.last_received and received[0] < self.last_received):
                done = self._extend_runs(scanned, hexes)
                if start == self.task.start and done:
                    result.first_prev, result.first_received_at = prevs[0], received[0]
                for position in self.wanted.intersection(range(start, start + done)):
                    result.received[position] = received[position - start]
                if done:
                    self.last, self.last_hex, self.last_received = digests[done - 1], hexes[done - 1], received[done - 1]
                    self.position = start + done
                if done < len(rows):  # an entry does not continue its run: say how, entry by entry
                    self._entry_by_entry(rows[done:], scanned[done:], digests[done:], hexes[done:], result)
                return
        self._entry_by_entry(rows, scanned, digests, hexes, result)

    def _extend_runs(self, scanned: list, hexes: list[str]) -> int:
        """Extend the runs by the batch's entries (`_add_to_run` inlined: this is the hot loop),
        stopping before the first one that does not continue its run; return how many did."""
        runs, position = self.runs, self.position
        for done, (entry, hexed) in enumerate(zip(scanned, hexes)):
            run = runs.get(entry.trace_id)
            if run is None:
                if not hex_ok(entry.run_prev):
                    return done
                runs[entry.trace_id] = [position, position, entry.run_seq, entry.run_prev, entry.run_seq + 1, hexed,
                                        entry.final is True, position, entry.status == "failed"]
            elif entry.run_seq == run[4] and entry.run_prev == run[5] and not run[6]:
                run[4], run[5], run[6], run[7] = run[4] + 1, hexed, entry.final is True, position
                if entry.status == "failed":
                    run[8] = True
            else:
                return done
            position += 1
        return len(scanned)

    def _advance(self, entry: ScannedEntry, digest: bytes, hexed: str, result: ChunkResult) -> None:
        position = self.position
        if position == self.task.start:
            result.first_prev, result.first_received_at = entry.prev, entry.received_at
        if position in self.wanted:
            result.received[position] = entry.received_at
        self.last, self.last_hex, self.last_received = digest, hexed, entry.received_at
        self.position = position + 1

    def _entry_by_entry(self, rows: list, scanned: list, digests: list[bytes], hexes: list[str],
                        result: ChunkResult) -> None:
        for row, entry, digest, hexed in zip(rows, scanned, digests, hexes):
            position = self.position
            if (type(entry) is not ScannedEntry or entry.seq != position or digest != row[5]
                    or (entry.prev != self.last_hex if position != self.task.start else not hex_ok(entry.prev))
                    or (entry.trace_id not in self.runs and not hex_ok(entry.run_prev))):
                self.problem = Problem("chain", position, row[0], self.last)
                return
            self.problem = _add_to_run(self.runs, entry, position, hexed, self.last)
            if self.problem is not None:
                return
            if _COLUMN_VALUES(entry) != row[:4] and result.column_problem is None:
                result.column_problem = (position, _column_difference(entry, row))
            received = entry.received_at
            if (received < self.last_received and result.clock_problem is None
                    and earlier(received, self.last_received)):
                result.clock_problem = (position, f"received_at {received} is before the previous entry's "
                                                  f"{self.last_received}")
            self._advance(entry, digest, hexed, result)


def _scan_rows(cursor: sqlite3.Cursor, task: ChunkTask, result: ChunkResult, leaves: list[bytes]) -> None:
    sha256 = hashlib.sha256
    links = _Links(task)
    while batch := cursor.fetchmany(BATCH_ROWS):
        present = _contiguous(batch, task.start + len(leaves))
        rows, missing = batch[:present], batch[present:]
        digests = [sha256(data).digest() for data in map(_DATA, rows)]
        leaves.extend([sha256(b"\x00" + data).digest() for data in map(_DATA, rows)])
        if links.problem is None and rows:
            links.add_batch(rows, digests, result)
        if missing:  # a row is missing: neither the chain nor the tree can go past it
            gap = task.start + len(leaves)
            result.tree_problem = (gap, f"the entries table has no row with seq {gap}")
            if links.problem is None:
                links.problem = Problem("chain", links.position, missing[0][0], links.last)
            break
    result.rows = links.position - task.start
    result.last_digest = links.last
    result.last_received_at = links.last_received
    result.problem = links.problem
    result.runs = [(trace_id, *state) for trace_id, state in links.runs.items()]


def _add_to_run(runs: dict[str, list], entry: ScannedEntry, position: int, hexed: str,
                last: bytes | None) -> Problem | None:
    """appliance.core.chain.RunChains.add for a run's later entries in the chunk (same reasons)."""
    trace_id, run_seq, seq = entry.trace_id, entry.run_seq, entry.seq
    run = runs.get(trace_id)
    if run is None:
        runs[trace_id] = [position, seq, run_seq, entry.run_prev, run_seq + 1, hexed, entry.final is True, seq,
                          entry.status == "failed"]
        return None
    count, head, closed, last_seq = run[4], run[5], run[6], run[7]
    if run_seq != count or closed or entry.run_prev != head:
        if not hex_ok(entry.run_prev):  # not a valid entry at all: the core says how
            return Problem("chain", position, seq, last)
        reason, problem_seq, message = run_problem(trace_id, entry, count, head, closed, last_seq)
        return Problem("run", position, seq, None, reason, problem_seq, message)
    run[4], run[5], run[6], run[7] = run_seq + 1, hexed, entry.final is True, seq
    if entry.status == "failed":
        run[8] = True
    return None


def run_problem(trace_id: str, entry: ScannedEntry, count: int, head: str, closed: bool,
                last_seq: int) -> tuple[str, int, str]:
    """(reason, seq, message) for an `entry` that does not continue its run (count entries so far,
    the last one hashing to `head`, at `last_seq`), as RunChains.add reports it."""
    run_seq, seq = entry.run_seq, entry.seq
    where = f"trace {trace_id} run_seq {run_seq}: "
    if closed:
        return "inserted", seq, f"{where}the run was closed by its final entry at seq {last_seq}"
    if run_seq > count:
        return "missing", seq, f"{where}run_seq {count}..{run_seq - 1} are missing before it"
    if run_seq < count:
        return "inserted", seq, f"{where}run_seq {run_seq} appears again (the run already has {count})"
    return ("edited", last_seq, f"trace {trace_id} run_seq {count - 1}: this entry hashes to {head} but the "
            f"run's next entry (seq {seq}) records run_prev {entry.run_prev or 'null'}")


def _column_difference(entry: ScannedEntry, row: tuple) -> str:
    name, stored, written = next((name, row[i], getattr(entry, name)) for i, name in enumerate(_COLUMNS)
                                 if row[i] != getattr(entry, name))
    return f"the row's {name} column holds {stored!r}, the entry's bytes say {written!r}"


def earlier(text: str, than: str) -> bool:
    """True if entry time `text` is earlier than `than` (they may differ in fraction digits)."""
    def key(value: str) -> tuple[str, str]:
        return value[:19], value[20:-1].ljust(9, "0") if value[19:20] == "." else "0" * 9

    return key(text) < key(than)


def _tile_root(hashes: list[bytes]) -> tuple[bytes, bytes]:
    """A full tile's root and its level-4 nodes concatenated."""
    sha256 = hashlib.sha256
    mids = b""
    while len(hashes) > 1:
        pairs = iter(hashes)
        hashes = [sha256(b"\x01" + left + right).digest() for left, right in zip(pairs, pairs)]
        if len(hashes) == TILE_WIDTH >> MID_LEVEL:
            mids = b"".join(hashes)
    return hashes[0], mids


def _check_tiles(conn: sqlite3.Connection, start: int, leaves: list[bytes], result: ChunkResult, level4: bool) -> None:
    """Compare the chunk's full level-0 tiles, their roots and level-4 nodes with the stored ones."""
    first_tile, full = start // TILE_WIDTH, len(leaves) // TILE_WIDTH
    result.leaves = len(leaves)
    span = (first_tile, first_tile + full)  # tile_key(0, index) == index
    tiles = dict(conn.execute("SELECT id, CAST(hashes AS BLOB) FROM tiles WHERE id >= ? AND id < ?", span))
    roots = dict(conn.execute("SELECT id, CAST(hash AS BLOB) FROM tile_roots WHERE id >= ? AND id < ?", span))
    mids = None
    if level4:
        mids = dict(conn.execute("SELECT id, CAST(hashes AS BLOB) FROM level4_nodes WHERE id >= ? AND id < ?", span))
    problem = None
    for offset in range(full):
        hashes = leaves[offset * TILE_WIDTH:(offset + 1) * TILE_WIDTH]
        root, level4_nodes = _tile_root(hashes)
        result.tile_roots.append(root)
        if problem is not None:
            continue
        index, first = first_tile + offset, start + offset * TILE_WIDTH
        stored = tiles.get(index)
        if stored is None:
            problem = (first, f"stored tile tile/0/{index} is missing")
        elif stored != b"".join(hashes):
            bad = next((i for i, h in enumerate(hashes) if stored[i * 32:(i + 1) * 32] != h), 0)
            problem = (first + bad, f"stored tile tile/0/{index} holds a different hash for leaf {first + bad} "
                                    "than the entry's bytes give")
        elif roots.get(index) != root:
            problem = (first, f"the stored root of tile tile/0/{index} is missing or wrong")
        elif mids is not None and mids.get(index) != level4_nodes:
            problem = (first, f"the stored level-4 nodes of tile tile/0/{index} are missing or wrong")
    if problem is not None:  # tiles lie before any missing row, so this one comes first
        result.tree_problem = problem
