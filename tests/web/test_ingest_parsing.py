"""POST /v1/events bodies: one named case per rule, correlation and idempotency, request hashes,
agreement with the core's entry rules, and garbage that may only ever raise RequestError."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.core.entry import MAX_ATTRS_BYTES, Entry, encode_entry
from appliance.core.errors import EntryError
from appliance.core.timefmt import normalize_rfc3339
from appliance.web.ingest import (
    RequestError,
    UnsupportedMediaType,
    idempotency_key,
    parse_events,
    request_headers,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
OTHER_TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "00f067aa0ba902b7"
NOW = "2026-11-28T12:00:00.000000Z"
TRACEPARENT = f"00-{TRACE}-{SPAN}-01"
XRAY = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
XRAY_TRACE = "5759e988bd862e3fe1be46a994272793"


def event(**fields):
    return {"trace_id": TRACE, "step": "deploy", "status": "info", **fields}


def parse(body, content_type=None, headers=None, *, source="ci", max_batch=1000, default_ts=NOW):
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    return parse_events(body, content_type, headers or {}, source, max_batch=max_batch, default_ts=default_ts)


def refused(body, content_type=None, headers=None, **kwargs) -> RequestError:
    with pytest.raises(RequestError) as caught:
        parse(body, content_type, headers, **kwargs)
    return caught.value


# --- shapes ---------------------------------------------------------------------------------

def test_single_object_gives_one_event_with_top_level_field_names():
    parsed = parse(event(ts="2026-11-28T10:00:00.5Z", attrs={"b": 1, "a": [True, None]}))
    (only,) = parsed.events
    assert (only.trace_id, only.step, only.status, only.ts, only.source) == (TRACE, "deploy", "info",
                                                                            "2026-11-28T10:00:00.5Z", "ci")
    assert only.attrs == {"b": 1, "a": [True, None]}
    assert parsed.shape == "object" and parsed.field_path(0, "step") == "step"


def test_array_keeps_order_and_names_fields_by_index():
    parsed = parse([event(step=f"s{i}") for i in range(3)])
    assert [e.step for e in parsed.events] == ["s0", "s1", "s2"]
    assert parsed.field_path(2, "attrs") == "events[2].attrs"


def test_ndjson_skips_blank_lines_and_accepts_crlf():
    lines = [json.dumps(event(step="one")), "", "   ", json.dumps(event(step="two")) + "\r", ""]
    parsed = parse("\n".join(lines).encode(), "application/x-ndjson")
    assert [e.step for e in parsed.events] == ["one", "two"] and parsed.shape == "ndjson"


def test_ndjson_bad_line_error_names_the_line_and_the_event():
    body = "\n".join([json.dumps(event()), "", json.dumps(event(status="done"))]).encode()
    error = refused(body, "application/x-ndjson")
    assert error.field == "events[1].status"
    assert str(error).startswith("line 3: events[1].status: must be one of")


def test_ndjson_malformed_line_names_the_line():
    body = json.dumps(event()).encode() + b"\n{not json}\n"
    error = refused(body, "application/x-ndjson")
    assert str(error).startswith("line 2: events[1]: not valid JSON") and error.field == "events[1]"


def test_ndjson_line_holding_an_array_is_refused():
    error = refused(json.dumps([event()]).encode(), "application/x-ndjson")
    assert error.field == "events[0]" and "line 1" in str(error)


@pytest.mark.parametrize("body", [b"", b"  \n ", b'"text"', b"42", b"null"], ids=["empty", "blank", "string",
                                                                                 "number", "null"])
def test_body_that_is_not_an_object_or_array(body):
    assert refused(body).field == "body"


def test_malformed_json():
    error = refused(b'{"step": "a", "status": ')
    assert error.field == "body" and "not valid JSON" in str(error)


def test_byte_order_mark_is_refused():
    assert "byte order mark" in str(refused(b"\xef\xbb\xbf" + json.dumps(event()).encode()))


def test_empty_array_is_refused():
    assert refused([]).field == "events"


def test_batch_over_max_is_refused_for_arrays_and_ndjson():
    assert "send 1 to 3" in str(refused([event()] * 4, max_batch=3))
    ndjson = "\n".join(json.dumps(event()) for _ in range(4)).encode()
    assert refused(ndjson, "application/x-ndjson", max_batch=3).field == "events"
    assert len(parse([event()] * 3, max_batch=3).events) == 3


# --- field rules ------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [("step", 7), ("status", None), ("final", "yes"), ("ts", 1700000000),
                                          ("trace_id", 5), ("idempotency_key", 1)])
def test_wrong_types_name_the_field(field, value):
    error = refused([event(), event(**{field: value})])
    assert error.field == f"events[1].{field}" and "expected" in str(error)


def test_attrs_must_be_an_object():
    error = refused(event(attrs=[1, 2]))
    assert error.field == "attrs" and "must be a JSON object" in str(error)


def test_unknown_field_is_refused_and_the_message_lists_the_fields():
    error = refused([event(), event(colour="red")])
    assert error.field == "events[1].colour" and "unknown field" in str(error) and "trace_id" in str(error)


def test_missing_required_field():
    body = {"trace_id": TRACE, "step": "deploy"}
    assert refused(body).field == "status"


def test_too_long_step():
    assert len(parse(event(step="x" * 200)).events) == 1
    error = refused(event(step="x" * 201))
    assert error.field == "step" and "1..200" in str(error)


@pytest.mark.parametrize("step", ["", "tab\there", "nul\u0000", "c1\u0085"], ids=["empty", "tab", "nul", "c1"])
def test_step_without_control_characters(step):
    assert refused(event(step=step)).field == "step"


def test_unknown_status():
    error = refused(event(status="done"))
    assert error.field == "status" and "succeeded" in str(error)


def test_final_only_closes_with_succeeded_or_failed():
    assert parse(event(status="failed", final=True)).events[0].final is True
    assert parse(event(final=None)).events[0].final is False
    assert refused(event(status="info", final=True)).field == "final"


@pytest.mark.parametrize("ts", ["yesterday", "2026-02-30T00:00:00Z", "2026-06-30T23:59:60Z", "2026-01-01 00:00:00Z",
                                "2026-01-01T00:00:00", "2026-01-01T00:00:00.1234567890Z", "2026-01-01T00:00:00+24:00"],
                         ids=["words", "no-such-date", "leap-second", "space", "no-offset", "ten-digits", "bad-offset"])
def test_bad_times(ts):
    error = refused([event(ts="2026-01-01T00:00:00Z"), event(ts=ts)])
    assert error.field == "events[1].ts"


def test_times_with_offsets_are_stored_in_utc_keeping_the_fraction():
    parsed = parse([event(ts="2026-11-28T10:00:00.123456789+02:00"), event(ts="2026-11-28t08:00:00z")])
    assert [e.ts for e in parsed.events] == ["2026-11-28T08:00:00.123456789Z", "2026-11-28T08:00:00Z"]


def test_missing_ts_takes_the_appliance_time():
    assert parse(event()).events[0].ts == NOW
    assert parse(event(ts=None)).events[0].ts == NOW
    clock = parse(event(), default_ts=None).events[0].ts
    assert clock.endswith("Z") and len(clock) == len(NOW)


@pytest.mark.parametrize("field, value", [
    ("trace_id", TRACE.upper()), ("trace_id", TRACE[:31]), ("trace_id", "0" * 32), ("trace_id", TRACE + "0"),
    ("span_id", "00F067AA0BA902B7"), ("span_id", "0" * 16), ("parent_id", "xyz"), ("parent_id", SPAN + "00"),
], ids=["upper", "short", "all-zero", "long", "span-upper", "span-zero", "parent-garbage", "parent-long"])
def test_invalid_trace_ids(field, value):
    error = refused(event(**{field: value}))
    assert error.field == field and "lower-case hex" in str(error)


def test_attrs_at_most_64_kib_canonical():
    overhead = len(b'{"a":""}')
    assert len(parse(event(attrs={"a": "x" * (MAX_ATTRS_BYTES - overhead)})).events) == 1
    error = refused(event(attrs={"a": "x" * (MAX_ATTRS_BYTES - overhead + 1)}))
    assert error.field == "attrs" and "65536" in str(error)


def test_attrs_size_counts_canonical_bytes_not_the_text_sent():
    padded = b'{"trace_id": "%s", "step": "s", "status": "info", "attrs": {"a":%s"x"}}' % (
        TRACE.encode(), b" " * 100_000)
    assert parse(padded).events[0].attrs == {"a": "x"}
    expanded = ("[" + ",".join(["1e15"] * 4000) + "]").encode()  # 20 KB sent, 68 KB canonical
    error = refused(b'{"trace_id":"%s","step":"s","status":"info","attrs":{"n":%s}}' % (TRACE.encode(), expanded))
    assert error.field == "attrs" and "65536" in str(error)


def test_attrs_near_the_limit_with_floats_are_measured_exactly():
    close = {"f": [1.5e-7] * 9300}  # "1.5e-7" in both orjson and RFC 8785: 65,107 bytes
    assert parse(event(attrs=close)).events[0].attrs == close
    wide = [0.000001] * 8000  # "1e-6" in orjson (40 KB), "0.000001" in RFC 8785 (72 KB)
    error = refused(event(attrs={"f": wide}))
    assert error.field == "attrs" and "65536" in str(error)


def test_attrs_depth():
    def nested(depth):  # attrs itself is depth 1
        value: object = 1
        for _ in range(depth - 1):
            value = [value]
        return {"a": value}

    assert len(parse(event(attrs=nested(32))).events) == 1
    error = refused(event(attrs=nested(33)))
    assert error.field == "attrs" and "deeper than 32" in str(error)


def test_hostile_nesting_is_an_error_not_a_crash():
    deep = b"[" * 200_000 + b"]" * 200_000
    line = b'{"trace_id":"%s","step":"s","status":"info","attrs":{"a":%s}}' % (TRACE.encode(), deep)
    error = refused(line)
    assert error.field == "body" and "nested" in str(error)
    assert refused(b"[" * 100_000 + b"]" * 100_000).field.startswith("events[0]")
    assert str(refused(b"\n" + line, "application/x-ndjson")).startswith("line 2: events[0]: nested")


@pytest.mark.parametrize("number, accepted", [
    (b"9007199254740991", True), (b"-9007199254740991", True), (b"9007199254740992", False),
    (b"123456789012345678901234567890", False), (b"1e16", False), (b"9007199254740992.0", False),
    (b"1e21", True), (b"1.5", True), (b"-0.0", True), (b"100.0", True), (b"1e400", False),
], ids=lambda value: value.decode() if isinstance(value, bytes) else str(value))
def test_big_integers_and_floats_follow_the_entry_rule(number, accepted):
    body = b'{"trace_id":"%s","step":"s","status":"info","attrs":{"n":%s}}' % (TRACE.encode(), number)
    if accepted:
        assert parse(body).events[0].attrs["n"] == json.loads(number)
    else:
        assert refused(body).field == "attrs"


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_numbers_are_not_json(literal):
    body = b'{"trace_id":"%s","step":"s","status":"info","attrs":{"n":%s}}' % (TRACE.encode(), literal)
    assert refused(body).field in ("body", "attrs")


def test_lone_surrogate_is_refused():
    body = b'{"trace_id":"%s","step":"s","status":"info","attrs":{"n":"\\ud800"}}' % TRACE.encode()
    assert refused(body).field in ("body", "attrs")


# --- duplicate keys ---------------------------------------------------------------------------

def test_duplicate_event_field_is_refused():
    body = b'[{"trace_id":"%s","step":"s","status":"failed","status":"succeeded"}]' % TRACE.encode()
    error = refused(body)
    assert error.field == "events[0]" and "'status' appears twice" in str(error)


@pytest.mark.parametrize("member", [b'"ts":"2026-01-01T00:00:00Z"', b'"idempotency_key":"a:b"', b'"attrs":{}',
                                    b'"final":false', b'"span_id":null', b'"trace_id":"%s"' % TRACE.encode()],
                         ids=["ts", "idempotency_key", "attrs", "final", "null-span", "trace_id"])
def test_every_event_field_given_twice_is_refused(member):
    body = b'{"trace_id":"%s","step":"s","status":"info",%s,%s}' % (TRACE.encode(), member, member)
    assert "appears twice" in str(refused(body))


def test_duplicate_key_deep_in_attrs_is_refused():
    body = b'{"trace_id":"%s","step":"s","status":"info","attrs":{"x":[{"k":1,"k":2}]}}' % TRACE.encode()
    assert "'k' appears twice" in str(refused(body))


def test_duplicate_key_on_an_ndjson_line_names_the_line():
    body = json.dumps(event()).encode() + b'\n{"trace_id":"%s","step":"s","step":"t","status":"info"}' % TRACE.encode()
    error = refused(body, "application/x-ndjson")
    assert str(error).startswith("line 2: events[1]: key 'step' appears twice")


def test_duplicate_among_many_keys_is_found_in_one_pass():
    members = b",".join(b'"k%d":0' % i for i in range(6_000)) + b',"k7":1'
    body = b'{"trace_id":"%s","step":"s","status":"info","attrs":{%s}}' % (TRACE.encode(), members)
    assert "'k7' appears twice" in str(refused(body))


def test_escaped_colons_are_not_mistaken_for_duplicates():
    body = b'{"trace_id":"%s","step":"a\\u003ab","status":"info","attrs":{"k\\u003A":"v:w"}}' % TRACE.encode()
    parsed = parse(body)
    assert parsed.events[0].step == "a:b" and parsed.events[0].attrs == {"k:": "v:w"}


def test_escaped_key_that_duplicates_another_is_refused():
    body = b'{"trace_id":"%s","step":"s","status":"info","attrs":{"k:":1,"k\\u003a":2}}' % TRACE.encode()
    assert "appears twice" in str(refused(body))


# --- correlation ------------------------------------------------------------------------------

def plain(**fields):
    return {"step": "deploy", "status": "info", **fields}


def test_traceparent_header_gives_trace_id_and_span_id():
    (only,) = parse(plain(), headers={"traceparent": [TRACEPARENT]}).events
    assert (only.trace_id, only.span_id) == (TRACE, SPAN)


def test_no_correlation_at_all_is_refused():
    error = refused(plain())
    assert error.field == "trace_id" and "never invents" in str(error)


def test_invalid_traceparent_is_refused_even_when_the_body_has_a_trace():
    error = refused(event(), headers={"traceparent": ["00-xyz-00f067aa0ba902b7-01"]})
    assert error.field == "traceparent"


def test_two_traceparents_mean_restart_and_count_as_absent():
    two = {"traceparent": [TRACEPARENT, f"00-{OTHER_TRACE}-{SPAN}-01"]}
    assert refused(plain(), headers=two).field == "trace_id"
    assert parse(plain(), headers={**two, "x-amzn-trace-id": [XRAY]}).events[0].trace_id == XRAY_TRACE


def test_xray_fallback_gives_trace_id_and_parent():
    (only,) = parse(plain(), headers={"x-amzn-trace-id": [XRAY]}).events
    assert (only.trace_id, only.span_id) == (XRAY_TRACE, "53995c3f42cd8ad8")


def test_traceparent_wins_over_xray():
    headers = {"traceparent": [TRACEPARENT], "x-amzn-trace-id": [XRAY]}
    assert parse(plain(), headers=headers).events[0].trace_id == TRACE


def test_invalid_xray_is_refused():
    assert refused(plain(), headers={"x-amzn-trace-id": ["Root=1-zz-12"]}).field == "X-Amzn-Trace-Id"


def test_body_trace_wins_and_a_header_for_another_trace_gives_no_span():
    headers = {"traceparent": [f"00-{OTHER_TRACE}-{SPAN}-01"]}
    (only,) = parse(event(), headers=headers).events
    assert (only.trace_id, only.span_id) == (TRACE, None)
    same = parse(event(), headers={"traceparent": [TRACEPARENT]}).events[0]
    assert same.span_id == SPAN
    assert parse(event(span_id="b7ad6b7169203331"), headers={"traceparent": [TRACEPARENT]}).events[0].span_id == \
        "b7ad6b7169203331"


def test_request_headers_picks_correlation_headers_from_asgi():
    raw = [(b"Traceparent", TRACEPARENT.encode()), (b"content-type", b"application/json"),
           (b"traceparent", b"second"), (b"Idempotency-Key", b"k1")]
    assert request_headers(raw) == {"traceparent": [TRACEPARENT, "second"], "idempotency-key": ["k1"]}


# --- idempotency ------------------------------------------------------------------------------

def test_idempotency_key_from_header_bare_or_quoted():
    assert parse(event(), headers={"idempotency-key": ["abc-123"]}).idempotency_key == "abc-123"
    quoted = parse(event(), headers={"idempotency-key": ['"8e03978e \\"x\\" \\\\"']}).idempotency_key
    assert quoted == '8e03978e "x" \\'
    assert parse(event()).idempotency_key is None


def test_idempotency_key_field_and_header_must_agree():
    assert parse(event(idempotency_key="k"), headers={"idempotency-key": ["k"]}).idempotency_key == "k"
    error = refused(event(idempotency_key="k"), headers={"idempotency-key": ["other"]})
    assert error.field == "idempotency_key" and "differs" in str(error)
    assert refused([event(idempotency_key="a"), event(idempotency_key="b")]).field == "events[1].idempotency_key"
    assert parse([event(idempotency_key="a"), event()]).idempotency_key == "a"


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\t"], ids=["empty", "too-long", "non-ascii", "tab"])
def test_idempotency_key_rules(key):
    assert refused(event(idempotency_key=key)).field == "idempotency_key"
    assert len(parse(event(idempotency_key="x" * 255)).events) == 1


def test_idempotency_key_alone_for_other_routes():
    assert idempotency_key({"idempotency-key": [' "k 1" ']}) == "k 1" and idempotency_key({}) is None
    with pytest.raises(RequestError):
        idempotency_key({"idempotency-key": ["x" * 256]})


def test_idempotency_header_twice_or_badly_quoted():
    assert refused(event(), headers={"idempotency-key": ["a", "b"]}).field == "Idempotency-Key"
    assert refused(event(), headers={"idempotency-key": ['"open']}).field == "Idempotency-Key"


# --- content type and source ------------------------------------------------------------------

@pytest.mark.parametrize("content_type", [None, "", "application/json", "application/json; charset=UTF-8",
                                          "application/vnd.runlog+json"])
def test_json_content_types(content_type):
    assert len(parse(event(), content_type).events) == 1


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "application/json; charset=latin-1"])
def test_unsupported_content_types(content_type):
    with pytest.raises(UnsupportedMediaType) as caught:
        parse(event(), content_type)
    assert caught.value.field == "Content-Type"


def test_source_is_checked_as_the_entry_would():
    with pytest.raises(Exception) as caught:
        parse(event(), source="has space")
    assert getattr(caught.value, "field", None) == "source"


# --- request hash -----------------------------------------------------------------------------

def test_request_hash_ignores_whitespace_key_order_and_equivalent_offsets():
    first = parse(b'{"trace_id":"%s","step":"s","status":"info","ts":"2026-01-01T10:00:00+01:00",'
                  b'"attrs":{"a":1,"b":[1,2]}}' % TRACE.encode())
    second = parse(b'{ "attrs" : { "b" : [ 1 , 2 ] , "a" : 1 } , "status":"info","step":"s",\n'
                   b'"ts":"2026-01-01T09:00:00Z", "trace_id":"%s" }' % TRACE.encode())
    assert first.request_hash == second.request_hash


def test_request_hash_changes_with_content_or_source_but_not_the_default_time():
    base = parse(event(attrs={"a": 1}))
    assert parse(event(attrs={"a": 2})).request_hash != base.request_hash
    assert parse(event(attrs={"a": 1}), source="other").request_hash != base.request_hash
    assert parse(event(attrs={"a": 1}), default_ts="2030-01-01T00:00:00Z").request_hash == base.request_hash
    assert parse(plain(attrs={"a": 1}), headers={"traceparent": [TRACEPARENT]}).request_hash != base.request_hash


def test_request_hash_same_for_json_array_and_ndjson_of_the_same_events():
    events = [event(step="a"), event(step="b")]
    ndjson = "\n".join(json.dumps(e) for e in events).encode()
    assert parse(events).request_hash == parse(ndjson, "application/x-ndjson").request_hash


# --- agreement with the core, and garbage ----------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=30,
)


def core_accepts(attrs) -> bool:
    probe = Entry(seq=0, trace_id=TRACE, run_seq=0, step="s", status="info", ts=NOW, received_at=NOW, source="ci",
                  prev=None, run_prev=None, attrs=attrs)
    try:
        encode_entry(probe)
    except EntryError:
        return False
    return True


@given(st.dictionaries(st.text(max_size=6), json_values, max_size=5))
def test_attrs_accepted_exactly_when_the_core_accepts_them(attrs):
    body = json.dumps({"trace_id": TRACE, "step": "s", "status": "info", "attrs": attrs}).encode()
    try:
        parsed = parse(body)
    except RequestError:
        assert not core_accepts(attrs)
    else:
        assert core_accepts(parsed.events[0].attrs)


@given(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**70), 2**70))
def test_numbers_accepted_exactly_when_the_core_accepts_them(number):
    text = json.dumps(number).encode()
    body = b'{"trace_id":"%s","step":"s","status":"info","attrs":{"n":%s}}' % (TRACE.encode(), text)
    try:
        parse(body)
    except RequestError:
        assert not core_accepts({"n": number})
    else:
        assert core_accepts({"n": number})


@given(st.binary(max_size=300), st.sampled_from([None, "application/x-ndjson"]))
def test_garbage_bytes_only_ever_raise_request_error(body, content_type):
    try:
        parse(body, content_type)
    except RequestError:
        pass


@given(json_values, st.sampled_from([None, "application/x-ndjson"]))
def test_garbage_json_only_ever_raises_request_error(value, content_type):
    try:
        parse(json.dumps(value).encode(), content_type)
    except RequestError:
        pass


field_values = st.none() | st.booleans() | st.integers() | st.text(max_size=40) | st.sampled_from(
    [TRACE, SPAN, "succeeded", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00+05:30"])


@given(st.dictionaries(st.sampled_from(["trace_id", "span_id", "parent_id", "step", "status", "ts", "attrs",
                                        "final", "idempotency_key", "extra"]), field_values | json_values),
       st.dictionaries(st.sampled_from(["traceparent", "x-amzn-trace-id", "idempotency-key"]),
                       st.lists(st.text(max_size=60) | st.just(TRACEPARENT), max_size=2)))
def test_events_are_accepted_only_when_every_entry_rule_holds(fields, headers):
    body = json.dumps(fields).encode()
    try:
        parsed = parse(body, headers=headers)
    except RequestError:
        return
    (only,) = parsed.events
    entry = Entry(seq=0, trace_id=only.trace_id, span_id=only.span_id, parent_id=only.parent_id, run_seq=0,
                  step=only.step, status=only.status, final=only.final, ts=only.ts, received_at=NOW,
                  source=only.source, attrs=dict(only.attrs), prev=None, run_prev=None)
    encode_entry(entry)


def _key_text(key: str, escape_colons: bool) -> str:
    text = json.dumps(key)
    return text.replace(":", "\\u003a") if escape_colons else text


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "a:", ":", "k:v", "\u00e9"]), st.booleans(),
                          st.sampled_from(['"x:y"', "1", "{}", '{"a:b":":"}', "[]"])), min_size=1, max_size=5),
       st.booleans())
def test_duplicate_keys_are_found_exactly(members, in_attrs):
    """Keys and values hold colons, raw or escaped as \\u003a; only a repeated key is refused."""
    inner = ",".join(f"{_key_text(key, escape)}:{value}" for key, escape, value in members)
    if in_attrs:
        body = b'{"trace_id":"%s","step":"s","status":"info","attrs":{%s}}' % (TRACE.encode(), inner.encode())
    else:
        body = b'{"trace_id":"%s","step":"s:t","status":"info","attrs":{"x":{%s}}}' % (TRACE.encode(), inner.encode())
    keys = [key for key, _, _ in members]
    if len(set(keys)) < len(keys):
        assert "appears twice" in str(refused(body))
    else:
        assert len(parse(body).events) == 1


RFC3339_LIKE = (r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,10})?"
                r"([Zz]|[+-][0-9]{2}:[0-9]{2})")


@given(st.from_regex(RFC3339_LIKE, fullmatch=True) | st.sampled_from(["2026-11-28T10:00:00.123456+00:00", "2026-02-29T00:00:00+00:00",
                                                        "2024-02-29T23:59:59.9Z", "0000-01-01T00:00:00+00:00"]))
def test_times_are_normalised_exactly_as_the_core_does(ts):
    try:
        expected = normalize_rfc3339(ts)
    except EntryError:
        assert refused(event(ts=ts)).field == "ts"
    else:
        assert parse(event(ts=ts)).events[0].ts == expected
