"""Strict reading of stored entry bytes at full-store speed, many entries per call.

`scan_entries(datas)` accepts an entry exactly when `appliance.core.entry.decode_entry` does (its
bytes are the canonical RFC 8785 form of a valid entry) and returns its fields. The core parses,
validates and re-encodes one entry at a time in Python (~40,000/s); here the same property is
proven with C-speed steps over a whole batch, falling back to `decode_entry` for any entry the
fast path cannot prove:

1. msgspec decodes the batch into `ScannedEntry` structs (unknown keys refused, types, status and
   `v` literals, seq and run_seq ranges checked in C; attrs kept as raw bytes).
2. Each struct is encoded again and must give back exactly its entry's bytes. The struct's fields
   are declared in RFC 8785 order (all keys are ASCII, so UTF-16 order is byte order) and msgspec
   writes integers, `null`, `true` and strings as RFC 8785 does for every value a valid entry can
   hold (it escapes only `"`, `\\` and control characters, which no valid top-level string holds).
   Comparing entry by entry, not the joined batch, is what proves each entry is one complete
   object (a joined batch could be re-split differently).
3. The attrs of the batch are checked to be canonical together: orjson parses `[a1,a2,...]` (each
   a complete value, as msgspec cut it) and must write back the same bytes with sorted keys; equal
   joined texts of complete values mean equal texts value by value. orjson writes strings as
   RFC 8785 does; it differs for some floats and for keys outside the Basic Multilingual Plane,
   and it reads integers beyond 2^53: `_plain` walks each attrs value for exactly those.
4. The remaining field rules (hex ids, RFC 3339 UTC times, step and source characters, `final`
   only on succeeded/failed, `prev`/`run_prev` null exactly for the first entry) are checked in
   Python, over the batch's lists of values; a rule over values that repeat (trace ids, steps,
   sources, times) runs once per distinct value.
"""

import re
from collections.abc import Sequence
from operator import attrgetter
from typing import Annotated, Literal, Union

import msgspec
import orjson
import rfc8785

from appliance.core.entry import (
    FINAL_STATUSES,
    MAX_ATTRS_BYTES,
    MAX_ATTRS_DEPTH,
    MAX_SAFE_INTEGER,
    MAX_STEP_CHARS,
    Entry,
    decode_entry,
)
from appliance.core.errors import EntryError
from appliance.core.timefmt import check_utc

_Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_SAFE_INTEGER)]
_HEX = {16: re.compile(r"(?!0{16})[0-9a-f]{16}"), 32: re.compile(r"(?!0{32})[0-9a-f]{32}"),
        64: re.compile(r"[0-9a-f]{64}")}
# check_utc's rules in one pattern: years 0001-9999, months, days 01-31, hours, minutes, seconds.
_UTC_LINES = re.compile(r"(?:(?!0000)[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
                        r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?Z\n)*")
_LATE_DAY = re.compile(r"^[0-9]{4}-[0-9]{2}-(?:29|3[01])", re.MULTILINE)
_SOURCE = re.compile(r"[!-~]{1,128}")
_STEP_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_four_byte_utf8 = re.compile(rb"[\xf0-\xf7]").search
_plain_fraction = re.compile(rb"-?(?:0|[1-9][0-9]*)\.[0-9]*[1-9]").fullmatch


class ScannedEntry(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True, frozen=True):
    """A stored entry's fields as written (`prev`/`run_prev` as 64 lower-case hex digits, `attrs`
    as its canonical JSON text). Fields are in RFC 8785 order: see the module docstring."""

    attrs: msgspec.Raw
    final: Union[Literal[True], msgspec.UnsetType] = msgspec.UNSET
    parent_id: Union[str, msgspec.UnsetType] = msgspec.UNSET
    prev: Union[str, None]
    received_at: str
    run_prev: Union[str, None]
    run_seq: _Count
    seq: _Count
    source: str
    span_id: Union[str, msgspec.UnsetType] = msgspec.UNSET
    status: Literal["started", "succeeded", "failed", "skipped", "info"]
    step: str
    trace_id: str
    ts: str
    v: Literal[1]


_BATCH = msgspec.json.Decoder(list[ScannedEntry])
_ONE = msgspec.json.Decoder(ScannedEntry)
_encode = msgspec.json.Encoder().encode
_DECODE_ERRORS = (msgspec.DecodeError, ValueError)  # ValidationError is a DecodeError; bad UTF-8 a ValueError


def _valid_times(texts: set[str]) -> set[str]:
    """The members of `texts` that are valid entry times (`check_utc`), mostly in one regex pass."""
    joined = "\n".join(texts) + "\n"
    if joined.count("\n") != len(texts) or _UTC_LINES.fullmatch(joined) is None:  # a time may hold "\n"
        return {text for text in texts if _utc_ok(text)}
    late = {match.group() for match in _LATE_DAY.finditer(joined)}  # days 29-31: need a calendar
    return texts - {text for text in texts if text[:10] in late and not _utc_ok(text)}


def _utc_ok(text: str) -> bool:
    try:
        check_utc(text)
    except EntryError:
        return False
    return True


def _trace_ok(text: str) -> bool:
    return _HEX[32].fullmatch(text) is not None


def _step_ok(text: str) -> bool:
    return 1 <= len(text) <= MAX_STEP_CHARS and _STEP_FORBIDDEN.search(text) is None


def _source_ok(text: str) -> bool:
    return _SOURCE.fullmatch(text) is not None


def _span_ok(value: object) -> bool:
    return value is msgspec.UNSET or (type(value) is str and _HEX[16].fullmatch(value) is not None)


_TS, _RECEIVED_AT, _FINAL = attrgetter("ts"), attrgetter("received_at"), attrgetter("final")
_SEQ, _RUN_SEQ, _PREV, _RUN_PREV = attrgetter("seq"), attrgetter("run_seq"), attrgetter("prev"), attrgetter("run_prev")
# Rules over values that repeat across entries (a run's trace id, steps, sources, a commit's
# received_at): each distinct value is checked once per batch.
_FIELD_RULES = (
    (attrgetter("trace_id"), _trace_ok),
    (attrgetter("step"), _step_ok),
    (attrgetter("source"), _source_ok),
    (attrgetter("span_id"), _span_ok),
    (attrgetter("parent_id"), _span_ok),
)


def hex_ok(value: str | None) -> bool:
    """A `prev`/`run_prev` value as a valid entry holds it: null or 64 lower-case hex digits."""
    return value is None or (len(value) == 64 and _HEX[64].fullmatch(value) is not None)


def _hashes_ok(entries: list) -> bool:
    """All `prev`/`run_prev` values of `entries` are null or 64 lower-case hex digits."""
    hexes = [h for e in entries for h in (e.prev, e.run_prev) if h is not None]
    if not hexes:
        return True
    if set(map(len, hexes)) != {64}:
        return False
    joined = "".join(hexes)
    try:
        return bytes.fromhex(joined).hex() == joined  # fromhex alone would take upper case and spaces
    except ValueError:
        return False


def _plain(value: object, depth: int) -> bool:
    """True if orjson's text of `value` (a dict or list) is RFC 8785's and a valid attrs value: no
    integer beyond +-(2^53-1), no container deeper than MAX_ATTRS_DEPTH, only floats both write
    alike. Keys outside the BMP are screened on the text (see `_attrs_values`)."""
    if depth > MAX_ATTRS_DEPTH:
        return False
    for item in value.values() if type(value) is dict else value:  # type: ignore[union-attr]
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            if -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:  # type: ignore[operator]
                continue
            return False
        if kind is float:
            if _float_ok(item):  # type: ignore[arg-type]
                continue
            return False
        if not _plain(item, depth + 1):
            return False
    return True


def _attrs_values(entries: list) -> list:
    """The parsed attrs of each entry, or None where its text is not orjson's canonical text or
    holds a character outside the BMP (RFC 8785 sorts keys by UTF-16 code units, orjson does not)."""
    texts = [bytes(e.attrs) for e in entries]
    joined = b"[" + b",".join(texts) + b"]"
    try:
        values = orjson.loads(joined)
        if orjson.dumps(values, option=orjson.OPT_SORT_KEYS) == joined:
            if not joined.isascii():
                values = [None if _four_byte_utf8(text) else value for value, text in zip(values, texts)]
            return values
    except orjson.JSONDecodeError:
        pass
    values = []
    for text in texts:  # some entry is not canonical: find which, one by one
        try:
            value = orjson.loads(text)
            canonical = orjson.dumps(value, option=orjson.OPT_SORT_KEYS) == text and not _four_byte_utf8(text)
            values.append(value if canonical else None)
        except (orjson.JSONDecodeError, TypeError):  # TypeError: orjson.JSONEncodeError
            values.append(None)
    return values


def _decode(datas: Sequence[bytes]) -> list:
    try:
        entries = _BATCH.decode(b"[" + b",".join(datas) + b"]")
        if len(entries) == len(datas):
            return entries
    except (*_DECODE_ERRORS, TypeError):  # TypeError: an item is not bytes
        pass
    decoded = []
    for data in datas:
        try:
            decoded.append(_ONE.decode(data))
        except (*_DECODE_ERRORS, TypeError):
            decoded.append(None)
    return decoded


def _from_entry(entry: Entry) -> ScannedEntry:
    return ScannedEntry(
        attrs=msgspec.Raw(rfc8785.dumps(entry.attrs)), final=True if entry.final else msgspec.UNSET,
        parent_id=entry.parent_id if entry.parent_id is not None else msgspec.UNSET,
        prev=None if entry.prev is None else entry.prev.hex(), received_at=entry.received_at,
        run_prev=None if entry.run_prev is None else entry.run_prev.hex(), run_seq=entry.run_seq, seq=entry.seq,
        source=entry.source, span_id=entry.span_id if entry.span_id is not None else msgspec.UNSET,
        status=entry.status, step=entry.step, trace_id=entry.trace_id, ts=entry.ts, v=1,
    )


def _strict(data: object) -> ScannedEntry | EntryError:
    try:
        return _from_entry(decode_entry(data))  # type: ignore[arg-type]
    except EntryError as error:
        return error
    except Exception as error:  # noqa: BLE001 - decode_entry is total over bytes; keep surprises in the family
        return EntryError(f"not a valid entry: {error}")


def _float_ok(value: float) -> bool:
    # Both print the shortest round-trip digits; they differ in when and how they use an exponent
    # and in "100.0" vs "100". Plain decimals with a fraction, at or above 1e-6 (where ECMAScript
    # switches to exponents), come out alike; a test checks this against rfc8785.
    return abs(value) >= 1e-6 and _plain_fraction(orjson.dumps(value)) is not None


def _bad_attrs(entries: list, values: list) -> set[int]:
    """Indexes whose attrs are not a valid attrs object written as RFC 8785 writes it (see `_plain`)."""
    return {index for index, (entry, value) in enumerate(zip(entries, values))
            if value is None or type(value) is not dict or len(entry.attrs) > MAX_ATTRS_BYTES
            or not _plain(value, 1)}


def _mismatch(first: list, second: list) -> set[int]:
    """Positions where exactly one of two index lists has an entry: where a pair of rules disagrees."""
    return set(first).symmetric_difference(second) if first != second else set()


def _invalid(entries: list, check_hashes: bool) -> set[int]:
    """Indexes of `entries` (each the exact encoding of its bytes) that break a field rule."""
    bad = _bad_attrs(entries, _attrs_values(entries))
    seqs, run_seqs = list(map(_SEQ, entries)), list(map(_RUN_SEQ, entries))
    prevs, run_prevs = list(map(_PREV, entries)), list(map(_RUN_PREV, entries))
    # prev is null exactly for seq 0, run_prev exactly for run_seq 0, final only on succeeded/failed
    bad |= _mismatch([i for i, prev in enumerate(prevs) if prev is None], [i for i, n in enumerate(seqs) if n == 0])
    bad |= _mismatch([i for i, prev in enumerate(run_prevs) if prev is None],
                     [i for i, n in enumerate(run_seqs) if n == 0])
    bad.update(i for i, final in enumerate(map(_FINAL, entries)) if final is True
               and entries[i].status not in FINAL_STATUSES)
    times = [*map(_TS, entries), *map(_RECEIVED_AT, entries)]
    distinct = set(times)
    wrong = distinct - _valid_times(distinct)
    if wrong:
        bad.update(index % len(entries) for index, text in enumerate(times) if text in wrong)
    for getter, rule in _FIELD_RULES:
        values = list(map(getter, entries))
        wrong = {value for value in set(values) if not rule(value)}
        if wrong:
            bad.update(index for index, value in enumerate(values) if value in wrong)
    if check_hashes and not _hashes_ok(entries):
        bad.update(i for i, e in enumerate(entries) if not (hex_ok(e.prev) and hex_ok(e.run_prev)))
    return bad


def scan_entries(datas: Sequence[bytes], *, check_hashes: bool = True) -> list[ScannedEntry | EntryError]:
    """For each of `datas`, its fields if it is a valid entry's canonical bytes, else the
    `EntryError` that `decode_entry` raises for it. Preconditions: none.

    `check_hashes=False` leaves `prev` and `run_prev` unchecked beyond being strings or null: for
    a caller that compares each with the hex of a hash it computed (equal means well formed) and
    checks the rest with `hex_ok`.
    """
    entries = _decode(datas)
    if None not in entries and list(map(_encode, entries)) == list(datas):  # the common case, in C
        exact = range(len(entries))
        candidates = entries
    else:
        exact = [index for index, (entry, data) in enumerate(zip(entries, datas))
                 if entry is not None and _encode(entry) == data]
        candidates = [entries[index] for index in exact]
    bad = {exact[index] for index in _invalid(candidates, check_hashes)} if candidates else set()
    if not bad and len(exact) == len(entries):
        return entries
    good = set(exact) - bad
    return [entry if index in good else _strict(data) for index, (entry, data) in enumerate(zip(entries, datas))]


def scan_entry(data: bytes) -> ScannedEntry:
    """The fields of the entry whose canonical bytes are `data`; raises `EntryError` exactly when
    `decode_entry` does."""
    result = scan_entries([data])[0]
    if isinstance(result, EntryError):
        raise result
    return result
