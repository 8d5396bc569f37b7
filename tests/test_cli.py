"""The `runlog` command, run as a real subprocess."""

import subprocess
import sys

from appliance.cli import build_parser


def runlog(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], capture_output=True, text=True, timeout=60)


def test_demo_signs_a_checkpoint_and_verifies_both_proofs():
    done = runlog("demo")
    assert done.returncode == 0, done.stderr
    assert "\n\n— runlog.demo/log " in done.stdout
    assert "inclusion proof for entry 2 (2 hashes) verified" in done.stdout
    assert "consistency proof from size 2 to 4 (1 hashes) verified" in done.stdout


def test_every_command_has_help_text():
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    assert commands.choices
    for name, sub in commands.choices.items():
        assert sub.description, f"runlog {name} has no description"
        assert any(c.dest == name and c.help for c in commands._choices_actions), f"runlog {name} has no help"


def test_unknown_command_fails_with_usage():
    done = runlog("frobnicate")
    assert done.returncode == 2 and "usage: runlog" in done.stderr
