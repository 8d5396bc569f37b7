"""Append requests and results as they cross the link: plain lists of strings, bytes and numbers.

A worker sends each event already checked and encoded (`Event.prepared()`): the writer needs its
canonical parts and the columns it stores, never the attrs themselves, so those stay behind.
"""

from typing import Any

from appliance.core.entry import EntryParts
from appliance.core.sequencer import Event
from appliance.store.writer import AppendRequest, AppendResult

_NO_ATTRS: dict[str, Any] = {}


def request_body(request: AppendRequest) -> list[Any]:
    events = []
    for event in request.events:
        parts = event.parts if event.parts is not None else event.prepared().parts
        events.append((event.trace_id, event.step, event.status, event.ts, event.final, parts.head, parts.tail))
    return [events, request.source, request.idempotency_key, request.request_hash]


def request_from(body: list[Any]) -> AppendRequest:
    events, source, key, request_hash = body
    return AppendRequest(
        [Event(trace_id, step, status, ts, source, _NO_ATTRS, None, None, final, EntryParts(head, tail))
         for trace_id, step, status, ts, final, head, tail in events],
        source, key, request_hash)


def result_body(result: AppendResult) -> list[Any]:
    return [result.first_seq, list(result.entry_hashes), result.received_at, result.receipt, result.replayed]


def result_from(body: list[Any]) -> AppendResult:
    first_seq, hashes, received_at, receipt, replayed = body
    return AppendResult(first_seq, tuple(hashes), received_at, receipt, replayed=replayed)
