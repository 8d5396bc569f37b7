"""The ingest fast path (appliance.web.fast_ingest) answers exactly as the Litestar route: two
apps over one appliance, one with the fast path and one without, get the same generated
requests (good and bad tokens, Content-Types, bodies of every shape and rule, correlation and
idempotency headers, oversized bodies) and must give the same status, Content-Type and JSON
(for an accepted request: the same receipt fields and count; seq and hashes differ, since both
append). Plus the paths the fast path leaves to the route: a body in several messages, a body
that arrives too late."""

import asyncio
import itertools
import json
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from appliance.service import init_appliance, open_appliance
from appliance.settings import Settings
from appliance.store.db import connect
from appliance.store.errors import StoreUnavailable
from appliance.store.tokens import create_token
from appliance.web.app import create_app
from appliance.web.fast_ingest import FastIngest

MAX_BODY = 16 * 1024
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    data = tmp_path_factory.mktemp("fast") / "data"
    settings = replace(Settings(), data_dir=data, keys_dir=data / "keys", synchronous="NORMAL",
                       auth_failure_burst=100_000, max_body_bytes=MAX_BODY)
    init_appliance(settings)
    appliance = open_appliance(settings)
    conn = connect(settings.db_path)
    conn.execute("BEGIN IMMEDIATE")
    tokens = {scope: create_token(conn, f"only-{scope}", {scope}, now="2026-11-28T00:00:00Z")[0]
              for scope in ("append", "read", "admin")}
    conn.execute("COMMIT")
    conn.close()
    fast_app = create_app(settings, appliance=appliance)
    slow_app = create_app(settings, appliance=appliance)
    assert isinstance(slow_app.asgi_handler.app, FastIngest)
    slow_app.asgi_handler.app = slow_app.asgi_handler.app.app  # the route alone
    try:
        with TestClient(fast_app) as fast, TestClient(slow_app) as slow:
            yield fast, slow, tokens
    finally:
        appliance.close()


def _trace() -> str:
    return f"{next(_ids):032x}"


FIELD = st.sampled_from
EVENT = st.fixed_dictionaries({}, optional={
    "trace_id": FIELD(["TRACE", "TRACE", "not-hex", "0" * 32, None, 7]),
    "step": FIELD(["fetch", "", "x" * 300, "tab\there", 5, None]),
    "status": FIELD(["info", "started", "succeeded", "failed", "bogus", None]),
    "ts": FIELD(["2026-11-28T10:00:00Z", "2026-11-28T11:00:00+01:00", "yesterday", None]),
    "attrs": FIELD([{"a": 1}, {"n": 2**60}, {"f": 1.5}, "str", None, {"k": "v" * 20_000}]),
    "final": FIELD([True, False, None]),
    "span_id": FIELD(["00f067aa0ba902b7", "xyz"]),
    "idempotency_key": FIELD(["KEY", ""]),
    "colour": FIELD(["unknown field"]),
})


@st.composite
def requests(draw):
    shape = draw(FIELD(["object", "object", "array", "ndjson", "raw"]))
    if shape == "raw":
        body = draw(FIELD(['{', '', '  [', '\ufeff{}', '[]', 'null', '{"step":"a","step":"b","status":"info"}']))
    else:
        events = draw(st.lists(EVENT, min_size=1, max_size=3)) if shape != "object" else [draw(EVENT)]
        texts = [json.dumps(event) for event in events]
        body = texts[0] if shape == "object" else "\n".join(texts) if shape == "ndjson" else f"[{','.join(texts)}]"
    content_type = draw(FIELD([None, "application/json", "application/x-ndjson" if shape == "ndjson" else "application/json",
                               "text/plain", "application/json; charset=latin-1", "application/cloudevents+json"]))
    auth = draw(FIELD(["append", "append", "admin", "read", "unknown", "malformed", "missing", "two"]))
    headers = draw(st.fixed_dictionaries({}, optional={
        "traceparent": FIELD(["00-TRACE-00f067aa0ba902b7-01", "00-zz-00f067aa0ba902b7-01"]),
        "idempotency-key": FIELD(["KEY", "a" * 300]),
    }))
    return body, content_type, auth, headers


def _send(client, tokens, request, trace: str, key: str):
    body, content_type, auth, headers = request
    sent = {name: value.replace("TRACE", trace).replace("KEY", key) for name, value in headers.items()}
    if content_type is not None:
        sent["content-type"] = content_type
    authorization = {"append": f"Bearer {tokens['append']}", "admin": f"Bearer {tokens['admin']}",
                     "read": f"Bearer {tokens['read']}", "unknown": "Bearer not-a-known-token-0123456789",
                     "malformed": "Basic dXNlcjpwYXNz"}.get(auth)
    header_list = list(sent.items()) + ([("authorization", authorization)] if authorization else [])
    if auth == "two":
        header_list += [("authorization", f"Bearer {tokens['append']}")] * 2
    content = body.replace('"TRACE"', f'"{trace}"').replace('"KEY"', f'"{key}"').encode()
    return client.post("/v1/events", content=content, headers=header_list)


def _comparable(response):
    data = response.json()
    if response.status_code in (200, 201):
        data = {"fields": sorted(data), "count": data["count"]}
    return response.status_code, response.headers.get("content-type"), data


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=requests())
def test_the_fast_path_answers_as_the_route(pair, request):
    fast, slow, tokens = pair
    route = _send(slow, tokens, request, _trace(), f"slow-{next(_ids)}")
    answered = _send(fast, tokens, request, _trace(), f"fast-{next(_ids)}")
    assert _comparable(answered) == _comparable(route)


def test_an_oversized_body_and_a_replayed_key_answer_as_the_route(pair):
    fast, slow, tokens = pair
    auth = {"Authorization": f"Bearer {tokens['append']}"}
    big = json.dumps({"trace_id": _trace(), "step": "s", "status": "info", "attrs": {"k": "v" * MAX_BODY}})
    assert _comparable(fast.post("/v1/events", content=big, headers=auth)) == \
        _comparable(slow.post("/v1/events", content=big, headers=auth))
    event = {"trace_id": _trace(), "step": "s", "status": "info", "ts": "2026-11-28T10:00:00Z"}
    first = fast.post("/v1/events", json=event, headers={**auth, "Idempotency-Key": "replayed-1"})
    again = fast.post("/v1/events", json=event, headers={**auth, "Idempotency-Key": "replayed-1"})
    via_route = slow.post("/v1/events", json=event, headers={**auth, "Idempotency-Key": "replayed-1"})
    assert (first.status_code, again.status_code, via_route.status_code) == (201, 200, 200)
    assert first.json() == again.json() == via_route.json()


def _asgi(app, body_messages, token: str, delay: float = 0.0):
    """Call `app` (an ASGI callable) with the body in `body_messages`, `delay` s before each."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/events", "raw_path": b"/v1/events", "root_path": "", "query_string": b"",
             "headers": [(b"authorization", f"Bearer {token}".encode())], "client": ("127.0.0.1", 5),
             "server": ("127.0.0.1", 80), "state": {}}
    pending = list(body_messages)
    sent = []

    async def receive():
        if pending:
            await asyncio.sleep(delay)
            return pending.pop(0)
        await asyncio.Event().wait()

    async def send(message):
        sent.append(message)

    async def run():
        await app(scope, receive, send)
        return sent[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:]))

    return run()


def _appliance_with_token(tmp_path, **settings_changes):
    """A real appliance in `tmp_path`, its settings, an append-scope token, and a connection to its store."""
    settings = replace(Settings(), data_dir=tmp_path / "data", keys_dir=tmp_path / "data" / "keys",
                       synchronous="NORMAL", **settings_changes)
    init_appliance(settings)
    appliance = open_appliance(settings)
    conn = connect(settings.db_path)
    conn.execute("BEGIN IMMEDIATE")
    token = create_token(conn, "ci", {"append"}, now="2026-11-28T00:00:00Z")[0]
    conn.execute("COMMIT")
    return settings, appliance, token, conn


def test_a_body_in_several_messages_and_a_late_body_go_to_the_route(tmp_path):
    settings, appliance, token, conn = _appliance_with_token(tmp_path, body_timeout=0.3)
    conn.close()
    app = create_app(settings, appliance=appliance)
    event = json.dumps({"trace_id": _trace(), "step": "s", "status": "info"}).encode()
    try:
        with TestClient(app) as client:
            handler = app  # Litestar.__call__ puts the app on the scope, then runs asgi_handler (the fast path first)
            split = [{"type": "http.request", "body": event[:10], "more_body": True},
                     {"type": "http.request", "body": event[10:], "more_body": False}]
            status, answer = client.blocking_portal.call(_asgi, handler, split, token)
            assert status == 201 and answer["count"] == 1
            late = [{"type": "http.request", "body": event, "more_body": False}]
            status, answer = client.blocking_portal.call(_asgi, handler, late, token, 1.0)
            assert status == 408 and "RUNLOG_BODY_TIMEOUT" in answer["error"]["message"]
    finally:
        appliance.close()


class _FailsOnce:
    """The appliance's writer, whose first append fails as a broken worker link does (the append
    may have been committed by then); counts the appends it is asked for."""

    def __init__(self, writer):
        self.writer, self.calls = writer, 0

    async def append(self, request):
        self.calls += 1
        if self.calls == 1:
            raise StoreUnavailable("the primary process is not answering; retry shortly")
        return await self.writer.append(request)

    def __getattr__(self, name):
        return getattr(self.writer, name)


def test_a_failed_append_is_answered_by_the_route_and_never_tried_twice(tmp_path):
    settings, appliance, token, conn = _appliance_with_token(tmp_path)
    real_writer = appliance.writer
    appliance.writer = _FailsOnce(real_writer)
    trace = _trace()
    try:
        with TestClient(create_app(settings, appliance=appliance)) as client:
            response = client.post("/v1/events", json={"trace_id": trace, "step": "s", "status": "info"},
                                   headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 503 and response.json()["error"]["code"] == "store_unavailable"
            assert appliance.writer.calls == 1
            retried = client.post("/v1/events", json={"trace_id": trace, "step": "s", "status": "info"},
                                  headers={"Authorization": f"Bearer {token}"})
            assert retried.status_code == 201 and appliance.writer.calls == 2
    finally:
        appliance.writer = real_writer
        appliance.close()
    assert conn.execute("SELECT count(*) FROM entries WHERE trace_id = ?", (trace,)).fetchone()[0] == 1
    conn.close()
