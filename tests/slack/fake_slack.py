"""A stand-in for Slack on 127.0.0.1, a real HTTP server: the Web API's `views.open` and
`views.update` (bot token checked) and response URLs. Every view and message it receives is
checked with slack-sdk's Block Kit models (`validate_json`, and a round trip through the models
that must give the same JSON back, so no field was unknown to them) and Slack's count limits.

`fail(method, ...)` makes the next call of a method answer as Slack does when it refuses.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode

from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from appliance.slack.signing import signature

MESSAGE_BLOCKS = 50
MESSAGE_KEYS = {"text", "blocks", "response_type", "replace_original", "delete_original"}


def check_view(view: dict[str, Any]) -> None:
    """Raise unless `view` is a modal slack-sdk accepts whole (at most 100 blocks, title <= 24)."""
    model = View(**view)
    model.validate_json()
    rebuilt = model.to_dict()  # validates every block and element as well
    if rebuilt != view:
        raise ValueError(f"slack-sdk's View model does not give the same view back: {rebuilt} != {view}")


def check_message(message: dict[str, Any]) -> None:
    """Raise unless `message` is a Block Kit message slack-sdk accepts whole (at most 50 blocks)."""
    unknown = set(message) - MESSAGE_KEYS
    if unknown or not isinstance(message.get("text"), str) or not message["text"]:
        raise ValueError(f"message keys {sorted(message)}: unknown {sorted(unknown)} or no fallback text")
    if message.get("response_type") not in (None, "ephemeral", "in_channel"):
        raise ValueError(f"response_type {message.get('response_type')!r}")
    raw = message.get("blocks", [])
    if not 1 <= len(raw) <= MESSAGE_BLOCKS:
        raise ValueError(f"a message holds 1..{MESSAGE_BLOCKS} blocks, not {len(raw)}")
    parsed = Block.parse_all(raw)
    for block in parsed:
        block.validate_json()
    rebuilt = [block.to_dict() for block in parsed]
    if rebuilt != raw:
        raise ValueError(f"slack-sdk's Block models do not give the same blocks back: {rebuilt} != {raw}")


@dataclass
class Call:
    path: str
    body: dict[str, Any]


@dataclass
class FakeSlack:
    token: str
    calls: list[Call] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    _failures: dict[str, tuple[int, Any, dict[str, str]]] = field(default_factory=dict)

    def start(self) -> FakeSlack:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
                status, answer, headers = fake.answer(self.path, self.headers.get("Authorization"), body)
                data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        return self.base + "/api/"

    def response_url(self, name: str = "T1/1/abc") -> str:
        return f"{self.base}/commands/{name}"

    def fail(self, method: str, status: int, answer: Any, headers: dict[str, str] | None = None) -> None:
        """The next call of `method` ("views.open", "views.update", "response_url") gets this answer."""
        self._failures[method] = (status, answer, headers or {})

    def answer(self, path: str, authorization: str | None, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        method = path.removeprefix("/api/") if path.startswith("/api/") else "response_url"
        self.calls.append(Call(method, body))
        if method in self._failures:
            return self._failures.pop(method)
        try:
            if method in ("views.open", "views.update"):
                if authorization != f"Bearer {self.token}":
                    return 200, {"ok": False, "error": "invalid_auth"}, {}
                check_view(body["view"])
                return 200, {"ok": True, "view": {"id": "V0001", "hash": "h1", **body["view"]}}, {}
            if method == "response_url":
                check_message(body)
                return 200, "ok", {}
        except Exception as error:  # recorded for the test's final check, answered as Slack would
            self.invalid.append(f"{method}: {error}")
            return 200, {"ok": False, "error": "invalid_arguments"}, {}
        return 404, {"ok": False, "error": "unknown_method"}, {}

    def calls_to(self, method: str) -> list[dict[str, Any]]:
        return [call.body for call in self.calls if call.path == method]


def signed(secret: str, fields: dict[str, str], *, timestamp: int) -> tuple[bytes, dict[str, str]]:
    """A form body as Slack sends it and the headers that sign it."""
    body = urlencode(fields).encode()
    return body, {"Content-Type": "application/x-www-form-urlencoded",
                  "X-Slack-Request-Timestamp": str(timestamp),
                  "X-Slack-Signature": signature(secret, str(timestamp), body)}
