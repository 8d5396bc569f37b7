"""Joining checked chunks, in seq order, into one verdict on the whole log.

`LogMerger.add` takes each chunk's `ChunkResult` in order and checks what links it to the chunks
before it: the first entry's `prev`, each run's first entry in the chunk against the run as it
stood (the rules of `appliance.core.chain.RunChains`, with the same reasons and seqs), and the
Merkle tree above the level-0 tiles: the chunks' tile roots are appended to a compact range, whose
completed nodes at tile levels are compared with the stored tiles and tile roots of levels >= 1,
and whose peaks give the root at every wanted tree size.

Memory: the run states (one small list per run, O(runs)) and one root per wanted size; nothing
per entry. After the first break of either chain the merger stops linking (every later link is
meaningless) and asks the core verifier, from the last good entry, what broke and where.
"""

import sqlite3
from dataclasses import dataclass

from appliance.core.chain import ChainHead, verify_global_chain
from appliance.core.compact import CompactRange
from appliance.core.errors import ChainError, InvalidInput
from appliance.core.hashing import EMPTY_ROOT, node_hash
from appliance.core.tiles import TILE_HEIGHT, TILE_WIDTH, TileID
from appliance.core.tree import NodeID
from appliance.store.tiles import tile_key
from appliance.verify_store.chunk import ChunkResult, Problem, earlier, run_problem
from appliance.verify_store.report import Failure


@dataclass(slots=True)
class RunState:
    """A run after its entries so far: count, last entry's hash, closed, last seq, whether any
    entry failed, and its first seq (what the `runs` table summarises)."""

    count: int
    head: bytes
    closed: bool
    last_seq: int
    failed: bool
    first_seq: int


def _strip(error: ChainError) -> str:
    prefix = f"seq {error.seq}: {error.reason}: "
    text = str(error)
    return text[len(prefix):] if text.startswith(prefix) else text


class _UpperTree:
    """The tree above tree level 8, built from the level-0 tiles' roots in order; checks the stored
    tiles of levels >= 1 and their roots as they complete."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.range = CompactRange()
        self._partial: dict[int, list[bytes]] = {}
        self.problem: Failure | None = None

    def append(self, tile_root: bytes) -> None:
        self.range.append(tile_root, self._on_node)

    def _on_node(self, node: NodeID, hash_: bytes) -> None:
        if node.level % TILE_HEIGHT or self.problem is not None:
            return
        level = node.level // TILE_HEIGHT + 1  # this node is a hash of a level-`level` tile
        first = node.index * TILE_WIDTH ** level  # its first leaf
        if level >= 2 and self._stored("tile_roots", "hash", tile_key(level - 1, node.index)) != hash_:
            self.problem = Failure("tree", "edited", f"the stored root of tile {TileID(level - 1, node.index).path} "
                                                     "is missing or differs from the tree the entries give", seq=first)
            return
        hashes = self._partial.setdefault(level, [])
        hashes.append(hash_)
        if len(hashes) == TILE_WIDTH:
            tile = TileID(level, node.index // TILE_WIDTH)
            if self._stored("tiles", "hashes", tile_key(level, tile.index)) != b"".join(hashes):
                self.problem = Failure("tree", "edited", f"the stored tile {tile.path} is missing or differs from "
                                                         "the tree the entries give", seq=tile.start)
            hashes.clear()

    def _stored(self, table: str, column: str, key: int) -> bytes | None:
        row = self._conn.execute(f"SELECT CAST({column} AS BLOB) FROM {table} WHERE id = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def root_with(self, right_edge: list[bytes]) -> bytes:
        """The root of the tree made of the tiles appended so far and the `right_edge` peaks."""
        peaks = [*self.range.peaks, *right_edge]
        if not peaks:
            return EMPTY_ROOT
        root = peaks[-1]
        for peak in reversed(peaks[:-1]):
            root = node_hash(peak, root)
        return root


class LogMerger:
    """Merges chunk results in order. After the last one: the first failure of each kind
    (`chain_failure`, `column_failure`, `run_index_failure`, `clock_failure`, `tree_failure`), the run states (`runs`),
    the root at each wanted size (`roots`), the received_at of each wanted seq (`received`), and
    `tree_end` when a missing row stops the tree."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.position = 0  # entries linked so far (stream position)
        self.head: bytes | None = None
        self.runs: dict[str, RunState] = {}
        self.chain_failure: Failure | None = None
        self.clock_failure: Failure | None = None
        self.column_failure: Failure | None = None
        self.run_index_failure: Failure | None = None
        self.tree_end: int | None = None  # set when the tree cannot be rebuilt past this seq
        self.tree_failure: Failure | None = None
        self.roots: dict[int, bytes] = {0: EMPTY_ROOT}
        self.received: dict[int, str] = {}
        self._upper = _UpperTree(conn)
        self._last_received = ""

    def add(self, result: ChunkResult) -> None:
        """Link the next chunk (results must come in increasing `start`, one per chunk)."""
        self.received.update(result.received)
        if self.chain_failure is None:
            self._link(result)
        self._side_checks(result)
        self._tree(result)

    # -- the chains -------------------------------------------------------------------------

    def _link(self, result: ChunkResult) -> None:
        if self.position != result.start:  # rows are missing at the end of the previous chunk
            row = self._conn.execute("SELECT min(seq) FROM entries WHERE seq >= ?", (self.position,)).fetchone()
            self._diagnose(self.position, row[0], self.head)
            return
        problem = result.problem
        if result.rows and result.start and result.first_prev != (self.head.hex() if self.head else None):
            problem = Problem("chain", result.start, result.start, self.head)
        stop = problem.position if problem is not None else result.start + result.rows
        for trace_id, position, seq, run_seq, run_prev, count, head, closed, last_seq, failed in result.runs:
            if position >= stop:
                break
            state = self.runs.get(trace_id)
            if state is None:
                if run_seq != 0:
                    self.chain_failure = Failure(
                        "entries", "missing", f"trace {trace_id} run_seq {run_seq}: the run's first entry has "
                                              f"run_seq {run_seq}; run_seq 0..{run_seq - 1} are missing", seq=seq)
                    return
                self.runs[trace_id] = RunState(count, bytes.fromhex(head), closed, last_seq, failed, seq)
                continue
            if state.closed or run_seq != state.count or run_prev != state.head.hex():
                entry = _FirstEntry(seq, run_seq, run_prev)
                reason, at, message = run_problem(trace_id, entry, state.count, state.head.hex(), state.closed,
                                                  state.last_seq)  # type: ignore[arg-type]
                self.chain_failure = Failure("entries", reason, message, seq=at)
                return
            state.count, state.head, state.closed, state.last_seq = count, bytes.fromhex(head), closed, last_seq
            state.failed = state.failed or failed
        if problem is None:
            self.position += result.rows
            self.head = result.last_digest if result.rows else self.head
        elif problem.kind == "chain":
            self._diagnose(problem.position, problem.column_seq, problem.head if problem.position > result.start
                           else self.head)
        else:
            self.chain_failure = Failure("entries", problem.reason, problem.message, seq=problem.seq)

    def _diagnose(self, position: int, column_seq: int | None, head: bytes | None) -> None:
        """Ask the core verifier what breaks at stream `position` (row `column_seq`), after `head`."""
        rows = [] if column_seq is None else self._conn.execute(
            "SELECT CAST(data AS BLOB), CAST(hash AS BLOB) FROM entries WHERE seq >= ? ORDER BY seq LIMIT 2",
            (column_seq,)).fetchall()
        try:
            verify_global_chain(rows, start=ChainHead(position, head) if position else None)
        except ChainError as error:
            self.chain_failure = Failure("entries", error.reason, _strip(error), seq=error.seq)
            return
        except InvalidInput as error:  # a head that is not 32 bytes: the hash column itself is bad
            self.chain_failure = Failure("entries", "malformed", f"unreadable entry: {error}", seq=position)
            return
        self.chain_failure = Failure("entries", "missing", f"the entries table has no row with seq {position}",
                                     seq=position)

    def _side_checks(self, result: ChunkResult) -> None:
        """The checks that do not stop linking: indexed columns, received_at order."""
        if result.column_problem is not None and self.column_failure is None:
            self.column_failure = Failure("entries", "mismatch", result.column_problem[1], seq=result.column_problem[0])
        if result.run_index_problem is not None and self.run_index_failure is None:
            self.run_index_failure = Failure("runs", "missing", result.run_index_problem[1],
                                             seq=result.run_index_problem[0])
        if self.clock_failure is not None:
            return
        if (result.rows and result.first_received_at and self._last_received
                and earlier(result.first_received_at, self._last_received)):
            self.clock_failure = Failure("entries", "clock", f"received_at {result.first_received_at} is before the "
                                         f"previous entry's {self._last_received}", seq=result.start)
        elif result.clock_problem is not None:
            self.clock_failure = Failure("entries", "clock", result.clock_problem[1], seq=result.clock_problem[0])
        if result.rows:
            self._last_received = result.last_received_at

    # -- the tree ---------------------------------------------------------------------------

    def _tree(self, result: ChunkResult) -> None:
        if self.tree_end is not None:
            return
        if result.tree_problem is not None and self.tree_failure is None:
            self.tree_failure = Failure("tree", "edited", result.tree_problem[1], seq=result.tree_problem[0])
        roots = iter(result.tile_roots)
        for size in sorted(result.peaks):
            while self._upper.range.size < size // TILE_WIDTH:
                self._upper.append(next(roots))
            self.roots[size] = self._upper.root_with(result.peaks[size])
        for tile_root in roots:
            self._upper.append(tile_root)
        if self._upper.problem is not None and self.tree_failure is None:
            self.tree_failure = self._upper.problem
        if result.leaves < result.end - result.start:  # a row is missing: no tree past it
            self.tree_end = result.start + result.leaves


@dataclass(frozen=True)
class _FirstEntry:
    """The fields `run_problem` reads, for a run's first entry in a chunk."""

    seq: int
    run_seq: int
    run_prev: str | None
