"""Export and offline-verification figures: one long run in a large store.

    python bench/export.py                       # 1,000,000 entries, a 10,000-step run (the target)
    python bench/export.py --quick               # 20,000 entries, a 1,000-step run: the smoke test
    python bench/export.py --data-dir /tmp/runlog-export-1m   # build once, keep and reuse the store

The store is built by the real Writer (requests of 1,000 events, 20 in flight) with the long run's
steps spread evenly over the whole log among short runs of other traces, then one checkpoint and
the daily roots are cut. Figures: export (gather proofs from tiles, build and sign the bundle,
RFC 8785 serialisation, write the file), offline verification in-process and as
`python -m appliance.verify` (a fresh interpreter, as an auditor runs it), their sum against the
2 s target, and bundle bytes per entry, each as wall-clock and CPU seconds (`--repeat N` for a
range on a shared machine); the tree's bytes per entry (tiles, tile roots, level-4 nodes: target
<= 48); with `--migration`, the time the level-4 nodes migration takes on a copy of the store made
to look as it did before it (table dropped, schema version one down). The target is a figure to
report, never an assertion.
"""

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from appliance.checkpointer import load_signers  # noqa: E402
from appliance.core.bundle_verify import verify_bundle  # noqa: E402
from appliance.core.sequencer import Event  # noqa: E402
from appliance.core.timefmt import format_utc  # noqa: E402
from appliance.service import init_appliance  # noqa: E402
from appliance.settings import Settings  # noqa: E402
from appliance.store import checkpoints as cps  # noqa: E402
from appliance.store.db import MIGRATIONS, connect, migrate  # noqa: E402
from appliance.store.export import export_signed_bundle  # noqa: E402
from appliance.store.writer import AppendRequest, Writer  # noqa: E402

ORIGIN = "bench.example/export"
BATCH, IN_FLIGHT = 1000, 20
LONG = hashlib.sha256(b"runlog bench: the long exported run").hexdigest()[:32]


def _events(start: int, count: int, entries: int, steps: int, done: list[int]) -> list[Event]:
    """Entries start..start+count-1 of the log: the long run's next step every entries/steps entries."""
    every = entries // steps
    events = []
    for n in range(start, start + count):
        if n % every == 0 and done[0] < steps:
            last = done[0] == steps - 1
            events.append(Event(trace_id=LONG, step=f"step {done[0]}", status="succeeded" if last else "info",
                                ts="2026-11-28T00:00:00Z", source="bench", attrs={"i": done[0], "msg": "café ok"},
                                final=last))
            done[0] += 1
        else:
            events.append(Event(trace_id=f"{n // 10 + 1:032x}", step=f"s{n % 10}", status="info",
                                ts="2026-11-28T00:00:00Z", source="bench", attrs={"n": n}))
    return events


def build(settings: Settings, entries: int, steps: int) -> float:
    signers = load_signers(settings.keys_dir, ORIGIN)
    writer = Writer(settings.db_path, origin=ORIGIN, signer=signers.log, synchronous="NORMAL")
    writer.start()
    started, pending, done = time.perf_counter(), deque(), [0]
    for start in range(0, entries, BATCH):
        pending.append(writer.submit(AppendRequest(_events(start, min(BATCH, entries - start), entries, steps, done),
                                                   "bench")))
        if len(pending) >= IN_FLIGHT:
            pending.popleft().result()
    while pending:
        pending.popleft().result()
    writer.stop()
    conn = connect(settings.db_path, synchronous="NORMAL")
    cps.cut_checkpoint(conn, signers, now=datetime.now(timezone.utc))
    conn.close()
    return time.perf_counter() - started


def tree_bytes_per_entry(conn) -> dict[str, float]:
    """Bytes per entry of each table of the tree, from SQLite's pages (`dbstat`)."""
    entries = conn.execute("SELECT count(*) FROM entries").fetchone()[0]
    pages = conn.execute("SELECT name, sum(pgsize) FROM dbstat WHERE name IN ('tiles', 'tile_roots', 'level4_nodes') "
                         "GROUP BY name ORDER BY name").fetchall()
    return {name: round(size / entries, 2) for name, size in pages}


def time_migration(db_path: Path) -> dict[str, float]:
    """Seconds (wall, CPU) to migrate a copy of the store as it was before the level-4 nodes."""
    copy = db_path.with_name("migration-copy.sqlite")
    shutil.copy(db_path, copy)
    try:
        conn = connect(copy)
        conn.execute("DROP TABLE level4_nodes")
        # the version before the level-4 nodes (later migrations leave a store already in their shape alone)
        before = [name for name, _ in MIGRATIONS].index("level-4 nodes of the full level-0 tiles")
        conn.execute(f"PRAGMA user_version={before}")
        started, cpu = time.perf_counter(), time.process_time()
        migrate(conn)
        figures = {"seconds": round(time.perf_counter() - started, 2), "cpu": round(time.process_time() - cpu, 2)}
        conn.close()
    finally:
        for path in (copy, copy.with_name(copy.name + "-wal"), copy.with_name(copy.name + "-shm")):
            path.unlink(missing_ok=True)
    return figures


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _children_faults() -> int:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt


def measure(conn, signers, out: Path, steps: int, workers: int | None = None, pycache: Path | None = None) -> dict:
    """One export to `out`, then its verification in process and by `python -m appliance.verify`:
    wall-clock seconds, and CPU seconds (what a loaded machine inflates least)."""
    load = round(os.getloadavg()[0], 2)
    started, cpu = time.perf_counter(), time.process_time()
    data = export_signed_bundle(conn, LONG, signer=signers.log, clock_key=signers.clock.verifier().to_text(),
                                exported_at=format_utc(datetime.now(timezone.utc))).data
    out.write_bytes(data)
    export_seconds, export_cpu = time.perf_counter() - started, time.process_time() - cpu

    started, cpu = time.perf_counter(), time.process_time()
    report = verify_bundle(out.read_bytes(), key=signers.log.verifier())
    verify_seconds, verify_cpu = time.perf_counter() - started, time.process_time() - cpu
    assert report.count == steps and report.closed

    started, cpu, faults = time.perf_counter(), _children_cpu(), _children_faults()
    command = [sys.executable, "-m", "appliance.verify", str(out), "--key", signers.log.verifier().to_text()]
    env = dict(os.environ)
    if pycache is not None:  # as an installed verifier runs: its modules' bytecode cached, not compiled each run
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    done = subprocess.run(command + ([] if workers is None else ["--workers", str(workers)]),
                          capture_output=True, text=True, cwd=ROOT, env=env)
    cli_seconds, cli_cpu = time.perf_counter() - started, _children_cpu() - cpu
    cli_faults = _children_faults() - faults
    assert done.returncode == 0, done.stdout + done.stderr
    return {"load_average": load, "export_seconds": round(export_seconds, 3), "export_cpu": round(export_cpu, 3),
            "verify_seconds": round(verify_seconds, 3), "verify_cpu": round(verify_cpu, 3),
            "verify_cli_seconds": round(cli_seconds, 3), "verify_cli_cpu": round(cli_cpu, 3),
            "verify_cli_minor_faults": cli_faults,
            "total_seconds": round(export_seconds + cli_seconds, 3), "total_cpu": round(export_cpu + cli_cpu, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--steps", type=int, default=10_000, help="steps of the exported run")
    parser.add_argument("--quick", action="store_true", help="20,000 entries and a 1,000-step run")
    parser.add_argument("--data-dir", type=Path, help="build (or reuse) the store here")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--repeat", type=int, default=1, help="measure this many times (give the range)")
    parser.add_argument("--cold", action="store_true",
                        help="first evict the store's file from the OS page cache (posix_fadvise DONTNEED)")
    parser.add_argument("--migration", action="store_true", help="also time the level-4 nodes migration (on a copy)")
    parser.add_argument("--pycache", type=Path, metavar="DIR",
                        help="run `python -m appliance.verify` with its bytecode cached in DIR (PYTHONPYCACHEPREFIX, "
                             "PYTHONDONTWRITEBYTECODE unset), as an installed verifier runs; it is compiled once first")
    parser.add_argument("--verify-workers", type=int, metavar="N",
                        help="`python -m appliance.verify --workers N` (default: its own, one per CPU)")
    args = parser.parse_args(argv)
    if args.quick:
        args.entries, args.steps = 20_000, 1_000
    temporary = None
    if args.data_dir is None:
        temporary = tempfile.TemporaryDirectory(prefix="runlog-bench-export-")
        args.data_dir = Path(temporary.name)
    settings = Settings(data_dir=args.data_dir, keys_dir=args.data_dir / "keys", origin=ORIGIN, synchronous="NORMAL")
    init_appliance(settings)
    conn = connect(settings.db_path, synchronous="NORMAL")
    have = conn.execute("SELECT count(*) FROM entries").fetchone()[0]
    conn.close()
    figures: dict = {"entries": args.entries, "steps": args.steps}
    if have == 0:
        figures["build_seconds"] = round(build(settings, args.entries, args.steps), 1)
        print(f"built {args.entries:,} entries in {figures['build_seconds']} s", file=sys.stderr)
    elif have != args.entries:
        print(f"{settings.db_path} holds {have:,} entries, not {args.entries:,}", file=sys.stderr)
        return 2
    signers = load_signers(settings.keys_dir, ORIGIN)
    if args.cold:
        for path in (settings.db_path, settings.db_path.with_name(settings.db_path.name + "-wal")):
            if path.exists():
                fd = os.open(path, os.O_RDONLY)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.close(fd)
    conn = connect(settings.db_path, readonly=True)
    out = args.data_dir / "bundle.json"
    if args.pycache is not None:
        env = {**os.environ, "PYTHONPYCACHEPREFIX": str(args.pycache)}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        subprocess.run([sys.executable, "-m", "appliance.verify", "--help"], capture_output=True, cwd=ROOT, env=env,
                       check=True)
    runs = [measure(conn, signers, out, args.steps, args.verify_workers, args.pycache) for _ in range(args.repeat)]
    data_size = out.stat().st_size
    for number, run in enumerate(runs, 1):
        print(f"run {number} (load average {run['load_average']}): export {run['export_seconds']:.3f} s "
              f"(CPU {run['export_cpu']:.3f}); verify in-process {run['verify_seconds']:.3f} s "
              f"(CPU {run['verify_cpu']:.3f}); `python -m appliance.verify` {run['verify_cli_seconds']:.3f} s "
              f"(CPU {run['verify_cli_cpu']:.3f}, {run['verify_cli_minor_faults']:,} minor faults); export + CLI verify {run['total_seconds']:.3f} s "
              f"(CPU {run['total_cpu']:.3f}; target < 2 s)")
    if len(runs) > 1:
        for key in ("export_seconds", "verify_cli_seconds", "total_seconds", "total_cpu"):
            values = [run[key] for run in runs]
            print(f"{key}: {min(values):.3f}..{max(values):.3f} over {len(runs)} runs")
    print(f"bundle: {data_size:,} bytes, {data_size / args.steps:,.0f} bytes per entry")
    tree = tree_bytes_per_entry(conn)
    print(f"tree: {sum(tree.values()):.1f} bytes per entry (target <= 48): {tree}")
    figures.update(runs=runs, bundle_bytes=data_size, bytes_per_entry=round(data_size / args.steps), tree=tree)
    if args.migration:
        figures["migration"] = time_migration(settings.db_path)
        print(f"level-4 nodes migration of {args.entries:,} entries: {figures['migration']['seconds']} s "
              f"(CPU {figures['migration']['cpu']})")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    conn.close()
    if temporary is not None:
        temporary.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
