"""Outages: the S3 anchor (moto's server over HTTP) goes down while events keep arriving through
the real app; ingest never waits for it, /healthz degrades past the lag threshold, and after the
server comes back the outbox drains and every checkpoint is anchored exactly once. The same for
Postgres behind a relay that is switched off (a dead port) and on again."""

import contextlib
import socket
import threading
import time
import uuid

import boto3
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from litestar.testing import TestClient
from moto.server import ThreadedMotoServer

from appliance.anchors.outbox import Backoff, Outbox
from appliance.anchors.postgres import PostgresAnchor, init_postgres
from appliance.core.checkpoint import Checkpoint, sign_checkpoint
from appliance.service import Appliance, init_appliance, open_appliance
from appliance.settings import Settings
from appliance.store.db import connect
from appliance.store.tiles import TreeReader
from appliance.web.app import create_app
from tests.anchors.conftest import ORIGIN, add_checkpoint, outbox_rows
from tests.e2e.server import free_port

ADMIN = "admin-token-for-anchor-outage-0123456789"
TRACE = "5bf92f3577b34da6a3ce929d0e0e4736"


def cut_checkpoint(appliance: Appliance) -> int:
    """What the checkpoint cutter does: sign the current tree and store the note."""
    conn = connect(appliance.settings.db_path)
    try:
        reader = TreeReader(conn)
        size = reader.size()
        note = sign_checkpoint(Checkpoint(appliance.settings.origin, size, reader.root(size)), appliance.log_signer,
                               [appliance.clock_signer], int(time.time())).decode()
        conn.execute("INSERT INTO checkpoints (size, root, note, cut_at) VALUES (?, ?, ?, ?)",
                     (size, reader.root(size), note, "2026-11-28T00:00:00Z"))
    finally:
        conn.close()
    appliance.outbox.wake()
    return size


def wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    bucket = f"outage-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
        Bucket=bucket, ObjectLockEnabledForBucket=True)
    state = {"server": server, "port": port, "endpoint": endpoint, "bucket": bucket}
    yield state
    state["server"].stop()


def test_ingest_continues_through_an_anchor_outage_and_the_outbox_drains_exactly_once(tmp_path, s3):
    settings = Settings.from_env({
        "RUNLOG_DATA_DIR": str(tmp_path), "RUNLOG_ADMIN_TOKEN": ADMIN, "RUNLOG_ANCHOR_S3_BUCKET": s3["bucket"],
        "RUNLOG_ANCHOR_S3_ENDPOINT": s3["endpoint"], "RUNLOG_ANCHOR_S3_REGION": "us-east-1",
        "RUNLOG_ANCHOR_LAG_THRESHOLD": "0.5"})
    init_appliance(settings)
    appliance = open_appliance(settings)
    # The same outbox as in production, with a test-sized backoff and poll so this runs in seconds.
    appliance.outbox.stop()
    appliance.outbox = Outbox(settings.db_path, appliance.anchors, origin=settings.origin, poll_seconds=0.1,
                              backoff=Backoff(0.05, 0.3))
    appliance.outbox.start()
    headers = {"Authorization": f"Bearer {ADMIN}"}
    sizes = []
    try:
        with TestClient(create_app(settings, appliance=appliance)) as client:
            def ingest(batches: int) -> None:
                for n in range(batches):
                    events = [{"trace_id": TRACE, "step": f"step-{n}-{i}", "status": "info"} for i in range(50)]
                    assert client.post("/v1/events", json=events, headers=headers).status_code in (200, 201)
                    sizes.append(cut_checkpoint(appliance))

            ingest(2)
            wait_for(lambda: appliance.outbox.status()[0].last_published_size == sizes[-1])
            assert client.get("/healthz").status_code == 200

            s3["server"].stop()
            down_at = time.monotonic()
            ingest(6)
            ingest_seconds = time.monotonic() - down_at
            wait_for(lambda: (appliance.outbox.status()[0].last_error or "").startswith("AnchorError"))
            time.sleep(0.6)
            health = client.get("/healthz")
            check = health.json()["checks"][f"anchor s3:{s3['bucket']}/"]
            assert health.status_code == 503 and check.startswith("degraded: 6 checkpoints pending"), check
            assert client.get("/healthz").json()["tree_size"] == 400, "ingest never waited for the anchor"

            s3["server"] = ThreadedMotoServer(ip_address="127.0.0.1", port=s3["port"], verbose=False)
            s3["server"].start()
            appliance.outbox.wake()
            wait_for(lambda: appliance.outbox.status()[0].pending == 0)
            assert client.get("/healthz").status_code == 200
    finally:
        appliance.close()

    client = boto3.client("s3", endpoint_url=s3["endpoint"], region_name="us-east-1")
    versions = client.list_object_versions(Bucket=s3["bucket"])["Versions"]
    keys = sorted(v["Key"] for v in versions)
    assert keys == [f"localhost/runlog/checkpoints/{size:020d}" for size in sizes], "each exactly once"
    conn = connect(settings.db_path, readonly=True)
    assert conn.execute("SELECT count(*) FROM anchor_outbox WHERE published_at IS NOT NULL").fetchone()[0] == 8
    print(f"6 batches of 50 events with their checkpoints ingested in {ingest_seconds:.3f} s while S3 was down")


class Relay:
    """A TCP relay to the machine's Postgres that can be switched off and on again: while it is off
    the anchor's DSN points at a dead port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.port = target, free_port()
        self._sockets: list[socket.socket] = []

    def start(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def stop(self) -> None:
        self._listener.close()
        for s in self._sockets:
            s.close()
        self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)


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
