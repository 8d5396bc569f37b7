"""What `/what-happened` reads from its text: every accepted ID form, and what it refuses."""

import pytest

from appliance.slack.ids import Prefix, Recent, TraceID, Unreadable, Usage, parse_command

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize("text, expected", [
    ("", Usage()),
    ("   ", Usage()),
    ("help", Usage()),
    ("HELP", Usage()),
    ("recent", Recent()),
    (" Recent ", Recent()),
    (TRACE, TraceID(TRACE)),
    (TRACE.upper(), TraceID(TRACE)),
    (f"`{TRACE}`", TraceID(TRACE)),
    (f'"{TRACE}"', TraceID(TRACE)),
    (f"00-{TRACE}-00f067aa0ba902b7-01", TraceID(TRACE)),
    (f"  00-{TRACE}-00f067aa0ba902b7-00\n", TraceID(TRACE)),
    ("1-5759e988-bd862e3fe1be46a994272793", TraceID("5759e988bd862e3fe1be46a994272793")),
    ("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
     TraceID("5759e988bd862e3fe1be46a994272793")),
    (TRACE[:8], Prefix(TRACE[:8])),
    (TRACE[:8].upper(), Prefix(TRACE[:8])),
    (TRACE[:31], Prefix(TRACE[:31])),
])
def test_accepted(text, expected):
    assert parse_command(text) == expected


@pytest.mark.parametrize("name, text", [
    ("prefix-of-7", TRACE[:7]),
    ("33-hex-digits", TRACE + "a"),
    ("all-zero-trace-id", "0" * 32),
    ("traceparent-all-zero-trace-id", f"00-{'0' * 32}-00f067aa0ba902b7-01"),
    ("traceparent-version-ff", f"ff-{TRACE}-00f067aa0ba902b7-01"),
    ("traceparent-short", f"00-{TRACE}-00f067aa0ba902b7-1"),
    ("xray-short-root", "1-5759e98-bd862e3fe1be46a994272793"),
    ("xray-all-zero", "Root=1-00000000-000000000000000000000000"),
    ("not-hex", "deploy-of-tuesday"),
    ("mention-injection", "<!channel>"),
    ("two-ids", f"{TRACE} {TRACE}"),
])
def test_unreadable_says_why(name, text):
    parsed = parse_command(text)
    assert isinstance(parsed, Unreadable) and parsed.reason
