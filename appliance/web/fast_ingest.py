"""`POST /v1/events` answered in plain ASGI when nothing about the request is unusual.

Litestar's routing, `before_request` hook, handler call and exception middleware cost ~230k
instructions per request here (a bare Litestar POST route 261k, a plain ASGI one 24k, through
bench/request_cpu.py's harness), more than parsing an event. `FastIngest` sits in front of the
Litestar app and answers an ingest request itself when
- the bearer is admitted with the append scope (checked without side effects: a refused,
  blocked or malformed credential is left to the route, which counts the failure and answers),
- the whole body comes in the first message, within the size limit, before the body deadline,
- and it parses and appends without an error.
Anything else, at any of those points, goes to the Litestar route with the body read so far
handed back, which runs every check again and answers as it always has (except that it never
appends a request whose append was tried here: it answers that append's error instead): only a request that the
route would accept and answer 200/201 is answered here, with the same bytes the route sends (a
receipt encoded by msgspec; the route's `EncodedJson`). The request's start is kept in the scope
(`BodyDeadline.START_KEY`) so the body deadline counts from it on either path.
"""

import asyncio
from typing import Any

import msgspec

from appliance.store.writer import AppendRequest
from appliance.web.auth import LIMITER_KEY, TOKEN_KEY, admitted
from appliance.web.client_limits import BodyDeadline
from appliance.web.ingest import parse_events, request_headers
from appliance.web.routes_ingest import APPEND_FAILED_KEY, content_headers, receipt_out

PATH = "/v1/events"
_RESPONSE_HEADERS = (b"content-type", b"application/json")
_ENCODER = msgspec.json.Encoder()


class FastIngest:
    """ASGI: the ingest fast path in front of `app` (the Litestar app's ASGI handler)."""

    def __init__(self, app: Any, state: Any, body_timeout: float) -> None:
        self.app, self.state, self.deadline = app, state, BodyDeadline(app, body_timeout)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        self.deadline.mark_start(scope)
        state = self.state
        appliance = state.get("appliance")
        holder = admitted(state.get("tokens"), state.get(LIMITER_KEY), scope, "append")
        if appliance is None or holder is None:
            await self.app(scope, receive, send)
            return
        raw_headers = scope["headers"]
        content_type, content_length = content_headers(raw_headers)
        settings = appliance.settings
        try:
            if content_length is not None and int(content_length) > settings.max_body_bytes:
                raise ValueError
        except ValueError:  # too large or not a number: the route answers 413 or 400
            await self.app(scope, receive, send)
            return
        try:
            message = await self.deadline.receiver(scope, receive)()
        except Exception:  # noqa: BLE001 - the deadline passed: the route's BodyDeadline answers 408 at once
            await self.app(scope, receive, send)
            return
        body = message.get("body", b"") if message["type"] == "http.request" else b""
        if message["type"] != "http.request" or message.get("more_body", False) or len(body) > settings.max_body_bytes:
            await self.app(scope, _replaying(message, receive), send)
            return
        try:
            parsed = parse_events(body, content_type, request_headers(raw_headers), holder.name,
                                  max_batch=settings.max_batch)
        except Exception:  # noqa: BLE001 - every refusal is the route's to word (it parses again)
            await self.app(scope, _replaying(message, receive), send)
            return
        try:
            result = await appliance.writer.append(
                AppendRequest(parsed.events, holder.name, parsed.idempotency_key, parsed.request_hash))
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - the route words it, and does not append again
            scope[APPEND_FAILED_KEY] = error
            await self.app(scope, _replaying(message, receive), send)
            return
        scope[TOKEN_KEY] = holder
        scope["path_template"] = PATH
        answer = _ENCODER.encode(receipt_out(result))
        await send({"type": "http.response.start", "status": 200 if result.replayed else 201,
                    "headers": [_RESPONSE_HEADERS, (b"content-length", b"%d" % len(answer))]})
        await send({"type": "http.response.body", "body": answer, "more_body": False})


def _replaying(first: dict[str, Any], receive: Any) -> Any:
    """`receive` that gives `first` again, then what `receive` gives."""
    pending = [first]

    async def replay() -> Any:
        return pending.pop() if pending else await receive()

    return replay
