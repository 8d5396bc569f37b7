"""Inclusion and consistency proofs: planner + assembly against the RFC 9162 reference, and the
verifier against transparency-dev/merkle's published vectors and every mutation we can think of."""

import base64
import functools
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.compact import CompactRange
from appliance.core.errors import InvalidInput, ProofError, RunlogError
from appliance.core.hashing import EMPTY_ROOT, leaf_hash
from appliance.core.proof_plan import (
    ProofPlan,
    consistency_proof,
    inclusion_proof,
    plan_consistency,
    plan_inclusion,
)
from appliance.core.proof_verify import root_from_inclusion_proof, verify_consistency, verify_inclusion
from appliance.core.tree import NodeID
from tests.core import reference_merkle as ref

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "merkle"
MAX_SIZE = 3000
ENTRIES = [f"entry {i}".encode() for i in range(MAX_SIZE)]
LEAF_HASHES = [leaf_hash(e) for e in ENTRIES]
NODES: dict[NodeID, bytes] = {}
_compact = CompactRange()
for _h in LEAF_HASHES:
    _compact.append(_h, NODES.__setitem__)


@functools.cache
def root(size: int) -> bytes:
    return ref.mth(ENTRIES[:size])


def flip(value: bytes, bit: int) -> bytes:
    flipped = bytearray(value)
    flipped[bit // 8] ^= 1 << (bit % 8)
    return bytes(flipped)


def b64(value: str) -> bytes:
    return base64.b64decode(value)


def vector_files(kind: str) -> list[Path]:
    return sorted((VECTORS / kind).rglob("*.json"))


def vector_id(path: Path) -> str:
    return "/".join(path.parts[-2:]).removesuffix(".json")


# transparency-dev/merkle testdata, one case per file (see each file's "source").


@pytest.mark.parametrize("path", vector_files("inclusion"), ids=vector_id)
def test_transparency_dev_inclusion_vector(path):
    case = json.loads(path.read_text())
    index = case["leafIdx"] if "leafIdx" in case else case["leafIndex"]
    proof = [b64(p) for p in case["proof"] or []]
    args = (index, case["treeSize"], b64(case["leafHash"]), proof, b64(case["root"]))
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)
        assert root_from_inclusion_proof(*args[:4]) == args[4]


@pytest.mark.parametrize("path", vector_files("consistency"), ids=vector_id)
def test_transparency_dev_consistency_vector(path):
    case = json.loads(path.read_text())
    proof = [b64(p) for p in case["proof"] or []]
    args = (case["size1"], case["size2"], proof, b64(case["root1"]), b64(case["root2"]))
    if case.get("runlogWantErr", case["wantErr"]):
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_vectors_are_all_there():
    assert len(vector_files("inclusion")) == 98
    assert len(vector_files("consistency")) == 98


# The RFC 6962 eight-leaf tree: our planner rebuilds the published proofs exactly.


def eight_leaf_tree() -> tuple[list[bytes], dict[NodeID, bytes]]:
    data = json.loads((VECTORS / "reference-tree" / "eight-leaf-tree.json").read_text())
    leaves = [leaf_hash(bytes.fromhex(e)) for e in data["leaves"]]
    nodes: dict[NodeID, bytes] = {}
    compact = CompactRange()
    for h in leaves:
        compact.append(h, nodes.__setitem__)
    return leaves, nodes


def test_eight_leaf_tree_inclusion_proofs():
    leaves, nodes = eight_leaf_tree()
    roots = json.loads((VECTORS / "reference-tree" / "eight-leaf-tree.json").read_text())["roots"]
    for case in json.loads((VECTORS / "reference-tree" / "inclusion-proofs.json").read_text())["cases"]:
        index, size = case["index"], case["size"]
        proof = inclusion_proof(index, size, nodes.__getitem__)
        assert [p.hex() for p in proof] == case["proof"]
        verify_inclusion(index, size, leaves[index], proof, bytes.fromhex(roots[str(size)]))


def test_eight_leaf_tree_consistency_proofs():
    _, nodes = eight_leaf_tree()
    roots = json.loads((VECTORS / "reference-tree" / "eight-leaf-tree.json").read_text())["roots"]
    for case in json.loads((VECTORS / "reference-tree" / "consistency-proofs.json").read_text())["cases"]:
        old, new = case["old_size"], case["new_size"]
        proof = consistency_proof(old, new, nodes.__getitem__)
        assert [p.hex() for p in proof] == case["proof"]
        verify_consistency(old, new, proof, bytes.fromhex(roots[str(old)]), bytes.fromhex(roots[str(new)]))


# Planner: which nodes, in which order (transparency-dev/merkle proof_test.go tables).


def expected_plan(case: dict) -> ProofPlan:
    begin, end = case.get("rehash", (0, 0))
    return ProofPlan(tuple(NodeID(level, index) for level, index in case["nodes"]), begin, end)


def test_inclusion_plans_match_published_node_lists():
    data = json.loads((VECTORS / "plans" / "inclusion-node-ids.json").read_text())
    for case in data["cases"]:
        assert plan_inclusion(case["index"], case["size"]) == expected_plan(case), case
    for case in data["invalid"]:
        with pytest.raises(InvalidInput):
            plan_inclusion(case["index"], case["size"])


def test_consistency_plans_match_published_node_lists():
    data = json.loads((VECTORS / "plans" / "consistency-node-ids.json").read_text())
    for case in data["cases"]:
        assert plan_consistency(case["old_size"], case["new_size"]) == expected_plan(case), case
    for case in data["invalid"]:
        with pytest.raises(InvalidInput):
            plan_consistency(case["old_size"], case["new_size"])


def test_consistency_from_the_empty_tree_needs_no_nodes():
    assert plan_consistency(0, 0) == plan_consistency(0, 17) == ProofPlan(())
    verify_consistency(0, 17, [], EMPTY_ROOT, root(17))
    verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)


@pytest.mark.parametrize("args", [(-1, 3), (3, -1), (True, 3), (0, 2.0), ("1", 3), (5, 5), (6, 5)])
def test_plan_inclusion_refuses_bad_arguments(args):
    with pytest.raises(InvalidInput):
        plan_inclusion(*args)


@pytest.mark.parametrize("args", [(-1, 3), (3, -1), (False, 3), (2, None), (6, 5)])
def test_plan_consistency_refuses_bad_arguments(args):
    with pytest.raises(InvalidInput):
        plan_consistency(*args)


def test_assemble_checks_the_hashes_it_is_given():
    plan = plan_inclusion(0, 7)
    with pytest.raises(InvalidInput, match="plan needs 4 node hashes, got 3"):
        plan.assemble(LEAF_HASHES[:3])
    with pytest.raises(InvalidInput):
        plan.assemble([*LEAF_HASHES[:3], b"short"])


# The fast code against the RFC reference: exhaustively for small trees, at random for larger.


def test_every_inclusion_proof_up_to_64_matches_the_reference_and_verifies():
    for size in range(1, 65):
        for index in range(size):
            proof = inclusion_proof(index, size, NODES.__getitem__)
            assert proof == ref.path(index, ENTRIES[:size]), (index, size)
            assert root_from_inclusion_proof(index, size, LEAF_HASHES[index], proof) == root(size)


def test_every_consistency_proof_up_to_64_matches_the_reference_and_verifies():
    for new in range(1, 65):
        verify_consistency(new, new, [], root(new), root(new))
        for old in range(1, new):
            proof = consistency_proof(old, new, NODES.__getitem__)
            assert proof == ref.proof(old, ENTRIES[:new]), (old, new)
            verify_consistency(old, new, proof, root(old), root(new))


@settings(max_examples=40)
@given(st.integers(1, MAX_SIZE).flatmap(lambda size: st.tuples(st.integers(0, size - 1), st.just(size))))
def test_random_inclusion_proofs_match_the_reference(index_size):
    index, size = index_size
    proof = inclusion_proof(index, size, NODES.__getitem__)
    assert proof == ref.path(index, ENTRIES[:size])
    verify_inclusion(index, size, LEAF_HASHES[index], proof, root(size))


@settings(max_examples=40)
@given(st.integers(2, MAX_SIZE).flatmap(lambda new: st.tuples(st.integers(1, new - 1), st.just(new))))
def test_random_consistency_proofs_match_the_reference(old_new):
    old, new = old_new
    proof = consistency_proof(old, new, NODES.__getitem__)
    assert proof == ref.proof(old, ENTRIES[:new])
    verify_consistency(old, new, proof, root(old), root(new))


# Mutations. A Merkle root does not commit to the tree size: the same proof can be valid for
# another size whose tree has the same shape along the path (leaf 0 in sizes 3 and 4 both take
# two right siblings). Signed checkpoints bind size and root together; here we check that a
# changed size is accepted exactly when the RFC's PATH / SUBPROOF shape is unchanged.

small_inclusion = st.integers(1, 600).flatmap(lambda size: st.tuples(st.integers(0, size - 1), st.just(size)))


def test_a_root_does_not_commit_to_the_tree_size():
    proof = inclusion_proof(0, 3, NODES.__getitem__)
    verify_inclusion(0, 3, LEAF_HASHES[0], proof, root(3))
    verify_inclusion(0, 4, LEAF_HASHES[0], proof, root(3))  # same shape: R, R
    with pytest.raises(ProofError):
        verify_inclusion(0, 5, LEAF_HASHES[0], proof, root(3))


@settings(max_examples=60)
@given(small_inclusion, st.data())
def test_any_bit_flip_in_an_inclusion_proof_fails(index_size, data):
    index, size = index_size
    proof = inclusion_proof(index, size, NODES.__getitem__)
    leaf, good_root = LEAF_HASHES[index], root(size)
    bit = data.draw(st.integers(0, 255))
    target = data.draw(st.integers(-2, len(proof) - 1))
    if target == -2:
        leaf = flip(leaf, bit)
    elif target == -1:
        good_root = flip(good_root, bit)
    else:
        proof[target] = flip(proof[target], bit)
    with pytest.raises(ProofError):
        verify_inclusion(index, size, leaf, proof, good_root)


@settings(max_examples=60)
@given(small_inclusion, st.data())
def test_changed_index_or_size_fails_unless_the_path_shape_is_the_same(index_size, data):
    index, size = index_size
    proof = inclusion_proof(index, size, NODES.__getitem__)
    other_index = data.draw(st.integers(0, size + 3).filter(lambda i: i != index))
    with pytest.raises(ProofError):
        verify_inclusion(other_index, size, LEAF_HASHES[index], proof, root(size))
    other_size = data.draw(st.integers(0, 2 * size + 3).filter(lambda s: s != size))
    same_shape = other_size > index and ref.path_shape(index, other_size) == ref.path_shape(index, size)
    if same_shape:
        verify_inclusion(index, other_size, LEAF_HASHES[index], proof, root(size))
    else:
        with pytest.raises(ProofError):
            verify_inclusion(index, other_size, LEAF_HASHES[index], proof, root(size))


@settings(max_examples=40)
@given(small_inclusion, st.binary(min_size=32, max_size=32))
def test_truncated_or_extended_inclusion_proofs_fail(index_size, extra):
    index, size = index_size
    proof = inclusion_proof(index, size, NODES.__getitem__)
    variants = [proof + [extra], [extra] + proof, proof + [root(size)]]
    if proof:
        variants += [proof[:-1], proof[1:]]
    for variant in variants:
        with pytest.raises(ProofError):
            verify_inclusion(index, size, LEAF_HASHES[index], variant, root(size))


small_consistency = st.integers(2, 600).flatmap(lambda new: st.tuples(st.integers(1, new - 1), st.just(new)))


@settings(max_examples=60)
@given(small_consistency, st.data())
def test_any_bit_flip_in_a_consistency_proof_fails(old_new, data):
    old, new = old_new
    proof = consistency_proof(old, new, NODES.__getitem__)
    old_root, new_root = root(old), root(new)
    bit = data.draw(st.integers(0, 255))
    target = data.draw(st.integers(-2, len(proof) - 1))
    if target == -2:
        old_root = flip(old_root, bit)
    elif target == -1:
        new_root = flip(new_root, bit)
    else:
        proof[target] = flip(proof[target], bit)
    with pytest.raises(ProofError):
        verify_consistency(old, new, proof, old_root, new_root)


@settings(max_examples=60)
@given(small_consistency, st.data())
def test_changed_sizes_fail_unless_the_proof_shape_is_the_same(old_new, data):
    old, new = old_new
    proof = consistency_proof(old, new, NODES.__getitem__)
    shape = ref.proof_shape(old, new)
    other_old = data.draw(st.integers(0, new + 3).filter(lambda s: s != old))
    other_new = data.draw(st.integers(0, 2 * new + 3).filter(lambda s: s != new))
    for sizes in [(other_old, new), (old, other_new)]:
        accepted = 0 < sizes[0] < sizes[1] and ref.proof_shape(*sizes) == shape
        if accepted:
            verify_consistency(*sizes, proof, root(old), root(new))
        else:
            with pytest.raises(ProofError):
                verify_consistency(*sizes, proof, root(old), root(new))


@settings(max_examples=40)
@given(small_consistency, st.binary(min_size=32, max_size=32))
def test_truncated_extended_or_swapped_consistency_proofs_fail(old_new, extra):
    old, new = old_new
    proof = consistency_proof(old, new, NODES.__getitem__)
    variants = [proof[:-1], proof[1:], proof + [extra], [extra] + proof, proof + [root(new)], []]
    for variant in variants:
        with pytest.raises(ProofError):
            verify_consistency(old, new, variant, root(old), root(new))
    with pytest.raises(ProofError):
        verify_consistency(old, new, proof, root(new), root(old))


# Messages and malformed input: only ProofError escapes a verifier.


def test_errors_say_what_is_wrong():
    proof = inclusion_proof(5, 8, NODES.__getitem__)
    with pytest.raises(ProofError, match="must have 3 hashes, got 2"):
        verify_inclusion(5, 8, LEAF_HASHES[5], proof[:2], root(8))
    with pytest.raises(ProofError, match=r"proof\[1\] is 31 bytes"):
        verify_inclusion(5, 8, LEAF_HASHES[5], [proof[0], proof[1][:31], proof[2]], root(8))
    with pytest.raises(ProofError, match="leaf index 8 is not below tree size 8"):
        verify_inclusion(8, 8, LEAF_HASHES[5], proof, root(8))
    with pytest.raises(ProofError) as caught:
        verify_inclusion(5, 8, LEAF_HASHES[5], proof, root(7))
    assert caught.value.expected == root(7) and caught.value.computed == root(8)
    assert f"expected root {root(7).hex()}, computed {root(8).hex()}" in str(caught.value)
    with pytest.raises(ProofError, match="does not lead to the old root of size 3") as caught:
        verify_consistency(3, 8, consistency_proof(3, 8, NODES.__getitem__), root(4), root(8))
    assert caught.value.expected == root(4) and caught.value.computed == root(3)
    with pytest.raises(ProofError, match="old size 9 is larger than new size 8"):
        verify_consistency(9, 8, [], root(8), root(8))
    with pytest.raises(ProofError, match="old root is not the root of the empty tree"):
        verify_consistency(0, 8, [], root(1), root(8))


def test_hashes_as_bytearrays_in_a_tuple_verify_as_bytes_in_a_list():
    proof = inclusion_proof(5, 8, NODES.__getitem__)
    verify_inclusion(5, 8, bytearray(LEAF_HASHES[5]), tuple(map(bytearray, proof)), root(8))
    with pytest.raises(ProofError, match="does not lead to the root"):
        verify_inclusion(5, 8, LEAF_HASHES[5], tuple(map(bytearray, reversed(proof))), root(8))


anything = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 70), st.binary(max_size=40), st.text(max_size=4),
    st.lists(st.one_of(st.binary(min_size=30, max_size=33), st.integers(), st.none()), max_size=8),
)


@settings(max_examples=150)
@given(anything, anything, anything, anything, anything)
def test_verifiers_raise_only_proof_errors(a, b, c, d, e):
    for call in (
        lambda: verify_inclusion(a, b, c, d, e),
        lambda: root_from_inclusion_proof(a, b, c, d),
        lambda: verify_consistency(a, b, c, d, e),
    ):
        try:
            call()
        except ProofError:
            pass


@settings(max_examples=100)
@given(anything, anything)
def test_planners_raise_only_runlog_errors(a, b):
    for call in (lambda: plan_inclusion(a, b), lambda: plan_consistency(a, b)):
        try:
            call()
        except RunlogError:
            pass


@settings(max_examples=40)
@given(small_inclusion, small_consistency, st.binary(min_size=32, max_size=32))
def test_rfc_steps_alone_refuse_wrong_lengths(index_size, old_new, extra):
    """The length pre-check only improves the message: with it disabled, the RFC 9162 steps
    still accept every genuine proof and refuse every truncated or extended one."""
    from appliance.core import proof_verify

    index, size = index_size
    old, new = old_new
    inclusion = inclusion_proof(index, size, NODES.__getitem__)
    consistency = consistency_proof(old, new, NODES.__getitem__)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(proof_verify, "inclusion_length", lambda *_: len(accepting[0]))
        patch.setattr(proof_verify, "_consistency_length", lambda *_: len(accepting[0]))
        accepting = [inclusion]
        verify_inclusion(index, size, LEAF_HASHES[index], inclusion, root(size))
        for variant in [inclusion[:-1], inclusion + [extra]] if inclusion else [[extra]]:
            accepting[0] = variant
            with pytest.raises(ProofError):
                verify_inclusion(index, size, LEAF_HASHES[index], variant, root(size))
        accepting[0] = consistency
        verify_consistency(old, new, consistency, root(old), root(new))
        for variant in [consistency[:-1], consistency + [extra]]:
            accepting[0] = variant
            with pytest.raises(ProofError):
                verify_consistency(old, new, variant, root(old), root(new))
