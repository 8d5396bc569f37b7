"""slack/manifest.yml declares what the appliance serves: the command, its routes, the scope."""

from pathlib import Path

import yaml

from appliance.slack.blocks import COMMAND
from appliance.web.routes_slack import slack_command, slack_interactivity

MANIFEST = Path(__file__).resolve().parents[2] / "slack" / "manifest.yml"
PLACEHOLDER = "https://runlog.example.com"


def test_manifest_matches_the_routes_and_needs_only_the_commands_scope():
    manifest = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    (command,) = manifest["features"]["slash_commands"]
    assert command["command"] == COMMAND and command["usage_hint"]
    assert command["url"] == PLACEHOLDER + next(iter(slack_command.paths))
    assert manifest["settings"]["interactivity"] == {
        "is_enabled": True, "request_url": PLACEHOLDER + next(iter(slack_interactivity.paths))}
    assert manifest["oauth_config"]["scopes"] == {"bot": ["commands"]}
    assert len(manifest["display_information"]["name"]) <= 35
