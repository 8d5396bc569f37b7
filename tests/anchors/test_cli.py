"""`runlog anchors status|push|init-postgres`, run as real subprocesses."""

import json
import os
import subprocess
import sys

import psycopg

from appliance.anchors.base import AnchoredCheckpoint
from appliance.anchors.localdir import LocalDirAnchor
from appliance.core.checkpoint import Checkpoint, sign_checkpoint
from appliance.keyfile import load_signer
from tests.anchors.conftest import add_checkpoint


def runlog(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance.cli", "anchors", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **env})


def test_status_and_push_against_a_local_directory_anchor(tmp_path):
    data, anchor_dir = tmp_path / "data", tmp_path / "anchor"
    env = {"RUNLOG_DATA_DIR": str(data), "RUNLOG_ANCHOR_DIR": str(anchor_dir)}
    assert runlog("status", **env).returncode == 1, "no store yet"
    done = subprocess.run([sys.executable, "-m", "appliance.cli", "init"], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=60)
    assert done.returncode == 0, done.stderr
    signer = load_signer(data / "keys" / "log.key")

    def note(size: int, root: bytes) -> str:
        return sign_checkpoint(Checkpoint("localhost/runlog", size, root), signer).decode()

    for size in (1, 2):
        add_checkpoint(data / "runlog.sqlite", size, note(size, bytes(32)))
    pushed = runlog("push", **env)
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout == f"dir:{anchor_dir}: published 2, 0 pending\n"
    status = runlog("status", "--json", **env)
    assert status.returncode == 0, status.stderr
    [row] = json.loads(status.stdout)
    assert (row["anchor"], row["state"], row["pending"], row["last_published_size"]) == \
        (f"dir:{anchor_dir}", "ok", 0, 2)

    # Someone else's checkpoint at size 3 is already in the anchor: a fork.
    LocalDirAnchor(anchor_dir, origin="localhost/runlog").publish(
        AnchoredCheckpoint("localhost/runlog", 3, note(3, b"\x01" * 32)))
    add_checkpoint(data / "runlog.sqlite", 3, note(3, bytes(32)))
    pushed = runlog("push", **env)
    assert pushed.returncode == 1 and "1 failed permanently" in pushed.stdout
    status = runlog("status", **env)
    assert status.returncode == 1
    header, line = status.stdout.splitlines()
    assert header.split()[:3] == ["ANCHOR", "STATE", "PENDING"]
    assert line.split()[1:3] == ["fork", "1"]
    assert "FORK: " in line and "different root" in line


def test_status_without_anchors_says_how_to_configure_them(tmp_path):
    done = runlog("status", "--json", RUNLOG_DATA_DIR=str(tmp_path))
    assert done.returncode == 0 and done.stdout == "[]\n" and "RUNLOG_ANCHOR_DIR" in done.stderr


def test_init_postgres_sets_up_the_table_for_the_role(pg):
    done = runlog("init-postgres", pg["dsn"], "--role", pg["role"], "--table", pg["table"])
    assert done.returncode == 0, done.stderr
    assert f"ok: table public.{pg['table']}" in done.stderr and "may only SELECT and INSERT" in done.stderr
    with psycopg.connect(pg["dsn"]) as conn:
        assert conn.execute("SELECT to_regclass(%s) IS NOT NULL", (pg["table"],)).fetchone() == (True,)
    refused = runlog("init-postgres", pg["dsn"], "--table", "bad;name")
    assert refused.returncode == 1 and "table:" in refused.stderr
