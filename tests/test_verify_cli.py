"""`runlog verify --db`, run as a real subprocess: verdicts, exit status, JSON, keys, anchors."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.keyfile import save_verifier
from appliance.store.checkpoints import CheckpointSigners
from tests.store.test_verify_store import CLOCK, LOG, ORIGIN, attacker, build_store, published_anchor


def runlog(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("verify-cli")
    store = root / "runlog.sqlite"
    build_store(store, signers=CheckpointSigners(LOG, CLOCK))
    keys = root / "keys"
    keys.mkdir()
    save_verifier(keys / "log.pub", LOG.verifier())
    save_verifier(keys / "clock.pub", CLOCK.verifier())
    return store, {"RUNLOG_KEYS_DIR": str(keys), "RUNLOG_DATA_DIR": str(root / "data"), "RUNLOG_ORIGIN": ORIGIN}


def test_a_sound_store_verifies_with_exit_status_0(setup) -> None:
    store, env = setup
    done = runlog("verify", "--db", str(store), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("VERIFIED: every check held")
    assert "entries:     700" in done.stdout and "log key read from" in done.stdout
    assert done.stderr == ""  # no progress when stderr is not a terminal


def test_json_output_for_machines(setup) -> None:
    store, env = setup
    done = runlog("verify", "--db", str(store), "--json", "--key", LOG.verifier().to_text(), "--workers", "2",
                  env=env)
    report = json.loads(done.stdout)
    assert done.returncode == 0 and report["ok"] is True and report["first_failure"] is None
    # 700 entries are one chunk: one process does it, whatever --workers allows
    assert (report["entries"], report["workers"], report["log_key"]) == (700, 1, LOG.verifier().to_text())
    assert report["entries_per_second"] > 0 and report["anchors"] is None


def test_a_tampered_store_fails_with_the_first_problem_and_its_seq(setup, tmp_path: Path) -> None:
    store, env = setup
    copy = tmp_path / "runlog.sqlite"
    shutil.copy(store, copy)
    conn = attacker(copy)
    conn.execute("DELETE FROM entries WHERE seq = 10")
    conn.close()
    done = runlog("verify", "--db", str(copy), env=env)
    assert done.returncode == 1
    assert "FAILED" in done.stdout and "first: entries: missing at seq 10:" in done.stdout
    report = json.loads(runlog("verify", "--db", str(copy), "--json", env=env).stdout)
    assert report["first_failure"]["seq"] == 10 and report["first_failure"]["reason"] == "missing"


def test_the_key_decides(setup, tmp_path: Path) -> None:
    store, env = setup
    from appliance.core.keys import generate_signer

    stranger = generate_signer(ORIGIN, seed=b"\x77" * 32).verifier()
    key_file = tmp_path / "stranger.pub"
    save_verifier(key_file, stranger)
    done = runlog("verify", "--db", str(store), "--key", str(key_file), env=env)
    assert done.returncode == 1 and "checkpoints: signature" in done.stdout
    assert "log key read from" not in done.stdout  # the auditor's own key, not the machine's


def test_anchors_from_the_settings(setup, tmp_path: Path) -> None:
    store, env = setup
    directory = tmp_path / "anchor"
    published_anchor(store, directory)
    anchored = {**env, "RUNLOG_ANCHOR_DIR": str(directory)}
    done = runlog("verify", "--db", str(store), "--anchors", env=anchored)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"anchor:      dir:{directory}: " in done.stdout
    copy = tmp_path / "runlog.sqlite"
    shutil.copy(store, copy)
    conn = attacker(copy)  # roll back: drop the tail and every trace of it the store holds
    conn.execute("DELETE FROM entries WHERE seq >= 650")
    for table in ("daily_roots", "anchor_outbox", "checkpoints"):
        conn.execute(f"DELETE FROM {table} WHERE size > 650")
    conn.close()
    done = runlog("verify", "--db", str(copy), "--anchors", env=anchored)
    assert done.returncode == 1 and "first: anchors: truncated at seq 650" in done.stdout
    assert runlog("verify", "--db", str(store), "--anchors", env=env).returncode == 1  # none configured


def test_it_cannot_start_without_a_store_or_a_key(setup, tmp_path: Path) -> None:
    store, env = setup
    for args, message in ((("verify",), "give --db PATH"),
                          (("verify", "--db", str(tmp_path / "none.sqlite")), "no store at"),
                          (("verify", "--db", str(store), "--key", "not a key"), "--key:")):
        done = runlog(*args, env=env)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
    done = runlog("verify", "--db", str(store), env={**env, "RUNLOG_KEYS_DIR": str(tmp_path)})
    assert done.returncode == 2 and "no log key" in done.stderr


def test_progress_is_one_line_that_ends_when_done(capsys: pytest.CaptureFixture[str]) -> None:
    from appliance.commands.verify import _progress

    _progress(65_536, 1_000_000)
    _progress(1_000_000, 1_000_000)
    err = capsys.readouterr().err
    assert err == "\rverifying: 65,536 of 1,000,000 entries (6%)\rverifying: 1,000,000 of 1,000,000 entries (100%)\n"
