"""CompactRange: the frontier agrees with the RFC reference at every size and reports every
perfect node exactly once, so storage can build tiles from the callbacks alone."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.core.compact import CompactRange
from appliance.core.errors import InvalidInput, RunlogError
from appliance.core.hashing import EMPTY_ROOT, leaf_hash, node_hash
from appliance.core.tree import NodeID
from tests.core import reference_merkle as ref

SIZE = 1000
ENTRIES = [f"entry {i}".encode() for i in range(SIZE)]
LEAF_HASHES = [leaf_hash(e) for e in ENTRIES]


def test_root_equals_reference_after_every_append_up_to_1000():
    roots = [ref.mth(ENTRIES[:n]) for n in range(SIZE + 1)]  # ~1 s: the reference is O(n) per root
    compact = CompactRange()
    assert compact.root() == EMPTY_ROOT == roots[0]
    for i, h in enumerate(LEAF_HASHES):
        compact.append(h)
        assert compact.size == i + 1
        assert compact.root() == roots[i + 1], i + 1
        assert len(compact.peaks) == compact.size.bit_count()


def test_on_node_reports_exactly_the_perfect_nodes_bottom_up():
    reported: list[tuple[NodeID, bytes]] = []
    compact = CompactRange()
    for h in LEAF_HASHES[:300]:
        before = len(reported)
        compact.append(h, lambda node, value: reported.append((node, value)))
        levels = [node.level for node, _ in reported[before:]]
        assert levels == list(range(len(levels)))  # the leaf, then each parent it completes
    nodes = [node for node, _ in reported]
    expected = {NodeID(level, index) for level in range(9) for index in range(300 >> level)}
    assert len(nodes) == len(set(nodes)) == len(expected)
    assert set(nodes) == expected
    for node, value in reported:
        assert value == ref.mth(ENTRIES[node.begin : node.end]), node


def test_peaks_are_the_perfect_subtrees_left_to_right():
    compact = CompactRange()
    for h in LEAF_HASHES[:13]:
        compact.append(h)
    assert compact.peak_ids == (NodeID(3, 0), NodeID(2, 2), NodeID(0, 12))
    assert compact.peaks == tuple(ref.mth(ENTRIES[n.begin : n.end]) for n in compact.peak_ids)


def test_from_peaks_round_trip_continues_identically():
    original = CompactRange()
    for h in LEAF_HASHES[:77]:
        original.append(h)
    restored = CompactRange.from_peaks(original.size, original.peaks)
    assert restored == original and restored.root() == original.root()
    copied = original.copy()
    for h in LEAF_HASHES[77:130]:
        original.append(h)
        restored.append(h)
    assert restored == original != copied
    assert restored.root() == ref.mth(ENTRIES[:130])
    assert CompactRange.from_peaks(0, []) == CompactRange()


def test_from_peaks_refuses_a_wrong_peak_count_or_size():
    peaks = [LEAF_HASHES[0], LEAF_HASHES[1]]
    with pytest.raises(InvalidInput, match="a tree of size 4 has 1 peaks, got 2"):
        CompactRange.from_peaks(4, peaks)
    with pytest.raises(InvalidInput):
        CompactRange.from_peaks(3, [LEAF_HASHES[0], b"short"])
    with pytest.raises(InvalidInput):
        CompactRange.from_peaks(-1, [])


def test_append_refuses_a_bad_leaf_hash_and_leaves_the_range_unchanged():
    compact = CompactRange()
    compact.append(LEAF_HASHES[0])
    with pytest.raises(InvalidInput):
        compact.append(b"\x00" * 33)
    assert compact.size == 1 and compact.root() == LEAF_HASHES[0]


def test_equality_is_by_value_and_ranges_are_unhashable():
    a, b = CompactRange(), CompactRange()
    a.append(LEAF_HASHES[0])
    assert a != b
    b.append(LEAF_HASHES[0])
    assert a == b and a != "range"
    with pytest.raises(TypeError):
        hash(a)
    a.append(node_hash(LEAF_HASHES[0], LEAF_HASHES[0]))
    assert a != b


@given(
    st.one_of(st.integers(-5, 300), st.text(max_size=3), st.none()),
    st.lists(st.one_of(st.binary(max_size=40), st.integers(), st.text(max_size=3)), max_size=6),
)
def test_from_peaks_raises_only_runlog_errors(size, peaks):
    try:
        restored = CompactRange.from_peaks(size, peaks)
    except RunlogError:
        return
    assert len(restored.peaks) == size.bit_count()


def test_extend_is_append_in_a_loop_with_the_same_nodes_reported():
    one_by_one, batched = CompactRange(), CompactRange()
    appended: list[tuple[NodeID, bytes]] = []
    extended: list[tuple[NodeID, bytes]] = []
    for h in LEAF_HASHES[:300]:
        one_by_one.append(h, lambda node, value: appended.append((node, value)))
    for start, end in ((0, 1), (1, 100), (100, 100), (100, 300)):
        batched.extend(LEAF_HASHES[start:end], lambda node, value: extended.append((node, value)))
    assert batched == one_by_one and extended == appended
    unvisited = CompactRange()
    unvisited.extend(LEAF_HASHES[:300])
    assert unvisited == one_by_one and unvisited.root() == ref.mth(ENTRIES[:300])


def test_extend_refuses_a_bad_leaf_hash_after_the_good_ones_before_it():
    compact = CompactRange()
    with pytest.raises(InvalidInput):
        compact.extend([LEAF_HASHES[0], bytearray(LEAF_HASHES[1]), b"\x00" * 31])
    assert compact.size == 2 and compact.root() == ref.mth(ENTRIES[:2])


@given(st.integers(0, 63), st.integers(0, 2**63 - 1))
def test_unchecked_node_ids_equal_checked_ones(level, index):
    """The fast constructor (compact ranges, parent, sibling) makes what the checked one makes."""
    checked, fast = NodeID(level, index), NodeID._unchecked(level, index)
    assert fast == checked and hash(fast) == hash(checked) and repr(fast) == repr(checked)
    assert (fast.begin, fast.end) == (checked.begin, checked.end)
    assert not fast < checked and not checked < fast
    assert checked.parent() == NodeID(level + 1, index >> 1) and checked.sibling() == NodeID(level, index ^ 1)
    assert type(checked.parent()) is NodeID and type(fast) is NodeID
