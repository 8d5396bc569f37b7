"""The bodies Slack posts, read into plain values: a slash command's form fields, and the
`block_actions` interaction inside an interactivity request's `payload` field.

Only signed bodies reach these parsers, but they are still read strictly: anything unexpected
raises `SlackPayloadError` (the route answers 400) rather than a `KeyError` deep in a handler.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from appliance.core.errors import InvalidInput

MAX_TEXT_CHARS = 4000
_USER_ID = re.compile(r"[A-Z0-9]{1,32}")


class SlackPayloadError(InvalidInput):
    """A signed Slack request whose body is not the documented shape."""


def form_fields(body: bytes) -> dict[str, str]:
    """The fields of an `application/x-www-form-urlencoded` body; a field given twice is refused."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body),
                          errors="strict", max_num_fields=64)
    except (UnicodeDecodeError, ValueError) as error:
        raise SlackPayloadError(f"body is not a form: {error.__class__.__name__}", field="body") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise SlackPayloadError(f"{name}: given more than once", field=name)
        fields[name] = value
    return fields


def is_ssl_check(fields: dict[str, str]) -> bool:
    """Slack's certificate probe (`ssl_check=1`): answer 200 and do nothing else."""
    return fields.get("ssl_check") == "1"


@dataclass(frozen=True)
class SlashCommand:
    text: str
    user_id: str | None
    response_url: str | None


def slash_command(fields: dict[str, str]) -> SlashCommand:
    text = fields.get("text", "")
    if len(text) > MAX_TEXT_CHARS:
        raise SlackPayloadError(f"text: longer than {MAX_TEXT_CHARS} characters", field="text")
    return SlashCommand(text=text, user_id=_user_id(fields.get("user_id")), response_url=fields.get("response_url"))


@dataclass(frozen=True)
class BlockAction:
    """One button press: which button (`action_id`, `value`), and where to answer: `trigger_id`
    to open a modal, `response_url` (messages only), `view_id`/`view_hash` (inside a modal)."""

    action_id: str
    value: str | None
    user_id: str | None
    trigger_id: str | None
    response_url: str | None
    view_id: str | None
    view_hash: str | None


def _user_id(value: Any) -> str | None:
    return value if isinstance(value, str) and _USER_ID.fullmatch(value) else None


def _text(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) and value else None


def interaction(fields: dict[str, str]) -> tuple[str, BlockAction | None]:
    """(interaction type, the button press when the type is `block_actions`) from the form fields."""
    try:
        payload = json.loads(fields["payload"])
    except KeyError:
        raise SlackPayloadError("payload: missing", field="payload") from None
    except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        raise SlackPayloadError("payload: not JSON", field="payload") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        raise SlackPayloadError("payload: not an object with a type", field="payload")
    kind = payload["type"]
    if kind != "block_actions":
        return kind, None
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        raise SlackPayloadError("payload.actions: must be a non-empty list of actions", field="actions")
    action = actions[0]
    action_id = _text(action, "action_id")
    if action_id is None:
        raise SlackPayloadError("payload.actions[0].action_id: missing", field="actions")
    value = action.get("value")
    user = payload.get("user")
    view = payload.get("view") if isinstance(payload.get("view"), dict) else {}
    return kind, BlockAction(
        action_id=action_id, value=value if isinstance(value, str) else None,
        user_id=_user_id(user.get("id")) if isinstance(user, dict) else None,
        trigger_id=_text(payload, "trigger_id"), response_url=_text(payload, "response_url"),
        view_id=_text(view, "id"), view_hash=_text(view, "hash"))
