"""Timestamps in entries: strict RFC 3339 UTC text, and normalisation of any RFC 3339 offset.

An entry stores its times as text, `YYYY-MM-DDTHH:MM:SS[.f]Z` with 1..9 fraction digits, so the
hashed bytes keep the producer's precision (a `datetime` holds only microseconds).
Grammar: RFC 3339 section 5.6 (https://www.rfc-editor.org/rfc/rfc3339#section-5.6).
"""

import re
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache

from appliance.core.errors import EntryError, InvalidInput

MAX_FRACTION_DIGITS = 9

# [0-9] rather than \d: \d also matches non-ASCII digits such as "٣".
_STRICT_UTC = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?Z"
)
# RFC 3339 section 5.6 date-time; "T" and "Z" may be lower case (the note below the grammar).
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)


def _civil_time(groups: tuple[str | None, ...], field: str, text: str) -> datetime:
    year, month, day, hour, minute, second = (int(g) for g in groups[:6])  # type: ignore[arg-type]
    if year == 0:
        raise EntryError(f"{field}: year 0000 is outside 0001-9999: {text!r}", field=field)
    if second == 60:
        raise EntryError(f"{field}: leap second :60 is not accepted: {text!r}", field=field)
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
    except ValueError:
        raise EntryError(f"{field}: not a real calendar date and time: {text!r}", field=field) from None


def _civil_text(moment: datetime) -> str:
    # Not strftime: it does not zero-pad years below 1000 on every platform.
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )


@lru_cache(maxsize=4096)
def _is_real_date(year_month_day: str) -> bool:
    try:
        date.fromisoformat(year_month_day)
    except ValueError:
        return False
    return True


def check_utc(text: str, *, field: str = "ts") -> None:
    """Check the strict entry form `YYYY-MM-DDTHH:MM:SS[.f]Z` without building a datetime.

    The same rules as `parse_utc` (which see), for the ingest hot path. Raises `EntryError`.
    """
    if type(text) is not str:
        raise EntryError(f"{field}: must be a string, got {type(text).__name__}", field=field)
    if _STRICT_UTC.fullmatch(text) is None:
        raise EntryError(
            f"{field}: must be UTC RFC 3339 like 2026-01-02T03:04:05.123Z, got {text[:60]!r}", field=field
        )
    if text[:4] == "0000":
        raise EntryError(f"{field}: year 0000 is outside 0001-9999: {text!r}", field=field)
    # Two-digit fields compare correctly as strings.
    if text[17:19] == "60":
        raise EntryError(f"{field}: leap second :60 is not accepted: {text!r}", field=field)
    if text[11:13] > "23" or text[14:16] > "59" or text[17:19] > "59" or not _is_real_date(text[:10]):
        raise EntryError(f"{field}: not a real calendar date and time: {text!r}", field=field)


def parse_utc(text: str, *, field: str = "ts") -> datetime:
    """Parse the strict entry form `YYYY-MM-DDTHH:MM:SS[.f]Z` into an aware UTC datetime.

    Preconditions: none; any value is accepted and checked. Upper-case T and Z, 1..9 fraction
    digits, years 0001-9999, a real calendar date, no leap second (:60 is refused because Python
    and most stores cannot represent it). Fraction digits past the sixth are truncated in the
    returned datetime; the text remains the authoritative value. Raises `EntryError(field=field)`.
    """
    check_utc(text, field=field)
    # check_utc fixed every position: YYYY-MM-DDTHH:MM:SS then an optional .fraction and Z.
    fraction = text[20:-1]
    return datetime(
        int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), int(text[14:16]),
        int(text[17:19]), int(fraction[:6].ljust(6, "0")) if fraction else 0, tzinfo=timezone.utc,
    )


def format_utc(moment: datetime, digits: int = 6) -> str:
    """Format an aware datetime as `YYYY-MM-DDTHH:MM:SS[.f]Z` in UTC with `digits` fraction digits.

    Preconditions: `moment` is timezone-aware (a naive datetime is refused rather than guessed);
    0 <= digits <= 9 (0 omits the fraction; digits past the sixth are zeros). The fraction is
    truncated, never rounded, so a formatted time is never later than the moment itself.
    """
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise InvalidInput("format_utc needs a timezone-aware datetime", field="received_at")
    if type(digits) is not int or not 0 <= digits <= MAX_FRACTION_DIGITS:
        raise InvalidInput("format_utc digits must be an integer 0..9", field="received_at")
    try:
        utc = moment.astimezone(timezone.utc)
    except OverflowError:
        raise InvalidInput("time is outside years 0001-9999 in UTC", field="received_at") from None
    text = _civil_text(utc)
    if digits:
        text += "." + f"{utc.microsecond:06d}{'000'}"[:digits]
    return text + "Z"


def normalize_rfc3339(text: str, *, field: str = "ts") -> str:
    """Return the strict UTC `Z` form of any RFC 3339 date-time (for example with `+02:00`).

    Preconditions: none. Accepts lower-case t/z and numeric offsets (`-00:00` is read as UTC),
    keeps the fraction digits exactly as given (1..9 of them), refuses leap seconds, more than
    nine fraction digits, and results outside years 0001-9999. Raises `EntryError(field=field)`.
    """
    if type(text) is not str:
        raise EntryError(f"{field}: must be a string, got {type(text).__name__}", field=field)
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise EntryError(f"{field}: not an RFC 3339 date-time with offset: {text!r}", field=field)
    fraction = match.group(7)
    if fraction is not None and len(fraction) > MAX_FRACTION_DIGITS:
        raise EntryError(f"{field}: more than 9 fraction digits: {text!r}", field=field)
    moment = _civil_time(match.groups(), field, text)
    if match.group(8) is None:
        offset_hours, offset_minutes = int(match.group(10)), int(match.group(11))
        if offset_hours > 23 or offset_minutes > 59:
            raise EntryError(f"{field}: offset out of range: {text!r}", field=field)
        offset = timedelta(hours=offset_hours, minutes=offset_minutes)
        try:
            moment = moment - offset if match.group(9) == "+" else moment + offset
        except OverflowError:
            raise EntryError(f"{field}: outside years 0001-9999 in UTC: {text!r}", field=field) from None
    normalized = _civil_text(moment)
    if fraction is not None:
        normalized += "." + fraction
    return normalized + "Z"
