"""Node hashes, roots and proofs of any committed tree size, read from the tiles in SQLite
(appliance/store/tiles.py: the tables, how full and right-edge tiles are stored and read)."""

import sqlite3

from appliance.core.compact import CompactRange
from appliance.core.hashing import HASH_SIZE, leaf_hash
from appliance.core.proof_plan import plan_consistency, plan_inclusion
from appliance.core.tiles import MID_LEVEL, MID_SPAN, TILE_HEIGHT, TILE_WIDTH, TileID, hash_levels, tile_for_node
from appliance.core.tree import NodeID, perfect_subtrees, require_count
from appliance.store.tiles import MIDS_BYTES, TILE_BYTES, TileStoreError, TreeSizeError, read_tile_bytes, tile_key


def _read_tiles(conn: sqlite3.Connection, tiles: list[TileID], stored: int,
                mids_of: list[int]) -> tuple[dict[TileID, bytes], dict[int, tuple[bytes, bytes]]]:
    """`read_tile_bytes` of each of `tiles`, in one statement: the full tiles (and the partial ones
    that are a prefix of a stored full tile) by key, the right-edge ones as the entries or level
    below's roots they are rebuilt from. `stored` is the store's entry count, read before: what it
    says is stored is there. A tile the statement did not give as expected is read again alone
    (`read_tile_bytes` then says what is wrong). In the same statement, for the full level-0 tiles
    `mids_of`, their stored level-4 nodes and root, unchecked: {index: (nodes, root)}, those of the
    right lengths."""
    full = [tile for tile in tiles if tile.end <= stored]
    edges = [tile for tile in tiles if tile.end > stored]
    parts, params = [], []
    if full:
        parts.append(f"SELECT -1, id, CAST(hashes AS BLOB) FROM tiles WHERE id IN ({','.join('?' * len(full))})")
        params += [tile_key(tile.level, tile.index) for tile in full]
    for number, tile in enumerate(edges):
        first = tile.index * TILE_WIDTH
        if tile.level == 0:
            parts.append(f"SELECT {number}, seq, CAST(data AS BLOB) FROM entries WHERE seq >= ? AND seq < ?")
            params += [first, first + tile.width]
        else:
            parts.append(f"SELECT {number}, id, CAST(hash AS BLOB) FROM tile_roots WHERE id >= ? AND id < ?")
            params += [tile_key(tile.level - 1, first), tile_key(tile.level - 1, first + tile.width)]
    if mids_of:
        marks = ",".join("?" * len(mids_of))
        parts.append(f"SELECT -2, id, CAST(hashes AS BLOB) FROM level4_nodes WHERE id IN ({marks})")
        parts.append(f"SELECT -3, id, CAST(hash AS BLOB) FROM tile_roots WHERE id IN ({marks})")
        params += [*mids_of, *(tile_key(0, index) for index in mids_of)]
    stored_tiles: dict[int, bytes] = {}
    mids: dict[int, bytes] = {}
    roots: dict[int, bytes] = {}
    below: list[list[tuple[int, bytes]]] = [[] for _ in edges]
    for part, key, blob in conn.execute(" UNION ALL ".join(parts), params) if parts else ():
        if part >= 0:
            below[part].append((key, blob))
        else:
            (stored_tiles, mids, roots)[-1 - part][key] = blob
    found: dict[TileID, bytes] = {}
    for tile in full:
        blob = stored_tiles.get(tile_key(tile.level, tile.index))
        found[tile] = blob[: tile.width * HASH_SIZE] if blob is not None and len(blob) == TILE_BYTES else b""
    for tile, rows in zip(edges, below):
        rows.sort()
        if tile.level == 0:
            found[tile] = b"".join([leaf_hash(data) for _, data in rows])
        else:
            found[tile] = b"".join([hash_ for _, hash_ in rows if len(hash_) == HASH_SIZE])
    for tile in tiles:
        if len(found[tile]) != tile.width * HASH_SIZE:
            found[tile] = read_tile_bytes(conn, tile)
    return found, {index: (mids[index], roots[index]) for index in mids_of if len(mids.get(index, b"")) == MIDS_BYTES
                   and len(roots.get(index, b"")) == HASH_SIZE}


def _split_levels(tile: bytes, stored: tuple[bytes, bytes] | None, group: int | None) -> list[bytes] | None:
    """Levels 0-7 of full level-0 tile `tile` from its stored level-4 nodes (`stored`: nodes, root),
    checked against its root, with levels 0-3 of only its group of 16 `group` (if any), checked
    against its level-4 node: 30 hashes instead of 255. None when something is not stored or a check
    fails: the caller hashes the whole tile, whose hashes are what the proofs stand on."""
    if stored is None:
        return None
    mids, root = stored
    upper = hash_levels(mids, TILE_HEIGHT - MID_LEVEL)
    if upper.pop() != root:
        return None
    if group is None:
        return [b""] * MID_LEVEL + upper
    first = group * MID_SPAN * HASH_SIZE
    lower = hash_levels(tile[first : first + MID_SPAN * HASH_SIZE], MID_LEVEL)
    if lower.pop() != mids[group * HASH_SIZE : (group + 1) * HASH_SIZE]:
        return None
    return lower + upper


class TileCache:
    """Tiles hashed up level by level (`hash_levels`), kept for the next requests to one store.

    A tile's hashes never change once committed (the tile tables and entries are append-only, and a
    partial tile is named with its width), so a tile read once holds: a store edited under a
    running appliance shows in proofs only once the cache starts over (`runlog verify --db` is what
    looks for edits). Kept: the tiles above level 0 and the partial ones, which every proof at a
    tree size shares; not the full level-0 tiles (39,000 at 10M entries; a random leaf's is seldom
    read again). When `limit` tiles are held it starts over, which needs no lock between threads.
    """

    def __init__(self, limit: int = 512) -> None:
        self._limit = limit
        self._levels: dict[TileID, list[bytes]] = {}

    @staticmethod
    def keeps(tile: TileID) -> bool:
        return tile.level > 0 or tile.width < TILE_WIDTH

    def get(self, tile: TileID) -> list[bytes] | None:
        return self._levels.get(tile)

    def put(self, tile: TileID, levels: list[bytes]) -> None:
        if len(self._levels) >= self._limit:
            self._levels.clear()
        self._levels[tile] = levels


class TreeReader:
    """Node hashes, roots, proofs and frontiers of any committed tree size, read from tiles.

    Every call takes the tree size explicitly; the caller must know it is committed (e.g. from a
    checkpoint or the writer). Sizes above the store's entry count raise `TreeSizeError`. Each call
    reads that count once and every tile it needs in one statement (`_read_tiles`), and hashes a
    tile's nodes up level by level once (a full level-0 tile from its stored level-4 nodes, once
    they check out: `_split_levels`); with a `TileCache`, the tiles it keeps only the first time.
    """

    def __init__(self, conn: sqlite3.Connection, cache: TileCache | None = None) -> None:
        self._conn = conn
        self._cache = cache

    def size(self) -> int:
        """Entries in the store now (committed, as seen by this connection)."""
        return self._conn.execute("SELECT coalesce(max(seq) + 1, 0) FROM entries").fetchone()[0]

    def _stored(self, tree_size: int, field: str = "tree_size", stored: int | None = None) -> int:
        """The store's entry count (`stored` if the caller just read it), which must hold `tree_size`."""
        require_count(tree_size, field)
        if stored is None:
            stored = self.size()
        if tree_size > stored:
            raise TreeSizeError(f"{field} {tree_size} is beyond the {stored} entries in the store", field=field)
        return stored

    def _hashes(self, nodes: list[NodeID], tree_size: int, stored: int) -> list[bytes]:
        """Hashes of perfect `nodes` (each node.end <= tree_size <= stored) in the tree of `tree_size`."""
        # tile_for_node's geometry, inlined with plain tuples for tiles: a TileID and a NodeLocation
        # per node cost more than the rest of a cached proof (38 nodes at 10M entries).
        located = []  # per node: its tile (level, index, width), its height in the tile, its first hash there
        heights: dict[tuple[int, int, int], int] = {}  # per tile, the highest level of its pyramid a node needs
        groups: dict[tuple[int, int, int], set[int]] = {}  # per full level-0 tile, the groups of 16 under level 4
        for node in nodes:
            if node.end > tree_size:
                tile_for_node(node, tree_size)  # raises: not complete in this tree
            tile_level, height = divmod(node.level, TILE_HEIGHT)
            index, offset = divmod(node.index << height, TILE_WIDTH)
            key = (tile_level, index, min(TILE_WIDTH, (tree_size >> (TILE_HEIGHT * tile_level)) - index * TILE_WIDTH))
            located.append((key, height, offset))
            heights[key] = max(heights.get(key, 0), height)
            if tile_level == 0 and key[2] == TILE_WIDTH:
                below = groups.setdefault(key, set())
                if height < MID_LEVEL:
                    below.add(offset >> MID_LEVEL)
        tiles = {key: TileID(*key) for key in heights}
        cache = self._cache
        levels: dict[tuple[int, int, int], list[bytes]] = {}
        if cache is not None:
            for key, tile in tiles.items():
                found = cache.get(tile)
                if found is not None:
                    levels[key] = found
        missing = [key for key in heights if key not in levels]
        # A leaf's path (or a node's) meets one group of 16 of its level-0 tile: such tiles (never
        # cached) come from their level-4 nodes (see _split_levels).
        split = {key: min(found, default=None) for key, found in groups.items() if len(found) <= 1}
        read, stored_mids = _read_tiles(self._conn, [tiles[key] for key in missing], stored, [key[1] for key in split])
        bases: dict[tuple[int, int, int], int] = {}  # per split tile, the first leaf of the group its levels 0-3 hold
        for key in missing:
            tile, data = tiles[key], read[tiles[key]]
            group = split.get(key)
            pyramid = _split_levels(data, stored_mids.get(key[1]), group) if key in split else None
            if pyramid is not None:
                levels[key], bases[key] = pyramid, (group or 0) * MID_SPAN
            elif cache is not None and cache.keeps(tile):
                levels[key] = hash_levels(data, TILE_HEIGHT - 1)
                cache.put(tile, levels[key])
            else:
                levels[key] = hash_levels(data, heights[key])
        out = []
        for key, height, offset in located:
            at = ((offset - bases.get(key, 0) if height < MID_LEVEL else offset) >> height) * HASH_SIZE
            out.append(levels[key][height][at : at + HASH_SIZE])
        return out

    def node(self, node_id: NodeID, tree_size: int) -> bytes:
        """Hash of perfect node `node_id` (node_id.end <= tree_size) in the tree of `tree_size`."""
        return self._hashes([node_id], tree_size, self._stored(tree_size))[0]

    def leaf_hash(self, index: int) -> bytes:
        """The tree's leaf `index`: from its level-0 tile once full, else hashed from the entry."""
        require_count(index, "index")
        size = self.size()
        if index >= size:
            raise TreeSizeError(f"index {index} is beyond the {size} entries in the store", field="index")
        tile, offset = divmod(index, TILE_WIDTH)
        if index < size - size % TILE_WIDTH:
            return read_tile_bytes(self._conn, TileID(0, tile))[offset * HASH_SIZE : (offset + 1) * HASH_SIZE]
        row = self._conn.execute("SELECT CAST(data AS BLOB) FROM entries WHERE seq = ?", (index,)).fetchone()
        if row is None:
            raise TileStoreError(f"entry {index} is missing from the store")
        return leaf_hash(row[0])

    def frontier(self, tree_size: int) -> CompactRange:
        """The peaks of the tree of `tree_size`: enough to append to it and to compute its root."""
        peaks = perfect_subtrees(0, tree_size)
        return CompactRange.from_peaks(tree_size, self._hashes(peaks, tree_size, self._stored(tree_size)))

    def root(self, tree_size: int) -> bytes:
        """RFC 9162 Merkle Tree Hash of the first `tree_size` entries."""
        return self.frontier(tree_size).root()

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        """RFC 9162 inclusion proof of leaf `index` (< tree_size) in the tree of `tree_size`."""
        stored = self._stored(tree_size)
        plan = plan_inclusion(index, tree_size)
        return plan.assemble(self._hashes(list(plan.nodes), tree_size, stored))

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 consistency proof from `old_size` to `new_size` (old_size <= new_size)."""
        require_count(old_size, "old_size")
        stored = self._stored(new_size, "new_size")
        plan = plan_consistency(old_size, new_size)
        return plan.assemble(self._hashes(list(plan.nodes), new_size, stored))

    def inclusion(self, index: int, tree_size: int, *, stored: int | None = None) -> tuple[bytes, bytes, list[bytes]]:
        """(`root(tree_size)`, the leaf's hash, `inclusion_proof(index, tree_size)`) from one read of
        the store's size (none if the caller passes the `stored` count it just read from `size()`)
        and one statement for the tiles."""
        stored = self._stored(tree_size, stored=stored)
        plan = plan_inclusion(index, tree_size)
        peaks = perfect_subtrees(0, tree_size)
        hashes = self._hashes([NodeID(0, index), *peaks, *plan.nodes], tree_size, stored)
        root = CompactRange.from_peaks(tree_size, hashes[1 : 1 + len(peaks)]).root()
        return root, hashes[0], plan.assemble(hashes[1 + len(peaks) :])

    def consistency(self, old_size: int, new_size: int, *, stored: int | None = None) -> tuple[bytes, list[bytes]]:
        """(`root(new_size)`, `consistency_proof(old_size, new_size)`) from one read of the store's
        size (none if the caller passes `stored`, see `inclusion`) and one statement for the tiles."""
        require_count(old_size, "old_size")
        stored = self._stored(new_size, "new_size", stored)
        plan = plan_consistency(old_size, new_size)
        peaks = perfect_subtrees(0, new_size)
        hashes = self._hashes([*peaks, *plan.nodes], new_size, stored)
        return CompactRange.from_peaks(new_size, hashes[: len(peaks)]).root(), plan.assemble(hashes[len(peaks) :])
