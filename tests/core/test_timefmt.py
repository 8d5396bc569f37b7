from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.errors import EntryError, InvalidInput, RunlogError
from appliance.core.timefmt import check_utc, format_utc, normalize_rfc3339, parse_utc


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)),
        ("2026-01-02T03:04:05.1Z", datetime(2026, 1, 2, 3, 4, 5, 100000, tzinfo=timezone.utc)),
        ("2026-01-02T03:04:05.123456Z", datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc)),
        # nanoseconds are truncated in the datetime, never rounded up into the next microsecond
        ("2026-01-02T03:04:05.123456999Z", datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc)),
        ("2024-02-29T23:59:59Z", datetime(2024, 2, 29, 23, 59, 59, tzinfo=timezone.utc)),
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=timezone.utc)),
        ("9999-12-31T23:59:59.999999999Z", datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)),
    ],
)
def test_parse_utc_accepts_the_strict_form(text: str, expected: datetime) -> None:
    assert parse_utc(text) == expected
    assert parse_utc(text).tzinfo is timezone.utc


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("2026-01-02t03:04:05Z", "lower-case t"),
        ("2026-01-02T03:04:05z", "lower-case z"),
        ("2026-01-02T03:04:05+00:00", "offset instead of Z"),
        ("2026-01-02 03:04:05Z", "space separator"),
        ("2026-01-02T03:04:05.Z", "empty fraction"),
        ("2026-01-02T03:04:05.1234567890Z", "ten fraction digits"),
        ("2026-01-02T03:04Z", "no seconds"),
        ("2026-1-02T03:04:05Z", "one-digit month"),
        ("2026-02-29T00:00:00Z", "not a leap year"),
        ("2026-04-31T00:00:00Z", "April 31"),
        ("2026-13-01T00:00:00Z", "month 13"),
        ("2026-00-01T00:00:00Z", "month 0"),
        ("2026-01-00T00:00:00Z", "day 0"),
        ("2026-01-01T24:00:00Z", "hour 24"),
        ("2026-01-01T00:60:00Z", "minute 60"),
        ("2016-12-31T23:59:60Z", "leap second"),
        ("0000-01-01T00:00:00Z", "year 0"),
        ("\u0662\u0660\u0662\u0666-01-01T00:00:00Z", "Arabic-Indic digits"),
        (" 2026-01-02T03:04:05Z", "leading space"),
        ("2026-01-02T03:04:05Z\n", "trailing newline"),
        ("", "empty"),
    ],
)
def test_parse_utc_refuses(text: str, why: str) -> None:
    with pytest.raises(EntryError) as caught:
        parse_utc(text, field="received_at")
    assert caught.value.field == "received_at"
    assert "received_at" in str(caught.value)


def test_leap_second_is_named_in_the_message() -> None:
    with pytest.raises(EntryError, match="leap second"):
        check_utc("2016-12-31T23:59:60Z")


def test_parse_utc_refuses_non_strings() -> None:
    with pytest.raises(EntryError):
        parse_utc(1700000000)  # type: ignore[arg-type]


def test_format_utc_converts_to_utc_and_truncates() -> None:
    moment = datetime(2026, 1, 2, 5, 4, 5, 987654, tzinfo=timezone(timedelta(hours=2)))
    assert format_utc(moment) == "2026-01-02T03:04:05.987654Z"
    assert format_utc(moment, 3) == "2026-01-02T03:04:05.987Z"
    assert format_utc(moment, 0) == "2026-01-02T03:04:05Z"
    assert format_utc(moment, 9) == "2026-01-02T03:04:05.987654000Z"
    assert format_utc(datetime(12, 3, 4, tzinfo=timezone.utc), 1) == "0012-03-04T00:00:00.0Z"


@pytest.mark.parametrize("digits", [-1, 10, 2.0, True])
def test_format_utc_refuses_bad_digits(digits: object) -> None:
    with pytest.raises(InvalidInput):
        format_utc(datetime(2026, 1, 1, tzinfo=timezone.utc), digits)  # type: ignore[arg-type]


def test_format_utc_refuses_naive_datetimes() -> None:
    with pytest.raises(InvalidInput):
        format_utc(datetime(2026, 1, 1))


@given(st.datetimes(timezones=st.just(timezone.utc)), st.integers(0, 9))
@settings(max_examples=200)
def test_format_utc_output_parses_back(moment: datetime, digits: int) -> None:
    text = format_utc(moment, digits)
    parsed = parse_utc(text)
    assert parsed <= moment
    assert moment - parsed < timedelta(seconds=1)
    if digits >= 6:
        assert parsed == moment


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-02T03:04:05Z", "2026-01-02T03:04:05Z"),
        ("2026-01-02t03:04:05z", "2026-01-02T03:04:05Z"),
        ("2026-01-02T05:04:05.5+02:00", "2026-01-02T03:04:05.5Z"),
        ("2026-01-01T01:30:00.123456789+02:00", "2025-12-31T23:30:00.123456789Z"),
        ("2025-12-31T20:00:00.000-05:00", "2026-01-01T01:00:00.000Z"),
        ("2026-01-02T03:04:05-00:00", "2026-01-02T03:04:05Z"),
        ("2024-03-01T00:30:00+01:00", "2024-02-29T23:30:00Z"),
        ("9999-12-31T23:59:59-00:00", "9999-12-31T23:59:59Z"),
    ],
)
def test_normalize_rfc3339(text: str, expected: str) -> None:
    assert normalize_rfc3339(text) == expected
    check_utc(expected)


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-02T03:04:05",  # no offset
        "2026-01-02T03:04:05+0200",  # offset without colon
        "2026-01-02T03:04:05+24:00",
        "2026-01-02T03:04:05+02:60",
        "2026-01-02T03:04:60+02:00",
        "2026-01-02T03:04:05.1234567890Z",
        "0001-01-01T00:30:00+01:00",  # year 0 in UTC
        "9999-12-31T23:30:00-01:00",  # year 10000 in UTC
        "2026-02-30T00:00:00Z",
        "2026-01-02 03:04:05Z",
    ],
)
def test_normalize_rfc3339_refuses(text: str) -> None:
    with pytest.raises(EntryError) as caught:
        normalize_rfc3339(text)
    assert caught.value.field == "ts"


@given(st.text(max_size=40))
@settings(max_examples=300)
def test_arbitrary_text_only_raises_the_error_family(text: str) -> None:
    for parse in (parse_utc, normalize_rfc3339, check_utc):
        try:
            parse(text)
        except RunlogError:
            pass


@given(st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,12})?([Zz]|[+-][0-9]{2}:[0-9]{2})", fullmatch=True))
@settings(max_examples=300)
def test_near_miss_timestamps_only_raise_the_error_family(text: str) -> None:
    try:
        normalized = normalize_rfc3339(text)
    except EntryError:
        return
    assert parse_utc(normalized) is not None
