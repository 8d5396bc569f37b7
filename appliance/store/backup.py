"""Online backup of the store: a consistent copy made with SQLite's backup API while the
appliance keeps writing.

The copy is one `sqlite3_backup_step(-1)` on a read-only connection: every page is read inside
one read transaction, so in WAL mode the writer never waits for it, and the copy is the store as
of the moment that transaction began. Every append acknowledged before then is in it (the writer
acknowledges only after COMMIT). Copying a few pages per step instead would restart from the
beginning each time the writer commits in between, which under steady ingest is never done.

The copy is written under a temporary name next to its destination, switched to the rollback
journal (one self-contained file, no -wal or -shm beside it) and fsynced; the caller verifies it
and only then `publish`es it under its final name, so a name that exists is a complete copy.
"""

import os
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from appliance.store.db import connect
from appliance.store.errors import StoreError


class BackupError(StoreError):
    """The backup cannot be made where it was asked for; the message says why."""


@dataclass(frozen=True)
class Snapshot:
    """A copy of the store: where it is, how many entries and the latest checkpoint it holds."""

    path: Path
    entries: int
    checkpoint_size: int | None
    bytes: int
    seconds: float


def destination(dest: Path, now: datetime) -> Path:
    """The file to write: `dest` itself, or a time-stamped name inside it when it is a directory
    (so a cron job can keep one per run). Raises `BackupError` when its directory is missing."""
    if dest.is_dir():
        return dest / f"runlog-{now.strftime('%Y%m%dT%H%M%SZ')}.sqlite"
    if not dest.parent.is_dir():
        raise BackupError(f"no directory {dest.parent} to write the backup in")
    return dest


def temporary_path(final: Path) -> Path:
    """The name a backup is written under until it verifies; also clears what earlier backups to
    `final` that were killed while writing left behind (their process is gone)."""
    for stale in final.parent.glob(f".{final.name}.*.partial"):
        pid = stale.name[len(final.name) + 2:-len(".partial")]
        if pid.isdigit() and not _alive(int(pid)):
            stale.unlink(missing_ok=True)
    return final.with_name(f".{final.name}.{os.getpid()}.partial")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def snapshot(source: Path, target: Path) -> Snapshot:
    """Copy the store at `source` to the new file `target` (which must not exist) and return what
    it holds. The appliance may be serving from `source` meanwhile."""
    if not source.is_file():
        raise BackupError(f"no store at {source}")
    started = time.perf_counter()
    copy = None
    src = connect(source, readonly=True)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # refuse to follow or reuse a name
        os.close(fd)
        copy = sqlite3.connect(target, isolation_level=None)
        src.backup(copy)  # pages=-1: one step, one read transaction, one consistent snapshot
        copy.execute("PRAGMA journal_mode=DELETE")
        entries = copy.execute("SELECT coalesce(max(seq) + 1, 0) FROM entries").fetchone()[0]
        checkpoint = copy.execute("SELECT max(size) FROM checkpoints").fetchone()[0]
    except sqlite3.Error as error:
        if copy is not None:
            copy.close()
        target.unlink(missing_ok=True)
        raise BackupError(f"the backup of {source} failed: {error}") from None
    finally:
        src.close()
    copy.close()
    _fsync(target)
    return Snapshot(target, entries, checkpoint, target.stat().st_size, time.perf_counter() - started)


def publish(copy: Path, final: Path, *, overwrite: bool) -> None:
    """Give the verified `copy` its `final` name: atomically, and without replacing an existing
    file unless `overwrite` (raises `BackupError` then, leaving both files as they were)."""
    if overwrite:
        os.replace(copy, final)
    else:
        try:
            os.link(copy, final)  # fails if `final` exists, unlike rename
        except FileExistsError:
            raise BackupError(f"{final} exists; give --force to replace it") from None
        except OSError:  # a file system without hard links (some network mounts): check, then rename
            if final.exists():
                raise BackupError(f"{final} exists; give --force to replace it") from None
            os.rename(copy, final)
        else:
            copy.unlink()
    _fsync(final.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
