"""`GET /metrics`: Prometheus text exposition (format 0.0.4) of the log, the writer, the last
checkpoint and every anchor's outbox. Public like /healthz: it shows counts and ages, no content."""

from datetime import datetime, timezone
from typing import Any

from litestar import Request, Response, get

from appliance.anchors.outbox import anchor_status
from appliance.core.timefmt import parse_utc
from appliance.service import Appliance
from appliance.store.checkpoints import latest_checkpoint
from appliance.store.tiles import TreeReader

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(self, name: str, kind: str, help_text: str, samples: list[tuple[dict[str, str], float]]) -> None:
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for labels, value in samples:
            rendered = ",".join(f'{key}="{_label(val)}"' for key, val in labels.items())
            self.lines.append(f"{name}{{{rendered}}} {value}" if rendered else f"{name} {value}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


@get("/metrics", sync_to_thread=True, summary="Prometheus metrics: log size, writer, checkpoints, anchors")
def metrics(request: Request[Any, Any, Any]) -> Response[str]:
    appliance: Appliance = request.app.state.appliance
    conn = appliance.reader()
    now = datetime.now(timezone.utc)
    out = _Exposition()
    out.metric("runlog_entries", "gauge", "Entries in the log (the Merkle tree size).",
               [({}, TreeReader(conn).size())])
    out.metric("runlog_writer_commits_total", "counter", "Group commits made by the writer since start.",
               [({}, appliance.writer.commits)])
    out.metric("runlog_writer_last_group_events", "gauge", "Events in the writer's last group commit.",
               [({}, appliance.writer.last_group_events)])
    out.metric("runlog_writer_up", "gauge", "1 while the writer accepts appends.", [({}, int(appliance.writer.running))])
    latest = latest_checkpoint(conn)
    if latest is not None:
        age = (now - parse_utc(latest.cut_at, field="cut_at")).total_seconds()
        out.metric("runlog_checkpoint_size", "gauge", "Tree size of the latest signed checkpoint.", [({}, latest.size)])
        out.metric("runlog_checkpoint_age_seconds", "gauge", "Seconds since the latest checkpoint was signed.",
                   [({}, round(age, 3))])
    statuses = anchor_status(conn, [anchor.name for anchor in appliance.anchors], now)
    if statuses:
        out.metric("runlog_anchor_pending", "gauge", "Checkpoints queued for the anchor and not yet published.",
                   [({"anchor": s.anchor}, s.pending) for s in statuses])
        out.metric("runlog_anchor_lag_seconds", "gauge", "Age of the anchor's oldest pending checkpoint.",
                   [({"anchor": s.anchor}, round(s.lag_seconds, 3)) for s in statuses])
        out.metric("runlog_anchor_failed", "gauge", "1 when the anchor failed permanently (fork or invalid note).",
                   [({"anchor": s.anchor}, int(s.failed)) for s in statuses])
        out.metric("runlog_anchor_error", "gauge", "1 when the anchor's last attempt failed.",
                   [({"anchor": s.anchor}, int(s.last_error is not None)) for s in statuses])
    return Response(out.text(), media_type=CONTENT_TYPE)
