"""The bench scripts in their tiny modes, so they keep working (the figures are in bench/RESULTS.md;
nothing here asserts a speed)."""

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.core.keys import generate_signer
from appliance.core.sequencer import Event
from appliance.store.writer import AppendRequest, Writer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import ingest  # noqa: E402  (bench/ingest.py)

TRACE_IDS = ["1" * 32, "2" * 32]


def run_script(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], capture_output=True, text=True,
                          timeout=240, cwd=ROOT)


@pytest.mark.parametrize("generator", [
    "python",
    pytest.param("wrk", marks=pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")),
])
def test_ingest_quick_runs_every_case_and_checks_the_store(tmp_path, generator):
    figures = tmp_path / "ingest.json"
    extra = ["--no-postgres"] if generator == "wrk" else []  # one pass over Postgres is enough
    done = run_script("ingest.py", "--quick", "--clients", "2", "--pg-clients", "2", "--generator", generator,
                      "--json", str(figures), *extra)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    results = json.loads(figures.read_text())
    assert results["generator"] == generator
    cases = results["cases"]
    for key in ("bare_2", "runlog_2", "runlog_batched"):
        assert cases[key]["events_per_s"] > 0 and cases[key]["errors"] == 0, (key, cases[key])
    store = results["runlog_store"]
    assert (store["forks"], store["verified"], store["not_rfc8785"]) == (0, "ok", 0)
    assert store["sampled"] > 0 and store["entries"] >= ingest.BATCH
    if "pg_correct_2" in cases:
        assert cases["pg_correct_2"]["forks"] == 0 and cases["pg_correct_2"]["update_delete_refused"]
        assert cases["pg_bigserial_2"]["rows"] > 0 and cases["pg_bigserial_2"]["update_delete_refused"]
    else:
        assert "seed's Postgres design: " in done.stdout
    assert "targets (DESIGN.md):" in done.stdout


def test_query_quick_reports_latencies_startup_and_sizes():
    done = run_script("query.py", "--quick")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    for figure in ("runlog serve start-up", "GET /v1/runs/{id}, 1,000-step run, first page (100):",
                   "GET /v1/proofs/inclusion at tree_size 5,000:", "GET /v1/proofs/inclusion at a random tree_size:",
                   "GET /v1/proofs/consistency, random from, to 5,000:", "bytes per entry on disk"):
        assert figure in done.stdout, done.stdout


def _store(tmp_path: Path, events: int) -> Path:
    path = tmp_path / "runlog.sqlite"
    writer = Writer(path, origin="bench.example/log", signer=generate_signer("bench.example/log"))
    writer.start()
    try:
        now = "2026-11-28T00:00:00Z"
        writer.append_sync(AppendRequest([Event(trace_id=TRACE_IDS[i % 2], step=f"s{i}", status="info", ts=now,
                                                source="bench", attrs={"i": i, "word": "café"})
                                          for i in range(events)], "bench"))
    finally:
        writer.stop()
    return path


def test_store_check_counts_no_fork_in_a_sound_store(tmp_path):
    check = ingest.check_store(_store(tmp_path, 20), sample_from=0, sample_size=20)
    assert (check.entries, check.forks, check.verified, check.sampled, check.not_rfc8785) == (20, 0, "ok", 20, 0)


def test_store_check_counts_swapped_entries_as_forks_and_fails_verification(tmp_path):
    path = _store(tmp_path, 20)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER entries_no_update")  # play the attacker who owns the disk
    rows = {seq: (data, digest) for seq, data, digest in conn.execute("SELECT seq, data, hash FROM entries "
                                                                      "WHERE seq IN (7, 8)")}
    for seq, other in ((7, 8), (8, 7)):
        conn.execute("UPDATE entries SET data = ?, hash = ? WHERE seq = ?", (*rows[other], seq))
    conn.close()
    check = ingest.check_store(path, sample_from=0, sample_size=5)
    # Entry 7 now holds 8's bytes (prev = hash of 7, but the row before holds 6), 8 holds 7's bytes,
    # and 9 still points at the original 8: three broken links, as the seed's fork query counts them.
    assert check.forks == 3
    assert check.verified.startswith("ChainError")


def test_link_reports_cpu_per_append_on_both_sides():
    done = run_script("link.py", "--calls", "200", "--events", "3")
    assert done.returncode == 0, done.stderr
    assert "worker side" in done.stdout and "primary side" in done.stdout and "appends/s" in done.stdout


def test_writer_reports_parse_and_writer_cpu_per_event():
    done = run_script("writer.py", "--passes", "1", "--new-requests", "2", "--prefill", "2000", "--rounds", "1")
    assert done.returncode == 0, done.stderr
    for case in ("parse, bench batches", "writer, known runs", "writer, new runs"):
        assert case in done.stdout, done.stdout
    assert "µs CPU/event" in done.stdout and "events/s" in done.stdout


def test_skeleton_runs_its_cases_and_stores_what_it_answered():
    done = run_script("skeleton.py", "--quick", "--rounds", "1", "--clients", "4")
    assert done.returncode == 0, done.stderr
    for case in ("bare Litestar", "skeleton, plain ASGI", "skeleton, Litestar route", "runlog serve"):
        assert case in done.stdout, done.stdout
    assert done.stdout.count("errors 0") == 4, done.stdout  # every case answered every request
    stored = [int(line.split(": ")[1].split()[0].replace(",", "")) for line in done.stdout.splitlines()
              if "bodies stored" in line]
    assert len(stored) == 2 and min(stored) > 0, done.stdout
