"""The cheaper pieces of `POST /v1/events` behave like what they replace: the `scope_hook`
(a before_request hook instead of a guard), the pre-encoded `EncodedJson` answer and the
one-timer `BodyDeadline`. Real Litestar apps and real ASGI calls; no timing assertions."""

import asyncio
import json
from typing import Any

import msgspec
import pytest
from litestar import Controller, Litestar, Request, Response, get, post
from litestar.datastructures import ResponseHeader
from litestar.testing import TestClient

from appliance.web.auth import require_scope, route_scope, scope_hook, token_of
from appliance.web.client_limits import BodyDeadline
from appliance.web.errors import EXCEPTION_HANDLERS
from appliance.web.rate_limit import FailureLimiter
from appliance.web.routes_ingest import EncodedJson, content_headers, read_body
from appliance.web.schemas import ErrorDetail
from tests.web.test_auth_errors import DictTokens, Holder


TOKENS = {"tok-append": Holder("ci", frozenset({"append"})), "tok-read": Holder("viewer", frozenset({"read"})),
          "tok-admin": Holder("root", frozenset({"admin"}))}


class Hooked(Controller):
    path = "/hooked"
    before_request = scope_hook("append")

    @post("/")
    async def append(self, request: Request[Any, Any, Any]) -> dict[str, str]:
        return {"holder": token_of(request).name}


@post("/guarded", guards=[require_scope("append")])
async def guarded(request: Request[Any, Any, Any]) -> dict[str, str]:
    return {"holder": token_of(request).name}


@get("/open")
async def unguarded() -> None:
    return None


def make_app(burst: int = 3) -> Litestar:
    app = Litestar([Hooked, guarded, unguarded], exception_handlers=EXCEPTION_HANDLERS)
    app.state.tokens = DictTokens(TOKENS)
    app.state.auth_limiter = FailureLimiter(burst, 60.0)
    return app


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def answer(response) -> tuple[int, dict[str, Any], str | None, str | None]:
    return (response.status_code, response.json(), response.headers.get("www-authenticate"),
            response.headers.get("retry-after"))


@pytest.mark.parametrize("headers", [{}, bearer("tok-append"), bearer("tok-read"), bearer("tok-admin"),
                                     bearer("unknown-token"), {"Authorization": "Basic eA=="},
                                     {"Authorization": "bearer tok-append"}])
def test_the_hook_answers_exactly_as_the_guard(headers):
    with TestClient(make_app()) as client:
        hooked = answer(client.post("/hooked", headers=headers))
    with TestClient(make_app()) as client:
        guarded_ = answer(client.post("/guarded", headers=headers))
    assert hooked == guarded_
    assert hooked[0] in (201, 401, 403)


def test_the_hook_counts_failures_and_locks_out_like_the_guard():
    for path in ("/hooked", "/guarded"):
        with TestClient(make_app(burst=2)) as client:
            statuses = [client.post(path, headers=bearer("guess")).status_code for _ in range(3)]
            locked = client.post(path, headers=bearer("tok-append"))
            assert statuses == [401, 401, 429], path
            assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0, path
            assert locked.json()["error"]["code"] == "too_many_requests"


def test_route_scope_reads_guards_and_hooks():
    app = make_app()
    scopes = {route.path: route_scope(handler) for route in app.routes for handler in route.route_handlers
              if "OPTIONS" not in handler.http_methods and not route.path.startswith("/schema")}
    assert scopes == {"/hooked": "append", "/guarded": "append", "/open": None}


def test_unknown_scope_is_refused_when_the_hook_is_made():
    with pytest.raises(Exception, match="unknown scope 'write'"):
        scope_hook("write")


# --- EncodedJson ----------------------------------------------------------------------------------


class Out(msgspec.Struct, frozen=True):
    text: str
    numbers: list[int]


OUT = Out(text="café \"quoted\"\n", numbers=[1, 2**53 - 1])


@post("/encoded", response_headers=[ResponseHeader(name="X-Layer", value="yes")])
async def encoded() -> Response[Out]:
    return EncodedJson(OUT, 201)


@post("/litestar", status_code=201, response_headers=[ResponseHeader(name="X-Layer", value="yes")])
async def litestar_way() -> Response[Out]:
    return Response(OUT, status_code=201)


def test_encoded_json_answers_what_litestar_would():
    with TestClient(Litestar([encoded, litestar_way])) as client:
        ours, theirs = client.post("/encoded"), client.post("/litestar")
    assert ours.status_code == theirs.status_code == 201
    assert ours.content == theirs.content and json.loads(ours.content) == msgspec.to_builtins(OUT)
    for name in ("content-type", "content-length", "x-layer"):
        assert ours.headers[name] == theirs.headers[name], name


def test_encoded_json_documents_the_struct_in_openapi():
    schema = Litestar([encoded]).openapi_schema.to_schema()
    content = schema["paths"]["/encoded"]["post"]["responses"]["201"]["content"]["application/json"]
    assert content["schema"] == {"$ref": "#/components/schemas/Out"}


# --- BodyDeadline ---------------------------------------------------------------------------------


@post("/echo", status_code=200)
async def echo(request: Request[Any, Any, Any]) -> dict[str, str]:
    return {"body": (await request.body()).decode()}


def deadline_app(seconds: float) -> Any:
    from litestar.middleware import DefineMiddleware

    return Litestar([echo], exception_handlers=EXCEPTION_HANDLERS,
                    middleware=[DefineMiddleware(BodyDeadline, seconds=seconds)])


async def call(app: Any, chunks: list[tuple[float, bytes, bool]]) -> tuple[int, dict[str, str], bytes]:
    """POST /echo with body chunks (delay before, bytes, more_body); then the client idles."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def client() -> None:
        for delay, data, more in chunks:
            await asyncio.sleep(delay)
            await queue.put({"type": "http.request", "body": data, "more_body": more})

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/echo", "raw_path": b"/echo", "root_path": "", "query_string": b"", "headers": [],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {}}
    feeding = asyncio.create_task(client())
    try:
        await asyncio.wait_for(app(scope, queue.get, send), 10)
    finally:
        feeding.cancel()
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_a_body_in_chunks_inside_the_deadline_is_read():
    status, _, body = asyncio.run(call(deadline_app(1.0), [(0, b'{"a"', True), (0.05, b':1}', False)]))
    assert (status, json.loads(body)) == (200, {"body": '{"a":1}'})


def test_a_body_that_stops_arriving_is_408_and_closes():
    status, headers, body = asyncio.run(call(deadline_app(0.2), [(0, b'{"a"', True)]))
    assert status == 408 and headers.get("connection") == "close"
    error = msgspec.json.decode(body, type=dict[str, ErrorDetail])["error"]
    assert error.code == "request_timeout" and "RUNLOG_BODY_TIMEOUT" in error.message


def test_a_deadline_that_passed_before_the_read_is_408():
    @post("/late", status_code=200)
    async def late(request: Request[Any, Any, Any]) -> None:
        await asyncio.sleep(0.3)  # the app does other work past the deadline, then reads
        await request.body()

    from litestar.middleware import DefineMiddleware

    app = Litestar([late], exception_handlers=EXCEPTION_HANDLERS,
                   middleware=[DefineMiddleware(BodyDeadline, seconds=0.1)])

    async def run() -> int:
        messages: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            await asyncio.Event().wait()  # the body never comes
            return {}

        async def send(message: dict[str, Any]) -> None:
            messages.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/late", "raw_path": b"/late", "root_path": "", "query_string": b"",
                 "headers": [], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {}}
        await asyncio.wait_for(app(scope, receive, send), 10)
        return messages[0]["status"]

    assert asyncio.run(run()) == 408


def test_a_cancellation_from_elsewhere_stays_a_cancellation():
    async def run() -> None:
        async def receive() -> dict[str, Any]:
            await asyncio.Event().wait()
            return {}

        async def app(scope: Any, receive_: Any, send: Any) -> None:
            await receive_()

        async def send(message: Any) -> None:
            raise AssertionError("nothing is answered")

        task = asyncio.create_task(BodyDeadline(app, seconds=60)({"type": "http"}, receive, send))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())


def test_after_the_body_receive_waits_without_a_deadline():
    async def run() -> dict[str, Any]:
        messages = [{"type": "http.request", "body": b"x", "more_body": False}, {"type": "http.disconnect"}]

        async def receive() -> dict[str, Any]:
            if len(messages) == 1:
                await asyncio.sleep(0.3)  # the disconnect comes after the deadline
            return messages.pop(0)

        seen: list[dict[str, Any]] = []

        async def app(scope: Any, receive_: Any, send: Any) -> None:
            seen.append(await receive_())
            seen.append(await receive_())

        await BodyDeadline(app, seconds=0.1)({"type": "http"}, receive, None)
        return seen[-1]

    assert asyncio.run(run()) == {"type": "http.disconnect"}


# --- read_body ------------------------------------------------------------------------------------


@post("/read", status_code=200, request_max_body_size=10)
async def read(request: Request[Any, Any, Any]) -> dict[str, str]:
    content_type, content_length = content_headers(request.scope["headers"])
    return {"body": (await read_body(request, content_length)).decode(), "type": str(content_type)}


def body_messages(chunks: list[bytes]) -> list[dict[str, Any]]:
    return [{"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1} for i, chunk in enumerate(chunks)]


async def post_read(messages: list[dict[str, Any]], headers: list[tuple[bytes, bytes]]) -> tuple[int, Any, int]:
    """POST /read, `receive` giving `messages` then a disconnect; (status, answer, messages the app took)."""
    app = Litestar([read], exception_handlers=EXCEPTION_HANDLERS)
    taken = 0

    async def receive() -> dict[str, Any]:
        nonlocal taken
        taken += 1
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/read", "raw_path": b"/read", "root_path": "", "query_string": b"", "headers": headers,
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {}}
    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body), taken


def test_read_body_joins_chunks_and_takes_the_first_content_type():
    headers = [(b"Content-Type", b"application/x-ndjson"), (b"content-type", b"text/csv")]
    assert asyncio.run(post_read(body_messages([b"12345", b"", b"678"]), headers)) == \
        (200, {"body": "12345678", "type": "application/x-ndjson"}, 3)


def test_read_body_refuses_an_announced_size_over_the_limit_before_reading():
    status, answer_, taken = asyncio.run(post_read(body_messages([b"x" * 11]), [(b"content-length", b"11")]))
    assert (status, answer_["error"]["code"], taken) == (413, "payload_too_large", 0)


def test_read_body_refuses_a_received_size_over_the_limit_as_it_passes():
    status, answer_, taken = asyncio.run(post_read(body_messages([b"x" * 6, b"x" * 6, b"x" * 6]), []))
    assert (status, answer_["error"]["code"], taken) == (413, "payload_too_large", 2)


def test_read_body_refuses_a_malformed_content_length():
    status, answer_, _ = asyncio.run(post_read(body_messages([b"{}"]), [(b"content-length", b"two")]))
    assert status == 400 and "content-length" in answer_["error"]["message"]


def test_a_client_gone_before_the_end_of_the_body_is_litestars_500():
    status, answer_, taken = asyncio.run(post_read(body_messages([b"12", b"34"])[:1], []))
    assert (status, answer_["error"]["code"], taken) == (500, "internal_error", 2)


def test_the_sweep_cancels_only_late_reads_and_stops_when_none_waits():
    from appliance.web.client_limits import RequestTimeout

    async def run() -> tuple[list[str], int]:
        outcomes: list[str] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            outcomes.append((await receive())["type"])

        middleware = BodyDeadline(app, seconds=0.2)

        async def slow_body() -> dict[str, Any]:
            await asyncio.sleep(delays.pop(0))
            return {"type": "http.request", "body": b"x", "more_body": False}

        delays = [0.05, 10.0]
        await middleware({"type": "http"}, slow_body, None)  # arrives in time
        with pytest.raises(RequestTimeout):
            await middleware({"type": "http"}, slow_body, None)  # would take 10 s
        await asyncio.sleep(0.1)  # one more sweep finds nothing waiting and stops
        return outcomes, len(middleware._waiting)

    assert asyncio.run(run()) == (["http.request"], 0)
