"""The link between HTTP workers and the primary: frames over a real Unix socket, errors crossing
as the same runlog types, frames split anywhere, calls failing (not hanging) when the other side
goes away, and events crossing intact (the writer stores the same bytes as from a direct append)."""

import asyncio
import os
import sys
from datetime import datetime, timezone

import msgspec
import pytest

from appliance.core.errors import EntryError, InvalidInput
from appliance.core.keys import generate_signer
from appliance.core.sequencer import Event, RunClosedError
from appliance.store.errors import IdempotencyConflict, StoreUnavailable
from appliance.store.writer import AppendRequest, Writer
from appliance.workers import wire
from appliance.workers.link import MAX_FRAME_BYTES, Later, LinkLost, Peer, abstract_address


async def _pair(tmp_path, handlers, client_handlers=None):
    loop = asyncio.get_running_loop()
    served: list[Peer] = []

    def make() -> Peer:
        peer = Peer(handlers)
        served.append(peer)
        return peer

    server = await loop.create_unix_server(make, str(tmp_path / "link.sock"))
    _, client = await loop.create_unix_connection(lambda: Peer(client_handlers or {}), str(tmp_path / "link.sock"))
    for _ in range(100):
        if served:
            break
        await asyncio.sleep(0.01)
    return server, served[0], client


def _entry_error():
    error = EntryError("step must be a string of 1..256 characters", field="events[3].step")
    error.index = 3
    raise error


async def _slow(body):
    await asyncio.sleep(0.01)
    return {"echo": body}


def test_calls_replies_and_errors_cross_as_the_same_types(tmp_path):
    async def main():
        handlers = {
            "echo": lambda body: body,
            "slow": _slow,
            "entry": lambda body: _entry_error(),
            "conflict": lambda body: (_ for _ in ()).throw(IdempotencyConflict("key 'k' was used with other content")),
            "closed": lambda body: (_ for _ in ()).throw(RunClosedError("run abc was closed", field="trace_id")),
            "bug": lambda body: 1 / 0,
        }
        server, _, client = await _pair(tmp_path, handlers)
        assert await client.call("echo", [1, "two", b"\x00three"]) == [1, "two", b"\x00three"]
        results = await asyncio.gather(*(client.call("slow", n) for n in range(50)))
        assert results == [{"echo": n} for n in range(50)]
        with pytest.raises(EntryError) as caught:
            await client.call("entry", None)
        assert (str(caught.value), caught.value.field, caught.value.index) == (
            "step must be a string of 1..256 characters", "events[3].step", 3)
        with pytest.raises(IdempotencyConflict, match="used with other content"):
            await client.call("conflict", None)
        with pytest.raises(RunClosedError) as closed:
            await client.call("closed", None)
        assert isinstance(closed.value, InvalidInput) and closed.value.field == "trace_id"
        with pytest.raises(RuntimeError, match="ZeroDivisionError|division by zero"):
            await client.call("bug", None)
        with pytest.raises(RuntimeError, match="unknown operation 'nope'"):
            await client.call("nope", None)
        client.close()
        server.close()

    asyncio.run(main())


def test_a_later_reply_is_converted_when_its_future_is_done_and_fails_as_its_future_fails(tmp_path):
    async def main():
        loop = asyncio.get_running_loop()
        futures: dict[str, asyncio.Future] = {}

        def later(body):
            futures[body] = loop.create_future()
            return Later(futures[body], lambda value: {"converted": value} if value != "bad" else 1 / 0)

        server, _, client = await _pair(tmp_path, {"later": later})
        calls = {name: client.call("later", name) for name in ("ok", "conflict", "cancelled", "convert fails")}
        while len(futures) < len(calls):
            await asyncio.sleep(0.01)
        futures["ok"].set_result(7)
        futures["conflict"].set_exception(IdempotencyConflict("key 'k' was used with other content"))
        futures["cancelled"].cancel()
        futures["convert fails"].set_result("bad")
        assert await calls["ok"] == {"converted": 7}
        with pytest.raises(IdempotencyConflict, match="used with other content"):
            await calls["conflict"]
        with pytest.raises(RuntimeError, match="the request was cancelled"):
            await calls["cancelled"]
        with pytest.raises(RuntimeError, match="division by zero"):
            await calls["convert fails"]
        client.close()
        server.close()

    asyncio.run(main())


def test_frames_split_at_every_byte_and_glued_together_are_read_alike():
    seen = []
    peer = Peer({"note": seen.append})
    encoder = msgspec.msgpack.Encoder()
    frames = b""
    for n in range(3):
        data = encoder.encode([3, 0, "note", {"n": n, "blob": bytes(range(256))}])
        frames += len(data).to_bytes(4, "big") + data
    for i in range(len(frames)):  # one byte at a time
        peer.data_received(frames[i : i + 1])
    peer.data_received(frames)  # all at once
    assert [item["n"] for item in seen] == [0, 1, 2, 0, 1, 2]


def test_a_frame_claiming_more_than_the_limit_closes_the_link(tmp_path):
    async def main():
        server, served, client = await _pair(tmp_path, {})
        client._transport.write((MAX_FRAME_BYTES + 1).to_bytes(4, "big"))
        await asyncio.wait_for(served.closed.wait(), 5)
        await asyncio.wait_for(client.closed.wait(), 5)
        server.close()

    asyncio.run(main())


def test_pending_calls_fail_with_link_lost_when_the_other_side_goes_away(tmp_path):
    async def main():
        never = asyncio.get_running_loop().create_future()
        server, served, client = await _pair(tmp_path, {"hang": lambda body: never})
        pending = client.call("hang", None)
        await asyncio.sleep(0.05)
        served.close()
        with pytest.raises(LinkLost) as lost:
            await asyncio.wait_for(pending, 5)
        assert isinstance(lost.value, StoreUnavailable)  # answered as a 503: retry shortly
        with pytest.raises(LinkLost):
            client.call("hang", None)
        client.notify("ignored", None)  # a notice on a lost link is dropped, not raised
        server.close()

    asyncio.run(main())


SIGNER = generate_signer("test/link", seed=b"\x05" * 32)


def _events(source: str) -> list[Event]:
    return [Event(trace_id=f"{n % 3 + 1:032x}", step=f"step {n} ✓", status="succeeded" if n == 5 else "info",
                  ts="2026-11-28T10:00:00Z", source=source, attrs={"n": n, "text": "naïve \"q\"\n", "f": 1.5},
                  span_id=f"{n + 1:016x}", final=n == 5).prepared() for n in range(6)]


def test_events_cross_the_link_and_are_stored_byte_for_byte_as_a_direct_append(tmp_path):
    stored = []
    for name, through_wire in (("direct", False), ("wire", True)):
        writer = Writer(tmp_path / f"{name}.sqlite", origin="test/link", signer=SIGNER,
                        clock=lambda: datetime(2026, 11, 28, 10, 0, 1, tzinfo=timezone.utc))
        writer.start()
        request = AppendRequest(_events("ci"), "ci", "key-1", b"\x01" * 32)
        if through_wire:
            request = wire.request_from(msgspec.msgpack.decode(msgspec.msgpack.encode(wire.request_body(request))))
            assert [type(event) for event in request.events] == [wire.WireEvent] * 6
        result = writer.append_sync(request)
        crossed = wire.result_from(msgspec.msgpack.decode(msgspec.msgpack.encode(wire.result_body(result))))
        assert crossed == result
        rows = writer._conn.execute("SELECT seq, trace_id, run_seq, step, status, final, ts, source, data, hash "
                                    "FROM entries ORDER BY seq").fetchall()
        stored.append((rows, result.entry_hashes))
        writer.stop()
    assert stored[0] == stored[1]


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to connect as another user")
def test_the_primary_refuses_a_process_of_another_user_on_its_abstract_address(tmp_path):
    name = abstract_address(f"runlog-test-{os.getpid()}")

    async def main():
        loop = asyncio.get_running_loop()
        calls = []

        def make() -> Peer:
            peer = Peer({"append": calls.append})
            peer.same_user_only = True
            return peer

        server = await loop.create_unix_server(make, name)
        child = await asyncio.create_subprocess_exec(sys.executable, "-c", _INTRUDER, name[1:],
                                                     stdout=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(child.communicate(), 20)
        assert out.decode().strip() == "closed" and calls == []
        _, own = await loop.create_unix_connection(lambda: Peer({}), name)  # this user: accepted
        own.notify("append", "mine")
        for _ in range(100):
            if calls:
                break
            await asyncio.sleep(0.01)
        assert calls == ["mine"]
        own.close()
        server.close()

    asyncio.run(main())


_INTRUDER = """
import os, socket, sys
import msgspec
data = msgspec.msgpack.encode([3, 0, "append", "intruder"])
os.setgid(65534); os.setuid(65534)
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect("\\0" + sys.argv[1])
try:
    sock.sendall(len(data).to_bytes(4, "big") + data)
    print("closed" if sock.recv(1) == b"" else "answered")
except OSError:
    print("closed")
"""
