"""Exports of one run: `GET /v1/runs/{trace_id}/export?format=json|csv` (export scope), signed
download links (`POST /v1/runs/{trace_id}/links`, export scope) and the public download path they
point at. A CSV answer carries its detached signed note, base64, in the `Runlog-Signature` header."""

from __future__ import annotations

import base64
import math
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import JSONBody, PathParameter, QueryParameter

from appliance.core.errors import InvalidInput
from appliance.core.timefmt import format_utc
from appliance.service import Appliance
from appliance.store.checkpoints import latest_checkpoint
from appliance.store.export import ExportError, RunNotFound, export_csv, export_signed_bundle, run_last_seq
from appliance.web.auth import require_scope
from appliance.web.download_links import DEFAULT_SECONDS, FORMATS, MAX_SECONDS, LinkKey
from appliance.web.errors import Forbidden, NotFound
from appliance.web.routes_runs import TRACE_ID_PARAM

SIGNATURE_HEADER = "Runlog-Signature"
# Documented in the OpenAPI schema only (schema_extra): a download link answers only yes or no.
_FORMAT = QueryParameter(schema_extra={"enum": list(FORMATS)})
_LINK_FORMAT = PathParameter(schema_extra={"enum": list(FORMATS)})
_EXPIRES = QueryParameter(schema_extra={"pattern": "^[1-9][0-9]{0,11}$"}, description="unix seconds")
_SIG = QueryParameter(schema_extra={"pattern": "^[A-Za-z0-9_-]{43}$"}, description="the link's HMAC tag")


class LinkIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A download link request (the body may be left out): the format and how long the link lives
    (default 15 minutes, at most 7 days)."""

    format: Literal["json", "csv"] = "json"
    expires_in: Annotated[int, msgspec.Meta(ge=1, le=MAX_SECONDS)] = DEFAULT_SECONDS


class LinkOut(msgspec.Struct, frozen=True):
    url: str
    expires_at: str


def _appliance(request: Request[Any, Any, Any]) -> Appliance:
    return request.app.state.appliance


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _export(appliance: Appliance, trace_id: str, fmt: str) -> Response[bytes]:
    """The export file of `trace_id`, signing a checkpoint first when the latest does not cover the run."""
    if fmt not in FORMATS:
        raise InvalidInput(f"format: must be one of {', '.join(FORMATS)}", field="format")
    conn = appliance.reader()
    try:
        last = run_last_seq(conn, trace_id)
        latest = latest_checkpoint(conn)
        if (latest is None or latest.size <= last) and appliance.checkpointer is not None:
            appliance.checkpointer.cut_now()
        if fmt == "json":
            signed = export_signed_bundle(conn, trace_id, signer=appliance.log_signer, exported_at=format_utc(_now()),
                                          clock_key=appliance.clock_signer.verifier().to_text())
            return Response(signed.data, media_type="application/json", headers={
                "Content-Disposition": f'attachment; filename="run-{trace_id}.json"'})
        data, note = export_csv(conn, trace_id, signer=appliance.log_signer)
    except RunNotFound as error:
        raise NotFound(str(error)) from None
    except ExportError as error:
        raise NotFound(f"run {trace_id} has no signed evidence yet: {error}") from None
    return Response(data, media_type="text/csv; charset=utf-8; header=present", headers={
        "Content-Disposition": f'attachment; filename="run-{trace_id}.csv"',
        SIGNATURE_HEADER: base64.b64encode(note.encode("utf-8")).decode("ascii")})


def _check_trace_id(trace_id: str) -> str:
    if len(trace_id) != 32 or any(c not in "0123456789abcdef" for c in trace_id):
        raise InvalidInput("trace_id: must be 32 lower-case hex digits", field="trace_id")
    return trace_id


class ExportController(Controller):
    path = "/v1/runs"

    @get("/{trace_id:str}/export", guards=[require_scope("export")], sync_to_thread=True,
         summary="The run's signed evidence: a JSON bundle, or CSV with its signed note in Runlog-Signature")
    def export(self, request: Request[Any, Any, Any], trace_id: Annotated[str, TRACE_ID_PARAM],
               format: Annotated[str, _FORMAT] = "json") -> Response[bytes]:
        return _export(_appliance(request), _check_trace_id(trace_id), format)

    @post("/{trace_id:str}/links", guards=[require_scope("export")], sync_to_thread=True, status_code=201,
          summary="A signed download link for one run in one format, valid 15 minutes by default (at most 7 days)")
    def link(self, request: Request[Any, Any, Any], trace_id: Annotated[str, TRACE_ID_PARAM],
             data: JSONBody[LinkIn | None] = None) -> LinkOut:
        appliance = _appliance(request)
        trace_id = _check_trace_id(trace_id)
        try:
            run_last_seq(appliance.reader(), trace_id)
        except RunNotFound as error:
            raise NotFound(str(error)) from None
        wanted = data or LinkIn()
        path, expires = LinkKey.from_signer(appliance.log_signer).sign(
            trace_id, wanted.format, now=math.floor(_now().timestamp()), seconds=wanted.expires_in)
        return LinkOut(url=appliance.settings.public_url + path,
                       expires_at=format_utc(datetime.fromtimestamp(expires, timezone.utc), 0))


@get("/v1/downloads/{trace_id:str}/{fmt:str}", sync_to_thread=True, include_in_schema=True,
     summary="Download through a signed link (no token); an expired, altered or forged link is a bare 403")
def download(request: Request[Any, Any, Any], trace_id: Annotated[str, TRACE_ID_PARAM],
             fmt: Annotated[str, _LINK_FORMAT], expires: Annotated[str | None, _EXPIRES] = None,
             sig: Annotated[str | None, _SIG] = None) -> Response[bytes]:
    appliance = _appliance(request)
    if not LinkKey.from_signer(appliance.log_signer).check(trace_id, fmt, expires, sig,
                                                          now=math.floor(_now().timestamp())):
        raise Forbidden("this download link is not valid")
    return _export(appliance, trace_id, fmt)
