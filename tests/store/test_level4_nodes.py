"""The stored level-4 nodes (one row of 16 hashes per full level-0 tile): written by the collector
in the writer's transaction across restarts and rollbacks, backfilled by the migration for a store
that predates them, append-only, and never trusted blindly: a tampered row makes the export refuse
and `runlog verify --db` fail, naming the tile."""

import sqlite3
from pathlib import Path

import pytest

from appliance.cli import main
from appliance.core.compact import CompactRange
from appliance.core.hashing import leaf_hash
from appliance.core.tiles import mid_nodes
from appliance.store.db import MIGRATIONS, connect, migrate
from appliance.store.errors import StoreCorrupt
from appliance.store.export import export_signed_bundle
from appliance.store.tiles import TileCollector, tile_key
from appliance.store.tree_reader import TreeReader
from appliance.verify_store import Keys, verify_store
from tests.export_helpers import Store, trace

# The schema version just before the level-4 nodes (later migrations leave a store in their shape alone).
BEFORE_LEVEL4 = [name for name, _ in MIGRATIONS].index("level-4 nodes of the full level-0 tiles")
LEAVES = [leaf_hash(b"leaf %d" % i) for i in range(5000)]
ENTRY_SQL = ("INSERT INTO entries (seq, trace_id, run_seq, step, status, final, ts, received_at, source, data, hash)"
             " VALUES (?, 't', ?, 'step', 'info', 0, 'ts', 'at', 'test', ?, x'00')")


def stored_nodes(conn: sqlite3.Connection) -> dict[int, bytes]:
    return {index: bytes(hashes) for index, hashes in conn.execute("SELECT id, hashes FROM level4_nodes")}


def expected_nodes(conn: sqlite3.Connection) -> dict[int, bytes]:
    """Level-4 nodes computed from each stored full level-0 tile."""
    return {index: mid_nodes(bytes(hashes))
            for index, hashes in conn.execute("SELECT id, hashes FROM tiles WHERE id < ?", (tile_key(1, 0),))}


def test_the_collector_writes_them_across_restarts_and_rollbacks(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    conn = connect(path, synchronous="NORMAL")
    migrate(conn)
    frontier, collector, failed = CompactRange(), TileCollector(), False
    for stop, batch in [(1, 1), (17, 5), (255, 7), (256, 1), (700, 300), (1000, 13), (4097, 999), (5000, 64)]:
        while frontier.size < stop:
            seqs = range(frontier.size, min(frontier.size + batch, stop))
            conn.execute("BEGIN IMMEDIATE")
            for seq in seqs:
                frontier.append(LEAVES[seq], collector.on_node)
            conn.executemany(ENTRY_SQL, [(seq, seq, b"leaf %d" % seq) for seq in seqs])
            if not failed and seqs[0] < 3000 <= seqs[-1]:  # a failed commit: roll back, go again
                failed = True
                conn.execute("ROLLBACK")
                collector.reset()
                frontier = TreeReader(conn).frontier(seqs[0])
                continue
            collector.flush(conn)
            conn.execute("COMMIT")
        conn.close()
        conn = connect(path, synchronous="NORMAL")
        frontier, collector = TreeReader(conn).frontier(stop), TileCollector.resume(conn, stop)
    assert len(stored_nodes(conn)) == 5000 // 256
    assert stored_nodes(conn) == expected_nodes(conn)
    conn.close()


def test_the_migration_backfills_a_store_that_predates_them_and_the_table_is_append_only(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.run(trace(1), 1300, closed=True, batch=400)
    s.close()
    conn = connect(s.settings.db_path, synchronous="NORMAL")
    written = stored_nodes(conn)
    assert len(written) == 1300 // 256 and written == expected_nodes(conn)
    # The store as the previous schema left it: no table, one version down.
    conn.execute("DROP TABLE level4_nodes")
    conn.execute(f"PRAGMA user_version={BEFORE_LEVEL4}")
    assert migrate(conn) == len(MIGRATIONS)
    assert stored_nodes(conn) == written
    for statement in ("UPDATE level4_nodes SET hashes = hashes", "DELETE FROM level4_nodes"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(statement)
    conn.close()


@pytest.fixture
def exported(tmp_path: Path):
    """A store whose run of 600 steps spans two full level-0 tiles and a partial one, checkpointed."""
    s = Store(tmp_path)
    s.run(trace(1), 600, closed=True, batch=200)
    s.checkpoint()
    yield s
    s.close()


def export(s: Store) -> bytes:
    return export_signed_bundle(s.conn, trace(1), signer=s.signers.log, clock_key=None,
                                exported_at="2026-11-27T00:00:00Z").data


def tamper(s: Store, index: int, node: int) -> None:
    """Flip one bit of level-4 node `node` of tile `index`, as an attacker with the disk would."""
    conn = sqlite3.connect(s.settings.db_path, isolation_level=None)
    conn.execute("DROP TRIGGER level4_nodes_no_update")
    (hashes,) = conn.execute("SELECT hashes FROM level4_nodes WHERE id = ?", (index,)).fetchone()
    edited = bytearray(hashes)
    edited[node * 32 + 5] ^= 1
    conn.execute("UPDATE level4_nodes SET hashes = ? WHERE id = ?", (bytes(edited), index))
    conn.close()


def verify_db(s: Store, capsys) -> tuple[int, str]:
    code = main(["verify", "--db", str(s.settings.db_path), "--key", s.log_key, "--workers", "1"])
    return code, capsys.readouterr().out


def test_an_edited_level4_node_makes_the_export_refuse_and_verify_db_fail(exported: Store, capsys) -> None:
    assert export(exported) and verify_db(exported, capsys)[0] == 0
    tamper(exported, 1, 3)  # a node the run's proofs use
    with pytest.raises(StoreCorrupt, match="level-4 nodes of tile tile/0/001 do not hash to its root"):
        export(exported)
    code, out = verify_db(exported, capsys)
    assert code != 0 and "level-4 nodes of tile tile/0/1" in out, out


def test_an_edited_tile_under_its_level4_nodes_makes_the_export_refuse(exported: Store) -> None:
    conn = sqlite3.connect(exported.settings.db_path, isolation_level=None)
    conn.execute("DROP TRIGGER tiles_no_update")
    (hashes,) = conn.execute("SELECT hashes FROM tiles WHERE id = 0").fetchone()
    conn.execute("UPDATE tiles SET hashes = ? WHERE id = 0", (hashes[:32 * 40] + bytes(32) + hashes[32 * 41:],))
    conn.close()
    with pytest.raises(StoreCorrupt, match="tile tile/0/000 and its stored level-4 node 2 disagree"):
        export(exported)


@pytest.mark.parametrize("schema", ["older", "current"])
def test_verify_db_notes_a_store_from_before_them_and_fails_one_whose_table_was_dropped(exported: Store,
                                                                                         schema: str) -> None:
    conn = sqlite3.connect(exported.settings.db_path, isolation_level=None)
    conn.execute("DROP TABLE level4_nodes")
    if schema == "older":
        conn.execute(f"PRAGMA user_version={BEFORE_LEVEL4}")
    conn.close()
    report = verify_store(exported.settings.db_path, Keys(exported.signers.log.verifier(),
                                                          exported.signers.clock.verifier()), workers=1)
    if schema == "older":
        assert report.ok and any("predates them" in note for note in report.notes), report
    else:
        assert [(f.check, f.reason) for f in report.failures] == [("tree", "missing")]
        assert "level4_nodes table is missing" in report.failures[0].message
