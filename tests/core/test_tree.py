"""Merkle Tree Hash and node coordinates (appliance.core.tree) against the RFC 9162 reference."""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.errors import InvalidInput, RunlogError
from appliance.core.hashing import EMPTY_ROOT, leaf_hash, node_hash
from appliance.core.tree import NodeID, largest_power_of_two_below, perfect_subtrees, root_from_leaf_hashes
from tests.core import reference_merkle as ref

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "merkle" / "reference-tree"
ENTRIES = [f"entry {i}".encode() for i in range(301)]
LEAF_HASHES = [leaf_hash(e) for e in ENTRIES]


def load(name: str) -> dict:
    return json.loads((VECTORS / name).read_text())


def test_rfc6962_hasher_vectors():
    data = load("rfc6962-hasher.json")
    assert EMPTY_ROOT.hex() == data["empty_root"] == root_from_leaf_hashes([]).hex()
    for case in data["leaves"]:
        assert leaf_hash(bytes.fromhex(case["entry"])).hex() == case["hash"]
    for case in data["nodes"]:
        assert node_hash(bytes.fromhex(case["left"]), bytes.fromhex(case["right"])).hex() == case["hash"]


def test_eight_leaf_tree_roots_for_every_size():
    data = load("eight-leaf-tree.json")
    leaves = [leaf_hash(bytes.fromhex(entry)) for entry in data["leaves"]]
    for size, root in data["roots"].items():
        assert root_from_leaf_hashes(leaves[: int(size)]).hex() == root
        assert ref.mth([bytes.fromhex(e) for e in data["leaves"][: int(size)]]).hex() == root


def test_roots_match_reference_for_sizes_0_to_300():
    for size in range(301):
        assert root_from_leaf_hashes(LEAF_HASHES[:size]) == ref.mth(ENTRIES[:size]), size


def test_root_refuses_hashes_of_the_wrong_size():
    with pytest.raises(InvalidInput, match=r"hashes\[1\] must be a 32-byte hash, got 31 bytes"):
        root_from_leaf_hashes([LEAF_HASHES[0], b"\x00" * 31])
    with pytest.raises(InvalidInput):
        root_from_leaf_hashes(["not bytes"])  # type: ignore[list-item]


def test_largest_power_of_two_below():
    assert [largest_power_of_two_below(n) for n in (2, 3, 4, 5, 8, 9, 1000)] == [1, 2, 2, 4, 4, 8, 512]
    for bad in (0, 1, -3, True, 2.0):
        with pytest.raises(InvalidInput):
            largest_power_of_two_below(bad)  # type: ignore[arg-type]


def test_node_id_coverage_parent_and_sibling():
    node = NodeID(2, 3)
    assert (node.begin, node.end) == (12, 16)
    assert node.parent() == NodeID(3, 1)
    assert node.sibling() == NodeID(2, 2)
    assert NodeID(0, 6).sibling() == NodeID(0, 7)
    assert NodeID(1, 0) < NodeID(1, 1) < NodeID(2, 0)


@pytest.mark.parametrize("level, index", [(-1, 0), (0, -1), (True, 0), (0, 1.5), ("0", 0)])
def test_node_id_refuses_non_counts(level, index):
    with pytest.raises(InvalidInput):
        NodeID(level, index)


def test_perfect_subtrees_are_the_peaks_from_zero():
    assert perfect_subtrees(0, 0) == []
    assert perfect_subtrees(0, 7) == [NodeID(2, 0), NodeID(1, 2), NodeID(0, 6)]
    assert perfect_subtrees(0, 8) == [NodeID(3, 0)]
    assert perfect_subtrees(88, 95) == [NodeID(2, 22), NodeID(1, 46), NodeID(0, 94)]
    assert perfect_subtrees(3, 9) == [NodeID(0, 3), NodeID(2, 1), NodeID(0, 8)]
    with pytest.raises(InvalidInput):
        perfect_subtrees(5, 4)


@settings(max_examples=200)
@given(st.integers(0, 2000), st.integers(0, 2000))
def test_perfect_subtrees_tile_the_range_exactly(a, b):
    begin, end = min(a, b), max(a, b)
    nodes = perfect_subtrees(begin, end)
    position = begin
    for node in nodes:
        assert node.begin == position
        position = node.end
    assert position == end
    # Fewest pieces: no two neighbours could merge into their common parent.
    for left, right in zip(nodes, nodes[1:]):
        assert not (left.level == right.level and left.sibling() == right and left.index % 2 == 0)


@given(st.lists(st.one_of(st.binary(max_size=40), st.text(max_size=5), st.integers(), st.none()), max_size=5))
def test_root_from_leaf_hashes_raises_only_runlog_errors(items):
    try:
        root_from_leaf_hashes(items)
    except RunlogError:
        pass
