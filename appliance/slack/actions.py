"""Button presses on our messages and modal: open or page the Full timeline, share the summary in
the channel, show a run from the recent list. Download buttons are plain links: nothing to do.

Slack wants the interactivity request answered within 3 seconds and a modal opened with the
press's `trigger_id` within the same 3, so the Web API call happens inside the request (with
`web_api.TIMEOUT_SECONDS`). A failed call is told to the person through the press's
`response_url`; presses inside a modal have none, so those failures are only logged.
"""

from __future__ import annotations

import logging
import re

from appliance.service import Appliance
from appliance.slack import blocks, mrkdwn
from appliance.slack.answers import run_message, timeline_page
from appliance.slack.blocks import ACTION_SHARE, ACTION_SHOW, ACTION_TIMELINE, Message
from appliance.slack.payloads import BlockAction
from appliance.slack.timeline import ACTION_NEXT, ACTION_PREVIOUS, parse_page_value
from appliance.slack.web_api import SlackApiError, SlackWebApi

log = logging.getLogger("appliance.slack")

_TRACE_ID = re.compile(r"[0-9a-f]{32}")


def _explain(error: SlackApiError) -> str:
    if error.code == "not_configured":
        return "The Full timeline needs the app's bot token: set `RUNLOG_SLACK_BOT_TOKEN` on the appliance."
    if error.code == "expired_trigger_id":
        return "Slack's 3-second window to open the timeline passed before it reached the appliance. Try again."
    if error.code == "ratelimited":
        wait = f" in {error.retry_after} s" if error.retry_after else " in a minute"
        return f"Slack is rate-limiting this app right now. Try again{wait}."
    if error.code in ("timeout", "unreachable"):
        return "The appliance could not reach Slack's API in time. Try again in a moment."
    return f"Slack refused the request ({mrkdwn.escape(error.code, 60)})."


def tell(api: SlackWebApi, action: BlockAction, message: Message) -> None:
    """Post `message` through the press's response_url, if it has one; a failure there is only logged."""
    if action.response_url is None:
        log.warning("Slack action %s: nowhere to answer: %s", action.action_id, message.get("text"))
        return
    try:
        api.respond(action.response_url, {**message, "replace_original": False})
    except SlackApiError as error:
        log.warning("Slack action %s: could not answer through response_url: %s", action.action_id, error)


def _trace_id(action: BlockAction) -> str | None:
    return action.value if action.value is not None and _TRACE_ID.fullmatch(action.value) else None


def _open_timeline(appliance: Appliance, api: SlackWebApi, action: BlockAction) -> None:
    trace_id = _trace_id(action)
    view = None if trace_id is None else timeline_page(appliance, trace_id, 0)
    if view is None:
        tell(api, action, blocks.not_found(action.value or ""))
        return
    if action.trigger_id is None:
        tell(api, action, blocks.problem("Slack sent no trigger to open the timeline with. Try again."))
        return
    try:
        api.views_open(action.trigger_id, view)
    except SlackApiError as error:
        log.warning("Slack views.open failed: %s", error)
        tell(api, action, blocks.problem(_explain(error)))


def _turn_page(appliance: Appliance, api: SlackWebApi, action: BlockAction) -> None:
    parsed = None if action.value is None else parse_page_value(action.value)
    if parsed is None or action.view_id is None:
        log.warning("Slack action %s: not a page button of an open timeline", action.action_id)
        return
    view = timeline_page(appliance, *parsed)
    if view is None:
        return
    try:
        api.views_update(action.view_id, view, view_hash=action.view_hash)
    except SlackApiError as error:
        # hash_conflict: the person pressed twice and the first press already changed the page.
        if error.code != "hash_conflict":
            log.warning("Slack views.update failed: %s", error)


def _post_summary(appliance: Appliance, api: SlackWebApi, action: BlockAction, *, share: bool) -> None:
    trace_id = _trace_id(action)
    if trace_id is None:
        tell(api, action, blocks.not_found(action.value or ""))
        return
    message = run_message(appliance, trace_id, share=share, shared_by=action.user_id)
    if action.response_url is None:
        log.warning("Slack action %s: no response_url to post the summary to", action.action_id)
        return
    try:
        api.respond(action.response_url, {**message, "replace_original": False})
    except SlackApiError as error:  # the response_url is the only way to tell the person: log it
        log.warning("Slack action %s: could not post the summary: %s", action.action_id, error)


def handle_action(appliance: Appliance, api: SlackWebApi, action: BlockAction) -> None:
    """Do what the pressed button asks; unknown buttons (and download links) are acknowledged only."""
    if action.action_id == ACTION_TIMELINE:
        _open_timeline(appliance, api, action)
    elif action.action_id in (ACTION_NEXT, ACTION_PREVIOUS):
        _turn_page(appliance, api, action)
    elif action.action_id in (ACTION_SHARE, ACTION_SHOW):
        _post_summary(appliance, api, action, share=action.action_id == ACTION_SHARE)
