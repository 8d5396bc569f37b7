"""A compact range: the Merkle frontier of a log from leaf 0, enough to append and to get the root.

It holds one hash per perfect subtree ("peak") of the tree, left to right: popcount(size) hashes,
so at most 64. Appending a leaf merges equal-sized peaks; every perfect node completed on the way
is reported to the caller, which is how storage builds tiles without re-reading anything.
After transparency-dev/merkle `compact.Range` (ranges that begin at 0 only).
"""

from collections.abc import Callable, Iterable

from appliance.core.errors import InvalidInput
from appliance.core.hashing import EMPTY_ROOT, HASH_SIZE, node_hash
from appliance.core.tree import NodeID, perfect_subtrees, require_count, require_hash

NodeVisitor = Callable[[NodeID, bytes], None]


class CompactRange:
    """The peaks of a tree of `size` leaves. Mutable: `append` grows it in place."""

    __slots__ = ("_size", "_peaks")

    def __init__(self) -> None:
        self._size = 0
        self._peaks: list[bytes] = []

    @classmethod
    def from_peaks(cls, size: int, peaks: Iterable[bytes]) -> "CompactRange":
        """Restore a range saved as (`size`, `peaks`); needs exactly popcount(size) 32-byte hashes."""
        require_count(size, "size")
        hashes = [require_hash(p, f"peaks[{i}]") for i, p in enumerate(peaks)]
        if len(hashes) != size.bit_count():
            raise InvalidInput(
                f"a tree of size {size} has {size.bit_count()} peaks, got {len(hashes)}", field="peaks"
            )
        restored = cls()
        restored._size = size
        restored._peaks = hashes
        return restored

    @property
    def size(self) -> int:
        return self._size

    @property
    def peaks(self) -> tuple[bytes, ...]:
        """Hashes of the perfect subtrees, left (largest) to right (smallest)."""
        return tuple(self._peaks)

    @property
    def peak_ids(self) -> tuple[NodeID, ...]:
        """The NodeIDs of `peaks`, in the same order."""
        return tuple(perfect_subtrees(0, self._size))

    def append(self, leaf_hash: bytes, on_node: NodeVisitor | None = None) -> None:
        """Add the next leaf. `on_node(node_id, hash)` is called for the leaf itself (level 0)
        and for each perfect node the leaf completes, bottom up."""
        current = require_hash(leaf_hash, "leaf_hash")
        node = NodeID(0, self._size)
        if on_node is not None:
            on_node(node, current)
        # Each trailing 1 bit of the old size is a peak of the same height as `current`.
        while node.index & 1:
            current = node_hash(self._peaks.pop(), current)
            node = node.parent()
            if on_node is not None:
                on_node(node, current)
        self._peaks.append(current)
        self._size += 1

    def extend(self, leaf_hashes: Iterable[bytes], on_node: NodeVisitor | None = None) -> None:
        """`append` each of `leaf_hashes` in turn (one call for a batch: the writer's path)."""
        peaks, size = self._peaks, self._size
        for leaf in leaf_hashes:
            current = leaf if type(leaf) is bytes and len(leaf) == HASH_SIZE else require_hash(leaf, "leaf_hash")
            if on_node is None:
                index = size
                while index & 1:
                    current = node_hash(peaks.pop(), current)
                    index >>= 1
            else:
                node = NodeID._unchecked(0, size)  # size is a count this range kept: no re-check
                on_node(node, current)
                while node.index & 1:
                    current = node_hash(peaks.pop(), current)
                    node = node.parent()
                    on_node(node, current)
            peaks.append(current)
            size += 1
            self._size = size

    def root(self) -> bytes:
        """MTH of the tree: peaks folded right to left; SHA-256("") when empty."""
        if not self._peaks:
            return EMPTY_ROOT
        root = self._peaks[-1]
        for peak in reversed(self._peaks[:-1]):
            root = node_hash(peak, root)
        return root

    def copy(self) -> "CompactRange":
        copied = CompactRange()  # this range's own size and peaks: already checked, not again
        copied._size, copied._peaks = self._size, list(self._peaks)
        return copied

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompactRange):
            return NotImplemented
        return self._size == other._size and self._peaks == other._peaks

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size}, peaks={len(self._peaks)})"
