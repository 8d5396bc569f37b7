"""C2SP tlog-tiles geometry: which tile holds a node, tile paths, and hashing inside a tile.

https://c2sp.org/tlog-tiles: a tile at level L is up to 256 consecutive Merkle Tree Hashes of
tree level 8*L; tile N of level L spans entries [N * 256**(L+1), (N+1) * 256**(L+1)). A full tile
is the bottom of a perfect subtree of height 8, so every node from tree level 8*L up to 8*L + 7
can be computed from one tile, and tree level 8*(L+1) is the bottom of the tile above.
Tiles on the right edge of a tree are partial (1 to 255 hashes).
"""

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from appliance.core.errors import InvalidInput
from appliance.core.hashing import HASH_SIZE
from appliance.core.tree import NodeID, require_count, require_hash, root_from_leaf_hashes

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
MAX_TILE_LEVEL = 63
# Tree level 4, halfway up a level-0 tile: storage keeps these nodes too (one per 16 entries), so a
# proof needs a few hashes from a tile instead of hashing all of it up.
MID_LEVEL = 4
MID_SPAN = 1 << MID_LEVEL

_TILE_PATH = re.compile(r"tile/([0-9]{1,2})/((?:x[0-9]{3}/)*[0-9]{3})(?:\.p/([0-9]{1,3}))?")


class TilePathError(InvalidInput):
    """A tile path is not in the canonical C2SP tlog-tiles form."""


@dataclass(frozen=True, order=True)
class TileID:
    """Tile `index` at tile `level`, holding `width` hashes (256 when full)."""

    level: int
    index: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        require_count(self.level, "level")
        require_count(self.index, "index")
        require_count(self.width, "width")
        if self.level > MAX_TILE_LEVEL:
            raise InvalidInput(
                f"tile level must be at most {MAX_TILE_LEVEL}, got {self.level}", field="level"
            )
        if not 1 <= self.width <= TILE_WIDTH:
            raise InvalidInput(f"tile width must be 1 to {TILE_WIDTH}, got {self.width}", field="width")

    @classmethod
    def from_path(cls, path: str) -> "TileID":
        """Parse `tile/<L>/<N>[.p/<W>]`, accepting only the canonical encoding."""
        match = _TILE_PATH.fullmatch(path) if isinstance(path, str) else None
        if match is None:
            raise TilePathError(f"not a tile path: {path!r}", field="path")
        level_text, index_text, width_text = match.groups()
        index = 0
        for group in index_text.split("/"):
            index = index * 1000 + int(group.removeprefix("x"))
        try:
            tile = cls(int(level_text), index, int(width_text) if width_text else TILE_WIDTH)
        except InvalidInput as error:
            raise TilePathError(f"bad tile path {path!r}: {error}", field="path") from None
        if tile.path != path:
            raise TilePathError(f"tile path {path!r} is not canonical, expected {tile.path!r}", field="path")
        return tile

    @property
    def path(self) -> str:
        suffix = "" if self.width == TILE_WIDTH else f".p/{self.width}"
        return f"tile/{self.level}/{encode_tile_index(self.index)}{suffix}"

    @property
    def start(self) -> int:
        """First entry index the tile spans (as if it were full)."""
        return self.index * TILE_WIDTH ** (self.level + 1)

    @property
    def end(self) -> int:
        """Entry index just past the span of the full tile."""
        return (self.index + 1) * TILE_WIDTH ** (self.level + 1)


@dataclass(frozen=True)
class NodeLocation:
    """Node hashes `tile` holds at [offset, offset + count) that hash up to one tree node."""

    tile: TileID
    offset: int
    count: int


def encode_tile_index(index: int) -> str:
    """Zero-padded 3-digit path elements, all but the last prefixed with x: 1234067 -> x001/x234/067."""
    require_count(index, "index")
    groups = [f"{index % 1000:03d}"]
    while index >= 1000:
        index //= 1000
        groups.append(f"x{index % 1000:03d}")
    return "/".join(reversed(groups))


def tiles_for_size(size: int) -> list[TileID]:
    """Every tile of a tree of `size` entries, level by level: full ones, then the partial one."""
    require_count(size, "size")
    tiles = []
    level = 0
    while size >> (TILE_HEIGHT * level):
        hashes = size >> (TILE_HEIGHT * level)
        full, partial = divmod(hashes, TILE_WIDTH)
        tiles.extend(TileID(level, n) for n in range(full))
        if partial:
            tiles.append(TileID(level, full, partial))
        level += 1
    return tiles


def tile_for_node(node: NodeID, tree_size: int) -> NodeLocation:
    """The tile of the tree of `tree_size` and the hashes in it that compute perfect `node`.

    Nodes on a tile boundary level (a multiple of 8) are read directly from the tile at that
    level, not recomputed from the one below. Requires node.end <= tree_size.
    """
    require_count(tree_size, "tree_size")
    if node.end > tree_size:
        raise InvalidInput(f"node {node} is not complete in a tree of size {tree_size}", field="node")
    level, height_in_tile = divmod(node.level, TILE_HEIGHT)
    first = node.index << height_in_tile
    hashes_at_level = tree_size >> (TILE_HEIGHT * level)
    index, offset = divmod(first, TILE_WIDTH)
    width = min(TILE_WIDTH, hashes_at_level - index * TILE_WIDTH)
    return NodeLocation(TileID(level, index, width), offset, 1 << height_in_tile)


def node_from_tile(tile_hashes: Sequence[bytes], node: NodeID) -> bytes:
    """Hash of `node` from the bottom hashes of the tile that holds it (see `tile_for_node`).

    Requires the tile to hold at least the hashes the node covers.
    """
    height_in_tile = node.level % TILE_HEIGHT
    offset = (node.index << height_in_tile) % TILE_WIDTH
    count = 1 << height_in_tile
    if len(tile_hashes) < offset + count:
        raise InvalidInput(
            f"node {node} needs tile hashes [{offset}, {offset + count}), tile has {len(tile_hashes)}",
            field="tile_hashes",
        )
    return root_from_leaf_hashes(tile_hashes[offset : offset + count])


def tile_root(hashes: Sequence[bytes]) -> bytes:
    """The node 8 levels above a full tile: the tree hash of its 256 hashes."""
    if len(hashes) != TILE_WIDTH:
        raise InvalidInput(f"a full tile has {TILE_WIDTH} hashes, got {len(hashes)}", field="hashes")
    return root_from_leaf_hashes(hashes)


def tile_hashes_from_bytes(data: bytes) -> list[bytes]:
    """Split a served tile (concatenated 32-byte hashes, 1 to 256 of them) into hashes."""
    if not isinstance(data, (bytes, bytearray)):
        raise InvalidInput(f"tile data must be bytes, got {type(data).__name__}", field="data")
    count, extra = divmod(len(data), HASH_SIZE)
    if extra or not 1 <= count <= TILE_WIDTH:
        raise InvalidInput(
            f"tile data must be 1 to {TILE_WIDTH} hashes of {HASH_SIZE} bytes, got {len(data)} bytes",
            field="data",
        )
    return [require_hash(data[i : i + HASH_SIZE], f"data[{i}]") for i in range(0, len(data), HASH_SIZE)]


def hash_levels(hashes: bytes, levels: int) -> list[bytes]:
    """`hashes` (consecutive perfect nodes of one tree level, starting at an even index, 32 bytes
    each, concatenated) and up to `levels` levels of their parents, each level concatenated.
    Stops early at a level of fewer than 2 hashes; an odd last hash has no parent."""
    out = [hashes]
    sha256 = hashlib.sha256
    pair = 2 * HASH_SIZE
    while len(out) <= levels and len(out[-1]) >= pair:
        below = out[-1]
        # node_hash inlined, a pair of neighbours being one 64-byte slice: this is most of an export.
        out.append(b"".join([sha256(b"\x01" + below[i : i + pair]).digest()
                             for i in range(0, len(below) - pair + 1, pair)]))
    return out


def mid_nodes(hashes: bytes) -> bytes:
    """The level-`MID_LEVEL` nodes above a level-0 tile's first hashes (`hashes`, 32 bytes each,
    concatenated): one per complete group of `MID_SPAN`, concatenated; b"" if there is none."""
    whole = len(hashes) // (MID_SPAN * HASH_SIZE) * MID_SPAN * HASH_SIZE
    return hash_levels(hashes[:whole], MID_LEVEL)[MID_LEVEL] if whole else b""
