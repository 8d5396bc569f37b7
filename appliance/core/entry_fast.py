"""A fast check of an entry's text for the offline verifier: the usual entry read with one regular
expression, instead of `decode_entry`'s parse, rebuild and re-encode.

`entry_facts(text)` returns what the bundle verifier needs of an entry (seq, trace, run position,
run link, final flag, the bytes) only when `decode_entry(text.encode())` would accept the entry and
give those values; otherwise None, and the caller takes `decode_entry`, which also says what is
wrong. It never raises. It reads the common shape only: every field as `encode_entry` writes it,
`step` and `source` without characters JSON escapes, `attrs` that `encode_entry` writes with its
fast encoder (no float, no non-ASCII key), checked by that encoder's own rules (tests check it
against `decode_entry` on generated and edited entries).
"""

from __future__ import annotations

import json
import re
from typing import NamedTuple

from appliance.core.entry import MAX_ATTRS_BYTES, MAX_SAFE_INTEGER, _scan_attrs, plain_json_text
from appliance.core.errors import RunlogError
from appliance.core.timefmt import check_utc

_TIME = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?Z"  # then check_utc
_HASH = r'(?:null|"([0-9a-f]{64})")'
_COUNT = r"(0|[1-9][0-9]{0,15})"  # then <= 2^53-1
# Keys in RFC 8785 order, as encode_entry writes them. `attrs`: the shortest `{...}` after which the
# rest matches; it must then be an object that the fast encoder writes back as the same text.
_ENTRY = re.compile(
    r'\{"attrs":(\{.*?\})(,"final":true)?(?:,"parent_id":"([0-9a-f]{16})")?'
    rf',"prev":{_HASH},"received_at":"({_TIME})","run_prev":{_HASH},"run_seq":{_COUNT},"seq":{_COUNT}'
    r',"source":"([!#-\[\]-~]{1,128})"(?:,"span_id":"([0-9a-f]{16})")?'  # printable ASCII but " and \
    r',"status":"(started|succeeded|failed|skipped|info)"'
    r',"step":"([^"\\\x00-\x1f\x7f-\x9f\ud800-\udfff]{1,200})"'  # no control, quote, backslash, surrogate
    rf',"trace_id":"([0-9a-f]{{32}})","ts":"({_TIME})","v":1\}}'
)
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16


class EntryFacts(NamedTuple):
    """What the bundle verifier reads of an entry (the fields of `Entry` it needs) and its bytes."""

    seq: int
    trace_id: str
    run_seq: int
    run_prev: bytes | None
    final: bool
    data: bytes


def entry_facts(text: object) -> EntryFacts | None:
    """The facts of entry `text` (a str) when it is an entry `decode_entry` accepts in the common
    shape; None when it may not be (then ask `decode_entry`)."""
    match = _ENTRY.fullmatch(text) if type(text) is str else None
    if match is None:
        return None
    attrs_text, final, parent_id, prev, received_at, run_prev, run_seq, seq, _, span_id, status, _, trace_id, ts = \
        match.groups()
    seq, run_seq = int(seq), int(run_seq)
    if (seq > MAX_SAFE_INTEGER or run_seq > MAX_SAFE_INTEGER or (prev is None) != (seq == 0)
            or (run_prev is None) != (run_seq == 0) or trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN
            or span_id == _ZERO_SPAN or final and status not in ("succeeded", "failed")):
        return None
    try:
        data = text.encode("utf-8")  # type: ignore[union-attr]  # a lone surrogate refuses
        attrs = json.loads(attrs_text)
        if (type(attrs) is not dict or _scan_attrs(attrs, 1) or plain_json_text(attrs) != attrs_text
                or len(attrs_text.encode("utf-8")) > MAX_ATTRS_BYTES):
            return None
        check_utc(ts)
        check_utc(received_at)
    except (ValueError, RecursionError, RunlogError):  # EntryError, JSONDecodeError, UnicodeEncodeError
        return None
    return EntryFacts(seq, trace_id, run_seq, None if run_prev is None else bytes.fromhex(run_prev), bool(final), data)
