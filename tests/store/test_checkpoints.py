"""Cutting and reading signed checkpoints and daily roots in a real SQLite store, with entries
appended by the real Writer under a frozen clock (freezegun, moved by hand) across midnights."""

import math
import random
import sqlite3
from datetime import date, datetime, timedelta, timezone

import pytest
from freezegun import freeze_time

from appliance.checkpointer import load_signers
from appliance.core.checkpoint import open_checkpoint
from appliance.core.hashing import leaf_hash
from appliance.core.sequencer import Event
from appliance.core.tree import root_from_leaf_hashes
from appliance.service import init_appliance
from appliance.settings import Settings
from appliance.store import checkpoints as cps
from appliance.store.db import connect, get_meta, migrate
from appliance.store.errors import StoreError
from appliance.store.tiles import TreeSizeError
from appliance.store.writer import AppendRequest, Writer

ORIGIN = "runlog.test/checkpoints"
EMPTY_ROOT = bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def now() -> datetime:
    return datetime.now(timezone.utc)  # freezegun's frozen time inside freeze_time


class Store:
    """An initialised appliance store (keys, meta created_at) with the real Writer on it."""

    def __init__(self, tmp_path, created: str) -> None:
        self.settings = Settings(data_dir=tmp_path, keys_dir=tmp_path / "keys", origin=ORIGIN, synchronous="NORMAL")
        with freeze_time(created):
            init_appliance(self.settings)
        self.signers = load_signers(self.settings.keys_dir, ORIGIN)
        self.conn = connect(self.settings.db_path, synchronous="NORMAL")
        self.writer = Writer(self.settings.db_path, origin=ORIGIN, signer=self.signers.log, clock=now,
                             synchronous="NORMAL")
        self.writer.start()

    def append(self, count: int = 1) -> None:
        events = [Event(trace_id=f"{n + 1:032x}", step="s", status="info", ts="2026-01-01T00:00:00Z", source="ci")
                  for n in range(count)]
        self.writer.append_sync(AppendRequest(events, "ci"))

    def count_before(self, day: date) -> int:
        return self.conn.execute("SELECT count(*) FROM entries WHERE received_at < ?",
                                 (day.isoformat(),)).fetchone()[0]

    def daily(self) -> dict[date, int]:
        return {r.day: r.checkpoint.size for r in cps.list_daily_roots(self.conn, limit=cps.MAX_PAGE)}

    def close(self) -> None:
        self.writer.stop()
        self.conn.close()


@pytest.fixture
def make_store(tmp_path):
    opened: list[Store] = []

    def make(created: str = "2026-11-28T09:00:00Z", name: str = "store") -> Store:
        opened.append(Store(tmp_path / name, created))
        return opened[-1]

    yield make
    for each in opened:
        each.close()


@pytest.fixture
def store(make_store):
    return make_store()


def verify(store: Store, note: str, *, size: int, timestamp: int | None = None) -> None:
    signed = open_checkpoint(note, store.signers.log.verifier(), origin=ORIGIN,
                             cosigner_verifiers=[store.signers.clock.verifier()])
    assert signed.checkpoint.size == size
    leaves = [leaf_hash(d) for (d,) in store.conn.execute("SELECT data FROM entries WHERE seq < ? ORDER BY seq",
                                                          (size,))]
    assert signed.checkpoint.root_hash == (root_from_leaf_hashes(leaves) if leaves else EMPTY_ROOT)
    assert len(signed.cosignatures) == 1 and signed.cosignatures[0].name == f"{ORIGIN}/clock"
    if timestamp is not None:
        assert signed.cosignatures[0].timestamp == timestamp


def test_a_cut_signs_the_committed_tree_and_queues_it_once_per_anchor(store):
    with freeze_time("2026-11-28T10:00:00.750Z", tick=False):
        store.append(3)
        checkpoint, created = cps.cut_checkpoint(store.conn, store.signers, now=now(), anchors=["pg", "s3", "pg"])
    assert created and checkpoint.size == 3 and checkpoint.cut_at == "2026-11-28T10:00:00.750000Z"
    verify(store, checkpoint.note, size=3, timestamp=math.floor(utc("2026-11-28T10:00:00.750").timestamp()))
    outbox = store.conn.execute("SELECT anchor, size, queued_at, attempts, next_attempt_at, published_at "
                                "FROM anchor_outbox ORDER BY anchor").fetchall()
    stamp = checkpoint.cut_at
    assert outbox == [("pg", 3, stamp, 0, stamp, None), ("s3", 3, stamp, 0, stamp, None)]
    assert cps.checkpoint_at(store.conn, 3) == checkpoint == cps.latest_checkpoint(store.conn)


def test_a_size_is_signed_once(store):
    with freeze_time("2026-11-28T10:00:00Z", tick=False) as frozen:
        store.append(2)
        first, _ = cps.cut_checkpoint(store.conn, store.signers, now=now(), anchors=["pg"])
        frozen.tick(600)
        again, created = cps.cut_checkpoint(store.conn, store.signers, now=now(), anchors=["pg", "dir"])
    assert not created and again == first
    assert store.conn.execute("SELECT count(*) FROM anchor_outbox").fetchone()[0] == 1


def test_cut_at_an_older_size_and_refuse_an_uncommitted_one(store):
    with freeze_time("2026-11-28T10:00:00Z", tick=False):
        store.append(5)
        older, _ = cps.cut_checkpoint(store.conn, store.signers, now=now(), size=2)
        verify(store, older.note, size=2)
        with pytest.raises(TreeSizeError):
            cps.cut_checkpoint(store.conn, store.signers, now=now(), size=6)
    assert not store.conn.in_transaction
    assert cps.latest_checkpoint(store.conn).size == 2


def test_a_store_of_another_origin_is_not_signed_for(make_store):
    store, other = make_store(), make_store(name="other")
    wrong = cps.CheckpointSigners(other.signers.log, store.signers.clock)
    store.conn.execute("UPDATE meta SET value = 'someone/else' WHERE key = 'origin'")
    with pytest.raises(StoreError, match="belongs to origin"):
        cps.cut_checkpoint(store.conn, wrong, now=utc("2026-11-28T10:00:00"))
    assert cps.latest_checkpoint(store.conn) is None and not store.conn.in_transaction


def test_the_empty_log_has_the_empty_root(store):
    checkpoint, _ = cps.cut_checkpoint(store.conn, store.signers, now=utc("2026-11-28T10:00:00"))
    assert checkpoint.size == 0 and checkpoint.root == EMPTY_ROOT
    verify(store, checkpoint.note, size=0)


MIDNIGHTS = {
    "midnight": "2026-11-28",
    "month-end": "2026-11-30",
    "year-end": "2026-12-31",
    "leap-day-eve": "2028-02-28",
}


@pytest.mark.parametrize("day", MIDNIGHTS.values(), ids=MIDNIGHTS.keys())
def test_the_daily_root_covers_exactly_the_entries_received_before_midnight(make_store, day):
    last = date.fromisoformat(day)
    store = make_store(f"{day}T08:00:00Z")
    with freeze_time(f"{day}T23:59:58Z", tick=False) as frozen:
        store.append(2)
        frozen.move_to(f"{day}T23:59:59.999999Z")
        store.append(3)
        frozen.move_to(f"{last + timedelta(days=1)}T00:00:00.500Z")
        assert cps.cut_daily_roots(store.conn, store.signers, now=now()) == []  # not settled yet
        store.append(1)  # received after midnight: the day is over for sure
        frozen.move_to(f"{last + timedelta(days=1)}T00:00:00.600Z")
        (root,) = cps.cut_daily_roots(store.conn, store.signers, now=now())
        store.append(4)
        frozen.move_to(f"{last + timedelta(days=1)}T23:00:00Z")
        assert cps.cut_daily_roots(store.conn, store.signers, now=now()) == []
    assert root.day == last and root.checkpoint.size == 5 == store.count_before(last + timedelta(days=1))
    assert store.conn.execute("SELECT received_at FROM entries WHERE seq = 5").fetchone()[0].startswith(
        (last + timedelta(days=1)).isoformat())
    verify(store, root.checkpoint.note, size=5)


def test_an_idle_midnight_is_cut_after_the_settle_time(store):
    with freeze_time("2026-11-28T20:00:00Z", tick=False) as frozen:
        store.append(4)
        frozen.move_to("2026-11-29T00:00:01.999Z")
        assert cps.due_days(store.conn, now()) == []
        frozen.move_to("2026-11-29T00:00:02Z")
        assert cps.due_days(store.conn, now()) == [date(2026, 11, 28)]
        assert cps.next_day_end(utc("2026-11-29T00:00:01")) == utc("2026-11-29T00:00:02")
        assert cps.next_day_end(utc("2026-11-29T00:00:02")) == utc("2026-11-30T00:00:02")


def test_missed_days_are_cut_at_their_exact_sizes_and_empty_days_share_one(store):
    sizes = {}
    with freeze_time("2026-11-28T12:00:00Z", tick=False) as frozen:
        for day, count in [("2026-11-28", 3), ("2026-11-29", 0), ("2026-11-30", 2), ("2026-12-01", 0),
                           ("2026-12-02", 0), ("2026-12-03", 1)]:
            frozen.move_to(f"{day}T12:00:00Z")
            if count:
                store.append(count)
            sizes[date.fromisoformat(day)] = store.writer.size
        frozen.move_to("2026-12-03T18:00:00Z")
        cut = cps.cut_daily_roots(store.conn, store.signers, now=now(), anchors=["pg"])
    assert [r.day for r in cut] == sorted(sizes)[:-1]
    assert [r.signed_now for r in cut] == [True, False, True, False, False]
    assert store.daily() == {day: size for day, size in sizes.items() if day < date(2026, 12, 3)}
    for day, size in store.daily().items():
        assert size == store.count_before(day + timedelta(days=1))
    # Three distinct trees (3, 3, 5, 5, 5): signed and queued once each.
    assert [c.size for c in cps.list_checkpoints(store.conn)] == [5, 3]
    assert store.conn.execute("SELECT size FROM anchor_outbox ORDER BY size").fetchall() == [(3,), (5,)]


def test_the_first_day_is_the_day_the_store_was_created(make_store):
    store = make_store("2026-11-26T23:30:00Z")
    assert get_meta(store.conn, "created_at").startswith("2026-11-26T23:30:00")
    with freeze_time("2026-11-28T09:00:00Z", tick=False):
        store.append(2)
        cut = cps.cut_daily_roots(store.conn, store.signers, now=now())
    assert [(r.day, r.checkpoint.size) for r in cut] == [(date(2026, 11, 26), 0), (date(2026, 11, 27), 0)]
    assert cut[0].checkpoint.root == EMPTY_ROOT


def test_a_store_without_created_at_starts_at_its_first_entry(store, tmp_path):
    db = tmp_path / "bare.sqlite"
    conn = connect(db)
    migrate(conn)
    assert cps.first_day(conn) is None and cps.due_days(conn, utc("2026-12-01T00:00:00")) == []
    writer = Writer(db, origin=ORIGIN, signer=store.signers.log, clock=lambda: utc("2026-11-29T05:00:00"))
    writer.start()
    writer.append_sync(AppendRequest([Event(trace_id="1" * 32, step="s", status="info", ts="2026-01-01T00:00:00Z",
                                            source="ci")], "ci"))
    writer.stop()
    assert cps.due_days(conn, utc("2026-12-01T00:00:03")) == [date(2026, 11, 29), date(2026, 11, 30)]
    conn.close()


def test_the_boundary_search_agrees_with_counting(store):
    """Days of 0..40 entries, some empty, in uneven steps: every boundary found by bisection
    equals the count of entries received before it."""
    rng = random.Random(7)
    with freeze_time("2026-11-28T10:00:00Z", tick=False) as frozen:
        for _ in range(120):
            frozen.tick(timedelta(seconds=rng.choice([1, 60, 3600, 4 * 3600, 30 * 3600])))
            store.append(rng.randint(1, 3))
    day = date(2026, 11, 27)
    while day <= now().date() + timedelta(days=1):
        assert cps.entries_before(store.conn, day) == store.count_before(day), day
        day += timedelta(days=1)


def test_listings_page_newest_first(store):
    with freeze_time("2026-11-28T10:00:00Z", tick=False) as frozen:
        for _ in range(5):
            store.append(1)
            frozen.tick(timedelta(days=1))
            cps.cut_checkpoint(store.conn, store.signers, now=now())
        cps.cut_daily_roots(store.conn, store.signers, now=now())
    assert [c.size for c in cps.list_checkpoints(store.conn, limit=2)] == [5, 4]
    assert [c.size for c in cps.list_checkpoints(store.conn, before=4, limit=10)] == [3, 2, 1]
    days = cps.list_daily_roots(store.conn, limit=3)
    assert [r.day for r in days] == [date(2026, 12, 2), date(2026, 12, 1), date(2026, 11, 30)]
    rest = cps.list_daily_roots(store.conn, before=days[-1].day, limit=3)
    assert [(r.day, r.checkpoint.size) for r in rest] == [(date(2026, 11, 29), 2), (date(2026, 11, 28), 1)]
    with pytest.raises(StoreError):
        cps.list_checkpoints(store.conn, limit=0)


def test_daily_roots_are_append_only(store):
    with freeze_time("2026-11-29T10:00:00Z", tick=False):
        cps.cut_daily_roots(store.conn, store.signers, now=now())
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.conn.execute("UPDATE daily_roots SET size = 1")
