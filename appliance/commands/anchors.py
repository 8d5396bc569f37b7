"""`runlog anchors status|push|init-postgres`: thin commands over `appliance.anchors`.

Results go to stdout, messages to stderr. `status` and `push` exit 1 when an anchor needs
attention (a fork, a lag past RUNLOG_ANCHOR_LAG_THRESHOLD, checkpoints left pending), so they
work in cron jobs and monitoring as they are.
"""

import argparse
import json
import sys
from dataclasses import asdict
from datetime import datetime, timezone

from appliance.store.errors import StoreError

_NONE_CONFIGURED = ("no anchors configured: set RUNLOG_ANCHOR_DIR, RUNLOG_ANCHOR_S3_BUCKET or "
                    "RUNLOG_ANCHOR_POSTGRES_DSN")


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `runlog anchors` and its actions to the CLI's subcommands."""
    anchors = subparsers.add_parser(
        "anchors", help="show, drain or set up the anchors that keep copies of every checkpoint",
        description="Every signed checkpoint is queued for every configured anchor (RUNLOG_ANCHOR_*) and "
                    "published by the running appliance with backoff; these commands show and drain that queue.")
    anchors.set_defaults(handler=_run)
    actions = anchors.add_subparsers(dest="anchors_command", required=True, metavar="ACTION")
    status = actions.add_parser("status", help="per anchor: pending checkpoints, lag, last error (exit 1 if unhealthy)")
    status.add_argument("--json", action="store_true", help="one JSON array on stdout")
    push = actions.add_parser("push", help="publish every pending checkpoint now (exit 1 if any is left)")
    push.add_argument("--json", action="store_true", help="one JSON array on stdout")
    init = actions.add_parser("init-postgres", help="create the anchor table, its append-only trigger and grants")
    init.add_argument("dsn", metavar="DSN", help="an administrator's libpq connection string (a password may come "
                                                 "from PGPASSWORD or ~/.pgpass instead of the command line)")
    init.add_argument("--role", help="the appliance's database role: it gets SELECT and INSERT, nothing else")
    init.add_argument("--table", help="the table (or schema.table); default RUNLOG_ANCHOR_POSTGRES_TABLE")


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _run(args: argparse.Namespace) -> int:
    from appliance.settings import Settings

    settings = Settings.from_env()
    if args.anchors_command == "init-postgres":
        return _init_postgres(args, settings)
    from appliance.anchors.config import build_anchors

    anchors = build_anchors(settings)
    if not anchors:
        _say(_NONE_CONFIGURED)
        if args.json:
            print("[]")
        return 0
    if not settings.db_path.exists():
        raise StoreError(f"no store at {settings.db_path}; run `runlog init` first")
    if args.anchors_command == "status":
        return _status(settings, [a.name for a in anchors], args.json)
    return _push(settings, anchors, args.json)


def _status(settings, names: list[str], as_json: bool) -> int:
    from appliance.anchors.outbox import anchor_status
    from appliance.store.db import connect

    conn = connect(settings.db_path, readonly=True)
    try:
        statuses = anchor_status(conn, names, _now())
    finally:
        conn.close()
    verdicts = [s.health(settings.anchor_lag_threshold) for s in statuses]
    if as_json:
        print(json.dumps([{**asdict(s), "state": state} for s, (state, _) in zip(statuses, verdicts)], indent=2))
    else:
        print(f"{'ANCHOR':<40} {'STATE':<9} {'PENDING':>7} {'LAG':>9} {'PUBLISHED':>10}  LAST ERROR")
        for s, (state, _) in zip(statuses, verdicts):
            lag = f"{s.lag_seconds:.0f} s" if s.pending else "-"
            published = "-" if s.last_published_size is None else str(s.last_published_size)
            error = (s.last_error or "-").replace("\n", " ")
            print(f"{s.anchor:<40} {state:<9} {s.pending:>7} {lag:>9} {published:>10}  {error[:200]}")
    return 0 if all(state == "ok" for state, _ in verdicts) else 1


def _push(settings, anchors, as_json: bool) -> int:
    from appliance.anchors.outbox import Outbox
    from appliance.store.db import open_store

    open_store(settings.db_path, synchronous=settings.synchronous).close()  # migrated before the outbox opens it
    results = Outbox(settings.db_path, anchors, origin=settings.origin).push()
    if as_json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    for r in results:
        line = f"{r.anchor}: published {r.published}, {r.pending} pending"
        if r.failed:
            line += f", {r.failed} failed permanently (see `runlog anchors status`)"
        if r.error:
            line += f"; stopped: {r.error}"
        (_say if as_json else print)(line)
    return 0 if all(r.pending == 0 for r in results) else 1


def _init_postgres(args: argparse.Namespace, settings) -> int:
    from appliance.anchors.postgres import init_postgres

    table = args.table or settings.anchor_postgres_table
    for step in init_postgres(args.dsn, table=table, role=args.role):
        _say(f"ok: {step}")
    if args.role:
        _say(f"now set RUNLOG_ANCHOR_POSTGRES_DSN to a connection string that logs in as {args.role}"
             + (f" and RUNLOG_ANCHOR_POSTGRES_TABLE={table}" if table != "runlog_checkpoints" else ""))
    return 0
