"""The `runlog` command, run as a real subprocess."""

import os
import subprocess
import sys

from appliance.cli import build_parser
from appliance.core.keys import generate_signer
from appliance.core.sequencer import Event
from appliance.store.writer import AppendRequest, Writer


def runlog(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})


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


def test_runs_show_prints_every_event_of_a_run_longer_than_a_page(tmp_path):
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    writer = Writer(tmp_path / "runlog.sqlite", origin="localhost/runlog", signer=generate_signer("localhost/runlog"))
    writer.start()
    try:
        for start in range(0, 2_503, 1_000):  # three requests: 1,000 + 1,000 + 503 events
            writer.append_sync(AppendRequest([Event(trace_id=trace_id, step=f"step-{i}", status="info",
                                                    ts="2026-11-29T00:00:00Z", source="cli-test")
                                              for i in range(start, min(start + 1_000, 2_503))], "cli-test"))
    finally:
        writer.stop()
    done = runlog("runs", "show", trace_id, RUNLOG_DATA_DIR=str(tmp_path))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"run {trace_id}: running, 2503 steps")
    assert [line.split()[0] for line in lines[1:]] == [str(i) for i in range(2_503)]
    assert lines[-1].split()[-1] == "step-2502"


def test_runs_list_filters_by_source_and_start_time(tmp_path):
    writer = Writer(tmp_path / "runlog.sqlite", origin="localhost/runlog", signer=generate_signer("localhost/runlog"))
    writer.start()
    try:
        for n, source in enumerate(["ci", "cron", "ci"]):
            writer.append_sync(AppendRequest([Event(trace_id=f"{n + 1:032x}", step="start", status="started",
                                                    ts="2026-11-29T00:00:00Z", source=source)], source))
    finally:
        writer.stop()
    env = {"RUNLOG_DATA_DIR": str(tmp_path)}
    listed = runlog("runs", "list", "--source", "ci", **env)
    assert listed.returncode == 0, listed.stderr
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == [f"{3:032x}", f"{1:032x}"]
    assert runlog("runs", "list", "--since", "2000-01-01T00:00:00Z", "--until", "2000-01-02T00:00:00Z",
                  **env).stdout == ""
    assert len(runlog("runs", "list", "--since", "2000-01-01T00:00:00+01:00", **env).stdout.splitlines()) == 3
    refused = runlog("runs", "list", "--since", "yesterday", **env)
    assert refused.returncode == 1 and "since" in refused.stderr


def test_the_one_process_server_freezes_what_start_up_built(tmp_path):
    import gc

    from litestar.testing import TestClient

    from appliance.cli import one_process_app
    from appliance.settings import Settings

    gc.unfreeze()
    settings = Settings.from_env({"RUNLOG_DATA_DIR": str(tmp_path), "RUNLOG_ADMIN_TOKEN": "a" * 32})
    try:
        with TestClient(one_process_app(settings)) as client:
            assert gc.get_freeze_count() > 0  # frozen once the lifespan had opened the store
            assert client.get("/healthz").status_code == 200
    finally:
        gc.unfreeze()
