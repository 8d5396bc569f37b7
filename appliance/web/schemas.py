"""Response bodies of the HTTP API, as msgspec Structs (Litestar serialises them and documents
them in the OpenAPI schema). Hashes are lower-case hex; times are the entries' RFC 3339 text.

The `from_*` constructors turn core values into these shapes so handlers stay one line.
"""

from typing import Any, Literal

import msgspec

from appliance.core.entry import Entry


class ErrorDetail(msgspec.Struct, frozen=True):
    code: str
    message: str
    field: str | None = None


class ErrorOut(msgspec.Struct, frozen=True):
    """Every 4xx and 5xx answer: `{"error": {"code", "message", "field"}}`."""

    error: ErrorDetail


class ReceiptOut(msgspec.Struct, frozen=True):
    """What an accepted append returns: one receipt covering the request's entries.

    `receipt` (appliance.core.receipt, docs/FORMAT.md "Receipts") is the proof of acceptance to
    keep: the request's statement and its path to the group commit's signed batch note.
    """

    first_seq: int
    count: int
    seq: list[int]
    entry_hashes: list[str]
    received_at: str
    receipt: str


class EventOut(msgspec.Struct, frozen=True):
    """One entry of a run, as the producer sent it plus what the appliance added."""

    seq: int
    run_seq: int
    trace_id: str
    step: str
    status: str
    final: bool
    ts: str
    received_at: str
    source: str
    attrs: dict[str, Any]
    entry_hash: str
    span_id: str | None = None
    parent_id: str | None = None

    @classmethod
    def from_entry(cls, entry: Entry, entry_hash: bytes) -> "EventOut":
        return cls(
            seq=entry.seq, run_seq=entry.run_seq, trace_id=entry.trace_id, step=entry.step, status=entry.status,
            final=entry.final, ts=entry.ts, received_at=entry.received_at, source=entry.source, attrs=entry.attrs,
            entry_hash=entry_hash.hex(), span_id=entry.span_id, parent_id=entry.parent_id,
        )


class RunOut(msgspec.Struct, frozen=True):
    """A run's summary: `status` is failed if any step failed, succeeded once closed successfully,
    running otherwise; `duration_seconds` spans the first and last producer times."""

    trace_id: str
    status: Literal["running", "succeeded", "failed"]
    closed: bool
    step_count: int
    first_seq: int
    last_seq: int
    first_ts: str
    last_ts: str
    started_at: str
    updated_at: str
    duration_seconds: float
    source: str
    head: str


class RunPageOut(msgspec.Struct, frozen=True):
    """`GET /v1/runs`: most recent first; pass `next_cursor` back as `cursor` for the next page."""

    runs: list[RunOut]
    next_cursor: str | None = None


class RunDetailOut(msgspec.Struct, frozen=True):
    """`GET /v1/runs/{trace_id}`: the summary and one page of its events in run order."""

    run: RunOut
    events: list[EventOut]
    next_cursor: str | None = None


class RunStartedOut(msgspec.Struct, frozen=True):
    """`POST /v1/runs`: the new run's ID, the `traceparent` for its next step, and the receipt."""

    trace_id: str
    traceparent: str
    receipt: ReceiptOut


class EntryOut(msgspec.Struct, frozen=True):
    """`GET /v1/entries/{seq}`: the canonical bytes (UTF-8 JSON, given as text) and their hash."""

    seq: int
    entry_hash: str
    leaf_hash: str
    canonical: str


class ProofOut(msgspec.Struct, frozen=True):
    """An RFC 9162 inclusion proof (`index` in a tree of `tree_size`) or consistency proof
    (`from_size` to `tree_size`); `hashes` in the RFC's order; `root` of `tree_size`."""

    kind: Literal["inclusion", "consistency"]
    tree_size: int
    root: str
    hashes: list[str]
    index: int | None = None
    leaf_hash: str | None = None
    from_size: int | None = None


class KeyOut(msgspec.Struct, frozen=True):
    """One key of the history: `valid_until` null while the key is current or retiring."""

    role: Literal["log", "clock"]
    key: str
    key_id: str
    valid_from: str
    valid_until: str | None
    state: Literal["current", "retiring", "retired"]


class KeysOut(msgspec.Struct, frozen=True):
    """`GET /v1/keys`: verifier key strings (`name+hexkeyid+base64`) for checkpoints, receipts
    and the timestamp cosignature (the current ones), every key the log has used with its validity
    window (`history`, oldest first) and the same as the keys file to publish (`keys_file`)."""

    origin: str
    log_key: str
    timestamp_key: str
    history: list[KeyOut] = []
    keys_file: str = ""


class HealthOut(msgspec.Struct, frozen=True):
    """`GET /healthz`: `status` is "ok" unless a check failed; `checks` says which and why."""

    status: Literal["ok", "failing"]
    tree_size: int
    checks: dict[str, str] = msgspec.field(default_factory=dict)
