"""The verifier's batch entry check accepts exactly what the core's `decode_entry` accepts, and
reads the same fields: properties over generated and mutated entries, and the edge cases where
its fast path (msgspec + orjson) could differ from RFC 8785."""

import dataclasses

import orjson
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.entry import MAX_SAFE_INTEGER, Entry, decode_entry, encode_entry
from appliance.core.errors import EntryError
from appliance.verify_store.entry_scan import ScannedEntry, _plain, hex_ok, scan_entries, scan_entry
from tests.core.test_entry import BASE, entries, with_


def same_fields(scanned: ScannedEntry, entry: Entry) -> bool:
    unset = lambda value: None if value.__class__.__name__ == "UnsetType" else value  # noqa: E731
    return (
        (scanned.seq, scanned.trace_id, scanned.run_seq, scanned.received_at, scanned.step, scanned.status,
         scanned.final is True, scanned.ts, scanned.source, unset(scanned.span_id), unset(scanned.parent_id))
        == (entry.seq, entry.trace_id, entry.run_seq, entry.received_at, entry.step, entry.status, entry.final,
            entry.ts, entry.source, entry.span_id, entry.parent_id)
        and scanned.prev == (entry.prev.hex() if entry.prev else None)
        and scanned.run_prev == (entry.run_prev.hex() if entry.run_prev else None)
        and bytes(scanned.attrs) == rfc8785.dumps(entry.attrs)
    )


def agrees_with_core(data: bytes, result: ScannedEntry | EntryError) -> None:
    try:
        entry = decode_entry(data)
    except EntryError:
        assert isinstance(result, EntryError), data
        return
    assert isinstance(result, ScannedEntry) and same_fields(result, entry), data


@given(entries())
@settings(max_examples=200, deadline=None)
def test_every_valid_entry_is_accepted_with_its_fields(entry: Entry) -> None:
    try:
        data = encode_entry(entry)
    except EntryError:
        return
    assert same_fields(scan_entry(data), entry)


@given(entries(), st.integers(min_value=0), st.binary(min_size=1, max_size=3), st.booleans())
@settings(max_examples=300, deadline=None)
def test_mutated_entries_are_judged_as_the_core_judges_them(entry: Entry, where: int, noise: bytes,
                                                           insert: bool) -> None:
    try:
        data = encode_entry(entry)
    except EntryError:
        return
    at = where % len(data)
    mutated = data[:at] + noise + data[at + (0 if insert else len(noise)):]
    agrees_with_core(mutated, scan_entries([mutated])[0])


@given(st.lists(st.tuples(entries(), st.integers(min_value=0), st.binary(max_size=2)), min_size=1, max_size=6))
@settings(max_examples=100, deadline=None)
def test_a_batch_judges_each_entry_as_if_alone(items: list) -> None:
    datas = []
    for entry, where, noise in items:
        try:
            data = encode_entry(entry)
        except EntryError:
            continue
        at = where % len(data)
        datas.append(data[:at] + noise + data[at + len(noise):])
    for data, result in zip(datas, scan_entries(datas)):
        agrees_with_core(data, result)


def test_entries_that_join_into_valid_ones_are_not_accepted() -> None:
    # d1 + "," + d2 equals b1 + "," + b2: the joined batch parses as two valid entries, but
    # neither piece is an entry.
    b1, b2 = encode_entry(BASE), encode_entry(with_(seq=8, attrs={"k": "v", "l": [1, 2]}))
    comma = b2.index(b",", 40)
    pieces = [b1 + b"," + b2[:comma], b2[comma + 1:]]
    assert all(isinstance(r, EntryError) for r in scan_entries(pieces))
    assert all(isinstance(r, ScannedEntry) for r in scan_entries([b1, b2]))


@given(st.floats(allow_nan=False, allow_infinity=False))
@settings(max_examples=500)
def test_floats_taken_on_the_fast_path_are_written_as_rfc8785_writes_them(value: float) -> None:
    if _plain({"x": value}, 1):
        assert orjson.dumps(value) == rfc8785.dumps(value)


def _nested(depth: int) -> list:
    value: list = [1]
    for _ in range(depth - 1):
        value = [value]
    return value


ODD_BUT_VALID = [
    {"k": 100.5, "small": 1e-6, "tiny": 1e-7, "big": 1e15, "whole": 3.0, "neg": -0.000123},  # exponents fall back
    {"\U0001F600": 1, "\uffff": 2, "a": 3},  # keys outside the BMP sort by UTF-16 code units
    {"n": MAX_SAFE_INTEGER, "m": -MAX_SAFE_INTEGER},
    {"d": _nested(31)},  # 31 lists inside attrs: depth 32, the most allowed
    {"text": ',"prev":"00","seq":1', "prev": {"seq": 2, "run_prev": None}},  # look like top-level keys
    {"ctl": "\x00\x1f\x7f\u2028\u2029", "quote": 'a"b\\c', "e": "é€😀"},
]


@pytest.mark.parametrize("attrs", ODD_BUT_VALID)
def test_unusual_but_valid_attrs_are_accepted(attrs: dict) -> None:
    entry = with_(attrs=attrs)
    assert same_fields(scan_entry(encode_entry(entry)), entry)


def _canonical_bytes_with(old: bytes, new: bytes) -> bytes:
    data = encode_entry(BASE)
    assert old in data
    return data.replace(old, new, 1)


@pytest.mark.parametrize("data", [
    _canonical_bytes_with(b'"k":"v"', b'"k":100.0'),
    _canonical_bytes_with(b'"k":"v"', b'"k":1e-07'),
    _canonical_bytes_with(b'"k":"v"', b'"k":1E5'),
    _canonical_bytes_with(b'"k":"v"', b'"k":-0'),
    _canonical_bytes_with(b'"k":"v"', b'"k":9007199254740992'),
    _canonical_bytes_with(b'"k":"v"', b'"k":' + b"[" * 32 + b"]" * 32),  # depth 33
    _canonical_bytes_with(b'"k":"v"', b'"b":1,"a":2'),
    _canonical_bytes_with(b'"k":"v"', b'"k":"\\u0076"'),
    _canonical_bytes_with(b'"k":"v"', b'"k":"v","k":"v"'),
    _canonical_bytes_with(b'"k":"v"', b'"\xef\xbf\xbf":2,"\xf0\x9f\x98\x80":1'),  # code point order, not UTF-16
    _canonical_bytes_with(b'"attrs":{"k":"v"}', b'"attrs":[1]'),
    _canonical_bytes_with(b'"seq":7', b'"seq":true'),
    _canonical_bytes_with(b'"v":1', b'"v":true'),
    _canonical_bytes_with(b'"seq":7', b'"seq":9007199254740992'),
    _canonical_bytes_with(BASE.prev.hex().encode(), BASE.prev.hex()[:63].encode()),
    _canonical_bytes_with(BASE.prev.hex().encode(), BASE.prev.hex().upper().encode()),
    _canonical_bytes_with(b'"span_id":"00f067aa0ba902b7"', b'"span_id":null'),
    _canonical_bytes_with(b'"span_id":"00f067aa0ba902b7"', b'"span_id":"0000000000000000"'),
    _canonical_bytes_with(b'"status":"info"', b'"final":false,"status":"info"'),
    _canonical_bytes_with(b'"source":"ci-runner"', b'"final":true,"source":"ci-runner"'),
    _canonical_bytes_with(b'"step":"deploy"', b'"step":"de\\u0000ploy"'),
    _canonical_bytes_with(b'"step":"deploy"', b'"step":"de\xc2\x85ploy"'),  # C1 control
    _canonical_bytes_with(b'"step":"deploy"', b'"step":"\\ud800"'),
    _canonical_bytes_with(b'"step":"deploy"', b'"step":"\xff"'),
    _canonical_bytes_with(b'"step":"deploy"', b'"step":""'),
    _canonical_bytes_with(b'"step":"deploy"', b'"step":"' + b"x" * 201 + b'"'),
    _canonical_bytes_with(b'"source":"ci-runner"', b'"source":"ci runner"'),
    _canonical_bytes_with(b'"ts":"2026-03-01', b'"ts":"2027-02-29'),
    _canonical_bytes_with(b'"ts":"2026-03-01', b'"ts":"2026-04-31'),
    _canonical_bytes_with(b'"ts":"2026-03-01', b'"ts":"0000-03-01'),
    _canonical_bytes_with(b'T09:00:00.123Z', b'T24:00:00.123Z'),
    _canonical_bytes_with(b'T09:00:00.123Z', b'T09:00:60.123Z'),
    _canonical_bytes_with(b'T09:00:00.123Z', b'T09:00:00.1234567890Z'),
    _canonical_bytes_with(b'T09:00:00.123Z', b't09:00:00.123z'),
    _canonical_bytes_with(b'T09:00:00.123Z', b'T09:00:00.123Z\\n2026-03-01T09:00:00.123Z'),  # two times in one
    _canonical_bytes_with(b'"trace_id":"4bf9', b'"trace_id":"4BF9'),
    _canonical_bytes_with(b'"run_seq":2', b'"run_seq":0'),  # run_prev must then be null
    _canonical_bytes_with(b',"v":1}', b',"v":1} '),
    _canonical_bytes_with(b'{"attrs"', b'{ "attrs"'),
    _canonical_bytes_with(b'{"attrs"', b'\xef\xbb\xbf{"attrs"'),
    _canonical_bytes_with(b',"v":1}', b',"v":1,"x":1}'),
])
def test_what_the_core_refuses_is_refused(data: bytes) -> None:
    with pytest.raises(EntryError):
        decode_entry(data)
    with pytest.raises(EntryError):
        scan_entry(data)


def test_valid_calendar_edges_are_accepted() -> None:
    for ts in ("2028-02-29T00:00:00Z", "2000-02-29T23:59:59.999999999Z", "2026-12-31T23:59:59Z"):
        entry = with_(ts=ts, received_at=ts)
        assert same_fields(scan_entry(encode_entry(entry)), entry)
    assert hex_ok(None) and hex_ok("ab" * 32) and not hex_ok("AB" * 32) and not hex_ok("ab" * 31)


def test_anything_else_only_raises_the_error_family() -> None:
    results = scan_entries([b"", b"null", b"{}", b"[" * 10_000, "text", None])  # type: ignore[list-item]
    assert all(isinstance(result, EntryError) for result in results)
    with pytest.raises(EntryError):
        scan_entry(dataclasses.asdict(BASE))  # type: ignore[arg-type]
