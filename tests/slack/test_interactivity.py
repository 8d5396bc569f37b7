"""`POST /slack/interactivity` through the real app against the fake Slack on 127.0.0.1: the Full
timeline modal (`views.open`, then `views.update` page by page) for runs of 1, 100 and 5,000
steps, Share in channel, and Slack's refusals told to the person through `response_url`."""

from __future__ import annotations

import re
import sqlite3

import pytest

from appliance.slack.web_api import SlackApiError, SlackWebApi
from tests.slack.conftest import HUNDRED, LONG, ONE

_EVENT_NUMBER = re.compile(r"#([0-9]+) ")


def shown_events(view: dict) -> list[int]:
    """The run numbers of the events on a timeline page, in order."""
    sections = [block["text"]["text"] for block in view["blocks"][3:] if block["type"] == "section"]
    return [int(n) for text in sections for n in _EVENT_NUMBER.findall(text)]


def page_button(view: dict, action_id: str) -> dict | None:
    elements = [e for block in view["blocks"] if block["type"] == "actions" for e in block["elements"]]
    return next((e for e in elements if e["action_id"] == action_id), None)


def acknowledged(response) -> None:
    assert (response.status_code, response.content) == (200, b"")


def open_timeline(slack, trace_id: str) -> dict:
    opened = len(slack.fake.calls_to("views.open"))
    acknowledged(slack.press("runlog_timeline", trace_id))
    calls = slack.fake.calls_to("views.open")
    assert len(calls) == opened + 1 and calls[-1]["trigger_id"].startswith("398738663015.")
    return calls[-1]["view"]


def turn(slack, view: dict, action_id: str) -> dict:
    button = page_button(view, action_id)
    acknowledged(slack.press(action_id, button["value"], view={"id": "V0001", "hash": "h1", "type": "modal",
                                                               "private_metadata": view["private_metadata"]}))
    update = slack.fake.calls_to("views.update")[-1]
    assert (update["view_id"], update["hash"]) == ("V0001", "h1")
    return update["view"]


@pytest.mark.parametrize("trace_id, steps", [(ONE, 1), (HUNDRED, 100), (LONG, 5000)])
def test_full_timeline_shows_every_event_once_within_slacks_limits(slack, trace_id, steps):
    view = open_timeline(slack, trace_id)
    seen, pages = shown_events(view), 1
    while page_button(view, "runlog_timeline_next") is not None:
        view = turn(slack, view, "runlog_timeline_next")
        seen += shown_events(view)
        pages += 1
    assert seen == list(range(1, steps + 1))
    assert pages == max(1, steps // 50) and page_button(view, "runlog_download_csv")["url"].startswith(
        f"https://runlog.example/v1/downloads/{trace_id}/csv?")
    assert slack.fake.invalid == []


def test_previous_goes_back_a_page(slack):
    view = turn(slack, turn(slack, open_timeline(slack, HUNDRED), "runlog_timeline_next"), "runlog_timeline_previous")
    assert shown_events(view) == list(range(1, 51)) and page_button(view, "runlog_timeline_previous") is None


def test_share_in_channel_posts_the_summary_without_download_links(slack):
    acknowledged(slack.press("runlog_share", HUNDRED))
    message = slack.fake.calls_to("response_url")[-1]
    assert (message["response_type"], message["replace_original"]) == ("in_channel", False)
    elements = [e["action_id"] for block in message["blocks"] if block["type"] == "actions" for e in block["elements"]]
    assert elements == ["runlog_timeline"]
    assert message["blocks"][-1]["elements"][0]["text"] == "Shared by <@U2CERLKJA> with `/what-happened`"


def test_summary_button_of_the_recent_list(slack):
    acknowledged(slack.press("runlog_show", ONE))
    message = slack.fake.calls_to("response_url")[-1]
    assert message["response_type"] == "ephemeral" and ONE in message["text"]


@pytest.mark.parametrize("status, answer, headers, told", [
    (200, {"ok": False, "error": "expired_trigger_id"}, {}, "3-second window"),
    (429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "30"}, "Try again in 30 s"),
    (200, {"ok": False, "error": "invalid_auth"}, {}, "Slack refused the request (invalid_auth)"),
    (503, "<html>down</html>", {}, "Slack refused the request (http_503)"),
])
def test_slack_refusals_are_told_through_the_response_url(slack, status, answer, headers, told):
    slack.fake.fail("views.open", status, answer, headers)
    acknowledged(slack.press("runlog_timeline", ONE))
    message = slack.fake.calls_to("response_url")[-1]
    assert message["response_type"] == "ephemeral" and message["replace_original"] is False
    assert told in message["blocks"][0]["text"]["text"]


def test_a_failing_response_url_is_still_acknowledged(slack):
    slack.fake.fail("response_url", 404, "expired_url")
    acknowledged(slack.press("runlog_share", ONE))


def test_unknown_run_in_a_button_is_told(slack):
    acknowledged(slack.press("runlog_timeline", "9" * 32))
    assert "No run has the ID" in slack.fake.calls_to("response_url")[-1]["text"]


def test_download_buttons_and_other_interactions_are_only_acknowledged(slack):
    calls = len(slack.fake.calls)
    acknowledged(slack.press("runlog_download_csv"))
    acknowledged(slack.post("/slack/interactivity", {"payload": '{"type": "view_closed", "view": {"id": "V1"}}'}))
    acknowledged(slack.press("runlog_timeline_next", "not-a-page", view={"id": "V0001", "hash": "h1"}))
    assert len(slack.fake.calls) == calls


@pytest.mark.parametrize("payload", ['{"type": "block_actions"}', '{"type": "block_actions", "actions": []}',
                                     '["block_actions"]', "not json", "[" * 200_000])
def test_signed_payload_of_the_wrong_shape_is_a_400(slack, payload):
    assert slack.post("/slack/interactivity", {"payload": payload}).status_code == 400


def test_without_a_bot_token_the_person_is_told_what_to_set(small_slack):
    with small_slack() as app:
        acknowledged(app.press("runlog_timeline", ONE))
        assert "RUNLOG_SLACK_BOT_TOKEN" in app.fake.calls_to("response_url")[-1]["blocks"][0]["text"]["text"]


@pytest.mark.parametrize("url", ["https://hooks.slack.com.evil.example/commands/1", "http://hooks.slack.com/commands/1",
                                 "http://127.0.0.2:9/commands/1", "file:///etc/passwd"])
def test_response_urls_are_followed_only_to_slack_or_the_configured_api(url):
    api = SlackWebApi("http://127.0.0.1:9/api/", "xoxb-token")
    try:
        with pytest.raises(SlackApiError) as raised:
            api.respond(url, {"text": "hi"})
        assert raised.value.code == "bad_response_url"
    finally:
        api.close()


def test_a_store_failure_is_a_friendly_answer_never_a_500(small_slack):
    """To the command in its reply, to a button press through its response_url."""
    with small_slack() as app:
        appliance = app.client.app.state.appliance
        appliance.writer.stop()
        conn = sqlite3.connect(appliance.settings.db_path)
        conn.execute("DROP TABLE runs")  # the derived table every answer reads first
        conn.close()
        message = app.command(ONE)
        assert message["response_type"] == "ephemeral"
        assert "could not answer just now (reference `" in message["blocks"][0]["text"]["text"]
        acknowledged(app.press("runlog_share", ONE))
        told = app.fake.calls_to("response_url")[-1]
        assert "could not do that just now (reference `" in told["blocks"][0]["text"]["text"]
