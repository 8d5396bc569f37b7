"""Turn producer events into the log's next entries: assign seq, run_seq, prev and run_prev, and
grow the Merkle frontier. Pure: the caller passes the appliance time and a way to look up a run's
head, and decides what to persist.

A batch is all-or-nothing: `extend` validates every event against a scratch state and only then
commits the new heads, so a bad event in the middle of a batch leaves the sequencer unchanged.
"""

from binascii import hexlify
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from appliance.core.compact import CompactRange, NodeVisitor
from appliance.core.entry import MAX_SAFE_INTEGER, Entry, EntryParts, encode_parts, join_parts, join_templates
from appliance.core.errors import EntryError, InvalidInput
from appliance.core.hashing import leaf_hash, sha256
from appliance.core.timefmt import check_utc

_NO_ATTRS: Mapping[str, Any] = MappingProxyType({})


# Event, RunHead and Appended are made once per event on the ingest path: named tuples (immutable
# too) cost a quarter to a half of a frozen dataclass's construction.
class Event(NamedTuple):
    """What a producer says about one step; the appliance adds the rest of the entry."""

    trace_id: str
    step: str
    status: str
    ts: str
    source: str
    attrs: Mapping[str, Any] = _NO_ATTRS
    span_id: str | None = None
    parent_id: str | None = None
    final: bool = False
    # Set only by `prepared()` (or a parser that checked the fields): the canonical parts
    # `encode_parts` made from the fields above.
    parts: EntryParts | None = None

    def prepared(self) -> "Event":
        """This event with every field checked and its canonical parts encoded now, so that the
        sequencer only joins bytes (the ingest path calls it before handing events to the writer).
        Raises `EntryError` naming the field."""
        return Event(self.trace_id, self.step, self.status, self.ts, self.source, self.attrs, self.span_id,
                     self.parent_id, self.final, self._encode())

    def _encode(self) -> EntryParts:
        attrs = dict(self.attrs) if isinstance(self.attrs, Mapping) else self.attrs
        return encode_parts(trace_id=self.trace_id, step=self.step, status=self.status, ts=self.ts,
                            source=self.source, attrs=attrs, span_id=self.span_id, parent_id=self.parent_id,
                            final=self.final)


class RunHead(NamedTuple):
    """A run after its last entry: `count` entries so far, the last one's hash and seq, and the seq
    of its first entry (the store's key for the run)."""

    count: int
    head: bytes
    last_seq: int
    closed: bool
    first_seq: int


class Appended(NamedTuple):
    """One new entry: the event, the fields the log gave it, its canonical bytes, entry hash and
    Merkle leaf hash."""

    event: Event
    seq: int
    run_seq: int
    received_at: str
    prev: bytes | None
    run_prev: bytes | None
    data: bytes
    entry_hash: bytes
    leaf_hash: bytes

    @property
    def entry(self) -> Entry:
        e = self.event
        return Entry(seq=self.seq, trace_id=e.trace_id, span_id=e.span_id, parent_id=e.parent_id,
                     run_seq=self.run_seq, step=e.step, status=e.status, final=e.final, ts=e.ts,
                     received_at=self.received_at, source=e.source, attrs=dict(e.attrs), prev=self.prev,
                     run_prev=self.run_prev)


class RunClosedError(EntryError):
    """An event arrived for a run that a `final` entry already closed."""


RunLookup = Callable[[str], RunHead | None]


class Sequencer:
    """The log's head: size, last entry hash, Merkle frontier, and a lookup of run heads."""

    def __init__(
        self,
        lookup_run: RunLookup,
        *,
        frontier: CompactRange | None = None,
        head_hash: bytes | None = None,
    ) -> None:
        self._frontier = frontier.copy() if frontier is not None else CompactRange()
        if (self._frontier.size == 0) != (head_hash is None):
            raise InvalidInput("head_hash must be given exactly when the log is not empty", field="head_hash")
        self._head_hash = head_hash
        self._lookup_run = lookup_run
        self._received_at: str | None = None  # the last received_at checked, and its join templates
        self._templates = join_templates("")

    @property
    def size(self) -> int:
        return self._frontier.size

    @property
    def head_hash(self) -> bytes | None:
        return self._head_hash

    @property
    def frontier(self) -> CompactRange:
        return self._frontier.copy()

    def root(self) -> bytes:
        return self._frontier.root()

    def extend(
        self,
        events: Iterable[Event],
        received_at: str,
        on_node: NodeVisitor | None = None,
    ) -> tuple[list[Appended], dict[str, RunHead]]:
        """Sequence `events` in order, all or nothing.

        Returns the new entries and the run heads they changed (for the caller to persist).
        Raises `EntryError` (field named, `index` attribute = position in the batch) and leaves
        the sequencer unchanged if any event is invalid or targets a closed run.
        """
        if received_at != self._received_at:  # a group commit's requests share one: checked once
            check_utc(received_at, field="received_at")
            self._received_at, self._templates = received_at, join_templates(received_at)
        linked, run_start = self._templates
        appended: list[Appended] = []
        leaves: list[bytes] = []
        touched: dict[str, RunHead] = {}
        lookup = self._lookup_run
        seq, prev = self._frontier.size, self._head_hash
        prev_hex = None if prev is None else hexlify(prev)
        for index, event in enumerate(events):
            trace_id, parts = event.trace_id, event.parts
            if type(trace_id) is not str:  # checked in full by encode_parts; a dict key needs a str
                error = EntryError(f"trace_id must be a string, got {type(trace_id).__name__}", field="trace_id")
                error.index = index  # type: ignore[attr-defined]
                raise error
            run = touched.get(trace_id) or lookup(trace_id)
            if run is not None and run.closed:
                error = RunClosedError(f"run {trace_id} was closed by its final entry at seq {run.last_seq}",
                                       field="trace_id")
                error.index = index  # type: ignore[attr-defined]
                raise error
            if seq > MAX_SAFE_INTEGER or (run is not None and run.count > MAX_SAFE_INTEGER):
                # JSON's safe integers end here (RFC 8785): an entry beyond them could not be encoded
                error = EntryError("the log or the run holds 2^53 - 1 entries: no seq is left for another",
                                   field="seq" if seq > MAX_SAFE_INTEGER else "run_seq")
                error.index = index  # type: ignore[attr-defined]
                raise error
            if parts is None:
                try:
                    parts = event._encode()
                except EntryError as error:
                    error.index = index  # type: ignore[attr-defined]
                    raise
            if prev_hex is None:  # the log's first entry
                run_seq, run_prev = 0, None
                data = join_parts(parts, seq=seq, run_seq=0, received_at=received_at, prev=None, run_prev=None)
            elif run is None:
                run_seq, run_prev = 0, None
                data = run_start % (parts.head, prev_hex, seq, parts.tail)
            else:
                run_seq, run_prev = run.count, run.head
                data = linked % (parts.head, prev_hex, hexlify(run_prev), run_seq, seq, parts.tail)
            digest, leaf = sha256(data), leaf_hash(data)  # the entry hash, the Merkle leaf
            appended.append(Appended(event, seq, run_seq, received_at, prev, run_prev, data, digest, leaf))
            leaves.append(leaf)
            touched[trace_id] = RunHead(run_seq + 1, digest, seq, event.final, seq if run is None else run.first_seq)
            seq, prev, prev_hex = seq + 1, digest, hexlify(digest)
        self._frontier.extend(leaves, on_node)
        self._head_hash = prev
        return appended, touched
