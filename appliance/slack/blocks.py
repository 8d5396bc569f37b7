"""Block Kit messages for `/what-happened`: a run's summary, usage, recent runs, and the friendly
answers to an unknown ID, an ambiguous prefix or a problem.

Messages are plain dicts in Slack's JSON shape (the tests check every one with slack-sdk's
models). Limits kept here: at most 50 blocks, section text at most 3,000 characters, section
fields at most 10 of 2,000, button text at most 75, button values at most 2,000.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from appliance.slack import mrkdwn
from appliance.store.run_lookup import Anchoring, Failures
from appliance.store.runs import EventRow, RunSummary

COMMAND = "/what-happened"
ACTION_TIMELINE = "runlog_timeline"
ACTION_SHARE = "runlog_share"
ACTION_SHOW = "runlog_show"
ACTION_CSV = "runlog_download_csv"
ACTION_EVIDENCE = "runlog_download_evidence"
RUN_TITLES = {"succeeded": "Run succeeded", "failed": "Run failed", "running": "Run still running"}
ERROR_CHARS = 150

Message = dict[str, Any]


def section(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}, **extra}


def context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def button(text: str, action_id: str, *, value: str | None = None, url: str | None = None,
           style: str | None = None) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "button", "text": {"type": "plain_text", "text": text}, "action_id": action_id}
    if value is not None:
        element["value"] = value
    if url is not None:
        element["url"] = url
    if style is not None:
        element["style"] = style
    return element


def ephemeral(text: str, blocks: list[dict[str, Any]]) -> Message:
    """A reply only the person who asked sees; `text` is the notification fallback."""
    return {"response_type": "ephemeral", "text": text, "blocks": blocks}


def friendly(text: str) -> Message:
    """A one-paragraph ephemeral answer (mrkdwn `text`, already escaped)."""
    return ephemeral(text, [section(text)])


@dataclass(frozen=True)
class RunReport:
    """Everything the summary shows; links are absolute URLs expiring at `links_expire_at` (Unix s)."""

    run: RunSummary
    last_events: tuple[EventRow, ...]
    failures: Failures
    first_failure: EventRow | None
    anchoring: Anchoring
    checkpoint_interval: float
    csv_url: str
    evidence_url: str
    links_expire_at: int


def _fields(run: RunSummary) -> list[dict[str, Any]]:
    finished = ("*Finished*\n" if run.closed else "*Last event (still open)*\n") + mrkdwn.date(run.updated_at)
    texts = [f"*Run*\n`{run.trace_id}`", f"*Steps*\n{run.steps:,}",
             f"*Duration*\n{mrkdwn.duration(run.duration_seconds)}", f"*Source*\n`{mrkdwn.escape(run.source, 64)}`",
             f"*Started*\n{mrkdwn.date(run.started_at)}", finished]
    return [{"type": "mrkdwn", "text": text} for text in texts]


def _failures(report: RunReport) -> list[dict[str, Any]]:
    count = report.failures.count
    if not count:
        return []
    text = f":x: *{count:,} failed step{'s' if count != 1 else ''}*"
    if report.first_failure is not None:
        text += "; the first:\n" + mrkdwn.event_line(report.first_failure, attrs=True)
    return [section(text)]


def _anchoring(report: RunReport) -> str:
    anchoring = report.anchoring
    if anchoring.checkpoint_size is None:
        return (":hourglass: Not in a signed checkpoint yet; the next is cut within "
                f"{mrkdwn.duration(report.checkpoint_interval)} (downloads sign one now).")
    cut = f" (cut {mrkdwn.date(anchoring.checkpoint_cut_at)})" if anchoring.checkpoint_cut_at else ""
    text = f":lock: Signed in checkpoint {anchoring.checkpoint_size:,}{cut}."
    if not anchoring.anchors:
        return text + " No anchor configured: the evidence is held on this appliance only."
    parts = []
    for state in anchoring.anchors:
        name = mrkdwn.escape(state.anchor, 64)
        if state.published_size is not None:
            parts.append(f":anchor: {name}: held (checkpoint {state.published_size:,})")
        elif state.last_error:
            parts.append(f":warning: {name}: pending, last error: {mrkdwn.escape(state.last_error, ERROR_CHARS)}")
        else:
            parts.append(f":hourglass: {name}: pending")
    return text + " " + "; ".join(parts) + "."


def run_summary(report: RunReport, *, share: bool = False, shared_by: str | None = None) -> Message:
    """The answer to `/what-happened <id>`: ephemeral with every button, or (`share`) in channel
    without the download links, which stay with the person who asked; `shared_by` is a user ID."""
    run = report.run
    icon = mrkdwn.STATUS_ICONS[run.status]
    title = RUN_TITLES[run.status]
    events = "\n".join(mrkdwn.event_line(event) for event in report.last_events) or "_no events_"
    shown = len(report.last_events)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{icon} {title}", "emoji": True}},
        {"type": "section", "fields": _fields(run)},
        *_failures(report),
        section(f"*Last {shown} event{'s' if shown != 1 else ''}*\n{events}"),
        context(_anchoring(report)),
    ]
    timeline = button("Full timeline", ACTION_TIMELINE, value=run.trace_id)
    if share:
        who = f"<@{shared_by}>" if shared_by else "someone"
        blocks += [{"type": "actions", "elements": [timeline]}, context(f"Shared by {who} with `{COMMAND}`")]
        return {"response_type": "in_channel", "replace_original": False, "text": f"{title}: {run.trace_id}",
                "blocks": blocks}
    blocks += [
        {"type": "actions", "elements": [
            timeline,
            button("Download CSV", ACTION_CSV, url=report.csv_url),
            button("Download evidence", ACTION_EVIDENCE, url=report.evidence_url),
            button("Share in channel", ACTION_SHARE, value=run.trace_id, style="primary"),
        ]},
        context(f"Download links are signed and expire <!date^{report.links_expire_at}^{{time}}|in 15 minutes>. "
                f"Check evidence offline with `runlog verify FILE --key KEY`."),
    ]
    return ephemeral(f"{title}: {run.trace_id}", blocks)


def usage() -> Message:
    text = (f"*{COMMAND}* tells you what happened to an automation run.\n"
            f"• `{COMMAND} <id>`: a run's status, steps, duration, last events and evidence. The ID may be the "
            "32-hex trace ID, a whole `traceparent`, an AWS X-Ray trace ID, or its first 8 or more hex digits.\n"
            f"• `{COMMAND} recent`: the last 10 runs.\n"
            f"• `{COMMAND} help`: this text.")
    return ephemeral(f"{COMMAND} usage", [section(text)])


def recent(runs: list[RunSummary]) -> Message:
    if not runs:
        return friendly("No runs yet: this appliance has not recorded any event.")
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": "Recent runs"}}]
    for run in runs:
        line = (f"{mrkdwn.STATUS_ICONS[run.status]} `{run.trace_id}` · {run.status} · {run.steps:,} "
                f"step{'s' if run.steps != 1 else ''} · started {mrkdwn.date(run.started_at)}")
        blocks.append(section(line, accessory=button("Summary", ACTION_SHOW, value=run.trace_id)))
    return ephemeral(f"The last {len(runs)} runs", blocks)


def not_found(wanted: str) -> Message:
    return friendly(f":mag: No run has the ID `{mrkdwn.escape(wanted, 64)}`. "
                    f"Check the ID, or try `{COMMAND} recent`.")


def ambiguous(prefix: str, candidates: tuple[RunSummary, ...], more: bool) -> Message:
    lines = [f"{mrkdwn.STATUS_ICONS[run.status]} `{run.trace_id}` · {run.steps:,} steps · started "
             f"{mrkdwn.date(run.started_at)}" for run in candidates]
    tail = "\n…and more: type more digits." if more else ""
    text = (f":twisted_rightwards_arrows: Several runs start with `{mrkdwn.escape(prefix, 32)}`; "
            f"which one? (most recent first)\n" + "\n".join(lines) + tail)
    return friendly(text)


def unreadable(text: str, reason: str) -> Message:
    return friendly(f":thinking_face: I could not read `{mrkdwn.escape(text, 80).replace('`', chr(39))}` as a run ID: "
                    f"{mrkdwn.escape(reason, 200)}. Try `{COMMAND} help`.")


def problem(what: str) -> Message:
    """Something went wrong on our side; `what` is a short, already safe explanation."""
    return friendly(f":warning: {what}")
