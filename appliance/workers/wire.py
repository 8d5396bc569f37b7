"""Append requests and results as they cross the link.

A worker sends each event already checked and encoded (`Event.prepared()`): the writer needs its
canonical parts and the columns it stores, never the attrs themselves, so those stay behind. The
primary decodes a request straight into `WireEvent` structs (in C, no Python per event): a
1,000-event batch costs its event loop ~1 µs per event instead of ~3.4 for rebuilding `Event`s,
and that loop shares the writer thread's interpreter.
"""

from typing import Any

import msgspec

from appliance.store.writer import AppendRequest, AppendResult


class WireEvent(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A prepared event as the writer reads it: the attributes of `Event` that the sequencer and
    the writer use (`parts` included: the struct carries `head` and `tail` as `EntryParts` does).
    Untracked by the garbage collector (`gc=False`: strings, bytes and a bool can close no reference
    cycle), so a batch's structs neither trigger the primary's collections nor lengthen them."""

    trace_id: str
    step: str
    status: str
    ts: str
    source: str
    final: bool
    head: bytes
    tail: bytes

    @property
    def parts(self) -> "WireEvent":
        return self


_ENCODER = msgspec.msgpack.Encoder()
_REQUEST = msgspec.msgpack.Decoder(tuple[list[WireEvent], str, str | None, bytes])


def request_body(request: AppendRequest) -> bytes:
    events = []
    for event in request.events:
        parts = event.parts if event.parts is not None else event.prepared().parts
        events.append((event.trace_id, event.step, event.status, event.ts, event.source, event.final,
                       parts.head, parts.tail))  # type: ignore[union-attr]
    return _ENCODER.encode((events, request.source, request.idempotency_key, request.request_hash))


def request_from(body: bytes) -> AppendRequest:
    events, source, key, request_hash = _REQUEST.decode(body)
    return AppendRequest(events, source, key, request_hash)  # type: ignore[arg-type]


def result_body(result: AppendResult) -> list[Any]:
    return [result.first_seq, list(result.entry_hashes), result.received_at, result.receipt, result.replayed]


def result_from(body: list[Any]) -> AppendResult:
    first_seq, hashes, received_at, receipt, replayed = body
    return AppendResult(first_seq, tuple(hashes), received_at, receipt, replayed=replayed)
