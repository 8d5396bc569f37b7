"""Schema 5: `runs` keyed by the run's first seq and `run_entries` (run, run_seq) -> seq instead of
the entries_by_run index. The migration from schema 4 on a store with data: every read path answers
the same before and after, the writer continues old runs, start-up and verify --db check the new
table, and it is append-only."""

import sqlite3
from pathlib import Path

import pytest

from appliance.core.sequencer import Event
from appliance.store import run_lookup, runs
from appliance.store.db import MIGRATIONS, connect, migrate, open_store
from appliance.store.errors import StoreCorrupt
from appliance.store.export import run_last_seq, run_rows
from appliance.store.startup import restore_log
from appliance.store.writer import AppendRequest
from appliance.verify_store import Keys, verify_store
from tests.export_helpers import Store, trace

SCHEMA5 = 1 + [name for name, _ in MIGRATIONS].index("runs and run_entries keyed by the run's first seq")

# Schema 4's runs table and per-run index, exactly as migration 1 created them.
_SCHEMA4 = [
    """CREATE TABLE runs_v4 (
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
        ) WITHOUT ROWID""",
    "INSERT INTO runs_v4 SELECT trace_id, count, head, first_seq, last_seq, started_at, updated_at, first_ts, "
    "last_ts, source, status, closed FROM runs",
    "DROP TABLE runs",
    "DROP TABLE run_entries",
    "ALTER TABLE runs_v4 RENAME TO runs",
    "CREATE INDEX runs_recent ON runs (first_seq DESC)",
    "CREATE INDEX runs_by_status ON runs (status, first_seq DESC)",
    "CREATE INDEX runs_by_source ON runs (source, first_seq DESC)",
    "CREATE UNIQUE INDEX entries_by_run ON entries (trace_id, run_seq)",
    f"PRAGMA user_version={SCHEMA5 - 1}",
]


def as_schema4(path: Path) -> None:
    """Put the store back in schema 4's shape (its runs rows and per-run index as that schema kept them)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    for statement in _SCHEMA4:
        conn.execute(statement)
    conn.execute("COMMIT")
    conn.close()


def event(n: int, step: str, status: str = "info", *, final: bool = False, source: str = "ci") -> Event:
    return Event(trace_id=trace(n), step=step, status=status, ts="2026-11-26T21:00:00Z", source=source,
                 attrs={"step": step}, final=final)


def fill(store: Store) -> None:
    """Runs of every kind, interleaved across groups: closed, failed, open, a long one, two sources."""
    store.run(trace(1), 300, closed=False, batch=70, noise=30)
    w = store.writer
    for round_ in range(6):
        w.append_sync(AppendRequest([event(10 + k, f"r{round_}", final=round_ == 5 and k % 3 == 0,
                                           status=("failed" if (round_, k) == (2, 4) else
                                                   "succeeded" if round_ == 5 and k % 3 == 0 else "info"))
                                     for k in range(12)], "ci"))
        w.append_sync(AppendRequest([event(40 + k, f"o{round_}", source="ops") for k in range(5)], "ops"))
        store.advance(seconds=1)
    store.checkpoint()
    w.append_sync(AppendRequest([event(1, "after the checkpoint"), event(99, "new", "started")], "ci"))
    store.advance(seconds=1)


def answers(conn: sqlite3.Connection, store: Store) -> dict:
    """What every read path over runs says about the store."""
    ids = [row[0] for row in conn.execute("SELECT trace_id FROM runs ORDER BY trace_id")]
    out: dict = {"ids": ids}
    for name, kwargs in [("all", {}), ("failed", {"status": "failed"}), ("running", {"status": "running"}),
                         ("succeeded", {"status": "succeeded"}), ("ops", {"source": "ops"}),
                         ("ci-running", {"source": "ci", "status": "running"}),
                         ("time", {"since": "2026-11-26T22:00:01Z", "until": "2026-11-26T22:00:04Z"})]:
        pages, cursor = [], None
        while True:
            page = runs.list_runs(conn, limit=4, cursor=cursor, **kwargs)
            pages.append(page.runs)
            cursor = page.next_cursor
            if cursor is None:
                break
        out[f"list {name}"] = pages
    for trace_id in ids:
        events, after = [], -1
        while batch := runs.run_events(conn, trace_id, after_run_seq=after, limit=45):
            events.append(batch)
            after = batch[-1].run_seq
        summary = runs.get_run(conn, trace_id)
        out[trace_id] = (summary, events, run_lookup.run_failures(conn, trace_id),
                         run_lookup.run_anchoring(conn, summary.last_seq, ["local"]),
                         run_rows(conn, trace_id), run_rows(conn, trace_id, limit_size=200),
                         run_last_seq(conn, trace_id))
    out["prefix"] = runs.find_runs_by_prefix(conn, "00000000", limit=100)
    out["bundle"] = store.bundle(trace(1))
    return out


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "data")
    fill(s)
    yield s
    s.close()


def test_the_migration_from_schema_4_keeps_every_answer_and_the_writer_continues(store: Store) -> None:
    before = answers(store.conn, store)
    store.close()
    path = store.settings.db_path
    fresh_schema = schema_of(path)
    as_schema4(path)
    assert connect(path, readonly=True).execute("PRAGMA user_version").fetchone()[0] == SCHEMA5 - 1

    conn = open_store(path, synchronous="NORMAL")  # migrates
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert schema_of(path) == fresh_schema  # the same shape as a store created at schema 5
    conn.close()
    reopened = Store(store.settings.data_dir)  # start-up checks the tail since the checkpoint
    try:
        assert answers(reopened.conn, reopened) == before
        # Old runs go on where they were, new ones start.
        reopened.writer.append_sync(AppendRequest([event(1, "after the migration"), event(11, "late"),
                                                   event(100, "newest", "started")], "ci"))
        long_run = runs.run_events(reopened.conn, trace(1), after_run_seq=295, limit=10)
        assert [e.step for e in long_run] == ["step 296", "step 297", "step 298", "step 299",
                                              "after the checkpoint", "after the migration"]
        assert runs.list_runs(reopened.conn, limit=1).runs[0].trace_id == trace(100)
        reopened.checkpoint()
    finally:
        reopened.close()
    report = verify_store(path, Keys(reopened.signers.log.verifier(), reopened.signers.clock.verifier()), workers=1)
    assert report.ok, report


def schema_of(path: Path) -> list[tuple]:
    conn = connect(path, readonly=True)
    try:
        return conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' "
                            "ORDER BY name").fetchall()
    finally:
        conn.close()


def test_verify_db_notes_a_schema_4_store_and_checks_it_as_before(store: Store) -> None:
    store.checkpoint()
    store.close()
    as_schema4(store.settings.db_path)
    report = verify_store(store.settings.db_path, Keys(store.signers.log.verifier(), store.signers.clock.verifier()),
                          workers=1)
    assert report.ok and any("run_entries not compared" in note for note in report.notes), report


def attacker(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER run_entries_no_update")
    conn.execute("DROP TRIGGER run_entries_no_delete")
    return conn


def first_run_entry(conn: sqlite3.Connection, trace_id: str, run_seq: int) -> tuple[int, int]:
    return conn.execute("SELECT re.run, re.seq FROM runs r JOIN run_entries re ON re.run = r.first_seq "
                        "WHERE r.trace_id = ? AND re.run_seq = ?", (trace_id, run_seq)).fetchone()


@pytest.mark.parametrize("tamper, reason", [
    # an entry hidden from its run's pages and exports
    ("DELETE FROM run_entries WHERE run = :run AND run_seq = 7", "missing"),
    # the run's step 7 shown as another entry
    ("UPDATE run_entries SET seq = seq + 1 WHERE run = :run AND run_seq = 7", "missing"),
    # a row for an entry that is not the run's
    ("INSERT INTO run_entries VALUES (:run, 1000, 5)", "inserted"),
])
def test_verify_db_finds_a_tampered_run_entries_table(store: Store, tamper: str, reason: str) -> None:
    store.checkpoint()
    run, _ = first_run_entry(store.conn, trace(1), 7)
    store.close()
    conn = attacker(store.settings.db_path)
    conn.execute(tamper, {"run": run})
    conn.close()
    report = verify_store(store.settings.db_path, Keys(store.signers.log.verifier(), store.signers.clock.verifier()),
                          workers=1)
    assert {(f.check, f.reason) for f in report.failures} == {("runs", reason)}, report


def test_start_up_refuses_a_tail_whose_run_entries_row_was_removed(store: Store) -> None:
    run, seq = first_run_entry(store.conn, trace(1), 300)  # after the last checkpoint
    store.close()
    conn = attacker(store.settings.db_path)
    conn.execute("DELETE FROM run_entries WHERE run = ? AND run_seq = 300", (run,))
    conn.close()
    conn = connect(store.settings.db_path)
    with pytest.raises(StoreCorrupt, match="run_entries does not lead to the entries of run"):
        restore_log(conn)
    conn.close()


@pytest.mark.parametrize("statement", ["UPDATE run_entries SET seq = seq", "DELETE FROM run_entries"])
def test_run_entries_is_append_only(store: Store, statement: str) -> None:
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store.conn.execute(statement)


def test_a_migration_that_fails_leaves_schema_4_as_it_was(store: Store) -> None:
    store.close()
    path = store.settings.db_path
    as_schema4(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE runs_v5 (x)")  # in the migration's way
    conn.close()
    conn = connect(path)
    with pytest.raises(sqlite3.OperationalError, match="runs_v5"):
        migrate(conn)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA5 - 1
    assert conn.execute("SELECT count(*) FROM sqlite_schema WHERE name IN ('entries_by_run', 'runs_recent')"
                        ).fetchone()[0] == 2
    conn.close()


def test_verify_db_fails_a_schema_5_store_whose_run_entries_table_was_dropped(store: Store) -> None:
    store.checkpoint()
    store.close()
    conn = sqlite3.connect(store.settings.db_path, isolation_level=None)
    conn.execute("DROP TABLE run_entries")
    conn.close()
    report = verify_store(store.settings.db_path, Keys(store.signers.log.verifier(), store.signers.clock.verifier()),
                          workers=1)
    assert [(f.check, f.reason) for f in report.failures] == [("runs", "missing")], report
    assert "run_entries table is missing" in report.failures[0].message
