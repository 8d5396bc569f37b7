"""The single writer against real SQLite files: group commit, all-or-nothing requests,
idempotency, receipts, restart, and refusing to continue a broken log."""

import sqlite3
import threading
from datetime import datetime, timezone

import pytest

from appliance.core.chain import RunChains, verify_global_chain
from appliance.core.errors import EntryError
from appliance.core.hashing import leaf_hash
from appliance.core.keys import generate_signer
from appliance.core.proof_verify import verify_inclusion
from appliance.core.receipt import open_receipt
from appliance.core.sequencer import Event, RunClosedError
from appliance.core.tree import root_from_leaf_hashes
from appliance.store.db import connect
from appliance.store.errors import IdempotencyConflict, StoreCorrupt, StoreUnavailable
from appliance.store.tree_reader import TreeReader
from appliance.store.writer import AppendRequest, Writer

ORIGIN = "runlog.test/log"
SIGNER = generate_signer(ORIGIN, seed=b"\x07" * 32)


def trace(n: int) -> str:
    return f"{n + 1:032x}"


def event(n: int, step: str = "step", status: str = "info", **extra) -> Event:
    return Event(trace_id=trace(n), step=step, status=status, ts="2026-11-28T10:00:00Z", source="ci", **extra)


def request(*events: Event, key: str | None = None, digest: bytes = b"") -> AppendRequest:
    return AppendRequest(list(events), "ci", key, digest)


def open_writer(path, **kwargs) -> Writer:
    writer = Writer(path, origin=ORIGIN, signer=SIGNER, **kwargs)
    writer.start()
    return writer


@pytest.fixture
def db(tmp_path):
    return tmp_path / "runlog.sqlite"


def stored(db) -> list[tuple[bytes, bytes]]:
    conn = connect(db, readonly=True)
    return conn.execute("SELECT data, hash FROM entries ORDER BY seq").fetchall()


def test_concurrent_appends_share_commits_and_form_one_chain(db):
    writer = open_writer(db)
    results, errors = [], []

    def client(n: int) -> None:
        for i in range(40):
            try:
                results.append(writer.append_sync(request(event(n, f"s{i}"))))
            except Exception as error:  # pragma: no cover - reported below
                errors.append(error)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.stop()
    assert not errors
    assert sorted(r.first_seq for r in results) == list(range(320))
    assert writer.commits < 320, "concurrent requests should share commits"
    rows = stored(db)
    runs = RunChains()
    assert verify_global_chain(rows, runs=runs).size == 320
    assert {state.count for state in runs.states()} == {40}
    reader = TreeReader(connect(db, readonly=True))
    leaves = [leaf_hash(data) for data, _ in rows]
    assert reader.root(320) == root_from_leaf_hashes(leaves)
    verify_inclusion(123, 320, leaves[123], reader.inclusion_proof(123, 320), reader.root(320))


def test_receipts_are_signed_and_cover_exactly_the_request(db):
    writer = open_writer(db)
    writer.append_sync(request(event(0)))
    result = writer.append_sync(request(event(1, "a"), event(1, "b"), event(2, "c")))
    writer.stop()
    receipt = open_receipt(result.receipt, SIGNER.verifier(), origin=ORIGIN)
    receipt.check_covers(1, list(result.entry_hashes))
    assert [h for _, h in stored(db)[1:]] == list(result.entry_hashes)


def test_a_group_commit_signs_its_receipts_once(db):
    """Requests that share a group commit share one signed batch note (docs/FORMAT.md, Receipts):
    each receipt opens alone; a retry in the same group replays its original's; a refused request
    is not in the batch."""
    writer = open_writer(db)
    holding, gate = threading.Event(), threading.Event()
    writer.on_commit = lambda _count: holding.set() or gate.wait(10)  # holds the writer after a commit
    first = writer.submit(request(event(0)))
    assert holding.wait(10)
    group = [writer.submit(request(event(1, "a"), event(2, "b"))),
             writer.submit(request(event(3), key="k", digest=b"K")),
             writer.submit(request(event(4, "x", status="exploded"))),
             writer.submit(request(event(3), key="k", digest=b"K")),
             writer.submit(request(event(5)))]
    gate.set()
    first.result(10)
    results = [future.exception(10) or future.result() for future in group]
    writer.stop()
    assert isinstance(results[2], EntryError)
    accepted = [results[0], results[1], results[4]]
    notes = {result.receipt.split("\n\n", 1)[1] for result in accepted}
    assert len(notes) == 1 and notes.pop().startswith(f"runlog-receipt-batch/v2\n{ORIGIN}\n3\n")
    for result in accepted:
        open_receipt(result.receipt, SIGNER.verifier(), origin=ORIGIN).check_covers(result.first_seq,
                                                                                  list(result.entry_hashes))
    assert results[3].replayed and results[3].receipt == results[1].receipt and not results[1].replayed
    assert sorted(int(r.receipt.split("index ")[1].split("\n")[0]) for r in accepted) == [0, 1, 2]


def test_a_bad_request_fails_alone_and_writes_nothing(db):
    writer = open_writer(db)
    good = writer.submit(request(event(0, "ok")))
    bad = writer.submit(request(event(1, "fine"), event(1, "broken", status="exploded")))
    after = writer.submit(request(event(2, "ok too")))
    assert good.result().first_seq == 0
    with pytest.raises(EntryError) as caught:
        bad.result()
    assert caught.value.field == "status"
    assert after.result().first_seq == 1
    writer.stop()
    assert len(stored(db)) == 2


def test_a_closed_run_takes_no_more_events(db):
    writer = open_writer(db)
    writer.append_sync(request(event(0, "start", "started")))
    writer.append_sync(request(event(0, "done", "succeeded", final=True)))
    with pytest.raises(RunClosedError):
        writer.append_sync(request(event(0, "late")))
    writer.stop()
    conn = connect(db, readonly=True)
    assert conn.execute("SELECT count, status, closed FROM runs").fetchone() == (2, "succeeded", 1)


def test_a_failed_step_marks_the_run_failed_even_if_it_ends_well(db):
    writer = open_writer(db)
    writer.append_sync(request(event(0, "a", "failed"), event(0, "b", "succeeded", final=True)))
    writer.stop()
    assert connect(db, readonly=True).execute("SELECT status, closed FROM runs").fetchone() == ("failed", 1)


def test_idempotent_retries_return_the_original_and_conflicts_are_refused(db):
    writer = open_writer(db)
    first = writer.append_sync(request(event(0), key="k1", digest=b"A"))
    again = writer.append_sync(request(event(0), key="k1", digest=b"A"))
    assert again.replayed and (again.first_seq, again.receipt) == (first.first_seq, first.receipt)
    with pytest.raises(IdempotencyConflict):
        writer.append_sync(request(event(0, "other"), key="k1", digest=b"B"))
    same_group = [writer.submit(request(event(3), key="k2", digest=b"C")) for _ in range(5)]
    assert len({f.result().first_seq for f in same_group}) == 1
    writer.stop()
    writer = open_writer(db)
    assert writer.append_sync(request(event(0), key="k1", digest=b"A")).first_seq == first.first_seq
    writer.stop()
    assert len(stored(db)) == 2


def test_a_failed_commit_fails_its_group_and_the_chain_continues(db):
    writer = open_writer(db)
    writer.append_sync(request(event(0, "before")))
    saboteur = sqlite3.connect(db)
    saboteur.execute("CREATE TRIGGER fail_boom BEFORE INSERT ON entries WHEN NEW.step = 'boom' "
                     "BEGIN SELECT RAISE(ABORT, 'simulated disk failure'); END")
    saboteur.commit()
    with pytest.raises(StoreUnavailable, match="simulated disk failure"):
        writer.append_sync(request(event(1, "boom")))
    assert writer.append_sync(request(event(1, "after"))).first_seq == 1
    writer.stop()
    assert verify_global_chain(stored(db)).size == 2


def test_restart_continues_the_same_log(db):
    writer = open_writer(db)
    for i in range(300):
        writer.append_sync(request(event(i % 5, f"s{i}")))
    root = writer.root()
    writer.stop()
    writer = open_writer(db)
    assert writer.size == 300 and writer.root() == root
    assert writer.append_sync(request(event(1, "next"))).first_seq == 300
    writer.stop()
    assert verify_global_chain(stored(db)).size == 301


def test_received_at_never_goes_backwards(db):
    moments = iter([datetime(2026, 11, 28, 12, tzinfo=timezone.utc), datetime(2026, 11, 28, 11, tzinfo=timezone.utc)])
    writer = open_writer(db, clock=lambda: next(moments))
    a = writer.append_sync(request(event(0)))
    b = writer.append_sync(request(event(0)))
    writer.stop()
    assert a.received_at == b.received_at == "2026-11-28T12:00:00.000000Z"


def edit(db, statement: str, *args) -> None:
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER entries_no_update")
    conn.execute("DROP TRIGGER entries_no_delete")
    conn.execute(statement, args)
    conn.commit()


@pytest.mark.parametrize("tamper, seq", [
    ("""UPDATE entries SET data = CAST(replace(CAST(data AS TEXT), '"s3"', '"s4"') AS BLOB) WHERE seq = 3""", 3),
    ("DELETE FROM entries WHERE seq = 5", 5),
    ("UPDATE entries SET hash = zeroblob(32) WHERE seq = 7", 7),
])
def test_a_store_whose_chain_was_edited_refuses_to_start(db, tamper, seq):
    writer = open_writer(db)
    for i in range(10):
        writer.append_sync(request(event(i % 2, f"s{i}")))
    writer.stop()
    edit(db, tamper)
    with pytest.raises(StoreCorrupt) as caught:
        open_writer(db)
    assert caught.value.seq == seq


def test_an_edit_under_a_checkpoint_is_named_by_seq(db):
    writer = open_writer(db)
    for i in range(10):
        writer.append_sync(request(event(i % 2, f"s{i}")))
    writer.stop()
    conn = sqlite3.connect(db)
    root = TreeReader(conn).root(10)
    conn.execute("INSERT INTO checkpoints VALUES (10, ?, 'note', '2026-11-28T00:00:00Z')", (root,))
    conn.commit()
    edit(db, """UPDATE entries SET data = CAST(replace(CAST(data AS TEXT), '"s2"', '"s9"') AS BLOB) WHERE seq = 2""")
    with pytest.raises(StoreCorrupt, match="under a signed checkpoint") as caught:
        open_writer(db)
    assert caught.value.seq == 2


def test_one_batch_over_several_runs_summarises_each_run(db):
    writer = open_writer(db)
    writer.append_sync(request(event(0, "earlier")))
    writer.append_sync(request(event(0, "a"), event(1, "x", "started"), event(0, "b", "failed"), event(1, "y"),
                               event(0, "c", "succeeded", final=True)))
    writer.stop()
    rows = connect(db, readonly=True).execute(
        "SELECT trace_id, count, first_seq, last_seq, status, closed FROM runs ORDER BY trace_id").fetchall()
    assert rows == [(trace(0), 4, 0, 5, "failed", 1), (trace(1), 2, 2, 4, "running", 0)]
    heads = dict(connect(db, readonly=True).execute("SELECT trace_id, head FROM runs").fetchall())
    assert heads[trace(0)] == stored(db)[5][1] and heads[trace(1)] == stored(db)[4][1]


def runs_rebuilt_from_entries(conn) -> list[tuple]:
    """The `runs` rows as the entries say they should be (the table is derived from them)."""
    return conn.execute("""
        WITH r AS (SELECT trace_id, count(*) AS n, min(seq) AS first, max(seq) AS last,
                          max(status = 'failed') AS failed, max(final) AS closed FROM entries GROUP BY trace_id)
        SELECT r.trace_id, n, l.hash, first, last, f.received_at, l.received_at, f.ts, l.ts, f.source,
               CASE WHEN failed THEN 'failed' WHEN closed THEN 'succeeded' ELSE 'running' END, closed
        FROM r JOIN entries f ON f.seq = first JOIN entries l ON l.seq = last ORDER BY r.trace_id""").fetchall()


def run_entries(conn) -> list[tuple]:
    return conn.execute("SELECT run, run_seq, seq FROM run_entries ORDER BY run, run_seq").fetchall()


def run_entries_rebuilt_from_entries(conn) -> list[tuple]:
    """`run_entries` as the entries say it should be: (the run's first seq, run_seq) -> seq."""
    return conn.execute("""
        WITH r AS (SELECT trace_id, min(seq) AS first FROM entries GROUP BY trace_id)
        SELECT r.first, e.run_seq, e.seq FROM entries e JOIN r ON r.trace_id = e.trace_id
        ORDER BY r.first, e.run_seq""").fetchall()


def test_runs_rows_follow_new_extended_failed_and_closed_runs_across_groups_and_restarts(db):
    writer = open_writer(db)
    many = 1_200  # more runs in one group than one head query reads
    writer.append_sync(request(*(event(n, "start", "started") for n in range(many))))
    writer.append_sync(request(event(0, "a", "failed"), event(1, "b"), event(2, "c", "succeeded", final=True)))
    writer.append_sync(request(event(0, "after the failure"), event(1, "b2")))
    writer.stop()
    writer = open_writer(db)  # nothing cached: the group reads every run's head from the store
    writer.append_sync(request(*(event(n, "next") for n in range(3, many)), event(0, "end", "succeeded", final=True),
                               event(1, "end", "failed", final=True), event(many, "new after restart")))
    with pytest.raises(RunClosedError):
        writer.append_sync(request(event(2, "late")))
    writer.stop()
    conn = connect(db, readonly=True)
    rows = conn.execute("SELECT trace_id, count, head, first_seq, last_seq, started_at, updated_at, first_ts, "
                        "last_ts, source, status, closed FROM runs ORDER BY trace_id").fetchall()
    assert rows == runs_rebuilt_from_entries(conn) and len(rows) == many + 1
    assert run_entries(conn) == run_entries_rebuilt_from_entries(conn)
    status = dict(conn.execute("SELECT trace_id, status || '/' || closed FROM runs").fetchall())
    assert [status[trace(n)] for n in (0, 1, 2, 3, many)] == [
        "failed/1", "failed/1", "succeeded/1", "running/0", "running/0"]


def test_a_failed_commit_on_a_full_disk_says_the_disk_is_full(db, monkeypatch):
    # With the WAL's room reserved, a full disk usually fails a commit as "disk I/O error" (the
    # -shm file cannot grow): the message says how much room is left so /healthz reads as full.
    writer = open_writer(db)
    saboteur = sqlite3.connect(db)
    saboteur.execute("CREATE TRIGGER fail_boom BEFORE INSERT ON entries WHEN NEW.step = 'boom' "
                     "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END")
    saboteur.commit()
    full = type("Usage", (), {"total": 10**9, "used": 10**9 - 4096, "free": 4096})()
    monkeypatch.setattr("appliance.store.writer.shutil.disk_usage", lambda path: full)
    with pytest.raises(StoreUnavailable, match=r"disk I/O error \(the disk holding the store has 4,096 bytes free\)"):
        writer.append_sync(request(event(1, "boom")))
    assert writer.last_failure[1] == "disk I/O error (the disk holding the store has 4,096 bytes free)"  # /healthz
    monkeypatch.undo()
    with pytest.raises(StoreUnavailable) as roomy:
        writer.append_sync(request(event(1, "boom")))
    assert "bytes free" not in str(roomy.value)
    writer.stop()
