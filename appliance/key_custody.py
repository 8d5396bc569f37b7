"""The signing keys on disk, and their rotation: the edge between key files and the key history.

Files in RUNLOG_KEYS_DIR: `log.key`/`log.pub` and `clock.key`/`clock.pub` are the current keys
(the log key may instead come from RUNLOG_SIGNING_KEY_FILE, a file a container platform mounts);
`log.retiring.key`/`clock.retiring.key` are the keys a rotation replaced, kept only until they
have signed the handover checkpoint; `*.next.*` exist only while a rotation renames files.

A rotation happens while the appliance is stopped: the running checkpointer holds an exclusive
lock next to the store (`<store>.signing.lock`), and `rotate_keys` refuses while it is held.
Order (so a crash at any point is finished by `open_keys`): write the new keys as `*.next.*`,
record them in the key history (one transaction), then rename the files into place.
"""

import fcntl
import math
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from appliance.core.cosignature import CosignatureSigner, generate_cosigner
from appliance.core.keys import NoteSigner, generate_signer
from appliance.core.timefmt import parse_utc
from appliance.dirsync import fsync_directory
from appliance.keyfile import KeyFileError, load_signer, load_verifier, save_signer, save_verifier
from appliance.store import keyring
from appliance.store.checkpoints import CheckpointSigners, last_cut_at
from appliance.store.db import connect, get_meta, migrate
from appliance.store.errors import StoreError

ROLES = ("log", "clock")


class KeysBusy(StoreError):
    """The keys are in use by a running appliance (or another rotation)."""


def clock_key_name(origin: str) -> str:
    """The timestamp cosigner's key name: distinct from the log key, tied to the same origin."""
    return f"{origin}/clock"


def lock_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".signing.lock")


@contextmanager
def signing_lock(db_path: Path) -> Iterator[None]:
    """Hold the store's signing lock (exclusive, released when the process ends); `KeysBusy` if held."""
    fd = os.open(lock_path(Path(db_path)), os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise KeysBusy("the signing keys are in use: a running appliance (`runlog serve`) or another rotation "
                           "holds them; stop the appliance, rotate, then start it again") from None
        yield
    finally:
        os.close(fd)


def _file(keys_dir: Path, role: str, kind: str) -> Path:
    return keys_dir / f"{role}.{kind}"


def _load(path: Path, kind: type, role: str, origin: str) -> NoteSigner | CosignatureSigner:
    signer = load_signer(path)
    name = origin if role == "log" else clock_key_name(origin)
    if not isinstance(signer, kind) or signer.name != name:
        raise KeyFileError(f"{path} is not a {role} key named {name!r}")
    return signer


def load_signers(keys_dir: Path, origin: str, *, signing_key_file: Path | None = None) -> CheckpointSigners:
    """The current log key (`signing_key_file`, else `log.key`) and clock key (`clock.key`), and the
    retiring keys when their files exist. Private key files readable by group or others are refused."""
    keys_dir = Path(keys_dir)
    log_path = Path(signing_key_file) if signing_key_file else _file(keys_dir, "log", "key")
    log = _load(log_path, NoteSigner, "log", origin)
    clock = _load(_file(keys_dir, "clock", "key"), CosignatureSigner, "clock", origin)
    retiring = [_load(path, kind, role, origin) if path.exists() else None
                for role, kind, path in (("log", NoteSigner, _file(keys_dir, "log", "retiring.key")),
                                         ("clock", CosignatureSigner, _file(keys_dir, "clock", "retiring.key")))]
    return CheckpointSigners(log, clock, *retiring)  # type: ignore[arg-type]


def _verifier_text(signer: NoteSigner | CosignatureSigner | None) -> str | None:
    return None if signer is None else signer.verifier().to_text()


def discard_retired(keys_dir: Path, conn: sqlite3.Connection, signers: CheckpointSigners) -> CheckpointSigners:
    """Delete the retiring private keys whose window the key history has closed (they signed the
    handover); return the signers without them."""
    kept = {}
    for role, signer in (("log", signers.retiring_log), ("clock", signers.retiring_clock)):
        awaiting_handover = {key.key for key in keyring.retiring(conn, role)}
        if signer is not None and _verifier_text(signer) not in awaiting_handover:
            _file(Path(keys_dir), role, "retiring.key").unlink(missing_ok=True)
            signer = None
        kept[role] = signer
    return CheckpointSigners(signers.log, signers.clock, kept["log"], kept["clock"])  # type: ignore[arg-type]


def _finish_renames(keys_dir: Path, conn: sqlite3.Connection) -> None:
    """Complete a rotation that stopped between recording the new keys and renaming their files,
    or drop the `*.next.*` files of one that stopped before recording them."""
    for role in ROLES:
        staged = _file(keys_dir, role, "next.pub")
        if not staged.exists():
            continue
        current = keyring.current(conn, role)
        if current is None or load_verifier(staged).to_text() != current.key:
            _file(keys_dir, role, "next.key").unlink(missing_ok=True)
            staged.unlink()
            continue
        if _file(keys_dir, role, "next.key").exists():
            live = _file(keys_dir, role, "key")
            if live.exists():
                still_open = {key.key for key in keyring.retiring(conn, role)}
                if _verifier_text(load_signer(live)) in still_open:
                    os.replace(live, _file(keys_dir, role, "retiring.key"))
                else:
                    live.unlink()
            os.replace(_file(keys_dir, role, "next.key"), live)
        os.replace(staged, _file(keys_dir, role, "pub"))
        fsync_directory(keys_dir)


def _seconds(text: str) -> int:
    return math.floor(parse_utc(text, field="created_at").timestamp())


def open_keys(keys_dir: Path, origin: str, conn: sqlite3.Connection, *,
              signing_key_file: Path | None = None) -> CheckpointSigners:
    """Load the signing keys for a store (write connection `conn`, not in a transaction): finish an
    interrupted rotation, record the first keys in an empty key history (valid from the store's
    creation), refuse keys the history does not list as current, drop retired private keys."""
    keys_dir = Path(keys_dir)
    _finish_renames(keys_dir, conn)
    signers = load_signers(keys_dir, origin, signing_key_file=signing_key_file)
    conn.execute("BEGIN IMMEDIATE")
    try:
        created = get_meta(conn, "created_at")  # unknown for a bare store: valid since 1970, no lower bound
        keyring.record_initial(conn, [("log", _verifier_text(signers.log)), ("clock", _verifier_text(signers.clock))],
                               0 if created is None else _seconds(created))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    where = (f"RUNLOG_SIGNING_KEY_FILE ({signing_key_file}; after a rotation, mount the key written by "
             "--log-key-out)" if signing_key_file else str(_file(keys_dir, "log", "key")))
    keyring.check_current(conn, "log", _verifier_text(signers.log), where)  # type: ignore[arg-type]
    keyring.check_current(conn, "clock", _verifier_text(signers.clock), str(_file(keys_dir, "clock", "key")))  # type: ignore[arg-type]
    return discard_retired(keys_dir, conn, signers)


@dataclass(frozen=True)
class Rotation:
    """What a rotation did: the old and new verifier keys per role, when the new ones became valid,
    and whether the old ones were closed at once (compromised) or await the handover checkpoint."""

    old: dict[str, str]
    new: dict[str, str]
    valid_from: int
    closed_at: int | None


def rotate_keys(keys_dir: Path, db_path: Path, origin: str, *, now: datetime, compromised: bool = False,
                signing_key_file: Path | None = None, log_key_out: Path | None = None,
                synchronous: str = "FULL") -> Rotation:
    """Make new log and clock keys, valid from `now`; the old ones sign the next checkpoint with
    them (the handover), which closes their windows. With `compromised`, the old keys' windows close
    at once, at the time of the last checkpoint they signed, and their private keys are deleted.

    With `signing_key_file` (the log key mounted from outside), the new log key is written to
    `log_key_out` for the operator to mount instead. Refuses while the appliance runs (`KeysBusy`)."""
    keys_dir, db_path = Path(keys_dir), Path(db_path)
    if (signing_key_file is None) != (log_key_out is None):
        raise KeyFileError("with RUNLOG_SIGNING_KEY_FILE, give --log-key-out PATH for the new log key (and only then)")
    if not db_path.exists():
        raise StoreError(f"no store at {db_path}; run `runlog init` first")
    with signing_lock(db_path):
        conn = connect(db_path, synchronous=synchronous)
        try:
            migrate(conn)
            return _rotate(conn, keys_dir, origin, now, compromised, signing_key_file, log_key_out)
        finally:
            conn.close()


def _rotate(conn: sqlite3.Connection, keys_dir: Path, origin: str, now: datetime, compromised: bool,
            signing_key_file: Path | None, log_key_out: Path | None) -> Rotation:
    signers = open_keys(keys_dir, origin, conn, signing_key_file=signing_key_file)
    pending = [key for role in ROLES for key in keyring.retiring(conn, role)]
    if pending and not compromised:
        raise StoreError("the last rotation still awaits its handover checkpoint (signed by the old and new keys); "
                         "run `runlog checkpoint` once the log has grown, or rotate with --compromised")
    valid_from = math.floor(now.timestamp())
    fresh = {"log": generate_signer(origin), "clock": generate_cosigner(clock_key_name(origin))}
    old = {"log": signers.log, "clock": signers.clock}
    for role, signer in fresh.items():
        private = log_key_out if role == "log" and log_key_out else _file(keys_dir, role, "next.key")
        save_signer(private, signer)
        save_verifier(_file(keys_dir, role, "next.pub"), signer.verifier())
    if signing_key_file is not None and not compromised:
        save_signer(_file(keys_dir, "log", "retiring.key"), signers.log)  # signs the handover, then is deleted
    closed_at = _last_signed(conn, valid_from) if compromised else None
    conn.execute("BEGIN IMMEDIATE")
    try:
        for role in ROLES:
            keyring.record(conn, role, fresh[role].verifier().to_text(), "valid_from", valid_from)
            if compromised:
                for key in {_verifier_text(old[role]), *(k.key for k in keyring.retiring(conn, role))}:
                    keyring.record(conn, role, key, "valid_until", max(closed_at, _start(conn, key)))  # type: ignore[arg-type]
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if compromised:
        for role in ROLES:
            _file(keys_dir, role, "retiring.key").unlink(missing_ok=True)
            if not (role == "log" and signing_key_file):
                _file(keys_dir, role, "key").unlink(missing_ok=True)
    _finish_renames(keys_dir, conn)
    return Rotation({r: _verifier_text(s) for r, s in old.items()},  # type: ignore[misc]
                    {r: s.verifier().to_text() for r, s in fresh.items()}, valid_from, closed_at)


def _start(conn: sqlite3.Connection, key: str) -> int:
    return next(k.valid_from for k in keyring.history(conn) if k.key == key)


def _last_signed(conn: sqlite3.Connection, fallback: int) -> int:
    """When the last checkpoint was cut (whole seconds): the last thing the old keys signed."""
    last = last_cut_at(conn)
    return fallback if last is None else min(fallback, math.floor(last.timestamp()))
