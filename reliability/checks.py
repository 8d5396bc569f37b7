"""The end-of-run checks every reliability suite makes, each returning a list of problems (empty:
it held) so that a long run reports everything it found instead of stopping at the first.

- `verify_store`: `runlog verify --db` (and `--anchors` when anchors are configured) as a user
  would run it, in a subprocess.
- `ledger_problems`: every acknowledged event is in the store exactly once, at the seq and with
  the entry hash its receipt gave; no event (acknowledged or not) is stored twice.
- `anchor_problems`: every checkpoint the store signed is marked published for every anchor and
  is held by the local-directory anchor (and Postgres, when used) exactly once, byte for byte.
"""

import json
import sqlite3
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import httpx
import orjson

from appliance.anchors.outbox import anchor_status
from appliance.store.db import connect
from reliability.load import ClientLedger
from reliability.postgres import PostgresTable
from tests.e2e.server import Server


def verify_store(server: Server, *, anchors: bool) -> tuple[dict, list[str]]:
    """Run `runlog verify --db [--anchors] --json` with the server's environment."""
    args = ["verify", "--db", str(server.data_dir / "runlog.sqlite"), "--json", *(["--anchors"] if anchors else [])]
    done = server.runlog(*args)
    try:
        report = json.loads(done.stdout)
    except ValueError:
        return {}, [f"runlog verify --db exited {done.returncode} without a report: {done.stderr[-2000:]}"]
    problems = [] if done.returncode == 0 else [f"runlog verify --db exited {done.returncode}: "
                                                f"{report.get('failures', done.stderr[-2000:])}"]
    return report, problems


def ledger_problems(db_path: Path, ledgers: Sequence[ClientLedger], *, show: int = 5) -> tuple[int, list[str]]:
    """(entries in the store, problems): compares every stored entry's `attrs.id` with the ledgers."""
    stored = [{} for _ in ledgers]  # client -> n -> seq, for every stored event of the load
    duplicated, problems = 0, []
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = 0
        for seq, data, digest in conn.execute("SELECT seq, data, hash FROM entries ORDER BY seq"):
            rows += 1
            event_id = orjson.loads(data).get("attrs", {}).get("id")
            if not isinstance(event_id, str) or "-" not in event_id:
                continue
            client, n = (int(part) for part in event_id.split("-"))
            if n in stored[client]:
                duplicated += 1
                if duplicated <= show:
                    problems.append(f"event {event_id} stored twice: seq {stored[client][n][0]} and {seq}")
            stored[client][n] = (seq, bytes(digest))
    finally:
        conn.close()
    lost = moved = 0
    for client, ledger in enumerate(ledgers):
        for n, seq in enumerate(ledger.seqs):
            if seq < 0:
                continue
            found = stored[client].get(n)
            if found is None:
                lost += 1
                if lost <= show:
                    problems.append(f"acknowledged event {client}-{n} (seq {seq}) is not in the store")
            elif found != (seq, bytes(ledger.hashes[n * 32:(n + 1) * 32])):
                moved += 1
                if moved <= show:
                    problems.append(f"acknowledged event {client}-{n} is at seq {found[0]}, its receipt said {seq} "
                                    "(or its hash differs)")
    if duplicated or lost or moved:
        problems.append(f"in all: {duplicated} duplicated, {lost} acknowledged but lost, {moved} moved")
    return rows, problems


def anchor_names(server: Server) -> list[str]:
    """The configured anchors' names, as /healthz lists them ("anchor <name>" checks)."""
    checks = httpx.get(f"{server.url}/healthz", timeout=30).json()["checks"]
    return [name.split(" ", 1)[1] for name in checks if name.startswith("anchor ")]


def wait_until_anchored(db_path: Path, anchor_names: Sequence[str], timeout: float) -> list[str]:
    """Wait for every anchor's outbox to empty; the problems if it does not in time, at once if an
    anchor failed for good (a fork is never retried, so waiting longer cannot help)."""
    deadline = time.monotonic() + timeout
    while True:
        conn = connect(db_path, readonly=True)
        try:
            states = anchor_status(conn, anchor_names, datetime.now(timezone.utc))
        finally:
            conn.close()
        waiting = [s for s in states if s.pending or s.failed]
        if not waiting:
            return []
        if any(s.failed for s in states):
            return [f"anchor {s.anchor}: a checkpoint failed for good, {s.pending} pending "
                    f"(last error: {s.last_error})" for s in states if s.failed]
        if time.monotonic() > deadline:
            return [f"anchor {s.anchor}: {s.pending} checkpoints still pending after {timeout:.0f} s "
                    f"(failed: {s.failed}; last error: {s.last_error})" for s in waiting]
        time.sleep(0.2)


def anchor_problems(db_path: Path, origin: str, anchor_dir: Path | None,
                    postgres: PostgresTable | None = None) -> tuple[int, list[str]]:
    """(checkpoints in the store, problems): each is held once, byte for byte, by each anchor."""
    conn = connect(db_path, readonly=True)
    try:
        notes = dict(conn.execute("SELECT size, note FROM checkpoints"))
        unpublished = conn.execute("SELECT anchor, size FROM anchor_outbox WHERE published_at IS NULL").fetchall()
    finally:
        conn.close()
    problems = [f"outbox row ({anchor}, {size}) never published" for anchor, size in unpublished[:5]]
    held: dict[str, dict[int, list[str]]] = {}
    if anchor_dir is not None:
        folder = anchor_dir / quote(origin, safe="") / "checkpoints"
        files = sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else []
        held["dir"] = {}
        for path in files:
            held["dir"].setdefault(int(path.name), []).append(path.read_text(encoding="utf-8"))
    if postgres is not None:
        held["postgres"] = {}
        for size, note in postgres.rows(origin):
            held["postgres"].setdefault(size, []).append(note)
    for anchor, by_size in held.items():
        missing = sorted(set(notes) - set(by_size))
        extra = sorted(set(by_size) - set(notes))
        twice = sorted(size for size, copies in by_size.items() if len(copies) > 1)
        different = sorted(size for size, copies in by_size.items() if size in notes and copies[0] != notes[size])
        for what, sizes in (("missing", missing), ("not in the store", extra), ("held twice", twice),
                            ("different from the store's note", different)):
            if sizes:
                problems.append(f"{anchor} anchor: {len(sizes)} checkpoints {what}, e.g. sizes {sizes[:5]}")
    return len(notes), problems
