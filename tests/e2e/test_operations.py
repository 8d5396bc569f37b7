"""Operations against a real `runlog serve` that used tokens, download links and Slack requests:
its stderr is JSON lines (one per request, startup and shutdown) holding no secret at all, and
SIGTERM drains the writer, cuts a last checkpoint and publishes it to a local-directory anchor
before the process exits 0."""

import hashlib
import hmac
import json
import socket
import sqlite3
import threading
import time
from urllib.parse import urlencode, urlsplit

import httpx
import pytest

from appliance.client import RunlogClient
from tests.e2e.server import ADMIN_TOKEN, Server, free_port

SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5-ops-test"
SLACK_BOT_TOKEN = "xoxb-1234567890-ops-test-bot-token"
WRONG_TOKEN = "rl_not-a-real-token-but-shaped-like-one"


def slack_headers(body: bytes, secret: str) -> dict[str, str]:
    stamp = str(int(time.time()))
    digest = hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}",
            "Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """A serve session that ends with SIGTERM; yields what it did, its log and the anchor directory."""
    root = tmp_path_factory.mktemp("ops")
    anchor = root / "anchor"
    server = Server(root / "data", RUNLOG_ANCHOR_DIR=str(anchor), RUNLOG_CHECKPOINT_INTERVAL="86400",
                    RUNLOG_SLACK_SIGNING_SECRET=SLACK_SECRET, RUNLOG_SLACK_BOT_TOKEN=SLACK_BOT_TOKEN,
                    RUNLOG_SLACK_API_URL=f"http://127.0.0.1:{free_port()}/api/").start()
    try:
        made = server.runlog("token", "create", "ops-producer", "--scopes", "append,read,export")
        assert made.returncode == 0, made.stderr
        token = made.stdout.strip()
        with RunlogClient(server.url, token) as client:
            run = client.start_run("nightly")
            ctx = client.record(run, "dump", "succeeded", attrs={"rows": 3})
            client.record(ctx, "upload", "succeeded", final=True)
        trace_id = run.traceparent.split("-")[1]
        http = httpx.Client(base_url=server.url, timeout=10)
        bearer = {"Authorization": f"Bearer {token}"}
        assert http.get(f"/v1/runs/{trace_id}", headers=bearer).status_code == 200
        assert http.get("/v1/runs", headers={"Authorization": f"Bearer {WRONG_TOKEN}"}).status_code == 401
        assert http.get("/v1/runs", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200
        link = http.post(f"/v1/runs/{trace_id}/links", headers=bearer, json={"format": "csv"}).json()["url"]
        parts = urlsplit(link)
        assert http.get(f"{parts.path}?{parts.query}").status_code == 200
        body = urlencode({"command": "/what-happened", "text": trace_id, "user_id": "U1", "team_id": "T1",
                          "channel_id": "C1", "response_url": "http://127.0.0.1:9/hooks/secret-response-path",
                          "trigger_id": "1.2.3", "token": "slack-legacy-verification-token-xyz"}).encode()
        http.post("/slack/commands", content=body, headers=slack_headers(body, SLACK_SECRET))
        http.post("/slack/commands", content=body, headers=slack_headers(body, "a-wrong-secret"))
        assert http.get("/no/such/route").status_code == 404
        started = time.monotonic()
        assert server.terminate(timeout=10) == 0  # inside Docker's default stop timeout
        stopped_in = time.monotonic() - started
    finally:
        server.kill()
    log = (root / f"server-{server.port}.log").read_text()
    secrets = [ADMIN_TOKEN, token, WRONG_TOKEN, SLACK_SECRET, SLACK_BOT_TOKEN, parts.query.split("sig=")[-1],
               "secret-response-path", "slack-legacy-verification-token-xyz"]
    for key in ("log.key", "clock.key"):
        text = (root / "data" / "keys" / key).read_text().strip()
        secrets += [text, text.rsplit("+", 1)[-1]]  # the whole key line and its base64 seed alone
    yield {"log": log, "secrets": secrets, "trace_id": trace_id, "anchor": anchor, "data": root / "data",
           "stopped_in": stopped_in}


def lines(log: str) -> list[dict]:
    return [json.loads(line) for line in log.splitlines() if line.strip()]


def test_every_line_is_json_and_each_request_has_one(session):
    records = lines(session["log"])  # raises on any line that is not JSON
    requests = [r for r in records if r["logger"] == "runlog.request"]
    assert all({"ts", "level", "method", "route", "status", "ms"} <= r.keys() for r in requests)
    routes = {(r["method"], r["route"], r["status"]) for r in requests}
    assert ("GET", "/v1/runs/{trace_id}", 200) in routes and ("GET", "/v1/runs", 401) in routes
    assert ("GET", "unmatched", 404) in routes
    assert sum(1 for r in requests if r["route"] == "/v1/events" and r["status"] == 201) == 2
    assert any(r.get("trace_id") == session["trace_id"] and r["route"] == "/v1/events" for r in requests)
    assert any(r.get("source") == "ops-producer" for r in requests)
    messages = [(r["logger"], r["msg"]) for r in records]
    assert ("runlog.serve", "serving") in messages and ("runlog.service", "started") in messages
    assert messages[-1] == ("runlog.service", "stopped")


def test_the_log_holds_no_token_secret_or_key(session):
    log = session["log"]
    leaked = [secret for secret in session["secrets"] if secret and secret in log]
    assert not leaked
    assert "authorization" not in log.lower() and "bearer" not in log.lower()
    assert "sig=" not in log and "expires=" not in log  # a download link is itself a credential: no query logged


def test_uvicorn_access_log_stays_off(session):
    assert 'HTTP/1.1"' not in session["log"] and "uvicorn.access" not in session["log"]


def test_sigterm_drains_cuts_a_last_checkpoint_and_anchors_it(session):
    conn = sqlite3.connect(session["data"] / "runlog.sqlite")
    size = conn.execute("SELECT count(*) FROM entries").fetchone()[0]
    latest = conn.execute("SELECT max(size) FROM checkpoints").fetchone()[0]
    published = conn.execute("SELECT published_at FROM anchor_outbox WHERE size = ?", (size,)).fetchone()
    conn.close()
    assert size == 3 and latest == size  # no interval cut in this session: the shutdown cut it
    assert published is not None and published[0] is not None
    [note] = [p for p in session["anchor"].rglob("*") if p.is_file() and p.name.lstrip("0") == str(size)]
    assert f"\n{size}\n" in note.read_text()
    stopped = lines(session["log"])[-1]
    assert stopped["entries"] == size and stopped["anchors"][0]["pending"] == 0
    assert stopped["anchors"][0]["published"] >= 1 and stopped["anchors"][0]["error"] is None


def test_an_anchor_that_hangs_cannot_hold_the_shutdown_past_its_budget(tmp_path):
    """A Postgres anchor whose server accepts connections and never answers: SIGTERM still ends in
    an exit 0 well inside Docker's 10 s, with the last checkpoint cut and left queued for it."""
    with socket.create_server(("127.0.0.1", 0)) as blackhole:
        held = []
        accepting = threading.Thread(target=lambda: held.append(blackhole.accept()), daemon=True)
        accepting.start()
        dsn = f"postgresql://runlog@127.0.0.1:{blackhole.getsockname()[1]}/runlog?sslmode=disable"
        server = Server(tmp_path / "data", RUNLOG_ANCHOR_POSTGRES_DSN=dsn, RUNLOG_CHECKPOINT_INTERVAL="86400").start()
        try:
            with RunlogClient(server.url, ADMIN_TOKEN) as client:
                client.start_run("before-shutdown")
            assert server.terminate(timeout=10) == 0
        finally:
            server.kill()
            for conn, _ in held:
                conn.close()
    stopped = lines((tmp_path / f"server-{server.port}.log").read_text())[-1]
    assert stopped["msg"] == "stopped" and stopped["anchors"] == "timed out" and stopped["entries"] == 1
    conn = sqlite3.connect(tmp_path / "data" / "runlog.sqlite")
    assert conn.execute("SELECT size, published_at FROM anchor_outbox").fetchall() == [(1, None)]
    conn.close()
