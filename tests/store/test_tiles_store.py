"""Tiles in a real SQLite file: logs built through the core frontier and the collector, with
restarts at tile boundaries, give the reference roots, proofs the core verifiers accept, and
exactly the full tiles; tampering shows in the proofs; rollbacks leave nothing behind."""

import random
import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.compact import CompactRange
from appliance.core.errors import InvalidInput, ProofError
from appliance.core.hashing import leaf_hash, node_hash
from appliance.core.proof_plan import consistency_proof, inclusion_proof
from appliance.core.proof_verify import verify_consistency, verify_inclusion
from appliance.core.sequencer import Event, RunHead, Sequencer
from appliance.core.tiles import TILE_WIDTH, tiles_for_size
from appliance.core.tree import NodeID, root_from_leaf_hashes
from appliance.store.db import connect, migrate
from appliance.store.tiles import TileCollector, TileStoreError, TreeSizeError, tile_key
from appliance.store.tree_reader import TileCache, TreeReader

RESTARTS = [1, 255, 256, 257, 511, 700, 65535, 65536, 65537]
BIG = 66_000
LEAVES = [leaf_hash(b"leaf %d" % i) for i in range(BIG)]
ENTRY_SQL = ("INSERT INTO entries (seq, trace_id, run_seq, step, status, final, ts, received_at, source, data, hash)"
             " VALUES (?, 't', ?, 'step', 'info', 0, 'ts', 'at', 'test', ?, x'00')")
SMALL_SIZES = range(0, 1100)
CHECKED_SIZES = sorted({*SMALL_SIZES, *RESTARTS, BIG, 65280, 65281, 65791, 65792,
                        *random.Random(3).sample(range(1100, BIG), 120)})


def open_store(path) -> sqlite3.Connection:
    conn = connect(path, synchronous="NORMAL")
    migrate(conn)
    return conn


def append(conn, frontier: CompactRange, collector: TileCollector, stop: int, batch: int) -> None:
    """Append fake leaves up to `stop` the way the writer does: one transaction per batch."""
    while frontier.size < stop:
        conn.execute("BEGIN IMMEDIATE")
        rows = []
        for seq in range(frontier.size, min(frontier.size + batch, stop)):
            frontier.append(LEAVES[seq], collector.on_node)
            rows.append((seq, seq, b"leaf %d" % seq))
        conn.executemany(ENTRY_SQL, rows)
        collector.flush(conn)
        conn.execute("COMMIT")


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A 66,000-entry store, restarted (new connection, resumed collector, frontier from tiles)
    at every size in RESTARTS; returns (path, roots by size from an independent frontier)."""
    path = tmp_path_factory.mktemp("tiles") / "store.sqlite"
    reference = CompactRange()
    roots = {0: reference.root()}
    checked = set(CHECKED_SIZES)
    conn = open_store(path)
    collector, frontier = TileCollector(), CompactRange()
    for number, stop in enumerate([*RESTARTS, BIG]):
        append(conn, frontier, collector, stop, batch=[1, 7, 300, 5000][number % 4])
        while reference.size < stop:
            reference.append(LEAVES[reference.size])
            if reference.size in checked:
                roots[reference.size] = reference.root()
        conn.close()
        conn = open_store(path)
        frontier = TreeReader(conn).frontier(stop)
        assert frontier == reference, stop
        collector = TileCollector.resume(conn, stop)
    conn.close()
    return path, roots


@pytest.fixture
def reader(big):
    conn = connect(big[0], readonly=True)
    yield TreeReader(conn)
    conn.close()


def test_roots_at_every_small_size_and_sampled_large_sizes_match(big, reader):
    _, roots = big
    for size in CHECKED_SIZES:
        assert reader.root(size) == roots[size], size


@pytest.mark.parametrize("size", [255, 256, 257, 65535, 65536, 65537, BIG])
def test_roots_at_tile_boundaries_match_the_rfc_tree_hash(reader, size):
    assert reader.root(size) == root_from_leaf_hashes(LEAVES[:size])


def test_the_store_holds_exactly_the_full_tiles_and_their_roots(reader):
    conn = reader._conn
    full = [tile for tile in tiles_for_size(BIG) if tile.width == TILE_WIDTH]
    stored = dict(conn.execute("SELECT id, hashes FROM tiles"))
    assert sorted(stored) == sorted(tile_key(t.level, t.index) for t in full)
    level1 = [root_from_leaf_hashes(LEAVES[i : i + TILE_WIDTH]) for i in range(0, BIG - TILE_WIDTH + 1, TILE_WIDTH)]
    for t in full:
        expected = LEAVES[t.start : t.end] if t.level == 0 else level1[t.index * TILE_WIDTH : (t.index + 1) * TILE_WIDTH]
        assert stored[tile_key(t.level, t.index)] == b"".join(expected), t
    stored_roots = dict(conn.execute("SELECT id, hash FROM tile_roots"))
    expected_roots = {tile_key(0, i): h for i, h in enumerate(level1)}
    expected_roots[tile_key(1, 0)] = root_from_leaf_hashes(LEAVES[:65536])
    assert stored_roots == expected_roots


def test_leaf_hashes_and_frontiers_come_from_the_tree(big, reader):
    for index in [0, 255, 256, 65535, 65536, BIG - 1, *random.Random(5).sample(range(BIG), 50)]:
        assert reader.leaf_hash(index) == LEAVES[index]
    for size in [0, 1, 256, 65536, 65537, BIG]:
        frontier = reader.frontier(size)
        assert frontier.size == size and frontier.root() == big[1][size]


def test_inclusion_proofs_verify_against_the_reference_roots(big, reader):
    _, roots = big
    rng = random.Random(7)
    cases = [(0, 1), (0, 256), (255, 256), (256, 257), (65535, 65536), (65536, 65537), (0, BIG), (BIG - 1, BIG)]
    cases += [(rng.randrange(size), size) for size in rng.sample([s for s in CHECKED_SIZES if s], 200)]
    for index, size in cases:
        proof = reader.inclusion_proof(index, size)
        verify_inclusion(index, size, LEAVES[index], proof, roots[size])


def test_the_exports_batch_proofs_are_the_tree_readers_across_tile_levels(reader):
    """appliance.store.export plans proofs itself, reading level-0 and level-1 tile pyramids."""
    from appliance.store.export import _Proofs

    rng = random.Random(13)
    for size in [65535, 65536, 65537, 65791, 65792, 65793, BIG, *rng.sample(CHECKED_SIZES[1100:], 8)]:
        proofs = _Proofs(reader._conn, size)
        for index in {0, 255, 256, 65279, 65280, 65535, 65536, size - 257, size - 1, *rng.sample(range(size), 40)}:
            if index < size:
                assert proofs.inclusion(index) == tuple(reader.inclusion_proof(index, size)), (index, size)


def test_consistency_proofs_verify_against_the_reference_roots(big, reader):
    _, roots = big
    rng = random.Random(11)
    sizes = [s for s in CHECKED_SIZES]
    cases = [(0, 0), (0, BIG), (1, 2), (255, 256), (256, 257), (65535, 65536), (65536, 65537), (700, BIG), (BIG, BIG)]
    cases += [tuple(sorted(rng.sample(sizes, 2))) for _ in range(200)]
    for old, new in cases:
        proof = reader.consistency_proof(old, new)
        verify_consistency(old, new, proof, roots[old], roots[new])


@pytest.fixture(scope="module")
def pyramid():
    """Every perfect node of the BIG-leaf tree, hashed up level by level from the leaves: the
    obviously correct node reader for the core's proof planner."""
    levels = [LEAVES]
    while len(levels[-1]) > 1:
        below = levels[-1]
        levels.append([node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])
    return lambda node: levels[node.level][node.index]


BIG_CACHES = [None, TileCache(), TileCache(limit=3)]  # kept across examples: only for `big`'s store


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_the_one_statement_answers_are_the_spec_roots_leaves_and_proofs(big, pyramid, data):
    """TreeReader.inclusion / .consistency (every tile in one statement, tiles hashed up whole) give
    the reference root, the leaf and the core planner's proofs over leaves hashed up one by one, at
    any size (right-edge tiles rebuilt, or prefixes of stored full tiles), with or without `stored`,
    with no tile cache, one kept across examples, or one that keeps starting over."""
    path, roots = big
    size = data.draw(st.sampled_from([s for s in CHECKED_SIZES if s]), label="tree_size")
    stored = data.draw(st.sampled_from([None, BIG]), label="stored")
    cache = data.draw(st.sampled_from(BIG_CACHES), label="cache")
    index = data.draw(st.integers(0, size - 1), label="index")
    old = data.draw(st.integers(1, size), label="old_size")
    with closing(connect(path, readonly=True)) as conn:
        reader = TreeReader(conn, cache)
        assert reader.inclusion(index, size, stored=stored) == (roots[size], LEAVES[index],
                                                                 inclusion_proof(index, size, pyramid))
        assert reader.consistency(old, size, stored=stored) == (roots[size], consistency_proof(old, size, pyramid))
        assert reader.inclusion_proof(index, size) == inclusion_proof(index, size, pyramid)
        assert reader.consistency_proof(old, size) == consistency_proof(old, size, pyramid)
        assert reader.root(size) == roots[size]


def test_a_tree_size_beyond_the_store_is_refused(reader):
    calls = [
        lambda: reader.root(BIG + 1),
        lambda: reader.frontier(BIG + 1),
        lambda: reader.node(NodeID(0, 0), BIG + 1),
        lambda: reader.inclusion_proof(0, BIG + 1),
        lambda: reader.consistency_proof(1, BIG + 1),
        lambda: reader.leaf_hash(BIG),
        lambda: reader.inclusion(0, BIG + 1),
        lambda: reader.consistency(1, BIG + 1),
        lambda: reader.inclusion(0, BIG + 1, stored=BIG),
    ]
    for call in calls:
        with pytest.raises(TreeSizeError, match="beyond the 66000 entries"):
            call()
    with pytest.raises(InvalidInput):
        reader.inclusion_proof(10, 10)
    with pytest.raises(InvalidInput):
        reader.consistency_proof(11, 10)
    with pytest.raises(InvalidInput):
        reader.inclusion(10, 10)
    with pytest.raises(InvalidInput):
        reader.consistency(11, 10)
    with pytest.raises(InvalidInput, match="not complete"):
        reader.node(NodeID(1, 5), 11)


@pytest.fixture
def small(tmp_path):
    """A 1,000-entry store: three full level-0 tiles, their roots, a partial level-1 tile."""
    conn = open_store(tmp_path / "small.sqlite")
    append(conn, CompactRange(), TileCollector(), 1000, batch=128)
    yield conn
    conn.close()


def test_a_tampered_tile_breaks_the_proofs_through_it(small):
    reader = TreeReader(small)
    root = root_from_leaf_hashes(LEAVES[:1000])
    verify_inclusion(300, 1000, LEAVES[300], reader.inclusion_proof(300, 1000), root)
    small.execute("DROP TRIGGER tiles_no_update")  # what a root user could do to the file
    key = tile_key(0, 1)
    hashes = small.execute("SELECT hashes FROM tiles WHERE id = ?", (key,)).fetchone()[0]
    small.execute("UPDATE tiles SET hashes = ? WHERE id = ?", (hashes[:32] + bytes(32) + hashes[64:], key))
    with pytest.raises(ProofError, match="does not lead to the root"):
        verify_inclusion(256, 1000, LEAVES[256], reader.inclusion_proof(256, 1000), root)
    # The root is read from the level above (tile roots), so only proofs through the tile show it:
    # verifying the whole store must rebuild tiles from the entries.
    assert reader.root(1000) == root


def test_level4_nodes_that_do_not_hash_to_the_tiles_root_or_are_missing_are_not_used(small):
    """Proofs through a full level-0 tile use its stored level-4 nodes only once they hash to its
    root; otherwise the tile is hashed up whole, and the proofs stay right."""
    def reference(node):
        return root_from_leaf_hashes(LEAVES[node.begin : node.end])

    root = root_from_leaf_hashes(LEAVES[:1000])
    small.execute("DROP TRIGGER level4_nodes_no_update")
    nodes = small.execute("SELECT hashes FROM level4_nodes WHERE id = 1").fetchone()[0]
    small.execute("UPDATE level4_nodes SET hashes = ? WHERE id = 1", (nodes[:64] + bytes(32) + nodes[96:],))
    small.execute("DROP TRIGGER level4_nodes_no_delete")
    small.execute("DELETE FROM level4_nodes WHERE id = 2")
    for index in (256, 300, 511, 600, 767):  # tile 1: node 2 edited; tile 2: its nodes gone
        assert TreeReader(small).inclusion(index, 1000) == (root, LEAVES[index], inclusion_proof(index, 1000, reference))


def test_a_tampered_tile_root_breaks_the_proofs_above_it(small):
    reader = TreeReader(small)
    root = root_from_leaf_hashes(LEAVES[:1000])
    small.execute("DROP TRIGGER tile_roots_no_update")
    small.execute("UPDATE tile_roots SET hash = zeroblob(32) WHERE id = ?", (tile_key(0, 1),))
    with pytest.raises(ProofError, match="does not lead to the root"):
        verify_inclusion(0, 1000, LEAVES[0], reader.inclusion_proof(0, 1000), root)


def test_a_malformed_or_missing_tile_is_a_store_error(small):
    reader = TreeReader(small)
    small.execute("DROP TRIGGER tiles_no_update")
    small.execute("UPDATE tiles SET hashes = substr(hashes, 1, 100) WHERE id = ?", (tile_key(0, 0),))
    with pytest.raises(TileStoreError, match="is not 8192 bytes"):
        reader.inclusion_proof(0, 1000)
    small.execute("DROP TRIGGER tiles_no_delete")
    small.execute("DELETE FROM tiles WHERE id = ?", (tile_key(0, 2),))
    with pytest.raises(TileStoreError, match="tile/0/002 is missing"):
        reader.leaf_hash(600)
    small.executemany(ENTRY_SQL, [(seq, seq, b"leaf %d" % seq) for seq in range(1000, 1300)])  # no collector
    with pytest.raises(TileStoreError, match="needs 5 roots of level-0 tiles from 0, the store has 3"):
        reader.root(1300)
    small.execute("UPDATE tiles SET hashes = 'text' WHERE id = ?", (tile_key(0, 0),))
    with pytest.raises(TileStoreError, match="is not 8192 bytes"):
        reader.inclusion_proof(0, 1000)


def test_tile_tables_are_append_only(small):
    for statement in ("UPDATE tiles SET hashes = hashes", "DELETE FROM tiles",
                      "UPDATE tile_roots SET hash = hash", "DELETE FROM tile_roots"):
        with pytest.raises(sqlite3.IntegrityError, match="the log is append-only"):
            small.execute(statement)


def count_tiles(conn) -> tuple[int, int]:
    return conn.execute("SELECT (SELECT count(*) FROM tiles), (SELECT count(*) FROM tile_roots)").fetchone()


@pytest.mark.parametrize("fail_after_flush", [False, True])
def test_a_rolled_back_transaction_leaves_no_tile_and_the_next_one_continues(tmp_path, fail_after_flush):
    conn = open_store(tmp_path / "store.sqlite")
    collector, frontier = TileCollector(), CompactRange()
    append(conn, frontier, collector, 250, batch=250)
    saved = frontier.copy()
    conn.execute("BEGIN IMMEDIATE")
    for seq in range(250, 600):  # would complete tiles 0 and 1 and their roots
        frontier.append(LEAVES[seq], collector.on_node)
    conn.executemany(ENTRY_SQL, [(seq, seq, b"leaf %d" % seq) for seq in range(250, 600)])
    if fail_after_flush:
        collector.flush(conn)
        assert count_tiles(conn) == (2, 2)
    conn.execute("ROLLBACK")
    collector.reset()
    assert count_tiles(conn) == (0, 0)
    append(conn, saved, collector, 1000, batch=333)
    reader = TreeReader(conn)
    assert count_tiles(conn) == (3, 3)
    assert reader.root(1000) == root_from_leaf_hashes(LEAVES[:1000])
    assert TileCollector.resume(conn, 1000)._partial == collector._partial


OPERATIONS = st.lists(st.tuples(st.sampled_from(["commit", "fail before flush", "fail after flush", "restart"]),
                                st.integers(1, 300)), max_size=12)


@settings(max_examples=20)
@given(OPERATIONS)
def test_any_mix_of_commits_rollbacks_and_restarts_stores_the_same_tiles(operations):
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "store.sqlite"
        conn = open_store(path)
        collector, frontier = TileCollector(), CompactRange()
        for kind, count in operations:
            stop = frontier.size + count
            if kind == "commit":
                append(conn, frontier, collector, stop, batch=count)
            elif kind == "restart":
                conn.close()
                conn = open_store(path)
                collector = TileCollector.resume(conn, frontier.size)
            else:
                conn.execute("BEGIN IMMEDIATE")
                doomed = frontier.copy()  # the writer restores the frontier it had before the group
                for seq in range(frontier.size, stop):
                    doomed.append(LEAVES[seq], collector.on_node)
                conn.executemany(ENTRY_SQL, [(seq, seq, b"leaf %d" % seq) for seq in range(frontier.size, stop)])
                if kind == "fail after flush":
                    collector.flush(conn)
                conn.execute("ROLLBACK")
                collector.reset()
        size = frontier.size
        stored = dict(conn.execute("SELECT id, hashes FROM tiles"))
        full = [t for t in tiles_for_size(size) if t.width == TILE_WIDTH]
        assert sorted(stored) == sorted(tile_key(t.level, t.index) for t in full)
        assert all(stored[tile_key(0, t.index)] == b"".join(LEAVES[t.start : t.end]) for t in full if t.level == 0)
        assert conn.execute("SELECT count(*) FROM tile_roots").fetchone()[0] == len(full)
        reader = TreeReader(conn)
        for tree_size in {0, size, *range(0, size, 97)}:
            assert reader.root(tree_size) == root_from_leaf_hashes(LEAVES[:tree_size])
        assert reader.frontier(size) == frontier
        conn.close()


def test_a_collector_resumed_at_the_wrong_size_refuses_the_next_node(small):
    collector = TileCollector.resume(small, 999)
    with pytest.raises(InvalidInput, match="expected node 999 next"):
        collector.on_node(NodeID(0, 1000), LEAVES[1000])


def test_the_real_sequencer_and_collector_give_its_roots_and_proofs(tmp_path):
    """The writer's path: events sequenced in groups, entries and tiles in one transaction each."""
    path = tmp_path / "store.sqlite"
    conn = open_store(path)
    heads: dict[str, RunHead] = {}
    traces = [f"{i + 1:032x}" for i in range(7)]
    sequencer, collector = Sequencer(heads.get), TileCollector()
    leaves, roots = [], {0: sequencer.root()}
    rng = random.Random(13)
    while sequencer.size < 600:
        if sequencer.size in (255, 256, 513):  # restart: everything restored from the store
            conn.close()
            conn = open_store(path)
            reader = TreeReader(conn)
            sequencer = Sequencer(heads.get, frontier=reader.frontier(sequencer.size), head_hash=sequencer.head_hash)
            collector = TileCollector.resume(conn, sequencer.size)
        events = [Event(traces[rng.randrange(7)], f"step {sequencer.size + i}", "info", "2026-11-28T07:59:59Z", "ci")
                  for i in range(rng.choice([1, 2, 50, 255 - sequencer.size % 256 or 1]))]
        conn.execute("BEGIN IMMEDIATE")
        appended, touched = sequencer.extend(events, "2026-11-28T08:00:00.000000Z", collector.on_node)
        conn.executemany(
            "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(a.entry.seq, a.entry.trace_id, a.entry.run_seq, a.entry.step, a.entry.status, int(a.entry.final),
              a.entry.ts, a.entry.received_at, a.entry.source, a.data, a.entry_hash) for a in appended],
        )
        collector.flush(conn)
        conn.execute("COMMIT")
        heads.update(touched)
        leaves += [a.leaf_hash for a in appended]
        roots[sequencer.size] = sequencer.root()
    reader = TreeReader(conn)
    size = sequencer.size
    for tree_size, root in roots.items():
        assert reader.root(tree_size) == root == root_from_leaf_hashes(leaves[:tree_size])
    for index in range(0, size, 37):
        assert reader.leaf_hash(index) == leaves[index]
        verify_inclusion(index, size, leaves[index], reader.inclusion_proof(index, size), roots[size])
    for old in list(roots)[::5]:
        verify_consistency(old, size, reader.consistency_proof(old, size), roots[old], roots[size])
