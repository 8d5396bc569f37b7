"""Merkle tiles in SQLite (C2SP tlog-tiles, height 8): the tables, the writer's collector, tile reads.
Proofs and roots of any tree size are read from them by appliance/store/tree_reader.py.

Three append-only tables:
- `tiles`: every full tile, 256 hashes concatenated (8,192 bytes), under the rowid
  `tile_key(level, index)`. A rowid table keeps each row's few local bytes in the B-tree and the
  blob in two overflow pages, so a tile is one primary-key lookup and the tree costs ~34 bytes
  per entry.
- `tile_roots`: for every full tile, its root (the hash 8 levels above it), 32 bytes, under the
  same key. The hashes of a level-L tile are the roots of level L-1 tiles, so this is what makes
  the right-edge (partial) tiles of the higher levels cheap.
- `level4_nodes`: for every full level-0 tile, its 16 nodes at tree level 4 concatenated (512
  bytes, ~2 bytes per entry), under the tile's index. With them a proof's in-tile siblings need
  the leaf's group of 16 and these hashed up (~30 hashes), not all 256 (254). Derived data: readers
  check them against the tile's hashes and root before use (see export), verify --db checks all.

Partial tiles are never stored (they would have to be rewritten as they grow): level 0 is hashed
from its at most 255 `entries` rows, level L > 0 is read from at most 255 `tile_roots` rows of
level L - 1. A partial tile of an older tree size is a prefix of a stored full tile when one
exists.
"""

import sqlite3

from appliance.core.errors import InvalidInput
from appliance.core.hashing import HASH_SIZE, leaf_hash
from appliance.core.tiles import MID_LEVEL, MID_SPAN, TILE_HEIGHT, TILE_WIDTH, TileID, mid_nodes
from appliance.core.tree import NodeID, require_count
from appliance.store.db import StoreError

TILE_BYTES = TILE_WIDTH * HASH_SIZE
MIDS_BYTES = TILE_WIDTH // MID_SPAN * HASH_SIZE
_INDEX_BITS = 56

TILE_SCHEMA = [
    "CREATE TABLE tiles (id INTEGER PRIMARY KEY, hashes BLOB NOT NULL)",
    "CREATE TABLE tile_roots (id INTEGER PRIMARY KEY, hash BLOB NOT NULL)",
    # db.APPEND_ONLY_TABLES covers `tiles`; the roots are evidence too.
    *(
        f"CREATE TRIGGER tile_roots_no_{action.lower()} BEFORE {action} ON tile_roots "
        f"BEGIN SELECT RAISE(ABORT, 'runlog: the log is append-only: {action} on tile_roots is refused'); END"
        for action in ("UPDATE", "DELETE")
    ),
]


def create_level4_nodes(conn: sqlite3.Connection) -> None:
    """Migration: the `level4_nodes` table, append-only, filled from the level-0 tiles the store
    holds. Run inside the migration's transaction."""
    conn.execute("CREATE TABLE level4_nodes (id INTEGER PRIMARY KEY, hashes BLOB NOT NULL)")
    for action in ("UPDATE", "DELETE"):
        conn.execute(f"CREATE TRIGGER level4_nodes_no_{action.lower()} BEFORE {action} ON level4_nodes BEGIN "
                     f"SELECT RAISE(ABORT, 'runlog: the log is append-only: {action} on level4_nodes is refused'); END")
    tiles = conn.execute("SELECT id, CAST(hashes AS BLOB) FROM tiles WHERE id < ? ORDER BY id", (tile_key(1, 0),))
    conn.executemany("INSERT INTO level4_nodes (id, hashes) VALUES (?, ?)",
                     ((index, mid_nodes(hashes)) for index, hashes in tiles))


class TreeSizeError(InvalidInput):
    """A tree size or leaf index beyond the entries the store holds."""


class TileStoreError(StoreError):
    """The store lacks a tile, root or entry that its size says it holds, or holds a malformed one."""


def tile_key(level: int, index: int) -> int:
    """The rowid of tile `index` at tile `level` (and of its root). Requires index < 2**56, which
    every tile of a tree below 2**63 entries satisfies; level above the index keeps levels apart."""
    return level << _INDEX_BITS | index


def _split(blob: bytes) -> list[bytes]:
    return [blob[i : i + HASH_SIZE] for i in range(0, len(blob), HASH_SIZE)]


def _full_tile(conn: sqlite3.Connection, level: int, index: int) -> bytes | None:
    row = conn.execute("SELECT CAST(hashes AS BLOB) FROM tiles WHERE id = ?", (tile_key(level, index),)).fetchone()
    if row is None:
        return None
    if len(row[0]) != TILE_BYTES:
        raise TileStoreError(f"stored tile {TileID(level, index).path} is not {TILE_BYTES} bytes")
    return row[0]


def read_level4_nodes(conn: sqlite3.Connection, index: int) -> bytes:
    """The stored level-4 nodes of full level-0 tile `index`, 16 hashes concatenated, unchecked."""
    row = conn.execute("SELECT CAST(hashes AS BLOB) FROM level4_nodes WHERE id = ?", (index,)).fetchone()
    if row is None or len(row[0]) != MIDS_BYTES:
        raise TileStoreError(f"the level-4 nodes of tile {TileID(0, index).path} are missing or not {MIDS_BYTES} bytes")
    return row[0]


_BATCH = 500  # tiles per statement (SQLite allows 32,766 parameters since 3.32, 999 before)


def read_level0_tiles(conn: sqlite3.Connection, indices: list[int]) -> dict[int, tuple[bytes, bytes]]:
    """Full level-0 tiles `indices` with their stored level-4 nodes, unchecked: {index: (tile bytes,
    level-4 nodes)}, in statements of a few hundred tiles. A tile or nodes row that is missing or of
    the wrong length is left out (`read_tile_bytes` and `read_level4_nodes` then say what is wrong)."""
    found: dict[int, tuple[bytes, bytes]] = {}
    for start in range(0, len(indices), _BATCH):
        batch = indices[start : start + _BATCH]
        rows = conn.execute("SELECT t.id, CAST(t.hashes AS BLOB), CAST(m.hashes AS BLOB) FROM tiles AS t "
                            f"JOIN level4_nodes AS m ON m.id = t.id WHERE t.id IN ({','.join('?' * len(batch))})",
                            batch)
        found.update((index, (tile, mids)) for index, tile, mids in rows
                     if len(tile) == TILE_BYTES and len(mids) == MIDS_BYTES)
    return found


def _right_edge_hashes(conn: sqlite3.Connection, level: int, index: int, width: int) -> list[bytes]:
    """Hashes 0..width-1 of tile (`level`, `index`) rebuilt from entries (level 0) or from the roots
    of the full tiles one level down. Requires those entries / full tiles to be committed."""
    first = index * TILE_WIDTH
    if level == 0:
        rows = conn.execute("SELECT CAST(data AS BLOB) FROM entries WHERE seq >= ? AND seq < ? ORDER BY seq",
                            (first, first + width)).fetchall()
        hashes = [leaf_hash(row[0]) for row in rows]
    else:
        rows = conn.execute("SELECT CAST(hash AS BLOB) FROM tile_roots WHERE id >= ? AND id < ? ORDER BY id",
                            (tile_key(level - 1, first), tile_key(level - 1, first + width))).fetchall()
        hashes = [row[0] for row in rows]
        if any(len(h) != HASH_SIZE for h in hashes):
            raise TileStoreError(f"a stored root under tile {TileID(level, index, width).path} is not {HASH_SIZE} bytes")
    if len(hashes) != width:
        source = "entries" if level == 0 else f"roots of level-{level - 1} tiles"
        raise TileStoreError(f"tile {TileID(level, index, width).path} needs {width} {source} "
                             f"from {first}, the store has {len(hashes)}")
    return hashes


def read_tile_bytes(conn: sqlite3.Connection, tile: TileID) -> bytes:
    """The hashes of `tile` concatenated, 32 bytes each: a full tile from `tiles`; a partial one as
    the prefix of the stored full tile if there is one, else rebuilt. Requires the tile to lie
    within the committed log."""
    stored = _full_tile(conn, tile.level, tile.index)
    if stored is not None:
        return stored[: tile.width * HASH_SIZE]
    if tile.width == TILE_WIDTH:
        raise TileStoreError(f"tile {tile.path} is missing from the store")
    return b"".join(_right_edge_hashes(conn, tile.level, tile.index, tile.width))


def read_tile(conn: sqlite3.Connection, tile: TileID) -> list[bytes]:
    """The hashes of `tile` (see `read_tile_bytes`)."""
    return _split(read_tile_bytes(conn, tile))


class TileCollector:
    """Gathers the hashes of the tile levels (tree levels 0, 8, 16, ...) and of tree level 4 as
    leaves are appended and stores each tile, with its root and level-4 nodes, once it is full.

    Writer protocol, per transaction: pass `on_node` to `Sequencer.extend` / `CompactRange.append`,
    insert the entries rows, call `flush(conn)` inside the open transaction, COMMIT. If anything
    fails, ROLLBACK and call `reset()`: the collector then forgets its in-memory state and, at the
    next `flush`, reloads it from the store as of the first leaf it was given since.
    """

    def __init__(self) -> None:
        """A collector for an empty log."""
        self._counts: list[int] | None = []  # per tile level, hashes seen at tree level 8*L
        self._partial: list[list[bytes]] = []  # per tile level, the hashes of its partial tile
        self._full: list[tuple[int, bytes]] = []
        self._roots: list[tuple[int, bytes]] = []
        self._mids: list[bytes] = []  # the level-4 nodes of the partial level-0 tile
        self._full_mids: list[tuple[int, bytes]] = []
        self._replay: list[tuple[NodeID, bytes]] = []  # nodes seen since reset(), before reloading

    @classmethod
    def resume(cls, conn: sqlite3.Connection, size: int) -> "TileCollector":
        """A collector for the committed log of `size` entries, its partial tiles read from the store."""
        collector = cls()
        collector._load(conn, require_count(size, "size"))
        return collector

    def _load(self, conn: sqlite3.Connection, size: int) -> None:
        self._counts, self._partial, self._mids = [], [], []
        level = 0
        while size >> (TILE_HEIGHT * level):
            count = size >> (TILE_HEIGHT * level)
            index, width = divmod(count, TILE_WIDTH)
            self._counts.append(count)
            self._partial.append(_right_edge_hashes(conn, level, index, width) if width else [])
            level += 1
        if self._partial:
            mids = mid_nodes(b"".join(self._partial[0]))
            self._mids = [mids[i : i + HASH_SIZE] for i in range(0, len(mids), HASH_SIZE)]

    def on_node(self, node: NodeID, hash_: bytes) -> None:
        """Record a completed perfect node; nodes must arrive in `CompactRange.append` order."""
        # Called for every node, ~2 per leaf on the writer's path: each attribute is read once.
        level = node.level
        if level % TILE_HEIGHT and level != MID_LEVEL:
            return
        counts = self._counts
        if counts is None:
            self._replay.append((node, hash_))
            return
        if level == MID_LEVEL:
            mids = self._mids
            mids.append(hash_)
            if len(mids) == TILE_WIDTH // MID_SPAN:
                self._full_mids.append((node.index >> (TILE_HEIGHT - MID_LEVEL), b"".join(mids)))
                self._mids = []
            return
        level //= TILE_HEIGHT
        if level == len(counts):
            counts.append(0)
            self._partial.append([])
        index = node.index
        if index != counts[level]:
            raise InvalidInput(f"tile level {level} expected node {counts[level]} next, got {node}"
                               " (collector resumed at the wrong size?)", field="node")
        counts[level] = index + 1
        hashes = self._partial[level]
        hashes.append(hash_)
        if level:
            self._roots.append((tile_key(level - 1, index), hash_))
        if len(hashes) == TILE_WIDTH:
            self._full.append((tile_key(level, index // TILE_WIDTH), b"".join(hashes)))
            hashes.clear()

    def flush(self, conn: sqlite3.Connection) -> None:
        """INSERT the tiles (and roots) that became full. Call inside the writer's open transaction,
        after the entries rows were inserted; the caller commits."""
        if self._counts is None and self._replay:
            first = self._replay[0][0]
            if first.level != 0:
                raise InvalidInput(f"after reset() the first node must be a leaf, got {first}", field="node")
            self._load(conn, first.index)
            replay, self._replay = self._replay, []
            for node, hash_ in replay:
                self.on_node(node, hash_)
        if self._full:
            conn.executemany("INSERT INTO tiles (id, hashes) VALUES (?, ?)", self._full)
        if self._roots:
            conn.executemany("INSERT INTO tile_roots (id, hash) VALUES (?, ?)", self._roots)
        if self._full_mids:
            conn.executemany("INSERT INTO level4_nodes (id, hashes) VALUES (?, ?)", self._full_mids)
        self._full, self._roots, self._full_mids = [], [], []

    def reset(self) -> None:
        """Forget everything since the last commit: call after the transaction rolled back."""
        self._counts, self._partial, self._mids = None, [], []
        self._full, self._roots, self._full_mids, self._replay = [], [], [], []
