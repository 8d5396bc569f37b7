"""The body of `POST /v1/events`: one event, a JSON array of events, or NDJSON, strictly parsed.

Pure (no I/O, no Litestar): bytes and headers in, sequencer `Event`s out, or a `RequestError`
naming the field (`step` for a single object, `events[3].step` in an array or NDJSON, whose
messages also give the line) and the rule. Field rules are the entry's (appliance.core.entry);
a property test checks that this module accepts exactly the events `encode_entry` accepts.

Decisions:
- Correlation: the event's `trace_id`, else the one `traceparent` header, else the
  `X-Amzn-Trace-Id` Root; none is an error (the appliance never invents an ID). The body wins
  over headers, and a header naming another trace is ignored: instrumented HTTP clients attach
  their own trace to every call. `span_id` defaults to the parent-id of the header that names
  the event's trace. A single invalid correlation header is always an error; two or more
  `traceparent` lines mean "restart" (W3C) and count as absent, and so do two X-Ray lines.
- `null` for an optional field means absent. `ts` may carry any RFC 3339 offset and is stored
  in UTC; an event without `ts` gets `default_ts`.
- JSON: UTF-8 without BOM; duplicate keys, NaN/Infinity, lone surrogates and unknown fields
  are errors. In `attrs`, integers beyond +-(2^53-1) and integral floats in [2^53, 1e21) are
  errors (the entry's I-JSON rule); other floats are kept as IEEE doubles.
- Limits: `max_batch` events; an `attrs` text over 4 x 64 KiB is refused unparsed. Event fields
  are typed, so the rest of a body expands to a few times its size at most.
- `request_hash`: SHA-256 over a canonical form of the parsed request (source, every resolved
  field, `ts` normalised or absent, `attrs` with sorted keys): whitespace, key order and
  equivalent offsets do not change it; a different header-supplied trace does.
"""

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import msgspec
import orjson
from msgspec import UNSET, UnsetType

from appliance.core.entry import FINAL_STATUSES, MAX_ATTRS_BYTES, MAX_ATTRS_DEPTH, MAX_STEP_CHARS, STATUSES
from appliance.core.entry import Entry, encode_entry
from appliance.core.errors import InvalidInput, TraceContextError
from appliance.core.sequencer import Event
from appliance.core.timefmt import check_utc, format_utc, normalize_rfc3339
from appliance.core.tracecontext import TraceParent, parse_traceparent_headers, trace_id_from_xray, xray_parent_id

JSON = "application/json"
NDJSON = "application/x-ndjson"
HEADERS = ("traceparent", "x-amzn-trace-id", "idempotency-key")
MAX_IDEMPOTENCY_KEY_CHARS = 255
MAX_RAW_ATTRS_BYTES = 4 * MAX_ATTRS_BYTES

_HASH_FORMAT = "runlog-ingest-request/v1"
# A number's canonical text is at most 21/4 of its JSON text ("1e20" has 21 digits) and nothing
# else grows, so attrs text this short always fits the entry's limit.
_ALWAYS_SMALL_ATTRS = MAX_ATTRS_BYTES * 4 // 21
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_SIXTEEN_DIGITS = b"0" * 16  # the shortest integer text beyond 2^53-1
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")
_STEP_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")  # appliance.core.entry's rule
_SOURCE = re.compile(r"[!-~]{1,128}")
_KEY = re.compile(r"[ -~]{1,%d}" % MAX_IDEMPOTENCY_KEY_CHARS)
_SF_STRING = re.compile(r'"((?:[ !#-\[\]-~]|\\["\\])*)"')  # RFC 8941 section 3.3.3
_FIRST_BYTE = re.compile(rb"[ \t\r\n]*(.)", re.S)
_MSGSPEC_ERROR = re.compile(r"(.*?)(?: - at `\$(.*)`)?", re.S)
_SAFE = 2**53
_TOO_DEEP = f"nested far deeper than the {MAX_ATTRS_DEPTH} levels attrs may have"


class RequestError(InvalidInput):
    """The request body or its headers break an ingest rule; `field` names where."""


class UnsupportedMediaType(RequestError):
    """The Content-Type is not JSON or NDJSON, or names a charset other than UTF-8."""


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """Events for the sequencer, the request's idempotency key and its content hash.

    `shape` is "object", "array" or "ndjson"; `field_path(index, field)` names a field the way
    this module does, for errors found later (the sequencer's `EntryError.index` and `.field`).
    """

    events: list[Event]
    idempotency_key: str | None
    request_hash: bytes
    shape: str

    def field_path(self, index: int, field: str | None) -> str:
        return _path(self.shape, index, field)


class _EventIn(msgspec.Struct, forbid_unknown_fields=True):
    step: str
    status: str
    trace_id: str | None | UnsetType = UNSET
    span_id: str | None | UnsetType = UNSET
    parent_id: str | None | UnsetType = UNSET
    ts: str | None | UnsetType = UNSET
    attrs: msgspec.Raw | UnsetType = UNSET
    final: bool | None | UnsetType = UNSET
    idempotency_key: str | None | UnsetType = UNSET


def _checked_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    if value.is_integer() and _SAFE <= abs(value) < 1e21:
        raise ValueError(f"{text} is a whole number of magnitude 2^53 or more; it does not survive canonical JSON")
    return value


_ONE = msgspec.json.Decoder(_EventIn)
_MANY = msgspec.json.Decoder(list[_EventIn])
_RAWS = msgspec.json.Decoder(list[msgspec.Raw])
_ATTRS = msgspec.json.Decoder(dict[str, Any], float_hook=_checked_float)
_FIELD_COUNT = len(_EventIn.__struct_fields__)
_PROBE_TIME = "2000-01-01T00:00:00Z"


def _path(shape: str, index: int, field: str | None) -> str:
    base = "" if shape == "object" else f"events[{index}]"
    if not field:
        return base or "body"
    return f"{base}.{field}" if base else field


def _fail(path: str, rule: str, line: int | None = None) -> RequestError:
    return RequestError(f"{'' if line is None else f'line {line}: '}{path}: {rule}", field=path)


def _rule(error: Exception, name: str | None = None) -> str:
    """The rule in a core or msgspec message, without its field prefix or msgspec path."""
    text = _MSGSPEC_ERROR.fullmatch(str(error))[1]  # type: ignore[index]
    if name and text.startswith(name + ": "):
        text = text[len(name) + 2:]
    return text[:1].lower() + text[1:]


def request_headers(raw_headers: Iterable[tuple[bytes, bytes]]) -> dict[str, list[str]]:
    """The headers `parse_events` reads, from ASGI `scope["headers"]` (latin-1, any case)."""
    found: dict[str, list[str]] = {}
    for name, value in raw_headers:
        key = name.decode("latin-1").lower()
        if key in HEADERS:
            found.setdefault(key, []).append(value.decode("latin-1"))
    return found


def _media_type(content_type: str | None) -> str:
    if content_type is None or not content_type.strip():
        return JSON
    media, *params = (part.strip() for part in content_type.split(";"))
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() != "utf-8":
            raise UnsupportedMediaType(f"Content-Type: only UTF-8 is accepted, got {param!r}", field="Content-Type")
    media = media.lower()
    if media == NDJSON:
        return NDJSON
    if media == JSON or (media.startswith("application/") and media.endswith("+json")):
        return JSON
    raise UnsupportedMediaType(f"Content-Type: send {JSON} (an event or an array) or {NDJSON}, not {media!r}",
                               field="Content-Type")


def _decode_error(error: msgspec.MsgspecError, shape: str, index: int, line: int | None) -> RequestError:
    """A msgspec error ("Expected `str`, got `int` - at `$[3].step`") naming the field."""
    match = _MSGSPEC_ERROR.fullmatch(str(error))
    rule, where = match[1], match[2] or ""  # type: ignore[index]
    if not isinstance(error, msgspec.ValidationError):
        return _fail("body" if line is None else _path(shape, index, None), f"not valid JSON: {rule}", line)
    if where.startswith("["):
        position, _, where = where[1:].partition("]")
        index = int(position)
    field = where.lstrip(".")
    named = re.fullmatch(r"Object (contains unknown|missing required) field `(.*)`", rule)
    if named:
        field = f"{field}.{named[2]}" if field else named[2]
        rule = ("unknown field; the fields are " + ", ".join(_EventIn.__struct_fields__)
                if named[1] == "contains unknown" else "required field is missing")
    return _fail(_path(shape, index, field), rule[:1].lower() + rule[1:], line)


def _frame(body: bytes, media: str, max_batch: int) -> tuple[str, list[_EventIn], list[bytes] | None, list[int]]:
    """Typed events from the body: (shape, events, NDJSON lines or None, their line numbers)."""
    if body.startswith(b"\xef\xbb\xbf"):
        raise _fail("body", "starts with a byte order mark, which JSON (RFC 8259) forbids")
    if media == NDJSON:
        numbered = [(n, line) for n, line in enumerate(body.split(b"\n"), start=1) if line.strip()]
        if not 1 <= len(numbered) <= max_batch:
            raise _fail("events", f"{len(numbered)} NDJSON lines with events: send 1 to {max_batch} per request")
        events = []
        for index, (number, line) in enumerate(numbered):
            try:
                events.append(_ONE.decode(line))
            except msgspec.MsgspecError as error:
                raise _decode_error(error, "ndjson", index, number) from None
            except RecursionError:
                raise _fail(_path("ndjson", index, None), _TOO_DEEP, number) from None
        return "ndjson", events, [line for _, line in numbered], [n for n, _ in numbered]
    first = _FIRST_BYTE.match(body)
    shape = {b"{": "object", b"[": "array"}.get(first[1]) if first else None
    if shape is None:
        raise _fail("body", "must be one event (a JSON object), an array of events, or NDJSON")
    try:
        events = [_ONE.decode(body)] if shape == "object" else _MANY.decode(body)
    except msgspec.MsgspecError as error:
        raise _decode_error(error, shape, 0, None) from None
    except RecursionError:
        raise _fail("body", _TOO_DEEP) from None
    if not 1 <= len(events) <= max_batch:
        raise _fail("events", f"{len(events)} events: send 1 to {max_batch} per request")
    return shape, events, None, []


def _check_key(key: str, path: str, line: int | None = None) -> str:
    if _KEY.fullmatch(key) is None:
        raise _fail(path, f"must be 1..{MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII characters", line)
    return key


def _idempotency_header(values: Sequence[str]) -> str | None:
    """A bare key (as Stripe sends it) or an RFC 8941 string (as the IETF draft does)."""
    if not values:
        return None
    if len(values) > 1:
        raise _fail("Idempotency-Key", "appears more than once")
    text = values[0].strip(" \t")
    if text.startswith('"'):
        quoted = _SF_STRING.fullmatch(text)
        if quoted is None:
            raise _fail("Idempotency-Key", "not a valid quoted string (RFC 8941)")
        text = re.sub(r"\\(.)", r"\1", quoted[1])
    return _check_key(text, "Idempotency-Key")


class _Correlation:
    """The request's correlation headers, each parsed once; an invalid one raises."""

    def __init__(self, headers: Mapping[str, Sequence[str]]) -> None:
        try:
            self.traceparent: TraceParent | None = parse_traceparent_headers(list(headers.get("traceparent", ())))
            xray = list(headers.get("x-amzn-trace-id", ()))
            self.xray = (trace_id_from_xray(xray[0]), xray_parent_id(xray[0])) if len(xray) == 1 else None
        except TraceContextError as error:
            raise RequestError(str(error), field=error.field) from None

    def trace_id(self) -> str | None:
        if self.traceparent is not None:
            return self.traceparent.trace_id
        return self.xray[0] if self.xray is not None else None

    def span_id(self, trace_id: str) -> str | None:
        if self.traceparent is not None and self.traceparent.trace_id == trace_id:
            return self.traceparent.parent_id
        return self.xray[1] if self.xray is not None and self.xray[0] == trace_id else None


def _hex_id(value: str, path: str, pattern: re.Pattern[str], width: int) -> str:
    if pattern.fullmatch(value) is None or value == "0" * width:
        raise RequestError(f"{path}: must be {width} lower-case hex digits, not all zero", field=path)
    return value


def _attrs(raw: msgspec.Raw | UnsetType, path: str) -> tuple[dict[str, Any], bytes]:
    """Attrs and their sorted-key JSON; byte counts settle the common case, the core the rest."""
    text = b"null" if raw is UNSET else bytes(raw)
    if text == b"null":
        return {}, b"{}"
    if len(text) > MAX_RAW_ATTRS_BYTES:
        raise RequestError(f"{path}: {len(text)} bytes of JSON, more than the {MAX_RAW_ATTRS_BYTES} read", field=path)
    try:
        attrs = _ATTRS.decode(text)
    except msgspec.MsgspecError as error:
        raise RequestError(f"{path}: {_rule(error).replace('expected `object`', 'must be a JSON object')}",
                           field=path) from None
    except RecursionError:
        raise RequestError(f"{path}: {_TOO_DEEP}", field=path) from None
    if (len(text) > _ALWAYS_SMALL_ATTRS or text.count(b"{") + text.count(b"[") > MAX_ATTRS_DEPTH
            or _SIXTEEN_DIGITS in text.translate(_DIGITS_AS_ZERO)):
        probe = Entry(seq=0, trace_id="1" * 32, run_seq=0, step="probe", status="info", ts=_PROBE_TIME,
                      received_at=_PROBE_TIME, source="probe", prev=None, run_prev=None, attrs=attrs)
        try:
            encode_entry(probe)
        except InvalidInput as error:
            raise RequestError(f"{path}: {_rule(error, 'attrs')}", field=path) from None
    return attrs, orjson.dumps(attrs, option=orjson.OPT_SORT_KEYS)


class _DuplicateKey(Exception):
    pass


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        raise _DuplicateKey(next(key for key, _ in pairs if key in seen or seen.add(key)))  # type: ignore[func-returns-value]
    return result


def _find_duplicate_key(shape: str, body: bytes, lines: list[bytes] | None, numbers: list[int]) -> None:
    """Raise naming the first event with a repeated key in one of its objects, if there is one."""
    parts = lines if lines is not None else [body] if shape == "object" else [bytes(r) for r in _RAWS.decode(body)]
    for index, part in enumerate(parts):
        try:
            json.loads(part, object_pairs_hook=_refuse_duplicates)
        except _DuplicateKey as duplicate:
            raise _fail(_path(shape, index, None), f"key {duplicate.args[0]!r} appears twice in one object; "
                        "keys must be unique (RFC 7493)", numbers[index] if numbers else None) from None


class _Request:
    """One request's context while its events are converted."""

    def __init__(self, shape: str, source: str, correlation: _Correlation, key: str | None, now: str) -> None:
        self.shape, self.source, self.correlation, self.key, self.now = shape, source, correlation, key, now
        # ':' the parsed values account for; a body holding more has a duplicate key.
        self.colons = 0

    def event(self, raw: _EventIn, index: int, line: int | None) -> tuple[Event, list[Any]]:
        """The event and its canonical form for the request hash (where an absent ts stays absent)."""
        dot = "" if self.shape == "object" else f"events[{index}]."
        step, status = raw.step, raw.status
        if not 1 <= len(step) <= MAX_STEP_CHARS or _STEP_FORBIDDEN.search(step):
            raise _fail(dot + "step", f"must be 1..{MAX_STEP_CHARS} characters without control characters", line)
        if status not in STATUSES:
            raise _fail(dot + "status", f"must be one of {', '.join(sorted(STATUSES))}, got {status[:40]!r}", line)
        final = raw.final is True
        if final and status not in FINAL_STATUSES:
            raise _fail(dot + "final", f"only a succeeded or failed event can close a run, not {status!r}", line)
        trace_id = raw.trace_id if isinstance(raw.trace_id, str) else self.correlation.trace_id()
        if trace_id is None:
            raise _fail(dot + "trace_id", "missing: give trace_id, a traceparent header or an X-Amzn-Trace-Id "
                        "header (the appliance never invents a run's ID)", line)
        span_id = raw.span_id if isinstance(raw.span_id, str) else self.correlation.span_id(trace_id)
        parent_id = raw.parent_id if isinstance(raw.parent_id, str) else None
        ts = raw.ts if isinstance(raw.ts, str) else None
        try:
            _hex_id(trace_id, dot + "trace_id", _TRACE_ID, 32)
            if span_id is not None:
                _hex_id(span_id, dot + "span_id", _SPAN_ID, 16)
            if parent_id is not None:
                _hex_id(parent_id, dot + "parent_id", _SPAN_ID, 16)
            if ts is not None:
                self.colons += ts.count(":")
                ts = self._utc(ts, dot + "ts")
            if isinstance(raw.idempotency_key, str):
                self._agree(raw.idempotency_key, dot + "idempotency_key")
            attrs, attrs_json = _attrs(raw.attrs, dot + "attrs")
        except RequestError as error:
            raise error if line is None else RequestError(f"line {line}: {error}", field=error.field) from None
        self.colons += _FIELD_COUNT - msgspec.structs.astuple(raw).count(UNSET) + step.count(":")
        self.colons += attrs_json.count(b":")
        event = Event(trace_id=trace_id, step=step, status=status, ts=ts or self.now, source=self.source, attrs=attrs,
                      span_id=span_id, parent_id=parent_id, final=final)
        return event, [trace_id, span_id, parent_id, step, status, ts, final, orjson.Fragment(attrs_json)]

    @staticmethod
    def _utc(ts: str, path: str) -> str:
        try:
            if ts[-1:] == "Z" and ts[10:11] == "T":
                check_utc(ts)
                return ts
            return normalize_rfc3339(ts)
        except InvalidInput as error:
            raise RequestError(f"{path}: {_rule(error, 'ts')}", field=path) from None

    def _agree(self, key: str, path: str) -> None:
        self.colons += key.count(":")
        _check_key(key, path)
        if self.key is not None and key != self.key:
            raise _fail(path, "differs from the request's key (the Idempotency-Key header or an earlier event's)")
        self.key = key


def parse_events(
    body: bytes,
    content_type: str | None,
    headers: Mapping[str, Sequence[str]],
    source: str,
    *,
    max_batch: int,
    default_ts: str | None = None,
) -> ParsedRequest:
    """Parse an ingest request into `Event`s, all or nothing.

    Preconditions: `headers` maps lower-case names to every value received (`request_headers`
    builds it); `source` is the authenticated credential's name; `max_batch` >= 1; `default_ts`,
    the appliance's time for events without `ts`, is strict UTC RFC 3339 (None: the clock is
    read when needed). Raises `RequestError` (`UnsupportedMediaType` for the Content-Type)
    naming the first offending field.
    """
    if type(source) is not str or _SOURCE.fullmatch(source) is None:
        raise InvalidInput("source must be 1..128 printable ASCII characters without spaces", field="source")
    shape, raw_events, lines, numbers = _frame(body, _media_type(content_type), max_batch)
    key = _idempotency_header(list(headers.get("idempotency-key", ())))
    now = ""
    if any(not isinstance(raw.ts, str) for raw in raw_events):
        now = default_ts if default_ts is not None else format_utc(datetime.now(timezone.utc))
    request = _Request(shape, source, _Correlation(headers), key, now)
    events: list[Event] = []
    hashed: list[list[Any]] = []
    for index, raw in enumerate(raw_events):
        event, canonical = request.event(raw, index, numbers[index] if numbers else None)
        events.append(event)
        hashed.append(canonical)
    if request.colons != body.count(b":") or b"\\u003" in body:
        _find_duplicate_key(shape, body, lines, numbers)
    digest = hashlib.sha256(orjson.dumps([_HASH_FORMAT, source, hashed])).digest()
    return ParsedRequest(events=events, idempotency_key=request.key, request_hash=digest, shape=shape)
