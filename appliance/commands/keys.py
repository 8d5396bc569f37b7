"""`runlog keys show|rotate`: the verifier keys to publish, and key rotation.

`show` prints the keys file (`runlog-keys/v1`, docs/FORMAT.md): every log and clock key the store
has used, with its validity window; publish it where auditors already trust you, and they verify
with `runlog verify FILE --key KEYSFILE`. `rotate` makes new keys while the appliance is stopped;
the old keys sign the next checkpoint together with the new ones, which closes their windows.
"""

import argparse
import json
import sys
from datetime import datetime, timezone
from typing import Any


def register(subparsers: Any) -> None:
    """Add `keys` to the `runlog` command's subparsers."""
    parser = subparsers.add_parser(
        "keys", help="show the verifier keys to publish, or rotate the signing keys",
        description="Show every log and clock key with its validity window (the keys file to publish), or rotate "
                    "the signing keys.")
    actions = parser.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="print the keys file (every key and its validity window) to publish",
                              description="Print the verifier keys of the local store, current and retired, with "
                                          "their validity windows, as a runlog-keys/v1 file (or --json).")
    show.add_argument("--json", action="store_true", help="print the history as JSON")
    show.set_defaults(handler=_show)
    rotate = actions.add_parser(
        "rotate", help="make new log and clock keys (stop the appliance first)",
        description="Make new log and clock keys, valid from now. The next checkpoint is signed by the old and the "
                    "new keys, and its time ends the old keys' validity windows; then the old private keys are "
                    "deleted. Refused while the appliance runs. Prints the new keys file to publish.")
    rotate.add_argument("--compromised", action="store_true",
                        help="the old keys leaked: end their windows at once, at the last checkpoint they signed, "
                             "delete them now, and skip the handover")
    rotate.add_argument("--log-key-out", metavar="PATH",
                        help="with RUNLOG_SIGNING_KEY_FILE: where to write the new private log key (mode 0600), for "
                             "you to mount in place of the old one")
    rotate.set_defaults(handler=_rotate)


def _history_text(settings: Any) -> tuple[str, list[dict]]:
    from appliance.store import keyring
    from appliance.store.db import open_store
    from appliance.store.errors import StoreError

    conn = open_store(settings.db_path, readonly=True)
    try:
        trusted = keyring.trusted_keys(conn)
        if trusted is None:
            raise StoreError("the store has no key history yet; start the appliance (or run `runlog init`) once")
        return trusted.to_text(), keyring.describe(conn)
    finally:
        conn.close()


def _show(args: argparse.Namespace) -> int:
    from appliance.settings import Settings

    text, rows = _history_text(Settings.from_env())
    sys.stdout.write(json.dumps(rows, indent=2) + "\n" if args.json else text)
    return 0


def _rotate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from appliance.core.key_history import format_seconds
    from appliance.key_custody import rotate_keys
    from appliance.settings import Settings

    settings = Settings.from_env()
    done = rotate_keys(settings.keys_dir, settings.db_path, settings.origin, now=datetime.now(timezone.utc),
                       compromised=args.compromised, signing_key_file=settings.signing_key_file,
                       log_key_out=Path(args.log_key_out) if args.log_key_out else None,
                       synchronous=settings.synchronous)
    say = lambda message: print(message, file=sys.stderr)  # noqa: E731
    say(f"new log key   {done.new['log']}\nnew clock key {done.new['clock']}\n"
        f"valid from {format_seconds(done.valid_from)}")
    if done.closed_at is None:
        say("the old keys sign the next checkpoint together with the new ones (the handover), which ends their "
            "validity windows; then their private keys are deleted")
    else:
        say(f"the old keys' windows ended at {format_seconds(done.closed_at)}; their private keys are deleted")
    if args.log_key_out:
        say(f"mount {args.log_key_out} as RUNLOG_SIGNING_KEY_FILE before starting the appliance, then delete it")
    say("publish the keys file below where auditors already trust you (keys/README.md):")
    sys.stdout.write(_history_text(settings)[0])
    return 0
