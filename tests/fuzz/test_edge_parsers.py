"""Hypothesis on the parsers at the web edge, the ones outside appliance.core (whose parsers
tests/core/test_garbage.py covers, and ingest bodies tests/web/test_ingest_parsing.py): the
Authorization header, signed download links, client addresses, and Slack's signed requests,
forms, interaction payloads, command text and button values.

Each gets garbage and near misses of a valid input; only its documented error may escape (or,
for the yes/no checks, only a no), and no mutation of a valid link or Slack request is accepted.
"""

import hashlib
import json
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.errors import RunlogError
from appliance.core.keys import generate_signer
from appliance.slack import ids, payloads, timeline
from appliance.slack.replay import ReplayGuard
from appliance.slack.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, SlackSignatureError, signature, verify_request
from appliance.web.auth import bearer_token
from appliance.web.download_links import LinkKey
from appliance.web.errors import Unauthorized
from appliance.web.rate_limit import client_key
from tests.core.test_garbage import near_miss_bytes, near_miss_text
from tests.fuzz import examples

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
NOW = 1_795_824_000
KEY = LinkKey.from_signer(generate_signer("runlog.example/log", seed=hashlib.sha256(b"links").digest()))
LINK = urlsplit(KEY.sign(TRACE, "json", now=NOW)[0])
LINK_PARTS = (LINK.path.split("/")[3], LINK.path.split("/")[4],
              parse_qs(LINK.query)["expires"][0], parse_qs(LINK.query)["sig"][0])
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
COMMAND_BODY = b"token=x&team_id=T1&user_id=U2CERLKJA&command=%2Fwhat-happened&text=" + TRACE.encode()
INTERACTION = json.dumps({"type": "block_actions", "user": {"id": "U2CERLKJA"}, "trigger_id": "1.2.3",
                          "actions": [{"action_id": "runlog_timeline", "value": f"{TRACE}:0"}],
                          "view": {"id": "V1", "hash": "h"}})
INTERACTION_BODY = f"payload={quote(INTERACTION)}".encode()
EXAMPLES = examples(150)
TEXT = st.one_of(st.text(), st.text(alphabet=st.characters(max_codepoint=0x7f)))


def _only(errors: tuple[type[BaseException], ...], call, *args) -> None:
    try:
        call(*args)
    except errors:
        pass


@settings(max_examples=EXAMPLES)
@given(st.lists(st.one_of(TEXT, near_miss_text(["Bearer rl_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
                                                "bearer a.b-c~d+e/f==", "Basic dXNlcjpwYXNz"])), max_size=3))
def test_authorization_headers_give_a_token_or_401(values):
    try:
        token = bearer_token(values)
    except Unauthorized:
        return
    assert len(values) == 1 and token in values[0] and " " not in token and len(values[0]) <= 1024


@settings(max_examples=EXAMPLES)
@given(st.tuples(*(st.one_of(st.just(part), near_miss_text([part]), TEXT, st.none()) for part in LINK_PARTS)),
       st.integers(NOW - 10, NOW + 2000))
def test_only_the_untouched_link_opens_and_only_in_its_window(parts, now):
    trace_id, fmt, expires, sig = parts
    opened = KEY.check(trace_id, fmt, expires, sig, now=now)
    assert opened == (parts == LINK_PARTS and now < int(LINK_PARTS[2]))


@settings(max_examples=EXAMPLES)
@given(st.one_of(st.none(), st.tuples(st.one_of(TEXT, st.none(), st.integers()), st.integers()),
                 st.tuples(st.ip_addresses().map(str), st.integers(0, 65535))))
def test_client_keys_never_fail(client):
    assert isinstance(client_key({"client": client}), str)


def _signed_headers(body: bytes, timestamp: int) -> list[tuple[str, str]]:
    return [(TIMESTAMP_HEADER, str(timestamp)), (SIGNATURE_HEADER, signature(SECRET, str(timestamp), body))]


@settings(max_examples=EXAMPLES)
@given(st.one_of(st.just(COMMAND_BODY), near_miss_bytes([COMMAND_BODY, INTERACTION_BODY])),
       st.integers(-400, 400), st.booleans())
def test_a_slack_signature_holds_only_for_its_body_and_window(body, skew, tamper):
    headers = _signed_headers(COMMAND_BODY, NOW)
    if tamper:
        headers[1] = (SIGNATURE_HEADER, headers[1][1][:-1] + ("0" if headers[1][1][-1] != "0" else "1"))
    try:
        verify_request(SECRET, headers, body, now=NOW + skew)
    except SlackSignatureError:
        accepted = False
    else:
        accepted = True
    assert accepted == (body == COMMAND_BODY and abs(skew) <= 300 and not tamper)


@settings(max_examples=EXAMPLES)
@given(st.lists(st.tuples(st.one_of(st.sampled_from([TIMESTAMP_HEADER, SIGNATURE_HEADER]), TEXT), TEXT), max_size=4),
       st.binary(max_size=64))
def test_slack_signature_headers_in_any_shape_only_raise_the_signature_error(headers, body):
    _only((SlackSignatureError,), lambda: verify_request(SECRET, headers, body, now=NOW))


def test_a_slack_request_is_accepted_once_within_its_window():
    guard = ReplayGuard()
    sent = verify_request(SECRET, _signed_headers(COMMAND_BODY, NOW), COMMAND_BODY, now=NOW)
    guard.check(sent, now=NOW)
    for later in (1, 299, 599):
        with pytest.raises(SlackSignatureError):
            guard.check(sent, now=NOW + later)
    with pytest.raises(SlackSignatureError):  # and once the guard forgets it, the window has closed
        verify_request(SECRET, _signed_headers(COMMAND_BODY, NOW), COMMAND_BODY, now=NOW + 601)


@settings(max_examples=EXAMPLES)
@given(st.one_of(st.binary(max_size=200), near_miss_bytes([COMMAND_BODY, INTERACTION_BODY])))
def test_slack_forms_and_payloads_only_raise_the_payload_error(body):
    try:
        fields = payloads.form_fields(body)
        payloads.is_ssl_check(fields)
        payloads.slash_command(fields)
        kind, action = payloads.interaction(fields)
    except payloads.SlackPayloadError:
        return
    assert isinstance(kind, str) and (action is None or isinstance(action.action_id, str))


JSONISH = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT),
                       lambda inner: st.one_of(st.lists(inner, max_size=3),
                                               st.dictionaries(TEXT, inner, max_size=3)), max_leaves=10)


@settings(max_examples=EXAMPLES)
@given(st.one_of(JSONISH, st.fixed_dictionaries({"type": st.just("block_actions")},
                                                optional={"actions": JSONISH, "user": JSONISH, "view": JSONISH,
                                                          "trigger_id": JSONISH, "response_url": JSONISH})))
def test_interaction_payloads_of_any_json_shape_only_raise_the_payload_error(payload):
    _only((payloads.SlackPayloadError,), payloads.interaction, {"payload": json.dumps(payload)})


@settings(max_examples=EXAMPLES)
@given(st.one_of(TEXT, near_miss_text([TRACE, f"00-{TRACE}-00f067aa0ba902b7-01", "recent",
                                       "Root=1-5759e988-bd862e3fe1be46a994272793", TRACE[:10]])))
def test_command_text_always_parses_to_a_command(text):
    command = ids.parse_command(text)
    assert isinstance(command, (ids.Usage, ids.Recent, ids.TraceID, ids.Prefix, ids.Unreadable))
    if isinstance(command, ids.TraceID):
        assert len(command.trace_id) == 32 and command.trace_id.strip("0")


@settings(max_examples=EXAMPLES)
@given(st.one_of(TEXT, near_miss_text([f"{TRACE}:0", f"{TRACE}:12"])))
def test_button_values_parse_to_a_page_or_none(value):
    parsed = timeline.parse_page_value(value)
    assert parsed is None or (timeline.page_value(*parsed) == value)


def test_the_seeds_are_valid():
    """The near misses start from inputs that pass, so the garbage reaches the deep checks."""
    assert KEY.check(*LINK_PARTS, now=NOW)
    verify_request(SECRET, _signed_headers(COMMAND_BODY, NOW), COMMAND_BODY, now=NOW)
    assert payloads.interaction(payloads.form_fields(INTERACTION_BODY))[1].action_id == "runlog_timeline"
    assert isinstance(ids.parse_command(payloads.slash_command(payloads.form_fields(COMMAND_BODY)).text), ids.TraceID)
    assert not issubclass(Unauthorized, SlackSignatureError) and issubclass(SlackSignatureError, RunlogError)
