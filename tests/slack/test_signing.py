"""Slack request signing v0 against Slack's published example, and every way a request is refused."""

import pytest

from appliance.slack.replay import ReplayGuard
from appliance.slack.signing import SlackSignatureError, signature, verify_request

# Slack's documentation example ("Verifying requests from Slack"), via /work/shared/FACTS.md.
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TIMESTAMP = "1531420618"
BODY = (b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
        b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
        b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")
EXPECTED = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
NOW = int(TIMESTAMP) + 10


def headers(timestamp: str = TIMESTAMP, sig: str = EXPECTED) -> list[tuple[str, str]]:
    return [("X-Slack-Request-Timestamp", timestamp), ("X-Slack-Signature", sig)]


def test_slacks_published_example():
    assert signature(SECRET, TIMESTAMP, BODY) == EXPECTED
    assert verify_request(SECRET, headers(), BODY, now=NOW) == EXPECTED


def test_header_names_in_any_case():
    mixed = [("x-slack-request-timestamp", TIMESTAMP), ("X-SLACK-SIGNATURE", EXPECTED)]
    assert verify_request(SECRET, mixed, BODY, now=NOW) == EXPECTED


def test_window_edges_are_five_minutes_either_side():
    verify_request(SECRET, headers(), BODY, now=int(TIMESTAMP) + 300)
    verify_request(SECRET, headers(), BODY, now=int(TIMESTAMP) - 300)


def _resigned(timestamp: str) -> list[tuple[str, str]]:
    return headers(timestamp, signature(SECRET, timestamp, BODY))


@pytest.mark.parametrize("name, secret, given, body, now", [
    ("wrong-secret", "another-secret", headers(), BODY, NOW),
    ("no-secret-configured", None, headers(), BODY, NOW),
    ("body-altered-after-signing", SECRET, headers(), BODY.replace(b"text=", b"text=abc"), NOW),
    ("body-truncated", SECRET, headers(), BODY[:-1], NOW),
    ("signature-of-another-timestamp", SECRET, headers("1531420619"), BODY, NOW),
    ("stale-timestamp", SECRET, headers(), BODY, int(TIMESTAMP) + 301),
    ("replay-a-day-later", SECRET, headers(), BODY, int(TIMESTAMP) + 86_400),
    ("future-timestamp", SECRET, _resigned(str(NOW + 301)), BODY, NOW),
    ("missing-timestamp", SECRET, [("X-Slack-Signature", EXPECTED)], BODY, NOW),
    ("missing-signature", SECRET, [("X-Slack-Request-Timestamp", TIMESTAMP)], BODY, NOW),
    ("no-headers", SECRET, [], BODY, NOW),
    ("two-signature-headers", SECRET, headers() + [("x-slack-signature", EXPECTED)], BODY, NOW),
    ("two-timestamp-headers", SECRET, headers() + [("X-Slack-Request-Timestamp", TIMESTAMP)], BODY, NOW),
    ("non-numeric-timestamp", SECRET, _resigned("yesterday"), BODY, NOW),
    ("empty-timestamp", SECRET, _resigned(""), BODY, NOW),
    ("signed-timestamp", SECRET, _resigned("+1531420618"), BODY, NOW),
    ("timestamp-with-spaces", SECRET, _resigned(" 1531420618"), BODY, NOW),
    ("fractional-timestamp", SECRET, _resigned("1531420618.0"), BODY, NOW),
    ("exponent-timestamp", SECRET, _resigned("1.531420618e9"), BODY, NOW),
    ("arabic-indic-digits", SECRET, _resigned("١٥٣١٤٢٠٦١٨"), BODY, NOW),
    ("huge-timestamp", SECRET, _resigned("9" * 400), BODY, NOW),
    ("upper-case-hex", SECRET, headers(sig=EXPECTED.upper().replace("V0=", "v0=")), BODY, NOW),
    ("version-v1", SECRET, headers(sig=EXPECTED.replace("v0=", "v1=")), BODY, NOW),
    ("bare-hex", SECRET, headers(sig=EXPECTED[3:]), BODY, NOW),
    ("truncated-signature", SECRET, headers(sig=EXPECTED[:-2]), BODY, NOW),
    ("one-bit-flipped", SECRET, headers(sig=EXPECTED[:-1] + "a"), BODY, NOW),
])
def test_refused(name, secret, given, body, now):
    with pytest.raises(SlackSignatureError):
        verify_request(secret, given, body, now=now)


def test_replay_within_the_window_is_refused_once_seen():
    guard = ReplayGuard()
    guard.check(EXPECTED, now=NOW)
    with pytest.raises(SlackSignatureError, match="replay"):
        guard.check(EXPECTED, now=NOW + 1)
    guard.check("v0=" + "1" * 64, now=NOW + 2)  # another request is fine


def test_replay_memory_forgets_only_after_the_window_and_stays_bounded():
    guard = ReplayGuard(window=600, capacity=3)
    guard.check("a", now=0)
    with pytest.raises(SlackSignatureError):
        guard.check("a", now=600)
    guard.check("a", now=601)  # past the window the signature check itself refuses it anyway
    for name in "bcd":
        guard.check(name, now=602)
    assert len(guard._seen) == 3
