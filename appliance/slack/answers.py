"""What `/what-happened` answers: the command's text in, a Block Kit message out, read from the store.

Store reads only (a reader connection); the download links are signed here with the export
work's `LinkKey`, so the buttons lead to `/v1/downloads/...` without a bearer token.
"""

from __future__ import annotations

import math
import sqlite3
import time

from appliance.service import Appliance
from appliance.slack import blocks, ids
from appliance.slack.blocks import Message, RunReport
from appliance.slack.timeline import PAGE_EVENTS, page_count, timeline_view
from appliance.store import runs
from appliance.store.run_lookup import Failures, run_anchoring, run_failures
from appliance.web.download_links import DEFAULT_SECONDS, LinkKey

LAST_EVENTS = 5
RECENT_RUNS = 10


def download_url(appliance: Appliance, trace_id: str, fmt: str, *, now: int) -> str:
    path, _ = LinkKey.from_signer(appliance.log_signer).sign(trace_id, fmt, now=now, seconds=DEFAULT_SECONDS)
    return appliance.settings.public_url + path


def run_report(appliance: Appliance, conn: sqlite3.Connection, run: runs.RunSummary) -> RunReport:
    """The summary's content for `run`: last events, failures, anchoring and fresh download links."""
    last = runs.run_events(conn, run.trace_id, after_run_seq=max(-1, run.steps - LAST_EVENTS - 1),
                           limit=LAST_EVENTS)
    # A run's status is "failed" once any step failed, so only then is it worth counting them.
    failures = run_failures(conn, run.trace_id) if run.status == "failed" else Failures(0, None)
    first = None
    if failures.first_run_seq is not None and all(e.run_seq != failures.first_run_seq for e in last):
        first = next(iter(runs.run_events(conn, run.trace_id, after_run_seq=failures.first_run_seq - 1, limit=1)),
                     None)
    now = math.floor(time.time())
    return RunReport(
        run=run, last_events=tuple(last), failures=failures, first_failure=first,
        anchoring=run_anchoring(conn, run.last_seq, [anchor.name for anchor in appliance.anchors]),
        checkpoint_interval=appliance.settings.checkpoint_interval,
        csv_url=download_url(appliance, run.trace_id, "csv", now=now),
        evidence_url=download_url(appliance, run.trace_id, "json", now=now),
        links_expire_at=now + DEFAULT_SECONDS)


def run_message(appliance: Appliance, trace_id: str, *, share: bool = False, shared_by: str | None = None) -> Message:
    """The summary of run `trace_id`: ephemeral, or for the channel when `share` (by user `shared_by`)."""
    conn = appliance.reader()
    run = runs.get_run(conn, trace_id)
    if run is None:
        return blocks.not_found(trace_id)
    return blocks.run_summary(run_report(appliance, conn, run), share=share, shared_by=shared_by)


def answer_command(appliance: Appliance, text: str) -> Message:
    """The reply to `/what-happened <text>`."""
    command = ids.parse_command(text)
    if isinstance(command, ids.Usage):
        return blocks.usage()
    if isinstance(command, ids.Unreadable):
        return blocks.unreadable(command.text, command.reason)
    conn = appliance.reader()
    if isinstance(command, ids.Recent):
        return blocks.recent(list(runs.list_runs(conn, limit=RECENT_RUNS).runs))
    found = ids.resolve(conn, command)
    if isinstance(found, ids.NotFound):
        return blocks.not_found(found.wanted)
    if isinstance(found, ids.Ambiguous):
        return blocks.ambiguous(found.prefix, found.candidates, found.more)
    return blocks.run_summary(run_report(appliance, conn, found.run))


def timeline_page(appliance: Appliance, trace_id: str, page: int) -> dict | None:
    """The Full timeline modal at `page` (clamped to the run's pages), or None for an unknown run."""
    conn = appliance.reader()
    run = runs.get_run(conn, trace_id)
    if run is None:
        return None
    page = min(max(page, 0), page_count(run.steps) - 1)
    events = runs.run_events(conn, trace_id, after_run_seq=page * PAGE_EVENTS - 1, limit=PAGE_EVENTS)
    return timeline_view(run, events, page, csv_url=download_url(appliance, trace_id, "csv",
                                                                 now=math.floor(time.time())))
