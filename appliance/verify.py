"""The offline verifier: `python -m appliance.verify FILE --key KEY|--policy FILE [--json]`.

`--key` takes a log verifier key string (trusted at any time), a file holding one (`log.pub`), or a
keys file (`runlog keys show`: every log and clock key with its validity window).

Needs only the standard library, pynacl and rfc8785: it imports `appliance.core` and nothing else
from runlog. Exit status 0 when everything in the bundle holds, 1 when some evidence fails, 2 when
the file or the key cannot be read. A large bundle's entries are checked in slices by forked worker
processes (`--workers`, default one per CPU up to 4) where the platform forks; the verdict and every
message are the same as one process gives.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from appliance.core.bundle_entries import EntriesContext, Failure, Link
from appliance.core.bundle_verify import BundleFormatError, BundleReport, verify_bundle
from appliance.core.csv_export import BOM, verify_csv
from appliance.core.errors import InvalidInput, RunlogError, VerificationError
from appliance.core.key_history import KEYS_HEADER, TrustedKeys
from appliance.core.keys import NoteVerifier
from appliance.core.policy import Policy

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
ENTRIES_PER_WORKER = 2_000  # below this a worker process costs more than it saves
MAX_WORKERS = 4


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
        parser.add_argument("--workers", type=int, metavar="N",
                            help=f"processes that check the entries (default: one per CPU, at most {MAX_WORKERS}; "
                                 "1 checks them in this process)")


def run(file: str, *, key: str | None, policy: str | None, as_json: bool, workers: int | None = None) -> int:
    """Verify `file`, print the verdict, return the exit status. `workers`: processes for the
    entries (None: one per CPU, at most MAX_WORKERS)."""
    try:
        trusted = load_key(key) if key is not None else None
        rules = Policy.from_text(_read_text(policy, "policy")) if policy is not None else None
        data = Path(file).read_bytes()
    except OSError as error:
        return _fail(EXIT_USAGE, f"cannot read {file}: {error.strerror or error}", as_json)
    except RunlogError as error:
        return _fail(EXIT_USAGE, str(error), as_json)
    workers = _Workers(_worker_count(workers, len(data)) if not file.endswith(".csv") else 1, data)
    try:
        return _run(file, data, trusted, rules, as_json, workers)
    finally:
        workers.close()


def _run(file: str, data: bytes, trusted: NoteVerifier | TrustedKeys | None, rules: Policy | None, as_json: bool,
         workers: _Workers) -> int:
    log_keys = (rules.keys if rules else trusted)
    if data.startswith(BOM.encode("utf-8")) or file.endswith(".csv"):
        return _run_csv(file, data, log_keys, as_json)  # type: ignore[arg-type]
    try:
        if isinstance(trusted, TrustedKeys):
            report = verify_bundle(data, keys=trusted, split=workers.split)
        else:
            report = verify_bundle(data, key=trusted, policy=rules, split=workers.split)
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


Examine = Callable[[EntriesContext, int, int], tuple[list[Link], Failure | None]]


class _Workers:
    """Processes that check slices of a bundle's entries, forked once the file is read and before it
    is parsed: each parses the file's bytes itself, alongside this process, and is then sent only
    which slice to check (sending it the parsed slice cost ~0.06 s of pickling on a 10,000-entry
    bundle, all of it before either side could start). Each sends back what `examine_entries`
    gives for its slice; a worker whose own parse does not give the same number of entries sends
    nothing, and its slice is checked here."""

    def __init__(self, count: int, data: bytes) -> None:
        self._workers: list[tuple[Any, Any]] = []
        self._pending: set[int] = set()  # workers sent a slice whose result was not read
        if count < 2 or "fork" not in multiprocessing.get_all_start_methods() or threading.active_count() > 1:
            return  # one process, or a platform (or a threaded caller) where forking is not the way
        fork = multiprocessing.get_context("fork")
        for _ in range(count - 1):
            ours, theirs = fork.Pipe()
            # A worker is forked holding this process's ends of the earlier workers' pipes: it closes
            # them, so that closing ours is an end of file for each worker.
            process = fork.Process(target=_serve, args=(theirs, [c for _, c in self._workers] + [ours], data),
                                   daemon=True)
            process.start()
            theirs.close()
            self._workers.append((process, ours))

    def split(self, examine: Examine, context: EntriesContext, count: int) -> tuple[list[Link], Failure | None]:
        """Slice 0 here, slice n by worker n; the results in order: the first failure wins."""
        slices = max(1, min(len(self._workers) + 1, count // ENTRIES_PER_WORKER))
        bounds = [count * n // slices for n in range(slices + 1)]
        sent = []
        for n, (_, connection) in enumerate(self._workers[:slices - 1], 1):
            try:
                connection.send((examine, context._replace(items=[]), count, bounds[n], bounds[n + 1]))
                sent.append(connection)
                self._pending.add(n - 1)
            except Exception:  # noqa: BLE001 - a dead worker, or a pickle refuses: check the slice here
                sent.append(None)
        links, failure = examine(context, 0, bounds[1])
        for n, connection in enumerate(sent, 1):
            if failure is not None:
                break
            try:
                if connection is None:
                    raise EOFError
                more, failure = connection.recv()
                self._pending.discard(n - 1)
            except (EOFError, OSError):  # the worker died (or never got its slice): check the slice here
                more, failure = examine(context, bounds[n], bounds[n + 1])
            links.extend(more)
        return links, failure

    def close(self) -> None:
        for n, (process, connection) in enumerate(self._workers):
            if n in self._pending:  # still checking a slice nobody needs (an earlier one failed)
                process.terminate()
            connection.close()  # a waiting worker reads EOF and ends
        for process, _ in self._workers:
            process.join()


def _serve(connection: Any, others: list[Any], data: bytes) -> None:
    """A worker: parse the file's bytes as `verify_bundle` does, check the one slice it is sent (if
    any: with the context less its entries, and their count), send the result back, end. It
    leaves Ctrl-C to the parent, and anything unexpected too: the parent then checks the slice
    itself. `others`: the parent's pipe ends it was forked holding, closed first."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for other in others:
        other.close()
    try:
        entries = json.loads(data.decode("utf-8")).get("entries")
        examine, context, count, start, stop = connection.recv()
        if type(entries) is not list or len(entries) != count:
            return  # not the parent's entries: the parent checks the slice itself
        connection.send(examine(context._replace(items=entries), start, stop))
        connection.close()
    except Exception:  # noqa: BLE001 - EOF (nothing to do), or the parent's own check will say what is wrong
        return


def _worker_count(workers: int | None, size: int) -> int:
    """Processes for a bundle file of `size` bytes: as asked, else one per CPU this process may use,
    at most MAX_WORKERS and one per ~ENTRIES_PER_WORKER entries (~1.8 kB each)."""
    if workers is not None:
        return max(1, workers)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cpus, MAX_WORKERS, size // (ENTRIES_PER_WORKER * 1_800)))


def _fail(status: int, message: str, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"ok": False, "error": message}, indent=2))
    else:
        print(f"FAILED: {message}" if status == EXIT_FAILED else f"ERROR: {message}")
    return status


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.workers is not None and args.workers < 1:
        build_parser().error("--workers must be 1 or more")
    return run(args.file, key=args.key, policy=args.policy, as_json=args.json, workers=args.workers)


if __name__ == "__main__":
    sys.exit(main())
