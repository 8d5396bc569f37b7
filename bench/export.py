"""Export and offline-verification figures: one long run in a large store.

    python bench/export.py                       # 1,000,000 entries, a 10,000-step run (the target)
    python bench/export.py --quick               # 20,000 entries, a 1,000-step run: the smoke test
    python bench/export.py --data-dir /tmp/runlog-export-1m   # build once, keep and reuse the store

The store is built by the real Writer (requests of 1,000 events, 20 in flight) with the long run's
steps spread evenly over the whole log among short runs of other traces, then one checkpoint and
the daily roots are cut. Figures: export (gather proofs from tiles, build and sign the bundle,
RFC 8785 serialisation, write the file), offline verification in-process and as
`python -m appliance.verify` (a fresh interpreter, as an auditor runs it), their sum against the
2 s target, and bundle bytes per entry. The target is a figure to report, never an assertion.
"""

import argparse
import hashlib
import json
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
from appliance.core.bundle import bundle_bytes  # noqa: E402
from appliance.core.bundle_verify import verify_bundle  # noqa: E402
from appliance.core.sequencer import Event  # noqa: E402
from appliance.core.timefmt import format_utc  # noqa: E402
from appliance.service import init_appliance  # noqa: E402
from appliance.settings import Settings  # noqa: E402
from appliance.store import checkpoints as cps  # noqa: E402
from appliance.store.db import connect  # noqa: E402
from appliance.store.export import export_bundle  # noqa: E402
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--steps", type=int, default=10_000, help="steps of the exported run")
    parser.add_argument("--quick", action="store_true", help="20,000 entries and a 1,000-step run")
    parser.add_argument("--data-dir", type=Path, help="build (or reuse) the store here")
    parser.add_argument("--json", type=Path, help="also write the figures here")
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
    conn = connect(settings.db_path, readonly=True)
    out = args.data_dir / "bundle.json"

    started = time.perf_counter()
    bundle = export_bundle(conn, LONG, signer=signers.log, clock_key=signers.clock.verifier().to_text(),
                           exported_at=format_utc(datetime.now(timezone.utc)))
    data = bundle_bytes(bundle)
    out.write_bytes(data)
    export_seconds = time.perf_counter() - started

    started = time.perf_counter()
    report = verify_bundle(out.read_bytes(), key=signers.log.verifier())
    verify_seconds = time.perf_counter() - started
    assert report.count == args.steps and report.closed

    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "appliance.verify", str(out), "--key", signers.log.verifier().to_text()],
                          capture_output=True, text=True, cwd=ROOT)
    cli_seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stdout + done.stderr

    figures.update(export_seconds=round(export_seconds, 3), verify_seconds=round(verify_seconds, 3),
                   verify_cli_seconds=round(cli_seconds, 3), total_seconds=round(export_seconds + cli_seconds, 3),
                   bundle_bytes=len(data), bytes_per_entry=round(len(data) / args.steps))
    print(f"export of a {args.steps:,}-step run from {args.entries:,} entries: {export_seconds:.3f} s")
    print(f"offline verify in-process: {verify_seconds:.3f} s; `python -m appliance.verify`: {cli_seconds:.3f} s")
    print(f"export + offline verify (CLI): {export_seconds + cli_seconds:.3f} s (target < 2 s)")
    print(f"bundle: {len(data):,} bytes, {len(data) / args.steps:,.0f} bytes per entry")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    conn.close()
    if temporary is not None:
        temporary.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
