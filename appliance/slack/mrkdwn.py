"""Slack text: escaping, dates that show in the reader's own time zone, durations, one event per line.

Everything a producer sent (step names, attrs) is untrusted: it is cut to a length and escaped
(`&`, `<`, `>`, as Slack's formatting reference asks), so a step named `<!channel>` cannot ping a
channel and a long one cannot break a block's 3,000-character limit.
"""

from __future__ import annotations

import json
import math
from typing import Any

from appliance.core.errors import EntryError
from appliance.core.timefmt import parse_utc
from appliance.store.runs import EventRow

STEP_CHARS = 80
ATTRS_CHARS = 160
STATUS_ICONS = {"succeeded": ":white_check_mark:", "failed": ":x:", "running": ":hourglass_flowing_sand:",
                "started": ":arrow_forward:", "skipped": ":fast_forward:", "info": ":small_blue_diamond:"}


def escape(text: str, limit: int | None = None) -> str:
    """`text` made inert for mrkdwn, cut to `limit` characters (before escaping) with an ellipsis."""
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plain(text: str, limit: int) -> str:
    """`text` for a plain_text field of at most `limit` characters (plain text needs no escaping)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def date(text: str) -> str:
    """A stored RFC 3339 UTC time as a Slack date token (shown in the reader's zone), the text as fallback."""
    try:
        seconds = math.floor(parse_utc(text, field="time").timestamp())
    except EntryError:
        return escape(text, 40)
    return f"<!date^{seconds}^{{date_short_pretty}} {{time_secs}}|{escape(text, 40)}>"


def duration(seconds: float) -> str:
    """`seconds` for people: 850 ms, 4.2 s, 3 min 07 s, 2 h 03 min, 3 d 04 h."""
    if seconds < 0:
        return "-" + duration(-seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    if whole < 86_400:
        return f"{whole // 3600} h {whole % 3600 // 60:02d} min"
    return f"{whole // 86_400} d {whole % 86_400 // 3600:02d} h"


def _attrs(attrs: dict[str, Any]) -> str:
    if not attrs:
        return ""
    text = json.dumps(attrs, ensure_ascii=False, separators=(", ", ": "), sort_keys=True)
    return " `" + escape(text, ATTRS_CHARS).replace("`", "'") + "`"


def event_line(event: EventRow, *, attrs: bool = False) -> str:
    """One event: number in the run, icon, step, status, receive time; failures in bold with their attrs."""
    icon = STATUS_ICONS.get(event.status, ":grey_question:")
    step = escape(event.step, STEP_CHARS)
    failed = event.status == "failed"
    name = f"*{step}*" if failed else step
    extra = _attrs(event.attrs) if (attrs or failed) else ""
    return f"{icon} #{event.run_seq + 1} {name} · {event.status} · {date(event.received_at)}{extra}"


def pack_lines(lines: list[str], limit: int = 3000) -> list[str]:
    """`lines` joined by newlines into as few texts of at most `limit` characters as possible.

    Precondition: no line is longer than `limit` (event lines are at most ~1,000)."""
    texts: list[str] = []
    current = ""
    for line in lines:
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            texts.append(current)
            candidate = line
        current = candidate
    if current:
        texts.append(current)
    return texts
