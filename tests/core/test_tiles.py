"""C2SP tlog-tiles geometry: tile contents agree with the Merkle tree, every perfect node can be
computed from the one tile `tile_for_node` names, and paths follow the spec's encoding."""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.compact import CompactRange
from appliance.core.errors import InvalidInput, RunlogError
from appliance.core.hashing import leaf_hash
from appliance.core.tiles import (
    TILE_WIDTH,
    NodeLocation,
    TileID,
    TilePathError,
    encode_tile_index,
    node_from_tile,
    tile_for_node,
    tile_hashes_from_bytes,
    tile_root,
    tiles_for_size,
)
from appliance.core.tree import NodeID
from tests.core import reference_merkle as ref

SPEC_FILE = Path(__file__).resolve().parents[1] / "vectors/merkle/tiles/c2sp-tlog-tiles-examples.json"
SPEC = json.loads(SPEC_FILE.read_text())
SIZE = 70_000  # the spec's own example tree
ENTRIES = [f"entry {i}".encode() for i in range(SIZE)]
NODES: dict[NodeID, bytes] = {}
_compact = CompactRange()
for _entry in ENTRIES:
    _compact.append(leaf_hash(_entry), NODES.__setitem__)


def tile_hashes(tile: TileID) -> list[bytes]:
    """What storage would serve for `tile`: the nodes of tree level 8 * tile.level it spans."""
    first = tile.index * TILE_WIDTH
    return [NODES[NodeID(8 * tile.level, first + i)] for i in range(tile.width)]


def test_tile_root_is_the_level_8_node_of_the_reference_tree():
    for n in range(3):
        hashes = tile_hashes(TileID(0, n))
        assert tile_root(hashes) == ref.mth(ENTRIES[n * 256 : (n + 1) * 256]) == NODES[NodeID(8, n)]


def test_a_full_level_1_tile_hashes_up_to_the_level_16_node():
    assert tile_root(tile_hashes(TileID(1, 0))) == NODES[NodeID(16, 0)]


def test_tile_root_needs_a_full_tile():
    with pytest.raises(InvalidInput, match="a full tile has 256 hashes, got 255"):
        tile_root(tile_hashes(TileID(0, 0))[:255])


def test_tile_for_node_examples():
    assert tile_for_node(NodeID(0, 5), 1000) == NodeLocation(TileID(0, 0), 5, 1)
    assert tile_for_node(NodeID(3, 40), 1000) == NodeLocation(TileID(0, 1), 64, 8)
    assert tile_for_node(NodeID(6, 14), 1000) == NodeLocation(TileID(0, 3, 232), 128, 64)
    assert tile_for_node(NodeID(8, 2), 1000) == NodeLocation(TileID(1, 0, 3), 2, 1)
    assert tile_for_node(NodeID(9, 129), SIZE) == NodeLocation(TileID(1, 1, 17), 2, 2)
    assert tile_for_node(NodeID(16, 0), SIZE) == NodeLocation(TileID(2, 0, 1), 0, 1)
    with pytest.raises(InvalidInput, match="not complete in a tree of size 1000"):
        tile_for_node(NodeID(8, 3), 1000)


@settings(max_examples=150)
@given(st.integers(0, 16).flatmap(lambda lv: st.builds(NodeID, st.just(lv), st.integers(0, (SIZE >> lv) - 1))))
def test_every_perfect_node_is_computed_from_its_tile(node):
    location = tile_for_node(node, SIZE)
    assert location.tile in tiles_for_size(SIZE)
    assert location.offset + location.count <= location.tile.width
    assert node_from_tile(tile_hashes(location.tile), node) == NODES[node]


def test_node_from_tile_refuses_a_tile_too_short_for_the_node():
    with pytest.raises(InvalidInput, match=r"needs tile hashes \[64, 72\), tile has 70"):
        node_from_tile(tile_hashes(TileID(0, 1, 70)), NodeID(3, 40))


@pytest.mark.parametrize("example", SPEC["tree_sizes"], ids=lambda e: str(e["size"]))
def test_tiles_for_size_matches_the_spec_examples(example):
    expected = []
    for level in example["levels"]:
        expected += [TileID(level["level"], n) for n in range(level["full"])]
        if level["partial_width"]:
            expected.append(TileID(level["level"], level["full"], level["partial_width"]))
    assert tiles_for_size(example["size"]) == expected
    assert tiles_for_size(0) == []


def test_tile_spans_entries():
    assert (TileID(0, 273).start, TileID(0, 273).end) == (69_888, 70_144)
    assert (TileID(1, 1, 17).start, TileID(1, 1, 17).end) == (65_536, 131_072)


def test_index_encoding_matches_the_spec():
    for case in SPEC["index_encoding"]:
        assert encode_tile_index(case["index"]) == case["encoded"]
    examples = {0: "000", 7: "007", 999: "999", 1000: "x001/000", 1_000_000: "x001/x000/000"}
    assert {n: encode_tile_index(n) for n in examples} == examples


@pytest.mark.parametrize(
    "tile, path",
    [
        (TileID(0, 0), "tile/0/000"),
        (TileID(0, 1234067), "tile/0/x001/x234/067"),
        (TileID(4, 1234067, 1), "tile/4/x001/x234/067.p/1"),
        (TileID(1, 1, 17), "tile/1/001.p/17"),
        (TileID(63, 999, 255), "tile/63/999.p/255"),
    ],
)
def test_tile_paths_round_trip(tile, path):
    assert tile.path == path
    assert TileID.from_path(path) == tile


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/x000/001",  # leading zero group
        "tile/0/1",  # not zero-padded
        "tile/00/000",  # leading zero in level
        "tile/64/000",  # level above 63
        "tile/0/000.p/256",  # a full tile has no .p suffix
        "tile/0/000.p/0",
        "tile/0/000.p/007",
        "tile/0/001/002",  # inner element without x
        "tile/0/x001",  # last element with x
        "tile/0/000\n",
        "tile/entries/000",
        "/tile/0/000",
        "tile/0/000/",
        "tile/٣/000",  # non-ASCII digit
        "",
    ],
)
def test_non_canonical_tile_paths_are_refused(path):
    with pytest.raises(TilePathError):
        TileID.from_path(path)


@pytest.mark.parametrize("args", [(-1, 0), (0, -1), (64, 0), (0, 0, 0), (0, 0, 257), (True, 0)])
def test_tile_id_refuses_bad_fields(args):
    with pytest.raises(InvalidInput):
        TileID(*args)


def test_tile_data_splits_into_hashes():
    hashes = tile_hashes(TileID(0, 0))
    assert tile_hashes_from_bytes(b"".join(hashes)) == hashes
    assert tile_hashes_from_bytes(bytearray(hashes[0])) == hashes[:1]
    for bad in (b"", b"\x00" * 33, b"\x00" * (32 * 257)):
        with pytest.raises(InvalidInput):
            tile_hashes_from_bytes(bad)
    assert SPEC["full_tile_bytes"]["bytes"] == len(b"".join(hashes))


@given(st.integers(0, 63), st.integers(0, 10**12), st.integers(1, 256))
def test_any_tile_id_round_trips_through_its_path(level, index, width):
    tile = TileID(level, index, width)
    assert TileID.from_path(tile.path) == tile


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=30), st.from_regex(r"tile/[0-9x./p]{0,20}", fullmatch=True), st.binary()))
def test_tile_path_parser_raises_only_runlog_errors(text):
    try:
        tile = TileID.from_path(text)  # type: ignore[arg-type]
    except RunlogError:
        return
    assert tile.path == text


@given(st.one_of(st.binary(max_size=9000), st.text(max_size=5), st.integers()))
def test_tile_data_parser_raises_only_runlog_errors(data):
    try:
        hashes = tile_hashes_from_bytes(data)  # type: ignore[arg-type]
    except RunlogError:
        return
    assert b"".join(hashes) == data
