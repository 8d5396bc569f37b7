"""Bearer-token guards and the error table, through a real Litestar app and its TestClient."""

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from litestar import Litestar, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery
from litestar.testing import TestClient

from appliance.core.errors import EntryError, InvalidInput, RunlogError, VerificationError
from appliance.core.sequencer import RunClosedError
from appliance.store.errors import StoreCorrupt, StoreError
from appliance.web.auth import TokenInfo, current_token, require_scope, token_of
from appliance.web.errors import (
    EXCEPTION_HANDLERS,
    ConflictError,
    Forbidden,
    IdempotencyConflict,
    NotFound,
    PayloadTooLarge,
    StoreUnavailable,
    Unauthorized,
    status_for,
)
from appliance.web.ingest import RequestError, UnsupportedMediaType, parse_events, request_headers

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@dataclass(frozen=True)
class Holder:
    name: str
    scopes: frozenset[str]


class DictTokens:
    """A real authenticator over an in-memory table (the store-backed one lives in appliance.store)."""

    def __init__(self, table: dict[str, Holder]) -> None:
        self.table = table

    def authenticate(self, token: str) -> Holder | None:
        return self.table.get(token)


TOKENS = {
    "tok-append": Holder("ci", frozenset({"append"})),
    "tok-read": Holder("viewer", frozenset({"read"})),
    "tok-admin": Holder("root", frozenset({"admin"})),
}

RAISED: dict[str, Exception] = {
    "request": RequestError("events[3].status: must be one of ...", field="events[3].status"),
    "media": UnsupportedMediaType("Content-Type: send application/json", field="Content-Type"),
    "entry": EntryError("attrs: too big", field="attrs"),
    "closed": RunClosedError(f"run {TRACE} was closed", field="trace_id"),
    "idempotency": IdempotencyConflict("Idempotency-Key 'k' was used for different content"),
    "conflict": ConflictError("conflict"),
    "missing": NotFound(f"no run {TRACE}"),
    "large": PayloadTooLarge("too large"),
    "unauthorized": Unauthorized("no token"),
    "forbidden": Forbidden("no scope"),
    "unavailable": StoreUnavailable("store closed"),
    "store": StoreError("the store has schema version 9, newer than this runlog knows"),
    "corrupt": StoreCorrupt("chain broken", seq=41),
    "unmapped": VerificationError("chain broken at /srv/secret/path"),
    "bug": ValueError("secret internals /srv/secret/path"),
}


@post("/v1/events", guards=[require_scope("append")], dependencies={"token": Provide(current_token)})
async def ingest(request: Request, token: NamedDependency[TokenInfo]) -> dict[str, object]:
    parsed = parse_events(await request.body(), request.headers.get("content-type"),
                          request_headers(request.scope["headers"]), token.name, max_batch=10)
    return {"source": token_of(request).name, "events": len(parsed.events)}


@get("/v1/runs", guards=[require_scope("read")])
async def runs(request: Request) -> dict[str, str]:
    return {"holder": token_of(request).name}


@get("/open")
async def unguarded(request: Request) -> dict[str, str]:
    return {"holder": token_of(request).name}


@get("/raise/{kind:str}")
async def raiser(kind: FromPath[str]) -> None:
    raise RAISED[kind]


@get("/proofs/inclusion")
async def inclusion(index: FromQuery[int], tree_size: FromQuery[int]) -> dict[str, int]:
    return {"index": index, "tree_size": tree_size}


def make_app(with_tokens: bool = True) -> Litestar:
    app = Litestar([ingest, runs, unguarded, raiser, inclusion], exception_handlers=EXCEPTION_HANDLERS,
                   request_max_body_size=4096)
    if with_tokens:
        app.state.tokens = DictTokens(TOKENS)
    return app


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(make_app()) as test_client:
        yield test_client


def error_of(response) -> dict[str, object]:
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}
    return body["error"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


EVENT = json.dumps({"trace_id": TRACE, "step": "deploy", "status": "info"})


# --- auth -------------------------------------------------------------------------------------

def test_right_scope_reaches_the_handler_with_the_holder(client):
    response = client.post("/v1/events", content=EVENT, headers=bearer("tok-append"))
    assert response.status_code == 201 and response.json() == {"source": "ci", "events": 1}


def test_admin_implies_every_scope(client):
    assert client.post("/v1/events", content=EVENT, headers=bearer("tok-admin")).json()["source"] == "root"
    assert client.get("/v1/runs", headers=bearer("tok-admin")).json() == {"holder": "root"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"},
                                     {"Authorization": "Bearer a b"}, bearer("nope"), bearer("x" * 2000)],
                         ids=["missing", "basic", "empty", "two-words", "unknown", "huge"])
def test_missing_malformed_or_unknown_token_is_401_with_a_bearer_challenge(client, headers):
    response = client.post("/v1/events", content=EVENT, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="runlog"'
    assert error_of(response)["code"] == "unauthorized"


def test_two_authorization_headers_are_refused(client):
    response = client.post("/v1/events", content=EVENT,
                           headers=[("Authorization", "Bearer tok-append"), ("Authorization", "Bearer tok-admin")])
    assert response.status_code == 401


def test_scheme_is_case_insensitive(client):
    assert client.get("/v1/runs", headers={"Authorization": "bearer tok-read"}).status_code == 200


def test_wrong_scope_is_403_naming_the_scope(client):
    response = client.post("/v1/events", content=EVENT, headers=bearer("tok-read"))
    assert response.status_code == 403
    error = error_of(response)
    assert error["code"] == "forbidden" and "'append'" in error["message"] and "viewer" in error["message"]


def test_route_without_guard_has_no_holder(client):
    assert client.get("/open", headers=bearer("tok-admin")).status_code == 401


def test_no_token_store_yet_is_503():
    with TestClient(make_app(with_tokens=False)) as no_store:
        response = no_store.get("/v1/runs", headers=bearer("tok-read"))
    assert response.status_code == 503 and error_of(response)["code"] == "store_unavailable"


def test_unknown_scope_is_refused_when_the_route_is_defined():
    with pytest.raises(InvalidInput):
        require_scope("write")


# --- the error table --------------------------------------------------------------------------

@pytest.mark.parametrize("kind, status, code, field", [
    ("request", 400, "invalid_input", "events[3].status"),
    ("media", 415, "unsupported_media_type", "Content-Type"),
    ("entry", 400, "invalid_input", "attrs"),
    ("closed", 409, "run_closed", "trace_id"),
    ("idempotency", 409, "idempotency_conflict", None),
    ("conflict", 409, "conflict", None),
    ("missing", 404, "not_found", None),
    ("large", 413, "payload_too_large", None),
    ("unauthorized", 401, "unauthorized", None),
    ("forbidden", 403, "forbidden", None),
    ("unavailable", 503, "store_unavailable", None),
    ("store", 503, "store_unavailable", None),
    ("corrupt", 503, "store_corrupt", None),
])
def test_domain_errors_map_to_statuses_in_one_table(client, kind, status, code, field):
    response = client.get(f"/raise/{kind}")
    assert response.status_code == status
    error = error_of(response)
    assert (error["code"], error["field"], error["message"]) == (code, field, str(RAISED[kind]))
    assert status_for(RAISED[kind]) == (status, code)
    assert response.headers.get("retry-after") == ("1" if code == "store_unavailable" else None)


@pytest.mark.parametrize("kind", ["unmapped", "bug"])
def test_unexpected_errors_are_500_without_internals(client, caplog, kind):
    with caplog.at_level(logging.ERROR, logger="appliance.web"):
        response = client.get(f"/raise/{kind}")
    assert response.status_code == 500
    error = error_of(response)
    assert error["code"] == "internal_error" and "secret" not in response.text
    reference = error["message"].split("reference ")[1].rstrip(")")
    assert any(reference in record.getMessage() for record in caplog.records)


def test_plain_runlog_errors_are_not_in_the_table():
    assert status_for(RunlogError("x")) is None and status_for(ValueError("x")) is None


def test_bad_query_parameter_names_the_field(client):
    response = client.get("/proofs/inclusion", params={"index": "x", "tree_size": "2"})
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["field"]) == ("invalid_input", "index")


def test_missing_query_parameter_names_the_field(client):
    response = client.get("/proofs/inclusion", params={"index": "1"})
    assert response.status_code == 400 and error_of(response)["field"] == "tree_size"


def test_unknown_route_is_404_in_the_same_shape(client):
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"


def test_wrong_method_is_405_with_allow(client):
    response = client.delete("/v1/runs")
    assert response.status_code == 405 and "GET" in response.headers["allow"]
    assert error_of(response)["code"] == "method_not_allowed"


def test_body_over_the_limit_is_413(client):
    response = client.post("/v1/events", content=b"[" + b" " * 5000 + b"]", headers=bearer("tok-append"))
    assert response.status_code == 413 and error_of(response)["code"] == "payload_too_large"


def test_ingest_errors_reach_the_client_naming_the_field(client):
    body = json.dumps([{"trace_id": TRACE, "step": "a", "status": "info"}, {"trace_id": TRACE, "step": 5}])
    response = client.post("/v1/events", content=body, headers=bearer("tok-append"))
    assert response.status_code == 400 and error_of(response)["field"] == "events[1].step"
    response = client.post("/v1/events", content=EVENT, headers={**bearer("tok-append"), "Content-Type": "text/csv"})
    assert response.status_code == 415 and error_of(response)["field"] == "Content-Type"
    response = client.post("/v1/events", content=json.dumps({"step": "a", "status": "info"}),
                           headers={**bearer("tok-append"), "traceparent": "00-bad"})
    assert response.status_code == 400 and error_of(response)["field"] == "traceparent"


# --- the scope matrix of the real app: every route, every kind of holder ------------------------

# Every route the appliance serves and what admits a request to it: a bearer scope, or
# "public", "link" (a signed download link) or "slack" (Slack's request signature). A route
# missing here fails `test_every_route_is_in_the_matrix`, so new routes are classified as they land.
ROUTE_ACCESS = {
    ("POST", "/v1/events"): "append",
    ("POST", "/v1/runs"): "append",
    ("GET", "/v1/runs"): "read",
    ("GET", "/v1/runs/{trace_id}"): "read",
    ("GET", "/v1/entries/{seq}"): "read",
    ("GET", "/v1/proofs/inclusion"): "read",
    ("GET", "/v1/proofs/consistency"): "read",
    ("GET", "/v1/runs/{trace_id}/export"): "export",
    ("POST", "/v1/runs/{trace_id}/links"): "export",
    ("POST", "/v1/checkpoints"): "admin",
    ("GET", "/v1/checkpoints"): "public",
    ("GET", "/v1/checkpoints/latest"): "public",
    ("GET", "/v1/checkpoints/{size}"): "public",
    ("GET", "/v1/keys"): "public",
    ("GET", "/healthz"): "public",
    ("GET", "/metrics"): "public",
    ("GET", "/v1/downloads/{trace_id}/{fmt}"): "link",
    ("POST", "/slack/commands"): "slack",
    ("POST", "/slack/interactivity"): "slack",
}
REAL_ADMIN = "admin-token-for-the-scope-matrix-0123"
HOLDERS = ["none", "unknown", "append", "read", "export", "admin"]


def _served_routes(app: Litestar) -> set[tuple[str, str]]:
    return {(method, route.path_format) for route in app.routes if hasattr(route, "route_handlers")
            for handler in route.route_handlers for method in handler.http_methods
            if method != "OPTIONS" and not route.path_format.startswith("/schema")}


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    from appliance.settings import Settings
    from appliance.store.db import connect
    from appliance.store.tokens import create_token
    from appliance.web.app import create_app

    settings = Settings.from_env({"RUNLOG_DATA_DIR": str(tmp_path_factory.mktemp("matrix")),
                                  "RUNLOG_ADMIN_TOKEN": REAL_ADMIN, "RUNLOG_SYNCHRONOUS": "NORMAL",
                                  "RUNLOG_AUTH_FAILURE_BURST": "100000"})
    with TestClient(create_app(settings)) as test_client:
        conn = connect(settings.db_path)
        conn.execute("BEGIN IMMEDIATE")
        tokens = {scope: create_token(conn, f"matrix-{scope}", [scope], now="2026-11-28T00:00:00Z")[0]
                  for scope in ("append", "read", "export")}
        conn.execute("COMMIT")
        tokens.update(admin=REAL_ADMIN, unknown="rl_" + "x" * 43)
        started = test_client.post("/v1/runs", json={"step": "matrix"}, headers=bearer(REAL_ADMIN)).json()
        assert test_client.post("/v1/checkpoints", headers=bearer(REAL_ADMIN)).status_code == 201
        yield test_client, tokens, started["trace_id"]


def test_every_route_is_in_the_matrix(real):
    assert _served_routes(real[0].app) == set(ROUTE_ACCESS)


@pytest.mark.parametrize("holder", HOLDERS)
@pytest.mark.parametrize("method, path", sorted(ROUTE_ACCESS), ids=lambda value: value)
def test_scope_matrix_of_every_route(real, method, path, holder):
    client, tokens, trace = real
    access = ROUTE_ACCESS[(method, path)]
    url = path.format(trace_id=trace, seq=0, size=1, fmt="json")
    query = {"/v1/proofs/inclusion": {"index": 0, "tree_size": 1},
             "/v1/proofs/consistency": {"from": 1, "to": 1}}.get(path, {})
    body = {"trace_id": trace, "step": "m", "status": "info"} if path == "/v1/events" else {}
    headers = {} if holder == "none" else bearer(tokens[holder])
    response = client.request(method, url, params=query, json=body if method == "POST" else None, headers=headers)
    if access in ("public", "link", "slack"):
        # A bearer token neither opens nor closes these: the link's and Slack's signatures do.
        assert response.status_code == {"public": 200, "link": 403, "slack": 401}[access], response.text
    elif holder in ("none", "unknown"):
        assert response.status_code == 401 and response.headers["www-authenticate"] == 'Bearer realm="runlog"'
    elif holder in (access, "admin"):
        assert response.status_code < 400, response.text
    else:
        assert response.status_code == 403 and access in response.json()["error"]["message"]
