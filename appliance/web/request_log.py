"""One JSON log line and one latency observation per HTTP request.

`RequestLog` wraps the whole Litestar app (not a route middleware, so unknown routes and wrong
methods are counted too). A line holds the method, the route template (never the raw path or
query: a download link's path is a credential), the status, the latency in ms, the token's name
when one was admitted, and the run's trace ID when the path or a `traceparent` / `X-Amzn-Trace-Id`
header names one. Headers and bodies are never logged.

The lines of requests that end in one turn of the event loop are written together at its end
(one system call instead of one per request; at most `MAX_HELD_LINES` wait), so a line reaches
the log up to one turn after its response was sent.
"""

import asyncio
import logging
import re
import time
from typing import Any

from appliance.logs import REQUEST_LOGGER, log_requests
from appliance.web.auth import TOKEN_KEY
from appliance.web.instruments import Instruments

log = logging.getLogger(REQUEST_LOGGER)

UNMATCHED = "unmatched"
MAX_HELD_LINES = 256
# Any other method token a client sends is counted and logged as OTHER: one label value per
# invented method would let a client grow the metrics without bound.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_TRACE_ID = re.compile(rb"[0-9a-f]{32}")
_XRAY_ROOT = re.compile(rb"Root=1-([0-9a-f]{8})-([0-9a-f]{24})(?:;|$)")


def trace_id_of(scope: dict[str, Any]) -> str | None:
    """The trace ID the request's path or correlation headers name (a well-formed one), or None."""
    from_path = scope.get("path_params", {}).get("trace_id")
    if isinstance(from_path, str) and _TRACE_ID.fullmatch(from_path.encode()):
        return from_path
    for name, value in scope["headers"]:
        if name == b"traceparent":
            if value[2:3] == b"-" and _TRACE_ID.fullmatch(value, 3, 35):
                return value[3:35].decode()
        elif name == b"x-amzn-trace-id":
            match = _XRAY_ROOT.search(value)
            if match:
                return (match[1] + match[2]).decode()
    return None


class RequestLog:
    """ASGI middleware: time each HTTP request, observe it in `instruments`, log one line."""

    def __init__(self, app: Any, instruments: Instruments) -> None:
        self.app, self.instruments = app, instruments
        self._held: list[dict[str, Any]] = []  # lines of this turn of the event loop

    def _write_held(self) -> None:
        held, self._held = self._held, []
        if held:
            log_requests(held)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts: the app failed before answering

        async def observed_send(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            seconds = time.perf_counter() - started
            route = scope.get("path_template") or UNMATCHED  # set by Litestar's router on the same scope
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            self.instruments.observe_request(route, method, status, seconds)
            if log.isEnabledFor(logging.INFO):
                fields = {"method": method, "route": route, "status": status, "ms": round(seconds * 1000, 3)}
                trace_id = trace_id_of(scope)
                if trace_id is not None:
                    fields["trace_id"] = trace_id
                holder = scope.get(TOKEN_KEY)
                if holder is not None:
                    fields["source"] = holder.name
                if not self._held:
                    asyncio.get_running_loop().call_soon(self._write_held)
                self._held.append(fields)
                if len(self._held) >= MAX_HELD_LINES:
                    self._write_held()
