"""`POST /slack/commands` through the real app: requests as Slack sends them (form fields, signed),
every reply checked with slack-sdk's Block Kit models; refusals are bare 401s."""

from __future__ import annotations

import json
import time
from urllib.parse import urlsplit

import pytest

from appliance.core.sequencer import Event
from appliance.core.tracecontext import xray_root_from_trace_id
from appliance.slack.signing import signature
from appliance.store.writer import AppendRequest
from tests.slack.conftest import HOSTILE, HOSTILE_STEP, HUNDRED, LONG, ONE, SECRET, TWIN_A, TWIN_B, command_fields
from tests.slack.fake_slack import signed


def texts(message: dict) -> str:
    """Every text in the message, for looking things up."""
    return json.dumps(message["blocks"], ensure_ascii=False)


def buttons(message: dict) -> dict[str, dict]:
    return {element["action_id"]: element for block in message["blocks"] if block["type"] == "actions"
            for element in block["elements"]}


def test_help_or_nothing_shows_usage(slack):
    for text in ("", "help"):
        message = slack.command(text)
        assert message["response_type"] == "ephemeral" and "recent" in texts(message)


def test_recent_lists_the_last_ten_runs_with_status(slack):
    message = slack.command("recent")
    listed = [block for block in message["blocks"] if block.get("accessory", {}).get("action_id") == "runlog_show"]
    assert len(listed) == 10
    assert HOSTILE in listed[0]["text"]["text"] and ":x:" in listed[0]["text"]["text"]


def test_one_step_run_summary_with_working_download_links(slack):
    message = slack.command(ONE)
    assert message["response_type"] == "ephemeral"
    assert message["blocks"][0]["text"]["text"] == ":white_check_mark: Run succeeded"
    assert "*Steps*\\n1" in texts(message) and "only step" in texts(message)
    found = buttons(message)
    assert set(found) == {"runlog_timeline", "runlog_download_csv", "runlog_download_evidence", "runlog_share"}
    assert found["runlog_timeline"]["value"] == ONE
    for action_id, kind in (("runlog_download_csv", "text/csv"), ("runlog_download_evidence", "application/json")):
        url = urlsplit(found[action_id]["url"])
        assert f"{url.scheme}://{url.netloc}" == "https://runlog.example"
        download = slack.client.get(f"{url.path}?{url.query}")  # no bearer token: the link is the credential
        assert download.status_code == 200 and download.headers["content-type"].startswith(kind)
        tampered = slack.client.get(f"{url.path.replace(ONE, HUNDRED)}?{url.query}")
        assert tampered.status_code == 403


def test_failed_run_highlights_its_failures(slack):
    message = slack.command(HUNDRED)
    body = texts(message)
    assert message["blocks"][0]["text"]["text"] == ":x: Run failed"
    assert "*2 failed steps*; the first:" in body and "#41 *step-40*" in body
    last = next(block["text"]["text"] for block in message["blocks"]
                if "Last 5 events" in block.get("text", {}).get("text", ""))
    assert [f"#{n}" in last for n in range(96, 101)] == [True] * 5 and "#95 " not in last
    assert ":x: #100 *step-99* · failed" in last and '`{"error": "exit 1"}`' in last


def test_long_running_run(slack):
    message = slack.command(LONG)
    body = texts(message)
    assert message["blocks"][0]["text"]["text"] == ":hourglass_flowing_sand: Run still running"
    assert "*Steps*\\n5,000" in body and "Last event (still open)" in body and "#5000 item-4999" in body


@pytest.mark.parametrize("form", ["upper-case", "traceparent", "xray", "xray-header", "prefix-8", "prefix-20"])
def test_every_id_form_finds_the_run(slack, form):
    text = {"upper-case": LONG.upper(), "traceparent": f"00-{LONG}-00f067aa0ba902b7-01",
            "xray": xray_root_from_trace_id(LONG), "xray-header": f"Root={xray_root_from_trace_id(LONG)};Sampled=1",
            "prefix-8": LONG[:8], "prefix-20": LONG[:20]}[form]
    assert buttons(slack.command(text))["runlog_timeline"]["value"] == LONG


def test_ambiguous_prefix_lists_the_candidates(slack):
    message = slack.command(TWIN_A[:8])
    body = texts(message)
    assert "Several runs start with `abcdef12`" in body and TWIN_A in body and TWIN_B in body
    assert not buttons(message)
    assert buttons(slack.command(TWIN_B[:9]))["runlog_timeline"]["value"] == TWIN_B


@pytest.mark.parametrize("text, expected", [
    ("99999999aaaa4bbb8ccc000000000001", "No run has the ID `99999999aaaa4bbb8ccc000000000001`"),
    ("99999999", "No run has the ID `99999999`"),
    ("1234567", "give at least 8 hex digits"),
    ("<!channel> please", "could not read `&lt;!channel&gt; please`"),
])
def test_unknown_or_unreadable_ids_get_a_friendly_answer(slack, text, expected):
    message = slack.command(text)
    assert message["response_type"] == "ephemeral" and expected in texts(message)


def test_hostile_step_names_and_attrs_cannot_use_slack_markup(slack):
    body = texts(slack.command(HOSTILE))
    assert "<!channel>" not in body and "<https://evil" not in body and "<@U123>" not in body
    assert "&lt;!channel&gt; deploy &amp; &lt;https://evil.example|click me&gt;" in body
    assert HOSTILE_STEP not in body  # cut to length as well


def test_anchoring_state_follows_the_evidence(slack):
    appliance = slack.client.app.state.appliance
    trace_id = "55555555aaaa4bbb8ccc000000000055"
    appliance.writer.append_sync(AppendRequest([Event(trace_id=trace_id, step="late", status="succeeded",
                                                      ts="2026-11-28T10:00:00Z", source="ci", final=True)], "ci"))
    assert "Not in a signed checkpoint yet" in texts(slack.command(trace_id))
    checkpoint, _ = appliance.checkpointer.cut_now()
    assert f"Signed in checkpoint {checkpoint.size:,}" in texts(slack.command(trace_id))
    appliance.outbox.push()
    assert f"held (checkpoint {checkpoint.size:,})" in texts(slack.command(trace_id))


def test_ssl_check_probe_is_answered_empty(slack):
    response = slack.client.post("/slack/commands", content=b"ssl_check=1&token=legacy-verification-token",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (response.status_code, response.content) == (200, b"")


def _refusals(fields: dict[str, str]) -> dict[str, tuple[bytes, dict[str, str]]]:
    now = int(time.time())
    body, good = signed(SECRET, fields, timestamp=now)

    def at(timestamp: str) -> dict[str, str]:
        return {**good, "X-Slack-Request-Timestamp": timestamp,
                "X-Slack-Signature": signature(SECRET, timestamp, body)}

    return {
        "bad-signature": (body, {**good, "X-Slack-Signature": "v0=" + "0" * 64}),
        "wrong-secret": (body, {**good, "X-Slack-Signature": signature("not-the-secret", str(now), body)}),
        "missing-headers": (body, {"Content-Type": good["Content-Type"]}),
        "missing-signature": (body, {k: v for k, v in good.items() if k != "X-Slack-Signature"}),
        "stale-timestamp": (body, at(str(now - 301))),
        "future-timestamp": (body, at(str(now + 400))),
        "non-numeric-timestamp": (body, at("soon")),
        "body-altered-after-signing": (body + b"0", good),
    }


@pytest.mark.parametrize("path", ["/slack/commands", "/slack/interactivity"])
@pytest.mark.parametrize("case", ["bad-signature", "wrong-secret", "missing-headers", "missing-signature",
                                  "stale-timestamp", "future-timestamp", "non-numeric-timestamp",
                                  "body-altered-after-signing"])
def test_refusals_are_a_bare_401(slack, path, case):
    fields = command_fields(ONE, slack.fake.response_url()) if path.endswith("commands") else {
        "payload": json.dumps({"type": "block_actions", "actions": [{"action_id": "runlog_timeline", "value": ONE}],
                               "trigger_id": "1.2.3", "response_url": slack.fake.response_url()})}
    body, headers = _refusals(fields)[case]
    calls = len(slack.fake.calls)
    response = slack.client.post(path, content=body, headers=headers)
    assert (response.status_code, response.content) == (401, b"")
    assert "www-authenticate" not in response.headers and len(slack.fake.calls) == calls


def test_replay_of_a_signed_request_is_refused(slack):
    body, headers = signed(SECRET, command_fields(ONE, slack.fake.response_url()), timestamp=int(time.time()))
    assert slack.client.post("/slack/commands", content=body, headers=headers).status_code == 200
    again = slack.client.post("/slack/commands", content=body, headers={k.lower(): v for k, v in headers.items()})
    assert (again.status_code, again.content) == (401, b"")


def test_header_names_are_read_in_any_case(slack):
    body, headers = signed(SECRET, command_fields("help", slack.fake.response_url()), timestamp=int(time.time()))
    shouted = {name.upper(): value for name, value in headers.items()}
    assert slack.client.post("/slack/commands", content=body, headers=shouted).status_code == 200


def test_signed_body_that_is_not_a_form_is_a_400(slack):
    body = b"\xff\xfe not a form"
    now = str(int(time.time()))
    response = slack.client.post("/slack/commands", content=body, headers={
        "X-Slack-Request-Timestamp": now, "X-Slack-Signature": signature(SECRET, now, body)})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_input"


def test_a_body_over_the_limit_is_a_413_before_anything_is_read(slack):
    body, headers = signed(SECRET, command_fields("x" * 70_000, slack.fake.response_url()), timestamp=int(time.time()))
    response = slack.client.post("/slack/commands", content=body, headers=headers)
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
