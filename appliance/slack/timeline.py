"""The Full timeline modal: a run's events, one page at a time, within Slack's modal limits.

A page holds `PAGE_EVENTS` events as mrkdwn lines packed into sections of at most 3,000
characters. An event line is at most ~1,300 characters (step and attrs are cut before escaping),
so a page needs at most ~50 sections, and with its six other blocks stays under 100. The title is
fixed and under 24 characters. Previous/Next buttons carry `<trace_id>:<page>`; the modal is
replaced in place with `views.update`.
"""

from __future__ import annotations

import re
from typing import Any

from appliance.slack import mrkdwn
from appliance.slack.blocks import ACTION_CSV, RUN_TITLES, button, context, section
from appliance.store.runs import EventRow, RunSummary

PAGE_EVENTS = 50
TITLE = "Run timeline"
CALLBACK_ID = "runlog_timeline"
ACTION_PREVIOUS = "runlog_timeline_previous"
ACTION_NEXT = "runlog_timeline_next"

_PAGE_VALUE = re.compile(r"([0-9a-f]{32}):(0|[1-9][0-9]{0,15})")


def page_count(steps: int) -> int:
    return max(1, -(-steps // PAGE_EVENTS))


def page_value(trace_id: str, page: int) -> str:
    return f"{trace_id}:{page}"


def parse_page_value(value: str) -> tuple[str, int] | None:
    """(trace ID, page) from a Previous/Next button's value, or None when it is not one of ours."""
    match = _PAGE_VALUE.fullmatch(value)
    return None if match is None else (match[1], int(match[2]))


def timeline_view(run: RunSummary, events: list[EventRow], page: int, *, csv_url: str) -> dict[str, Any]:
    """The modal for page `page` (0-based) of `run`, whose events on that page are `events`."""
    pages = page_count(run.steps)
    first = page * PAGE_EVENTS + 1
    last = page * PAGE_EVENTS + len(events)
    heading = (f"{mrkdwn.STATUS_ICONS[run.status]} *{RUN_TITLES[run.status]}* · `{run.trace_id}`\n"
               f"{run.steps:,} step{'s' if run.steps != 1 else ''} · {mrkdwn.duration(run.duration_seconds)} · "
               f"started {mrkdwn.date(run.started_at)}")
    where = f"Page {page + 1:,} of {pages:,} · events {first:,}–{last:,} of {run.steps:,}" if events else (
        f"Page {page + 1:,} of {pages:,} · no events here")
    lines = [mrkdwn.event_line(event, attrs=True) for event in events]
    navigation = []
    if page > 0:
        navigation.append(button("◀ Previous", ACTION_PREVIOUS, value=page_value(run.trace_id, page - 1)))
    if page + 1 < pages:
        navigation.append(button("Next ▶", ACTION_NEXT, value=page_value(run.trace_id, page + 1)))
    navigation.append(button("Download CSV", ACTION_CSV, url=csv_url))
    blocks = [
        section(heading),
        context(where),
        {"type": "divider"},
        *(section(text) for text in mrkdwn.pack_lines(lines)),
        {"type": "divider"},
        {"type": "actions", "elements": navigation},
        context("The whole run as signed CSV: *Download CSV* (the link expires in 15 minutes), or "
                f"`runlog export {run.trace_id} --format csv -o run.csv` on the appliance."),
    ]
    return {"type": "modal", "callback_id": CALLBACK_ID, "title": {"type": "plain_text", "text": TITLE},
            "close": {"type": "plain_text", "text": "Close"}, "private_metadata": run.trace_id, "blocks": blocks}
