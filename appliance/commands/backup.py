"""`runlog backup DEST [--force] [--db PATH] [--key KEY] [--clock-key KEY] [--json]`: an online,
consistent copy of the store (appliance.store.backup), verified like `runlog verify --db` before it
gets its name.

The verification report goes to stdout (text, or JSON with --json), the summary to stderr. Exit
status: 0 when the copy is written and verifies, 1 when it does not verify (nothing is left at
DEST), 2 when the backup cannot start (DEST exists, no store, no key).
"""

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def register(subparsers: Any) -> None:
    """Add `backup` to the `runlog` command's subparsers."""
    parser = subparsers.add_parser(
        "backup", help="copy the store while the appliance serves, then verify the copy",
        description="Copy the store with SQLite's backup API (a consistent snapshot; the appliance keeps "
                    "serving), verify the copy as `runlog verify --db` does, and only then put it at DEST. A "
                    "directory DEST gets a time-stamped file. The keys are not in the copy: back up "
                    "RUNLOG_KEYS_DIR separately. Exits 0 only when the copy verifies.")
    parser.add_argument("dest", metavar="DEST", type=Path, help="the backup file to create, or a directory for it")
    parser.add_argument("--force", action="store_true", help="replace DEST if it exists")
    parser.add_argument("--db", metavar="PATH", type=Path,
                        help="the store to copy (default: RUNLOG_DATA_DIR/runlog.sqlite)")
    parser.add_argument("--key", metavar="KEY", help="the log's verifier key or its file (default: RUNLOG_KEYS_DIR/log.pub)")
    parser.add_argument("--clock-key", metavar="KEY",
                        help="the timestamp cosigner's verifier key or its file (default: RUNLOG_KEYS_DIR/clock.pub)")
    parser.add_argument("--json", action="store_true", help="print the summary and the verification report as JSON")
    parser.set_defaults(handler=_backup)


def _say(message: str) -> None:
    print(f"runlog backup: {message}", file=sys.stderr)


def _backup(args: argparse.Namespace) -> int:
    # The keys are read exactly as `runlog verify --db` reads them, so the two always agree.
    from appliance.commands.verify import UsageError, store_keys
    from appliance.settings import Settings
    from appliance.store.backup import BackupError, destination, publish, snapshot, temporary_path
    from appliance.verify_store import verify_store

    source = args.db if args.db is not None else Settings.from_env().db_path
    try:
        final = destination(args.dest, datetime.now(timezone.utc))
        if final.exists() and not args.force:
            raise BackupError(f"{final} exists; give --force to replace it")
        copy = snapshot(source, temporary_path(final))
    except BackupError as error:
        _say(str(error))
        return EXIT_USAGE
    try:
        # The keys the copy is checked with, found as `runlog verify --db COPY` finds them.
        keys, notes = store_keys(argparse.Namespace(db=copy.path, key=args.key, clock_key=args.clock_key))
        report = verify_store(copy.path, keys, notes=notes)
        if report.ok:
            publish(copy.path, final, overwrite=args.force)
    except (BackupError, UsageError) as error:
        _say(str(error))
        return EXIT_USAGE
    finally:
        copy.path.unlink(missing_ok=True)
    summary = {"dest": str(final), "entries": copy.entries, "checkpoint_size": copy.checkpoint_size,
               "bytes": copy.bytes, "copy_seconds": round(copy.seconds, 3), "verified": report.ok}
    if args.json:
        print(json.dumps({"backup": summary, "verification": report.to_json()}, indent=2))
    else:
        print(report.to_text())
    if not report.ok:
        _say(f"the copy of {source} does not verify; nothing was written to {final}. Run `runlog verify --db "
             f"{source}` and see docs/OPERATIONS.md, \"When verification fails\"")
        return EXIT_FAILED
    _say(f"wrote {final}: {copy.entries:,} entries, latest checkpoint at size {copy.checkpoint_size}, "
         f"{copy.bytes / 1024 / 1024:.1f} MiB, copied in {copy.seconds:.2f} s and verified")
    return EXIT_OK
