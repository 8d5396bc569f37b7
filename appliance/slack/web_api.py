"""The few Slack Web API calls the appliance makes, over httpx with a short timeout.

`views.open` and `views.update` go to `RUNLOG_SLACK_API_URL` with the bot token
(`RUNLOG_SLACK_BOT_TOKEN`); messages to a `response_url` need no token. Slack answers HTTP 200
with `{"ok": false, "error": ...}` for most refusals and 429 with `Retry-After` when rate
limited; every failure, ours or Slack's, raises `SlackApiError` whose `code` is Slack's error
string (`expired_trigger_id`, `ratelimited`, ...) or one of ours (`timeout`, `unreachable`,
`http_<status>`, `not_configured`, `bad_response_url`).

A `response_url` comes from a signed request, but it is still only followed to Slack's hooks
host or to the configured API's own host, so the appliance never posts where a request says.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx

from appliance.core.errors import RunlogError

TIMEOUT_SECONDS = 2.5  # Slack's trigger_id lives 3 s; an answer later than that is no use
HOOKS_ORIGIN = ("https", "hooks.slack.com")


class SlackApiError(RunlogError):
    """A Slack Web API call failed; `code` says how, `retry_after` (seconds) when rate limited."""

    def __init__(self, method: str, code: str, *, retry_after: int | None = None) -> None:
        super().__init__(f"Slack {method}: {code}" + (f" (retry after {retry_after} s)" if retry_after else ""))
        self.method = method
        self.code = code
        self.retry_after = retry_after


def _retry_after(response: httpx.Response) -> int | None:
    text = response.headers.get("retry-after", "")
    return int(text) if text.isascii() and text.isdigit() and len(text) < 7 else None


class SlackWebApi:
    """Calls to Slack for one bot token. Thread-safe (one pooled httpx client); `close()` when done."""

    def __init__(self, base_url: str, bot_token: str | None, *, timeout: float = TIMEOUT_SECONDS) -> None:
        self._base_url = base_url if base_url.endswith("/") else base_url + "/"
        self._token = bot_token
        parts = urlsplit(self._base_url)
        self._api_origin = (parts.scheme, parts.netloc.lower())
        self._client = httpx.Client(timeout=timeout, follow_redirects=False)

    def close(self) -> None:
        self._client.close()

    def _post(self, method: str, url: str, *, json: dict[str, Any], token: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            response = self._client.post(url, json=json, headers=headers)
        except httpx.TimeoutException:
            raise SlackApiError(method, "timeout") from None
        except httpx.HTTPError:
            raise SlackApiError(method, "unreachable") from None
        if response.status_code == 429:
            raise SlackApiError(method, "ratelimited", retry_after=_retry_after(response))
        return response

    def call(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Call Web API `method` with a JSON body; return Slack's answer when `ok`."""
        if not self._token:
            raise SlackApiError(method, "not_configured")
        response = self._post(method, self._base_url + method, json=payload, token=self._token)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise SlackApiError(method, f"http_{response.status_code}")
        if answer.get("ok") is not True:
            error = answer.get("error")
            raise SlackApiError(method, error if isinstance(error, str) and error else f"http_{response.status_code}")
        return answer

    def views_open(self, trigger_id: str, view: dict[str, Any]) -> dict[str, Any]:
        return self.call("views.open", {"trigger_id": trigger_id, "view": view})

    def views_update(self, view_id: str, view: dict[str, Any], *, view_hash: str | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {"view_id": view_id, "view": view}
        if view_hash:
            payload["hash"] = view_hash  # Slack refuses the update if the modal changed meanwhile
        return self.call("views.update", payload)

    def respond(self, response_url: str, message: dict[str, Any]) -> None:
        """Post `message` through a slash command's or interaction's `response_url`."""
        parts = urlsplit(response_url)
        origin = (parts.scheme, parts.netloc.lower())
        if origin != HOOKS_ORIGIN and origin != self._api_origin:
            raise SlackApiError("response_url", "bad_response_url")
        response = self._post("response_url", response_url, json=message, token=None)
        if response.status_code != 200:
            text = response.text.strip()[:40]
            raise SlackApiError("response_url", text if text.isidentifier() else f"http_{response.status_code}")
