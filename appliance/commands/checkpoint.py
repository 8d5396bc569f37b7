"""`runlog checkpoint`: sign a checkpoint of the local store now, and any missed daily roots.

Safe while `runlog serve` runs on the same store: every cut is its own `BEGIN IMMEDIATE`
transaction and a size or day that already has a checkpoint is not signed again.
"""

import argparse
import sys
from datetime import datetime, timezone
from typing import Any


def register(subparsers: Any) -> None:
    """Add `checkpoint` to the `runlog` command's subparsers."""
    parser = subparsers.add_parser(
        "checkpoint", help="sign a checkpoint of the local store now and print it",
        description="Cut the daily roots missed while the appliance was down, then sign the tree of every "
                    "committed entry (unless that size is already signed) and print the signed note; queue "
                    "new checkpoints for the configured anchors.")
    parser.set_defaults(handler=_checkpoint)


def _checkpoint(args: argparse.Namespace) -> int:
    from appliance.anchors.config import build_anchors
    from appliance.checkpointer import cut_on_demand, load_signers
    from appliance.settings import Settings
    from appliance.store.db import open_store

    settings = Settings.from_env()
    conn = open_store(settings.db_path, synchronous=settings.synchronous)
    try:
        signers = load_signers(settings.keys_dir, settings.origin)
        anchors = [anchor.name for anchor in build_anchors(settings)]
        checkpoint, created = cut_on_demand(conn, signers, now=datetime.now(timezone.utc), anchors=anchors)
    finally:
        conn.close()
    state = "signed now" if created else "already signed"
    print(f"checkpoint of tree size {checkpoint.size} ({state})", file=sys.stderr)
    sys.stdout.write(checkpoint.note)
    return 0
