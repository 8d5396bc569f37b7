"""Slack request signing, version v0: who may call the Slack routes.

Slack signs every request it sends with the app's signing secret:
`X-Slack-Signature: v0=` + hex HMAC-SHA256(secret, `v0:` + `X-Slack-Request-Timestamp` + `:` + raw
body). A request is genuine when that header matches and the timestamp is within five minutes
of our clock (either side: a future timestamp is as suspect as a stale one). Header names are
matched case-insensitively; a header given twice is refused, as is anything other than exactly
the shapes above (a timestamp is plain ASCII digits: no sign, no spaces, no fraction).

`verify_request` raises `SlackSignatureError` for every refusal; the reason is for logs, never for
the caller, who gets a bare 401. (`slack_sdk.signature.SignatureVerifier` would do, but it raises
`ValueError` on a non-numeric timestamp instead of refusing, and reads headers case-sensitively.)
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable

from appliance.core.errors import RunlogError

VERSION = "v0"
WINDOW_SECONDS = 300
TIMESTAMP_HEADER = "x-slack-request-timestamp"
SIGNATURE_HEADER = "x-slack-signature"

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")


class SlackSignatureError(RunlogError):
    """The request is not one Slack signed with our secret within the window; the message says why (for logs)."""


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-Slack-Signature` value Slack sends for `body` at `timestamp` (Unix seconds, as text)."""
    base = f"{VERSION}:{timestamp}:".encode("utf-8") + body
    return f"{VERSION}=" + hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()


def _single(headers: Iterable[tuple[str, str]], name: str) -> str:
    values = [value for key, value in headers if key.lower() == name]
    if not values:
        raise SlackSignatureError(f"missing {name} header")
    if len(values) > 1:
        raise SlackSignatureError(f"{name} header sent {len(values)} times")
    return values[0]


def verify_request(secret: str | None, headers: Iterable[tuple[str, str]], body: bytes, *, now: float) -> str:
    """Check that Slack signed `body` with `secret` within `WINDOW_SECONDS` of `now`; return the signature.

    `headers` are the request's (name, value) pairs, every field line; `now` is Unix seconds.
    Raises `SlackSignatureError` when `secret` is unset or on any mismatch. The comparison is
    constant-time (`hmac.compare_digest`).
    """
    if not secret:
        raise SlackSignatureError("RUNLOG_SLACK_SIGNING_SECRET is not set: every Slack request is refused")
    pairs = list(headers)
    timestamp = _single(pairs, TIMESTAMP_HEADER)
    sent = _single(pairs, SIGNATURE_HEADER)
    if _TIMESTAMP.fullmatch(timestamp) is None:
        raise SlackSignatureError(f"{TIMESTAMP_HEADER} is not Unix seconds: {timestamp[:20]!r}")
    if abs(now - int(timestamp)) > WINDOW_SECONDS:
        raise SlackSignatureError(f"{TIMESTAMP_HEADER} {timestamp} is more than {WINDOW_SECONDS} s "
                                  f"from now ({now:.0f})")
    if _SIGNATURE.fullmatch(sent) is None:
        raise SlackSignatureError(f"{SIGNATURE_HEADER} is not v0=<64 lower-case hex digits>")
    if not hmac.compare_digest(signature(secret, timestamp, body), sent):
        raise SlackSignatureError("signature does not match the body")
    return sent
