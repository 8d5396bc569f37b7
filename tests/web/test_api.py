"""The HTTP API through the real app (Litestar TestClient, real SQLite files): every route
against every scope, and every kind of bad input answered with a 4xx naming the field, with
nothing written."""

import json

import pytest
from litestar.testing import TestClient

from appliance.settings import Settings
from appliance.store.db import connect
from appliance.store.tokens import create_token
from appliance.web.app import create_app

ADMIN = "admin-token-for-tests-0123456789abcdef"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SCOPES = ("append", "read", "export", "admin")


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    data = tmp_path_factory.mktemp("api")
    settings = Settings.from_env({"RUNLOG_DATA_DIR": str(data), "RUNLOG_ADMIN_TOKEN": ADMIN,
                                  "RUNLOG_MAX_BODY_BYTES": str(512 * 1024)})
    with TestClient(create_app(settings)) as client:
        conn = connect(settings.db_path)
        conn.execute("BEGIN IMMEDIATE")
        tokens = {scope: create_token(conn, f"only-{scope}", {scope}, now="2026-11-28T00:00:00Z")[0]
                  for scope in SCOPES if scope != "admin"}
        conn.execute("COMMIT")
        tokens["admin"] = ADMIN
        client.post("/v1/events", json={"trace_id": TRACE, "step": "seed", "status": "info"},
                    headers={"Authorization": f"Bearer {ADMIN}"})
        yield client, tokens, settings


def size(client) -> int:
    return client.get("/healthz").json()["tree_size"]


ROUTES = [
    ("POST", "/v1/events", {"trace_id": TRACE, "step": "x", "status": "info"}, "append"),
    ("POST", "/v1/runs", {"step": "x"}, "append"),
    ("GET", "/v1/runs", None, "read"),
    ("GET", f"/v1/runs/{TRACE}", None, "read"),
    ("GET", "/v1/entries/0", None, "read"),
    ("GET", "/v1/proofs/inclusion?index=0&tree_size=1", None, "read"),
    ("GET", "/v1/proofs/consistency?from=1&to=1", None, "read"),
]


@pytest.mark.parametrize("method, path, body, needed", ROUTES)
@pytest.mark.parametrize("holder", [None, *SCOPES])
def test_scope_matrix(api, method, path, body, needed, holder):
    client, tokens, _ = api
    headers = {"Authorization": f"Bearer {tokens[holder]}"} if holder else {}
    response = client.request(method, path, json=body, headers=headers)
    if holder is None:
        assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Bearer")
    elif holder in (needed, "admin"):
        assert response.status_code in (200, 201), response.text
    else:
        assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize("path", ["/v1/keys", "/healthz", "/schema/openapi.json"])
def test_public_routes_need_no_token(api, path):
    assert api[0].get(path).status_code == 200


def test_a_wrong_token_is_401_without_detail(api):
    response = api[0].get("/v1/runs", headers={"Authorization": "Bearer rl_not-a-real-token-at-all-xxxxxxxx"})
    assert response.status_code == 401 and "rl_not" not in response.text


EVENT = {"trace_id": TRACE, "step": "s", "status": "info"}
BAD_INPUT = [
    ("malformed-json", b'{"trace_id": "', "application/json", 400, None),
    ("wrong-type", json.dumps({**EVENT, "step": 5}), "application/json", 400, "step"),
    ("unknown-field", json.dumps({**EVENT, "colour": "red"}), "application/json", 400, "colour"),
    ("too-long-step", json.dumps({**EVENT, "step": "x" * 201}), "application/json", 400, "step"),
    ("attrs-over-64KiB", json.dumps({**EVENT, "attrs": {"blob": "x" * 70_000}}), "application/json", 400, "attrs"),
    ("body-over-limit", json.dumps({**EVENT, "attrs": {"blob": "x" * 600_000}}), "application/json", 413, None),
    ("batch-over-1000", json.dumps([EVENT] * 1001), "application/json", 400, None),
    ("unknown-status", json.dumps({**EVENT, "status": "exploded"}), "application/json", 400, "status"),
    ("bad-time", json.dumps({**EVENT, "ts": "yesterday"}), "application/json", 400, "ts"),
    ("invalid-trace-id", json.dumps({**EVENT, "trace_id": "0" * 32}), "application/json", 400, "trace_id"),
    ("no-correlation-id", json.dumps({"step": "s", "status": "info"}), "application/json", 400, "trace_id"),
    ("bad-ndjson-line", json.dumps(EVENT) + "\n{nope}\n", "application/x-ndjson", 400, None),
    ("empty-array", b"[]", "application/json", 400, None),
]


@pytest.mark.parametrize("name, body, content_type, status, field", BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_refused_by_name_and_writes_nothing(api, name, body, content_type, status, field):
    client, tokens, _ = api
    before = size(client)
    response = client.post("/v1/events", content=body, headers={"Authorization": f"Bearer {tokens['append']}",
                                                                "Content-Type": content_type})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    if field is not None:
        assert field in (error["field"] or ""), error
    assert size(client) == before


def test_a_batch_with_one_bad_event_writes_none_of_it(api):
    client, tokens, _ = api
    before = size(client)
    batch = [EVENT, EVENT, {**EVENT, "status": "nope"}]
    response = client.post("/v1/events", json=batch, headers={"Authorization": f"Bearer {tokens['append']}"})
    assert response.status_code == 400 and "[2]" in response.json()["error"]["field"]
    assert size(client) == before


def test_bad_queries_name_the_parameter(api):
    client, tokens, _ = api
    headers = {"Authorization": f"Bearer {tokens['read']}"}
    assert client.get("/v1/runs/not-a-trace", headers=headers).json()["error"]["field"] == "trace_id"
    assert client.get("/v1/runs?limit=0", headers=headers).status_code == 400
    assert client.get("/v1/runs?status=weird", headers=headers).json()["error"]["field"] == "status"
    assert client.get("/v1/proofs/inclusion?index=5&tree_size=2", headers=headers).json()["error"]["field"] == "index"
    assert client.get("/v1/proofs/inclusion?index=0&tree_size=99999", headers=headers).json()["error"]["field"] == "tree_size"
    assert client.get(f"/v1/runs/{'a' * 32}", headers=headers).status_code == 404
    assert client.get("/v1/entries/99999", headers=headers).status_code == 404


@pytest.mark.parametrize(("query", "field", "message"), [
    ("from=0&to=1", "from", "from: Expected `int` >= 1"),
    ("from=x&to=1", "from", "from: Expected `int`, got `str`"),
    ("from=1&to=0", "to", "to: Expected `int` >= 1"),
    ("to=1", "from", "Missing required query parameter 'from'"),
    ("from=2&to=1", "from", "from: must not exceed to (1)"),
])
def test_bad_consistency_queries_name_the_parameter_as_the_client_wrote_it(api, query, field, message):
    client, tokens, _ = api
    response = client.get(f"/v1/proofs/consistency?{query}", headers={"Authorization": f"Bearer {tokens['read']}"})
    error = response.json()["error"]
    assert response.status_code == 400 and error["field"] == field and error["message"].startswith(message), error


def test_idempotent_retry_and_conflict(api):
    client, tokens, _ = api
    headers = {"Authorization": f"Bearer {tokens['append']}", "Idempotency-Key": "retry-1"}
    first = client.post("/v1/events", json=EVENT, headers=headers)
    again = client.post("/v1/events", json=EVENT, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    conflict = client.post("/v1/events", json={**EVENT, "step": "other"}, headers=headers)
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "idempotency_conflict"


def test_start_run_retry_returns_the_same_run(api):
    client, tokens, _ = api
    headers = {"Authorization": f"Bearer {tokens['append']}", "Idempotency-Key": "start-1"}
    first = client.post("/v1/runs", json={"step": "nightly"}, headers=headers).json()
    again = client.post("/v1/runs", json={"step": "nightly"}, headers=headers).json()
    assert first["trace_id"] == again["trace_id"] and first["traceparent"] == again["traceparent"]


def test_an_event_for_a_closed_run_names_its_place_in_the_batch(api):
    client, tokens, _ = api
    headers = {"Authorization": f"Bearer {tokens['append']}"}
    closed = "c" * 32
    assert client.post("/v1/events", json={"trace_id": closed, "step": "end", "status": "succeeded", "final": True},
                       headers=headers).status_code == 201
    before = size(client)
    batch = [{"trace_id": "d" * 32, "step": "ok", "status": "info"},
             {"trace_id": closed, "step": "late", "status": "info"}]
    response = client.post("/v1/events", json=batch, headers=headers)
    assert response.status_code == 409 and response.json()["error"]["code"] == "run_closed"
    assert "[1]" in response.json()["error"]["field"]
    assert size(client) == before
