"""Which stored nodes an RFC 9162 inclusion or consistency proof needs, and how to assemble it.

Planning does no hashing of data and no I/O: `plan_inclusion` / `plan_consistency` name the
perfect nodes storage must fetch; `ProofPlan.assemble` turns their hashes into the proof, hashing
together the perfect subtrees on the tree's right edge that stand for one *ephemeral* node (a node
that is not perfect in this tree size, so storage never holds it). Proof hashes are ordered from
the leaf (or old subtree) up to the root, as RFC 9162 sections 2.1.3.1 and 2.1.4.1 produce them and
Go's sumdb/tlog `CheckRecord` / `CheckTree` read them.
After transparency-dev/merkle `proof.Inclusion`, `proof.Consistency` and `Nodes.Rehash`.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from appliance.core.errors import InvalidInput
from appliance.core.hashing import node_hash
from appliance.core.tree import NodeID, perfect_subtrees, require_count, require_hash

NodeReader = Callable[[NodeID], bytes]


@dataclass(frozen=True)
class ProofPlan:
    """The perfect nodes to fetch, in proof order.

    `nodes[rehash_begin:rehash_end]` (empty when begin == end) are the perfect subtrees under one
    ephemeral node, listed right to left so that folding them as node_hash(next, acc) rebuilds it.
    """

    nodes: tuple[NodeID, ...]
    rehash_begin: int = 0
    rehash_end: int = 0

    def assemble(self, hashes: Sequence[bytes]) -> list[bytes]:
        """The final proof from the hashes of `nodes` (same order, 32 bytes each)."""
        if len(hashes) != len(self.nodes):
            raise InvalidInput(f"plan needs {len(self.nodes)} node hashes, got {len(hashes)}", field="hashes")
        checked = [require_hash(h, f"hashes[{i}]") for i, h in enumerate(hashes)]
        begin, end = self.rehash_begin, self.rehash_end
        if begin == end:
            return checked
        ephemeral = checked[begin]
        for left in checked[begin + 1 : end]:
            ephemeral = node_hash(left, ephemeral)
        return checked[:begin] + [ephemeral] + checked[end:]


def _path_to_root(node: NodeID, size: int) -> ProofPlan:
    """Nodes proving that perfect `node` is in the tree of `size`, excluding `node` itself."""
    # The fork is the highest ancestor of `node` that is perfect in this tree; above it, the path
    # runs along the right edge, whose right-hand siblings are ephemeral.
    inner = (node.index ^ (size >> node.level)).bit_length() - 1
    fork = NodeID(node.level + inner, node.index >> inner)
    nodes = []
    for _ in range(inner):
        nodes.append(node.sibling())
        node = node.parent()
    right_edge = perfect_subtrees(fork.end, size)[::-1]
    begin = len(nodes)
    nodes.extend(right_edge)
    end = len(nodes)
    nodes.extend(perfect_subtrees(0, fork.begin)[::-1])
    if end - begin < 2:
        begin = end = 0
    return ProofPlan(tuple(nodes), begin, end)


def plan_inclusion(index: int, size: int) -> ProofPlan:
    """Nodes for the inclusion proof of leaf `index` in the tree of `size`. Requires index < size."""
    require_count(index, "index")
    require_count(size, "size")
    if index >= size:
        raise InvalidInput(f"leaf index {index} is not below tree size {size}", field="index")
    return _path_to_root(NodeID(0, index), size)


def plan_consistency(old_size: int, new_size: int) -> ProofPlan:
    """Nodes for the consistency proof from `old_size` to `new_size`. Requires old <= new.

    Empty when old_size is 0 or equal to new_size (nothing to prove beyond the roots).
    """
    require_count(old_size, "old_size")
    require_count(new_size, "new_size")
    if old_size > new_size:
        raise InvalidInput(f"old size {old_size} is larger than new size {new_size}", field="old_size")
    if old_size == 0 or old_size == new_size:
        return ProofPlan(())
    # The old tree's last peak: the largest perfect subtree ending at old_size.
    level = (old_size & -old_size).bit_length() - 1
    last_peak = NodeID(level, (old_size - 1) >> level)
    path = _path_to_root(last_peak, new_size)
    if last_peak.index == 0:
        # The old tree is itself perfect: the verifier already holds this node as the old root.
        return path
    shift = 1 if path.rehash_begin != path.rehash_end else 0
    return ProofPlan((last_peak, *path.nodes), path.rehash_begin + shift, path.rehash_end + shift)


def inclusion_proof(index: int, size: int, get_node: NodeReader) -> list[bytes]:
    """The RFC 9162 inclusion proof of leaf `index` in the tree of `size`, nodes read via `get_node`."""
    plan = plan_inclusion(index, size)
    return plan.assemble([get_node(node) for node in plan.nodes])


def consistency_proof(old_size: int, new_size: int, get_node: NodeReader) -> list[bytes]:
    """The RFC 9162 consistency proof from `old_size` to `new_size`, nodes read via `get_node`."""
    plan = plan_consistency(old_size, new_size)
    return plan.assemble([get_node(node) for node in plan.nodes])
