"""The ingest parser's per-request shortcuts give what the long ways give: the appliance's time
formatted once a second (`utc_text`) equals `format_utc`; a body's shape found from its first
byte equals the one found past leading whitespace; no correlation header at all parses as
absent ones did."""

from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from appliance.core.timefmt import format_utc
from appliance.web import ingest
from appliance.web.ingest import parse_events, utc_text

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
LAST = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc) - EPOCH) // timedelta(microseconds=1)
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@given(st.lists(st.integers(0, LAST) | st.integers(1_700_000_000_000_000, 1_700_000_003_000_000), max_size=20))
def test_utc_text_equals_format_utc_in_any_order(moments):
    for micros in moments:  # the per-second cache is hit, missed and replaced in every order
        assert utc_text(micros) == format_utc(EPOCH + timedelta(microseconds=micros))


def test_the_appliance_time_is_now(monkeypatch):
    monkeypatch.setattr(ingest.time, "time_ns", lambda: 1_764_316_800_123_456_789)
    (event,) = parse_events(b'{"trace_id":"%s","step":"s","status":"info"}' % TRACE.encode(), None, {}, "src",
                            max_batch=10).events
    assert event.ts == "2025-11-28T08:00:00.123456Z"


@given(st.sampled_from([b"", b" ", b"\t", b"\r\n", b"\n \t "]), st.booleans())
def test_leading_whitespace_changes_nothing(space, array):
    event = b'{"trace_id":"%s","step":"s","status":"info","ts":"2026-11-28T10:00:00Z"}' % TRACE.encode()
    body = b"[" + event + b"]" if array else event
    plain = parse_events(body, "application/json", {}, "src", max_batch=10)
    spaced = parse_events(space + body, "application/json", {}, "src", max_batch=10)
    assert spaced == plain and spaced.shape == ("array" if array else "object")


def test_no_correlation_header_is_the_same_as_empty_ones():
    body = b'{"trace_id":"%s","step":"s","status":"info","ts":"2026-11-28T10:00:00Z"}' % TRACE.encode()
    assert parse_events(body, None, {}, "src", max_batch=10) == \
        parse_events(body, None, {"traceparent": [], "x-amzn-trace-id": []}, "src", max_batch=10)
