"""`runlog verify --db PATH [--anchors] [--json] [--key KEY]`: verify a whole store;
`runlog verify FILE --key KEY|--policy FILE [--json] [--workers N]`: verify an evidence bundle offline
(appliance.verify, which needs nothing but appliance.core).

The verdict goes to stdout (text, or JSON with --json), progress to stderr when it is a terminal.
Exit status: 0 when every check held, 1 when something failed, 2 when it could not start (no
key, no store, a bad option). A positional FILE selects the offline bundle check, `--db` the store.
"""

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def register(subparsers: Any) -> None:
    """Add `verify` to the `runlog` command's subparsers."""
    parser = subparsers.add_parser(
        "verify", help="verify an evidence file offline (FILE --key KEY), or the whole store (--db PATH)",
        description="Recompute every entry's hash and both hash chains, rebuild the Merkle tree and compare the "
                    "stored tiles, check every signed checkpoint and daily root against it, and with --anchors "
                    "every checkpoint the configured anchors hold. With FILE instead, verify an evidence bundle made by "
                    "`runlog export` offline against --key or --policy. Exits 0 only when everything holds.")
    parser.add_argument("file", nargs="?", metavar="FILE", help="an evidence bundle (.json) to verify offline")
    parser.add_argument("--policy", metavar="FILE", help="with FILE: a C2SP tlog-policy file instead of --key")
    parser.add_argument("--db", metavar="PATH", type=Path, help="the store to verify (the runlog.sqlite file)")
    parser.add_argument("--anchors", action="store_true",
                        help="also check the checkpoints held by the anchors RUNLOG_ANCHOR_* configures")
    parser.add_argument("--key", metavar="KEY",
                        help="the log's verifier key, a file holding it, or the keys file `runlog keys show` prints "
                             "(every key with its validity window; needed once the keys were rotated). Default: the "
                             "store's key history, else RUNLOG_KEYS_DIR/log.pub; give your own copy for a check that "
                             "does not trust this machine")
    parser.add_argument("--clock-key", metavar="KEY",
                        help="the timestamp cosigner's verifier key or its file (default: RUNLOG_KEYS_DIR/clock.pub)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="worker processes (default: one per CPU; with FILE at most 4, 1 = this process only)")
    parser.set_defaults(handler=_verify)


class UsageError(Exception):
    """The command cannot start; the message says what to give it."""


def _read_key(value: str, *, what: str) -> Any:
    from appliance.core.cosignature import CosignatureVerifier
    from appliance.core.errors import RunlogError
    from appliance.core.key_history import KEYS_HEADER, TrustedKeys
    from appliance.core.keys import ALG_ED25519, NoteVerifier, key_type_of
    from appliance.keyfile import load_verifier

    try:
        if Path(value).is_file():
            text = Path(value).read_text(encoding="utf-8", errors="replace")
            return TrustedKeys.from_text(text) if text.startswith(KEYS_HEADER) else load_verifier(value)
        return NoteVerifier.from_text(value) if key_type_of(value) == ALG_ED25519 else CosignatureVerifier.from_text(value)
    except RunlogError as error:
        raise UsageError(f"{what}: {error}") from None


def _stored_history(db: Path) -> Any:
    from appliance.store import keyring
    from appliance.store.db import connect

    conn = connect(db, readonly=True)
    try:
        return keyring.trusted_keys(conn)
    finally:
        conn.close()


def store_keys(args: argparse.Namespace) -> tuple[Any, list[str]]:
    """The keys `--db` verification trusts (`args.db`, `args.key`, `args.clock_key`): the given
    ones, else the store's key history, else the keys directory; with notes on where they came from."""
    from appliance.core.cosignature import CosignatureVerifier
    from appliance.core.key_history import TrustedKeys
    from appliance.core.keys import NoteVerifier
    from appliance.settings import Settings
    from appliance.verify_store import Keys

    keys_dir = Settings.from_env().keys_dir
    notes = []
    history = _stored_history(args.db) if args.key is None else None
    if args.key is not None:
        log = _read_key(args.key, what="--key")
        if isinstance(log, TrustedKeys):
            if args.clock_key is not None:
                raise UsageError("--clock-key: the keys file already lists the clock keys")
            return Keys.from_history(log), notes
    elif history is not None and args.clock_key is None:
        notes.append("keys read from the store's key history on this machine: whoever can rewrite the store can "
                     "rewrite it too; pass --key with the keys file you published (`runlog keys show`) for an "
                     "independent check")
        return Keys.from_history(history), notes
    elif (keys_dir / "log.pub").is_file():
        log = _read_key(str(keys_dir / "log.pub"), what=str(keys_dir / "log.pub"))
        notes.append(f"log key read from {keys_dir / 'log.pub'} on this machine: whoever can rewrite the store can "
                     "replace it too; pass --key with the key you recorded for an independent check")
    else:
        raise UsageError(f"no log key: give --key KEY, or set RUNLOG_KEYS_DIR (no log.pub in {keys_dir})")
    if not isinstance(log, NoteVerifier):
        raise UsageError("--key must be the log's Ed25519 note key, not a cosigner key")
    clock = None
    if args.clock_key is not None:
        clock = _read_key(args.clock_key, what="--clock-key")
    elif (keys_dir / "clock.pub").is_file():
        clock = _read_key(str(keys_dir / "clock.pub"), what=str(keys_dir / "clock.pub"))
    else:
        notes.append("checkpoint timestamps not verified: no clock key (give --clock-key)")
    if clock is not None and not isinstance(clock, CosignatureVerifier):
        raise UsageError("--clock-key must be a cosignature/v1 key")
    return Keys(log, clock), notes


def _anchors(db: Path, fallback_origin: str) -> tuple:
    from appliance.anchors.config import build_anchors
    from appliance.settings import Settings
    from appliance.store.db import connect, get_meta

    conn = connect(db, readonly=True)
    try:
        origin = get_meta(conn, "origin") or fallback_origin
    finally:
        conn.close()
    return build_anchors(dataclasses.replace(Settings.from_env(), origin=origin))


def _progress(done: int, total: int) -> None:
    share = f" ({100 * done // total}%)" if total else ""
    print(f"\rverifying: {done:,} of {total:,} entries{share}", end="" if done < total else "\n",
          file=sys.stderr, flush=True)


def _verify(args: argparse.Namespace) -> int:
    from appliance.verify_store import verify_store

    if args.file is not None:
        return _verify_file(args)
    try:
        if args.policy is not None:
            raise UsageError("--policy checks an evidence FILE, not a store")
        if args.db is None:
            raise UsageError("give --db PATH: the store to verify")
        if not args.db.is_file():
            raise UsageError(f"no store at {args.db}")
        if args.workers is not None and args.workers < 1:
            raise UsageError("--workers must be at least 1")
        keys, notes = store_keys(args)
        anchors = _anchors(args.db, keys.log.name) if args.anchors else None
    except UsageError as error:
        print(f"runlog verify: {error}", file=sys.stderr)
        return EXIT_USAGE
    report = verify_store(args.db, keys, anchors=anchors, workers=args.workers, notes=notes,
                          progress=_progress if sys.stderr.isatty() else None)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report.to_text())
    return EXIT_OK if report.ok else EXIT_FAILED


def _verify_file(args: argparse.Namespace) -> int:
    from appliance.verify import run

    if args.db is not None or args.anchors or args.clock_key is not None:
        print("runlog verify: FILE is checked offline on its own; --db, --anchors and --clock-key are for the store",
              file=sys.stderr)
        return EXIT_USAGE
    if (args.key is None) == (args.policy is None):
        print("runlog verify: give the log key you trust: FILE --key KEY, or FILE --policy POLICY", file=sys.stderr)
        return EXIT_USAGE
    if args.workers is not None and args.workers < 1:
        print("runlog verify: --workers must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    return run(args.file, key=args.key, policy=args.policy, as_json=args.json, workers=args.workers)
