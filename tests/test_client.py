"""appliance.client's retries and error answers, against a scripted HTTP server on 127.0.0.1 (the
appliance's own answers are covered end to end in tests/e2e/test_serve.py)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from appliance import client as client_module
from appliance.client import ClientError, RunlogClient

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
RECEIPT = {"first_seq": 7, "count": 1, "seq": [7], "entry_hashes": ["00" * 32], "received_at": "2026-11-29T00:00:00Z",
           "receipt": "..."}


class Scripted:
    """An HTTP server that answers each request with the next (status, headers, body) of `answers`
    and keeps what it was sent."""

    def __init__(self, answers: list[tuple[int, dict[str, str], bytes]]) -> None:
        self.answers, self.seen = list(answers), []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                owner.seen.append((self.path, dict(self.headers), body))
                status, headers, payload = owner.answers.pop(0)
                self.send_response(status)
                for name, value in {"content-length": str(len(payload)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "Scripted":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture
def waits(monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(client_module.time, "sleep", slept.append)
    return slept


def serve(*answers):
    return Scripted(list(answers))


def _json(status, value, **headers):
    return status, {"content-type": "application/json", **headers}, json.dumps(value).encode()


UNAVAILABLE = _json(503, {"error": {"code": "unavailable", "message": "the store could not commit", "field": None}})


def test_a_retried_append_carries_the_same_idempotency_key_and_waits_between_attempts(waits):
    with (serve(UNAVAILABLE, (502, {}, b"<html>bad gateway</html>"), _json(201, RECEIPT)) as server,
          RunlogClient(server.url, "t") as client):
        result = client.record(TRACEPARENT, "upload", "succeeded")
    assert result.receipt == RECEIPT and result.traceparent.split("-")[1] == TRACEPARENT.split("-")[1]
    keys = {headers["Idempotency-Key"] for _, headers, _ in server.seen}
    bodies = {body for _, _, body in server.seen}
    assert len(server.seen) == 3 and len(keys) == 1 and len(bodies) == 1
    assert waits == [0.2, 0.4]


def test_retry_after_sets_the_wait_and_is_capped(waits):
    with (serve(_json(503, {"error": {"message": "busy"}}, **{"Retry-After": "2"}),
                _json(503, {"error": {"message": "busy"}}, **{"Retry-After": "86400"}), _json(201, RECEIPT)) as server,
          RunlogClient(server.url, "t") as client):
        client.record(TRACEPARENT, "upload", "succeeded")
    assert waits == [2.0, client_module.MAX_RETRY_WAIT]


def test_the_last_attempts_answer_is_raised_with_the_appliances_message(waits):
    with (serve(UNAVAILABLE, UNAVAILABLE) as server, RunlogClient(server.url, "t", retries=2) as client,
          pytest.raises(ClientError) as raised):
        client.record(TRACEPARENT, "upload", "succeeded")
    assert raised.value.status == 503 and "the store could not commit" in str(raised.value)
    assert len(server.seen) == 2 and waits == [0.2]


@pytest.mark.parametrize("answer", [
    _json(400, {"error": {"code": "invalid", "message": "step: must not be empty", "field": "step"}}),
    _json(409, {"error": {"code": "conflict", "message": "Idempotency-Key was already used", "field": None}}),
    _json(429, {"error": {"code": "too_many_requests", "message": "slow down", "field": None}}, **{"Retry-After": "1"}),
])
def test_refusals_are_not_retried(waits, answer):
    with serve(answer) as server, RunlogClient(server.url, "t") as client, pytest.raises(ClientError) as raised:
        client.record(TRACEPARENT, "upload", "succeeded")
    assert raised.value.status == answer[0] and raised.value.error == json.loads(answer[2])["error"]
    assert len(server.seen) == 1 and waits == []


@pytest.mark.parametrize(("answer", "message"), [
    ((503, {"content-type": "text/html"}, b"<html>maintenance</html>"), "<html>maintenance</html>"),
    ((500, {}, b""), "Internal Server Error"),
    (_json(500, ["not", "an", "error", "object"]), "['not', 'an', 'error', 'object']"),
    ((201, {"content-type": "text/plain"}, b"created"), "the answer is not JSON: 'created'"),
])
def test_answers_without_the_appliances_error_body_are_client_errors(waits, answer, message):
    with (serve(answer) as server, RunlogClient(server.url, "t", retries=1) as client,
          pytest.raises(ClientError) as raised):
        client.record(TRACEPARENT, "upload", "succeeded")
    assert raised.value.status == answer[0] and message in str(raised.value)


def test_a_connection_that_never_works_raises_the_transport_error_after_the_attempts(waits):
    server = serve()
    server.close()  # nothing listens on the port any more
    with RunlogClient(server.url, "t", retries=3) as client, pytest.raises(httpx.ConnectError):
        client.record(TRACEPARENT, "upload", "succeeded")
    assert waits == [0.2, 0.4]


@pytest.mark.parametrize("retries", [0, -1, 1.5, "3"])
def test_retries_must_be_at_least_one_attempt(retries):
    with pytest.raises(ValueError, match="retries must be"):
        RunlogClient("http://127.0.0.1:1", "t", retries=retries)
