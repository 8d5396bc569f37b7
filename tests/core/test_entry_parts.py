"""`encode_parts` remembers the last `ts` object it accepted and skips checking that very object
again: it must still accept exactly what `check_utc` accepts, in any order of calls."""

from hypothesis import given
from hypothesis import strategies as st

from appliance.core.entry import encode_parts
from appliance.core.errors import EntryError
from appliance.core.timefmt import check_utc

GOOD = ["2026-11-28T10:00:00Z", "2026-11-28T10:00:00.123456Z", "0001-01-01T00:00:00Z"]
BAD = ["2026-11-28T10:00:00", "2026-02-30T10:00:00Z", "2026-11-28T10:00:60Z", "0000-01-01T00:00:00Z", "",
       "2026-11-28t10:00:00z", 5, None]


def accepted(ts) -> bool:
    try:
        encode_parts(trace_id="1" * 32, step="s", status="info", ts=ts, source="src", attrs={})
    except EntryError as error:
        assert error.field == "ts"
        return False
    return True


def checked(ts) -> bool:
    try:
        check_utc(ts)
    except EntryError:
        return False
    return True


@given(st.lists(st.sampled_from(GOOD + BAD), max_size=20))
def test_the_remembered_ts_changes_no_verdict(sequence):
    for ts in sequence:
        assert accepted(ts) is checked(ts), ts


def test_a_bad_ts_after_a_good_one_is_refused_even_if_equal_but_another_object():
    good = "".join(["2026-11-28T10:00:00", "Z"])
    assert accepted(good) and accepted(good)
    assert not accepted("2026-11-28T10:00:00")
    assert accepted("".join(["2026-11-28T10:00:00", "Z"]))  # an equal string, another object: checked again
