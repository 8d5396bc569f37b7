"""Connections and schema migrations for the SQLite store.

One file; WAL so readers never block the writer; `synchronous=FULL` by default so an
acknowledged append survives power loss. Migrations are a list of named functions applied in
order and recorded in `PRAGMA user_version`. The evidence tables (entries, tiles, checkpoints)
refuse UPDATE and DELETE in the database itself.
"""

import sqlite3
from collections.abc import Callable
from pathlib import Path

from appliance.store.errors import StoreError

BUSY_TIMEOUT_MS = 10_000
APPEND_ONLY_TABLES = ("entries", "tiles", "checkpoints", "daily_roots", "run_entries")


def connect(path: str | Path, *, synchronous: str = "FULL", readonly: bool = False) -> sqlite3.Connection:
    """Open the store in WAL mode. Writers get `isolation_level=None` and manage transactions
    themselves (`BEGIN IMMEDIATE`); readers open read-only."""
    if synchronous not in ("FULL", "NORMAL", "EXTRA"):
        raise StoreError(f"synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")
    if readonly:
        conn = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
    else:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _append_only_triggers(conn: sqlite3.Connection, table: str) -> None:
    for action in ("UPDATE", "DELETE"):
        conn.execute(
            f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, 'runlog: the log is append-only: {action} on {table} is refused'); END"
        )


def _initial_schema(conn: sqlite3.Connection) -> None:
    from appliance.store.tiles import TILE_SCHEMA

    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID")
    conn.execute(
        """CREATE TABLE entries (
            seq INTEGER PRIMARY KEY,
            trace_id TEXT NOT NULL,
            run_seq INTEGER NOT NULL,
            step TEXT NOT NULL,
            status TEXT NOT NULL,
            final INTEGER NOT NULL,
            ts TEXT NOT NULL,
            received_at TEXT NOT NULL,
            source TEXT NOT NULL,
            data BLOB NOT NULL,
            hash BLOB NOT NULL
        )"""
    )
    conn.execute("CREATE UNIQUE INDEX entries_by_run ON entries (trace_id, run_seq)")
    # Derived from entries (rebuildable); kept so run queries and run heads need one lookup.
    conn.execute(
        """CREATE TABLE runs (
            trace_id TEXT PRIMARY KEY,
            count INTEGER NOT NULL,
            head BLOB NOT NULL,
            first_seq INTEGER NOT NULL,
            last_seq INTEGER NOT NULL,
            started_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            first_ts TEXT NOT NULL,
            last_ts TEXT NOT NULL,
            source TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
            closed INTEGER NOT NULL
        ) WITHOUT ROWID"""
    )
    conn.execute("CREATE INDEX runs_recent ON runs (first_seq DESC)")
    conn.execute("CREATE INDEX runs_by_status ON runs (status, first_seq DESC)")
    conn.execute("CREATE INDEX runs_by_source ON runs (source, first_seq DESC)")
    conn.execute(
        """CREATE TABLE checkpoints (
            size INTEGER PRIMARY KEY,
            root BLOB NOT NULL,
            note TEXT NOT NULL,
            cut_at TEXT NOT NULL
        )"""
    )
    conn.execute(
        """CREATE TABLE idempotency (
            source TEXT NOT NULL,
            key TEXT NOT NULL,
            request_hash BLOB NOT NULL,
            response TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (source, key)
        ) WITHOUT ROWID"""
    )
    conn.execute(
        """CREATE TABLE tokens (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            token_hash BLOB NOT NULL UNIQUE,
            scopes TEXT NOT NULL,
            created_at TEXT NOT NULL,
            revoked_at TEXT
        )"""
    )
    conn.execute("CREATE UNIQUE INDEX tokens_active_name ON tokens (name) WHERE revoked_at IS NULL")
    for statement in TILE_SCHEMA:
        conn.execute(statement)
    for table in ("entries", "tiles", "checkpoints"):
        _append_only_triggers(conn, table)


def _checkpoints_and_anchors(conn: sqlite3.Connection) -> None:
    # The daily root of a UTC day is the checkpoint whose tree covers exactly the entries received
    # before the next day's 00:00 UTC; several days can share one checkpoint (no entries between).
    conn.execute(
        """CREATE TABLE daily_roots (
            day TEXT PRIMARY KEY,
            size INTEGER NOT NULL REFERENCES checkpoints (size)
        ) WITHOUT ROWID"""
    )
    _append_only_triggers(conn, "daily_roots")
    # The durable outbox: one row per (anchor, checkpoint) until the anchor holds it.
    conn.execute(
        """CREATE TABLE anchor_outbox (
            anchor TEXT NOT NULL,
            size INTEGER NOT NULL REFERENCES checkpoints (size),
            queued_at TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            last_error TEXT,
            published_at TEXT,
            location TEXT,
            PRIMARY KEY (anchor, size)
        ) WITHOUT ROWID"""
    )
    conn.execute("CREATE INDEX anchor_outbox_pending ON anchor_outbox (published_at, next_attempt_at)")


def _key_history(conn: sqlite3.Connection) -> None:
    from appliance.store.keyring import create_key_history

    create_key_history(conn)


def _level4_nodes(conn: sqlite3.Connection) -> None:
    from appliance.store.tiles import create_level4_nodes

    create_level4_nodes(conn)


# Schema 5: per-run data keyed by the run's first seq, a number that grows with time, instead of
# its random trace ID. A group commit whose events belong to 1,000 runs then writes the `runs` rows
# and per-run index rows of runs that are active together on neighbouring pages, not ~one random
# page per event in each (bench/RESULTS.md, Ingest, session 4).
_RUNS_V5 = """CREATE TABLE runs (
    first_seq INTEGER PRIMARY KEY,
    trace_id TEXT NOT NULL,
    count INTEGER NOT NULL,
    head BLOB NOT NULL,
    last_seq INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    first_ts TEXT NOT NULL,
    last_ts TEXT NOT NULL,
    source TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    closed INTEGER NOT NULL
)"""
_RUN_COLUMNS_V5 = ("first_seq, trace_id, count, head, last_seq, started_at, updated_at, first_ts, last_ts, source, "
                   "status, closed")


def _runs_by_first_seq(conn: sqlite3.Connection) -> None:
    """`runs` keyed by first_seq (its rowid: `ORDER BY first_seq DESC` walks the table backwards,
    so the old runs_recent index is gone; the status and source indexes hold first_seq as their
    rowid, ascending, so new runs append at their right edge), the trace ID a unique index that
    only new runs write; `run_entries` (run = the run's first_seq, run_seq) -> seq replaces the
    entries_by_run index on (trace_id, run_seq). The backfill reads that index (covering: no
    entry row is read) joined with the old `runs`, sorts by the new key, then drops the index."""
    if conn.execute("SELECT 1 FROM sqlite_schema WHERE name = 'run_entries'").fetchone():
        return  # already in this shape (a store whose user_version was set back by hand, as benches do)
    cache = conn.execute("PRAGMA cache_size").fetchone()[0]
    conn.execute("PRAGMA cache_size = -65536")
    try:
        conn.execute(_RUNS_V5.replace("CREATE TABLE runs", "CREATE TABLE runs_v5"))
        conn.execute(f"INSERT INTO runs_v5 ({_RUN_COLUMNS_V5}) SELECT {_RUN_COLUMNS_V5} FROM runs ORDER BY first_seq")
        conn.execute(
            """CREATE TABLE run_entries (
                run INTEGER NOT NULL,
                run_seq INTEGER NOT NULL,
                seq INTEGER NOT NULL,
                PRIMARY KEY (run, run_seq)
            ) WITHOUT ROWID"""
        )
        # Both old B-trees read in trace ID order (sequential), then sorted into the new key's order
        # (SQLite's external sort) and appended: no random seeks, however large the store.
        conn.execute("INSERT INTO run_entries (run, run_seq, seq) SELECT r.first_seq, e.run_seq, e.seq "
                     "FROM entries AS e INDEXED BY entries_by_run CROSS JOIN runs AS r "
                     "WHERE r.trace_id = e.trace_id ORDER BY r.first_seq, e.run_seq")
        conn.execute("DROP TABLE runs")
        conn.execute("ALTER TABLE runs_v5 RENAME TO runs")
        conn.execute("DROP INDEX entries_by_run")
        _runs_v5_indexes(conn)
        _append_only_triggers(conn, "run_entries")
    finally:
        conn.execute(f"PRAGMA cache_size = {cache}")


def _runs_v5_indexes(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE UNIQUE INDEX runs_by_trace ON runs (trace_id)")
    conn.execute("CREATE INDEX runs_by_status ON runs (status)")  # (status, first_seq): first_seq is the rowid
    conn.execute("CREATE INDEX runs_by_source ON runs (source)")


MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("initial schema", _initial_schema),
    ("daily roots and the anchor outbox", _checkpoints_and_anchors),
    ("key history", _key_history),
    ("level-4 nodes of the full level-0 tiles", _level4_nodes),
    ("runs and run_entries keyed by the run's first seq", _runs_by_first_seq),
]


def open_store(path: str | Path, *, synchronous: str = "FULL", readonly: bool = False) -> sqlite3.Connection:
    """The existing store at `path` (commands never create one; `runlog init` and `serve` do); a
    writable connection is first migrated to this runlog's schema. Raises `StoreError` if missing."""
    if not Path(path).exists():
        raise StoreError(f"no store at {path}; run `runlog init` first")
    conn = connect(path, synchronous=synchronous, readonly=readonly)
    if not readonly:
        try:
            migrate(conn)
        except BaseException:
            conn.close()
            raise
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Apply pending migrations, each in its own transaction; return the schema version."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise StoreError(f"the store has schema version {version}, newer than this runlog knows "
                         f"({len(MIGRATIONS)}); upgrade runlog")
    for number, (_name, apply) in enumerate(MIGRATIONS[version:], start=version + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            apply(conn)
            conn.execute(f"PRAGMA user_version={number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return len(MIGRATIONS)


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else row[0]


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                 (key, value))
