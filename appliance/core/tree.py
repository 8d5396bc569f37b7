"""RFC 9162 section 2.1.1 Merkle Tree Hash over leaf hashes, and the node coordinates we use.

A node is named by `NodeID(level, index)`: level 0 holds the leaves, and node (level, index)
covers leaves [index * 2**level, (index + 1) * 2**level). Only *perfect* nodes (all of whose
leaves exist) have a stored hash; the nodes on the right edge of a tree whose size is not a power
of two are *ephemeral* and are recomputed from perfect ones (see `perfect_subtrees`).
Layout after transparency-dev/merkle `compact.NodeID`.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from appliance.core.errors import InvalidInput
from appliance.core.hashing import EMPTY_ROOT, HASH_SIZE, node_hash


def require_count(value: object, field: str) -> int:
    """Return `value` if it is a non-negative int (bools refused), else raise `InvalidInput`."""
    if type(value) is not int or value < 0:
        raise InvalidInput(f"{field} must be a non-negative integer, got {value!r}", field=field)
    return value


def require_hash(value: object, field: str) -> bytes:
    """Return `value` as bytes if it is a 32-byte hash, else raise `InvalidInput`."""
    if not isinstance(value, (bytes, bytearray)) or len(value) != HASH_SIZE:
        shown = f"{len(value)} bytes" if isinstance(value, (bytes, bytearray)) else type(value).__name__
        raise InvalidInput(f"{field} must be a {HASH_SIZE}-byte hash, got {shown}", field=field)
    return bytes(value)


@dataclass(frozen=True, order=True)
class NodeID:
    """A node of the tree: `level` 0 is the leaves; covers leaves [begin, end)."""

    level: int
    index: int

    def __post_init__(self) -> None:
        require_count(self.level, "level")
        require_count(self.index, "index")

    @classmethod
    def _unchecked(cls, level: int, index: int) -> "NodeID":
        """The node (level, index) without `__post_init__`'s checks: only for values computed from
        valid ones (a parent, a sibling, a compact range's next leaf). ~0.4 µs instead of ~1.4: the
        writer's tile visitor gets two per entry."""
        node = object.__new__(cls)
        fields = node.__dict__
        fields["level"], fields["index"] = level, index
        return node

    @property
    def begin(self) -> int:
        return self.index << self.level

    @property
    def end(self) -> int:
        return (self.index + 1) << self.level

    def parent(self) -> "NodeID":
        return NodeID._unchecked(self.level + 1, self.index >> 1)

    def sibling(self) -> "NodeID":
        return NodeID._unchecked(self.level, self.index ^ 1)


def largest_power_of_two_below(n: int) -> int:
    """The k of RFC 9162 section 2.1.1: the largest power of two smaller than n. Requires n > 1."""
    if type(n) is not int or n < 2:
        raise InvalidInput(f"need an integer n > 1, got {n!r}", field="n")
    return 1 << ((n - 1).bit_length() - 1)


def perfect_subtrees(begin: int, end: int) -> list[NodeID]:
    """The fewest perfect nodes that exactly cover leaves [begin, end), left to right.

    Each node is the largest one that starts at the current position and fits before `end`.
    For begin == 0 these are the peaks of a tree of size `end`, largest first.
    Requires 0 <= begin <= end.
    """
    require_count(begin, "begin")
    require_count(end, "end")
    if begin > end:
        raise InvalidInput(f"begin {begin} is after end {end}", field="begin")
    nodes = []
    while begin < end:
        alignment = (begin & -begin).bit_length() - 1 if begin else (end - begin).bit_length()
        level = min(alignment, (end - begin).bit_length() - 1)
        nodes.append(NodeID(level, begin >> level))
        begin += 1 << level
    return nodes


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH of a tree whose leaf hashes are `hashes` (each 32 bytes); empty tree = SHA-256("").

    Hashes pairs level by level, carrying an odd last node up unchanged: this builds the same
    tree as the RFC's split at the largest power of two below n, without recursion.
    """
    level = [require_hash(h, f"hashes[{i}]") for i, h in enumerate(hashes)]
    if not level:
        return EMPTY_ROOT
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]
