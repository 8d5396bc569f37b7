"""The crash suite's judgement of a killed `runlog backup` (reliability/crash.py, backup_outcome),
against a real server and real backups: a kill that lands after the backup named its verified copy
and before the process exited leaves a whole backup, which is fine (the suite used to call any
file under DEST after a kill a problem, and did once); a file under DEST that does not verify is
always a problem; a partial copy may only be left under its temporary name."""

import signal
import subprocess
import sys

import httpx
import pytest

from reliability.crash import VERIFIED_BACKUPS, backup_outcome
from tests.e2e.server import ADMIN_TOKEN, Server

# `runlog backup DEST`, then SIGKILL from within before the process exits: the kill landing just
# after the copy got its name, which a timer hits only by chance.
KILLED_AT_EXIT = ("import os, signal, sys; from appliance.cli import main; main(['backup', sys.argv[1]]); "
                  "os.kill(os.getpid(), signal.SIGKILL)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("crash-backup") / "data").start()
    try:
        events = [{"trace_id": f"{n + 1:032x}", "step": "build", "status": "info"} for n in range(20)]
        answer = httpx.post(f"{server.url}/v1/events", json=events, timeout=30,
                            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert answer.status_code == 201, answer.text
        yield server
    finally:
        server.kill()
        server.log.close()


@pytest.fixture(scope="module")
def whole(server, tmp_path_factory):
    """A backup that completed and verifies."""
    path = tmp_path_factory.mktemp("backups") / "whole.sqlite"
    done = server.runlog("backup", str(path))
    assert done.returncode == 0, done.stderr
    return path


def verify(server):
    return lambda path: server.runlog("verify", "--db", str(path))


def test_a_backup_killed_after_it_named_its_verified_copy_is_a_whole_backup(server, tmp_path):
    dest = tmp_path / "backup.sqlite"
    done = subprocess.run([sys.executable, "-c", KILLED_AT_EXIT, str(dest)], env=server.env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL and dest.exists(), done.stderr
    what, problem = backup_outcome(dest, done.returncode, killed=True, stderr=done.stderr, verify=verify(server))
    assert problem is None and what in VERIFIED_BACKUPS


def test_a_file_under_the_backups_name_that_does_not_verify_is_a_problem(server, whole, tmp_path):
    cut = tmp_path / "cut.sqlite"
    cut.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    for returncode, killed in ((-signal.SIGKILL, True), (0, False)):
        _, problem = backup_outcome(cut, returncode, killed=killed, stderr="", verify=verify(server))
        assert problem is not None and "does not verify" in problem


def test_a_backup_that_fails_on_its_own_must_leave_no_file_under_its_name(server, whole, tmp_path):
    _, problem = backup_outcome(whole, 1, killed=False, stderr="boom", verify=verify(server))
    assert problem is not None and "left a file under its name" in problem
    _, problem = backup_outcome(tmp_path / "none.sqlite", 1, killed=False, stderr="boom", verify=verify(server))
    assert problem is not None and "failed when the server was killed" in problem


def test_a_backup_killed_while_copying_leaves_only_its_temporary_file(server, tmp_path):
    dest = tmp_path / "backup.sqlite"
    what, problem = backup_outcome(dest, -signal.SIGKILL, killed=True, stderr="", verify=verify(server))
    assert (what, problem) == ("backup killed before copying", None)
    (tmp_path / ".backup.sqlite.4242.partial").write_bytes(b"SQLite format 3\0")
    what, problem = backup_outcome(dest, -signal.SIGKILL, killed=True, stderr="", verify=verify(server))
    assert (what, problem) == ("backup killed while writing its copy", None)
