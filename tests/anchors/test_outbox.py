"""The durable outbox with real anchors (local directories, a dead Postgres port) on a real SQLite
store: queueing, publishing, backoff with jitter, forks, invalid notes, restarts, status, push."""

import logging
import time
from datetime import timedelta

import pytest

from appliance.anchors.localdir import LocalDirAnchor
from appliance.anchors.outbox import Backoff, Outbox, _WorkerState, anchor_status, queue_missing
from appliance.anchors.postgres import PostgresAnchor
from appliance.store.db import connect, migrate
from tests.anchors.conftest import ORIGIN, add_checkpoint, note_for, outbox_rows

DEAD = "postgresql://postgres@127.0.0.1:1/test"


def dead_anchor() -> PostgresAnchor:
    return PostgresAnchor(DEAD, origin=ORIGIN, connect_timeout=1)


def test_backoff_is_full_jitter_capped_exponential():
    backoff = Backoff(base=2.0, cap=60.0)
    assert [backoff.delay(n, lambda: 1.0) for n in range(7)] == [2, 4, 8, 16, 32, 60, 60]
    assert backoff.delay(3, lambda: 0.25) == 4.0
    assert backoff.delay(10_000, lambda: 0.5) == 30.0


def test_every_checkpoint_is_queued_for_every_anchor_once(store, clock):
    for size in (1, 5, 9):
        add_checkpoint(store, size)
    conn = connect(store)
    assert queue_missing(conn, ["a", "b"], clock()) == 6
    assert queue_missing(conn, ["a", "b"], clock()) == 0
    add_checkpoint(store, 3)  # a daily root cut late, below the newest size, is still queued
    assert queue_missing(conn, ["a", "b"], clock()) == 2
    assert [(r[0], r[1]) for r in outbox_rows(store)] == [(n, s) for n in "ab" for s in (1, 3, 5, 9)]


def test_push_publishes_everything_and_is_exactly_once(store, clock, tmp_path, monkeypatch):
    monkeypatch.setattr("appliance.anchors.outbox._PAGE", 2)  # three checkpoints span two pages
    anchors = [LocalDirAnchor(tmp_path / "one", origin=ORIGIN), LocalDirAnchor(tmp_path / "two", origin=ORIGIN)]
    for size in (1, 2, 3):
        add_checkpoint(store, size)
    results = Outbox(store, anchors, origin=ORIGIN, clock=clock).push()
    assert [(r.published, r.failed, r.error, r.pending) for r in results] == [(3, 0, None, 0)] * 2
    assert Outbox(store, anchors, origin=ORIGIN, clock=clock).push()[0].published == 0
    rows = outbox_rows(store)
    assert all(published and location.endswith(f"{size:020d}") for _, size, _, _, published, location in rows)
    assert [c.size for c in anchors[1].checkpoints()] == [1, 2, 3]


def test_a_down_anchor_backs_off_with_jitter_and_never_blocks_the_others(store, clock, tmp_path):
    good = LocalDirAnchor(tmp_path / "good", origin=ORIGIN)
    for size in (1, 2):
        add_checkpoint(store, size)
    outbox = Outbox(store, [dead_anchor(), good], origin=ORIGIN, clock=clock, backoff=Backoff(1.0, 8.0),
                    rng=lambda: 0.5)
    dead, fine = outbox.push()
    assert (dead.published, dead.pending, fine.published, fine.pending) == (0, 2, 2, 0)
    assert "cannot connect" in dead.error
    conn = connect(store)
    # The dead anchor stopped at its first row: one attempt, not one per row.
    assert conn.execute("SELECT size, attempts, next_attempt_at FROM anchor_outbox WHERE anchor = ? ORDER BY size",
                        (dead.anchor,)).fetchall() == [(1, 1, "2026-11-28T12:00:00.500000Z"),
                                                       (2, 0, "2026-11-28T12:00:00.000000Z")]
    for attempts, expected in ((2, "12:00:01.000000"), (3, "12:00:02.000000"), (4, "12:00:04.000000"),
                               (5, "12:00:04.000000")):
        outbox.push()
        row = conn.execute("SELECT attempts, next_attempt_at, last_error FROM anchor_outbox WHERE anchor = ? AND "
                           "size = 1", (dead.anchor,)).fetchone()
        assert row[:2] == (attempts, f"2026-11-28T{expected}Z") and row[2].startswith("AnchorError: ")
    status = anchor_status(conn, [dead.anchor, good.name], clock() + timedelta(seconds=90))
    assert (status[0].pending, status[0].lag_seconds, status[0].last_published_size) == (2, 90.0, None)
    assert status[0].health(60.0)[0] == "degraded" and status[0].health(120.0)[0] == "ok"
    assert (status[1].pending, status[1].last_published_size, status[1].health(60.0)) == (0, 2, ("ok", "ok"))


def test_a_fork_is_loud_recorded_never_retried_and_fails_health(store, clock, tmp_path, caplog):
    anchor = LocalDirAnchor(tmp_path, origin=ORIGIN)
    from appliance.anchors.base import AnchoredCheckpoint

    anchor.publish(AnchoredCheckpoint(ORIGIN, 4, note_for(4, b"\x66" * 32)))  # someone else's history
    add_checkpoint(store, 4)
    add_checkpoint(store, 5)
    outbox = Outbox(store, [anchor], origin=ORIGIN, clock=clock)
    with caplog.at_level(logging.ERROR, logger="runlog.anchors"):
        result = outbox.push()[0]
    assert (result.published, result.failed, result.pending) == (1, 1, 1)
    assert any(r.levelno == logging.ERROR and "FORK" in r.getMessage() for r in caplog.records)
    rows = outbox_rows(store)
    assert rows[0][3].startswith("FORK: ") and "different root" in rows[0][3] and not rows[0][4]
    assert outbox.push()[0].failed == 0, "a fork is never retried automatically"
    state, line = outbox.status()[0].health(3600)
    assert state == "fork" and line.startswith("fork: dir:") and "FORK" not in line


def test_a_note_that_is_not_its_checkpoint_is_refused_not_anchored(store, clock, tmp_path):
    add_checkpoint(store, 8, note_for(9))
    anchor = LocalDirAnchor(tmp_path, origin=ORIGIN)
    result = Outbox(store, [anchor], origin=ORIGIN, clock=clock).push()[0]
    assert (result.published, result.failed) == (0, 1)
    assert outbox_rows(store)[0][3].startswith("INVALID: ") and anchor.latest() is None
    assert anchor_status(connect(store), [anchor.name], clock())[0].health(60)[0] == "failing"


def test_the_worker_publishes_in_the_background_and_survives_a_restart(store, tmp_path):
    anchor = LocalDirAnchor(tmp_path / "anchor", origin=ORIGIN)
    add_checkpoint(store, 1)
    outbox = Outbox(store, [anchor], origin=ORIGIN, poll_seconds=0.05)
    outbox.start()
    try:
        assert outbox.running
        wait_for(lambda: anchor.latest() is not None)
        add_checkpoint(store, 2)
        outbox.wake()
        wait_for(lambda: outbox.status()[0].last_published_size == 2)
    finally:
        outbox.stop()
    assert not outbox.running
    add_checkpoint(store, 3)  # cut while no worker ran: the next one picks it up from the store
    restarted = Outbox(store, [anchor], origin=ORIGIN, poll_seconds=0.05)
    restarted.start()
    try:
        wait_for(lambda: restarted.status()[0].last_published_size == 3)
    finally:
        restarted.stop()
    assert [r[2] for r in outbox_rows(store)] == [0, 0, 0] and [c.size for c in anchor.checkpoints()] == [1, 2, 3]


def test_the_worker_respects_backoff_across_rows(store):
    for size in range(1, 6):
        add_checkpoint(store, size)
    outbox = Outbox(store, [dead_anchor()], origin=ORIGIN, poll_seconds=0.05, backoff=Backoff(0.2, 0.2),
                    rng=lambda: 1.0)
    outbox.start()
    time.sleep(1.0)
    outbox.stop()
    attempts = [r[2] for r in outbox_rows(store)]
    # ~1 s at one attempt per 0.2 s backoff: a handful in total, all on the first row.
    assert 2 <= attempts[0] <= 7 and attempts[1:] == [0, 0, 0, 0]


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not met in time")
        time.sleep(0.02)


def _store_with_history(db, published: int, pending: int, anchor: str) -> None:
    """`published` checkpoints already anchored (their notes are never read again) and `pending`
    ones after them, queued and due, as a store looks after a long life and a short outage."""
    stamp, sizes = "2026-11-28T12:00:00.000000Z", range(1, published + pending + 1)
    conn = connect(db)
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO checkpoints (size, root, note, cut_at) VALUES (?, ?, ?, ?)",
                     [(s, s.to_bytes(32, "big"), "anchored long ago" if s <= published else note_for(s), stamp)
                      for s in sizes])
    conn.executemany("INSERT INTO anchor_outbox (anchor, size, queued_at, next_attempt_at, published_at, location) "
                     "VALUES (?, ?, ?, ?, ?, ?)", [(anchor, s, stamp, stamp, stamp if s <= published else None,
                                                    "somewhere" if s <= published else None) for s in sizes])
    conn.execute("COMMIT")
    conn.close()


def test_work_per_poll_and_per_health_check_does_not_grow_with_the_published_history(tmp_path, clock):
    """What the worker does at each poll while its anchor is down (look for a newer checkpoint, one
    attempt that stops at the first due row, the time to the next poll) and what /healthz reads
    (`anchor_status`) must cost the same after 10,000 published checkpoints as after 100: counted
    in SQLite VM instructions, not time. Walking the primary key (and counting the checkpoints)
    read every published row: 100x more work here."""
    anchor = dead_anchor()
    work = {}
    for published in (100, 10_000):
        db = tmp_path / f"{published}.sqlite"
        conn = connect(db)
        migrate(conn)
        _store_with_history(db, published, 3, anchor.name)
        outbox = Outbox(db, [anchor], origin=ORIGIN, clock=clock, backoff=Backoff(0.0, 0.0))  # retry at once
        state = _WorkerState()
        outbox._poll_once(conn, anchor, state)  # the first poll checks every checkpoint is queued: once
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0  # carry on

        conn.set_progress_handler(count, 10)
        for _ in range(3):
            assert outbox._poll_once(conn, anchor, state) == 0.0
        status = anchor_status(conn, [anchor.name], clock())[0]
        assert (status.pending, status.last_published_size) == (3, published)
        assert "cannot connect" in status.last_error
        work[published] = steps[0]
        conn.close()
        # One attempt per poll, all on the first pending row.
        assert [r[2] for r in outbox_rows(db) if r[1] > published] == [4, 0, 0]
    assert work[10_000] <= 1.2 * work[100] + 20, work
