"""Gather one run's evidence from the store and build its signed JSON bundle.

The bundle is proven against one signed checkpoint: the latest (default) or a chosen day's daily
root. Entries of the run beyond that checkpoint's tree are left out (the bundle shows the run as
that checkpoint saw it). Every daily root whose tree holds an entry of the run and that the
checkpoint covers gets a consistency proof; anchors are named where the outbox recorded them.
"""

import sqlite3
from bisect import bisect_left
from dataclasses import dataclass
from datetime import date

from appliance.core.bundle import AnchorLocation, DailyRootProof, ExportedEntry, SignedBundle, sign_bundle
from appliance.core.checkpoint import Checkpoint
from appliance.core.csv_export import build_csv, sign_csv
from appliance.core.keys import NoteSigner
from appliance.core.hashing import HASH_SIZE, node_hash
from appliance.core.tiles import MID_LEVEL, MID_SPAN, TILE_HEIGHT, TILE_WIDTH, TileID, hash_levels
from appliance.core.tree import perfect_subtrees
from appliance.store.checkpoints import StoredCheckpoint, latest_checkpoint
from appliance.store.errors import StoreCorrupt, StoreError
from appliance.store.tiles import read_level0_tiles, read_level4_nodes, read_tile_bytes
from appliance.store.tree_reader import TreeReader


class ExportError(StoreError):
    """The run cannot be exported (unknown trace, or no signed checkpoint covers it)."""


class RunNotFound(ExportError):
    """No entry of this trace is in the store."""


@dataclass(frozen=True)
class RunEvidence:
    """What the store holds for one run under one checkpoint."""

    trace_id: str
    checkpoint: StoredCheckpoint
    entries: tuple[ExportedEntry, ...]
    daily_roots: tuple[DailyRootProof, ...]
    anchors: tuple[AnchorLocation, ...]


def run_rows(conn: sqlite3.Connection, trace_id: str, limit_size: int | None = None) -> list[tuple[int, bytes]]:
    """(seq, canonical bytes) of the run's entries in run order, those below `limit_size` only."""
    rows = conn.execute("SELECT e.seq, CAST(e.data AS BLOB) FROM runs AS r JOIN run_entries AS re "
                        "ON re.run = r.first_seq JOIN entries AS e ON e.seq = re.seq WHERE r.trace_id = ? "
                        "ORDER BY re.run_seq",
                        (trace_id,)).fetchall()
    if not rows:
        raise RunNotFound(f"no run with trace_id {trace_id}")
    if limit_size is not None:
        rows = [row for row in rows if row[0] < limit_size]
    return [(seq, bytes(data)) for seq, data in rows]


def _target(conn: sqlite3.Connection, day: date | None) -> StoredCheckpoint:
    if day is None:
        checkpoint = latest_checkpoint(conn)
        if checkpoint is None:
            raise ExportError("no signed checkpoint yet: run `runlog checkpoint` first")
        return checkpoint
    row = conn.execute("SELECT c.size, CAST(c.root AS BLOB), c.note, c.cut_at FROM daily_roots d "
                       "JOIN checkpoints c ON c.size = d.size WHERE d.day = ?", (day.isoformat(),)).fetchone()
    if row is None:
        raise ExportError(f"no daily root for {day.isoformat()}")
    return StoredCheckpoint(row[0], bytes(row[1]), row[2], row[3])


# For each position in a tile, the (height, byte offset in that level) of its path's siblings: in
# the levels of the whole tile (`_WHOLE`), or, for a full level-0 tile, in the levels of the
# position's group of 16 below level 4 and of the tile's level-4 nodes from there up (`_SPLIT`).
_WHOLE = [[(height, ((position >> height) ^ 1) * HASH_SIZE) for height in range(TILE_HEIGHT)]
          for position in range(TILE_WIDTH)]
_SPLIT = [[(height, (((position & (MID_SPAN - 1)) >> height) ^ 1) * HASH_SIZE) for height in range(MID_LEVEL)]
          + _WHOLE[position][MID_LEVEL:] for position in range(TILE_WIDTH)]


_AHEAD = 256  # level-0 tiles read ahead per statement (~2 MiB)


class _Proofs:
    """Inclusion proofs of many leaves of one tree, planned as transparency-dev/merkle does: the
    siblings of the leaf's path below its fork from the tree's right edge (perfect nodes, read
    from tiles), then the hash of the edge's range right of the fork and the left peaks (both
    shared by many leaves, memoised). The tests check every proof against TreeReader's (core
    planner).

    Nodes inside a full level-0 tile come from its stored level-4 nodes hashed up (15 hashes) and
    the leaf's group of 16 hashed up (15 more), each checked before use: the group's top against
    its level-4 node, and the level-4 nodes' root against the tile's root in the level-1 tile.
    Other tiles (higher levels, the right edge) are hashed up whole. Either way once per export."""

    def __init__(self, conn: sqlite3.Connection, size: int) -> None:
        self._conn, self._size = conn, size
        self._tiles: dict[int, bytes] = {}  # the level-0 tiles in use
        self._mids: dict[int, bytes] = {}  # stored level-4 nodes read ahead, not yet checked
        self._ahead: list[int] = []  # the level-0 tiles `prefetch` was told of, ascending
        self._wholes: dict[tuple[int, int], list[bytes]] = {}
        self._uppers: dict[int, list[bytes]] = {}
        self._groups: dict[tuple[int, int], list[bytes]] = {}
        self._tails: dict[tuple[int, int], list[bytes]] = {}

    def prefetch(self, indices: list[int]) -> None:
        """Read the full level-0 tiles of leaves `indices` (in that order, ascending) and their
        level-4 nodes ahead, `_AHEAD` tiles per statement, not two statements per tile (each is still
        checked when first used). Only the batch in use is kept: the tiles of the leaves before it
        are done with (a tile needed again is read again)."""
        self._ahead = sorted({index >> TILE_HEIGHT for index in indices if self._split(0, index >> TILE_HEIGHT)})

    def _tile(self, tile_index: int) -> bytes:
        """Full level-0 tile `tile_index`, unchecked: read ahead with the next tiles if `prefetch`
        named it, else alone."""
        tile = self._tiles.get(tile_index)
        if tile is None:
            at = bisect_left(self._ahead, tile_index)
            if at < len(self._ahead) and self._ahead[at] == tile_index:
                # The batch before is done with, and what was hashed from it (redone if needed again).
                self._tiles, self._mids, self._uppers, self._groups = {}, {}, {}, {}
                for index, (tile, mids) in read_level0_tiles(self._conn, self._ahead[at:at + _AHEAD]).items():
                    self._tiles[index] = tile
                    self._mids[index] = mids
                tile = self._tiles.get(tile_index)
            if tile is None:
                tile = self._tiles[tile_index] = read_tile_bytes(self._conn, TileID(0, tile_index))
        return tile

    def _split(self, tile_level: int, tile_index: int) -> bool:
        """Whether this tile's nodes come from its level-4 nodes (a full level-0 tile)."""
        return tile_level == 0 and (tile_index + 1) * TILE_WIDTH <= self._size

    def _whole(self, tile_level: int, tile_index: int) -> list[bytes]:
        levels = self._wholes.get((tile_level, tile_index))
        if levels is None:
            width = min(TILE_WIDTH, (self._size >> (TILE_HEIGHT * tile_level)) - tile_index * TILE_WIDTH)
            tile = read_tile_bytes(self._conn, TileID(tile_level, tile_index, width))
            levels = self._wholes[(tile_level, tile_index)] = hash_levels(tile, TILE_HEIGHT - 1)
        return levels

    def _upper(self, tile_index: int) -> list[bytes]:
        """Levels 4 to 7 of full level-0 tile `tile_index`, from its stored level-4 nodes."""
        levels = self._uppers.get(tile_index)
        if levels is None:
            mids = self._mids.pop(tile_index, None) or read_level4_nodes(self._conn, tile_index)
            levels = hash_levels(mids, TILE_HEIGHT - MID_LEVEL)
            if levels.pop() != self._perfect(TILE_HEIGHT, tile_index):
                raise StoreCorrupt(f"the stored level-4 nodes of tile {TileID(0, tile_index).path} do not hash to "
                                   "its root: the store was edited (`runlog verify --db` says where)")
            self._uppers[tile_index] = levels
        return levels

    def _group(self, tile_index: int, group: int) -> list[bytes]:
        """Levels 0 to 7 seen from group `group` of full level-0 tile `tile_index`: the group's 16
        hashes and their parents up to level 3, then the tile's levels 4 to 7."""
        levels = self._groups.get((tile_index, group))
        if levels is None:
            tile = self._tile(tile_index)
            upper = self._upper(tile_index)
            first = group * MID_SPAN * HASH_SIZE
            levels = hash_levels(tile[first : first + MID_SPAN * HASH_SIZE], MID_LEVEL)
            if levels.pop() != upper[0][group * HASH_SIZE : (group + 1) * HASH_SIZE]:
                raise StoreCorrupt(f"tile {TileID(0, tile_index).path} and its stored level-4 node {group} disagree: "
                                   "the store was edited (`runlog verify --db` says where)")
            levels = self._groups[(tile_index, group)] = levels + upper
        return levels

    def _perfect(self, level: int, index: int) -> bytes:
        """Hash of perfect node (`level`, `index`) of the tree."""
        tile_level, height = divmod(level, TILE_HEIGHT)
        first = index << height
        tile_index, position = divmod(first, TILE_WIDTH)
        if not self._split(tile_level, tile_index):
            offset = (position >> height) * HASH_SIZE
            return self._whole(tile_level, tile_index)[height][offset : offset + HASH_SIZE]
        if height >= MID_LEVEL:
            offset = (position >> height) * HASH_SIZE
            return self._upper(tile_index)[height - MID_LEVEL][offset : offset + HASH_SIZE]
        offset = ((position & (MID_SPAN - 1)) >> height) * HASH_SIZE
        return self._group(tile_index, position >> MID_LEVEL)[height][offset : offset + HASH_SIZE]

    def _tail(self, fork: int, begin: int) -> list[bytes]:
        """The proof above the fork node (`fork`, begin >> fork): the hash of the leaves right of it
        (if any), then the left peaks, smallest first."""
        tail = self._tails.get((fork, begin))
        if tail is None:
            tail = self._tails[(fork, begin)] = []
            end = begin + (1 << fork)
            if end < self._size:  # MTH of [end, size): its perfect subtrees folded from the right
                peaks = [self._perfect(node.level, node.index) for node in perfect_subtrees(end, self._size)]
                value = peaks.pop()
                while peaks:
                    value = node_hash(peaks.pop(), value)
                tail.append(value)
            while begin:
                low = begin & -begin
                begin -= low
                level = low.bit_length() - 1
                tail.append(self._perfect(level, begin >> level))
        return tail

    def inclusion(self, index: int) -> tuple[bytes, ...]:
        """The inclusion proof of leaf `index` (< size), the leaf's sibling first."""
        fork = (index ^ self._size).bit_length() - 1  # where the leaf's path meets the right edge's
        path: list[bytes] = []
        for level in range(0, fork, TILE_HEIGHT):  # the siblings below the fork, one tile level at a time
            tile_level, tile_index = level // TILE_HEIGHT, index >> (level + TILE_HEIGHT)
            position = (index >> level) & (TILE_WIDTH - 1)
            if self._split(tile_level, tile_index):
                levels, siblings = self._group(tile_index, position >> MID_LEVEL), _SPLIT[position]
            else:
                levels, siblings = self._whole(tile_level, tile_index), _WHOLE[position]
            path += [levels[height][offset : offset + HASH_SIZE] for height, offset in siblings[: fork - level]]
        path.extend(self._tail(fork, index >> fork << fork))
        return tuple(path)


def gather_evidence(conn: sqlite3.Connection, trace_id: str, *, day: date | None = None) -> RunEvidence:
    """The run's entries with inclusion proofs against the latest checkpoint (or `day`'s daily root),
    the daily roots to link it to, and their anchor locations. Read-only; one read transaction."""
    owned = not conn.in_transaction
    if owned:
        conn.execute("BEGIN")
    try:
        checkpoint = _target(conn, day)
        size = checkpoint.size
        rows = run_rows(conn, trace_id, size)
        if not rows:
            raise ExportError(f"the checkpoint of size {size} holds no entry of run {trace_id}: "
                              "run `runlog checkpoint` first")
        tree = TreeReader(conn)
        if size > tree.size():
            raise ExportError(f"the checkpoint of size {size} is beyond the {tree.size()} entries in the store")
        proofs = _Proofs(conn, size)
        proofs.prefetch([seq for seq, _ in rows])
        entries = tuple(ExportedEntry(seq, data, proofs.inclusion(seq)) for seq, data in rows)
        daily = conn.execute(
            "SELECT d.day, c.size, c.note FROM daily_roots d JOIN checkpoints c ON c.size = d.size "
            "WHERE c.size > ? AND c.size <= ? ORDER BY d.day", (rows[0][0], size)).fetchall()
        daily_proofs = tuple(DailyRootProof(d, s, n, tuple(tree.consistency_proof(s, size))) for d, s, n in daily)
        sizes = sorted({size, *(s for _, s, _ in daily)})
        marks = ",".join("?" * len(sizes))
        anchors = tuple(AnchorLocation(a, s, loc) for a, s, loc in conn.execute(
            f"SELECT anchor, size, location FROM anchor_outbox WHERE published_at IS NOT NULL AND location IS NOT NULL "
            f"AND size IN ({marks}) ORDER BY size, anchor", sizes))
    finally:
        if owned:
            conn.execute("COMMIT")
    return RunEvidence(trace_id, checkpoint, entries, daily_proofs, anchors)


def export_signed_bundle(conn: sqlite3.Connection, trace_id: str, *, signer: NoteSigner, clock_key: str | None,
                         exported_at: str, day: date | None = None) -> SignedBundle:
    """The signed JSON bundle of run `trace_id` (see `gather_evidence`): `.data` is the file,
    `.bundle` the same as a JSON object. `signer` is the log key."""
    evidence = gather_evidence(conn, trace_id, day=day)
    return sign_bundle(trace_id=trace_id, checkpoint=evidence.checkpoint.note, entries=evidence.entries,
                       signer=signer, clock_key=clock_key, daily_roots=evidence.daily_roots,
                       anchors=evidence.anchors, exported_at=exported_at)


def export_bundle(conn: sqlite3.Connection, trace_id: str, *, signer: NoteSigner, clock_key: str | None,
                  exported_at: str, day: date | None = None) -> dict:
    """`export_signed_bundle(...).bundle`: the bundle as a JSON object (a file needs `bundle_bytes`
    of it, which encodes it again: `export_signed_bundle(...).data` is that file already)."""
    return export_signed_bundle(conn, trace_id, signer=signer, clock_key=clock_key, exported_at=exported_at,
                                day=day).bundle


def export_csv(conn: sqlite3.Connection, trace_id: str, *, signer: NoteSigner,
               day: date | None = None) -> tuple[bytes, str]:
    """The run's CSV (entries under the latest checkpoint, or `day`'s daily root) and its detached
    signed note binding the file's SHA-256 to the trace, the row count and that checkpoint."""
    owned = not conn.in_transaction
    if owned:
        conn.execute("BEGIN")
    try:
        checkpoint = _target(conn, day)
        rows = run_rows(conn, trace_id, checkpoint.size)
    finally:
        if owned:
            conn.execute("COMMIT")
    if not rows:
        raise ExportError(f"the checkpoint of size {checkpoint.size} holds no entry of run {trace_id}: "
                          "run `runlog checkpoint` first")
    data = build_csv([entry for _, entry in rows])
    body = Checkpoint(signer.name, checkpoint.size, checkpoint.root)
    return data, sign_csv(data, trace_id=trace_id, rows=len(rows), checkpoint=body, signer=signer)


def run_last_seq(conn: sqlite3.Connection, trace_id: str) -> int:
    """The seq of the run's last entry (`RunNotFound` if none)."""
    row = conn.execute("SELECT max(re.seq) FROM runs AS r JOIN run_entries AS re ON re.run = r.first_seq "
                       "WHERE r.trace_id = ?", (trace_id,)).fetchone()
    if row is None or row[0] is None:
        raise RunNotFound(f"no run with trace_id {trace_id}")
    return row[0]
