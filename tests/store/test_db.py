"""Schema, migrations and the append-only rule enforced by SQLite itself."""

import sqlite3

import pytest

from appliance.store.db import APPEND_ONLY_TABLES, StoreError, connect, migrate

ROWS = {
    "entries": "INSERT INTO entries VALUES (0, 't', 0, 's', 'info', 0, 'ts', 'r', 'src', x'00', x'00')",
    "checkpoints": "INSERT INTO checkpoints VALUES (1, x'00', 'note', 'at')",
    "daily_roots": "INSERT INTO daily_roots VALUES ('2026-11-27', 1)",
}


@pytest.fixture
def conn(tmp_path):
    conn = connect(tmp_path / "store.sqlite")
    migrate(conn)
    return conn


def test_migrations_are_recorded_and_idempotent(conn):
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    assert version >= 1 and migrate(conn) == version
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
def test_evidence_tables_refuse_update_and_delete(conn, table):
    columns = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
    if table == "daily_roots":
        conn.execute(ROWS["checkpoints"])
    if table in ROWS:
        conn.execute(ROWS[table])
    else:
        conn.execute(f"INSERT INTO {table} VALUES ({', '.join('1' for _ in columns)})")
    for statement in (f"UPDATE {table} SET {columns[-1]} = {columns[-1]}", f"DELETE FROM {table}"):
        with pytest.raises(sqlite3.IntegrityError, match="the log is append-only"):
            conn.execute(statement)
    assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 1


def test_a_newer_store_is_refused(conn):
    conn.execute("PRAGMA user_version=999")
    with pytest.raises(StoreError, match="newer than this runlog knows"):
        migrate(conn)
