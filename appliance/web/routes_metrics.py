"""`GET /metrics`: Prometheus text exposition (format 0.0.4) of the log, the writer, request
latency, the store's files, the last checkpoint and every anchor's outbox. Public like /healthz:
it shows counts, sizes and ages, no content."""

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from litestar import Request, Response, get

from appliance.anchors.outbox import anchor_status
from appliance.core.timefmt import parse_utc
from appliance.service import Appliance
from appliance.store.checkpoints import latest_checkpoint
from appliance.store.tree_reader import TreeReader
from appliance.web.instruments import Histogram, Instruments

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

    def histogram(self, name: str, help_text: str, series: list[tuple[dict[str, str], Histogram]]) -> None:
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        for labels, histogram in series:
            rendered = "".join(f'{key}="{_label(val)}",' for key, val in labels.items())
            buckets = histogram.cumulative()
            self.lines += [f'{name}_bucket{{{rendered}le="{le}"}} {count}' for le, count in buckets]
            braces = f"{{{rendered.rstrip(',')}}}" if rendered else ""
            self.lines += [f"{name}_sum{braces} {histogram.sum}", f"{name}_count{braces} {buckets[-1][1]}"]

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


@get("/metrics", sync_to_thread=True, summary="Prometheus metrics: log, requests, writer, store, checkpoints, anchors")
def metrics(request: Request[Any, Any, Any]) -> Response[str]:
    appliance: Appliance = request.app.state.appliance
    if (refresh := getattr(appliance.writer, "refresh", None)) is not None:
        refresh()  # an HTTP worker's view of the writer: fresh from the primary, not its last push
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
    out.metric("runlog_writer_queue_depth", "gauge", "Append requests waiting for the writer's next group commit.",
               [({}, appliance.writer.queue_depth)])
    instruments: Instruments = request.app.state.instruments
    out.metric("runlog_events_ingested_total", "counter", "Entries appended to the log since start.",
               [({}, instruments.events_ingested)])
    out.histogram("runlog_writer_commit_entries", "Entries per group commit.", [({}, instruments.commit_sizes)])
    out.histogram("runlog_http_request_duration_seconds", "HTTP request latency by route template, method and status.",
                  [({"route": route, "method": method, "status": status}, histogram)
                   for (route, method, status), histogram in instruments.request_series()])
    out.metric("runlog_store_bytes", "gauge", "Size of the store's files: the database and its write-ahead log.",
               [({"file": kind}, _size(path)) for kind, path in _store_files(appliance.settings.db_path)])
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
        out.metric("runlog_anchor_published_size", "gauge", "Tree size of the largest checkpoint the anchor holds from us.",
                   [({"anchor": s.anchor}, s.last_published_size or 0) for s in statuses])
    return Response(out.text(), media_type=CONTENT_TYPE)


def _store_files(db_path: Path) -> list[tuple[str, Path]]:
    return [("db", db_path), ("wal", db_path.with_name(db_path.name + "-wal"))]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # no WAL between checkpoints that truncate it, or before the first write
        return 0
