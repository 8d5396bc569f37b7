"""The OpenAPI document at /schema, completed where Litestar cannot read it off the handlers.

Litestar documents each handler's success answer and, for handlers with parameters, a 400 in
its own error shape. This module replaces that with what the appliance really answers, in one
place: every error as `ErrorOut` with the statuses the route can give (and the headers that go
with them: `WWW-Authenticate` on 401, `Retry-After` on 429), the bearer scheme and the scope
each guarded route demands, the request bodies that handlers read raw (`POST /v1/events`,
`POST /v1/runs`), and the answers that are files or text rather than JSON.

tests/fuzz/test_openapi.py holds the server to this document with schemathesis.
"""

from typing import Any

from litestar import Litestar
from litestar.openapi.spec import (
    Components,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    Parameter,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.routes import HTTPRoute

from appliance.core.entry import MAX_SAFE_INTEGER, MAX_STEP_CHARS, STATUSES
from appliance.web.auth import route_scope

BEARER = "bearer"
ERROR_REF = Reference(ref="#/components/schemas/ErrorOut")
_HEX32, _HEX16 = "^(?!0{32})[0-9a-f]{32}$", "^(?!0{16})[0-9a-f]{16}$"  # all-zero IDs are invalid

STATUS_TEXT = {
    400: "Invalid input: the error names the field and the rule",
    401: "No bearer token, or one that is unknown, revoked or malformed",
    403: "The token lacks the scope this route needs, or the download link is not valid",
    404: "No such run, entry, checkpoint or resource",
    408: "The request body did not arrive within RUNLOG_BODY_TIMEOUT",
    409: "Conflicts with the log: a closed run, or an Idempotency-Key reused for other content",
    413: "The request body is larger than RUNLOG_MAX_BODY_BYTES",
    415: "The Content-Type is neither JSON nor NDJSON in UTF-8",
    429: "Too many failed authentications from this address; see Retry-After",
    503: "The store is unavailable (closed, read-only, full, or failing its checks)",
}

# Statuses a route gives beyond those its shape implies (guards, parameters, bodies).
EXTRA_STATUSES: dict[tuple[str, str], frozenset[int]] = {
    ("POST", "/v1/events"): frozenset({409, 415}),
    ("POST", "/v1/runs"): frozenset({409}),
    ("GET", "/v1/checkpoints/latest"): frozenset({404}),
    ("GET", "/v1/downloads/{trace_id}/{fmt}"): frozenset({403}),
}
# Slack's routes check Slack's request signature instead of a bearer token, and answer a missing,
# wrong or stale one with an empty 401 (Slack shows its users nothing of it).
SLACK_SIGNED = frozenset({("POST", "/slack/commands"), ("POST", "/slack/interactivity")})

_ATTR_REF = Reference(ref="#/components/schemas/AttrValue")
# I-JSON numbers (RFC 7493): integers within +-(2^53-1); attrs nest at most 32 deep and take at
# most 64 KiB as canonical JSON, which JSON Schema cannot say.
_ATTR_VALUE = Schema(any_of=[
    Schema(type="null"), Schema(type="boolean"), Schema(type="string"),
    Schema(type="integer", minimum=-MAX_SAFE_INTEGER, maximum=MAX_SAFE_INTEGER),
    Schema(type="number", minimum=-MAX_SAFE_INTEGER, maximum=MAX_SAFE_INTEGER),
    Schema(type="array", items=_ATTR_REF), Schema(type="object", additional_properties=_ATTR_REF),
])
_ATTRS = Schema(type="object", additional_properties=_ATTR_REF, description="Free-form attributes (I-JSON)")
_STEP = Schema(type="string", min_length=1, max_length=MAX_STEP_CHARS, pattern="^[^\\x00-\\x1f\\x7f-\\x9f]+$")
_EVENT = Schema(
    type="object", additional_properties=False, required=["trace_id", "step", "status"],
    description="One step event. trace_id may instead come from a traceparent or X-Amzn-Trace-Id header.",
    properties={
        "trace_id": Schema(type="string", pattern=_HEX32),
        "span_id": Schema(type=["string", "null"], pattern=_HEX16),
        "parent_id": Schema(type=["string", "null"], pattern=_HEX16),
        "step": _STEP,
        "status": Schema(type="string", enum=sorted(STATUSES)),
        "ts": Schema(type=["string", "null"], format="date-time"),
        "attrs": Schema(one_of=[_ATTRS, Schema(type="null")]),
        "final": Schema(type=["boolean", "null"]),
        "idempotency_key": Schema(type=["string", "null"], pattern="^[ -~]{1,255}$"),
    },
)
_JSON_BODY = "application/json"
RAW_BODIES: dict[tuple[str, str], RequestBody] = {
    ("POST", "/v1/events"): RequestBody(required=True, content={
        _JSON_BODY: OpenAPIMediaType(schema=Schema(one_of=[_EVENT, Schema(type="array", items=_EVENT, min_items=1)])),
        "application/x-ndjson": OpenAPIMediaType(schema=Schema(type="string", description="One event per line")),
    }),
    ("POST", "/v1/runs"): RequestBody(required=False, content={_JSON_BODY: OpenAPIMediaType(schema=Schema(
        type="object", additional_properties=False,
        properties={"step": _STEP, "attrs": _ATTRS,
                    "ts": Schema(type=["string", "null"], format="date-time")}))}),
}
_HEADERS = {
    ("POST", "/v1/events"): [
        Parameter(name="traceparent", param_in="header", required=False, description=(
            "W3C Trace Context: the run's trace-id for events without trace_id (later versions may add fields)"),
                  schema=Schema(type="string", pattern="^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")),
        Parameter(name="X-Amzn-Trace-Id", param_in="header", required=False, description="AWS X-Ray (Root=...)",
                  schema=Schema(type="string", pattern="^Root=1-(?!0{8}-0{24})[0-9a-f]{8}-[0-9a-f]{24}$")),
        Parameter(name="Idempotency-Key", param_in="header", required=False,
                  schema=Schema(type="string", pattern="^[!#-~][ -~]{0,254}$")),
    ],
}
_HEADERS[("POST", "/v1/runs")] = _HEADERS[("POST", "/v1/events")][2:]

_BUNDLE = Schema(type="object", description="An evidence bundle (docs/FORMAT.md)")
_CSV = Schema(type="string", description="RFC 4180 CSV; its signed note is in the Runlog-Signature header")
FILE_ANSWERS: dict[tuple[str, str], dict[str, OpenAPIMediaType]] = {
    key: {_JSON_BODY: OpenAPIMediaType(schema=_BUNDLE), "text/csv": OpenAPIMediaType(schema=_CSV)}
    for key in [("GET", "/v1/runs/{trace_id}/export"), ("GET", "/v1/downloads/{trace_id}/{fmt}")]
}
FILE_ANSWERS[("GET", "/metrics")] = {"text/plain": OpenAPIMediaType(schema=Schema(type="string"))}
_HEALTH_REF = Reference(ref="#/components/schemas/HealthOut")


def _error_components() -> dict[str, Schema]:
    detail = Schema(type="object", additional_properties=False, required=["code", "message", "field"],
                    properties={"code": Schema(type="string"), "message": Schema(type="string"),
                                "field": Schema(type=["string", "null"])})
    return {"ErrorDetail": detail, "AttrValue": _ATTR_VALUE,
            "ErrorOut": Schema(type="object", additional_properties=False, required=["error"],
                               properties={"error": Reference(ref="#/components/schemas/ErrorDetail")})}


def _error(status: int) -> OpenAPIResponse:
    headers: dict[str, Any] = {}
    if status == 401:
        headers["WWW-Authenticate"] = OpenAPIHeader(required=True, schema=Schema(type="string"))
    if status in (429, 503):  # on 503 only when the store is unavailable, not when it is corrupt
        headers["Retry-After"] = OpenAPIHeader(required=status == 429, schema=Schema(type="string", pattern="^[0-9]+$"))
    return OpenAPIResponse(description=STATUS_TEXT[status], headers=headers or None,
                           content={_JSON_BODY: OpenAPIMediaType(schema=ERROR_REF)})


def _statuses(key: tuple[str, str], operation: Operation, scope: str | None) -> set[int]:
    params = operation.parameters or []
    statuses = set(EXTRA_STATUSES.get(key, ()))
    # Every GET of the API may get a 400: a query parameter it does not take (web/query_params.py).
    if params or key in RAW_BODIES or operation.request_body is not None or (
            key[0] == "GET" and key[1].startswith("/v1/")):
        statuses.add(400)
    if any(getattr(p, "param_in", None) == "path" for p in params):
        statuses.add(404)
    if key in RAW_BODIES or operation.request_body is not None:
        statuses |= {408, 413}
    if scope is not None:
        statuses |= {401, 403, 429}
    statuses.add(503)
    return statuses


def _complete(key: tuple[str, str], operation: Operation, scope: str | None) -> None:
    if key in RAW_BODIES:
        operation.request_body = RAW_BODIES[key]
        operation.parameters = [*(operation.parameters or []), *_HEADERS.get(key, [])]
    responses = operation.responses = dict(operation.responses or {})
    success = next((code for code in responses if code.startswith("2")), None)
    if key in RAW_BODIES and success == "201":  # both take an Idempotency-Key
        responses["200"] = OpenAPIResponse(description="A retry with the same Idempotency-Key: the original answer",
                                           content=responses["201"].content)  # type: ignore[union-attr]
    if key in FILE_ANSWERS and success is not None:
        responses[success] = OpenAPIResponse(description=responses[success].description,  # type: ignore[union-attr]
                                             content=FILE_ANSWERS[key])
    for status in sorted(_statuses(key, operation, scope)):
        responses[str(status)] = _error(status)
    if key in SLACK_SIGNED:
        responses["401"] = OpenAPIResponse(
            description="Slack's request signature is missing, wrong or outside its 5-minute window",
            content={"text/plain": OpenAPIMediaType(schema=Schema(type="string", max_length=0))})
    if key == ("GET", "/healthz"):
        responses["503"] = OpenAPIResponse(description="A check failed: the body says which",
                                           content={_JSON_BODY: OpenAPIMediaType(schema=_HEALTH_REF)})
    if scope is not None:
        operation.security = [{BEARER: []}]
        note = f"Needs a bearer token with the `{scope}` scope (or `admin`)."
        operation.description = f"{operation.description}\n\n{note}" if operation.description else note


def _close_request_bodies(operation: Operation, schemas: dict[str, Any]) -> None:
    """Request bodies are msgspec Structs that forbid unknown fields; Litestar leaves that out."""
    body = operation.request_body
    for media in (body.content.values() if isinstance(body, RequestBody) else []):
        schema = media.schema
        for option in [schema, *((schema.one_of or []) if isinstance(schema, Schema) else [])]:
            name = option.ref.rsplit("/", 1)[-1] if isinstance(option, Reference) else None
            if isinstance(schemas.get(name), Schema):
                schemas[name].additional_properties = False


def complete_openapi(app: Litestar) -> None:
    """Complete the app's OpenAPI document in place; call once, after the app is built."""
    openapi = app.openapi_schema  # built once and cached by Litestar: completing it here completes /schema
    components = openapi.components if isinstance(openapi.components, Components) else Components()
    components.schemas = {**(components.schemas or {}), **_error_components()}
    components.security_schemes = {**(components.security_schemes or {}), BEARER: SecurityScheme(
        type="http", scheme="bearer", description="An API token from `runlog token create`")}
    openapi.components = components
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        path_item = (openapi.paths or {}).get(route.path_format or "/")
        if path_item is None:
            continue
        for handler in route.route_handlers:
            for method in handler.http_methods:
                operation = getattr(path_item, method.lower(), None)
                if isinstance(operation, Operation):
                    _complete((method, route.path_format), operation, route_scope(handler))
                    _close_request_bodies(operation, components.schemas)
