"""Replays outside their windows, against a real `runlog serve` and the real clock: a signed
download link works until it expires and never after; a signed Slack request is answered once,
and neither a replay nor a request signed outside the 5-minute window is. (In-process tests with
a frozen clock cover the window edges: tests/web/test_export_routes.py, tests/slack/.)"""

import time
from urllib.parse import urlsplit

import httpx
import pytest

from appliance.slack.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature
from tests.e2e.server import ADMIN_TOKEN, Server

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("replay") / "data", RUNLOG_SLACK_SIGNING_SECRET=SECRET,
                    RUNLOG_SYNCHRONOUS="NORMAL").start()
    yield server
    server.kill()


def test_a_download_link_stops_working_when_it_expires(server):
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as http:
        trace = http.post("/v1/runs", json={"step": "replay"}).json()["trace_id"]
        link = http.post(f"/v1/runs/{trace}/links", json={"expires_in": 2}).json()
    target = urlsplit(link["url"])
    path = f"{target.path}?{target.query}"
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        assert anonymous.get(path).status_code == 200
        assert anonymous.get(path).status_code == 200  # within its window a link may be used again
        time.sleep(3)
        expired = anonymous.get(path)
    assert expired.status_code == 403 and expired.json()["error"]["message"] == "this download link is not valid"


def _signed(body: bytes, timestamp: int) -> dict[str, str]:
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: signature(SECRET, str(timestamp), body),
            "Content-Type": "application/x-www-form-urlencoded"}


def test_a_slack_request_is_answered_once_and_only_inside_its_window(server):
    body = b"team_id=T1&user_id=U2CERLKJA&command=%2Fwhat-happened&text=help"
    now = int(time.time())
    with httpx.Client(base_url=server.url, timeout=30) as slack:
        assert slack.post("/slack/commands", content=body, headers=_signed(body, now)).status_code == 200
        assert slack.post("/slack/commands", content=body, headers=_signed(body, now)).status_code == 401  # replay
        # Against the real clock a second may pass between reading it here and the server reading
        # it, so the future case keeps a margin; the exact edges are frozen-clock tests.
        for skew in (-301, -3600, 330):
            late = slack.post("/slack/commands", content=body, headers=_signed(body, int(time.time()) + skew))
            assert late.status_code == 401, skew
        other = body.replace(b"help", b"recent")  # a fresh request inside the window is answered
        assert slack.post("/slack/commands", content=other, headers=_signed(other, now)).status_code == 200
