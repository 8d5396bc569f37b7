"""`runlog export TRACE_ID --format json|csv -o PATH [--day YYYY-MM-DD]`: one run's signed evidence.

JSON: the evidence bundle (verify it with `runlog verify PATH --key KEY`). CSV: the file at PATH
and its detached signed note at PATH.sig. Without --day the latest checkpoint is the target; when
it does not cover the run's last entry yet, a checkpoint is signed now (and queued for anchors).
"""

import argparse
import sys
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add `export` to the `runlog` command's subparsers."""
    parser = subparsers.add_parser(
        "export", help="write one run's signed evidence file (JSON bundle or CSV with a .sig)",
        description="Export run TRACE_ID from the local store: JSON is the evidence bundle an auditor verifies "
                    "offline with `runlog verify FILE --key KEY`; CSV is one row per entry for people, with its "
                    "signed note in PATH.sig.")
    parser.add_argument("trace_id", metavar="TRACE_ID", help="the run's trace ID (32 lower-case hex digits)")
    parser.add_argument("--format", choices=["json", "csv"], default="json", help="json (default) or csv")
    parser.add_argument("-o", "--output", metavar="PATH", type=Path, required=True, help="where to write the file")
    parser.add_argument("--day", metavar="YYYY-MM-DD", type=date.fromisoformat,
                        help="prove against that day's daily root instead of the latest checkpoint")
    parser.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from appliance.anchors.config import build_anchors
    from appliance.checkpointer import cut_on_demand, load_signers
    from appliance.core.timefmt import format_utc
    from appliance.settings import Settings
    from appliance.store.checkpoints import latest_checkpoint
    from appliance.store.db import open_store
    from appliance.store.export import export_csv, export_signed_bundle, run_last_seq

    settings = Settings.from_env()
    conn = open_store(settings.db_path, synchronous=settings.synchronous)
    try:
        signers = load_signers(settings.keys_dir, settings.origin)
        now = datetime.now(timezone.utc)
        if args.day is None:
            latest = latest_checkpoint(conn)
            if latest is None or latest.size <= run_last_seq(conn, args.trace_id):
                anchors = [anchor.name for anchor in build_anchors(settings)]
                cut_on_demand(conn, signers, now=now, anchors=anchors)
        if args.format == "json":
            signed = export_signed_bundle(conn, args.trace_id, signer=signers.log, exported_at=format_utc(now),
                                          clock_key=signers.clock.verifier().to_text(), day=args.day)
            _write(args.output, signed.data)
            print(f"wrote {args.output}: {len(signed.bundle['entries'])} entries of run {args.trace_id}", file=sys.stderr)
        else:
            data, note = export_csv(conn, args.trace_id, signer=signers.log, day=args.day)
            _write(args.output, data)
            _write(args.output.with_name(args.output.name + ".sig"), note.encode("utf-8"))
            print(f"wrote {args.output} and {args.output}.sig", file=sys.stderr)
    finally:
        conn.close()
    return 0


def _write(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    temporary.replace(path)
