"""Full-store verification speed: `runlog verify --db` against the strict core path, side by side.

    python bench/verify.py                          # CI size: 200,000 entries in a temp store
    python bench/verify.py --entries 10000000 --db /tmp/verify-10m.sqlite    # the target figure
    python bench/verify.py --quick                  # a few thousand entries: the smoke test

The store is built through the real Writer (canonical entries, both chains, tiles), with runs of
5 to 40 steps interleaved 2,000 at a time, small attrs (a fifth of them with a float), and a signed
checkpoint every tenth of the store. A store given with --db is reused and only grown. Figures:
entries/s of the verifier with 1 and with all worker processes, its peak memory, and the strict
core path (decode_entry + re-encode inside verify_global_chain with RunChains) on a sample.
"""

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from appliance.core.chain import RunChains, verify_global_chain  # noqa: E402
from appliance.core.checkpoint import Checkpoint, sign_checkpoint  # noqa: E402
from appliance.core.cosignature import generate_cosigner  # noqa: E402
from appliance.core.keys import generate_signer  # noqa: E402
from appliance.core.sequencer import Event  # noqa: E402
from appliance.store.db import connect  # noqa: E402
from appliance.store.tree_reader import TreeReader  # noqa: E402
from appliance.store.writer import AppendRequest, Writer  # noqa: E402

ORIGIN = "bench.example/log"
LOG_KEY = generate_signer(ORIGIN, seed=b"\x11" * 32)
CLOCK_KEY = generate_cosigner(f"{ORIGIN}/clock", seed=b"\x12" * 32)
BATCH = 1000
STEPS = ("checkout", "build", "test", "upload", "deploy", "notify", "backup", "dump", "verify")


class _Runs:
    """Interleaved runs: each event continues one of `active` open runs; a run closes after its steps."""

    def __init__(self, seed: int, active: int = 2000) -> None:
        self._random = random.Random(seed)
        self._next = 0
        self._open = [self._new() for _ in range(active)]

    def _new(self) -> list:
        self._next += 1
        return [f"{self._random.getrandbits(128) | 1:032x}", self._random.randint(5, 40), 0]

    def event(self, ts: str) -> Event:
        """The next event; `ts` is the producer's time to the second (milliseconds are added)."""
        slot = self._random.randrange(len(self._open))
        run = self._open[slot]
        trace_id, steps, done = run
        run[2] += 1
        final = run[2] == steps
        if final:
            self._open[slot] = self._new()
        attrs: dict = {"attempt": 1, "host": f"web-{done % 7}.internal", "rows": done * 120}
        if done % 5 == 0:
            attrs["duration_s"] = round(self._random.uniform(0.01, 90.0), 3)
        status = ("failed" if self._random.random() < 0.1 else "succeeded") if final else "info"
        ts = f"{ts[:-1]}.{self._random.randrange(1000):03d}Z"  # producers' times are mostly unique
        return Event(trace_id=trace_id, step=STEPS[done % len(STEPS)], status=status, ts=ts, source="bench-ci",
                     attrs=attrs, final=final)


def build(path: Path, entries: int) -> float:
    """Grow the store at `path` to `entries`; return the build rate (entries/s, 0 if nothing to do)."""
    conn = connect(path, synchronous="NORMAL") if path.exists() else None
    size = TreeReader(conn).size() if conn is not None else 0
    if conn is not None:
        conn.close()
    if size >= entries:
        return 0.0
    start = datetime(2026, 11, 28, tzinfo=timezone.utc) + timedelta(seconds=size // BATCH)
    clock_ticks = [0]

    def clock() -> datetime:
        return start + timedelta(seconds=clock_ticks[0])

    writer = Writer(path, origin=ORIGIN, signer=LOG_KEY, clock=clock, synchronous="NORMAL")
    writer.start()
    runs = _Runs(seed=size)
    step = max(entries // 10, 1)
    began, first = time.perf_counter(), size
    try:
        while size < entries:
            count = min(BATCH, entries - size)
            ts = clock().strftime("%Y-%m-%dT%H:%M:%SZ")
            writer.append_sync(AppendRequest([runs.event(ts) for _ in range(count)], "bench-ci"))
            clock_ticks[0] += 1
            before, size = size, size + count
            if size // step != before // step or size == entries:
                _checkpoint(path, size, int(clock().timestamp()))
            if size % 1_000_000 < count:
                print(f"  built {size:,}", file=sys.stderr, flush=True)
    finally:
        writer.stop()
    return (size - first) / (time.perf_counter() - began)


def _checkpoint(path: Path, size: int, timestamp: int) -> None:
    conn = connect(path, synchronous="NORMAL")
    try:
        root = TreeReader(conn).root(size)
        note = sign_checkpoint(Checkpoint(ORIGIN, size, root), LOG_KEY, [CLOCK_KEY], timestamp)
        conn.execute("INSERT OR IGNORE INTO checkpoints (size, root, note, cut_at) VALUES (?, ?, ?, ?)",
                     (size, root, note.decode(), datetime.fromtimestamp(timestamp, timezone.utc).isoformat()))
    finally:
        conn.close()


def _measure(path: Path, workers: int) -> dict:
    """One verification in this process (run it in a fresh one: peak memory is per process)."""
    from appliance.verify_store import Keys, verify_store

    report = verify_store(path, Keys(LOG_KEY.verifier(), CLOCK_KEY.verifier()), workers=workers)
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    return {"ok": report.ok, "entries": report.entries, "runs": report.runs, "seconds": round(report.seconds, 3),
            "entries_per_s": round(report.entries / report.seconds), "workers": report.workers,
            "cpu_us_per_entry": round(cpu / max(report.entries, 1) * 1e6, 2),
            "peak_rss_mib": own.ru_maxrss // 1024, "worker_peak_rss_mib": children.ru_maxrss // 1024,
            "first_failure": None if report.ok else report.first_failure.describe()}


def _core(path: Path, sample: int) -> dict:
    """The strict core path over the first `sample` entries: decode + re-encode each, both chains."""
    conn = connect(path, synchronous="NORMAL")
    rows = conn.execute("SELECT data, hash FROM entries WHERE seq < ? ORDER BY seq", (sample,)).fetchall()
    conn.close()
    began = time.perf_counter()
    head = verify_global_chain(rows, runs=RunChains())
    elapsed = time.perf_counter() - began
    return {"entries": head.size, "seconds": round(elapsed, 3), "entries_per_s": round(head.size / elapsed)}


def _in_subprocess(path: Path, workers: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--measure", str(workers), "--db", str(path)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--db", type=Path, help="build (or grow) the store here and keep it")
    parser.add_argument("--quick", action="store_true", help="a few thousand entries (the smoke test)")
    parser.add_argument("--core-sample", type=int, default=20_000, help="entries for the strict core path")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)  # internal: one run, JSON to stdout
    args = parser.parse_args()
    if args.measure is not None:
        print(json.dumps(_measure(args.db, args.measure)))
        return 0
    entries = 3_000 if args.quick else args.entries
    with tempfile.TemporaryDirectory() as scratch:
        path = args.db or Path(scratch) / "verify.sqlite"
        rate = build(path, entries)
        if rate:
            print(f"built {entries:,} entries through the Writer ({rate:,.0f}/s)")
        cpus = os.cpu_count() or 1
        figures = {"entries": entries, "cpus": cpus, "core": _core(path, min(args.core_sample, entries)),
                   "verify": [_in_subprocess(path, workers) for workers in sorted({1, cpus})]}
    core = figures["core"]
    print(f"strict core path (decode_entry + re-encode, both chains), {core['entries']:,} entries: "
          f"{core['entries_per_s']:,}/s")
    for run in figures["verify"]:
        state = "verified" if run["ok"] else f"FAILED: {run['first_failure']}"
        print(f"runlog verify --db, {run['entries']:,} entries ({run['runs']:,} runs), {run['workers']} worker "
              f"process(es): {run['entries_per_s']:,} entries/s in {run['seconds']} s, {run['cpu_us_per_entry']} "
              f"us CPU per entry; peak RSS {run['peak_rss_mib']} MiB (workers {run['worker_peak_rss_mib']} MiB); "
              f"{state}")
    best = max(run["entries_per_s"] for run in figures["verify"])
    cost = min(run["cpu_us_per_entry"] for run in figures["verify"])
    load = os.getloadavg()[0]
    print(f"targets (DESIGN.md): full verification >= 300,000 entries/s, constant memory: {best:,}/s measured "
          f"({'met' if best >= 300_000 else 'NOT met'}; load average {load:.1f} on {cpus} CPUs); at {cost} us CPU "
          f"per entry, {cpus} idle CPUs would give ~{round(cpus / cost * 1e6, -3):,.0f}/s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0 if all(run["ok"] for run in figures["verify"]) else 1


if __name__ == "__main__":
    sys.exit(main())
