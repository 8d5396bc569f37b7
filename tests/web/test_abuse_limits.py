"""Request-size, header-size and slow-client limits, against a real `runlog serve` process on
127.0.0.1 and raw sockets, once with each HTTP parser uvicorn can use (h11 and httptools): the
limits are ours (appliance.web.client_limits), so both must act alike.

The server runs with short limits (1 s for the head, 2 s for the body) so the slow clients here
are refused quickly; the socket timeouts below only keep a broken server from hanging the test."""

import json
import socket
import time

import httpx
import pytest

from tests.e2e.server import ADMIN_TOKEN, Server

MAX_HEADER_BYTES = 8192
MAX_BODY_BYTES = 65536
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
EVENT = json.dumps({"trace_id": TRACE, "step": "s", "status": "info"}).encode()


@pytest.fixture(scope="module", params=["h11", "httptools"])
def server(request, tmp_path_factory):
    server = Server(tmp_path_factory.mktemp(f"limits-{request.param}") / "data", RUNLOG_HTTP_PARSER=request.param,
                    RUNLOG_MAX_HEADER_BYTES=str(MAX_HEADER_BYTES), RUNLOG_MAX_BODY_BYTES=str(MAX_BODY_BYTES),
                    RUNLOG_HEADER_TIMEOUT="1", RUNLOG_BODY_TIMEOUT="2", RUNLOG_SYNCHRONOUS="NORMAL").start()
    yield server
    server.kill()


def connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.settimeout(10)
    return sock


def read_response(sock: socket.socket, *, then_closed: bool = False) -> tuple[int, dict[str, str], bytes, bool]:
    """(status, headers, body, closed): one response and, if `then_closed`, whether the server then
    closed the connection (else `closed` is False without waiting)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        body += sock.recv(65536)
    closed = then_closed and sock.recv(1) == b""
    return int(lines[0].split()[1]), headers, body, closed


def request_head(path: str, *extra: str, method: str = "GET", length: int | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {ADMIN_TOKEN}", *extra]
    if length is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {length}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def still_serving(server: Server) -> bool:
    return httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200


def test_a_head_past_the_limit_is_431_and_closed(server):
    with connect(server) as sock:
        sock.sendall(request_head("/healthz", "X-Padding: " + "a" * MAX_HEADER_BYTES))
        status, headers, body, closed = read_response(sock, then_closed=True)
    assert (status, closed) == (431, True)
    assert json.loads(body)["error"]["code"] == "request_header_fields_too_large"
    assert still_serving(server)


def test_many_small_headers_count_too(server):
    with connect(server) as sock:
        sock.sendall(request_head("/healthz", *[f"X-H{n}: v" for n in range(2000)]))
        assert read_response(sock)[0] == 431


def test_a_head_sent_in_pieces_is_counted_across_them(server):
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        for _ in range(MAX_HEADER_BYTES // 1000 + 2):
            sock.sendall(b"X-Piece: " + b"p" * 990 + b"\r\n")
        assert read_response(sock)[0] == 431


def test_a_head_just_under_the_limit_and_a_large_body_pass(server):
    with connect(server) as sock:
        padding = "X-Padding: " + "a" * (MAX_HEADER_BYTES - 400)
        body = json.dumps({"trace_id": TRACE, "step": "big", "status": "info", "attrs": {"blob": "x" * 50_000}})
        sock.sendall(request_head("/v1/events", padding, method="POST", length=len(body)) + body.encode())
        status, _, answer, closed = read_response(sock)
        assert status == 201, answer
        sock.sendall(request_head("/healthz"))  # the same connection, counted afresh
        assert read_response(sock)[0] == 200


def test_a_trickled_head_is_408_and_closed(server):
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        answer = b""
        for _ in range(40):  # one byte every 0.1 s: far slower than the 1 s the head may take
            try:
                sock.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.1)
            sock.setblocking(False)
            try:
                answer += sock.recv(65536)
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)
            if answer:
                break
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert still_serving(server)


def test_an_idle_connection_is_closed(server):
    with connect(server) as sock:
        assert sock.recv(1) == b""  # within the 1 s head timeout; the socket would time out at 10 s


def test_a_trickled_body_is_408_and_does_not_hold_the_writer(server):
    with connect(server) as slow:
        slow.sendall(request_head("/v1/events", method="POST", length=len(EVENT)) + EVENT[:5])
        # While the slow body trickles in, other producers append as usual.
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as http:
            for n in range(3):
                response = http.post("/v1/events", json={"trace_id": TRACE, "step": f"fast-{n}", "status": "info"})
                assert response.status_code == 201
        for byte in EVENT[5:15]:
            try:
                slow.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.3)
        status, _, body, closed = read_response(slow, then_closed=True)
    assert (status, closed) == (408, True), body
    assert json.loads(body)["error"]["code"] == "request_timeout"


def test_a_declared_body_over_the_limit_is_413_without_reading_it(server):
    with connect(server) as sock:
        sock.sendall(request_head("/v1/events", method="POST", length=MAX_BODY_BYTES + 1))
        status, _, body, _ = read_response(sock)
        assert status == 413 and json.loads(body)["error"]["code"] == "payload_too_large"
        # A client that sends the body anyway is not answered twice, and is let go of.
        after = b""
        try:
            for _ in range(2 * MAX_HEADER_BYTES // 1024):
                sock.sendall(b"x" * 1024)
            while chunk := sock.recv(65536):
                after += chunk
        except (BrokenPipeError, ConnectionResetError):
            pass
    assert b"HTTP/1.1" not in after


def test_a_chunked_body_over_the_limit_is_413(server):
    with connect(server) as sock:
        head = request_head("/v1/events", "Content-Type: application/json", "Transfer-Encoding: chunked",
                            method="POST")
        sock.sendall(head)
        chunk = b"x" * 16384
        try:
            for _ in range(MAX_BODY_BYTES // len(chunk) + 2):
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, _, body, _ = read_response(sock)
    assert status == 413, body
    assert still_serving(server)
