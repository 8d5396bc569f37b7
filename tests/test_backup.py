"""`runlog backup DEST` against a real `runlog serve` while 8 clients ingest: the copy verifies and
holds every event acknowledged before the backup began; restoring it (copy back, serve, verify)
works; DEST is never overwritten unless asked; a tampered store gives no backup."""

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import uuid

import httpx
import pytest

from appliance.store.backup import BackupError, publish
from tests.e2e.server import ADMIN_TOKEN, Server

CLIENTS = 8


class Producer(threading.Thread):
    """Appends one event per request until stopped; remembers each acknowledged (seq, entry hash)."""

    def __init__(self, n: int, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.trace_id = url, f"{n + 1:032x}"
        self.acked: list[tuple[int, str]] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10) as http:
                while not self.stop.is_set():
                    body = {"trace_id": self.trace_id, "step": "tick", "status": "info", "attrs": {"id": uuid.uuid4().hex}}
                    response = http.post(f"{self.url}/v1/events", json=body)
                    assert response.status_code == 201, response.text
                    receipt = response.json()
                    self.acked.append((receipt["first_seq"], receipt["entry_hashes"][0]))
        except BaseException as error:  # reported by the test
            self.error = error


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A server that took concurrent ingest during a backup; yields (server, backup file, acked before)."""
    root = tmp_path_factory.mktemp("backup")
    server = Server(root / "data").start()
    producers = [Producer(n, server.url) for n in range(CLIENTS)]
    for p in producers:
        p.start()
    try:
        while sum(len(p.acked) for p in producers) < 300:
            threading.Event().wait(0.02)
        acked_before = {pair for p in producers for pair in list(p.acked)}
        done = server.runlog("backup", str(root / "copy.sqlite"))
        during = sum(len(p.acked) for p in producers)
    finally:
        for p in producers:
            p.stop.set()
        for p in producers:
            p.join(30)
    assert done.returncode == 0, done.stderr + done.stdout
    assert not any(p.error for p in producers), [p.error for p in producers]
    assert during > len(acked_before), "the clients kept ingesting while the backup ran"
    yield server, root / "copy.sqlite", acked_before, done
    server.kill()


def test_backup_during_ingest_holds_every_acknowledged_event_and_verifies(served):
    server, copy, acked_before, done = served
    assert "VERIFIED: every check held" in done.stdout and "and verified" in done.stderr
    conn = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
    stored = dict(conn.execute("SELECT seq, lower(hex(hash)) FROM entries"))
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()
    missing = [(seq, h) for seq, h in acked_before if stored.get(seq) != h]
    assert not missing, f"{len(missing)} acknowledged events are not in the backup, e.g. {missing[:3]}"
    assert sorted(stored) == list(range(len(stored)))
    assert not copy.with_name(copy.name + "-wal").exists()
    again = server.runlog("verify", "--db", str(copy), "--json")
    assert again.returncode == 0, again.stdout


def test_restore_then_serve_then_verify(served, tmp_path):
    server, copy, _, _ = served
    data = tmp_path / "restored"
    data.mkdir()
    shutil.copyfile(copy, data / "runlog.sqlite")
    size = sqlite3.connect(copy).execute("SELECT count(*) FROM entries").fetchone()[0]
    restored = Server(data, RUNLOG_KEYS_DIR=str(server.data_dir / "keys")).start()
    try:
        assert httpx.get(f"{restored.url}/healthz").json()["tree_size"] == size
        response = httpx.post(f"{restored.url}/v1/events", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                              json={"trace_id": "f" * 32, "step": "after-restore", "status": "info"})
        assert response.status_code == 201 and response.json()["first_seq"] == size
        assert restored.terminate() == 0
        verified = restored.runlog("verify", "--db", str(data / "runlog.sqlite"))
        assert verified.returncode == 0, verified.stdout + verified.stderr
    finally:
        restored.kill()


def test_an_existing_dest_is_refused_unless_forced(served):
    server, copy, _, _ = served
    before = copy.read_bytes()
    refused = server.runlog("backup", str(copy))
    assert refused.returncode == 2 and "exists; give --force" in refused.stderr
    assert copy.read_bytes() == before
    assert not [p for p in copy.parent.iterdir() if p.name.endswith(".partial")]
    forced = server.runlog("backup", str(copy), "--force", "--json")
    assert forced.returncode == 0, forced.stderr
    assert copy.read_bytes() != before


def test_a_directory_dest_gets_a_time_stamped_file(served, tmp_path):
    server, _, _, _ = served
    done = server.runlog("backup", str(tmp_path))
    assert done.returncode == 0, done.stderr
    [made] = tmp_path.glob("runlog-*.sqlite")
    assert str(made) in done.stderr


@pytest.mark.parametrize("dest, message", [("missing-dir/copy.sqlite", "no directory"),
                                           ("copy.sqlite", "no store at")])
def test_bad_destinations_and_sources_are_refused(served, tmp_path, dest, message):
    server, _, _, _ = served
    db = [] if message != "no store at" else ["--db", str(tmp_path / "nothing.sqlite")]
    done = server.runlog("backup", str(tmp_path / dest), *db)
    assert done.returncode == 2 and message in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_publish_never_replaces_without_overwrite(tmp_path):
    copy, final = tmp_path / "copy", tmp_path / "final"
    copy.write_bytes(b"new")
    final.write_bytes(b"old")
    with pytest.raises(BackupError, match="exists"):
        publish(copy, final, overwrite=False)
    assert final.read_bytes() == b"old" and copy.read_bytes() == b"new"


def test_a_tampered_store_gives_no_backup(served, tmp_path):
    server, copy, _, _ = served
    tampered = tmp_path / "tampered.sqlite"
    shutil.copyfile(copy, tampered)
    conn = sqlite3.connect(tampered)
    conn.execute("DROP TRIGGER entries_no_update")
    conn.execute("UPDATE entries SET data = CAST(replace(CAST(data AS TEXT), 'tick', 'tock') AS BLOB) WHERE seq = 5")
    conn.commit()
    conn.close()
    dest = tmp_path / "out"
    dest.mkdir()
    done = server.runlog("backup", str(dest / "copy.sqlite"), "--db", str(tampered))
    assert done.returncode == 1 and "does not verify" in done.stderr
    assert "seq 5" in done.stdout
    assert list(dest.iterdir()) == []


def test_a_killed_backups_partial_file_is_cleared_by_the_next_backup_to_that_name(tmp_path):
    from appliance.store.backup import temporary_path

    final = tmp_path / "nightly.sqlite"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    stale = tmp_path / f".nightly.sqlite.{dead.stdout.strip()}.partial"  # a killed backup's leftover
    stale.write_bytes(b"half a store")
    running = tmp_path / f".nightly.sqlite.{os.getpid()}.partial"  # one still being written
    running.write_bytes(b"in progress")
    other = tmp_path / ".weekly.sqlite.1.partial"  # another destination's
    other.write_bytes(b"not ours")
    assert temporary_path(final) == running
    assert not stale.exists() and running.exists() and other.exists()
