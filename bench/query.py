"""Query figures at scale: a store built through the real append path, then `runlog serve` on it.

    python bench/query.py                      # 100,000 entries in a temporary directory
    python bench/query.py --quick              # 5,000 entries: the CI smoke test
    python bench/query.py --entries 10000000 --data-dir /tmp/runlog-10m    # the target figure

The store is built by `appliance.store.writer.Writer` (the writer `runlog serve` runs, at its
default synchronous=FULL) with requests of 1,000 events, 20 requests in flight so that group
commit works as it does under load. Producers keep 100 runs of 10 steps open at a time (the last
step closes the run), and one 1,000-step run is spread evenly over the middle half of the log.
Then a checkpoint of the whole store is cut as `runlog checkpoint` does, and `runlog serve` starts
on the store twice; both start-up times are figures. It verifies the log after the last checkpoint,
so both verify almost nothing: the second comes after a clean stop that signed a checkpoint at the
head. With --no-checkpoint the writer's store is left as after a crash before the first checkpoint,
and the first start-up verifies the whole log (about 20 minutes at 10M). On the second start, one
client measures sequentially over keep-alive p50/p99 of `GET /v1/runs/{id}` for the long run
(first page, default limit 100; and all 1,000 events with limit=1000), of `GET /v1/proofs/inclusion`
for a random leaf at the full tree size and at a random tree size (a new right edge each time:
what the app's tile cache cannot hold), and of `GET /v1/proofs/consistency` from a random size to
the full one; one proof of each kind checked with the core. Last, the store's bytes per entry, by
table via `dbstat`.

A store given with --data-dir is kept and reused when it already holds --entries entries.
"""

import argparse
import hashlib
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from base64 import b64decode
from collections import deque
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

from ingest import ADMIN_TOKEN, fsync_probe, runlog_server  # bench/ is this script's sys.path[0]

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.checkpointer import cut_on_demand, load_signers  # noqa: E402
from appliance.core.hashing import leaf_hash  # noqa: E402
from appliance.core.proof_verify import verify_consistency, verify_inclusion  # noqa: E402
from appliance.core.sequencer import Event  # noqa: E402
from appliance.core.timefmt import format_utc  # noqa: E402
from appliance.keyfile import load_signer  # noqa: E402
from appliance.service import init_appliance  # noqa: E402
from appliance.settings import Settings  # noqa: E402
from appliance.store.db import open_store  # noqa: E402
from appliance.store.writer import AppendRequest, Writer  # noqa: E402

BATCH = 1000
IN_FLIGHT = 20
RUN_STEPS = 10
OPEN_RUNS = 100
LONG_STEPS = 1000
LONG_TRACE_ID = hashlib.sha256(b"runlog bench: the 1,000-step run").hexdigest()[:32]
_MESSAGES = ["fetched 120 rows", "uploaded report.csv", "retrying after 429", "café → ok", 'said "done"']


class EventStream:
    """Producers' events: `OPEN_RUNS` runs of `RUN_STEPS` steps in flight, interleaved."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._runs = [self._new_run() for _ in range(OPEN_RUNS)]
        self._next = 0
        self._long_step = 0

    def _new_run(self) -> list:
        return [f"{self._rng.getrandbits(128) | 1:032x}", 0]

    def _attrs(self, step: int) -> dict:
        rng = self._rng
        return {"host": f"runner-{rng.randrange(16)}", "attempt": 1, "duration_ms": rng.randint(1, 90_000),
                "message": rng.choice(_MESSAGES), "step_index": step}

    def events(self, count: int, ts: str, long_steps: int) -> list[Event]:
        """`count` events, of which `long_steps` (spread through the batch) belong to the long run."""
        out: list[Event] = []
        long_at = {round((k + 0.5) * count / long_steps) for k in range(long_steps)} if long_steps else set()
        for position in range(count):
            if position in long_at and self._long_step < LONG_STEPS:
                step = self._long_step
                self._long_step += 1
                out.append(Event(trace_id=LONG_TRACE_ID, step=f"item-{step}", status="info", ts=ts, source="bench",
                                 attrs=self._attrs(step)))
                continue
            run = self._runs[self._next]
            trace_id, step = run
            last = step == RUN_STEPS - 1
            out.append(Event(trace_id=trace_id, step=f"step-{step}", status="succeeded" if last else "info", ts=ts,
                             source="bench", attrs=self._attrs(step), final=last))
            if last:
                self._runs[self._next] = self._new_run()
            else:
                run[1] += 1
            self._next = (self._next + 1) % OPEN_RUNS
        return out


def long_run_plan(entries: int) -> list[int]:
    """How many of the long run's steps go into each batch: spread over the middle half."""
    batches = -(-entries // BATCH)
    first, last = batches // 4, max(batches // 4 + 1, 3 * batches // 4)
    plan = [0] * batches
    for step in range(LONG_STEPS):
        plan[first + step * (last - first) // LONG_STEPS] += 1
    return plan


def build(settings: Settings, entries: int) -> float:
    """Append `entries` events through the real writer; return entries per second.

    Only the writer runs (no checkpointer), so the store ends without a checkpoint (see `checkpoint`)."""
    if entries < 4 * LONG_STEPS:
        raise SystemExit(f"--entries must be at least {4 * LONG_STEPS:,} to hold the {LONG_STEPS:,}-step run")
    init_appliance(settings)
    writer = Writer(settings.db_path, origin=settings.origin, signer=load_signer(settings.keys_dir / "log.key"),
                    synchronous=settings.synchronous)
    writer.start()
    try:
        if writer.size:
            raise SystemExit(f"{settings.db_path} holds {writer.size:,} entries, not {entries:,}; "
                             "give an empty or matching --data-dir")
        stream, plan = EventStream(seed=3), long_run_plan(entries)
        base = datetime(2026, 11, 1, tzinfo=timezone.utc)
        pending: deque = deque()
        started = last_report = time.perf_counter()
        for number, long_steps in enumerate(plan):
            count = min(BATCH, entries - number * BATCH)
            ts = format_utc(base + timedelta(milliseconds=number))
            pending.append(writer.submit(AppendRequest(stream.events(count, ts, long_steps), "bench")))
            if len(pending) >= IN_FLIGHT:
                pending.popleft().result()
            done = (number + 1) * BATCH
            if done % 1_000_000 == 0:
                now = time.perf_counter()
                print(f"  built {done:,} ({1_000_000 / (now - last_report):,.0f}/s lately, load "
                      f"{os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
                last_report = now
        while pending:
            pending.popleft().result()
        rate = entries / (time.perf_counter() - started)
        assert writer.size == entries
    finally:
        writer.stop()
    return rate


def checkpoint(settings: Settings) -> int:
    """Sign a checkpoint of every committed entry, as `runlog checkpoint` does; return its size."""
    conn = open_store(settings.db_path, synchronous=settings.synchronous)
    try:
        signed, _ = cut_on_demand(conn, load_signers(settings.keys_dir, settings.origin),
                                  now=datetime.now(timezone.utc))
    finally:
        conn.close()
    return signed.size


def vm_speed() -> float:
    """Seconds for sum(range(3*10**7)): the machine's speed, to state next to every figure."""
    started = time.perf_counter()
    sum(range(3 * 10**7))
    return time.perf_counter() - started


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered):7.2f} ms  p99 {p99:7.2f} ms  max {ordered[-1]:7.2f} ms"


def timed(client: httpx.Client, path: str, params_of, samples: int, warmup: int = 20) -> list[float]:
    out = []
    for i in range(warmup + samples):
        params = params_of(i)
        sent = time.perf_counter()
        response = client.get(path, params=params)
        elapsed = (time.perf_counter() - sent) * 1e3
        response.raise_for_status()
        if i >= warmup:
            out.append(elapsed)
    return out


def measure(url: str, entries: int, samples: int) -> dict:
    rng = random.Random(11)
    figures = {}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60) as client:
        run = client.get(f"/v1/runs/{LONG_TRACE_ID}").json()
        assert run["run"]["step_count"] == LONG_STEPS and len(run["events"]) == 100, run["run"]
        for label, params in (("runs_first_page", {}), ("runs_all_1000", {"limit": 1000})):
            figures[label] = timed(client, f"/v1/runs/{LONG_TRACE_ID}", lambda i, p=params: p, samples)
        indexes = [rng.randrange(entries) for _ in range(samples + 20)]
        figures["inclusion"] = timed(client, "/v1/proofs/inclusion",
                                     lambda i: {"index": indexes[i], "tree_size": entries}, samples)
        tree_sizes = [rng.randrange(index + 1, entries + 1) for index in indexes]
        figures["inclusion_any_size"] = timed(client, "/v1/proofs/inclusion",
                                              lambda i: {"index": indexes[i], "tree_size": tree_sizes[i]}, samples)
        figures["consistency"] = timed(client, "/v1/proofs/consistency",
                                       lambda i: {"from": tree_sizes[i], "to": entries}, samples)
        proof = client.get("/v1/proofs/inclusion", params={"index": indexes[0], "tree_size": entries}).json()
        entry = client.get(f"/v1/entries/{indexes[0]}").json()
        verify_inclusion(indexes[0], entries, leaf_hash(entry["canonical"].encode()),
                         [b64decode(h) for h in proof["hashes"]], b64decode(proof["root"]))
        old = client.get("/v1/proofs/inclusion", params={"index": 0, "tree_size": tree_sizes[0]}).json()
        consistency = client.get("/v1/proofs/consistency", params={"from": tree_sizes[0], "to": entries}).json()
        verify_consistency(tree_sizes[0], entries, [b64decode(h) for h in consistency["hashes"]],
                           b64decode(old["root"]), b64decode(proof["root"]))
    return figures


def sizes(db_path: Path, entries: int) -> tuple[float, dict[str, int]]:
    files = sum(Path(f"{db_path}{suffix}").stat().st_size for suffix in ("", "-wal")
                if Path(f"{db_path}{suffix}").exists())
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        tables = dict(conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"))
    except sqlite3.OperationalError:  # SQLite built without SQLITE_ENABLE_DBSTAT_VTAB
        tables = {}
    finally:
        conn.close()
    return files / entries, tables


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=1000, help="requests measured per figure")
    parser.add_argument("--quick", action="store_true", help="5,000 entries, 100 samples: a smoke test")
    parser.add_argument("--data-dir", type=Path, help="build (or reuse) the store here and keep it")
    parser.add_argument("--startup-timeout", type=float, default=7200.0, help="seconds to wait for runlog serve")
    parser.add_argument("--workers", type=int, help="RUNLOG_WORKERS for runlog serve (default: its own, auto)")
    parser.add_argument("--no-checkpoint", action="store_true",
                        help="cut no checkpoint after building, so the first start-up verifies the whole log")
    args = parser.parse_args(argv)
    entries, samples = (5_000, 100) if args.quick else (args.entries, args.samples)
    temporary = args.data_dir is None
    work = Path(tempfile.mkdtemp(prefix="runlog-bench-query-")) if temporary else args.data_dir.parent
    data_dir = work / "data" if temporary else args.data_dir
    settings = Settings(data_dir=data_dir, keys_dir=data_dir / "keys", admin_token=ADMIN_TOKEN)
    try:
        print(f"runlog query bench, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC: {os.cpu_count()} cores, "
              f"load {'/'.join(f'{x:.1f}' for x in os.getloadavg())}, {entries:,} entries, {samples} samples each")
        work.mkdir(parents=True, exist_ok=True)
        print(f"  disk now: {fsync_probe(work):,.0f} SQLite commits/s (one row per transaction, synchronous=FULL)")
        print(f"  VM speed: {vm_speed():.2f} s for sum(range(3*10**7)) (0.46 s = the fast state)", flush=True)
        existing = _existing_size(settings.db_path)
        if existing == entries:
            print(f"  reusing the store at {settings.db_path} ({entries:,} entries)")
        else:
            started = time.perf_counter()
            rate = build(settings, entries)
            print(f"  built {entries:,} entries through the writer in {time.perf_counter() - started:,.1f} s "
                  f"({rate:,.0f} entries/s, batches of {BATCH:,}, synchronous=FULL)", flush=True)
            if not args.no_checkpoint:
                started = time.perf_counter()
                size = checkpoint(settings)
                print(f"  checkpoint of tree size {size:,} signed in {time.perf_counter() - started:,.1f} s",
                      flush=True)
        log = work / f"query-serve-{os.getpid()}.log"
        for attempt in ("first", "second"):
            checkpointed = _last_checkpoint(settings.db_path)
            server = runlog_server(data_dir, log, workers=args.workers).start(args.startup_timeout)
            try:
                verified = entries - checkpointed
                print(f"  runlog serve start-up, {attempt} (spawn to healthy; last checkpoint at {checkpointed:,}, "
                      f"so verifying {verified:,} entries): {server.startup_seconds:,.1f} s", flush=True)
                if attempt == "second":
                    figures = measure(server.url, entries, samples)
                    print(f"  VM speed after measuring: {vm_speed():.2f} s", flush=True)
            finally:
                server.stop()  # a clean stop signs a checkpoint at the head
        print(f"  GET /v1/runs/{{id}}, {LONG_STEPS:,}-step run, first page (100):  {percentiles(figures['runs_first_page'])}"
              f"   (target p99 < 50 ms)")
        print(f"  GET /v1/runs/{{id}}?limit=1000, all {LONG_STEPS:,} events:    {percentiles(figures['runs_all_1000'])}")
        print(f"  GET /v1/proofs/inclusion at tree_size {entries:,}:  {percentiles(figures['inclusion'])}"
              f"   (target < 10 ms)")
        print(f"  GET /v1/proofs/inclusion at a random tree_size:  {percentiles(figures['inclusion_any_size'])}")
        print(f"  GET /v1/proofs/consistency, random from, to {entries:,}:  {percentiles(figures['consistency'])}")
        per_entry, tables = sizes(settings.db_path, entries)
        print(f"  store: {per_entry:,.1f} bytes per entry on disk ({per_entry * entries / 2**20:,.1f} MiB)")
        if tables:
            tree = tables.get("tiles", 0) + tables.get("tile_roots", 0)
            print(f"  tree (tiles + tile_roots): {tree / entries:.1f} bytes per entry (target <= 48); by table/index: "
                  + ", ".join(f"{name} {size / entries:.1f}" for name, size in tables.items() if size / entries >= 0.05))
        else:
            print("  (this SQLite has no dbstat: no per-table sizes)")
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _last_checkpoint(db_path: Path) -> int:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT coalesce(max(size), 0) FROM checkpoints").fetchone()[0]
    finally:
        conn.close()


def _existing_size(db_path: Path) -> int:
    if not db_path.exists():
        return 0
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT coalesce(max(seq) + 1, 0) FROM entries").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
