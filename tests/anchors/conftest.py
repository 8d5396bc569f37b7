"""Real components for the anchor tests: a migrated SQLite store with signed checkpoints, moto's S3
server on 127.0.0.1 over HTTP, and the machine's Postgres with a unique table and role per run."""

import os
import uuid
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest
from moto.server import ThreadedMotoServer

from appliance.core.checkpoint import Checkpoint, sign_checkpoint
from appliance.core.cosignature import generate_cosigner
from appliance.core.keys import generate_signer
from appliance.store.db import connect, migrate

ORIGIN = "test.example/anchors"
DSN = os.environ.get("RUNLOG_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
SIGNER = generate_signer(ORIGIN)
CLOCK = generate_cosigner(f"{ORIGIN}/clock")


def note_for(size: int, root: bytes | None = None, *, signer=SIGNER, timestamp: int = 1_795_000_000) -> str:
    """A signed checkpoint note as the appliance cuts it: log signature plus a timestamp cosignature."""
    root = root if root is not None else size.to_bytes(32, "big")
    return sign_checkpoint(Checkpoint(signer.name, size, root), signer, [CLOCK], timestamp).decode("utf-8")


def add_checkpoint(db: Path, size: int, note: str | None = None) -> str:
    """Insert a checkpoint row (what the checkpoint cutter does), without queueing it."""
    note = note if note is not None else note_for(size)
    conn = connect(db)
    try:
        conn.execute("INSERT INTO checkpoints (size, root, note, cut_at) VALUES (?, ?, ?, ?)",
                     (size, size.to_bytes(32, "big"), note, "2026-11-28T00:00:00.000000Z"))
    finally:
        conn.close()
    return note


def outbox_rows(db: Path) -> list[tuple]:
    conn = connect(db, readonly=True)
    try:
        return conn.execute("SELECT anchor, size, attempts, last_error, published_at IS NOT NULL, location "
                            "FROM anchor_outbox ORDER BY anchor, size").fetchall()
    finally:
        conn.close()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    db = tmp_path / "runlog.sqlite"
    conn = connect(db)
    migrate(conn)
    conn.close()
    return db


class Clock:
    """A hand-wound clock for the outbox (backoff without sleeping)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


# -- S3: moto's server over HTTP, spoken to by the same boto3 code as AWS ---------------------

@pytest.fixture(scope="session")
def moto_server():
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(moto_server, monkeypatch) -> dict:
    """Credentials for moto, and a fresh bucket with Object Lock and one without."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    locked, plain = f"locked-{uuid.uuid4().hex[:12]}", f"plain-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=locked, ObjectLockEnabledForBucket=True)
    client.create_bucket(Bucket=plain)
    return {"endpoint": moto_server, "locked": locked, "plain": plain, "client": client}


# -- Postgres: a unique table (and role) per test, dropped afterwards ---------------------------

def _admin() -> psycopg.Connection:
    try:
        return psycopg.connect(DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"no Postgres at {DSN}: {error}")


@pytest.fixture
def pg():
    """(admin DSN, table, role, role DSN): the table is not created yet; role exists with LOGIN."""
    admin = _admin()
    suffix = uuid.uuid4().hex[:10]
    table, role = f"runlog_test_{suffix}", f"runlog_app_{suffix}"
    admin.execute(f'CREATE ROLE "{role}" LOGIN')
    role_dsn = psycopg.conninfo.make_conninfo(DSN, user=role)
    try:
        yield {"dsn": DSN, "table": table, "role": role, "role_dsn": role_dsn}
    finally:
        admin.execute(f'DROP TABLE IF EXISTS "{table}"')
        admin.execute(f'DROP OWNED BY "{role}"')
        admin.execute(f'DROP ROLE "{role}"')
        admin.close()
