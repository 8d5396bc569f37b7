"""The background thread that cuts checkpoints: every interval when the log grew, and the daily
root of every UTC day as soon as the day is over (and, at start, of the days missed while down).

It owns one write connection, used only under its lock, so the thread, on-demand cuts
(`POST /v1/checkpoints`) and the final cut at shutdown never interleave. Time comes from an
injected clock; a store error is logged and retried at the next tick, never fatal.
"""

import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path

from appliance.key_custody import discard_retired, load_signers, signing_lock
from appliance.store.checkpoints import (
    SETTLE,
    CheckpointSigners,
    StoredCheckpoint,
    cut_checkpoint,
    cut_daily_roots,
    last_cut_at,
    latest_checkpoint,
    next_day_end,
)
from appliance.store.db import connect, migrate
from appliance.store.errors import StoreError
from appliance.store.tree_reader import TreeReader

log = logging.getLogger("runlog.checkpointer")

__all__ = ["Checkpointer", "cut_on_demand", "load_signers"]

RETRY_SECONDS = 30.0
Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def cut_on_demand(conn: sqlite3.Connection, signers: CheckpointSigners, *, now: datetime, anchors: Sequence[str] = (),
                  settle: timedelta = SETTLE) -> tuple[StoredCheckpoint, bool]:
    """The missed daily roots, then the checkpoint of every committed entry (signed now unless that
    size already has one). Returns it and whether this call signed it."""
    days = cut_daily_roots(conn, signers, now=now, anchors=anchors, settle=settle)
    checkpoint, created = cut_checkpoint(conn, signers, now=now, anchors=anchors)
    return checkpoint, created or any(d.signed_now and d.checkpoint.size == checkpoint.size for d in days)


class Checkpointer:
    """Cuts checkpoints in its own thread; `start()`, `tick()`/`wake()`, `cut_now()`, `stop()`.

    `interval` is in seconds (RUNLOG_CHECKPOINT_INTERVAL); `anchors` names the anchors each new
    checkpoint is queued for. While it runs it holds the store's signing lock, so the keys cannot be
    rotated under it; with `keys_dir`, it deletes the retiring private keys once they signed the
    handover checkpoint after a rotation."""

    def __init__(self, db_path: str | Path, signers: CheckpointSigners, *, interval: float,
                 anchors: Sequence[str] = (), clock: Clock = _utc_now, synchronous: str = "FULL",
                 settle: timedelta = SETTLE, retry_seconds: float = RETRY_SECONDS,
                 keys_dir: Path | None = None) -> None:
        if not interval > 0:
            raise StoreError(f"the checkpoint interval must be positive, not {interval!r}")
        self._db_path, self._signers, self._anchors = db_path, signers, tuple(anchors)
        self._interval = timedelta(seconds=interval)
        self._clock, self._synchronous, self._settle, self._retry = clock, synchronous, settle, retry_seconds
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._keys_dir = keys_dir
        self._held = ExitStack()

    def start(self) -> None:
        """Open the store, cut the daily roots missed while the appliance was down, start the thread."""
        self._held.enter_context(signing_lock(Path(self._db_path)))
        conn = connect(self._db_path, synchronous=self._synchronous)
        migrate(conn)
        self._conn = conn
        self._stopping = False
        self._wake.clear()
        self._thread = threading.Thread(target=self._run, args=(self._tick_and_delay(),), name="runlog-checkpointer",
                                        daemon=True)
        self._thread.start()

    def stop(self, *, final: bool = True) -> None:
        """Stop the thread at once; then, if `final` and the log grew, cut a last checkpoint (call it
        after the writer drained, so it covers every acknowledged entry); close the connection."""
        if self._conn is None:
            return
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            try:
                if final and self._grown():
                    cut_on_demand(self._conn, self._signers, now=self._clock(), anchors=self._anchors,
                                  settle=self._settle)
                    self._after_cut()
            except Exception:  # noqa: BLE001 - shutting down: the next start cuts what is missing
                log.exception("the final checkpoint at shutdown failed")
            finally:
                self._conn.close()
                self._conn = None
                self._held.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wake(self) -> None:
        """Make the thread read the clock and cut what is due now (e.g. after the clock moved)."""
        self._wake.set()

    def cut_now(self) -> tuple[StoredCheckpoint, bool]:
        """On demand: the checkpoint of every committed entry, and whether it was signed now."""
        with self._lock:
            cut = cut_on_demand(self._require_conn(), self._signers, now=self._clock(), anchors=self._anchors,
                                settle=self._settle)
            self._after_cut()
            return cut

    def tick(self) -> list[StoredCheckpoint]:
        """Cut what is due at the clock's now: daily roots of days that are over, then a checkpoint
        if the log grew and the interval since the last cut has passed. Returns what was signed."""
        with self._lock:
            conn, now = self._require_conn(), self._clock()
            days = cut_daily_roots(conn, self._signers, now=now, anchors=self._anchors, settle=self._settle)
            signed = [d.checkpoint for d in days if d.signed_now]
            last = last_cut_at(conn)
            # A clock set back (now < last) must not hold checkpoints off until it catches up.
            if self._grown() and (last is None or now < last or now >= last + self._interval):
                checkpoint, created = cut_checkpoint(conn, self._signers, now=now, anchors=self._anchors)
                if created:
                    signed.append(checkpoint)
            self._after_cut()
        for checkpoint in signed:
            log.info("checkpoint signed at tree size %d", checkpoint.size)
        return signed

    def seconds_until_due(self) -> float:
        """How long the thread may sleep: until the next day ends or the interval since the last cut
        passes, whichever is first (a full interval from now when that has already passed)."""
        with self._lock:
            last = last_cut_at(self._require_conn())
        now = self._clock()
        interval_due = last + self._interval if last is not None and last + self._interval > now else now + self._interval
        return max(0.0, (min(interval_due, next_day_end(now, settle=self._settle)) - now).total_seconds())

    def _after_cut(self) -> None:
        """Once the handover checkpoint is signed, forget the retiring keys and delete their files."""
        if self._keys_dir is not None and (self._signers.retiring_log or self._signers.retiring_clock):
            self._signers = discard_retired(self._keys_dir, self._require_conn(), self._signers)

    def _grown(self) -> bool:
        conn = self._require_conn()
        latest, size = latest_checkpoint(conn), TreeReader(conn).size()
        return size > 0 if latest is None else size > latest.size

    def _require_conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the checkpointer is not running")
        return self._conn

    def _tick_and_delay(self) -> float:
        """Tick, and say how long to sleep after it; a failure is logged and retried, never raised."""
        try:
            self.tick()
            return self.seconds_until_due()
        except Exception:  # noqa: BLE001 - a checkpoint failure must never stop the appliance
            log.exception("cutting checkpoints failed; retrying in %.0f s", self._retry)
            return self._retry

    def _run(self, delay: float) -> None:
        while True:
            self._wake.wait(delay)
            self._wake.clear()
            if self._stopping:
                return
            delay = self._tick_and_delay()
