"""Signed, expiring download links: one trace, one format, an expiry, an HMAC-SHA256 tag.

The tag key is derived from the log key's seed (so no new secret to configure, and rotating the
log key revokes every link). A link is ``/v1/downloads/<trace_id>/<format>?expires=<unix
seconds>&sig=<base64url tag>``; checking it answers only yes or no, so a refusal reveals nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

from appliance.core.errors import InvalidInput
from appliance.core.keys import NoteSigner

DEFAULT_SECONDS = 15 * 60
MAX_SECONDS = 7 * 24 * 3600
FORMATS = ("json", "csv")
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_EXPIRES = re.compile(r"[1-9][0-9]{0,11}")
_TAG = re.compile(r"[A-Za-z0-9_-]{43}")


@dataclass(frozen=True)
class LinkKey:
    """The HMAC key for download links."""

    secret: bytes

    @classmethod
    def from_signer(cls, signer: NoteSigner) -> LinkKey:
        return cls(hashlib.sha256(b"runlog download links v1\n" + bytes(signer.signing_key)).digest())

    def _tag(self, trace_id: str, fmt: str, expires: int) -> str:
        message = f"runlog-download/v1\n{trace_id}\n{fmt}\n{expires}\n".encode("ascii")
        return base64.urlsafe_b64encode(hmac.new(self.secret, message, hashlib.sha256).digest()).decode().rstrip("=")

    def sign(self, trace_id: str, fmt: str, *, now: int, seconds: int = DEFAULT_SECONDS) -> tuple[str, int]:
        """The link path (with its query) for `trace_id` in `fmt`, valid `seconds` from `now`, and its expiry."""
        if _TRACE_ID.fullmatch(trace_id) is None:
            raise InvalidInput("trace_id: must be 32 lower-case hex digits", field="trace_id")
        if fmt not in FORMATS:
            raise InvalidInput(f"format: must be one of {', '.join(FORMATS)}", field="format")
        if isinstance(seconds, bool) or not isinstance(seconds, int) or not 1 <= seconds <= MAX_SECONDS:
            raise InvalidInput(f"expires_in: must be 1..{MAX_SECONDS} seconds (7 days)", field="expires_in")
        expires = now + seconds
        return f"/v1/downloads/{trace_id}/{fmt}?expires={expires}&sig={self._tag(trace_id, fmt, expires)}", expires

    def check(self, trace_id: str, fmt: str, expires: str | None, sig: str | None, *, now: int) -> bool:
        """True only for a link this key made for exactly this trace and format that has not expired."""
        if (not isinstance(expires, str) or not isinstance(sig, str) or _EXPIRES.fullmatch(expires) is None
                or _TAG.fullmatch(sig) is None or not isinstance(trace_id, str) or _TRACE_ID.fullmatch(trace_id) is None
                or fmt not in FORMATS):
            return False
        if not hmac.compare_digest(self._tag(trace_id, fmt, int(expires)), sig):
            return False
        return now < int(expires)
