"""Write routes: `POST /v1/events` and `POST /v1/runs` (append scope). Parsing is in
`appliance.web.ingest`, sequencing and durability in the store's writer."""

import hashlib
import math
from typing import Any

import msgspec
import orjson
from litestar import Controller, Request, Response, post
from litestar.exceptions import ClientException, InternalServerException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.types import Receive, Scope, Send

from appliance.core.entry import decode_entry
from appliance.core.errors import EntryError
from appliance.core.sequencer import Event
from appliance.core.timefmt import format_utc, normalize_rfc3339
from appliance.core.tracecontext import TraceParent, generate_parent_id, generate_trace_id
from appliance.service import Appliance
from appliance.store.writer import AppendRequest, AppendResult
from appliance.web.auth import scope_hook, token_of
from appliance.web.ingest import RequestError, idempotency_key, parse_events, request_headers
from appliance.web.schemas import ReceiptOut, RunStartedOut


class RunStartIn(msgspec.Struct, forbid_unknown_fields=True):
    """`POST /v1/runs` body (optional): the first step's name, attributes and producer time."""

    step: str = "run"
    attrs: dict[str, Any] = msgspec.field(default_factory=dict)
    ts: str | None = None


def receipt_out(result: AppendResult) -> ReceiptOut:
    return ReceiptOut(
        first_seq=result.first_seq,
        count=len(result.entry_hashes),
        seq=list(range(result.first_seq, result.first_seq + len(result.entry_hashes))),
        entry_hashes=[h.hex() for h in result.entry_hashes],
        received_at=result.received_at,
        receipt=result.receipt,
    )


class EncodedJson(Response[Any]):
    """A JSON answer encoded once by msgspec and sent as is; the handler's `Response[...]`
    annotation still documents its shape. Litestar's own way (`Response.__init__`, a headers
    object, a serializer lookup, `ASGIResponse`) costs ~15 µs per request. It honours headers a
    layer adds; no layer of these routes sets cookies or background tasks."""

    def __init__(self, content: msgspec.Struct, status_code: int) -> None:  # no super(): it sets nothing used here
        self.body, self.status_code = msgspec.json.encode(content), status_code
        self.extra: list[tuple[bytes, bytes]] = []

    def to_asgi_response(self, app: Any, request: Any, *, headers: dict[str, str] | None = None,
                         **_: Any) -> "EncodedJson":
        self.extra = [(name.lower().encode("latin-1"), value.encode("latin-1"))
                      for name, value in (headers or {}).items()]
        return self

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(self.body)), *self.extra]
        await send({"type": "http.response.start", "status": self.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": self.body, "more_body": False})


def content_headers(raw_headers: list[tuple[bytes, bytes]]) -> tuple[str | None, str | None]:
    """The first Content-Type and Content-Length values of ASGI headers, as Litestar's
    `request.headers.get` would give them."""
    content_type = content_length = None
    for name, value in raw_headers:
        name = name.lower()
        if name == b"content-type" and content_type is None:
            content_type = value.decode("latin-1")
        elif name == b"content-length" and content_length is None:
            content_length = value.decode("latin-1")
    return content_type, content_length


async def read_body(request: Request[Any, Any, Any], content_length: str | None) -> bytes:
    """The body, read as `request.body()` reads it (413 when the announced or the received size
    passes the route's limit, before reading or as soon as it does; a client gone before the end
    is Litestar's 500), without the headers object and async generator that cost ~10 µs."""
    limit = request.route_handler.resolve_request_max_body_size() or math.inf
    try:
        if content_length is not None and int(content_length) > limit:
            raise RequestEntityTooLarge
    except ValueError:
        raise ClientException(f"Invalid content-length: {content_length!r}") from None
    chunks, size = [], 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise InternalServerException("client disconnected prematurely")
        if message["type"] == "http.request":
            if chunk := message["body"]:
                size += len(chunk)
                if size > limit:
                    raise RequestEntityTooLarge
                chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _status(result: AppendResult) -> int:
    return 200 if result.replayed else 201


def _now() -> str:
    from datetime import datetime, timezone

    return format_utc(datetime.now(timezone.utc))


# Set by the ingest fast path (appliance.web.fast_ingest) to the error its append raised: an append
# that failed may still have reached the writer (a link broken after the commit), so the route
# answers that error instead of appending the request again.
APPEND_FAILED_KEY = "runlog.append_failed"


class EventsController(Controller):
    path = "/v1/events"
    before_request = scope_hook("append")  # a guard would cost a handler copy per request

    @post("/", status_code=201, summary="Append events (one JSON object, a JSON array, or NDJSON)")
    async def append_events(self, request: Request[Any, Any, Any]) -> Response[ReceiptOut]:
        appliance: Appliance = request.app.state["appliance"]  # as an item: no AttributeError built first
        raw_headers = request.scope["headers"]
        content_type, content_length = content_headers(raw_headers)
        body = await read_body(request, content_length)
        source = token_of(request).name
        parsed = parse_events(body, content_type, request_headers(raw_headers), source,
                              max_batch=appliance.settings.max_batch)
        try:
            tried = request.scope.get(APPEND_FAILED_KEY)
            if tried is not None:  # the fast path's append failed: answer its error, never append twice
                raise tried
            result = await appliance.writer.append(
                AppendRequest(parsed.events, source, parsed.idempotency_key, parsed.request_hash))
        except EntryError as error:  # raised by the sequencer: name the event within the request
            index = getattr(error, "index", None)
            if index is not None:
                error.field = parsed.field_path(index, error.field)
            raise
        return EncodedJson(receipt_out(result), _status(result))


async def start_run(request: Request[Any, Any, Any]) -> Response[RunStartedOut]:
    """`POST /v1/runs` (routed by the runs controller): mint a trace ID, append its started event."""
    appliance: Appliance = request.app.state.appliance
    body = await request.body()
    try:
        start = msgspec.json.decode(body, type=RunStartIn) if body.strip() else RunStartIn()
    except msgspec.ValidationError as error:
        raise RequestError(f"body: {error}", field="body") from None
    except msgspec.DecodeError as error:
        raise RequestError(f"body: not valid JSON ({error})", field="body") from None
    source = token_of(request).name
    ts = normalize_rfc3339(start.ts, field="ts") if start.ts is not None else _now()
    key = idempotency_key(request_headers(request.scope["headers"]))
    trace_id, span_id = generate_trace_id(), generate_parent_id()
    # Checked before hashing: orjson cannot encode what the entry rules refuse (integers past 64 bits).
    event = Event(trace_id=trace_id, step=start.step, status="started", ts=ts, source=source,
                  attrs=start.attrs, span_id=span_id).prepared()
    digest = hashlib.sha256(orjson.dumps(["runs/v1", source, start.step, start.attrs, start.ts],
                                         option=orjson.OPT_SORT_KEYS)).digest()
    result = await appliance.writer.append(AppendRequest([event], source, key, digest))
    if result.replayed:  # the run was started by the original request: answer with its IDs
        data = appliance.reader().execute("SELECT data FROM entries WHERE seq = ?", (result.first_seq,)).fetchone()[0]
        original = decode_entry(data)
        trace_id, span_id = original.trace_id, original.span_id or generate_parent_id()
    traceparent = TraceParent(0, trace_id, span_id, 1).to_header()
    return EncodedJson(RunStartedOut(trace_id=trace_id, traceparent=traceparent, receipt=receipt_out(result)),
                       _status(result))
