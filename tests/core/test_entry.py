import dataclasses
import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.entry import (
    MAX_ATTRS_BYTES,
    MAX_SAFE_INTEGER,
    Entry,
    decode_entry,
    encode_entry,
    entry_hash,
)
from appliance.core.errors import EntryError, RunlogError

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "entry"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
H1 = hashlib.sha256(b"one").digest()
H2 = hashlib.sha256(b"two").digest()

BASE = Entry(
    seq=7,
    trace_id=TRACE,
    span_id="00f067aa0ba902b7",
    run_seq=2,
    step="deploy",
    status="info",
    ts="2026-03-01T09:00:00.123Z",
    received_at="2026-03-01T09:00:00.250000Z",
    source="ci-runner",
    attrs={"k": "v"},
    prev=H1,
    run_prev=H2,
)


def with_(**changes: Any) -> Entry:
    return dataclasses.replace(BASE, **changes)


def as_json_object(entry: Entry) -> dict[str, Any]:
    """The entry as the plain JSON object the format describes (the slow, obvious route)."""
    obj: dict[str, Any] = {
        "v": entry.version, "seq": entry.seq, "trace_id": entry.trace_id, "run_seq": entry.run_seq,
        "step": entry.step, "status": entry.status, "ts": entry.ts, "received_at": entry.received_at,
        "source": entry.source, "attrs": entry.attrs,
        "prev": entry.prev.hex() if entry.prev else None,
        "run_prev": entry.run_prev.hex() if entry.run_prev else None,
    }
    for name in ("span_id", "parent_id"):
        if getattr(entry, name) is not None:
            obj[name] = getattr(entry, name)
    if entry.final:
        obj["final"] = True
    return obj


# ---- published RFC 8785 vectors -------------------------------------------------------------

# tests/vectors/entry/rfc8785/{input,output}: https://github.com/cyberphone/json-canonicalization
# testdata/ (the RFC 8785 author's test data; see SOURCE.md there for commits).
RFC8785_CASES = sorted(p.name for p in (VECTORS / "rfc8785" / "input").iterdir())


@pytest.mark.parametrize("name", RFC8785_CASES)
def test_rfc8785_package_matches_published_vectors(name: str) -> None:
    given_text = (VECTORS / "rfc8785" / "input" / name).read_text(encoding="utf-8")
    expected = (VECTORS / "rfc8785" / "output" / name).read_bytes()
    assert rfc8785.dumps(json.loads(given_text)) == expected


@pytest.mark.parametrize("name", RFC8785_CASES)
def test_entry_attrs_are_encoded_exactly_as_published(name: str) -> None:
    attrs = json.loads((VECTORS / "rfc8785" / "input" / name).read_text(encoding="utf-8"))
    expected = (VECTORS / "rfc8785" / "output" / name).read_bytes()
    data = encode_entry(with_(attrs=attrs))
    assert data.startswith(b'{"attrs":' + expected + b',"prev":')
    assert decode_entry(data).attrs == attrs


def _appendix_b() -> list[tuple[str, str | None, str]]:
    # RFC 8785 Appendix B (https://www.rfc-editor.org/rfc/rfc8785#appendix-B), one row per case.
    rows = json.loads((VECTORS / "rfc8785" / "appendix-b-numbers.json").read_text())
    return [(row["ieee754"], row["json"], row["note"]) for row in rows]


@pytest.mark.parametrize(("ieee754", "expected", "note"), _appendix_b())
def test_rfc8785_numbers_appendix_b(ieee754: str, expected: str | None, note: str) -> None:
    number = struct.unpack(">d", bytes.fromhex(ieee754))[0]
    attrs = {"n": number}
    if expected is None:  # NaN and Infinity: "Values out of range are not permitted in JSON"
        with pytest.raises(ValueError):
            rfc8785.dumps(number)
        with pytest.raises(EntryError, match="finite"):
            encode_entry(with_(attrs=attrs))
        return
    assert rfc8785.dumps(number).decode() == expected
    if "." not in expected and "e" not in expected and abs(int(expected)) > MAX_SAFE_INTEGER:
        # An integral float past 2^53 prints as an integer no I-JSON reader reads back.
        with pytest.raises(EntryError, match="round-trip|survive"):
            encode_entry(with_(attrs=attrs))
    else:
        data = encode_entry(with_(attrs=attrs))
        assert data.startswith(b'{"attrs":{"n":' + expected.encode() + b"}")
        assert decode_entry(data) == with_(attrs=attrs)


# ---- our own vectors ------------------------------------------------------------------------

VALID = sorted(p.name for p in (VECTORS / "valid").glob("*.json"))


@pytest.mark.parametrize("name", VALID)
def test_valid_vector_round_trips_and_hashes_as_recorded(name: str) -> None:
    data = (VECTORS / "valid" / name).read_bytes()
    recorded, filename = (VECTORS / "valid" / f"{name}.sha256").read_text().split()
    assert filename == name
    entry = decode_entry(data)
    assert encode_entry(entry) == data
    assert entry_hash(data).hex() == recorded == hashlib.sha256(data).hexdigest()
    assert rfc8785.dumps(json.loads(data)) == data


def test_valid_vectors_form_a_chain() -> None:
    # The four vectors are consecutive entries of one log (two runs).
    order = ["first-entry-of-log", "closing-entry-with-spans", "unicode-keys-and-floats", "escaped-strings"]
    entries = [(VECTORS / "valid" / f"{n}.json").read_bytes() for n in order]
    for seq, (before, after) in enumerate(zip(entries, entries[1:]), start=1):
        assert decode_entry(after).seq == seq
        assert decode_entry(after).prev == entry_hash(before)


def test_unicode_vector_sorts_keys_by_utf16_code_units() -> None:
    entry = decode_entry((VECTORS / "valid" / "unicode-keys-and-floats.json").read_bytes())
    keys = list(json.loads(encode_entry(entry))["attrs"])
    assert keys.index("\U0001F602") < keys.index("\ufb33")  # D83D < FB33 as UTF-16
    assert sorted(keys) != keys  # code point order would differ


INVALID = json.loads((VECTORS / "invalid" / "expected.json").read_text())


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_vector_is_refused_naming_the_field(name: str) -> None:
    data = (VECTORS / "invalid" / f"{name}.json").read_bytes()
    with pytest.raises(EntryError) as caught:
        decode_entry(data)
    assert caught.value.field == INVALID[name]["field"]
    assert INVALID[name]["message"] in str(caught.value)
    if caught.value.field:
        assert str(caught.value).startswith(f"{caught.value.field}: ")


# ---- field rules through encode_entry -------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"seq": 0, "prev": None},
        {"seq": MAX_SAFE_INTEGER},
        {"run_seq": 0, "run_prev": None},
        {"span_id": None},
        {"parent_id": "b7ad6b7169203331"},
        {"step": "x" * 200},
        {"step": "\U0001F680" * 200},  # code points, not UTF-16 units or bytes
        {"step": "caf\u00e9\u00a0\u2028 tab-free"},
        {"status": "started"},
        {"status": "skipped"},
        {"status": "succeeded", "final": True},
        {"status": "failed", "final": True},
        {"status": "failed", "final": False},
        {"ts": "0001-01-01T00:00:00Z"},
        {"ts": "2026-03-01T09:00:00.123456789Z"},
        {"source": "!" * 128},
        {"source": 'quote"and\\backslash'},
        {"attrs": {}},
        {"attrs": {"max": MAX_SAFE_INTEGER, "min": -MAX_SAFE_INTEGER, "f": 0.1, "b": False, "n": None}},
        {"attrs": {"ctl": "\x00\x1f\x7f", "\U00010000": 1, "\uffff": 2}},
        {"attrs": {"deep": json.loads("[" * 31 + "]" * 31)}},
    ],
)
def test_valid_fields_round_trip(changes: dict[str, Any]) -> None:
    entry = with_(**changes)
    data = encode_entry(entry)
    assert data == rfc8785.dumps(as_json_object(entry))
    assert decode_entry(data) == entry


@pytest.mark.parametrize(
    ("field", "changes"),
    [
        ("v", {"version": 2}),
        ("v", {"version": True}),
        ("seq", {"seq": -1}),
        ("seq", {"seq": MAX_SAFE_INTEGER + 1}),
        ("seq", {"seq": True}),
        ("seq", {"seq": 7.0}),
        ("trace_id", {"trace_id": TRACE.upper()}),
        ("trace_id", {"trace_id": "0" * 32}),
        ("trace_id", {"trace_id": TRACE[:-1]}),
        ("trace_id", {"trace_id": TRACE + "\n"}),
        ("span_id", {"span_id": "0" * 16}),
        ("span_id", {"span_id": ""}),
        ("parent_id", {"parent_id": "00F067AA0BA902B7"}),
        ("run_seq", {"run_seq": -1}),
        ("run_seq", {"run_seq": None}),
        ("step", {"step": ""}),
        ("step", {"step": "x" * 201}),
        ("step", {"step": "a\tb"}),
        ("step", {"step": "a\x7fb"}),
        ("step", {"step": "a\x9fb"}),
        ("step", {"step": "a\ud800b"}),
        ("step", {"step": b"deploy"}),
        ("status", {"status": "Succeeded"}),
        ("final", {"final": True}),  # with status info
        ("final", {"final": True, "status": "started"}),
        ("final", {"final": 1, "status": "failed"}),
        ("ts", {"ts": "2026-03-01T09:00:00+00:00"}),
        ("ts", {"ts": "2016-12-31T23:59:60Z"}),
        ("received_at", {"received_at": "2026-02-30T00:00:00Z"}),
        ("source", {"source": ""}),
        ("source", {"source": "!" * 129}),
        ("source", {"source": "has space"}),
        ("source", {"source": "caf\u00e9"}),
        ("prev", {"seq": 0}),
        ("prev", {"prev": None}),
        ("prev", {"prev": H1[:31]}),
        ("prev", {"prev": H1.hex()}),
        ("run_prev", {"run_seq": 0}),
        ("run_prev", {"run_prev": None}),
        ("attrs", {"attrs": None}),
        ("attrs", {"attrs": [1]}),
        ("attrs", {"attrs": {1: "int key"}}),
        ("attrs", {"attrs": {"t": (1, 2)}}),
        ("attrs", {"attrs": {"b": b"bytes"}}),
        ("attrs", {"attrs": {"i": MAX_SAFE_INTEGER + 1}}),
        ("attrs", {"attrs": {"i": -MAX_SAFE_INTEGER - 1}}),
        ("attrs", {"attrs": {"f": float("nan")}}),
        ("attrs", {"attrs": {"f": float("-inf")}}),
        ("attrs", {"attrs": {"f": 1e16}}),  # canonical text 10000000000000000 reads back as an int > 2^53
        ("attrs", {"attrs": {"s": "lone \udc00"}}),
        ("attrs", {"attrs": {"\ud800": 1}}),
        ("attrs", {"attrs": {"\ud800": 1.5}}),
        ("attrs", {"attrs": {"deep": json.loads("[" * 32 + "]" * 32)}}),
    ],
)
def test_invalid_field_is_refused_by_name(field: str, changes: dict[str, Any]) -> None:
    with pytest.raises(EntryError) as caught:
        encode_entry(with_(**changes))
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}:")


def test_attrs_size_limit_is_on_canonical_bytes() -> None:
    overhead = len(b'{"x":""}')
    at_limit = {"x": "a" * (MAX_ATTRS_BYTES - overhead)}
    assert decode_entry(encode_entry(with_(attrs=at_limit))).attrs == at_limit
    with pytest.raises(EntryError, match="attrs: canonical form is 65537 bytes"):
        encode_entry(with_(attrs={"x": "a" * (MAX_ATTRS_BYTES - overhead + 1)}))
    # multi-byte characters count as their UTF-8 bytes
    with pytest.raises(EntryError, match="attrs"):
        encode_entry(with_(attrs={"x": "\u00e9" * (MAX_ATTRS_BYTES // 2)}))


def test_encode_refuses_things_that_are_not_entries() -> None:
    with pytest.raises(EntryError):
        encode_entry(as_json_object(BASE))  # type: ignore[arg-type]


def test_entry_hash_is_sha256_of_the_bytes_as_given() -> None:
    data = encode_entry(BASE)
    assert entry_hash(data) == hashlib.sha256(data).digest()
    assert entry_hash(bytearray(data)) == hashlib.sha256(data).digest()


def test_entries_are_hashable_values() -> None:
    assert hash(BASE) == hash(with_(attrs={"other": 1}))
    assert BASE != with_(attrs={"other": 1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        BASE.seq = 8  # type: ignore[misc]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"null",
        b"[]",
        b"{}",
        b"\xff\xfe{\x00}\x00",  # UTF-16: json.loads would autodetect it; we require UTF-8
        encode_entry(BASE).replace(b'"seq":7', b'"seq":007'),
        encode_entry(BASE).replace(b'"seq":7', b'"seq":7e0'),
        encode_entry(BASE).replace(b'"k":"v"', b'"k":"v","k":"v"'),
        encode_entry(BASE).replace(b'"k":"v"', b'"k":"\\u0076"'),
        encode_entry(BASE) + b" ",
        b"[" * 100_000,  # deeper than the JSON parser recurses
        encode_entry(BASE).replace(b'"k":"v"', b'"k":' + b"[" * 50_000 + b"]" * 50_000),
    ],
)
def test_non_canonical_or_non_entry_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(EntryError):
        decode_entry(data)


def test_decode_refuses_non_bytes() -> None:
    with pytest.raises(EntryError):
        decode_entry(encode_entry(BASE).decode())  # type: ignore[arg-type]


# ---- properties -----------------------------------------------------------------------------

# Keys mix ASCII, U+E000..U+FFFF and astral characters: the cases where UTF-16 order differs
# from code point order, which decide between the fast and the reference encoder.
_keys = st.text(alphabet=st.sampled_from(["a", "B", "1", "_", "\r", "\u00e9", "\u20ac", "\ue000", "\uffff", "\U00010000", "\U0001F602"]), max_size=4)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3), max_leaves=10)
_hex = lambda n: st.text("0123456789abcdef", min_size=n, max_size=n).filter(lambda s: s != "0" * n)  # noqa: E731
_utc = st.from_regex(r"20[0-9]{2}-0[1-9]-[01][0-9]T[01][0-9]:[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?Z", fullmatch=True).filter(
    lambda s: s[8:10] != "00"
)
_step = st.text(st.characters(blacklist_categories=["Cc", "Cs"]), min_size=1, max_size=30)  # limits: tests above


@st.composite
def entries(draw: st.DrawFn) -> Entry:
    seq = draw(st.integers(0, MAX_SAFE_INTEGER))
    run_seq = draw(st.integers(0, 5))
    status = draw(st.sampled_from(["started", "succeeded", "failed", "skipped", "info"]))
    return Entry(
        seq=seq,
        trace_id=draw(_hex(32)),
        span_id=draw(st.none() | _hex(16)),
        parent_id=draw(st.none() | _hex(16)),
        run_seq=run_seq,
        step=draw(_step),
        status=status,
        final=status in ("succeeded", "failed") and draw(st.booleans()),
        ts=draw(_utc),
        received_at=draw(_utc),
        source=draw(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20)),
        attrs=draw(st.dictionaries(_keys, _json, max_size=5)),
        prev=None if seq == 0 else draw(st.binary(min_size=32, max_size=32)),
        run_prev=None if run_seq == 0 else draw(st.binary(min_size=32, max_size=32)),
    )


@given(entries())
@settings(max_examples=150, deadline=None)
def test_encode_equals_rfc8785_and_decode_inverts_it(entry: Entry) -> None:
    try:
        data = encode_entry(entry)
    except EntryError as error:
        # Only floats that do not survive their own canonical text may be refused.
        assert error.field == "attrs" and "float" in str(error)
        return
    assert data == rfc8785.dumps(as_json_object(entry))
    assert decode_entry(data) == entry
    assert entry_hash(data) == hashlib.sha256(data).digest()


@given(st.binary(max_size=300))
@settings(max_examples=300)
def test_arbitrary_bytes_only_raise_the_error_family(data: bytes) -> None:
    try:
        decode_entry(data)
    except RunlogError:
        pass


@given(entries(), st.integers(min_value=0), st.binary(min_size=1, max_size=3))
@settings(max_examples=150, deadline=None)
def test_mutated_entries_only_raise_the_error_family(entry: Entry, where: int, noise: bytes) -> None:
    try:
        data = encode_entry(entry)
    except EntryError:
        return
    at = where % len(data)
    mutated = data[:at] + noise + data[at + len(noise):]
    try:
        assert decode_entry(mutated) is not None
    except RunlogError:
        pass


@given(_json)
@settings(max_examples=200)
def test_arbitrary_json_objects_only_raise_the_error_family(value: Any) -> None:
    try:
        decode_entry(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    except RunlogError:
        pass


@given(st.dictionaries(st.sampled_from(list(as_json_object(BASE)) + ["final", "parent_id"]), _json | _hex(64), max_size=16))
@settings(max_examples=150)
def test_entry_shaped_garbage_only_raises_the_error_family(fields: dict[str, Any]) -> None:
    try:
        decode_entry(rfc8785.dumps({**as_json_object(BASE), **fields}))
    except RunlogError:
        pass


@given(st.dictionaries(st.sampled_from([f.name for f in dataclasses.fields(Entry)]), _json | st.binary(max_size=33), max_size=6))
@settings(max_examples=200)
def test_arbitrary_field_values_only_raise_the_error_family(fields: dict[str, Any]) -> None:
    try:
        encode_entry(with_(**fields))
    except RunlogError:
        pass


@pytest.mark.parametrize(
    "changes",
    [
        {"seq": 10**5000},
        {"version": 10**5000},
        {"status": 10**5000},
        {"trace_id": 10**5000},
        {"ts": 10**5000},
        {"attrs": {"x": 10**5000}},
        {"attrs": {10**5000: 1}},
        {"step": "x" * 100_000},
    ],
)
def test_huge_values_are_refused_with_a_short_message(changes: dict[str, Any]) -> None:
    with pytest.raises(EntryError) as caught:
        encode_entry(with_(**changes))
    assert len(str(caught.value)) < 200


def test_circular_attrs_are_refused_not_recursed_forever() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(EntryError, match="deeper than 32"):
        encode_entry(with_(attrs={"loop": loop}))
