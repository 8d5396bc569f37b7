"""`POST /slack/commands` (the `/what-happened` slash command) and `POST /slack/interactivity`
(its buttons). No bearer token: Slack's request signature is the credential.

Every request is checked first (signing v0 with `RUNLOG_SLACK_SIGNING_SECRET`, five-minute
window, each signature accepted once); a refusal is a bare 401 with an empty body, whatever the
reason. Slack's `ssl_check` probe gets an empty 200 without a signature, as Slack's Bolt answers
it: it asks nothing and is told nothing. A signed body that is not Slack's documented shape is a
400. Past that, every answer is a 200: a summary, or a friendly message, never a 5xx, because
Slack would show the person only "dispatch_failed".
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from litestar import Litestar, Request, Response, post
from litestar.openapi import ResponseSpec
from litestar.params import RawBody

from appliance.service import Appliance
from appliance.slack import blocks, payloads
from appliance.slack.actions import handle_action, tell
from appliance.slack.answers import answer_command
from appliance.slack.payloads import SlackPayloadError
from appliance.slack.replay import ReplayGuard
from appliance.slack.signing import SlackSignatureError, verify_request
from appliance.slack.web_api import SlackWebApi
from appliance.web.errors import error_response
from appliance.web.schemas import ErrorOut

log = logging.getLogger("appliance.slack")

T = TypeVar("T")
COMMAND_BODY_BYTES = 64 * 1024
INTERACTIVITY_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class SlackState:
    """What the Slack routes keep between requests: seen signatures and the Web API client."""

    replay: ReplayGuard
    api: SlackWebApi


@asynccontextmanager
async def slack_lifespan(app: Litestar) -> AsyncIterator[None]:
    """Opens the Slack Web API client; runs after the lifespan that put the appliance on `app.state`."""
    settings = app.state.appliance.settings
    if not settings.slack_signing_secret:
        log.info("RUNLOG_SLACK_SIGNING_SECRET is not set: /slack/* refuses every request")
    api = SlackWebApi(settings.slack_api_url, settings.slack_bot_token)
    # An HTTP worker process shares the primary's memory of signatures (appliance.workers.remote).
    app.state.slack = SlackState(getattr(app.state, "replay_guard", None) or ReplayGuard(), api)
    try:
        yield
    finally:
        api.close()


def _unauthorized() -> Response[bytes]:
    return Response(b"", status_code=401, media_type="text/plain")


def _is_probe(body: bytes) -> bool:
    try:
        return payloads.is_ssl_check(payloads.form_fields(body))
    except SlackPayloadError:
        return False


def _signed_request(request: Request[Any, Any, Any], body: bytes,
                    read: Callable[[dict[str, str]], T]) -> T | Response[Any]:
    """`read` of the signed request's form fields, or the response to send instead (200 to the
    probe, 401 when not signed, 400 when signed but not the documented shape)."""
    if len(body) <= 256 and _is_probe(body):
        return Response(b"", status_code=200, media_type="text/plain")
    appliance: Appliance = request.app.state.appliance
    state: SlackState = request.app.state.slack
    now = time.time()
    try:
        signature = verify_request(appliance.settings.slack_signing_secret, request.headers.multi_items(), body,
                                   now=now)
        state.replay.check(signature, now=now)
    except SlackSignatureError as error:
        log.warning("Slack request refused on %s: %s", request.url.path, error)
        return _unauthorized()
    try:
        return read(payloads.form_fields(body))
    except SlackPayloadError as error:
        return error_response(400, "invalid_input", str(error), error.field)


RESPONSES = {
    400: ResponseSpec(ErrorOut, description="Signed, but the body is not the form Slack documents",
                      generate_examples=False),
    401: ResponseSpec(None, description="Not signed by Slack with RUNLOG_SLACK_SIGNING_SECRET within five minutes, "
                                        "or a replay; the body is empty"),
}


def _reference() -> str:
    return secrets.token_hex(6)


@post("/slack/commands", sync_to_thread=True, status_code=200, request_max_body_size=COMMAND_BODY_BYTES,
      responses=RESPONSES, summary="Slack slash command /what-happened (Slack request signature, no bearer token)")
def slack_command(request: Request[Any, Any, Any], body: RawBody) -> Response[Any]:
    command = _signed_request(request, body, payloads.slash_command)
    if isinstance(command, Response):
        return command
    try:
        message = answer_command(request.app.state.appliance, command.text)
    except Exception:  # the person gets a friendly answer; the log gets the traceback
        reference = _reference()
        log.exception("Slack command %r failed (reference %s)", command.text[:100], reference)
        message = blocks.problem(f"The appliance could not answer just now (reference `{reference}`). "
                                 "Try again in a moment; if it persists, its log says why.")
    return Response(message, status_code=200, media_type="application/json")


@post("/slack/interactivity", sync_to_thread=True, status_code=200, request_max_body_size=INTERACTIVITY_BODY_BYTES,
      responses=RESPONSES,
      summary="Slack interactivity: the buttons of /what-happened (Slack request signature, no bearer token)")
def slack_interactivity(request: Request[Any, Any, Any], body: RawBody) -> Response[Any]:
    interaction = _signed_request(request, body, payloads.interaction)
    if isinstance(interaction, Response):
        return interaction
    _kind, action = interaction
    if action is not None:
        state: SlackState = request.app.state.slack
        try:
            handle_action(request.app.state.appliance, state.api, action)
        except Exception:
            reference = _reference()
            log.exception("Slack action %s failed (reference %s)", action.action_id, reference)
            tell(state.api, action,
                 blocks.problem(f"The appliance could not do that just now (reference `{reference}`)."))
    return Response(b"", status_code=200, media_type="text/plain")


SLACK_ROUTES = [slack_command, slack_interactivity]
