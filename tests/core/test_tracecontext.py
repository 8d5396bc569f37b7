"""W3C Trace Context and X-Ray correlation IDs.

Published vectors live in tests/vectors/tracecontext/<header>/<threat>.json, each naming its source
(the W3C test suite's test.py test, the spec section, the AWS guide or the OpenTelemetry propagator
test). The cases written out below are spec rules those sources do not exercise; each cites its rule.
"""

import ast
import datetime
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.errors import RunlogError, TraceContextError
from appliance.core.tracecontext import (
    MAX_TRACESTATE_MEMBERS,
    TraceParent,
    format_tracestate,
    generate_parent_id,
    generate_trace_id,
    new_traceparent,
    parse_traceparent_headers,
    parse_tracestate,
    trace_id_from_xray,
    xray_parent_id,
    xray_root_from_trace_id,
)

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "tracecontext"
T = "12345678901234567890123456789012"
P = "1234567890123456"
VALID = f"00-{T}-{P}-01"
AWS_ROOT = "Root=1-5759e988-bd862e3fe1be46a994272793"  # AWS X-Ray developer guide, tracing header
AWS_TRACE_ID = "5759e988bd862e3fe1be46a994272793"


def _cases(topic: str) -> list:
    params = []
    for path in sorted((VECTORS / topic).glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        assert document["source"] and document["cases"], path
        for number, case in enumerate(document["cases"]):
            params.append(pytest.param(case, id=f"{path.stem}-{number}"))
    return params


def test_every_topic_has_vectors():
    assert {path.name for path in VECTORS.iterdir()} == {"traceparent", "tracestate", "xray"}
    assert len(_cases("traceparent")) >= 30 and len(_cases("tracestate")) >= 30


# --- traceparent: published vectors -------------------------------------------------------------


@pytest.mark.parametrize("case", _cases("traceparent"))
def test_traceparent_vector(case):
    headers = case["traceparent"]
    if case["expect"] == "accept":
        parsed = parse_traceparent_headers(headers)
        assert parsed == TraceParent.from_header(headers[0])
        assert (parsed.trace_id, parsed.parent_id, parsed.sampled) == (
            case["trace_id"],
            case["parent_id"],
            case["sampled"],
        )
    elif case["expect"] == "restart":
        assert parse_traceparent_headers(headers) is None
    else:
        with pytest.raises(TraceContextError, match=re.escape(case["error"])) as caught:
            TraceParent.from_header(headers[0])
        assert caught.value.field == "traceparent"
        with pytest.raises(TraceContextError):
            parse_traceparent_headers(headers)


# --- traceparent: rules the vectors do not cover ------------------------------------------------


@pytest.mark.parametrize(
    "header, rule",
    [
        (f"00-{T.replace('1', 'A')}-{P}-01", "3.2.2.2: trace-id is HEXDIGLC, lower case only"),
        (f"00-{T}-{P.replace('1', 'B')}-01", "3.2.2.2: parent-id is HEXDIGLC"),
        (f"00-{T}-{P}-0A", "3.2.2.2: trace-flags is HEXDIGLC"),
        (f"0A-{T}-{P}-01", "3.2.2.1: version is HEXDIGLC"),
        (f"00-{T[:-1]}\u0661-{P}-01", "3.2.2.2: ASCII hex only; int() would accept an Arabic-Indic one"),
        (f"00-{T[:-1]}_-{P}-01", "3.2.2.2: int() would accept '_' between digits"),
        (f"00_{T}_{P}_01", "3.2.2: fields are separated by '-'"),
        (f"00-{T}-{P}-01\n", "RFC 9110 5.6.3: OWS is space and tab only, never a newline"),
        (f"\u00a000-{T}-{P}-01", "RFC 9110 5.6.3: a no-break space is not OWS"),
        (f"cc-{T}-{P}-1", "3.2.4: a higher version shorter than 55 characters restarts the trace"),
        (f"cc-{T[:-1]}0.-{P}-01", "3.2.4: a higher version's trace-id must still be hex"),
        (f"cc-{'0' * 32}-{P}-01", "3.2.2.3: all-zero trace-id is invalid in every version"),
        ("", "3.2.2: an empty value has no version"),
        ("00", "3.2.4: the version must be followed by '-'"),
    ],
)
def test_traceparent_rejects(header, rule):
    with pytest.raises(TraceContextError):
        TraceParent.from_header(header)


def test_version_00_round_trips_exactly_including_reserved_flags():
    # 3.2.2.5: the flags are a bit field; a version-00 value is passed on as received.
    header = f"00-{T}-{P}-09"
    parsed = TraceParent.from_header(header)
    assert parsed.flags == 0x09 and parsed.sampled and parsed.to_header() == header


def test_higher_version_is_downgraded_and_keeps_only_the_sampled_bit():
    # 3.2.4 "MUST use these fields to construct the new traceparent field according to the highest
    # version ... known" and 4.1.2 "Vendors will set all unparsed / unknown trace-flags to 0".
    parsed = TraceParent.from_header(f"cc-{T}-{P}-ff-future-fields")
    assert (parsed.version, parsed.flags) == (0xCC, 0x01)
    assert parsed.to_header() == f"00-{T}-{P}-01"
    assert TraceParent.from_header(f"01-{T}-{P}-fe").flags == 0


def test_error_messages_name_the_fault():
    with pytest.raises(TraceContextError, match="traceparent trace-id is all zeros"):
        TraceParent.from_header(f"00-{'0' * 32}-{P}-01")
    with pytest.raises(TraceContextError, match="exactly 55 characters, got 56"):
        TraceParent.from_header(VALID + "0")


@pytest.mark.parametrize(
    "fields",
    [
        {"version": 0, "trace_id": "0" * 32, "parent_id": P, "flags": 0},
        {"version": 0, "trace_id": T, "parent_id": "0" * 16, "flags": 0},
        {"version": 0, "trace_id": "4BF92F3577B34DA6A3CE929D0E0E4736", "parent_id": P, "flags": 0},
        {"version": 255, "trace_id": T, "parent_id": P, "flags": 0},
        {"version": True, "trace_id": T, "parent_id": P, "flags": 0},
        {"version": 0, "trace_id": T, "parent_id": P, "flags": 256},
        {"version": 0, "trace_id": None, "parent_id": P, "flags": 0},
    ],
)
def test_traceparent_value_is_always_valid(fields):
    with pytest.raises(TraceContextError):
        TraceParent(**fields)


@pytest.mark.parametrize("values", [[], [f"{VALID}, {VALID}"], [f"{VALID},"]])
def test_absent_or_joined_traceparent_means_restart(values):
    # A comma only appears when a server joined several field lines (RFC 9110 section 5.3).
    assert parse_traceparent_headers(values) is None


def test_header_lists_must_be_lists():
    with pytest.raises(TraceContextError, match="list"):
        parse_traceparent_headers(VALID)
    with pytest.raises(TraceContextError, match="list"):
        parse_tracestate("foo=1")
    with pytest.raises(TraceContextError, match="text"):
        TraceParent.from_header(VALID.encode())


# --- generation ----------------------------------------------------------------------------------


def _draws(*chunks: bytes):
    pending = list(chunks)
    return lambda size: pending.pop(0)


def test_generated_ids_come_from_the_random_source():
    assert generate_trace_id(_draws(bytes(range(16)))) == bytes(range(16)).hex()
    assert generate_parent_id(_draws(b"\x00" * 7 + b"\x01")) == "0000000000000001"


def test_all_zero_draws_are_redrawn_never_returned():
    assert generate_parent_id(_draws(b"\x00" * 8, b"\xff" * 8)) == "f" * 16
    with pytest.raises(TraceContextError, match="all-zero"):
        generate_trace_id(lambda size: bytes(size))


def test_short_random_source_is_refused():
    with pytest.raises(TraceContextError, match="16 bytes"):
        generate_trace_id(lambda size: b"\x01")


def test_default_random_source_gives_distinct_valid_ids():
    ids = {generate_trace_id() for _ in range(20)}
    assert len(ids) == 20 and all(re.fullmatch("[0-9a-f]{32}", i) for i in ids)
    assert re.fullmatch("[0-9a-f]{16}", generate_parent_id())


def test_new_traceparent():
    fresh = new_traceparent(rand=_draws(b"\x11" * 16, b"\x22" * 8))
    assert fresh.to_header() == f"00-{'11' * 16}-{'22' * 8}-01"
    child = new_traceparent(T, rand=_draws(b"\x33" * 8), sampled=False)
    assert child.to_header() == f"00-{T}-{'33' * 8}-00" and not child.sampled
    with pytest.raises(TraceContextError, match="all zeros"):
        new_traceparent("0" * 32)


# --- tracestate ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", _cases("tracestate"))
def test_tracestate_vector(case):
    if case["expect"] == "accept":
        members = [tuple(member) for member in case["members"]]
        assert parse_tracestate(case["tracestate"]) == members
        assert parse_tracestate([format_tracestate(members)]) == members
    else:
        with pytest.raises(TraceContextError, match=case["error"]) as caught:
            parse_tracestate(case["tracestate"])
        assert caught.value.field == "tracestate"


@pytest.mark.parametrize(
    "value, members, rule",
    [
        ("a=  b", [("a", "  b")], "3.3.2.2.2: leading spaces MUST be preserved as part of the value"),
        ("a=b  ", [("a", "b")], "3.3.2.2.2: trailing spaces are optional whitespace"),
        (" , ,\t,", [], "3.3.2: empty and whitespace-only list-members are allowed"),
        ("a=" + "v" * 256, [("a", "v" * 256)], "3.3.2.2.2: values up to 256 characters"),
        ("0tenant@sys=1", [("0tenant@sys", "1")], "test.py: a tenant id may start with a digit"),
    ],
)
def test_tracestate_accepts(value, members, rule):
    assert parse_tracestate([value]) == members


@pytest.mark.parametrize(
    "value, rule",
    [
        ("a=" + "v" * 257, "3.3.2.2.2: at most 256 characters"),
        ("a=b\tc", "3.3.2.2.2: tabs are excluded from values"),
        ("a=caf\u00e9", "3.3.2.2.2: printable ASCII only"),
        ("a", "3.3.2.1: a list-member is key=value"),
        ("=1", "3.3.2.2.1: a key is not empty"),
        ("1abc=1", "test.py: a simple key starts with a letter (Level 2 text allows a digit)"),
        ("a@b@c=1", "test.py test_tracestate_key_illegal_vendor_format (Level 2 text allows it)"),
    ],
)
def test_tracestate_rejects(value, rule):
    with pytest.raises(TraceContextError):
        parse_tracestate([value])


def test_hostile_member_count_is_refused_early():
    with pytest.raises(TraceContextError, match="at most 32"):
        parse_tracestate([",".join(f"k{i}=v" for i in range(100_000))])


def test_format_tracestate():
    assert format_tracestate([("rojo", "00f067aa0ba902b7"), ("congo", "t61rcWkgMzE")]) == (
        "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
    )
    assert format_tracestate([]) == ""
    assert format_tracestate([["from", "json"]]) == "from=json"
    for bad in (
        [("a", "1"), ("a", "2")],
        [("A", "1")],
        [("a", "")],
        [(f"k{i}", "v") for i in range(MAX_TRACESTATE_MEMBERS + 1)],
        [("a", "1", "extra")],
        [("a", 1)],
        "a=1",
    ):
        with pytest.raises(TraceContextError):
            format_tracestate(bad)


# --- X-Ray ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", _cases("xray"))
def test_xray_vector(case):
    if case["expect"] == "accept":
        assert trace_id_from_xray(case["header"]) == case["trace_id"]
        assert xray_parent_id(case["header"]) == case["parent_id"]
        assert xray_root_from_trace_id(case["trace_id"]) in case["header"]
    else:
        with pytest.raises(TraceContextError, match=case["error"]) as caught:
            trace_id_from_xray(case["header"])
        assert caught.value.field == "X-Amzn-Trace-Id"


def test_xray_root_carries_epoch_seconds_first():
    # AWS X-Ray guide: the 8 digits after "1-" are the request's Unix time in hex.
    trace_id = trace_id_from_xray(AWS_ROOT)
    started = datetime.datetime.fromtimestamp(int(trace_id[:8], 16), datetime.UTC)
    assert started == datetime.datetime(2016, 6, 9, 22, 11, 20, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    "header, parent_id",
    [
        (AWS_ROOT.upper().replace("ROOT", "Root") + ";Parent=53995C3F42CD8AD8", "53995c3f42cd8ad8"),
        (AWS_ROOT + ";Sampled=?", None),
        ("Self=1-67891234-123456789abcdef012345678;" + AWS_ROOT + ";", None),
        (AWS_ROOT + ";Lineage=a87bd80c:1|68fd508a:5", None),
    ],
)
def test_xray_accepts(header, parent_id):
    # Upper-case hex is lower-cased; Sampled "?" (aws-xray-sdk-node mw_utils.resolveSampling), Self
    # and Lineage are not read.
    assert (trace_id_from_xray(header), xray_parent_id(header)) == (AWS_TRACE_ID, parent_id)


@pytest.mark.parametrize(
    "header, error",
    [
        ("Parent=53995c3f42cd8ad8", "no Root"),
        ("Root=2-5759e988-bd862e3fe1be46a994272793", "Root must be"),
        ("Root=1-00000000-000000000000000000000000", "Root is all zeros"),
        (AWS_ROOT + ";Parent=0000000000000000", "Parent is all zeros"),
        (AWS_ROOT + ";" + AWS_ROOT[:-1] + "4", "more than one Root"),
        (AWS_ROOT + ";Sampled", "has no '='"),
        (AWS_ROOT[:-1] + "\u0663", "Root must be"),
    ],
)
def test_xray_rejects(header, error):
    with pytest.raises(TraceContextError, match=error):
        trace_id_from_xray(header)
    with pytest.raises(TraceContextError):
        xray_parent_id(header)


def test_xray_root_from_trace_id():
    assert "Root=" + xray_root_from_trace_id(AWS_TRACE_ID) == AWS_ROOT
    for bad in ("0" * 32, "4BF92F3577B34DA6A3CE929D0E0E4736", T[:-1], None):
        with pytest.raises(TraceContextError):
            xray_root_from_trace_id(bad)


# --- properties ----------------------------------------------------------------------------------

_ids = lambda size: st.binary(min_size=size, max_size=size).filter(any).map(bytes.hex)  # noqa: E731
_keys = st.one_of(
    st.from_regex(r"[a-z][a-z0-9_\-*/]{0,20}", fullmatch=True),
    st.from_regex(r"[a-z0-9][a-z0-9_\-*/]{0,8}@[a-z][a-z0-9_\-*/]{0,13}", fullmatch=True),
)
_values = st.from_regex(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,30}[\x21-\x2b\x2d-\x3c\x3e-\x7e]", fullmatch=True)


@settings(max_examples=200)
@given(_ids(16), _ids(8), st.integers(0, 255))
def test_valid_traceparents_round_trip(trace_id, parent_id, flags):
    header = f"00-{trace_id}-{parent_id}-{flags:02x}"
    parsed = TraceParent.from_header(header)
    assert (parsed.trace_id, parsed.parent_id, parsed.flags) == (trace_id, parent_id, flags)
    assert parsed.to_header() == header
    assert parse_traceparent_headers([f" \t{header}\t "]) == parsed


@settings(max_examples=100)
@given(st.integers(1, 254), _ids(16), _ids(8), st.text(alphabet="-abc01.", max_size=20))
def test_future_versions_read_the_version_00_fields(version, trace_id, parent_id, tail):
    header = f"{version:02x}-{trace_id}-{parent_id}-01" + ("-" + tail if tail else "")
    parsed = TraceParent.from_header(header)
    assert (parsed.version, parsed.trace_id, parsed.parent_id) == (version, trace_id, parent_id)


@settings(max_examples=100)
@given(st.dictionaries(_keys, _values, max_size=MAX_TRACESTATE_MEMBERS))
def test_valid_tracestates_round_trip(entries):
    members = list(entries.items())
    assert parse_tracestate([format_tracestate(members)]) == members
    half = len(members) // 2
    assert parse_tracestate([format_tracestate(members[:half]), format_tracestate(members[half:])]) == members


@settings(max_examples=100)
@given(_ids(16), _ids(8))
def test_xray_and_w3c_ids_round_trip(trace_id, parent_id):
    header = f"Root={xray_root_from_trace_id(trace_id)};Parent={parent_id};Sampled=1"
    assert (trace_id_from_xray(header), xray_parent_id(header)) == (trace_id, parent_id)


_PARSERS = [
    TraceParent.from_header,
    lambda value: parse_traceparent_headers([value]),
    lambda value: parse_traceparent_headers([value, value]),
    lambda value: parse_tracestate([value]),
    lambda value: format_tracestate([(value, value)]),
    trace_id_from_xray,
    xray_parent_id,
    xray_root_from_trace_id,
]
_near_miss = st.text(alphabet="0123456789abcdefABCDEF-=;,@ \t.R1ootParent\u0661", max_size=80)


def _only_runlog_errors(value) -> None:
    for parse in _PARSERS:
        try:
            parse(value)
        except RunlogError:
            pass


@settings(max_examples=300)
@given(st.one_of(st.text(), _near_miss, st.binary().map(lambda raw: raw.decode("latin-1"))))
def test_arbitrary_text_raises_only_runlog_errors(value):
    _only_runlog_errors(value)


@settings(max_examples=100)
@given(st.one_of(st.binary(), st.none(), st.integers(), st.lists(st.text(max_size=5), max_size=3)))
def test_arbitrary_objects_raise_only_runlog_errors(value):
    _only_runlog_errors(value)
    for parse in (parse_traceparent_headers, parse_tracestate, format_tracestate):
        try:
            parse(value)
        except RunlogError:
            pass


def test_module_imports_only_pure_standard_library():
    # The core does no I/O and reads no clock; randomness is an injectable callable (os.urandom).
    source = (Path(__file__).resolve().parents[2] / "appliance" / "core" / "tracecontext.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
    assert imported == {"__future__", "os", "re", "collections.abc", "dataclasses", "appliance.core.errors"}
    assert re.findall(r"\bos\.\w+", source) == ["os.urandom"] * source.count("os.urandom")
