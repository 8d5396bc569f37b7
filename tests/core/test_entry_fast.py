"""`entry_facts`, the offline verifier's fast entry check, against `decode_entry` (the slow,
strict path it stands for): it accepts only entries `decode_entry` accepts, with the same values,
and accepts the common shape."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.entry import MAX_SAFE_INTEGER, Entry, decode_entry, encode_entry
from appliance.core.entry_fast import EntryFacts, entry_facts
from appliance.core.errors import EntryError

HEX = "0123456789abcdef"


def _slow(text: str) -> EntryFacts | None:
    data = text.encode("utf-8", "surrogatepass")
    try:
        entry = decode_entry(data)
    except EntryError:
        return None
    return EntryFacts(entry.seq, entry.trace_id, entry.run_seq, entry.run_prev, entry.final, data)


def _agrees(text: str) -> EntryFacts | None:
    fast = entry_facts(text)
    if fast is not None:
        assert fast == _slow(text), text
    return fast


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**54), 2**54) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
_TIME = st.one_of(
    st.sampled_from(["2026-11-28T00:00:00Z", "2026-02-29T23:59:59.123Z", "2024-02-29T00:00:00.000000001Z",
                     "0000-01-01T00:00:00Z", "2026-11-28T24:00:00Z", "2026-11-28T23:60:00Z", "2026-11-28T23:59:60Z",
                     "2026-13-01T00:00:00Z", "2026-04-31T00:00:00Z", "2026-11-28t00:00:00Z", "2026-11-28T00:00:00.Z",
                     "2026-11-28T00:00:00.1234567890Z", "2026-11-28T00:00:00+00:00", "\u0662026-11-28T00:00:00Z"]),
    st.from_regex(r"[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-6][0-9]:[0-6][0-9](\.[0-9]{1,9})?Z", fullmatch=True),
)
_ID32 = st.sampled_from(["0" * 32, "ab" * 16]) | st.text(HEX, min_size=32, max_size=32) | st.text(HEX + "A", max_size=33)
_ID16 = st.none() | st.sampled_from(["0" * 16]) | st.text(HEX, min_size=16, max_size=16) | st.text(HEX + "g", max_size=17)
_COUNT = st.sampled_from([0, 1, MAX_SAFE_INTEGER, MAX_SAFE_INTEGER + 1, 10**16]) | st.integers(0, 10**6)
_HASH = st.none() | st.binary(min_size=32, max_size=32)
_STEP = st.text(max_size=3) | st.text(min_size=199, max_size=202) | st.sampled_from(['a"b', "a\\b", "\x7f", "\x85", "\ud800", "\U0001f600"])
_SOURCE = st.text(string.printable, max_size=5) | st.sampled_from(["ci", 'c"i', "c\\i", "x" * 128, "x" * 129, "caf\u00e9"])
_STATUS = st.sampled_from(["started", "succeeded", "failed", "skipped", "info", "done"])


def _raw_text(seq, trace_id, span_id, parent_id, run_seq, step, status, final, ts, received_at, source, attrs_text,
              prev, run_prev) -> str:
    """Entry text laid out as encode_entry lays it out, from field texts that may break its rules."""
    def quoted(value: str | None) -> str:
        return "null" if value is None else f'"{value}"'

    final_text = ',"final":true' if final else ""
    parent = "" if parent_id is None else f',"parent_id":"{parent_id}"'
    span = "" if span_id is None else f',"span_id":"{span_id}"'
    return (f'{{"attrs":{attrs_text}{final_text}{parent},"prev":{quoted(prev)},"received_at":"{received_at}"'
            f',"run_prev":{quoted(run_prev)},"run_seq":{run_seq},"seq":{seq},"source":"{source}"{span}'
            f',"status":"{status}","step":"{step}","trace_id":"{trace_id}","ts":"{ts}","v":1}}')


_ATTRS_TEXT = st.sampled_from(['{}', '{"a":1}', '{"a":1.0}', '{"a":-0}', '{"a":01}', '{"b":1,"a":2}', '{"a":1,"a":1}',
                               '{ "a":1}', '{"a":"\\u00e9"}', '{"\u00e9":1}', '{"a":NaN}', '[]', '{"a":9007199254740992}',
                               '{"a":"},\\"prev\\":null"}', '{"a":{"b":[1,true,null]}}', '{"a":"x"}}', '{"a":"\ud800"}',
                               "{" * 40 + "}" * 40, '{"a":"' + "x" * 65_600 + '"}'])


@settings(max_examples=600, deadline=None)
@given(st.tuples(_COUNT, _ID32, _ID16, _ID16, _COUNT, _STEP, _STATUS, st.booleans(), _TIME, _TIME, _SOURCE,
                 _ATTRS_TEXT, st.none() | st.sampled_from(["ab" * 32, "AB" * 32, "ab" * 31]),
                 st.none() | st.sampled_from(["cd" * 32, "c" * 63])))
def test_fast_accepts_only_what_decode_entry_accepts_on_raw_texts(fields):
    _agrees(_raw_text(*fields))


@settings(max_examples=400, deadline=None)
@given(_COUNT, st.text(HEX, min_size=32, max_size=32), _ID16, _ID16, _COUNT, _STEP, _STATUS, st.booleans(), _TIME,
       _TIME, _SOURCE, st.dictionaries(st.text(max_size=4), _JSON, max_size=4), _HASH, _HASH,
       st.lists(st.tuples(st.sampled_from(["replace", "delete", "insert"]), st.integers(0, 500),
                          st.sampled_from(list('{}[]",:\\ 0123456789.eE-+ntfa\u00e9\n'))), max_size=2))
def test_fast_accepts_only_what_decode_entry_accepts_on_encoded_and_edited_entries(
        seq, trace_id, span_id, parent_id, run_seq, step, status, final, ts, received_at, source, attrs, prev,
        run_prev, edits):
    entry = Entry(seq=seq, trace_id=trace_id, span_id=span_id, parent_id=parent_id, run_seq=run_seq, step=step,
                  status=status, final=final, ts=ts, received_at=received_at, source=source, attrs=attrs,
                  prev=prev, run_prev=run_prev)
    try:
        text = encode_entry(entry).decode("utf-8")
    except EntryError:
        return
    _agrees(text)
    for kind, at, char in edits:
        at %= len(text) + 1
        text = (text[:at] + char + text[at + 1:] if kind == "replace" else text[:at] + text[at + 1:]
                if kind == "delete" else text[:at] + char + text[at:])
        _agrees(text)


_PLAIN = st.recursive(st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=8),
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                          st.text(string.ascii_letters, max_size=4), inner, max_size=3), max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, MAX_SAFE_INTEGER), st.text(HEX, min_size=32, max_size=32).filter(lambda t: t != "0" * 32),
       st.integers(0, 10**6), st.text(string.ascii_letters + string.digits + " .-_\u00e9", min_size=1, max_size=200),
       st.sampled_from(["started", "succeeded", "failed", "skipped", "info"]), st.booleans(),
       st.dictionaries(st.text(string.ascii_letters, max_size=4), _PLAIN, max_size=4), st.binary(min_size=32, max_size=32))
def test_fast_accepts_the_common_shape(seq, trace_id, run_seq, step, status, final, attrs, prev):
    entry = Entry(seq=seq, trace_id=trace_id, run_seq=run_seq, step=step, status=status,
                  final=final and status in ("succeeded", "failed"), ts="2026-11-28T00:00:00Z",
                  received_at="2026-11-28T00:00:01.5Z", source="ci", attrs=attrs, prev=prev,
                  run_prev=prev if run_seq else None, span_id="ab" * 8, parent_id="cd" * 8)
    text = encode_entry(entry).decode("utf-8")
    assert _agrees(text) == _slow(text) is not None


def test_fast_never_raises_and_refuses_what_is_not_text():
    for value in (None, b"{}", 7, "", "{", '{"attrs":{}}', "\ud800"):
        assert entry_facts(value) is None
