"""Hostile input through every string field lands as data or is refused by name, never as SQL:
ingest fields (step, attrs keys and values, Idempotency-Key), query parameters (runs filters and
cursors, checkpoint cursors, path IDs) and token names. After the barrage the store still holds
every table, every entry it held, and verifies."""

import os
import sqlite3
import subprocess
import sys

import pytest
from litestar.testing import TestClient

from appliance.settings import Settings
from appliance.store.db import connect
from appliance.store.tokens import TokenError, create_token
from appliance.web.app import create_app

ADMIN = "admin-token-for-abuse-tests-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
INJECTIONS = [
    "' OR '1'='1",
    "'; DROP TABLE entries; --",
    '" OR 1=1 --',
    "1; SELECT * FROM tokens",
    "x' UNION SELECT token_hash, name FROM tokens --",
    "%' --",
    "\\'; DELETE FROM runs; --",
    "' || (SELECT sqlite_version()) || '",
    "admin'/*",
    "0x27 OR 1=1",
    "\u02bc OR 1=1 --",  # modifier letter apostrophe, which some layers fold into '
]
TABLES = ("entries", "runs", "tokens", "checkpoints")


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    settings = Settings.from_env({"RUNLOG_DATA_DIR": str(tmp_path_factory.mktemp("abuse-inputs")),
                                  "RUNLOG_ADMIN_TOKEN": ADMIN, "RUNLOG_SYNCHRONOUS": "NORMAL"})
    with TestClient(create_app(settings)) as client:
        started = client.post("/v1/runs", json={"step": "seed"}, headers=AUTH)
        assert started.status_code == 201, started.text
        yield client, settings, started.json()["trace_id"]


def _tables(settings: Settings) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{settings.db_path}?mode=ro", uri=True)
    try:
        return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TABLES}
    finally:
        conn.close()


@pytest.mark.parametrize("payload", INJECTIONS)
def test_ingest_fields_land_as_data(api, payload):
    client, settings, trace = api
    event = {"trace_id": trace, "step": payload, "status": "info",
             "attrs": {payload: payload, "nested": [payload, {"k": payload}]}}
    # Header values are ASCII on the wire; a leading '"' would make it an RFC 8941 string.
    key = {"Idempotency-Key": f"k{payload}"} if payload.isascii() else {}
    response = client.post("/v1/events", json=event, headers={**AUTH, **key})
    assert response.status_code == 201, response.text
    seq = response.json()["seq"][0]
    stored = client.get(f"/v1/runs/{trace}", params={"limit": 1000}, headers=AUTH).json()["events"]
    (found,) = [e for e in stored if e["seq"] == seq]
    assert (found["step"], found["attrs"]) == (payload, event["attrs"])
    entry = client.get(f"/v1/entries/{seq}", headers=AUTH).json()
    assert payload.replace("\\", "\\\\").replace('"', '\\"') in entry["canonical"] or "\\u" in entry["canonical"]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_query_parameters_are_refused_or_match_nothing(api, payload):
    client, settings, _ = api
    before = _tables(settings)
    answers = [
        client.get("/v1/runs", params={"status": payload}, headers=AUTH),
        client.get("/v1/runs", params={"source": payload}, headers=AUTH),
        client.get("/v1/runs", params={"since": payload}, headers=AUTH),
        client.get("/v1/runs", params={"until": payload}, headers=AUTH),
        client.get("/v1/runs", params={"cursor": payload}, headers=AUTH),
        client.get("/v1/checkpoints", params={"cursor": payload}),
        client.get("/v1/checkpoints", params={"cursor": payload, "daily": "true"}),
        client.get(f"/v1/runs/{payload}", headers=AUTH),
        client.get(f"/v1/runs/{payload}/export", headers=AUTH),
        client.get(f"/v1/entries/{payload}", headers=AUTH),
        client.get(f"/v1/checkpoints/{payload}"),
    ]
    for response in answers:
        assert response.status_code in (200, 400, 404), (response.request.url, response.text)
        if response.status_code == 200:  # only a filter that matched no run, as data would
            assert response.json()["runs"] == [], (response.request.url, response.text)
    assert _tables(settings) == before


@pytest.mark.parametrize("payload", INJECTIONS)
def test_token_names_refuse_anything_but_their_alphabet(api, payload):
    _, settings, _ = api
    conn = connect(settings.db_path)
    conn.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(TokenError) as refused:
            create_token(conn, payload, ["read"], now="2026-11-28T00:00:00Z")
        assert refused.value.field == "name"
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def test_after_the_barrage_the_store_verifies(api):
    client, settings, trace = api
    counts = _tables(settings)
    assert counts["entries"] >= 1 + len(INJECTIONS) and counts["tokens"] >= 1
    done = subprocess.run([sys.executable, "-m", "appliance.cli", "verify", "--db", str(settings.db_path)],
                          env={**os.environ, "RUNLOG_DATA_DIR": str(settings.data_dir)}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("attrs", [{"n": 2**64}, {"n": -(2**70)}], ids=["beyond-uint64", "below-int64"])
def test_start_run_refuses_out_of_range_attrs_by_name(api, attrs):
    client, settings, _ = api
    before = _tables(settings)
    response = client.post("/v1/runs", json={"step": "x", "attrs": attrs}, headers=AUTH)
    assert response.status_code == 400 and "attrs" in (response.json()["error"]["field"] or "")
    assert _tables(settings) == before
