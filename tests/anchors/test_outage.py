"""Anchor outages. Through the real app (reliability/outage.py with a test-sized backoff): the S3
endpoint cut off in the middle of a publishing request and the machine's Postgres restarted with
`pg_ctlcluster`, then cut off; ingest never waits, /healthz degrades past the lag threshold and
recovers, and every checkpoint is anchored exactly once. And the outbox alone against Postgres
behind a relay that is switched off (a dead port) and on again."""

import os
import time

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from appliance.anchors.outbox import Backoff, Outbox
from appliance.anchors.postgres import PostgresAnchor, init_postgres
from reliability.outage import run_outage
from reliability.relay import Relay
from reliability.postgres import postgres_available
from tests.anchors.conftest import ORIGIN, add_checkpoint, outbox_rows


def wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.fixture
def root_for_restart():
    if os.geteuid() != 0 or not os.path.isdir("/etc/postgresql") or not postgres_available():
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root with the machine's Postgres: the restart must be tried")
        pytest.skip("restarting the machine's Postgres needs it running, root and pg_ctlcluster")


def test_s3_cut_mid_publish_and_postgres_restarted_lose_and_duplicate_no_anchor_record(tmp_path, root_for_restart):
    """reliability/outage.py with a test-sized backoff: ingest never waits, /healthz degrades past
    the lag threshold and recovers, every checkpoint lands once in S3 and in Postgres, including
    the one cut mid-request and those queued behind it. A checkpoint a second (not faster): the S3
    publish, four requests to moto, takes 0.1-0.25 s on this machine under load, so the anchors keep
    up and each wait for them ends; each outage (2.5 s) still queues several checkpoints."""
    report = run_outage(tmp_path, s3_down=2.5, pg_down=2.5, lag_threshold=1.0, backoff=Backoff(0.05, 0.5),
                        poll_seconds=0.1, checkpoint_interval=1.0)
    print("\n".join(report.lines()))
    assert not report.problems, report.problems
    assert report.ingest_failures == 0 and report.events > 0 and report.checkpoints > 5
    assert report.queued.keys() == {"S3", "Postgres"} and min(report.queued.values()) >= 2, report.queued
    assert sum("/healthz 503" in line for line in report.timeline) == 2
    assert sum("/healthz 200 again" in line for line in report.timeline) == 3


def test_a_postgres_outage_delays_anchoring_and_then_every_checkpoint_lands_once(store, pg):
    init_postgres(pg["dsn"], table=pg["table"], role=pg["role"])
    info = conninfo_to_dict(pg["dsn"])
    relay = Relay((info.get("host") or "127.0.0.1", int(info.get("port") or 5432)))
    anchor = PostgresAnchor(make_conninfo(pg["dsn"], user=pg["role"], host="127.0.0.1", port=relay.port),
                            origin=ORIGIN, table=pg["table"], connect_timeout=2)
    outbox = Outbox(store, [anchor], origin=ORIGIN, poll_seconds=0.05, backoff=Backoff(0.05, 0.2))
    outbox.start()
    try:
        for size in (1, 2, 3):
            add_checkpoint(store, size)
        outbox.wake()
        wait_for(lambda: outbox.status()[0].last_error is not None)
        assert outbox.status()[0].pending == 3 and "cannot connect" in outbox.status()[0].last_error
        relay.start()
        add_checkpoint(store, 4)
        outbox.wake()
        wait_for(lambda: outbox.status()[0].pending == 0)
    finally:
        outbox.stop()
        relay.stop()
    with psycopg.connect(pg["dsn"]) as conn:
        rows = conn.execute(f'SELECT size, count(*) FROM "{pg["table"]}" GROUP BY size ORDER BY size').fetchall()
    assert rows == [(1, 1), (2, 1), (3, 1), (4, 1)]
    assert [r[4] for r in outbox_rows(store)] == [1, 1, 1, 1]
