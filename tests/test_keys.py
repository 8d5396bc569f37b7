"""Key rotation against a real store: bundles from before and after a rotation verify with the
published keys, the handover checkpoint carries both signatures, a retired key used after its
window is refused, the key history is append-only, a rotation interrupted between its steps is
finished, RUNLOG_SIGNING_KEY_FILE, GET /v1/keys, and `runlog keys show|rotate` as subprocesses."""

import json
import os
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from freezegun import freeze_time
from litestar.testing import TestClient

from appliance import key_custody
from appliance.core.bundle_verify import BundleError, verify_bundle
from appliance.core.checkpoint import Checkpoint, open_checkpoint
from appliance.core.key_history import TrustedKeys, format_seconds
from appliance.core.keys import NoteVerifier, generate_signer
from appliance.core.note import sign_note
from appliance.core.sequencer import Event
from appliance.key_custody import KeysBusy, open_keys, rotate_keys, signing_lock
from appliance.keyfile import KeyFileError, save_signer, save_verifier
from appliance.service import init_appliance
from appliance.settings import Settings
from appliance.store import checkpoints as cps
from appliance.store import keyring
from appliance.store.db import connect
from appliance.store.errors import StoreError
from appliance.store.export import export_bundle
from appliance.store.writer import AppendRequest, Writer
from appliance.verify_store import Keys, verify_store
from appliance.web.app import create_app

ORIGIN = "runlog.test/keys"
START = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


def trace(n: int) -> str:
    return f"{n:032x}"


class Log:
    """A store made by init_appliance on a hand-moved clock; keys loaded as the appliance loads them."""

    def __init__(self, data_dir: Path, **settings) -> None:
        self.settings = Settings(data_dir=data_dir, keys_dir=data_dir / "keys", origin=ORIGIN, synchronous="NORMAL",
                                 **settings)
        with freeze_time(START):
            init_appliance(self.settings)
        self.clock = START + timedelta(hours=1)
        self.conn = connect(self.settings.db_path, synchronous="NORMAL")
        self.load()

    def load(self) -> None:
        self.signers = open_keys(self.settings.keys_dir, ORIGIN, self.conn,
                                 signing_key_file=self.settings.signing_key_file)

    def run(self, trace_id: str, steps: int) -> None:
        writer = Writer(self.settings.db_path, origin=ORIGIN, signer=self.signers.log, clock=lambda: self.clock,
                        synchronous="NORMAL")
        writer.start()
        writer.append_sync(AppendRequest([
            Event(trace_id=trace_id, step=f"step {n}", status="succeeded" if n == steps - 1 else "info",
                  ts="2026-11-20T12:00:00Z", source="ci", final=n == steps - 1) for n in range(steps)], "ci"))
        writer.stop()

    def cut(self) -> str:
        self.clock += timedelta(minutes=5)
        checkpoint, created = cps.cut_checkpoint(self.conn, self.signers, now=self.clock)
        assert created
        return checkpoint.note

    def bundle(self, trace_id: str) -> bytes:
        made = export_bundle(self.conn, trace_id, signer=self.signers.log,
                             clock_key=self.signers.clock.verifier().to_text(), exported_at=format_seconds(0))
        return json.dumps(made).encode()

    def rotate(self, **options) -> key_custody.Rotation:
        self.clock += timedelta(minutes=5)
        return rotate_keys(self.settings.keys_dir, self.settings.db_path, ORIGIN, now=self.clock,
                           signing_key_file=self.settings.signing_key_file, synchronous="NORMAL", **options)

    def published(self) -> TrustedKeys:
        return keyring.trusted_keys(self.conn)


@pytest.fixture
def log(tmp_path):
    made = Log(tmp_path)
    yield made
    made.conn.close()


def log_lines(note: str) -> list[str]:
    return [line for line in note.split("\n\n")[-1].splitlines() if line.startswith(f"\u2014 {ORIGIN} ")]


def test_bundles_before_and_after_a_rotation_verify_with_the_published_keys(log):
    log.run(trace(1), 3)
    log.cut()
    before = log.bundle(trace(1))
    old = log.signers
    rotation = log.rotate()
    assert rotation.old["log"] == old.log.verifier().to_text() and rotation.closed_at is None
    keys_dir = log.settings.keys_dir
    assert (keys_dir / "log.retiring.key").exists() and (keys_dir / "clock.retiring.key").exists()
    assert not list(keys_dir.glob("*.next.*"))
    log.load()
    assert log.signers.log.verifier().to_text() == rotation.new["log"] == (keys_dir / "log.pub").read_text().strip()
    assert log.signers.retiring_log.verifier() == old.log.verifier()

    log.run(trace(2), 2)
    handover = log.cut()
    assert len(log_lines(handover)) == 2  # signed by the new and the old log key, one note
    for key in (old.log, log.signers.log):
        assert open_checkpoint(handover, key.verifier(), origin=ORIGIN).checkpoint.size == 5
    published = log.published()
    old_window = next(w for w in published.log if w.verifier == old.log.verifier())
    assert old_window.valid_until == int(log.clock.timestamp())  # the handover's time ends the old window
    log.signers = key_custody.discard_retired(keys_dir, log.conn, log.signers)
    assert log.signers.retiring_log is None and not (keys_dir / "log.retiring.key").exists()
    after = log.bundle(trace(2))

    assert verify_bundle(before, keys=published).log_key == old.log.verifier().to_text()
    assert verify_bundle(after, keys=published).log_key in {w.verifier.to_text() for w in published.log}
    log.run(trace(3), 1)
    assert len(log_lines(log.cut())) == 1  # after the handover, the new key alone
    assert verify_store(log.settings.db_path, Keys.from_history(published), workers=1).ok
    only_new = Keys(log.signers.log.verifier(), log.signers.clock.verifier())
    assert not verify_store(log.settings.db_path, only_new, workers=1).ok  # the old checkpoints need the old key


def test_a_bundle_signed_by_a_retired_key_after_its_window_is_rejected(log):
    log.run(trace(1), 2)
    log.cut()
    old = log.signers
    log.rotate()
    log.load()
    log.run(trace(2), 2)
    log.cut()  # the handover: the old keys' windows end here
    bundle = json.loads(log.bundle(trace(2)))
    # Whoever kept the old keys signs the same tree an hour after the old window ended.
    body = bundle["checkpoint"].split("\n\n")[0] + "\n"
    later = int((log.clock + timedelta(hours=1)).timestamp())
    bundle["checkpoint"] = sign_note(body, [old.log, old.clock.at(later)]).decode()
    with pytest.raises(BundleError, match="retired clock key was used after its window ended"):
        verify_bundle(json.dumps(bundle), keys=log.published())
    bundle["checkpoint"] = sign_note(body, [old.log, log.signers.clock.at(later)]).decode()
    with pytest.raises(BundleError, match=r"by runlog\.test/keys\+[0-9a-f]{8}, valid .*after its validity window "
                                          r"ended \(a retired key\)"):
        verify_bundle(json.dumps(bundle), keys=log.published())


def test_the_key_history_is_append_only(log):
    log.rotate()
    for statement in ("UPDATE key_history SET at = '2030-01-01T00:00:00Z'", "DELETE FROM key_history"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            log.conn.execute(statement)
    assert len(keyring.history(log.conn)) == 4


def test_a_pending_handover_or_a_running_appliance_refuses_another_rotation(log):
    log.rotate()
    with pytest.raises(StoreError, match="awaits its handover"):
        log.rotate()
    with signing_lock(log.settings.db_path):
        with pytest.raises(KeysBusy, match="stop the appliance"):
            log.rotate(compromised=True)


def test_a_compromised_rotation_ends_the_old_windows_at_the_last_checkpoint_at_once(log):
    log.run(trace(1), 1)
    log.cut()
    last_cut = int(log.clock.timestamp())
    done = log.rotate(compromised=True)
    assert done.closed_at == last_cut < done.valid_from
    assert not list(log.settings.keys_dir.glob("*.retiring.key"))
    states = {row["key"]: (row["state"], row["valid_until"]) for row in keyring.describe(log.conn)}
    assert states[done.old["log"]] == ("retired", format_seconds(last_cut))
    assert states[done.new["log"]] == ("current", None)
    log.load()
    log.run(trace(2), 1)
    assert len(log_lines(log.cut())) == 1  # no handover


def test_an_interrupted_rotation_is_finished_or_dropped_at_the_next_start(log, monkeypatch):
    old = log.signers.log.verifier()
    keys_dir = log.settings.keys_dir
    stray = generate_signer(ORIGIN)  # staged by a rotation that stopped before recording it
    save_signer(keys_dir / "clock.next.key", key_custody.generate_cosigner(f"{ORIGIN}/clock"))
    save_verifier(keys_dir / "clock.next.pub", stray.verifier())
    log.load()
    assert not list(keys_dir.glob("*.next.*")) and log.signers.log.verifier() == old
    with monkeypatch.context() as patched:  # the rotation stops after recording, before renaming
        patched.setattr(key_custody, "_finish_renames", lambda keys_dir, conn: None)
        rotation = log.rotate()
    assert (keys_dir / "log.next.key").exists() and (keys_dir / "log.key").exists()
    log.load()
    assert log.signers.log.verifier().to_text() == rotation.new["log"] and log.signers.retiring_log.verifier() == old
    assert not list(keys_dir.glob("*.next.*"))


def test_keys_that_do_not_match_the_history_are_refused(log, tmp_path):
    other = Log(tmp_path / "other")
    (log.settings.keys_dir / "log.key").unlink()
    os.replace(other.settings.keys_dir / "log.key", log.settings.keys_dir / "log.key")
    other.conn.close()
    with pytest.raises(StoreError, match="current log key is"):
        log.load()


def test_the_signing_key_file_is_used_refused_when_readable_and_rotated_to_a_new_file(tmp_path):
    secret = tmp_path / "secrets" / "log.key"
    secret.parent.mkdir()
    save_signer(secret, generate_signer(ORIGIN))
    settings = Settings.from_env({"RUNLOG_DATA_DIR": str(tmp_path / "data"), "RUNLOG_SIGNING_KEY_FILE": str(secret),
                                  "RUNLOG_ORIGIN": ORIGIN})
    assert settings.signing_key_file == secret
    os.chmod(secret, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        Log(tmp_path / "data", signing_key_file=secret)
    os.chmod(secret, 0o600)
    log = Log(tmp_path / "data", signing_key_file=secret)
    assert not (log.settings.keys_dir / "log.key").exists()
    assert log.signers.log.verifier().to_text() == keyring.current(log.conn, "log").key
    with pytest.raises(KeyFileError, match="--log-key-out"):
        log.rotate()
    rotation = log.rotate(log_key_out=tmp_path / "secrets" / "new.key")
    assert oct((tmp_path / "secrets" / "new.key").stat().st_mode & 0o777) == "0o600"
    with pytest.raises(StoreError, match="current log key is"):
        log.load()  # the old secret is still mounted
    log.settings = Settings(data_dir=log.settings.data_dir, keys_dir=log.settings.keys_dir, origin=ORIGIN,
                            signing_key_file=tmp_path / "secrets" / "new.key")
    log.load()
    assert log.signers.log.verifier().to_text() == rotation.new["log"] and log.signers.retiring_log is not None
    log.conn.close()


def test_restart_after_rotation_signs_with_the_new_key_and_get_keys_lists_the_history(tmp_path):
    settings = Settings(data_dir=tmp_path, keys_dir=tmp_path / "keys", origin=ORIGIN, synchronous="NORMAL")
    init_appliance(settings)
    old = NoteVerifier.from_text((settings.keys_dir / "log.pub").read_text().strip())
    rotation = rotate_keys(settings.keys_dir, settings.db_path, ORIGIN, now=datetime.now(timezone.utc),
                           synchronous="NORMAL")
    with TestClient(create_app(settings)) as client:
        appliance = client.app.state.appliance
        assert appliance.log_signer.verifier().to_text() == rotation.new["log"]
        with pytest.raises(KeysBusy):  # the running appliance holds the keys
            rotate_keys(settings.keys_dir, settings.db_path, ORIGIN, now=datetime.now(timezone.utc))
        body = client.get("/v1/keys").json()
        assert body["log_key"] == rotation.new["log"]
        assert [(k["role"], k["state"]) for k in body["history"]] == [
            ("log", "retiring"), ("clock", "retiring"), ("log", "current"), ("clock", "current")]
        appliance.writer.append_sync(AppendRequest([Event(trace_id=trace(9), step="s", status="info",
                                                          ts="2026-11-20T12:00:00Z", source="ci")], "ci"))
        handover, _ = appliance.checkpointer.cut_now()
        assert len(log_lines(handover.note)) == 2 and open_checkpoint(handover.note, old, origin=ORIGIN)
        assert not (settings.keys_dir / "log.retiring.key").exists()
        body = client.get("/v1/keys").json()
        assert [k["state"] for k in body["history"]] == ["retired", "retired", "current", "current"]
        assert body["history"][0]["valid_until"] is not None and TrustedKeys.from_text(body["keys_file"])
    with TestClient(create_app(settings)) as client:  # and again after a restart
        assert client.app.state.appliance.log_signer.verifier().to_text() == rotation.new["log"]
        assert client.get("/v1/keys").json()["keys_file"] == body["keys_file"]


def runlog(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_runlog_keys_show_rotate_checkpoint_and_verify_as_subprocesses(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLOG_")}
    env.update(RUNLOG_DATA_DIR=str(tmp_path), RUNLOG_ORIGIN=ORIGIN)
    assert runlog("init", env=env).returncode == 0
    shown = runlog("keys", "show", env=env)
    assert shown.returncode == 0 and len(TrustedKeys.from_text(shown.stdout).log) == 1
    rotated = runlog("keys", "rotate", env=env)
    assert rotated.returncode == 0, rotated.stderr
    published = TrustedKeys.from_text(rotated.stdout)
    assert len(published.log) == len(published.clock) == 2 and "handover" in rotated.stderr
    again = runlog("keys", "rotate", env=env)
    assert again.returncode == 1 and "awaits its handover" in again.stderr
    settings = Settings(data_dir=tmp_path, keys_dir=tmp_path / "keys", origin=ORIGIN)
    signers = key_custody.load_signers(settings.keys_dir, ORIGIN)
    writer = Writer(settings.db_path, origin=ORIGIN, signer=signers.log)
    writer.start()
    writer.append_sync(AppendRequest([Event(trace_id=trace(1), step="s", status="info", ts="2026-11-20T12:00:00Z",
                                            source="ci")], "ci"))
    writer.stop()
    handover = runlog("checkpoint", env=env)
    assert handover.returncode == 0 and len(log_lines(handover.stdout)) == 2, handover.stderr
    (tmp_path / "published.keys").write_text(runlog("keys", "show", env=env).stdout)
    checked = runlog("verify", "--db", str(settings.db_path), "--key", str(tmp_path / "published.keys"), env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rows = json.loads(runlog("keys", "show", "--json", env=env).stdout)
    assert [r["state"] for r in rows] == ["retired", "retired", "current", "current"]
    assert Checkpoint.from_text(handover.stdout.split("\n\n")[0] + "\n").size == 1


def test_the_offline_verifier_takes_the_published_keys_file_or_a_policy(log, tmp_path):
    log.run(trace(1), 2)
    log.cut()
    (tmp_path / "before.json").write_bytes(log.bundle(trace(1)))
    old = log.signers
    log.rotate()
    log.load()
    log.run(trace(2), 2)
    log.cut()
    after = json.loads(log.bundle(trace(2)))
    (tmp_path / "after.json").write_text(json.dumps(after))
    body = after["checkpoint"].split("\n\n")[0] + "\n"
    later = int((log.clock + timedelta(days=1)).timestamp())
    after["checkpoint"] = sign_note(body, [old.log, log.signers.clock.at(later)]).decode()
    (tmp_path / "forged.json").write_text(json.dumps(after))
    published = log.published().to_text()
    (tmp_path / "published.keys").write_text(published)
    (tmp_path / "policy").write_text(published.replace("runlog-keys/v1\n", "") + "quorum none\n")

    def verify(name: str, *trust: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "appliance.verify", str(tmp_path / name), *trust],
                              capture_output=True, text=True, timeout=60)

    keys_file = ["--key", str(tmp_path / "published.keys")]
    assert [verify(name, *keys_file).returncode for name in ("before.json", "after.json")] == [0, 0]
    assert verify("after.json", "--policy", str(tmp_path / "policy")).returncode == 0
    forged = verify("forged.json", *keys_file)
    assert forged.returncode == 1 and "after its validity window ended (a retired key)" in forged.stdout


def test_bad_key_inputs_are_refused_clearly_and_change_nothing(log, tmp_path):
    from appliance.core.cosignature import generate_cosigner
    from appliance.verify import run

    wrong = tmp_path / "clock-as-log.key"
    save_signer(wrong, generate_cosigner(f"{ORIGIN}/clock"))
    for path, words in ((wrong, "is not a log key"), (tmp_path / "absent.key", "no key file")):
        with pytest.raises(KeyFileError, match=words):
            key_custody.load_signers(log.settings.keys_dir, ORIGIN, signing_key_file=path)
        with pytest.raises(KeyFileError, match=words):
            rotate_keys(log.settings.keys_dir, log.settings.db_path, ORIGIN, now=log.clock, signing_key_file=path,
                        log_key_out=tmp_path / "new.key")
    assert len(keyring.history(log.conn)) == 2 and not (tmp_path / "new.key").exists()
    (tmp_path / "bad.keys").write_text("runlog-keys/v1\nlog not-a-key 2026-11-01T00:00:00Z -\n")
    (tmp_path / "x.json").write_text("{}")
    assert run(str(tmp_path / "x.json"), key=str(tmp_path / "bad.keys"), policy=None, as_json=False) == 2
