"""Entries: one event as RFC 8785 canonical JSON bytes; the entry hash is their SHA-256.

The byte format is written down in docs/FORMAT.md ("Entries"). Encoding validates every field;
decoding accepts only bytes that are exactly what encoding produces, so one event has exactly one
valid byte string and one hash.
"""

import json
import math
import re
from dataclasses import dataclass, field
from json.encoder import c_make_encoder  # type: ignore[attr-defined]
from json.encoder import encode_basestring as _json_string  # RFC 8785 string rules, see docs
from typing import Any, Callable, NamedTuple

import rfc8785

from appliance.core.errors import EntryError
from appliance.core.hashing import HASH_SIZE, sha256
from appliance.core.timefmt import check_utc

FORMAT_VERSION = 1
MAX_SAFE_INTEGER = 2**53 - 1
MAX_STEP_CHARS = 200
MAX_SOURCE_CHARS = 128
MAX_ATTRS_BYTES = 65_536
MAX_ATTRS_DEPTH = 32
STATUSES = frozenset({"started", "succeeded", "failed", "skipped", "info"})
FINAL_STATUSES = frozenset({"succeeded", "failed"})

_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")
_HASH_HEX = re.compile(r"[0-9a-f]{64}")
_SOURCE = re.compile(r"[!-~]{1,128}")
# C0, DEL, C1 and surrogates (a Python str holding one is not valid Unicode text).
_STEP_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_KEYS = frozenset(
    {"v", "seq", "trace_id", "span_id", "parent_id", "run_seq", "step", "status", "final", "ts",
     "received_at", "source", "attrs", "prev", "run_prev"}
)
_OPTIONAL_KEYS = frozenset({"span_id", "parent_id", "final"})
_REQUIRED_KEYS = _KEYS - _OPTIONAL_KEYS
_HAS_FLOAT = 1
_HAS_NON_ASCII_KEY = 2


def _refuse_type(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def _make_fast_encoder() -> Callable[[Any], str]:
    """JSON text byte-identical to RFC 8785 for values without floats whose keys are all ASCII.

    Then code point order is UTF-16 code unit order, integers and literals print the same, and
    `encode_basestring` escapes exactly RFC 8785's set; tests check it against `rfc8785`. The C
    encoder is built once (json.dumps rebuilds it per call); `_scan_attrs` has already bounded
    depth, so its circular-reference check is not needed.
    """
    if c_make_encoder is not None:
        try:
            iterencode = c_make_encoder(None, _refuse_type, _json_string, None, ":", ",", True, False, False)
            return lambda value: "".join(iterencode(value, 0))
        except TypeError:  # the private constructor changed shape: take the public route
            pass
    return json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False).encode


_fast_attrs_text = _make_fast_encoder()


def plain_json_text(value: Any) -> str:
    """RFC 8785 text of a JSON value that holds no float, no integer beyond +-(2^53-1) and only
    ASCII object keys (the caller checks that, e.g. with `is_plain_json`; `encode_entry` uses the
    same encoder for attrs)."""
    return _fast_attrs_text(value)


def is_plain_json(value: object) -> bool:
    """True when `value` holds only dicts with ASCII string keys, lists, strings, booleans, None and
    integers within +-(2^53-1): then `plain_json_text` is byte-identical to RFC 8785."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            if not all(type(key) is str and key.isascii() for key in item):
                return False
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif kind is int:
            if not -(2**53) < item < 2**53:
                return False
        elif kind is not str and kind is not bool and item is not None:
            return False  # floats, and any other type, take rfc8785's path
    return True


@dataclass(frozen=True, kw_only=True, slots=True)
class Entry:
    """One event. Values are not checked here; `encode_entry` checks them all.

    `prev`/`run_prev` are raw 32-byte SHA-256 hashes (hex only in the JSON); `ts` and
    `received_at` keep their exact RFC 3339 text because that text is what gets hashed.
    """

    seq: int
    trace_id: str
    run_seq: int
    step: str
    status: str
    ts: str
    received_at: str
    source: str
    prev: bytes | None
    run_prev: bytes | None
    attrs: dict[str, Any] = field(default_factory=dict, hash=False)
    span_id: str | None = None
    parent_id: str | None = None
    final: bool = False
    version: int = FORMAT_VERSION


def _fail(name: str, problem: str) -> EntryError:
    return EntryError(f"{name}: {problem}", field=name)


def _show(value: Any) -> str:
    """A short repr for messages (repr of an int past 4,300 digits would itself raise)."""
    if type(value) is int and not -(10**20) < value < 10**20:
        return "a very large integer"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_count(value: Any, name: str) -> None:
    if type(value) is not int or not 0 <= value <= MAX_SAFE_INTEGER:
        raise _fail(name, f"must be an integer 0..2^53-1, got {_show(value)}")


def _check_id(value: Any, name: str, pattern: re.Pattern[str], width: int) -> None:
    if type(value) is not str or pattern.fullmatch(value) is None or value == "0" * width:
        raise _fail(name, f"must be {width} lower-case hex digits, not all zero, got {_show(value)}")


def _check_link(value: Any, name: str, first: bool, first_rule: str) -> None:
    if first:
        if value is not None:
            raise _fail(name, f"must be null exactly when {first_rule}")
    elif type(value) is not bytes or len(value) != HASH_SIZE:
        raise _fail(name, f"must be a 32-byte SHA-256 hash unless {first_rule}")


def _scan_attrs(value: Any, depth: int) -> int:
    """Check I-JSON rules and depth; return flags saying whether the fast encoder is unsafe."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return 0
    if kind is int:
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return 0
        raise _fail("attrs", f"integer {_show(value)} is outside +-(2^53-1)")
    if kind is float:
        if math.isfinite(value):
            return _HAS_FLOAT
        raise _fail("attrs", f"{value} is not a finite number")
    if depth > MAX_ATTRS_DEPTH:
        raise _fail("attrs", f"nested deeper than {MAX_ATTRS_DEPTH} levels")
    flags = 0
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise _fail("attrs", f"object keys must be strings, got {_show(key)}")
            if not key.isascii():
                flags |= _HAS_NON_ASCII_KEY
            item_kind = type(item)  # strings and safe integers, the usual values, are checked without a call
            if item_kind is not str and (item_kind is not int or not -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER):
                flags |= _scan_attrs(item, depth + 1)
        return flags
    if kind is list:
        for item in value:
            item_kind = type(item)
            if item_kind is not str and (item_kind is not int or not -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER):
                flags |= _scan_attrs(item, depth + 1)
        return flags
    raise _fail("attrs", f"{kind.__name__} is not a JSON value")


def _encode_attrs(attrs: Any) -> bytes:
    if type(attrs) is not dict:
        raise _fail("attrs", f"must be a JSON object, got {type(attrs).__name__}")
    flags = _scan_attrs(attrs, 1)
    try:
        if flags:
            encoded = rfc8785.dumps(attrs)
        else:
            encoded = _fast_attrs_text(attrs).encode("utf-8")
    except ValueError:  # UnicodeEncodeError or rfc8785.CanonicalizationError: a lone surrogate
        raise _fail("attrs", "strings must be valid Unicode (no lone surrogates)") from None
    if len(encoded) > MAX_ATTRS_BYTES:
        raise _fail("attrs", f"canonical form is {len(encoded)} bytes, more than {MAX_ATTRS_BYTES}")
    if flags & _HAS_FLOAT:
        # ECMAScript number text can turn a float into an integer beyond 2^53 (1e16 becomes
        # 10000000000000000), which no I-JSON reader can read back as the same value.
        try:
            round_trip = rfc8785.dumps(json.loads(encoded))
        except ValueError:
            round_trip = None
        if round_trip != encoded:
            raise _fail("attrs", "a float does not survive parsing its canonical text (|x| >= 2^53?)")
    return encoded


@dataclass(frozen=True, slots=True)
class EntryParts:
    """An event's share of its entry's canonical bytes: what comes before and after the fields the
    log assigns (`prev`, `received_at`, `run_prev`, `run_seq`, `seq`, which sort between them)."""

    head: bytes  # {"attrs":...[,"final":true][,"parent_id":"..."]
    tail: bytes  # ,"source":...[,"span_id":"..."],"status":...,"step":...,"trace_id":...,"ts":...,"v":1}


def _check_step_status(step: Any, status: Any, final: Any) -> None:
    if type(step) is not str or not 1 <= len(step) <= MAX_STEP_CHARS:
        raise _fail("step", f"must be a string of 1..{MAX_STEP_CHARS} characters")
    if _STEP_FORBIDDEN.search(step):
        raise _fail("step", "must not contain control characters or lone surrogates")
    if type(status) is not str or status not in STATUSES:
        raise _fail("status", f"must be one of {', '.join(sorted(STATUSES))}, got {_show(status)}")
    if type(final) is not bool:
        raise _fail("final", "must be true or false (false omits the key)")
    if final and status not in FINAL_STATUSES:
        raise _fail("final", f"only a succeeded or failed entry can close a run, not {_show(status)}")


def _check_source(source: Any) -> None:
    if type(source) is not str or _SOURCE.fullmatch(source) is None:
        raise _fail("source", f"must be 1..{MAX_SOURCE_CHARS} printable ASCII characters without spaces")


def _build_parts(attrs: bytes, trace_id: str, span_id: str | None, parent_id: str | None, step: str, status: str,
                 final: bool, ts: str, source: str) -> EntryParts:
    # Keys in RFC 8785 order (all ASCII, so UTF-16 order is plain string order).
    head = b'{"attrs":' + attrs
    if final:
        head += b',"final":true'
    if parent_id is not None:
        head += f',"parent_id":"{parent_id}"'.encode()
    span = "" if span_id is None else f',"span_id":"{span_id}"'
    tail = (f',"source":{_json_string(source)}{span},"status":"{status}","step":{_json_string(step)}'
            f',"trace_id":"{trace_id}","ts":"{ts}","v":{FORMAT_VERSION}}}').encode("utf-8")
    return EntryParts(head, tail)


# The `ts` object `encode_parts` last accepted. A request's events without `ts` share one string
# (the appliance's time), and the ingest parser has checked a producer's `ts` just before: a str
# is immutable, so the very object that passed the check passes it again (~3 us per event saved).
_ts_accepted: object = None


def encode_parts(*, trace_id: str, step: str, status: str, ts: str, source: str, attrs: Any,
                 span_id: str | None = None, parent_id: str | None = None, final: bool = False) -> EntryParts:
    """Validate an event's fields (the rules `encode_entry` applies to them, in the same order) and
    encode its share of the entry bytes. Raises `EntryError` naming the field."""
    global _ts_accepted
    _check_id(trace_id, "trace_id", _TRACE_ID, 32)
    if span_id is not None:
        _check_id(span_id, "span_id", _SPAN_ID, 16)
    if parent_id is not None:
        _check_id(parent_id, "parent_id", _SPAN_ID, 16)
    _check_step_status(step, status, final)
    if ts is not _ts_accepted:
        check_utc(ts, field="ts")
        _ts_accepted = ts
    _check_source(source)
    return _build_parts(_encode_attrs(attrs), trace_id, span_id, parent_id, step, status, final, ts, source)


def join_parts(parts: EntryParts, *, seq: int, run_seq: int, received_at: str, prev: bytes | None,
               run_prev: bytes | None) -> bytes:
    """The canonical entry bytes of an event whose parts `encode_parts` made, with the fields the
    log assigns. Preconditions, not checked here (the sequencer guarantees them): `seq` and
    `run_seq` are integers 0..2^53-1, `received_at` is strict UTC RFC 3339, `prev` is a 32-byte
    hash exactly when `seq` > 0 and `run_prev` exactly when `run_seq` > 0."""
    prev_text = "null" if prev is None else f'"{prev.hex()}"'
    run_prev_text = "null" if run_prev is None else f'"{run_prev.hex()}"'
    return b"".join((parts.head, f',"prev":{prev_text},"received_at":"{received_at}","run_prev":{run_prev_text}'
                                 f',"run_seq":{run_seq},"seq":{seq}'.encode(), parts.tail))


class JoinTemplates(NamedTuple):
    """`join_parts` for the entries of one `received_at` (a group commit shares one) as two bytes
    %-templates, for the writer's path: `linked % (head, prev_hex, run_prev_hex, run_seq, seq, tail)`
    and, for a run's first entry (run_seq 0, run_prev null), `run_start % (head, prev_hex, seq, tail)`,
    where `prev_hex`/`run_prev_hex` are `binascii.hexlify` of 32-byte hashes (so seq > 0). The
    preconditions of `join_parts`; the sequencer's entries are tested equal to `encode_entry`'s."""

    linked: bytes
    run_start: bytes


def join_templates(received_at: str) -> JoinTemplates:
    received = f',"received_at":"{received_at}","run_prev":'.encode().replace(b"%", b"%%")
    return JoinTemplates(b'%b,"prev":"%b"' + received + b'"%b","run_seq":%d,"seq":%d%b',
                         b'%b,"prev":"%b"' + received + b'null,"run_seq":0,"seq":%d%b')


def encode_entry(entry: Entry) -> bytes:
    """Validate every field rule and return the entry's RFC 8785 canonical bytes.

    Raises `EntryError` whose `field` names the first offending field. The output equals
    `rfc8785.dumps` of the entry's JSON object (keys in UTF-16 order; optional keys omitted).
    """
    if type(entry) is not Entry:
        raise EntryError(f"encode_entry needs an Entry, got {type(entry).__name__}")
    if type(entry.version) is not int or entry.version != FORMAT_VERSION:
        raise _fail("v", f"unsupported format version {_show(entry.version)}")
    _check_count(entry.seq, "seq")
    _check_id(entry.trace_id, "trace_id", _TRACE_ID, 32)
    if entry.span_id is not None:
        _check_id(entry.span_id, "span_id", _SPAN_ID, 16)
    if entry.parent_id is not None:
        _check_id(entry.parent_id, "parent_id", _SPAN_ID, 16)
    _check_count(entry.run_seq, "run_seq")
    _check_step_status(entry.step, entry.status, entry.final)
    check_utc(entry.ts, field="ts")
    check_utc(entry.received_at, field="received_at")
    _check_source(entry.source)
    _check_link(entry.prev, "prev", entry.seq == 0, "seq is 0")
    _check_link(entry.run_prev, "run_prev", entry.run_seq == 0, "run_seq is 0")
    parts = _build_parts(_encode_attrs(entry.attrs), entry.trace_id, entry.span_id, entry.parent_id, entry.step,
                         entry.status, entry.final, entry.ts, entry.source)
    return join_parts(parts, seq=entry.seq, run_seq=entry.run_seq, received_at=entry.received_at, prev=entry.prev,
                      run_prev=entry.run_prev)


def _refuse_constant(name: str) -> None:
    raise EntryError(f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def _hash_from_hex(value: Any, name: str) -> bytes | None:
    if value is None:
        return None
    if type(value) is not str or _HASH_HEX.fullmatch(value) is None:
        raise _fail(name, "must be null or 64 lower-case hex digits")
    return bytes.fromhex(value)


def _explain_difference(data: bytes, canonical: bytes) -> str:
    def refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in pairs]
        if len(set(keys)) != len(keys):
            raise EntryError("duplicate key")
        return dict(pairs)

    try:
        json.loads(data.decode("utf-8"), object_pairs_hook=refuse_duplicates)
    except EntryError:
        return "an object has a duplicate key"
    offset = next((i for i, (a, b) in enumerate(zip(data, canonical)) if a != b), min(len(data), len(canonical)))
    return f"differs from the RFC 8785 form at byte {offset}"


def decode_entry(data: bytes) -> Entry:
    """Parse canonical entry bytes, refusing anything `encode_entry` would not produce exactly.

    Preconditions: none. Raises `EntryError`: not UTF-8, not a JSON object, unknown or missing
    keys, a field rule broken (`field` set), or "not canonical" (whitespace, key order, number or
    string spelling, duplicate keys, `null` for an omitted key, ...).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise EntryError(f"entry bytes expected, got {type(data).__name__}")
    data = bytes(data)
    try:
        obj = _DECODER.decode(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise EntryError("not canonical: entry bytes are not valid UTF-8") from None
    except (ValueError, RecursionError):
        raise EntryError("not canonical: entry bytes are not one JSON value") from None
    if type(obj) is not dict:
        raise EntryError("entry must be a JSON object")
    unknown = obj.keys() - _KEYS
    if unknown:
        name = sorted(unknown)[0]
        raise _fail(name, "unknown key")
    missing = _REQUIRED_KEYS - obj.keys()
    if missing:
        name = sorted(missing)[0]
        raise _fail(name, "required key is missing")
    version = obj["v"]
    if type(version) is not int or version != FORMAT_VERSION:
        raise _fail("v", f"unsupported format version {_show(version)}")
    for name in ("span_id", "parent_id"):
        if name in obj and obj[name] is None:
            raise _fail(name, "omit the key when absent; null is not accepted")
    if "final" in obj and obj["final"] is not True:
        raise _fail("final", "must be true when present (omit the key otherwise)")
    entry = Entry(
        seq=obj["seq"],
        trace_id=obj["trace_id"],
        span_id=obj.get("span_id"),
        parent_id=obj.get("parent_id"),
        run_seq=obj["run_seq"],
        step=obj["step"],
        status=obj["status"],
        final="final" in obj,
        ts=obj["ts"],
        received_at=obj["received_at"],
        source=obj["source"],
        attrs=obj["attrs"],
        prev=_hash_from_hex(obj["prev"], "prev"),
        run_prev=_hash_from_hex(obj["run_prev"], "run_prev"),
    )
    canonical = encode_entry(entry)
    if canonical != data:
        raise EntryError(f"not canonical: {_explain_difference(data, canonical)}")
    return entry


def entry_hash(data: bytes) -> bytes:
    """SHA-256 of an entry's canonical bytes (what `sha256sum` prints for the stored bytes).

    Precondition: `data` are the bytes as stored; they are hashed as given, not re-encoded.
    """
    return sha256(bytes(data))
