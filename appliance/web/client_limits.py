"""What one client connection may hold: the size and the time of its request head, and the
time its body may take to arrive.

uvicorn has no such limits of its own: neither of its HTTP parsers times out a client that
trickles its request head, and the httptools one takes headers of any size (h11 stops at
`h11_max_incomplete_event_size`). So `server_options(settings)` gives `uvicorn.Config` protocol
classes (h11 or httptools, the same limits on both) that
- answer 431 and close when a request head grows past RUNLOG_MAX_HEADER_BYTES, counted on the
  raw bytes before either parser sees them;
- answer 408 and close when a request head is not complete RUNLOG_HEADER_TIMEOUT seconds after
  its first byte, or after the connection opened (an idle new connection is just closed);
and `BodyDeadline`, ASGI middleware, gives the request body RUNLOG_BODY_TIMEOUT seconds from the
start of the request: a client that trickles its body gets 408 and loses its connection. The
body is read before anything is handed to the writer, so a slow client never holds a writer slot.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from litestar.exceptions import ClientException
from uvicorn.protocols.http.h11_impl import H11Protocol

from appliance.loops import resolved as resolved_loop
from appliance.settings import Settings
from appliance.web.one_write import OneWrite

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is optional (uvicorn[standard])
    HttpToolsProtocol = None  # type: ignore[assignment, misc]

_END_OF_HEAD = (b"\r\n\r\n", b"\n\n")


class RequestTimeout(ClientException):
    """The request body did not arrive in time (408)."""

    status_code = 408


def _raw_response(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": {"code": reason.lower().replace(" ", "_"), "message": message, "field": None}})
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"connection: close\r\n\r\n{body}").encode("ascii")


class _HeadLimits:
    """Mixed into a uvicorn HTTP protocol class; `max_head_bytes` and `head_timeout` are set on
    the subclass `protocol_class` makes."""

    max_head_bytes: int
    head_timeout: float
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._head_bytes, self._head_tail = 0, b""
        self._head_timer: asyncio.TimerHandle | None = None
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)  # type: ignore[misc]

    def _awaiting_head(self) -> bool:
        cycle = getattr(self, "cycle", None)
        return cycle is None or cycle.response_complete

    def _answered_early(self) -> bool:
        """The last request was answered before its body was all in (a 413, say): what still
        arrives is the rest of that body, under the same limits, but its client has its answer."""
        cycle = getattr(self, "cycle", None)
        return cycle is not None and cycle.response_complete and cycle.more_body

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._head_bytes, self._head_tail = 0, b""

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._awaiting_head() or self.transport.is_closing():
            return
        if (self._head_bytes or self._head_tail) and not self._answered_early():
            self._refuse(408, "Request Timeout", f"the request head did not arrive within {self.head_timeout:g} s")
        else:
            self.transport.close()  # an idle connection: nothing to answer

    def _refuse(self, status: int, reason: str, message: str) -> None:
        self._disarm_head_timer()
        if not self._answered_early():
            self.transport.write(_raw_response(status, reason, message))
        self.transport.close()

    def _head_grows_too_large(self, data: bytes) -> bool:
        """Count `data` into the current head; True once the head exceeds `max_head_bytes`."""
        seen = self._head_tail + data
        ends = [seen.find(marker) + len(marker) for marker in _END_OF_HEAD if marker in seen]
        if ends:  # the head ends inside this chunk: what follows is the body or the next request
            return self._head_bytes + min(ends) - len(self._head_tail) > self.max_head_bytes
        self._head_bytes += len(data)
        self._head_tail = seen[-3:]
        return self._head_bytes > self.max_head_bytes

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head() and self._head_grows_too_large(data):
            self._refuse(431, "Request Header Fields Too Large",
                         f"the request head is larger than {self.max_head_bytes} bytes (RUNLOG_MAX_HEADER_BYTES)")
            return
        super().data_received(data)  # type: ignore[misc]
        # Armed only when a head is still awaited after the parser had the bytes (its first byte
        # came in this read or an earlier one): a whole request in one read, the usual case,
        # takes no timer (call_later and cancel cost ~1-2 µs a request).
        if self._awaiting_head():
            self._arm_head_timer()
        else:
            self._disarm_head_timer()


def protocol_class(parser: str, *, max_head_bytes: int, head_timeout: float) -> type[asyncio.Protocol]:
    """A uvicorn protocol class for `parser` ("h11", "httptools" or "auto": httptools when
    installed) with the head limits, writing each response's head and body together (`OneWrite`)."""
    if parser == "auto":
        parser = "h11" if HttpToolsProtocol is None else "httptools"
    if parser == "httptools" and HttpToolsProtocol is None:
        raise ImportError("RUNLOG_HTTP_PARSER=httptools, but httptools is not installed (pip install httptools)")
    base = H11Protocol if parser == "h11" else HttpToolsProtocol
    limits = {"max_head_bytes": max_head_bytes, "head_timeout": head_timeout}
    return type(f"Limited{base.__name__}", (_HeadLimits, OneWrite, base), limits)


def server_options(settings: Settings) -> dict[str, Any]:
    """`uvicorn.Config` options for the limits, the event loop and finding the client's address."""
    return {
        "loop": resolved_loop(settings.loop),
        "http": protocol_class(settings.http_parser, max_head_bytes=settings.max_header_bytes,
                               head_timeout=settings.header_timeout),
        # h11 keeps its own bound, above ours, so ours answers first and both parsers act alike.
        "h11_max_incomplete_event_size": settings.max_header_bytes + 1024,
        # X-Forwarded-For is believed only from the listed proxies (uvicorn's default trusts 127.0.0.1).
        "proxy_headers": bool(settings.trusted_proxies),
        "forwarded_allow_ips": list(settings.trusted_proxies) or None,
    }


class BodyDeadline:
    """ASGI middleware: the request body must arrive within `seconds` of the request's start.

    A read of the body past the deadline is a 408; so is a read still waiting then, found by a
    sweep every `seconds / 10` (at most 1 s) that cancels it. The sweep runs only while some read
    waits (per event loop), so a request whose body is in when it asks, the usual case, costs a
    few dictionary operations: a timer per request cost ~5 us, asyncio.wait_for around each
    receive (a task per call) ~20 us.
    """

    START_KEY = "runlog.started"  # the request's start on the event loop's clock, set once

    def __init__(self, app: Any, seconds: float) -> None:
        self.app, self.seconds = app, seconds
        self._tick = min(1.0, seconds / 10)
        # Per event loop: each waiting read's task and its deadline (_LATE once the sweep cancelled it).
        self._waiting: dict[asyncio.AbstractEventLoop, dict[asyncio.Task[Any], float]] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.app(scope, self.receiver(scope, receive), send)

    def mark_start(self, scope: Any) -> None:
        """Count the deadline from now for this request, whichever `BodyDeadline` reads its body
        (appliance.web.fast_ingest reads the first message before the route does)."""
        scope.setdefault(self.START_KEY, asyncio.get_running_loop().time())

    def receiver(self, scope: Any, receive: Any) -> Any:
        """`receive` under the deadline: `seconds` from the request's start (`mark_start`, else now)."""
        loop = asyncio.get_running_loop()
        started = scope.get(self.START_KEY)
        deadline, complete = (loop.time() if started is None else started) + self.seconds, False

        async def receive_in_time() -> Any:
            nonlocal complete
            if complete:  # the body is in: later calls wait for a disconnect, which may take forever
                return await receive()
            if loop.time() >= deadline:
                raise self._timed_out()
            task = asyncio.current_task()
            waiting = self._waiting.get(loop)
            if waiting is None:
                waiting = self._waiting[loop] = {}
                loop.call_later(self._tick, self._sweep, loop, waiting)
            waiting[task] = deadline  # type: ignore[index]
            try:
                message = await receive()
            except asyncio.CancelledError:
                if waiting.get(task) != _LATE:  # type: ignore[arg-type]
                    raise
                task.uncancel()  # type: ignore[union-attr]  # the cancellation was the sweep's: it ends here
                raise self._timed_out() from None
            finally:
                waiting.pop(task, None)  # type: ignore[arg-type]
            complete = message.get("type") != "http.request" or not message.get("more_body", False)
            return message

        return receive_in_time

    def _sweep(self, loop: asyncio.AbstractEventLoop, waiting: dict[asyncio.Task[Any], float]) -> None:
        now = loop.time()
        for task, deadline in list(waiting.items()):
            if deadline <= now:
                waiting[task] = _LATE
                task.cancel()
        if waiting:
            loop.call_later(self._tick, self._sweep, loop, waiting)
        else:
            del self._waiting[loop]

    def _timed_out(self) -> RequestTimeout:
        return RequestTimeout(f"the request body did not arrive within {self.seconds:g} s (RUNLOG_BODY_TIMEOUT)",
                              headers={"Connection": "close"})


_LATE = float("inf")
