"""The offline verifier: `python -m appliance.verify FILE --key KEY|--policy FILE [--json]`.

`--key` takes a log verifier key string (trusted at any time), a file holding one (`log.pub`), or a
keys file (`runlog keys show`: every log and clock key with its validity window).

Needs only the standard library, pynacl and rfc8785: it imports `appliance.core` and nothing else
from runlog. Exit status 0 when everything in the bundle holds, 1 when some evidence fails, 2 when
the file or the key cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from appliance.core.bundle_verify import BundleFormatError, BundleReport, verify_bundle
from appliance.core.csv_export import BOM, verify_csv
from appliance.core.errors import InvalidInput, RunlogError, VerificationError
from appliance.core.key_history import KEYS_HEADER, TrustedKeys
from appliance.core.keys import NoteVerifier
from appliance.core.policy import Policy

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _read_text(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, ValueError) as error:  # ValueError: UnicodeDecodeError, or a NUL in the path
        raise InvalidInput(f"cannot read {what} {path}: {error}") from None


def load_key(value: str) -> NoteVerifier | TrustedKeys:
    """A log verifier key given inline or as a file holding it, or a keys file (with windows)."""
    try:
        is_file = Path(value).is_file()
    except (OSError, ValueError):
        is_file = False
    text = _read_text(value, "key file").strip() if is_file or "+" not in value else value
    if text.startswith(KEYS_HEADER):
        return TrustedKeys.from_text(text)
    if text.startswith("PRIVATE+KEY+"):
        raise InvalidInput("that is a private signer key; give the public verifier key (log.pub)", field="key")
    return NoteVerifier.from_text(text)


def describe(report: BundleReport) -> str:
    """The plain-words verdict."""
    when = ("at " + datetime.fromtimestamp(report.signed_at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            if report.signed_at is not None else "at an unattested time")
    run = ("the run is closed and complete: its final entry commits to its step count" if report.closed
           else "the run is open: no final entry is among them")
    lines = [
        "OK: the evidence holds.",
        f"Proven: these {report.count} events of trace {report.trace_id} (seq {report.seqs[0]}..{report.seqs[1]}), "
        f"in this order with none left out between them, are in the log {report.origin} that key "
        f"{report.log_key} signed at tree size {report.tree_size} {when}; {run}.",
    ]
    if report.witnesses:
        lines.append(f"Proven: witnesses {', '.join(report.witnesses)} cosigned that checkpoint (quorum met).")
    for day, size in report.daily_roots:
        lines.append(f"Proven: that tree extends the daily root of {day} (size {size}).")
    for anchor in report.anchors:
        lines.append(f"Claimed, not checked: anchor {anchor['anchor']} holds the checkpoint of size {anchor['size']} "
                     f"at {anchor['location']}.")
    lines.extend(f"Not proven: {item}." for item in report.not_proven)
    return "\n".join(lines)


def build_parser(prog: str = "python -m appliance.verify") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Verify a runlog evidence bundle offline.")
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser, *, positional: bool = True) -> None:
    if positional:
        parser.add_argument("file", metavar="FILE", help="the evidence bundle (.json) to verify")
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--key", metavar="KEY", help="the log's verifier key, a file holding it, or the log's "
                                                        "keys file (`runlog keys show`: keys with validity windows)")
    else:
        group = parser.add_mutually_exclusive_group()
    group.add_argument("--policy", metavar="FILE", help="a C2SP tlog-policy file (log key, witnesses, quorum)")
    if positional:
        parser.add_argument("--json", action="store_true", help="print the verdict as JSON")


def run(file: str, *, key: str | None, policy: str | None, as_json: bool) -> int:
    """Verify `file`, print the verdict, return the exit status."""
    try:
        trusted = load_key(key) if key is not None else None
        rules = Policy.from_text(_read_text(policy, "policy")) if policy is not None else None
        data = Path(file).read_bytes()
    except OSError as error:
        return _fail(EXIT_USAGE, f"cannot read {file}: {error.strerror or error}", as_json)
    except RunlogError as error:
        return _fail(EXIT_USAGE, str(error), as_json)
    log_keys = (rules.keys if rules else trusted)
    if data.startswith(BOM.encode("utf-8")) or file.endswith(".csv"):
        return _run_csv(file, data, log_keys, as_json)  # type: ignore[arg-type]
    try:
        if isinstance(trusted, TrustedKeys):
            report = verify_bundle(data, keys=trusted)
        else:
            report = verify_bundle(data, key=trusted, policy=rules)
    except BundleFormatError as error:
        return _fail(EXIT_USAGE, f"not a readable evidence bundle: {error}", as_json)
    except (VerificationError, RunlogError) as error:
        return _fail(EXIT_FAILED, str(error), as_json)
    print(json.dumps(report.to_json(), indent=2) if as_json else describe(report))
    return EXIT_OK


def _run_csv(file: str, data: bytes, keys: NoteVerifier | TrustedKeys, as_json: bool) -> int:
    try:
        note = Path(file + ".sig").read_bytes()
    except OSError as error:
        return _fail(EXIT_USAGE, f"a CSV export is checked with its detached signature {file}.sig: "
                                 f"{error.strerror or error}", as_json)
    # A CSV signature carries no time: any trusted log key may have made it, newest first.
    candidates = [w.verifier for w in reversed(keys.log)] if isinstance(keys, TrustedKeys) else [keys]
    for key in candidates:
        try:
            facts = verify_csv(data, note, key)  # type: ignore[arg-type]
            break
        except VerificationError as error:
            failure = error
        except RunlogError as error:
            return _fail(EXIT_USAGE, str(error), as_json)
    else:
        return _fail(EXIT_FAILED, str(failure), as_json)
    if as_json:
        print(json.dumps({"ok": True, **facts}, indent=2))
    else:
        print(f"OK: the CSV is exactly the file key {key.to_text()} signed: {facts['rows']} rows of trace "  # type: ignore[union-attr]
              f"{facts['trace_id']}, proven under the checkpoint of size {facts['tree_size']}.\n"
              "Not proven: the CSV carries no Merkle proofs; export the JSON bundle to prove each entry is in the log.")
    return EXIT_OK


def _fail(status: int, message: str, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"ok": False, "error": message}, indent=2))
    else:
        print(f"FAILED: {message}" if status == EXIT_FAILED else f"ERROR: {message}")
    return status


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(args.file, key=args.key, policy=args.policy, as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
