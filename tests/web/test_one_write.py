"""A response's head and body reach the socket in one write (appliance.web.one_write), and the
request lines of one event-loop turn in one write (appliance.web.request_log); bytes unchanged."""

import asyncio
import io
import json

import httpx

from appliance import logs
from appliance.web.instruments import Instruments
from appliance.web.one_write import OneWrite, _HoldOne
from appliance.web.request_log import RequestLog
from tests.e2e.server import ADMIN_TOKEN, Server


class Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def held(coroutine_body):
    async def main():
        transport = Recorder()
        await coroutine_body(_HoldOne(transport, asyncio.get_running_loop()), transport)
        return transport

    return asyncio.run(main())


def test_a_head_and_its_body_go_out_in_one_write():
    async def body(proxy, transport):
        proxy.write(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n")
        assert transport.writes == []
        proxy.write(b"{}")
        assert transport.writes == [b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}"]
        await asyncio.sleep(0)
        assert len(transport.writes) == 1

    held(body)


def test_a_lone_write_goes_out_at_the_end_of_the_turn():
    async def body(proxy, transport):
        proxy.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]

    held(body)


def test_a_stream_holds_at_most_one_piece_and_keeps_the_order():
    async def body(proxy, transport):
        pieces = [b"head", b"a" * 100_000, b"b" * 100_000, b"c"]
        for index, piece in enumerate(pieces):
            proxy.write(piece)
            assert sum(map(len, transport.writes)) >= sum(map(len, pieces[:index]))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert b"".join(transport.writes) == b"".join(pieces)

    held(body)


def test_close_writes_what_is_held_first_and_a_closed_transport_gets_nothing():
    async def body(proxy, transport):
        proxy.write(b"HTTP/1.1 431 ...\r\n\r\n")
        proxy.close()
        assert transport.writes == [b"HTTP/1.1 431 ...\r\n\r\n"] and transport.closed
        proxy.write(b"late")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert transport.writes == [b"HTTP/1.1 431 ...\r\n\r\n"]
        assert proxy.get_extra_info("peername") == "info:peername"

    held(body)


def test_the_protocol_mixin_hands_the_protocol_the_holding_transport():
    class Base:
        def connection_made(self, transport):
            self.transport = transport

    class Protocol(OneWrite, Base):
        pass

    async def main():
        protocol = Protocol()
        protocol.connection_made(Recorder())
        return protocol.transport

    assert isinstance(asyncio.run(main()), _HoldOne)


def test_request_lines_of_one_turn_are_written_together_and_complete(monkeypatch):
    stream = io.StringIO()
    writes: list[str] = []
    original = stream.write
    monkeypatch.setattr(stream, "write", lambda text: writes.append(text) or original(text))
    logs.configure_logging(stream=stream)

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def noop(message):
        pass

    async def main():
        logged = RequestLog(app, Instruments())
        scope = {"type": "http", "method": "GET", "path": "/healthz", "headers": []}
        await asyncio.gather(*(logged(dict(scope), None, noop) for _ in range(5)))  # all end in one turn
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    try:
        asyncio.run(main())
    finally:
        logs._request_handler = None
    assert len(writes) == 1
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 5 and all(line["status"] == 204 and line["route"] == "unmatched" for line in lines)


def test_a_served_response_arrives_whole(tmp_path):
    server = Server(tmp_path / "data").start()
    try:
        event = {"trace_id": "1" * 32, "step": "build", "status": "info", "attrs": {"k": "v"}}
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as http:
            for _ in range(3):  # keep-alive: each response is framed right for the next one
                answer = http.post("/v1/events", json=event)
                assert answer.status_code == 201 and answer.json()["count"] == 1
                assert int(answer.headers["content-length"]) == len(answer.content)
    finally:
        server.kill()
