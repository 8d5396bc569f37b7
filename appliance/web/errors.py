"""HTTP errors: the web layer's error classes, the one table mapping errors to statuses, and the
Litestar exception handlers that answer every error as `{"error": {"code", "message", "field"}}`.

Domain errors keep their message (it names the field and the rule); Litestar's own errors
(validation of path and query parameters, unknown routes, wrong methods, bodies over the limit)
get the same shape; anything unexpected is a 500 that says only "internal error" and a
reference, and logs the traceback under that reference.
"""

import logging
import re
import secrets
import sqlite3
from http import HTTPStatus
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from appliance.core.errors import InvalidInput, RunlogError
from appliance.core.sequencer import RunClosedError
# The store raises these (dependencies point from web to store); re-exported for handlers.
from appliance.store.errors import IdempotencyConflict, StoreCorrupt, StoreError, StoreUnavailable
from appliance.web.ingest import UnsupportedMediaType
from appliance.web.schemas import ErrorDetail, ErrorOut

__all__ = ["BEARER_CHALLENGE", "ERROR_TABLE", "EXCEPTION_HANDLERS", "ConflictError", "Forbidden", "IdempotencyConflict",
           "NotFound", "PayloadTooLarge", "StoreCorrupt", "StoreError", "StoreUnavailable", "Unauthorized",
           "error_response", "status_for"]

logger = logging.getLogger("appliance.web")
_MISSING_PARAMETER = re.compile(r"Missing required \w+ parameter '([^']+)'")

BEARER_CHALLENGE = 'Bearer realm="runlog"'


class ConflictError(RunlogError):
    """The request conflicts with what the log already holds."""


class NotFound(RunlogError):
    """The named run, entry, checkpoint or proof does not exist."""


class PayloadTooLarge(RunlogError):
    """The request body is larger than RUNLOG_MAX_BODY_BYTES."""


class Unauthorized(RunlogError):
    """No bearer token, or one that is unknown or revoked."""


class Forbidden(RunlogError):
    """The token is valid but lacks the scope the route needs."""


# Most specific first: the first class the error is an instance of decides.
ERROR_TABLE: tuple[tuple[type[Exception], int, str], ...] = (
    (UnsupportedMediaType, 415, "unsupported_media_type"),
    (RunClosedError, 409, "run_closed"),
    (InvalidInput, 400, "invalid_input"),
    (IdempotencyConflict, 409, "idempotency_conflict"),
    (ConflictError, 409, "conflict"),
    (NotFound, 404, "not_found"),
    (PayloadTooLarge, 413, "payload_too_large"),
    (Unauthorized, 401, "unauthorized"),
    (Forbidden, 403, "forbidden"),
    (StoreUnavailable, 503, "store_unavailable"),
    (StoreCorrupt, 503, "store_corrupt"),
    (StoreError, 503, "store_unavailable"),
)

STORE_RETRY_AFTER = "1"  # seconds, on 503 store_unavailable (appliance.client waits this long)

_LITESTAR_CODES = {400: "invalid_input", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                   405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type",
                   429: "too_many_requests", 503: "store_unavailable"}


def status_for(error: Exception) -> tuple[int, str] | None:
    """(HTTP status, error code) for a domain error, or None when the table does not list it."""
    for kind, status, code in ERROR_TABLE:
        if isinstance(error, kind):
            return status, code
    return None


def error_response(status: int, code: str, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> Response[ErrorOut]:
    """The JSON error body every failure uses."""
    all_headers = dict(headers or {})
    if status == 401:
        all_headers.setdefault("WWW-Authenticate", BEARER_CHALLENGE)
    if code == "store_unavailable":  # a full disk, a failed commit, a writer restarting: worth a retry soon
        all_headers.setdefault("Retry-After", STORE_RETRY_AFTER)
    return Response(ErrorOut(error=ErrorDetail(code=code, message=message, field=field)), status_code=status,
                    headers=all_headers, media_type="application/json")


def _internal(request: Request[Any, Any, Any], error: Exception) -> Response[ErrorOut]:
    reference = secrets.token_hex(6)
    logger.error("internal error %s on %s %s", reference, request.method, request.url.path,
                 exc_info=(type(error), error, error.__traceback__))
    return error_response(500, "internal_error", f"internal error (reference {reference})")


def handle_domain_error(request: Request[Any, Any, Any], error: RunlogError) -> Response[ErrorOut]:
    mapped = status_for(error)
    if mapped is None:
        return _internal(request, error)
    status, code = mapped
    field = error.field if isinstance(error, InvalidInput) else None
    return error_response(status, code, str(error), field)


def handle_http_exception(request: Request[Any, Any, Any], error: HTTPException) -> Response[ErrorOut]:
    status = error.status_code
    if status >= 500 and status != 503:
        return _internal(request, error)
    code = _LITESTAR_CODES.get(status) or HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    message, field = error.detail, None
    if isinstance(error, ValidationException) and isinstance(error.extra, list) and error.extra:
        first = error.extra[0]
        if isinstance(first, dict):
            field = _public_name(request, first.get("key")) if isinstance(first.get("key"), str) else None
            if isinstance(first.get("message"), str):
                message = f"{field}: {first['message']}" if field else first["message"]
    elif isinstance(error, ValidationException) and (missing := _MISSING_PARAMETER.search(message)):
        field = missing[1]
    elif status == 404:
        message = f"no such resource: {request.method} {request.url.path}"
    elif status == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    elif status == 413:
        message = "request body is larger than the configured limit (RUNLOG_MAX_BODY_BYTES)"
    return error_response(status, code, message, field, error.headers)


def _public_name(request: Request[Any, Any, Any], name: str) -> str:
    """A handler parameter's name as the client writes it: `from`, not the Python name `from_size`."""
    try:
        definition = request.route_handler.parsed_fn_signature.parameters[name].kwarg_definition
    except (AttributeError, KeyError, RuntimeError):  # no handler (a 404, say) or not a parameter
        return name
    return getattr(definition, "name", None) or getattr(definition, "query", None) or name


# SQLite primary result codes that say the store cannot be written now (busy, locked, read-only
# filesystem, I/O error, disk full, cannot open), not that the code is wrong: a 503 the client may
# retry, like the writer's StoreUnavailable, rather than a 500.
_SQLITE_UNAVAILABLE = {5, 6, 8, 10, 13, 14}


def handle_unexpected(request: Request[Any, Any, Any], error: Exception) -> Response[ErrorOut]:
    if isinstance(error, sqlite3.Error) and getattr(error, "sqlite_errorcode", 0) & 0xFF in _SQLITE_UNAVAILABLE:
        logger.error("store unavailable on %s %s: %s", request.method, request.url.path, error)
        return error_response(503, "store_unavailable", f"the store cannot be written right now: {error}; retry later")
    return _internal(request, error)


EXCEPTION_HANDLERS: dict[type[Exception], Any] = {
    RunlogError: handle_domain_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
"""Pass as `Litestar(exception_handlers=EXCEPTION_HANDLERS)`."""
