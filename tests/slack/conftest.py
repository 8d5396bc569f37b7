"""One appliance for the Slack tests: the real app (Litestar TestClient), a real SQLite store
written by the real Writer, a local-directory anchor, and the fake Slack on 127.0.0.1.

Runs: ONE (1 step, succeeded), HUNDRED (100 steps, two failed: step 41 and the last), LONG
(5,000 steps, still open), six one-step runs, two runs sharing an 8-hex prefix, and HOSTILE (step
names and attrs that try Slack markup), the most recent.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from litestar.testing import TestClient

from appliance.core.sequencer import Event
from appliance.keyfile import load_signer
from appliance.service import init_appliance
from appliance.settings import Settings
from appliance.store.writer import AppendRequest, Writer
from appliance.web.app import create_app
from tests.slack.fake_slack import FakeSlack, check_message, signed

SECRET = "slack-signing-secret-for-the-tests"
BOT_TOKEN = "xoxb-test-bot-token"
PUBLIC_URL = "https://runlog.example"
ONE = "11111111aaaa4bbb8ccc000000000001"
HUNDRED = "22222222aaaa4bbb8ccc000000000100"
LONG = "33333333aaaa4bbb8ccc000000005000"
TWIN_A = "abcdef12aaaa4bbb8ccc00000000000a"
TWIN_B = "abcdef12bbbb4bbb8ccc00000000000b"
HOSTILE = "44444444aaaa4bbb8ccc0000000000ff"
HOSTILE_STEP = "<!channel> deploy & <https://evil.example|click me> " + "x" * 140


def _event(trace_id: str, step: str, status: str, *, final: bool = False, attrs: dict | None = None) -> Event:
    return Event(trace_id=trace_id, step=step, status=status, ts="2026-11-28T09:00:00Z", source="ci",
                 final=final, attrs=attrs or {})


def _runs() -> list[list[Event]]:
    hundred = [_event(HUNDRED, f"step-{i}", "failed" if i == 40 else "info", attrs={"i": i}) for i in range(99)]
    hundred.append(_event(HUNDRED, "step-99", "failed", final=True, attrs={"error": "exit 1"}))
    long = [_event(LONG, f"item-{i}", "info", attrs={"n": i}) for i in range(5000)]
    hostile = [_event(HOSTILE, HOSTILE_STEP, "failed", attrs={"log": "`rm -rf` <@U123> " + "y" * 400})]
    return [[_event(ONE, "only step", "succeeded", final=True)], hundred,
            *(long[i:i + 1000] for i in range(0, 5000, 1000)),
            *([_event(f"66666666aaaa4bbb8ccc0000000000{n:02x}", "short", "succeeded", final=True)] for n in range(6)),
            [_event(TWIN_A, "a", "info")], [_event(TWIN_B, "b", "info")], hostile]


def build_settings(data_dir: Path, **extra: str) -> Settings:
    env = {"RUNLOG_DATA_DIR": str(data_dir), "RUNLOG_SYNCHRONOUS": "NORMAL", "RUNLOG_PUBLIC_URL": PUBLIC_URL,
           "RUNLOG_SLACK_SIGNING_SECRET": SECRET, **extra}
    settings = Settings.from_env(env)
    init_appliance(settings)
    return settings


def write_runs(settings: Settings, runs: list[list[Event]]) -> None:
    writer = Writer(settings.db_path, origin=settings.origin, signer=load_signer(settings.keys_dir / "log.key"),
                    synchronous="NORMAL")
    writer.start()
    try:
        for events in runs:
            writer.append_sync(AppendRequest(events, "ci"))
    finally:
        writer.stop()


@dataclass
class SlackApp:
    """The running app and the fake Slack, with helpers that send what Slack sends."""

    client: TestClient
    fake: FakeSlack

    def post(self, path: str, fields: dict[str, str], *, age: int = 0) -> object:
        body, headers = signed(SECRET, fields, timestamp=int(time.time()) - age)
        return self.client.post(path, content=body, headers=headers)

    def command(self, text: str) -> dict:
        """`/what-happened text`: the 200 reply, checked as a Block Kit message."""
        response = self.post("/slack/commands", command_fields(text, self.fake.response_url()))
        assert response.status_code == 200, response.text
        message = response.json()
        check_message(message)
        return message

    def press(self, action_id: str, value: str | None = None, *, view: dict | None = None,
              fresh_trigger: bool = True) -> object:
        action: dict = {"action_id": action_id, "block_id": "b", "type": "button", "action_ts": "1.2"}
        if value is not None:
            action["value"] = value
        payload: dict = {"type": "block_actions", "user": {"id": "U2CERLKJA", "username": "roadrunner"},
                         "api_app_id": "A1", "token": "legacy", "actions": [action]}
        if fresh_trigger:
            payload["trigger_id"] = trigger_id()
        if view is None:
            payload["container"] = {"type": "message", "message_ts": "1.1", "channel_id": "C1", "is_ephemeral": True}
            payload["response_url"] = self.fake.response_url("T1/2/press")
        else:
            payload["container"] = {"type": "view", "view_id": view["id"]}
            payload["view"] = view
        return self.post("/slack/interactivity", {"payload": json.dumps(payload)})


_TRIGGERS = itertools.count(1)


def trigger_id() -> str:
    """A fresh trigger_id: Slack gives every command and press its own, so no two bodies are alike."""
    return f"398738663015.47445629121.{next(_TRIGGERS):032x}"


def command_fields(text: str, response_url: str) -> dict[str, str]:
    """A slash command's form fields, as Slack documents them."""
    return {"token": "legacy-verification-token", "team_id": "T1DC2JH3J", "team_domain": "testteamnow",
            "channel_id": "G8PSS9T3V", "channel_name": "foobar", "user_id": "U2CERLKJA", "user_name": "roadrunner",
            "command": "/what-happened", "text": text, "api_app_id": "A1", "response_url": response_url,
            "trigger_id": trigger_id()}


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeSlack]:
    slack = FakeSlack(BOT_TOKEN).start()
    yield slack
    slack.stop()


@pytest.fixture(scope="session")
def slack(tmp_path_factory, fake) -> Iterator[SlackApp]:
    root = tmp_path_factory.mktemp("slack")
    settings = build_settings(root / "data", RUNLOG_SLACK_BOT_TOKEN=BOT_TOKEN, RUNLOG_SLACK_API_URL=fake.api_url,
                              RUNLOG_ANCHOR_DIR=str(root / "anchor"))
    write_runs(settings, _runs())
    with TestClient(create_app(settings)) as client:
        yield SlackApp(client, fake)
    assert fake.invalid == [], fake.invalid


@pytest.fixture
def small_slack(tmp_path, fake):
    """A second appliance holding only ONE, made with extra settings: `with small_slack(**env) as app`."""

    @contextmanager
    def make(**extra: str) -> Iterator[SlackApp]:
        settings = build_settings(tmp_path / "data", RUNLOG_SLACK_API_URL=fake.api_url, **extra)
        write_runs(settings, [[_event(ONE, "only step", "succeeded", final=True)]])
        with TestClient(create_app(settings)) as client:
            yield SlackApp(client, fake)

    return make
