"""The checkpointer thread against a real store and the real Writer, both reading a frozen clock
(freezegun, tick=False, moved by hand): interval cuts, midnight, a year end, a three-day outage,
the final cut at shutdown, surviving store errors; and `runlog checkpoint` as a real subprocess."""

import logging
import os
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone

import pytest
from freezegun import freeze_time

from appliance.checkpointer import Checkpointer, load_signers
from appliance.core.checkpoint import open_checkpoint
from appliance.core.sequencer import Event
from appliance.service import init_appliance
from appliance.settings import Settings
from appliance.store import checkpoints as cps
from appliance.store.db import connect
from appliance.store.writer import AppendRequest, Writer

ORIGIN = "runlog.test/checkpointer"


def now() -> datetime:
    return datetime.now(timezone.utc)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


class Appliance:
    """A store made by init_appliance, the real Writer and a Checkpointer, all on the frozen clock."""

    def __init__(self, data_dir, **checkpointer) -> None:
        self.settings = Settings(data_dir=data_dir, keys_dir=data_dir / "keys", origin=ORIGIN, synchronous="NORMAL")
        init_appliance(self.settings)
        self.signers = load_signers(self.settings.keys_dir, ORIGIN)
        self.conn = connect(self.settings.db_path, readonly=True)
        self.options = {"interval": 300, "anchors": ["pg"], "clock": now, "synchronous": "NORMAL", **checkpointer}
        self.writer = self.checkpointer = None

    def start_writer(self) -> None:
        self.writer = Writer(self.settings.db_path, origin=ORIGIN, signer=self.signers.log, clock=now,
                             synchronous="NORMAL")
        self.writer.start()

    def start(self) -> None:
        self.start_writer()
        self.checkpointer = Checkpointer(self.settings.db_path, self.signers, **self.options)
        self.checkpointer.start()

    def stop(self) -> None:
        self.writer.stop()  # drains every queued append first
        self.checkpointer.stop()

    def append(self, count: int = 1) -> None:
        events = [Event(trace_id=f"{n + 1:032x}", step="s", status="info", ts="2026-01-01T00:00:00Z", source="ci")
                  for n in range(count)]
        self.writer.append_sync(AppendRequest(events, "ci"))

    def daily(self) -> dict[date, int]:
        return {r.day: r.checkpoint.size for r in cps.list_daily_roots(self.conn, limit=cps.MAX_PAGE)}

    def count_before(self, day: date) -> int:
        return self.conn.execute("SELECT count(*) FROM entries WHERE received_at < ?", (day.isoformat(),)).fetchone()[0]

    def verify(self, note: str) -> tuple[int, int]:
        """(size, timestamp) of a note that verifies with the log key and the clock cosigner."""
        signed = open_checkpoint(note, self.signers.log.verifier(), origin=ORIGIN,
                                 cosigner_verifiers=[self.signers.clock.verifier()])
        (cosignature,) = signed.cosignatures
        return signed.checkpoint.size, cosignature.timestamp


@pytest.fixture
def appliance(tmp_path):
    made = []

    def make(**options) -> Appliance:
        made.append(Appliance(tmp_path, **options))
        return made[-1]

    yield make
    for each in made:
        if each.checkpointer is not None and each.checkpointer.running:
            each.stop()
        each.conn.close()


def wait_for(condition, timeout: float = 10.0) -> None:
    # Counted sleeps: under freeze_time every clock stands still, time.sleep does not.
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError("the checkpointer thread did not get there in time")


def test_a_checkpoint_every_interval_when_the_log_grew(appliance):
    with freeze_time("2026-11-28T10:00:00Z", tick=False) as frozen:
        app = appliance()
        app.start()
        assert app.checkpointer.tick() == []  # empty log: nothing to sign
        app.append(2)
        (first,) = app.checkpointer.tick()  # never cut before: at once
        app.append(1)
        frozen.tick(299)
        assert app.checkpointer.tick() == []
        assert app.checkpointer.seconds_until_due() == 1
        frozen.tick(1)
        (second,) = app.checkpointer.tick()
        frozen.tick(3600)
        assert app.checkpointer.tick() == []  # no growth, no new checkpoint
        assert app.checkpointer.seconds_until_due() == 300
    assert (first.size, second.size) == (2, 3)
    assert app.verify(second.note) == (3, int(utc("2026-11-28T10:05:00").timestamp()))
    assert app.conn.execute("SELECT anchor, size FROM anchor_outbox ORDER BY size").fetchall() == [("pg", 2), ("pg", 3)]


def test_the_thread_sleeps_until_the_next_midnight_or_interval(appliance):
    with freeze_time("2026-11-28T23:58:30Z", tick=False) as frozen:
        app = appliance()
        app.start()
        app.append(1)
        app.checkpointer.tick()
        frozen.move_to("2026-11-28T23:59:00Z")
        assert app.checkpointer.seconds_until_due() == 62  # 00:00 UTC plus the settle time
        frozen.move_to("2026-11-29T00:00:02Z")
        assert app.checkpointer.seconds_until_due() == 208  # the interval: 23:58:30 + 300 s = 00:03:30


def test_the_thread_cuts_the_daily_root_when_woken_across_a_year_end(appliance):
    with freeze_time("2026-12-31T23:59:00Z", tick=False) as frozen:
        app = appliance(interval=3600)
        app.start()
        app.append(3)
        frozen.move_to("2026-12-31T23:59:59.999Z")
        app.append(2)
        frozen.move_to("2027-01-01T00:00:00.001Z")
        app.append(4)
        frozen.move_to("2027-01-01T00:00:02Z")
        app.checkpointer.wake()
        wait_for(lambda: app.daily())
    assert app.daily() == {date(2026, 12, 31): 5} and app.count_before(date(2027, 1, 1)) == 5
    root = cps.checkpoint_at(app.conn, 5)
    assert app.verify(root.note) == (5, int(utc("2027-01-01T00:00:02").timestamp()))


def test_a_three_day_outage_gets_its_daily_roots_at_the_sizes_they_should_have_had(appliance):
    with freeze_time("2026-12-30T09:00:00Z", tick=False) as frozen:
        app = appliance()
        app.start()
        app.append(2)
        frozen.move_to("2026-12-30T23:59:59Z")
        app.append(1)
        app.writer.submit(AppendRequest([Event(trace_id="f" * 32, step="last", status="info",
                                               ts="2026-01-01T00:00:00Z", source="ci")], "ci"))
        app.stop()  # the writer drains the queued append, then the last checkpoint covers it
        assert cps.latest_checkpoint(app.conn).size == 4 and app.daily() == {}

        frozen.move_to("2027-01-02T08:00:00Z")  # down for three midnights
        app.start_writer()
        app.append(2)  # received after the outage: in no missed daily root
        app.checkpointer = Checkpointer(app.settings.db_path, app.signers, **app.options)
        app.checkpointer.start()
        restart = int(now().timestamp())
    assert app.daily() == {date(2026, 12, 30): 4, date(2026, 12, 31): 4, date(2027, 1, 1): 4}
    for day, size in app.daily().items():
        assert size == app.count_before(day + timedelta(days=1))
    # The size-4 tree was signed at shutdown, not again; the grown log is signed at start.
    assert app.verify(cps.checkpoint_at(app.conn, 4).note) == (4, int(utc("2026-12-30T23:59:59").timestamp()))
    assert app.verify(cps.latest_checkpoint(app.conn).note) == (6, restart)


def test_it_survives_store_errors_and_retries(appliance, caplog):
    with freeze_time("2026-11-28T10:00:00Z", tick=False) as frozen:
        app = appliance(retry_seconds=0.05)
        app.start()
        app.append(1)
        saboteur = connect(app.settings.db_path)
        saboteur.execute("ALTER TABLE daily_roots RENAME TO daily_roots_away")
        frozen.move_to("2026-11-29T00:00:05Z")
        caplog.set_level(logging.ERROR, logger="runlog.checkpointer")
        app.checkpointer.wake()
        wait_for(lambda: "cutting checkpoints failed" in caplog.text)
        assert app.checkpointer.running
        saboteur.execute("ALTER TABLE daily_roots_away RENAME TO daily_roots")
        saboteur.close()
        wait_for(lambda: app.daily())
    assert app.daily() == {date(2026, 11, 28): 1}


def test_a_clock_set_back_does_not_hold_checkpoints_off(appliance):
    with freeze_time("2026-11-28T10:00:00Z", tick=False) as frozen:
        app = appliance()
        app.start()
        app.append(1)
        app.checkpointer.tick()
        frozen.move_to("2026-11-28T09:00:00Z")
        app.append(1)
        (cut,) = app.checkpointer.tick()
    assert cut.size == 2


def test_cut_now_signs_the_whole_log_once(appliance):
    with freeze_time("2026-11-28T10:00:00Z", tick=False):
        app = appliance()
        app.start()
        app.append(2)
        first, created = app.checkpointer.cut_now()
        again, created_again = app.checkpointer.cut_now()
    assert created and not created_again and first == again and first.size == 2
def test_runlog_checkpoint_signs_the_local_store(tmp_path):
    settings = Settings(data_dir=tmp_path, keys_dir=tmp_path / "keys", origin=ORIGIN)
    with freeze_time("2026-11-25T12:00:00Z"):
        init_appliance(settings)
    signers = load_signers(settings.keys_dir, ORIGIN)
    writer = Writer(settings.db_path, origin=ORIGIN, signer=signers.log, clock=lambda: utc("2026-11-26T12:00:00"))
    writer.start()
    writer.append_sync(AppendRequest([Event(trace_id="a" * 32, step="s", status="info", ts="2026-01-01T00:00:00Z",
                                            source="ci")], "ci"))
    writer.stop()
    env = {**os.environ, "RUNLOG_DATA_DIR": str(tmp_path), "RUNLOG_ORIGIN": ORIGIN}
    env = {k: v for k, v in env.items() if not k.startswith("RUNLOG_ANCHOR")}
    runs = [subprocess.run([sys.executable, "-m", "appliance.cli", "checkpoint"], env=env, capture_output=True,
                           text=True, timeout=60) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr
    assert runs[0].stdout == runs[1].stdout and "signed now" in runs[0].stderr and "already" in runs[1].stderr
    signed = open_checkpoint(runs[0].stdout, signers.log.verifier(), origin=ORIGIN,
                             cosigner_verifiers=[signers.clock.verifier()])
    assert signed.checkpoint.size == 1
    conn = connect(settings.db_path, readonly=True)
    days = {r.day: r.checkpoint.size for r in cps.list_daily_roots(conn)}
    conn.close()
    assert days[date(2026, 11, 25)] == 0 and days[date(2026, 11, 26)] == 1 and len(days) >= 3


def test_runlog_checkpoint_without_a_store_says_so(tmp_path):
    env = {**os.environ, "RUNLOG_DATA_DIR": str(tmp_path / "none")}
    result = subprocess.run([sys.executable, "-m", "appliance.cli", "checkpoint"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1 and "runlog init" in result.stderr and not (tmp_path / "none").exists()
