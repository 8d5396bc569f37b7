"""`/v1/runs`: start a run (append scope), list runs and read one run (read scope)."""

import re
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.params import PathParameter, QueryParameter

from appliance.core.entry import MAX_SAFE_INTEGER
from appliance.core.errors import InvalidInput
from appliance.service import Appliance
from appliance.store import runs
from appliance.web.auth import require_scope
from appliance.web.errors import NotFound
from appliance.web.routes_ingest import start_run
from appliance.web.schemas import EventOut, RunDetailOut, RunOut, RunPageOut, RunStartedOut

_TRACE_ID = re.compile(r"[0-9a-f]{32}")
# Documented in the OpenAPI schema only (schema_extra); the handlers check them and name the rule.
TRACE_ID_PARAM = PathParameter(schema_extra={"pattern": "^[0-9a-f]{32}$"}, description="32 lower-case hex digits")
_SOURCE = QueryParameter(schema_extra={"pattern": "^[!-~]{1,128}$"}, description="token name the run started with")
_STATUS = QueryParameter(schema_extra={"enum": sorted(runs.RUN_STATUSES)})
_SINCE = QueryParameter(schema_extra={"format": "date-time"}, description="started at or after (RFC 3339)")
_UNTIL = QueryParameter(schema_extra={"format": "date-time"}, description="started before (RFC 3339), after since")
_CURSOR = QueryParameter(schema_extra={"pattern": "^r[0-9]{1,16}$"}, description="next_cursor of the previous page")


def _appliance(request: Request[Any, Any, Any]) -> Appliance:
    return request.app.state.appliance


def run_out(summary: runs.RunSummary) -> RunOut:
    return RunOut(
        trace_id=summary.trace_id, status=summary.status, closed=summary.closed, step_count=summary.steps,
        first_seq=summary.first_seq, last_seq=summary.last_seq, first_ts=summary.first_ts, last_ts=summary.last_ts,
        started_at=summary.started_at, updated_at=summary.updated_at, duration_seconds=summary.duration_seconds,
        source=summary.source, head=summary.head,
    )


def event_out(trace_id: str, row: runs.EventRow) -> EventOut:
    return EventOut(
        seq=row.seq, run_seq=row.run_seq, trace_id=trace_id, step=row.step, status=row.status, final=row.final,
        ts=row.ts, received_at=row.received_at, source=row.source, attrs=row.attrs, entry_hash=row.hash,
        span_id=row.span_id, parent_id=row.parent_id,
    )


def _check_trace_id(trace_id: str) -> str:
    if _TRACE_ID.fullmatch(trace_id) is None:
        raise InvalidInput("trace_id: must be 32 lower-case hex digits", field="trace_id")
    return trace_id


class RunsController(Controller):
    path = "/v1/runs"

    @post("/", status_code=201, guards=[require_scope("append")],
          summary="Start a run: mint its trace ID and record its started event")
    async def start(self, request: Request[Any, Any, Any]) -> Response[RunStartedOut]:
        return await start_run(request)

    @get("/", guards=[require_scope("read")], sync_to_thread=True, summary="List runs, most recent first")
    def list_runs(
        self,
        request: Request[Any, Any, Any],
        status: Annotated[str | None, _STATUS] = None,
        source: Annotated[str | None, _SOURCE] = None,
        since: Annotated[str | None, _SINCE] = None,
        until: Annotated[str | None, _UNTIL] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=runs.MAX_RUNS_PAGE)] = 50,
        cursor: Annotated[str | None, _CURSOR] = None,
    ) -> RunPageOut:
        page = runs.list_runs(_appliance(request).reader(), status=status, source=source, since=since, until=until,
                              limit=limit, cursor=cursor)
        return RunPageOut(runs=[run_out(r) for r in page.runs], next_cursor=page.next_cursor)

    @get("/{trace_id:str}", guards=[require_scope("read")], sync_to_thread=True, summary="A run's summary and one page of its events")
    def get_run(
        self,
        request: Request[Any, Any, Any],
        trace_id: Annotated[str, TRACE_ID_PARAM],
        after: Annotated[int, QueryParameter(ge=-1, le=MAX_SAFE_INTEGER,
                                             description="run_seq after which the page starts")] = -1,
        limit: Annotated[int, QueryParameter(ge=1, le=runs.MAX_EVENTS_PAGE)] = 100,
    ) -> RunDetailOut:
        conn = _appliance(request).reader()
        summary = runs.get_run(conn, _check_trace_id(trace_id))
        if summary is None:
            raise NotFound(f"no run with trace_id {trace_id}")
        rows = runs.run_events(conn, trace_id, after_run_seq=after, limit=limit)
        more = bool(rows) and rows[-1].run_seq + 1 < summary.steps
        return RunDetailOut(run=run_out(summary), events=[event_out(trace_id, r) for r in rows],
                            next_cursor=str(rows[-1].run_seq) if more else None)

