"""The body of `POST /v1/events`: one event, a JSON array of events, or NDJSON, strictly parsed.

Pure: bytes and headers in, sequencer `Event`s out, or a `RequestError` naming the field (`step`
for a single object, `events[3].step` in an array or NDJSON, whose messages also give the line)
and the rule. The rules are the entry's (appliance.core.entry); property tests check that this
module accepts exactly what `encode_entry` accepts. Decisions:
- Correlation: the event's `trace_id`, else the one `traceparent` header, else the
  `X-Amzn-Trace-Id` Root; none is an error (the appliance never invents an ID). The body wins,
  and a header naming another trace is ignored (instrumented HTTP clients attach their own
  trace to every call); `span_id` defaults to the parent-id of the header naming the event's
  trace. One invalid correlation header is always an error; two or more `traceparent` lines
  mean "restart" (W3C) and count as absent, and so do two X-Ray lines.
- `null` means absent. `ts` may carry any RFC 3339 offset and is stored in UTC; an event
  without `ts` gets `default_ts`.
- JSON: UTF-8, no BOM; duplicate keys, NaN/Infinity, lone surrogates and unknown fields are
  errors; in `attrs`, integers beyond +-(2^53-1) and integral floats in [2^53, 1e21) too (the
  entry's I-JSON rule); other floats stay IEEE doubles. Nesting too deep is an error, not a
  crash. The body size limit is the server's; a parsed body takes a few times its size in
  memory (~7x for ordinary events, ~25x at worst, for a body made of empty arrays).
- `request_hash`: SHA-256 over a canonical form of the parsed request (source, every resolved
  field, `ts` normalised or absent, `attrs` with sorted keys): whitespace, key order and
  equivalent offsets do not change it.
"""

import hashlib
import json
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, NamedTuple

import msgspec
from msgspec import UNSET, UnsetType

from appliance.core.entry import FINAL_STATUSES, MAX_ATTRS_DEPTH, MAX_STEP_CHARS, STATUSES, encode_parts
from appliance.core.errors import InvalidInput, TraceContextError
from appliance.core.sequencer import Event
from appliance.core.timefmt import check_utc, format_utc, normalize_rfc3339
from appliance.core.tracecontext import TraceParent, parse_traceparent_headers, trace_id_from_xray, xray_parent_id

JSON = "application/json"
NDJSON = "application/x-ndjson"
HEADERS = ("traceparent", "x-amzn-trace-id", "idempotency-key")
_HEADER_NAMES = {name.encode("latin-1"): name for name in HEADERS}
MAX_IDEMPOTENCY_KEY_CHARS = 255

_HASH_FORMAT = "runlog-ingest-request/v1"
_STEP_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")  # appliance.core.entry's rule
_SOURCE = re.compile(r"[!-~]{1,128}")
_KEY = re.compile(r"[ -~]{1,%d}" % MAX_IDEMPOTENCY_KEY_CHARS)
_SF_STRING = re.compile(r'"((?:[ !#-\[\]-~]|\\["\\])*)"')  # RFC 8941 section 3.3.3
_FIRST_BYTE = re.compile(rb"[ \t\r\n]*(.)", re.S)
_JSON_SPACE = (b" ", b"\t", b"\r", b"\n")
_SHAPES = {b"{": "object", b"[": "array"}
_MSGSPEC_ERROR = re.compile(r"(.*?)(?: - at `\$(.*)`)?", re.S)
_TOO_DEEP = f"nested far deeper than the {MAX_ATTRS_DEPTH} levels attrs may have"


class RequestError(InvalidInput):
    """The request body or its headers break an ingest rule; `field` names where."""


class UnsupportedMediaType(RequestError):
    """The Content-Type is not JSON or NDJSON, or names a charset other than UTF-8."""


class ParsedRequest(NamedTuple):
    """Events for the sequencer, the request's idempotency key and its content hash.

    `shape` is "object", "array" or "ndjson"; `field_path(index, field)` names a field the way
    this module does, for errors found later (the sequencer's `EntryError.index` and `.field`).
    (A named tuple: a frozen dataclass cost ~1 µs per request to build.)
    """

    events: list[Event]
    idempotency_key: str | None
    request_hash: bytes
    shape: str

    def field_path(self, index: int, field: str | None) -> str:
        return _path(self.shape, index, field)


class _EventIn(msgspec.Struct, forbid_unknown_fields=True, gc=False):  # decoded JSON closes no cycle: untracked
    step: str
    status: str
    trace_id: str | None | UnsetType = UNSET
    span_id: str | None | UnsetType = UNSET
    parent_id: str | None | UnsetType = UNSET
    ts: str | None | UnsetType = UNSET
    attrs: dict[str, Any] | None | UnsetType = UNSET
    final: bool | None | UnsetType = UNSET
    idempotency_key: str | None | UnsetType = UNSET


def _checked_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    if value.is_integer() and 2**53 <= abs(value) < 1e21:
        raise ValueError(f"{text} is a whole number of magnitude 2^53 or more; it does not survive canonical JSON")
    return value


_ONE = msgspec.json.Decoder(_EventIn, float_hook=_checked_float)
_MANY = msgspec.json.Decoder(list[_EventIn], float_hook=_checked_float)
_RAWS = msgspec.json.Decoder(list[msgspec.Raw])
_SORTED_JSON = msgspec.json.Encoder(order="sorted")
_FIELD_COUNT = len(_EventIn.__struct_fields__)


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
        key = _HEADER_NAMES.get(name.lower())  # compared as bytes: this runs on every ingest request
        if key is not None:
            found.setdefault(key, []).append(value.decode("latin-1"))
    return found


def _media_type(content_type: str | None) -> str:
    if content_type is None or content_type == JSON:  # what nearly every client sends
        return JSON
    if not content_type.strip():
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
    field = re.match(r"[^.\[]*", where.lstrip("."))[0]  # type: ignore[index]  # attrs.a[0] -> attrs
    named = re.fullmatch(r"Object (contains unknown|missing required) field `(.*)`", rule)
    if named:
        field = f"{field}.{named[2]}" if field else named[2]
        rule = ("unknown field; the fields are " + ", ".join(_EventIn.__struct_fields__)
                if named[1] == "contains unknown" else "required field is missing")
    rule = rule.replace("Expected `object | null`", "must be a JSON object")
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
    first = body[:1]
    if first in _JSON_SPACE:  # leading whitespace: find the first other byte
        match = _FIRST_BYTE.match(body)
        first = match[1] if match else b""
    shape = _SHAPES.get(first)
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


def idempotency_key(headers: Mapping[str, Sequence[str]]) -> str | None:
    """The `Idempotency-Key` header's key: bare (as Stripe sends it) or an RFC 8941 string (as
    the IETF draft does); 1..255 printable ASCII. Raises `RequestError`; None when absent."""
    values = list(headers.get("idempotency-key", ()))
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
        self.traceparent: TraceParent | None = None
        self.xray: tuple[str, str | None] | None = None
        if not headers:  # neither header: nothing to parse (the usual request with trace_id in the body)
            return
        try:
            self.traceparent = parse_traceparent_headers(list(headers.get("traceparent", ())))
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


class _DuplicateKey(Exception):
    """Raised by the slow duplicate-key search; carries the key."""


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return result


def _find_duplicate_key(shape: str, body: bytes, lines: list[bytes] | None, numbers: list[int]) -> None:
    """Raise naming the first event with a repeated key in one of its objects, if there is one."""
    parts = lines if lines is not None else [body] if shape == "object" else [bytes(r) for r in _RAWS.decode(body)]
    for index, part in enumerate(parts):
        try:
            json.loads(part, object_pairs_hook=_refuse_duplicates)
        except (ValueError, RecursionError):  # msgspec read it; nothing here to report
            continue
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
        step, status, final = raw.step, raw.status, raw.final is True
        trace_id = raw.trace_id if type(raw.trace_id) is str else self.correlation.trace_id()
        span_id = raw.span_id if type(raw.span_id) is str else self.correlation.span_id(trace_id)
        parent_id = raw.parent_id if type(raw.parent_id) is str else None
        ts = raw.ts if type(raw.ts) is str else None
        attrs = raw.attrs or {}
        if ts is not None:
            self.colons += ts.count(":")
            try:
                ts = _utc(ts)
            except InvalidInput as error:
                self._refuse(raw, index, line, trace_id, span_id, parent_id)  # an earlier field is named first
                raise _fail(_path(self.shape, index, "ts"), _rule(error, "ts"), line) from None
        try:  # every entry rule, checked once, by the core: the writer then only joins bytes
            parts = encode_parts(trace_id=trace_id, step=step, status=status, ts=ts or self.now, source=self.source,
                                 attrs=attrs, span_id=span_id, parent_id=parent_id, final=final)
        except InvalidInput as error:
            self._refuse(raw, index, line, trace_id, span_id, parent_id)  # names the field in this module's words
            field = error.field or "attrs"
            raise _fail(_path(self.shape, index, field), _rule(error, field), line) from None
        event = Event(trace_id, step, status, ts or self.now, self.source, attrs, span_id, parent_id, final, parts)
        attrs_json = _SORTED_JSON.encode(attrs)
        if type(raw.idempotency_key) is str:
            self._agree(raw.idempotency_key, _path(self.shape, index, "idempotency_key"), line)
        self.colons += (_FIELD_COUNT - msgspec.structs.astuple(raw).count(UNSET) + step.count(":")
                        + attrs_json.count(b":"))
        return event, [trace_id, span_id, parent_id, step, status, ts, final, msgspec.Raw(attrs_json)]

    def _refuse(self, raw: _EventIn, index: int, line: int | None, trace_id: str | None, span_id: str | None,
                parent_id: str | None) -> None:
        step, status = raw.step, raw.status
        def fail(name: str, rule: str) -> RequestError:
            return _fail(_path(self.shape, index, name), rule, line)

        if not 0 < len(step) <= MAX_STEP_CHARS or _STEP_FORBIDDEN.search(step):
            raise fail("step", f"must be 1..{MAX_STEP_CHARS} characters without control characters")
        if status not in STATUSES:
            raise fail("status", f"must be one of {', '.join(sorted(STATUSES))}, got {status[:40]!r}")
        if raw.final is True and status not in FINAL_STATUSES:
            raise fail("final", f"only a succeeded or failed event can close a run, not {status!r}")
        if trace_id is None:
            raise fail("trace_id", "missing: give trace_id, a traceparent header or an X-Amzn-Trace-Id header "
                       "(the appliance never invents a run's ID)")
        for name, value, width in (("trace_id", trace_id, 32), ("span_id", span_id, 16), ("parent_id", parent_id, 16)):
            if value is not None and (not re.fullmatch(f"[0-9a-f]{{{width}}}", value) or value == "0" * width):
                raise fail(name, f"must be {width} lower-case hex digits, not all zero")

    def _agree(self, key: str, path: str, line: int | None) -> None:
        self.colons += key.count(":")
        _check_key(key, path, line)
        if self.key is not None and key != self.key:
            raise _fail(path, "differs from the request's key (the Idempotency-Key header or an earlier event's)",
                        line)
        self.key = key


def utc_text(micros: int) -> str:
    """`format_utc` of the moment `micros` microseconds after the Unix epoch, with the date and
    time of day formatted once per second (`format_utc(datetime.now(...))` costs ~3 µs)."""
    global _second
    second, fraction = divmod(micros, 1_000_000)
    text, cached = _second
    if cached != second:
        text = format_utc(datetime.fromtimestamp(second, timezone.utc), 0)[:-1]
        _second = (text, second)
    return f"{text}.{fraction:06d}Z"


_second: tuple[str, int | None] = ("", None)  # replaced whole, so threads never see half of it


def _utc(ts: str) -> str:
    """`normalize_rfc3339(ts)`, skipping its slow path for "Z" and "+00:00" (Python's isoformat)."""
    if ts[10:11] == "T" and (ts[-1:] == "Z" or ts[-6:] == "+00:00"):
        candidate = ts if ts[-1:] == "Z" else ts[:-6] + "Z"
        try:
            check_utc(candidate)
            return candidate
        except InvalidInput:
            pass  # normalize_rfc3339 gives the error message
    return normalize_rfc3339(ts)


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
    key = idempotency_key(headers)
    now = ""
    if any(not isinstance(raw.ts, str) for raw in raw_events):
        now = default_ts if default_ts is not None else utc_text(time.time_ns() // 1000)
    request = _Request(shape, source, _Correlation(headers), key, now)
    events: list[Event] = []
    hashed: list[list[Any]] = []
    for index, raw in enumerate(raw_events):
        event, canonical = request.event(raw, index, numbers[index] if numbers else None)
        events.append(event)
        hashed.append(canonical)
    if request.colons != body.count(b":") or b"\\u003" in body:
        _find_duplicate_key(shape, body, lines, numbers)
    digest = hashlib.sha256(_SORTED_JSON.encode([_HASH_FORMAT, source, hashed])).digest()
    return ParsedRequest(events=events, idempotency_key=request.key, request_hash=digest, shape=shape)
