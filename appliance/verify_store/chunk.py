"""One chunk of the store checked on its own, so that chunks can be checked in parallel.

A chunk is the entries rows with seq in [start, end), start a multiple of the tile width. For them
the worker checks everything that needs no other chunk: each entry strictly valid (`scan_entry`),
its recorded hash, its seq equal to its position, its `prev` equal to the previous entry's hash,
the summary columns of its row equal to its bytes, `received_at` never going back, and each run's
chain from the run's first entry in the chunk on. It rebuilds the chunk's level-0 tiles and their
roots from the leaves and compares them with the stored ones. What links the chunk to the ones
before it (the first `prev`, each run's first entry in the chunk, the tree above level 8) goes back
in the `ChunkResult` for the caller, who merges chunks in order (see `merge.py`).

The scan stops checking links at the first problem: after a break every later link is
meaningless, and the caller re-runs the core verifier there to say exactly what broke.
"""

import hashlib
import sqlite3
from dataclasses import dataclass, field

from appliance.core.compact import CompactRange
from appliance.core.errors import EntryError
from appliance.core.tiles import TILE_WIDTH
from appliance.store.db import connect
from appliance.verify_store.entry_scan import ScannedEntry, hex_ok, scan_entries

BATCH_ROWS = 8192
_ROWS = ("SELECT seq, trace_id, run_seq, received_at, CAST(data AS BLOB), CAST(hash AS BLOB) FROM entries "
         "WHERE seq >= ? AND seq < ? ORDER BY seq")
_COLUMNS = ("seq", "trace_id", "run_seq", "received_at")


@dataclass(frozen=True)
class ChunkTask:
    """Check entries [start, end) of the store at `db_path`; report the right-edge peaks at each of
    `sizes` (tree sizes in (start, end]) and the received_at of each seq in `positions`."""

    db_path: str
    start: int
    end: int
    sizes: tuple[int, ...] = ()
    positions: tuple[int, ...] = ()


@dataclass(frozen=True)
class Problem:
    """The first thing in the chunk that does not hold, at stream `position` (row `column_seq`).

    kind "chain": a global-chain rule (unreadable entry, recorded hash, seq, prev) broke; the caller
    asks the core verifier for the reason, starting at `position` after `head` (the previous
    entry's hash). kind "run" and "columns": `reason`, `seq` and `message` are final.
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
    rows: int = 0
    first_prev: bytes | None = None
    last_digest: bytes | None = None
    first_received_at: bytes = b""
    last_received_at: bytes = b""
    problem: Problem | None = None
    clock_problem: tuple[int, str] | None = None
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
    _check_tiles(conn, task.start, leaves, result)
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


def _scan_rows(cursor: sqlite3.Cursor, task: ChunkTask, result: ChunkResult, leaves: list[bytes]) -> None:
    sha256 = hashlib.sha256
    wanted = set(task.positions)
    runs: dict[str, list] = {}
    position = task.start
    last: bytes | None = None
    last_hex = ""
    last_received = ""
    problem: Problem | None = None
    while batch := cursor.fetchmany(BATCH_ROWS):
        present = _contiguous(batch, task.start + len(leaves))
        rows, missing = batch[:present], batch[present:]
        datas = [row[4] for row in rows]
        digests = [sha256(data).digest() for data in datas]
        leaves.extend([sha256(b"\x00" + data).digest() for data in datas])
        for row, entry, digest in zip(rows, scan_entries(datas, check_hashes=False) if problem is None else (), digests):
            if (type(entry) is EntryError or entry.seq != position or digest != row[5]
                    or (entry.prev != last_hex if position != task.start else not hex_ok(entry.prev))
                    or (entry.trace_id not in runs and not hex_ok(entry.run_prev))):
                problem = Problem("chain", position, row[0], last)
                break
            if (entry.seq, entry.trace_id, entry.run_seq, entry.received_at) != row[:4]:
                problem = _column_problem(entry, row, position, last)
                break
            hexed = digest.hex()
            problem = _add_to_run(runs, entry, position, hexed)
            if problem is not None:
                break
            received = entry.received_at
            if received < last_received and result.clock_problem is None and earlier(received, last_received):
                result.clock_problem = (position, f"received_at {received} is before the previous entry's "
                                                  f"{last_received}")
            if position == task.start:
                result.first_prev, result.first_received_at = entry.prev, received
            if position in wanted:
                result.received[position] = received
            last, last_hex, last_received = digest, hexed, received
            position += 1
        if missing:  # a row is missing: neither the chain nor the tree can go past it
            gap = task.start + len(leaves)
            result.tree_problem = (gap, f"the entries table has no row with seq {gap}")
            if problem is None:
                problem = Problem("chain", position, missing[0][0], last)
            break
    result.rows = position - task.start
    result.last_digest = last
    result.last_received_at = last_received
    result.problem = problem
    result.runs = [(trace_id, *state) for trace_id, state in runs.items()]


def _add_to_run(runs: dict[str, list], entry: ScannedEntry, position: int, hexed: str) -> Problem | None:
    """appliance.core.chain.RunChains.add for a run's later entries in the chunk (same reasons)."""
    trace_id, run_seq, seq = entry.trace_id, entry.run_seq, entry.seq
    run = runs.get(trace_id)
    if run is None:
        runs[trace_id] = [position, seq, run_seq, entry.run_prev, run_seq + 1, hexed, entry.final is True, seq,
                          entry.status == "failed"]
        return None
    count, head, closed, last_seq = run[4], run[5], run[6], run[7]
    if run_seq != count or closed or entry.run_prev != head:
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


def _column_problem(entry: ScannedEntry, row: tuple, position: int, last: bytes | None) -> Problem:
    for index, name in enumerate(_COLUMNS):
        stored, written = row[index], getattr(entry, name)
        if stored != written:
            return Problem("columns", position, row[0], last, "edited", position,
                           f"the row's {name} column holds {stored!r}, the entry's bytes say {written!r}")
    raise AssertionError("no column differs")  # pragma: no cover - called only when one does


def earlier(text: str, than: str) -> bool:
    """True if entry time `text` is earlier than `than` (they may differ in fraction digits)."""
    def key(value: str) -> tuple[str, str]:
        return value[:19], value[20:-1].ljust(9, "0") if value[19:20] == "." else "0" * 9

    return key(text) < key(than)


def _tile_root(hashes: list[bytes]) -> bytes:
    sha256 = hashlib.sha256
    while len(hashes) > 1:
        pairs = iter(hashes)
        hashes = [sha256(b"\x01" + left + right).digest() for left, right in zip(pairs, pairs)]
    return hashes[0]


def _check_tiles(conn: sqlite3.Connection, start: int, leaves: list[bytes], result: ChunkResult) -> None:
    """Compare the chunk's full level-0 tiles and their roots with the stored ones."""
    first_tile, full = start // TILE_WIDTH, len(leaves) // TILE_WIDTH
    result.leaves = len(leaves)
    span = (first_tile, first_tile + full)  # tile_key(0, index) == index
    tiles = dict(conn.execute("SELECT id, CAST(hashes AS BLOB) FROM tiles WHERE id >= ? AND id < ?", span))
    roots = dict(conn.execute("SELECT id, CAST(hash AS BLOB) FROM tile_roots WHERE id >= ? AND id < ?", span))
    problem = None
    for offset in range(full):
        hashes = leaves[offset * TILE_WIDTH:(offset + 1) * TILE_WIDTH]
        root = _tile_root(hashes)
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
    if problem is not None:  # tiles lie before any missing row, so this one comes first
        result.tree_problem = problem
