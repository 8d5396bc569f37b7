"""Full-store verification of real stores built by the real Writer, tampered with the way an
attacker who owns the disk would (triggers dropped); each tamper is caught with the right reason
and seq, and every chain verdict equals the core verifier's over the same rows."""

import shutil
import sqlite3
import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from appliance.anchors.base import AnchoredCheckpoint
from appliance.anchors.localdir import LocalDirAnchor
from appliance.core.chain import RunChains, verify_global_chain
from appliance.core.compact import CompactRange
from appliance.core.cosignature import generate_cosigner
from appliance.core.entry import decode_entry, encode_entry
from appliance.core.errors import ChainError
from appliance.core.hashing import leaf_hash, sha256
from appliance.core.keys import generate_signer
from appliance.core.sequencer import Event
from appliance.store.checkpoints import CheckpointSigners, cut_checkpoint, cut_daily_roots
from appliance.store.db import APPEND_ONLY_TABLES, connect, set_meta
from appliance.store.tiles import TileCollector
from appliance.store.tree_reader import TreeReader
from appliance.store.writer import AppendRequest, Writer
from appliance.verify_store import Keys, VerifyReport, verify_store

ORIGIN = "runlog.test/verify"
LOG = generate_signer(ORIGIN, seed=b"\x21" * 32)
CLOCK = generate_cosigner(f"{ORIGIN}/clock", seed=b"\x22" * 32)
KEYS = Keys(LOG.verifier(), CLOCK.verifier())
START = datetime(2026, 11, 27, 23, 45, tzinfo=timezone.utc)  # the log runs across a midnight
ENTRIES = 700
CHECKPOINTS = (100, 300, 512, 600)
SLOTS = 9  # runs open at once
CHUNK = 256  # the smallest chunk: several chunks even in a small store


def build_store(path: Path, *, signers: CheckpointSigners, variant: str = "", entries: int = ENTRIES) -> None:
    """`entries` events from SLOTS interleaved runs (closed runs replaced by new ones), a request of
    1..13 events every 20 s, checkpoints at CHECKPOINTS and at the end, daily roots cut 2 days on."""
    now = [START]
    writer = Writer(path, origin=signers.origin, signer=signers.log, clock=lambda: now[0], synchronous="NORMAL")
    writer.start()
    conn = connect(path, synchronous="NORMAL")
    set_meta(conn, "origin", signers.origin)
    runs = [[n, 0] for n in range(SLOTS)]  # per slot: run number, steps so far
    written = 0
    try:
        while written < entries:
            events = []
            for i in range(min(1 + written % 13, entries - written)):
                slot = (written + 5 * i) % SLOTS
                run = runs[slot]
                run[1] += 1
                final = run[1] == 20 + 3 * slot
                events.append(Event(
                    trace_id=f"{0xabc000 + run[0]:032x}", step=f"step {run[1]}{variant}",
                    status=("failed" if slot == 3 else "succeeded") if final else "info",
                    ts="2026-11-27T23:00:00.5Z", source="ci", final=final,
                    attrs={"n": written + i, "host": f"web-{slot}.internal", "took_s": 0.25 * (i + 1), "w": "café"}))
                if final:
                    runs[slot] = [run[0] + SLOTS, 0]
            writer.append_sync(AppendRequest(events, "ci"))
            written += len(events)
            now[0] += timedelta(seconds=20)
            for size in CHECKPOINTS:
                if size <= written:
                    cut_checkpoint(conn, signers, now=now[0], size=size)
        cut_checkpoint(conn, signers, now=now[0])
        cut_daily_roots(conn, signers, now=now[0] + timedelta(days=2))
    finally:
        writer.stop()
        conn.close()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pristine") / "runlog.sqlite"
    build_store(path, signers=CheckpointSigners(LOG, CLOCK))
    return path


@pytest.fixture(scope="module")
def other_history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same log's key, a different history: what an attacker holding the key could forge."""
    path = tmp_path_factory.mktemp("forged") / "runlog.sqlite"
    build_store(path, signers=CheckpointSigners(LOG, CLOCK), variant=" (rewritten)")
    return path


@pytest.fixture
def store(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "runlog.sqlite"
    shutil.copy(pristine, copy)
    return copy


def attacker(path: Path) -> sqlite3.Connection:
    """A plain connection to the store with every append-only trigger dropped."""
    conn = sqlite3.connect(path, isolation_level=None)
    for table in (*APPEND_ONLY_TABLES, "tile_roots", "level4_nodes"):
        for action in ("update", "delete"):
            conn.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")
    return conn


def verify(path: Path, **options) -> VerifyReport:
    options.setdefault("chunk_size", CHUNK)
    options.setdefault("workers", 1)
    return verify_store(path, KEYS, **options)


def core_verdict(path: Path) -> tuple[str, int] | None:
    """The core verifier over the same rows: (reason, seq) of the first break, or None."""
    conn = connect(path, readonly=True)
    rows = conn.execute("SELECT CAST(data AS BLOB), CAST(hash AS BLOB) FROM entries ORDER BY seq")
    try:
        verify_global_chain(rows, runs=RunChains())
    except ChainError as error:
        return error.reason, error.seq
    finally:
        conn.close()
    return None


def first(report: VerifyReport) -> tuple[str, str, int | None]:
    failure = report.first_failure
    assert failure is not None, report.to_text()
    return failure.check, failure.reason, failure.seq


def row(conn: sqlite3.Connection, seq: int) -> tuple[bytes, bytes]:
    return conn.execute("SELECT data, hash FROM entries WHERE seq = ?", (seq,)).fetchone()


# ---- a sound store ---------------------------------------------------------------------------

def test_a_sound_store_verifies_and_says_what_it_checked(pristine: Path) -> None:
    report = verify(pristine)
    assert report.ok, report.to_text()
    conn = connect(pristine, readonly=True)
    assert report.entries == ENTRIES
    assert report.runs == conn.execute("SELECT count(*) FROM runs").fetchone()[0] > SLOTS
    assert report.checkpoints == conn.execute("SELECT count(*) FROM checkpoints").fetchone()[0] >= len(CHECKPOINTS)
    assert report.daily_roots == 3  # 27th (up to midnight), 28th (the rest), 29th (empty: same tree)
    assert report.tiles == ENTRIES // 256
    assert report.root == TreeReader(conn).root(ENTRIES).hex()
    assert report.latest_checkpoint == ENTRIES
    assert "VERIFIED" in report.to_text() and report.to_json()["ok"] is True


def test_worker_processes_give_the_same_verdict(tmp_path: Path) -> None:
    larger = tmp_path / "larger.sqlite"  # more chunks than the workers hold in flight
    build_store(larger, signers=CheckpointSigners(LOG, CLOCK), entries=1_500)
    alone = verify(larger)
    parallel = verify(larger, workers=2)
    assert alone.ok and parallel.ok and parallel.workers == 2
    assert (parallel.root, parallel.runs, parallel.tiles) == (alone.root, alone.runs, alone.tiles)
    assert parallel.root == TreeReader(connect(larger, readonly=True)).root(1_500).hex()
    # and a break in a chunk a worker checked is reported as the core reports it
    broken = tmp_path / "broken.sqlite"
    shutil.copy(larger, broken)
    conn = attacker(broken)
    (data, _), (other, other_hash) = row(conn, 300), row(conn, 301)
    conn.execute("UPDATE entries SET data = ?, hash = ? WHERE seq = 300", (other, other_hash))
    conn.execute("UPDATE entries SET data = ?, hash = ? WHERE seq = 301", (data, sha256(data)))
    conn.close()
    assert first(verify(broken, workers=2))[1:] == core_verdict(broken) == ("reordered", 300)


def test_workers_start_safely_from_a_caller_that_runs_threads(pristine: Path) -> None:
    # Another thread is running, so the workers are spawned (fork would copy its locks mid-use).
    done = threading.Event()
    waiter = threading.Thread(target=done.wait)
    waiter.start()
    try:
        report = verify(pristine, workers=2)
    finally:
        done.set()
        waiter.join()
    assert report.ok and report.workers == 2


# ---- the tamper list ----------------------------------------------------------------

@pytest.mark.parametrize("seq", [5, 255, 256, 699])
def test_a_row_edited_after_dropping_the_triggers(store: Path, seq: int) -> None:
    conn = attacker(store)
    data, _ = row(conn, seq)
    conn.execute("UPDATE entries SET data = ? WHERE seq = ?", (data.replace(b'"step":"step', b'"step":"Step'), seq))
    conn.close()
    assert first(verify(store)) == ("entries", "edited", seq)
    assert core_verdict(store) == ("edited", seq)


def test_a_row_edited_with_its_hash_recomputed(store: Path) -> None:
    conn = attacker(store)
    data, _ = row(conn, 40)
    forged = data.replace(b'"n":', b'"n":1')
    conn.execute("UPDATE entries SET data = ?, hash = ? WHERE seq = 40", (forged, sha256(forged)))
    conn.close()
    report = verify(store)
    assert first(report) == ("entries", "edited", 40) and core_verdict(store) == ("edited", 40)
    # the stored tile still holds the signed leaf, and every checkpoint from 100 on covers the edit
    assert any(f.check == "tree" and f.seq == 40 for f in report.failures)
    assert {f.size for f in report.failures if f.check == "checkpoints"} >= set(CHECKPOINTS)


@pytest.mark.parametrize("seq", [10, 255, 256, 511])
def test_a_row_deleted(store: Path, seq: int) -> None:
    conn = attacker(store)
    conn.execute("DELETE FROM entries WHERE seq = ?", (seq,))
    conn.close()
    report = verify(store)
    assert first(report) == ("entries", "missing", seq) and core_verdict(store) == ("missing", seq)
    assert any(f.check == "checkpoints" and f.reason == "missing" for f in report.failures)  # no tree past it


def test_a_row_inserted(store: Path) -> None:
    conn = attacker(store)
    seq = 120
    for moved in range(ENTRIES - 1, seq - 1, -1):  # make room, as an attacker must: seq is the key
        conn.execute("UPDATE entries SET seq = seq + 1 WHERE seq = ?", (moved,))
    before = decode_entry(row(conn, seq - 1)[0])
    forged = encode_entry(replace(before, seq=seq, trace_id="f" * 32, run_seq=0, run_prev=None, final=False,
                                  status="info", step="forged", prev=sha256(row(conn, seq - 1)[0])))
    conn.execute("INSERT INTO entries VALUES (?, ?, 0, 'forged', 'info', 0, ?, ?, ?, ?, ?)",
                 (seq, "f" * 32, before.ts, before.received_at, before.source, forged, sha256(forged)))
    conn.close()
    assert first(verify(store)) == ("entries", "inserted", seq) and core_verdict(store) == ("inserted", seq)


@pytest.mark.parametrize("seq", [33, 255])
def test_two_rows_swapped(store: Path, seq: int) -> None:
    conn = attacker(store)
    (a, a_hash), (b, b_hash) = row(conn, seq), row(conn, seq + 1)
    conn.execute("UPDATE entries SET data = ?, hash = ? WHERE seq = ?", (b, b_hash, seq))
    conn.execute("UPDATE entries SET data = ?, hash = ? WHERE seq = ?", (a, a_hash, seq + 1))
    conn.close()
    assert first(verify(store)) == ("entries", "reordered", seq) and core_verdict(store) == ("reordered", seq)


def truncate(path: Path, size: int, *, drop_checkpoints: bool) -> None:
    """Cut the log to `size` entries and tidy up as a careful attacker would: tiles, runs, and
    (optionally) the checkpoints and daily roots that would give it away."""
    conn = attacker(path)
    conn.execute("DELETE FROM entries WHERE seq >= ?", (size,))
    _rebuild_derived(conn)
    if drop_checkpoints:
        conn.execute("DELETE FROM daily_roots WHERE size > ?", (size,))
        conn.execute("DELETE FROM anchor_outbox WHERE size > ?", (size,))
        conn.execute("DELETE FROM checkpoints WHERE size > ?", (size,))
    conn.close()


def _rebuild_derived(conn: sqlite3.Connection) -> None:
    """Recompute tiles, the runs table and run_entries from the entries, as the writer would have."""
    conn.execute("DELETE FROM tiles")
    conn.execute("DELETE FROM tile_roots")
    conn.execute("DELETE FROM level4_nodes")
    conn.execute("DELETE FROM runs")
    conn.execute("DELETE FROM run_entries")
    collector, tree = TileCollector(), CompactRange()
    first_seqs: dict[str, int] = {}
    conn.execute("BEGIN")
    for data, digest in conn.execute("SELECT data, hash FROM entries ORDER BY seq").fetchall():
        entry = decode_entry(data)
        tree.append(leaf_hash(data), collector.on_node)
        status = "failed" if entry.status == "failed" else ("succeeded" if entry.final else "running")
        run = first_seqs.setdefault(entry.trace_id, entry.seq)
        conn.execute(
            "INSERT INTO runs (trace_id, count, head, first_seq, last_seq, started_at, updated_at, first_ts, last_ts, "
            "source, status, closed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (trace_id) DO UPDATE SET "
            "count = excluded.count, head = excluded.head, last_seq = excluded.last_seq, "
            "updated_at = excluded.updated_at, last_ts = excluded.last_ts, closed = excluded.closed, "
            "status = CASE WHEN runs.status = 'failed' THEN 'failed' ELSE excluded.status END",
            (entry.trace_id, entry.run_seq + 1, digest, entry.seq, entry.seq, entry.received_at, entry.received_at,
             entry.ts, entry.ts, entry.source, status, int(entry.final)))
        conn.execute("INSERT INTO run_entries VALUES (?, ?, ?)", (run, entry.run_seq, entry.seq))
    collector.flush(conn)
    conn.execute("COMMIT")


def test_the_tail_truncated_below_a_stored_checkpoint(store: Path) -> None:
    truncate(store, 550, drop_checkpoints=False)
    report = verify(store)
    assert first(report) == ("checkpoints", "truncated", 550)
    assert {f.size for f in report.failures if f.reason == "truncated"} == {600, ENTRIES}
    assert core_verdict(store) is None  # the chain alone cannot tell


def test_the_tail_truncated_with_the_checkpoints_is_caught_only_by_the_anchors(store: Path, tmp_path: Path) -> None:
    anchor = published_anchor(store, tmp_path / "anchor")
    truncate(store, 550, drop_checkpoints=True)
    assert verify(store).ok  # self-consistent: nothing in the store gives it away
    report = verify(store, anchors=[anchor])
    assert first(report) == ("anchors", "truncated", 550)
    assert report.anchors[0].largest == ENTRIES


def published_anchor(path: Path, directory: Path) -> LocalDirAnchor:
    """A local-directory anchor holding every checkpoint of the store, as the outbox would."""
    anchor = LocalDirAnchor(directory, origin=ORIGIN)
    conn = connect(path, readonly=True)
    for size, note in conn.execute("SELECT size, note FROM checkpoints ORDER BY size"):
        anchor.publish(AnchoredCheckpoint(ORIGIN, size, note))
    conn.close()
    return anchor


def test_a_store_rebuilt_and_re_signed_with_another_key_fails_the_key_check(tmp_path: Path) -> None:
    impostor_log = generate_signer(ORIGIN, seed=b"\x66" * 32)  # same origin name, different key
    impostor = CheckpointSigners(impostor_log, generate_cosigner(f"{ORIGIN}/clock", seed=b"\x67" * 32))
    path = tmp_path / "rebuilt.sqlite"
    build_store(path, signers=impostor, variant=" (rewritten)")
    assert verify_store(path, Keys(impostor_log.verifier(), None), chunk_size=CHUNK).ok  # its own key agrees
    report = verify(path)
    assert first(report)[:2] == ("checkpoints", "signature")
    assert {(f.check, f.reason) for f in report.failures} == {("checkpoints", "signature"),
                                                              ("daily-roots", "unverified")}
    assert "no verifiable signatures" in report.first_failure.message


def test_a_store_rebuilt_with_the_right_key_is_caught_only_by_the_anchors(pristine: Path, other_history: Path,
                                                                          tmp_path: Path) -> None:
    anchor = published_anchor(pristine, tmp_path / "anchor")  # what the outbox published over time
    assert verify(other_history).ok  # on its own, a consistent store signed by the right key
    report = verify(other_history, anchors=[anchor])
    assert first(report)[:2] == ("anchors", "forked")
    signed = {size for (size,) in connect(pristine, readonly=True).execute("SELECT size FROM checkpoints")}
    assert {f.size for f in report.failures} == signed >= {*CHECKPOINTS, ENTRIES}
    assert {(f.check, f.reason) for f in report.failures} == {("anchors", "forked")}
    assert verify(pristine, anchors=[anchor]).ok


# ---- the rest of the store ------------------------------------------------------------------

def test_a_run_chain_broken_across_chunks_is_reported_as_the_core_reports_it(tmp_path: Path) -> None:
    # Rebuild the log with one entry linked to the wrong run head (a later entry's run_prev
    # re-pointed), recomputing every hash after it so that only the run chain can tell.
    path = tmp_path / "runbreak.sqlite"
    build_store(path, signers=CheckpointSigners(LOG, CLOCK))
    conn = attacker(path)
    entries = [decode_entry(data) for (data,) in conn.execute("SELECT data FROM entries ORDER BY seq")]
    victim = next(e for e in entries if e.seq > 300 and e.run_seq > 2)
    rows, prev, heads = [], None, {}
    for entry in entries:
        run_prev = heads.get(entry.trace_id)
        if entry.seq == victim.seq:
            run_prev = sha256(b"not the run's head")
        data = encode_entry(replace(entry, prev=prev, run_prev=run_prev))
        prev = heads[entry.trace_id] = sha256(data)
        rows.append((data, prev, entry.seq))
    conn.executemany("UPDATE entries SET data = ?, hash = ? WHERE seq = ?", rows)
    _rebuild_derived(conn)
    conn.close()
    reason, seq = core_verdict(path)
    assert reason == "edited" and seq < victim.seq
    assert first(verify(path)) == ("entries", reason, seq)
    assert first(verify(path, workers=2)) == ("entries", reason, seq)


def test_an_indexed_column_that_disagrees_with_the_entry_is_caught(store: Path) -> None:
    conn = attacker(store)
    conn.execute("UPDATE entries SET trace_id = ? WHERE seq = 77", ("e" * 32,))  # hides it from its run's page
    conn.close()
    report = verify(store)
    assert first(report) == ("entries", "mismatch", 77) and "trace_id column" in report.first_failure.message
    conn = attacker(store)  # a disagreeing column is no chain break: links are still checked after it
    conn.execute("DELETE FROM entries WHERE seq = 500")
    conn.close()
    found = {(f.check, f.reason, f.seq) for f in verify(store).failures}
    assert {("entries", "mismatch", 77), ("entries", "missing", 500)} <= found


def test_a_stored_tile_that_disagrees_with_the_entries_is_caught(store: Path) -> None:
    conn = attacker(store)
    (blob,) = conn.execute("SELECT hashes FROM tiles WHERE id = 1").fetchone()
    conn.execute("UPDATE tiles SET hashes = ? WHERE id = 1", (blob[:32 * 9] + b"\0" * 32 + blob[32 * 10:],))
    conn.close()
    assert first(verify(store)) == ("tree", "edited", 256 + 9)


def test_a_stored_tile_root_or_an_extra_tile_is_caught(store: Path) -> None:
    conn = attacker(store)
    conn.execute("UPDATE tile_roots SET hash = zeroblob(32) WHERE id = 0")
    conn.close()
    assert first(verify(store)) == ("tree", "edited", 0)
    conn = attacker(store)
    conn.execute("UPDATE tile_roots SET hash = (SELECT hash FROM tile_roots WHERE id = 1) WHERE id = 0")
    conn.execute("INSERT INTO tiles VALUES (999, zeroblob(8192))")
    conn.close()
    assert any(f.check == "tree" and f.reason == "inserted" for f in verify(store).failures)


def test_the_runs_table_must_summarise_the_entries(store: Path) -> None:
    conn = attacker(store)
    (trace_id,) = conn.execute("SELECT trace_id FROM runs WHERE status = 'failed' LIMIT 1").fetchone()
    conn.execute("UPDATE runs SET status = 'succeeded' WHERE trace_id = ?", (trace_id,))
    conn.close()
    report = verify(store)
    assert first(report)[:2] == ("runs", "mismatch") and "status 'succeeded' (entries say 'failed')" in \
        report.first_failure.message


def test_a_checkpoint_row_or_a_daily_root_that_disagrees_is_caught(store: Path) -> None:
    conn = attacker(store)
    conn.execute("UPDATE checkpoints SET root = zeroblob(32) WHERE size = 300")
    (day, size) = conn.execute("SELECT day, size FROM daily_roots ORDER BY day LIMIT 1").fetchone()
    conn.execute("UPDATE daily_roots SET size = 300 WHERE day = ?", (day,))
    conn.close()
    report = verify(store)
    reasons = {(f.check, f.reason, f.size) for f in report.failures}
    assert ("checkpoints", "mismatch", 300) in reasons
    assert ("daily-roots", "unverified", 300) in reasons  # it points at a checkpoint that failed


def test_a_daily_root_at_the_wrong_size_is_caught(store: Path) -> None:
    conn = attacker(store)
    (day, size) = conn.execute("SELECT day, size FROM daily_roots ORDER BY day LIMIT 1").fetchone()
    assert 0 < size < ENTRIES  # the 27th ends inside the log
    conn.execute("UPDATE daily_roots SET size = ? WHERE day = ?", (CHECKPOINTS[-1], day))
    conn.close()
    report = verify(store)
    assert [(f.check, f.reason) for f in report.failures] == [("daily-roots", "mismatch")]
    assert "received at 2026-11-28" in report.failures[0].message


def test_a_wrong_clock_key_or_a_key_for_another_log_is_caught(pristine: Path) -> None:
    stranger = generate_cosigner(f"{ORIGIN}/clock", seed=b"\x99" * 32).verifier()
    report = verify_store(pristine, Keys(LOG.verifier(), stranger), chunk_size=CHUNK, workers=1)
    assert first(report)[:2] == ("checkpoints", "signature")
    assert "no timestamp cosignature" in report.first_failure.message
    other_log = generate_signer("elsewhere/log", seed=b"\x21" * 32).verifier()
    assert first(verify_store(pristine, Keys(other_log, None), chunk_size=CHUNK))[:2] == ("keys", "origin")


def test_an_anchor_that_cannot_be_read_fails_the_verification(pristine: Path, tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the anchor directory should be")
    anchor = LocalDirAnchor(blocked, origin=ORIGIN)
    report = verify(pristine, anchors=[anchor])
    assert first(report)[:2] == ("anchors", "unreachable") and report.failures[0].anchor == anchor.name
    assert not verify(pristine, anchors=[]).ok  # --anchors with none configured proves nothing


def test_an_empty_store_verifies(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite"
    writer = Writer(path, origin=ORIGIN, signer=LOG)
    writer.start()
    writer.stop()
    report = verify(path)
    assert report.ok and report.entries == 0 and report.root == sha256(b"").hex()
